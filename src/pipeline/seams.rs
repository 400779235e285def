//! Seams where the cache, tool-parser and metrics actors plug into the request pipeline.
//!
//! Each is an optional trait object in [`Seams`]; `None` means the pipeline runs without it.
//! An implementation is expected to be a thin adapter that sends messages to its actor
//! (`Addr<CacheActor>`, …) — the pipeline never knows the concrete actor.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use mlx_serve_actors::engine::{FinishReason, GenerateRequest, Prompt, Usage};
use mlx_serve_actors::tool_parser::ToolChoice;

use crate::error::ApiError;

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
    /// After `finish`: whether the reply honours the request's `tool_choice` (`required` or a
    /// named function need a matching call); an error fails the request.
    fn verdict(&self) -> Result<(), ApiError> {
        Ok(())
    }
    /// After `finish`: what tool parsing made of the reply, for metrics.
    fn outcome(&self) -> Option<ToolCallOutcome> {
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
pub struct ToolCallOutcome {
    /// The format the reply was parsed as (`hermes`, `json`, …).
    pub format: &'static str,
    /// Calls returned to the client.
    pub calls: usize,
    /// False when the reply broke `tool_choice` or contained malformed tool-call markup.
    pub ok: bool,
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
    /// Tool parsing of the reply, when the request offered tools.
    pub tool_calls: Option<ToolCallOutcome>,
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
