//! Response wire types: the `Message` object, the streaming events and the count_tokens reply.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::AnthropicErrorDetail as ErrorDetail;

/// The reply of `POST /v1/messages` (non-streaming), and the skeleton in `message_start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Unique id, `msg_…`.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `assistant`.
    pub role: String,
    /// Generated blocks in order.
    pub content: Vec<ResponseBlock>,
    /// The model name the reply reports.
    pub model: String,
    /// Why generation stopped; `null` in `message_start`.
    pub stop_reason: Option<StopReason>,
    /// The stop sequence that matched, when `stop_reason` is `stop_sequence`.
    pub stop_sequence: Option<String>,
    /// Token counts.
    pub usage: Usage,
}

/// A content block of a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBlock {
    /// The model's reasoning, kept apart from its answer.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// Anthropic signs its thinking; a local model's is unsigned (empty).
        signature: String,
    },
    /// Generated text.
    Text {
        /// The text.
        text: String,
    },
    /// A tool call.
    ToolUse {
        /// Call id, `toolu_…`.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments object (`{}` in `content_block_start`; the deltas carry the real one).
        input: Value,
    },
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its turn.
    EndTurn,
    /// `max_tokens` (or the context length) was reached.
    MaxTokens,
    /// One of `stop_sequences` matched.
    StopSequence,
    /// The model called tools and waits for their results.
    ToolUse,
}

/// Token counts. Anthropic's `input_tokens` excludes cache reads: the prompt's size is
/// `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens computed for this request (not served from the prefix cache).
    pub input_tokens: usize,
    /// Generated tokens.
    pub output_tokens: usize,
    /// Prompt tokens written to a cache; always 0 (prefix reuse has no separate write charge).
    pub cache_creation_input_tokens: usize,
    /// Prompt tokens whose state came from the prefix cache.
    pub cache_read_input_tokens: usize,
}

impl Usage {
    /// Splits the engine's counts the way Anthropic reports them.
    pub fn from_engine(prompt_tokens: usize, cached_tokens: usize, output_tokens: usize) -> Self {
        let cached = cached_tokens.min(prompt_tokens);
        Self {
            input_tokens: prompt_tokens - cached,
            output_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: cached,
        }
    }
}

/// The `data` of one streaming event; the SSE `event:` line repeats its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// First event: the message skeleton with empty content and the input usage.
    MessageStart {
        /// Skeleton message.
        message: Message,
    },
    /// A content block opens.
    ContentBlockStart {
        /// Block index, consecutive from 0.
        index: usize,
        /// The block with empty text / empty input.
        content_block: ResponseBlock,
    },
    /// A piece of the open block.
    ContentBlockDelta {
        /// Block index.
        index: usize,
        /// The piece.
        delta: BlockDelta,
    },
    /// A content block closes.
    ContentBlockStop {
        /// Block index.
        index: usize,
    },
    /// Top-level changes at the end: stop reason and final usage.
    MessageDelta {
        /// Stop reason and sequence.
        delta: MessageDeltaBody,
        /// Cumulative usage.
        usage: DeltaUsage,
    },
    /// Last event of a successful stream.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// The stream failed; nothing follows.
    Error {
        /// What went wrong.
        error: ErrorDetail,
    },
}

impl StreamEvent {
    /// The SSE `event:` name, equal to the JSON `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Ping => "ping",
            Self::Error { .. } => "error",
        }
    }

    /// One SSE frame: `event: <type>\ndata: <json>\n\n`.
    pub fn to_sse(&self) -> String {
        // Serializing these plain structs cannot fail; the fallback keeps the stream well-formed.
        let data = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        format!("event: {}\ndata: {data}\n\n", self.name())
    }

    /// [`Self::to_sse`] as bytes for an actix streaming body.
    pub fn to_bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from(self.to_sse())
    }
}

/// A delta of one content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    /// More reasoning of a thinking block.
    ThinkingDelta {
        /// Reasoning to append.
        thinking: String,
    },
    /// More text of a text block.
    TextDelta {
        /// Text to append.
        text: String,
    },
    /// More of a tool_use block's input, as a fragment of its JSON text.
    InputJsonDelta {
        /// JSON fragment; the concatenation of all fragments is the input object.
        partial_json: String,
    },
}

/// `delta` of `message_delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDeltaBody {
    /// Why generation stopped.
    pub stop_reason: Option<StopReason>,
    /// The stop sequence that matched.
    pub stop_sequence: Option<String>,
}

/// `usage` of `message_delta`: cumulative counts for the whole message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaUsage {
    /// Generated tokens.
    pub output_tokens: usize,
    /// Prompt tokens not served from the prefix cache.
    pub input_tokens: usize,
    /// Prompt tokens written to a cache (always 0).
    pub cache_creation_input_tokens: usize,
    /// Prompt tokens served from the prefix cache.
    pub cache_read_input_tokens: usize,
}

/// Reply of `POST /v1/messages/count_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountTokensResponse {
    /// Tokens of the rendered prompt (system, tools, messages, generation header).
    pub input_tokens: usize,
}

/// A fresh message id, `msg_` + 24 hex digits.
pub fn new_message_id() -> String {
    format!("msg_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

/// A fresh tool-use id, `toolu_` + 24 hex digits.
pub fn new_tool_use_id() -> String {
    format!("toolu_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}
