//! What the pipeline tells the metrics actor. Plain structs: each is also an actix message so
//! the front can `do_send` it to the `MetricsActor` without wrapping.

use actix::Message;

/// What the response cache did for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CacheOutcome {
    /// Answered from the response cache; the engine did not run.
    Hit,
    /// Cacheable, not found; the engine ran and the answer may be stored.
    Miss,
    /// The client or config asked to skip the cache.
    Bypass,
    /// Not cacheable (sampling with temperature, streaming-only options, errors, …).
    #[default]
    Uncacheable,
}

impl CacheOutcome {
    /// Label value and trace-log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Bypass => "bypass",
            CacheOutcome::Uncacheable => "uncacheable",
        }
    }

    /// Inverse of [`CacheOutcome::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hit" => Some(CacheOutcome::Hit),
            "miss" => Some(CacheOutcome::Miss),
            "bypass" => Some(CacheOutcome::Bypass),
            "uncacheable" => Some(CacheOutcome::Uncacheable),
            _ => None,
        }
    }
}

/// One tool call the parser saw in a response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCallOutcome {
    /// Parser format that handled it (`hermes`, `llama3_json`, …).
    pub format: String,
    /// Function name, when the parser got that far.
    pub name: Option<String>,
    /// False when the call could not be parsed into valid JSON arguments.
    pub ok: bool,
}

/// A request has finished (successfully or not); sent once per request by the HTTP front.
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "()")]
pub struct RequestFinished {
    /// Route pattern, e.g. `/v1/chat/completions` (not the raw path).
    pub route: String,
    /// Model id the request was served by (or asked for, if it failed before routing).
    pub model: String,
    /// HTTP status returned (200 also for streams that ended with an error event).
    pub status: u16,
    /// OpenAI finish reason of the (first) choice, if generation finished.
    pub finish_reason: Option<String>,
    /// What the response cache did.
    pub cache: CacheOutcome,
    /// For a hit: the tier that served it (`memory`, `disk`, `redis`).
    pub cache_tier: Option<String>,
    /// Arrival to last byte, seconds.
    pub e2e_s: f64,
    /// Arrival to first token, seconds.
    pub ttft_s: Option<f64>,
    /// Time spent waiting for the engine, seconds.
    pub queue_s: Option<f64>,
    /// Prompt processing time, seconds.
    pub prefill_s: Option<f64>,
    /// Generation time after prefill, seconds.
    pub decode_s: Option<f64>,
    /// Prompt length in tokens.
    pub prompt_tokens: u64,
    /// Prompt tokens reused from the prefix cache.
    pub cached_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Tool calls found in the output.
    pub tool_calls: Vec<ToolCallOutcome>,
    /// API error type (`invalid_request_error`, `server_error`, …) if the request failed.
    pub error_type: Option<String>,
    /// Error message for the trace log (never a metric label).
    pub error_message: Option<String>,
    /// Response-cache key (hex), for the trace log; lets `analyze` count repeats.
    pub request_hash: Option<String>,
    /// Prompt text; written to the trace only when `TraceSettings::include_prompt` is on.
    pub prompt_text: Option<String>,
}

impl RequestFinished {
    /// Did the request succeed from the client's point of view?
    pub fn is_success(&self) -> bool {
        self.status < 400 && self.error_type.is_none()
    }
}

/// Scheduler occupancy, sent whenever it changes.
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "()")]
pub struct QueueState {
    /// Model the engine serves.
    pub model: String,
    /// Sequences being generated.
    pub running: u64,
    /// Requests waiting for a slot.
    pub waiting: u64,
}

/// Response-cache occupancy, sent by the cache after inserts and evictions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct CacheState {
    /// Entries stored.
    pub entries: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Evictions since the cache started (monotonic; the metric follows it by deltas).
    pub evictions_total: u64,
}

/// A model finished loading.
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "()")]
pub struct ModelLoaded {
    /// Model id.
    pub model: String,
    /// Wall-clock load time, seconds.
    pub seconds: f64,
    /// Bytes of weights held in memory.
    pub weight_bytes: u64,
}

/// A response-cache tier failed an operation (e.g. Redis unreachable); the request went on
/// without it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct CacheTierError {
    /// Tier that failed (`disk`, `redis`).
    pub tier: String,
}

/// Prefix (KV) cache occupancy, sent by the engine after it stores or evicts prefixes.
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "()")]
pub struct PrefixCacheState {
    /// Model the engine serves.
    pub model: String,
    /// Cached prefixes held.
    pub entries: u64,
    /// Bytes of KV state held.
    pub bytes: u64,
    /// Evictions since the engine started (monotonic; followed by deltas).
    pub evictions_total: u64,
}

/// Decode-batch occupancy and scheduling counters of one model's engine.
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "()")]
pub struct BatchState {
    /// Model the engine serves.
    pub model: String,
    /// Decode slots in use and available.
    pub slots_used: u64,
    pub slots_total: u64,
    /// Preemptions since the engine started (monotonic; followed by deltas).
    pub preemptions_total: u64,
    /// Decode steps per batch-size bucket since the engine started (monotonic).
    pub batch_hist: [u64; 8],
}
