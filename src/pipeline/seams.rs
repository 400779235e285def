//! Seams where the cache, tool-parser and metrics actors plug into the request pipeline.
//!
//! Each is an optional trait object in [`Seams`]; `None` means the pipeline runs without it.
//! An implementation is expected to be a thin adapter that sends messages to its actor
//! (`Addr<CacheActor>`, …) — the pipeline never knows the concrete actor.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use mlx_serve_actors::cache::{CacheKey, CachePolicy, CacheStats, LookupOutcome};
use mlx_serve_actors::engine::Usage;

/// A finished generation as the response cache stores it: the model's raw text (before tool
/// parsing, so a hit re-runs the request's tool parser exactly as a fresh generation would),
/// finish reason, stop string, the original usage and logprobs.
pub use mlx_serve_actors::cache::CachedResponse;

/// Response cache (CacheActor). The pipeline computes the key (see `pipeline::cache`) and
/// drives coalescing through the returned [`LookupOutcome`]; the seam only talks to the actor.
pub trait ResponseCacheSeam: Send + Sync {
    /// Which requests may be answered from and stored into the cache.
    fn policy(&self) -> CachePolicy;
    /// Look a key up. `None` means the cache is unreachable: generate without it.
    fn lookup(&self, key: CacheKey) -> BoxFuture<'static, Option<LookupOutcome>>;
    /// Store a finished generation that has no leadership to store through (`no-cache`
    /// requests, or after a waiter was released); wakes any waiters on the key.
    fn store(&self, key: CacheKey, response: CachedResponse);
    /// A statistics snapshot; `None` when the cache does not answer.
    fn stats(&self) -> BoxFuture<'static, Option<CacheStats>>;
    /// Empty every tier; the number of in-memory entries removed, `None` when unreachable.
    fn clear(&self) -> BoxFuture<'static, Option<usize>>;
}

/// What a tool parser turns model text into.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedDelta {
    /// Ordinary assistant text.
    Text(String),
    /// A fragment of a tool call: `id` and `name` in the first fragment of an `index` only,
    /// then `arguments` pieces (the official clients concatenate them).
    ToolCall {
        /// Which call, 0-based.
        index: usize,
        /// Call id (`call_…`), first fragment only.
        id: Option<String>,
        /// Function name, first fragment only.
        name: Option<String>,
        /// Argument JSON text fragment.
        arguments: String,
    },
}

/// One request's incremental tool-call parser.
pub trait StreamingToolParser: Send {
    /// Feed newly generated text.
    fn push(&mut self, text: &str) -> Vec<ParsedDelta>;
    /// The generation ended: flush anything held back.
    fn finish(&mut self) -> Vec<ParsedDelta>;
}

/// Tool-call parsing (ToolParserActor): gives a parser for requests that declared tools.
pub trait ToolParserSeam: Send + Sync {
    /// A parser for a request with these tool definitions; `None` leaves text untouched.
    fn parser(&self, tools: &[serde_json::Value]) -> Option<Box<dyn StreamingToolParser>>;
}

/// One finished request, as the metrics see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// `chat`, `completions`, … (low cardinality).
    pub api: &'static str,
    /// Whether it streamed.
    pub stream: bool,
    /// `stop`, `length`, `tool_calls`, `error`, `cancelled`, `timeout`.
    pub outcome: &'static str,
    /// Token counts.
    pub usage: Usage,
    /// Seconds from arrival to the first token (None if none came).
    pub time_to_first_token_s: Option<f64>,
    /// Seconds from arrival to the end.
    pub duration_s: f64,
    /// Served from the response cache.
    pub cache_hit: bool,
}

/// Metrics (MetricsActor).
pub trait MetricsSeam: Send + Sync {
    /// A request ended (finished, failed or was cancelled).
    fn record(&self, record: RequestRecord);
    /// A request was refused at admission (`queue_full`, `unavailable`).
    fn rejected(&self, api: &'static str, reason: &'static str);
}

/// The optional collaborators of the pipeline.
#[derive(Clone, Default)]
pub struct Seams {
    /// Response cache; `None`: every request goes to the engine.
    pub cache: Option<Arc<dyn ResponseCacheSeam>>,
    /// Tool-call parser; `None`: text is returned as is.
    pub tool_parser: Option<Arc<dyn ToolParserSeam>>,
    /// Metrics sink; `None`: only logs.
    pub metrics: Option<Arc<dyn MetricsSeam>>,
}
