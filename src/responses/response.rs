//! Response wire types: the `response` object, its output items and usage, and the streamed
//! events (each carries `type` and `sequence_number`; the SSE frame also names it in `event:`).

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A fresh id with OpenAI's prefix (`resp`, `msg`, `fc`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The fixed strings of these types (`object`, the statuses, `role`, the incomplete reason),
/// so that a stored response reads back into them; any other value is refused.
const FIXED: [&str; 7] = [
    "response",
    "in_progress",
    "completed",
    "incomplete",
    "failed",
    "assistant",
    "max_output_tokens",
];

/// One of the [`FIXED`] strings. An alias rather than `&'static str` spelled out, so that serde
/// does not borrow the field from its input: a stored response reads back from any buffer.
pub type Fixed = &'static str;

fn fixed<'de, D: Deserializer<'de>>(d: D) -> Result<Fixed, D::Error> {
    let s = String::deserialize(d)?;
    FIXED
        .into_iter()
        .find(|f| *f == s)
        .ok_or_else(|| serde::de::Error::custom(format!("unexpected value {s:?}")))
}

/// The `response` object: returned as JSON, carried by the lifecycle events, kept by the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseObject {
    /// `resp_…`.
    pub id: String,
    /// Always `response`.
    #[serde(deserialize_with = "fixed")]
    pub object: Fixed,
    /// Unix seconds.
    pub created_at: u64,
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    #[serde(deserialize_with = "fixed")]
    pub status: Fixed,
    /// Set when `status` is `failed`.
    pub error: Option<ResponseErrorOut>,
    /// Set when `status` is `incomplete`.
    pub incomplete_details: Option<IncompleteDetails>,
    /// `instructions` as sent.
    pub instructions: Option<String>,
    /// `max_output_tokens` as sent.
    pub max_output_tokens: Option<i64>,
    /// Model id as requested.
    pub model: String,
    /// Messages and function calls, in the order the model produced them.
    pub output: Vec<OutputItem>,
    /// Whether several calls were allowed.
    pub parallel_tool_calls: bool,
    /// The response this one continues.
    pub previous_response_id: Option<String>,
    /// Reasoning options as sent (`null` fields without).
    pub reasoning: Value,
    /// Whether the response was stored.
    pub store: bool,
    /// The temperature used.
    pub temperature: f32,
    /// `{"format": {"type": "text"}}`.
    pub text: Value,
    /// `tool_choice` as sent (`auto` by default).
    pub tool_choice: Value,
    /// `tools` as sent.
    pub tools: Vec<Value>,
    /// The nucleus mass used.
    pub top_p: f32,
    /// `truncation` as sent (`disabled` by default).
    pub truncation: String,
    /// Token counts; `null` until the end.
    pub usage: Option<ResponseUsage>,
    /// `user` as sent.
    pub user: Option<String>,
    /// `metadata` as sent (`{}` by default).
    pub metadata: Value,
    /// `service_tier` as sent (`default` by default).
    pub service_tier: String,
}

/// `error` of a failed response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseErrorOut {
    /// `server_error`, `rate_limit_exceeded`, …
    pub code: String,
    /// Human-readable reason.
    pub message: String,
}

/// `incomplete_details`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncompleteDetails {
    /// `max_output_tokens`.
    #[serde(deserialize_with = "fixed")]
    pub reason: Fixed,
}

/// One output item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// Assistant text.
    Message {
        /// `msg_…`.
        id: String,
        /// `in_progress`, `completed` or `incomplete`.
        #[serde(deserialize_with = "fixed")]
        status: Fixed,
        /// Always `assistant`.
        #[serde(deserialize_with = "fixed")]
        role: Fixed,
        /// One `output_text` part.
        content: Vec<OutputContent>,
    },
    /// The model's reasoning, kept apart from the answer (one `reasoning_text` part; no
    /// summary is written and nothing is encrypted).
    Reasoning {
        /// `rs_…`.
        id: String,
        /// Always empty.
        summary: Vec<Value>,
        /// One `reasoning_text` part.
        content: Vec<OutputContent>,
        /// `in_progress`, `completed` or `incomplete`.
        #[serde(deserialize_with = "fixed")]
        status: Fixed,
    },
    /// A call of one of the request's functions.
    FunctionCall {
        /// `fc_…`.
        id: String,
        /// `call_…`, what the client's `function_call_output` answers.
        call_id: String,
        /// Function name.
        name: String,
        /// Arguments JSON text.
        arguments: String,
        /// `in_progress`, `completed` or `incomplete`.
        #[serde(deserialize_with = "fixed")]
        status: Fixed,
    },
}

impl OutputItem {
    /// The item's id.
    pub fn id(&self) -> &str {
        match self {
            Self::Message { id, .. }
            | Self::Reasoning { id, .. }
            | Self::FunctionCall { id, .. } => id,
        }
    }
}

/// A content part of an output message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputContent {
    /// Text.
    OutputText {
        /// The text.
        text: String,
        /// Always empty (no citations here).
        annotations: Vec<Value>,
        /// Always empty (logprobs are not offered on this API yet).
        logprobs: Vec<Value>,
    },
    /// Reasoning text (of a `reasoning` item).
    ReasoningText {
        /// The text.
        text: String,
    },
}

impl OutputContent {
    /// An `output_text` part.
    pub fn text(text: impl Into<String>) -> Self {
        Self::OutputText {
            text: text.into(),
            annotations: Vec::new(),
            logprobs: Vec::new(),
        }
    }

    /// The part's text, whichever kind it is.
    pub fn text_of(&self) -> &str {
        match self {
            Self::OutputText { text, .. } | Self::ReasoningText { text } => text,
        }
    }
}

/// `usage`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ResponseUsage {
    /// Prompt tokens.
    pub input_tokens: usize,
    /// Cache detail.
    pub input_tokens_details: InputTokensDetails,
    /// Generated tokens.
    pub output_tokens: usize,
    /// Reasoning detail (always 0).
    pub output_tokens_details: OutputTokensDetails,
    /// Sum of the two.
    pub total_tokens: usize,
}

/// `usage.input_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct InputTokensDetails {
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: usize,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct OutputTokensDetails {
    /// Always 0: reasoning tokens are counted in `output_tokens`, not apart.
    pub reasoning_tokens: usize,
}

impl From<mlx_serve_engine::engine::Usage> for ResponseUsage {
    fn from(u: mlx_serve_engine::engine::Usage) -> Self {
        Self {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens: u.cached_tokens,
            },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: 0,
            },
            total_tokens: u.prompt_tokens + u.completion_tokens,
        }
    }
}

/// A streamed event (without its sequence number, which [`Frame`] adds).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type")]
pub enum StreamEvent {
    /// The response exists (`in_progress`, no output).
    #[serde(rename = "response.created")]
    Created {
        /// The response so far.
        response: ResponseObject,
    },
    /// Generation is under way.
    #[serde(rename = "response.in_progress")]
    InProgress {
        /// The response so far.
        response: ResponseObject,
    },
    /// A new output item.
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        /// Its position in `output`.
        output_index: usize,
        /// The item, empty.
        item: OutputItem,
    },
    /// A new content part of a message item.
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        /// The message item.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position in `content`.
        content_index: usize,
        /// The part, empty.
        part: OutputContent,
    },
    /// Text to append.
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        /// The message item.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position.
        content_index: usize,
        /// The new text.
        delta: String,
        /// Always empty.
        logprobs: Vec<Value>,
    },
    /// The part's whole text.
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        /// The message item.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position.
        content_index: usize,
        /// The whole text.
        text: String,
        /// Always empty.
        logprobs: Vec<Value>,
    },
    /// Reasoning text to append.
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningTextDelta {
        /// The reasoning item.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position.
        content_index: usize,
        /// The new text.
        delta: String,
    },
    /// The reasoning part's whole text.
    #[serde(rename = "response.reasoning_text.done")]
    ReasoningTextDone {
        /// The reasoning item.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position.
        content_index: usize,
        /// The whole text.
        text: String,
    },
    /// The part is complete.
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        /// The message item.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position.
        content_index: usize,
        /// The whole part.
        part: OutputContent,
    },
    /// Arguments text to append to a function call.
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta {
        /// The function call item.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The new arguments text.
        delta: String,
    },
    /// The call's whole arguments.
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        /// The function call item.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// Function name.
        name: String,
        /// The whole arguments text.
        arguments: String,
    },
    /// The item is complete.
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        /// Its position in `output`.
        output_index: usize,
        /// The whole item.
        item: OutputItem,
    },
    /// The response finished.
    #[serde(rename = "response.completed")]
    Completed {
        /// The whole response, as the non-streaming request returns it.
        response: ResponseObject,
    },
    /// The response stopped at `max_output_tokens`.
    #[serde(rename = "response.incomplete")]
    Incomplete {
        /// The whole response.
        response: ResponseObject,
    },
    /// The response failed; follows an `error` event.
    #[serde(rename = "response.failed")]
    Failed {
        /// The response with `error`.
        response: ResponseObject,
    },
    /// A failure mid-stream.
    #[serde(rename = "error")]
    Error {
        /// Machine-readable code.
        code: Option<String>,
        /// Human-readable reason.
        message: String,
        /// The offending field.
        param: Option<String>,
    },
}

impl StreamEvent {
    /// The event's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Created { .. } => "response.created",
            Self::InProgress { .. } => "response.in_progress",
            Self::OutputItemAdded { .. } => "response.output_item.added",
            Self::ContentPartAdded { .. } => "response.content_part.added",
            Self::OutputTextDelta { .. } => "response.output_text.delta",
            Self::OutputTextDone { .. } => "response.output_text.done",
            Self::ReasoningTextDelta { .. } => "response.reasoning_text.delta",
            Self::ReasoningTextDone { .. } => "response.reasoning_text.done",
            Self::ContentPartDone { .. } => "response.content_part.done",
            Self::FunctionCallArgumentsDelta { .. } => "response.function_call_arguments.delta",
            Self::FunctionCallArgumentsDone { .. } => "response.function_call_arguments.done",
            Self::OutputItemDone { .. } => "response.output_item.done",
            Self::Completed { .. } => "response.completed",
            Self::Incomplete { .. } => "response.incomplete",
            Self::Failed { .. } => "response.failed",
            Self::Error { .. } => "error",
        }
    }
}

/// An event with its position in the stream.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Frame {
    /// The event.
    #[serde(flatten)]
    pub event: StreamEvent,
    /// 0, 1, … in the order sent.
    pub sequence_number: u64,
}

impl Frame {
    /// `event: <type>\ndata: <json>\n\n`.
    pub fn to_bytes(&self) -> Bytes {
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        Bytes::from(format!("event: {}\ndata: {json}\n\n", self.event.kind()))
    }
}
