//! The seam between the `ModelActor` and whatever actually generates tokens.
//!
//! The actor owns a `Box<dyn Engine>` on its own thread and drives it step by step: `add` a
//! sequence, call `step` while `has_work`, forward each `SeqEvent` to the request that owns the
//! sequence. The MLX engine (`model::MlxEngine`, feature `mlx`) and the deterministic fake engine
//! used by protocol tests (`fake::FakeEngine`) both implement it, so everything above this line
//! is tested without MLX.

use std::any::Any;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Identifies one sequence inside an engine for its whole life.
pub type SeqId = u64;

/// One chat message after the wire format (OpenAI or Anthropic) has been normalized.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text content; parts already joined. Empty for an assistant turn that only calls tools.
    pub content: String,
    /// Tool calls made by an assistant turn, rendered by the chat template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `tool` messages: the call this result answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Optional participant or tool name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A function call, as OpenAI's `tool_calls[]` carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id (`call_…`).
    pub id: String,
    /// Function name.
    pub name: String,
    /// Arguments as a JSON text (always valid JSON when produced by the tool parser).
    pub arguments: String,
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Prompt {
    /// Rendered through the model's chat template.
    Chat {
        /// Conversation so far.
        messages: Vec<ChatMessage>,
        /// OpenAI-style tool definitions (`{"type":"function","function":{…}}`), passed to the template.
        tools: Vec<serde_json::Value>,
        /// Appends the assistant header so the model answers (true for chat requests).
        add_generation_prompt: bool,
        /// Extra variables for the chat template (vLLM's `chat_template_kwargs`, e.g.
        /// `{"enable_thinking": false}`); they never replace `messages`, `tools` or
        /// `add_generation_prompt`.
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        template_kwargs: serde_json::Map<String, serde_json::Value>,
    },
    /// Raw text, tokenized as is (legacy completions, `generate --raw`).
    Text(String),
    /// Token ids, run as given (legacy completions' `"prompt": [1, 2, 3]`).
    Tokens(Vec<u32>),
}

/// Sampling settings; the defaults are greedy decoding with no penalties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus mass; 1.0 disables.
    pub top_p: f32,
    /// Keep the k most likely tokens; 0 disables.
    pub top_k: usize,
    /// Drop tokens below `min_p` × the top probability; 0 disables.
    pub min_p: f32,
    /// Multiplicative penalty on tokens already seen (prompt and output); 1.0 disables.
    pub repetition_penalty: f32,
    /// Subtracted once from a token's logit if it appeared in the output.
    pub presence_penalty: f32,
    /// Subtracted per occurrence in the output.
    pub frequency_penalty: f32,
    /// Makes sampling reproducible.
    pub seed: Option<u64>,
    /// Added to a token's logit before sampling (OpenAI's `logit_bias`): `(token id, bias)`,
    /// sorted by id; ids outside the vocabulary are ignored. -100 effectively bans a token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
            logit_bias: Vec::new(),
        }
    }
}

/// Everything the engine needs for one sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// Prompt to continue.
    pub prompt: Prompt,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Upper bound on generated tokens; `None` means up to the context length.
    pub max_tokens: Option<usize>,
    /// Stop strings; the text stops before the first occurrence, which is not emitted.
    pub stop: Vec<String>,
    /// `Some(n)`: report each token's logprob and the `n` most likely alternatives.
    pub logprobs: Option<usize>,
    /// A grammar the output must follow (constrained decoding); `None`: unconstrained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<Constraint>,
    /// How the model marks its reasoning, when the server separates it: lets the engine see a
    /// prompt that opens the reasoning itself and end reasoning that runs past its budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningSpec>,
    /// The prompt as the engine's [`PromptEncoder`] rendered and tokenized it, when the front
    /// did that before queueing (not part of the request's identity: never serialized).
    #[serde(skip)]
    pub encoded: Option<Arc<EncodedPrompt>>,
}

/// A prompt rendered and tokenized for one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPrompt {
    /// The tokens to prefill.
    pub tokens: Vec<u32>,
    /// The end of the rendered text: where a chat template may have opened the reasoning.
    pub tail: String,
}

/// Renders and tokenizes prompts the way one engine runs them. Plain shared data (`Send +
/// Sync`): the front encodes a prompt on its own threads, so a prompt that does not fit is
/// refused before it takes a queue place, and counting tokens never waits behind generation.
pub trait PromptEncoder: Send + Sync {
    /// The prompt's tokens (and rendered tail), or why it cannot run.
    fn encode(&self, prompt: &Prompt) -> Result<EncodedPrompt, EngineError>;

    /// Tokens a prompt and its completion may hold together.
    fn context_length(&self) -> usize;
}

/// How many tokens a sequence with `prompt_tokens` may generate: `max_tokens` if prompt and
/// completion fit `context_length`, the rest of the context when `max_tokens` is unset.
pub fn completion_budget(
    context_length: usize,
    prompt_tokens: usize,
    max_tokens: Option<usize>,
) -> Result<usize, EngineError> {
    let room = context_length.saturating_sub(prompt_tokens);
    let wanted = max_tokens.unwrap_or(1);
    if prompt_tokens + wanted > context_length {
        return Err(EngineError::ContextLength {
            context_length,
            prompt_tokens,
            max_tokens: wanted,
            requested: prompt_tokens + wanted,
        });
    }
    Ok(max_tokens.unwrap_or(room))
}

/// The reasoning markers of a model and an optional thinking budget (Anthropic's
/// `thinking.budget_tokens`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReasoningSpec {
    /// What opens the reasoning (`<think>`); empty when only a budget was asked for and the
    /// server has not resolved the model's format yet.
    pub open: String,
    /// What ends it (`</think>`).
    pub close: String,
    /// Text fed to the model in place of sampling once the budget is spent, ending the
    /// reasoning (`\n</think>\n\n`).
    pub force_close: String,
    /// Reasoning tokens allowed; `None`: unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<usize>,
}

/// A grammar that every generated token is checked against before it is sampled: tokens the
/// grammar cannot continue with are masked out, and the sequence ends (`FinishReason::Stop`)
/// once the grammar is complete. See [`crate::guided`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Constraint {
    /// Output that validates against this JSON Schema.
    JsonSchema(serde_json::Value),
    /// Any JSON object.
    JsonObject,
    /// Output that matches this regular expression (Rust `regex` syntax), anchored at both ends.
    Regex(String),
    /// Output generated by this grammar, in llguidance's Lark dialect (`start` is the root;
    /// `%json {…}` embeds a JSON Schema).
    Lark(String),
    /// A tool-call grammar in Lark whose markup markers depend on the vocabulary: rule `mkI` is
    /// `markers[I]`, as the special token of that text where the model has one, else as text;
    /// `tillI` is any text up to and including the first `markers[I]`; `freeI` is any text
    /// without it (see `mlx_serve_actors::tool_parser::grammar`).
    ToolMarkup {
        /// The grammar, referring to `mk0`, `till1`, `free0`, ….
        lark: String,
        /// The markers' texts.
        markers: Vec<String>,
    },
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-sequence token.
    Stop,
    /// A stop string matched (the string is in `SeqEvent::Finished::stop_sequence`).
    StopSequence,
    /// `max_tokens` or the context length was reached.
    Length,
    /// Cancelled by the caller.
    Cancelled,
}

/// Log-probability of one generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text (may be a partial UTF-8 sequence rendered lossily).
    pub token: String,
    /// Raw bytes of the token.
    pub bytes: Vec<u8>,
    /// Natural-log probability under the model's distribution (before sampling filters).
    pub logprob: f32,
    /// Most likely alternatives at this position, best first.
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// Token counts of a finished sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV state came from the prefix cache.
    pub cached_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
}

/// Timings the engine measured for one sequence (seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SeqTimings {
    /// Time spent prefilling the prompt.
    pub prefill_s: f64,
    /// Time spent decoding after the first token.
    pub decode_s: f64,
}

/// Something that happened to a sequence during `Engine::step`.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqEvent {
    /// Prefill finished; the first token follows.
    Started {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Of those, served from the prefix cache.
        cached_tokens: usize,
    },
    /// Newly final text (never a broken UTF-8 sequence; may be empty when only logprobs advance).
    Text {
        /// Text to append.
        text: String,
        /// Tokens this text covers (one per decoded token).
        tokens: usize,
        /// Per-token logprobs when requested.
        logprobs: Vec<TokenLogprob>,
    },
    /// The sequence ended; no more events follow for it.
    Finished {
        /// Why it ended.
        reason: FinishReason,
        /// The stop string that matched, for `FinishReason::StopSequence`.
        stop_sequence: Option<String>,
        /// Token counts.
        usage: Usage,
        /// Measured timings.
        timings: SeqTimings,
    },
    /// The sequence failed; no more events follow for it.
    Failed(EngineError),
}

/// Errors an engine reports; the HTTP layer maps them to status codes.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum EngineError {
    /// The prompt plus the requested tokens do not fit the context.
    #[error("This model's maximum context length is {context_length} tokens. However, you requested {requested} tokens ({prompt_tokens} in the messages, {max_tokens} in the completion). Please reduce the length of the messages or completion.")]
    ContextLength {
        /// Model context length.
        context_length: usize,
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Requested completion tokens.
        max_tokens: usize,
        /// Sum of the two.
        requested: usize,
    },
    /// The request is invalid for this model (e.g. the template rejected the messages).
    #[error("{0}")]
    InvalidRequest(String),
    /// Something broke inside the engine.
    #[error("engine failure: {0}")]
    Internal(String),
}

/// Static facts about the loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Model id served under `/v1/models`.
    pub model_id: String,
    /// Architecture family (`llama`, `qwen2`, …).
    pub architecture: String,
    /// Maximum tokens of prompt plus completion.
    pub context_length: usize,
    /// `cpu`, `metal` or `cuda`.
    pub backend: String,
    /// Compute dtype of the weights (`float32`, `bfloat16`, …).
    pub dtype: String,
    /// The chat template source, when the model has one (tool-format detection reads it).
    pub chat_template: Option<String>,
    /// Seconds spent loading.
    pub load_seconds: f64,
    /// Bytes of weights in memory.
    pub weight_bytes: u64,
}

/// Counters an engine keeps about its own caches, copied into the model's shared health state
/// after every step so `/health` and the metrics read them without messaging the model thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Prompts looked up in the prefix (KV) cache.
    pub prefix_queries: u64,
    /// Lookups that reused at least one cached token.
    pub prefix_hits: u64,
    /// Prompt tokens reused instead of recomputed.
    pub prefix_tokens_saved: u64,
    /// Cached prefixes held.
    pub prefix_entries: u64,
    /// Bytes of KV state held by the prefix cache.
    pub prefix_bytes: u64,
    /// Cached prefixes dropped to stay within the prefix cache's byte budget.
    pub prefix_evictions: u64,
    /// Sequences in the last decode step.
    pub last_batch: u64,
    /// Decode slots occupied and the most there can be (`model.max_batch`).
    pub slots_used: u64,
    pub slots_total: u64,
    /// Running sequences paused for a higher-priority one.
    pub preemptions: u64,
    /// Decode steps so far by batch size: entry `i` counts steps of at most
    /// `BATCH_BUCKETS[i]` sequences (and more than the bucket before).
    pub batch_hist: [u64; 8],
}

/// Upper bounds of the decode batch-size buckets `EngineStats::batch_hist` counts (the batch
/// histogram's buckets).
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

impl EngineStats {
    /// Counts one decode step of `batch` sequences in `batch_hist`.
    pub fn count_batch(hist: &mut [u64; 8], batch: usize) {
        let i = BATCH_BUCKETS
            .iter()
            .position(|&b| batch as f64 <= b)
            .unwrap_or(hist.len() - 1);
        hist[i] += 1;
    }
}

/// A sequence's whole engine state while the scheduler holds it paused (see [`Engine::pause`]).
/// Opaque outside the engine that made it: only that engine can resume it.
pub struct PausedSeq {
    id: SeqId,
    state: Box<dyn Any>,
}

impl PausedSeq {
    pub fn new(id: SeqId, state: Box<dyn Any>) -> Self {
        Self { id, state }
    }

    pub fn id(&self) -> SeqId {
        self.id
    }

    /// The engine's own state back, or `self` when another engine type made it.
    pub fn into_state<T: 'static>(self) -> Result<Box<T>, Self> {
        let id = self.id;
        self.state
            .downcast::<T>()
            .map_err(|state| Self { id, state })
    }
}

impl std::fmt::Debug for PausedSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PausedSeq").field("id", &self.id).finish()
    }
}

/// A token generator driven one step at a time by the `ModelActor`'s scheduler, which owns
/// every sequence's place (waiting, running, paused); the engine holds only the running ones'
/// state and does one thing per step: one prompt pass (chunks of the waiting prompts, oldest
/// first, up to the chunk budget) beside one decoded token for every other running sequence.
pub trait Engine {
    /// Facts about the loaded model.
    fn info(&self) -> EngineInfo;

    /// Render and tokenize a prompt without queuing it (for `count_tokens` and validation).
    fn count_prompt_tokens(&mut self, prompt: &Prompt) -> Result<usize, EngineError>;

    /// This engine's prompt encoder, for the front to use off the model thread; engines that
    /// have none encode in [`Engine::add`].
    fn encoder(&self) -> Option<Arc<dyn PromptEncoder>> {
        None
    }

    /// Validate, tokenize and start a sequence in a free slot (see [`Engine::free_slots`]).
    /// Errors here concern this request only.
    fn add(&mut self, id: SeqId, request: GenerateRequest) -> Result<(), EngineError>;

    /// How many more sequences `add` accepts right now.
    fn free_slots(&self) -> usize;

    /// True while any running sequence has work left.
    fn has_work(&self) -> bool;

    /// Do one unit of work: a prefill chunk or one decoded token for the running sequences.
    fn step(&mut self) -> Vec<(SeqId, SeqEvent)>;

    /// Stop a sequence between tokens; it reports `Finished { reason: Cancelled }` on the next step
    /// (or nothing, if it had already finished).
    fn cancel(&mut self, id: SeqId);

    /// Take running sequence `id` out of the engine (priority scheduling): its whole state, KV
    /// included, goes to the caller, which holds it while the sequence waits and gives it back
    /// with [`Engine::resume`]; its slot is free meanwhile. Its client sees only a pause.
    /// Engines that cannot pause, or that do not run `id`, answer `None`.
    fn pause(&mut self, id: SeqId) -> Option<PausedSeq> {
        let _ = id;
        None
    }

    /// Put a paused sequence back into a free slot; it continues where it stopped.
    fn resume(&mut self, seq: PausedSeq) -> Result<(), EngineError> {
        Err(EngineError::Internal(format!(
            "this engine cannot resume sequence {}",
            seq.id()
        )))
    }

    /// How long the next step may legitimately take, relative to an ordinary one (at least 1).
    /// The wedge watchdog allows its timeout times this: a prompt chunk deep into a long context
    /// costs several times a chunk at its start (attention over every earlier position), and a
    /// slow machine must not have a long prefill mistaken for a hung engine.
    fn step_weight(&self) -> f64 {
        1.0
    }

    /// Cache counters; cheap (called after every step). Engines without caches keep the default.
    fn stats(&self) -> EngineStats {
        EngineStats::default()
    }
}
