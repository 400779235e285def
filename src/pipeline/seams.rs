//! Seams where the cache, tool-parser and metrics actors plug into the request pipeline.
//!
//! Each is an optional trait object in [`Seams`]; `None` means the pipeline runs without it.
//! An implementation is expected to be a thin adapter that sends messages to its actor
//! (`Addr<CacheActor>`, …) — the pipeline never knows the concrete actor.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use mlx_serve_actors::engine::{FinishReason, GenerateRequest, Usage};

/// A finished generation as the response cache stores it (raw model text, before tool parsing).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedResponse {
    /// Raw generated text.
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// The stop string that ended it.
    pub stop_sequence: Option<String>,
    /// Token counts of the original generation.
    pub usage: Usage,
}

/// Response cache (CacheActor).
pub trait ResponseCacheSeam: Send + Sync {
    /// A stored response for this exact request, if the cache policy allows serving one.
    fn lookup(&self, request: &GenerateRequest) -> BoxFuture<'static, Option<CachedResponse>>;
    /// Offer a finished generation to the cache (fire and forget).
    fn store(&self, request: GenerateRequest, response: CachedResponse);
    /// Statistics shown under `cache` in `/health`; must not block (read shared counters).
    fn stats(&self) -> Option<serde_json::Value> {
        None
    }
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
