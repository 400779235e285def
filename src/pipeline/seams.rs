//! Seams where the cache, tool-parser and metrics actors plug into the request pipeline.
//!
//! Each is an optional trait object in [`Seams`]; `None` means the pipeline runs without it.
//! An implementation is expected to be a thin adapter that sends messages to its actor
//! (`Addr<CacheActor>`, …) — the pipeline never knows the concrete actor.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use mlx_serve_actors::cache::{CacheKey, CachePolicy, CacheReporter, CacheStats, LookupOutcome};
use mlx_serve_actors::metrics::{CacheOutcome, LatencySummary, ToolCallOutcome};
use mlx_serve_actors::model::actor::HealthSnapshot;
use mlx_serve_actors::model::registry::ModelStatus;
use mlx_serve_actors::tool_parser::ToolChoice;
use mlx_serve_engine::engine::{GenerateRequest, Prompt, Usage};

use crate::error::ApiError;

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
    /// Drop these keys from the memory tier (their model was unloaded); the number removed,
    /// `None` when unreachable or unsupported.
    fn forget(&self, _keys: Vec<CacheKey>) -> BoxFuture<'static, Option<usize>> {
        Box::pin(std::future::ready(None))
    }
    /// Report occupancy and tier failures to `to` from now on (the metrics, at start-up).
    fn report_to(&self, _to: CacheReporter) {}
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
    /// After `finish`: whether the reply honours the request's `tool_choice` (`required` or a
    /// named function need a matching call); an error fails the request.
    fn verdict(&self) -> Result<(), ApiError> {
        Ok(())
    }
    /// After `finish`: what tool parsing made of the reply, for metrics.
    fn outcome(&self) -> Option<ToolParseOutcome> {
        None
    }
}

/// A request's tool-calling options besides its tool list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOptions {
    /// `tool_choice`, already validated against the tools.
    pub choice: ToolChoice,
    /// `parallel_tool_calls`; `false` keeps only the first call of a reply.
    pub parallel: bool,
}

impl Default for ToolOptions {
    fn default() -> Self {
        Self {
            choice: ToolChoice::Auto,
            parallel: true,
        }
    }
}

/// What tool parsing made of one reply (for metrics; low-cardinality fields only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolParseOutcome {
    /// The format the reply was parsed as (`hermes`, `json`, …).
    pub format: &'static str,
    /// Calls returned to the client.
    pub calls: usize,
    /// False when the reply broke `tool_choice` or contained malformed tool-call markup.
    pub ok: bool,
}

impl ToolParseOutcome {
    /// One metrics entry per call returned, or one failure when the reply broke the contract.
    pub fn to_metrics(&self) -> Vec<ToolCallOutcome> {
        let entry = |ok| ToolCallOutcome {
            format: self.format.to_string(),
            name: None,
            ok,
        };
        if self.ok {
            (0..self.calls).map(|_| entry(true)).collect()
        } else {
            (0..self.calls.max(1)).map(|_| entry(false)).collect()
        }
    }
}

/// Tool-call parsing (ToolParserActor): gives a parser for requests that declared tools.
pub trait ToolParserSeam: Send + Sync {
    /// A parser for a request with these tool definitions; `None` leaves text untouched.
    fn parser(&self, tools: &[serde_json::Value]) -> Option<Box<dyn StreamingToolParser>>;
    /// Before generation: adjust the prompt for the request's tool options (steer it toward
    /// `tool_choice`, offer the tools to a template that cannot) and give its parser.
    /// `chat_template` is the loaded model's (`None`: the model has none). The default leaves
    /// the prompt alone and uses [`Self::parser`].
    fn prepare(
        &self,
        request: &mut GenerateRequest,
        options: &ToolOptions,
        chat_template: Option<&str>,
    ) -> Option<Box<dyn StreamingToolParser>> {
        let _ = (options, chat_template);
        match &request.prompt {
            Prompt::Chat { tools, .. } if !tools.is_empty() => self.parser(tools),
            _ => None,
        }
    }
}

/// The API a request came in through (a low-cardinality label).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completions,
    /// `POST /v1/messages` (Anthropic).
    Messages,
    /// `POST /v1/responses`.
    Responses,
    /// Refused by the HTTP layer before the pipeline ran.
    #[default]
    Http,
}

impl Api {
    /// The name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Completions => "completions",
            Self::Messages => "messages",
            Self::Responses => "responses",
            Self::Http => "http",
        }
    }

    /// The route pattern it is served on.
    pub fn route(self) -> &'static str {
        match self {
            Self::Chat => "/v1/chat/completions",
            Self::Completions => "/v1/completions",
            Self::Messages => "/v1/messages",
            Self::Responses => "/v1/responses",
            Self::Http => "other",
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Outcome {
    /// The model stopped (end of turn or a stop sequence).
    Stop,
    /// `max_tokens` or the context ran out.
    Length,
    /// The reply made tool calls.
    ToolCalls,
    /// The client went away or the request was cancelled.
    Cancelled,
    /// It ran past `server.request_timeout_s`.
    Timeout,
    /// It failed.
    #[default]
    Error,
}

impl Outcome {
    /// The name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::Cancelled => "cancelled",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }

    /// The OpenAI finish reason of a finished generation; `None` for failures.
    pub fn finish_reason(self) -> Option<&'static str> {
        match self {
            Self::Stop => Some("stop"),
            Self::Length => Some("length"),
            Self::ToolCalls => Some("tool_calls"),
            Self::Cancelled => Some("abort"),
            Self::Timeout | Self::Error => None,
        }
    }
}

/// One finished request, as the metrics see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestRecord {
    /// The API it came in through.
    pub api: Api,
    /// Whether it streamed.
    pub stream: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// Token counts.
    pub usage: Usage,
    /// Seconds from arrival to the first token (None if none came).
    pub time_to_first_token_s: Option<f64>,
    /// Seconds from arrival to the end.
    pub duration_s: f64,
    /// Served from the response cache.
    pub cache_hit: bool,
    /// Model id the request was served by.
    pub model: String,
    /// Route pattern (`/v1/chat/completions`).
    pub route: &'static str,
    /// HTTP status the client saw (200 for a stream that had started before it failed).
    pub status: u16,
    /// OpenAI finish reason when generation finished (`stop`, `length`, `tool_calls`, `abort`).
    pub finish_reason: Option<&'static str>,
    /// Arrival until the engine began prefilling, seconds (engine requests only).
    pub queue_s: Option<f64>,
    /// Prompt processing time the engine measured, seconds.
    pub prefill_s: Option<f64>,
    /// Generation time after prefill the engine measured, seconds.
    pub decode_s: Option<f64>,
    /// What the response cache did (the cache seam's outcome; `Uncacheable` without a cache).
    pub cache: CacheOutcome,
    /// For a hit: the cache tier that served it.
    pub cache_tier: Option<String>,
    /// Tool calls found in the output, with the format that parsed them.
    pub tool_calls: Vec<ToolCallOutcome>,
    /// API error type (`invalid_request_error`, …) when the request failed.
    pub error_type: Option<&'static str>,
    /// Error message, for the trace log only.
    pub error_message: Option<String>,
    /// Stable hash of the normalized request (hex); lets `analyze` count repeats.
    pub request_hash: Option<String>,
    /// Prompt text, only when the trace asks for prompts.
    pub prompt_text: Option<String>,
}

/// Metrics (MetricsActor).
pub trait MetricsSeam: Send + Sync {
    /// A request ended (finished, failed or was cancelled).
    fn record(&self, record: RequestRecord);
    /// The Prometheus text exposition (`GET /metrics`); `None` when this sink has none.
    fn render(&self) -> BoxFuture<'static, Option<String>> {
        Box::pin(std::future::ready(None))
    }
    /// Recent-latency percentiles (`/health`, `/v1/stats`); `None` when this sink has none.
    fn summary(&self) -> BoxFuture<'static, Option<LatencySummary>> {
        Box::pin(std::future::ready(None))
    }
    /// The engine's state now (queue, running, load facts, prefix cache), published periodically.
    fn engine_state(&self, _model: &str, _health: &HealthSnapshot) {}
    /// A model's residency now (loaded or not, bytes, load and unload counts), published
    /// periodically for every configured model.
    fn model_residency(&self, _status: &ModelStatus) {}
    /// Whether the trace wants prompt text in [`RequestRecord::prompt_text`].
    fn wants_prompts(&self) -> bool {
        false
    }
    /// Where the response cache should report its occupancy and tier failures; `None` when
    /// this sink keeps no cache metrics.
    fn cache_reporter(&self) -> Option<CacheReporter> {
        None
    }
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
