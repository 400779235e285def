//! Request wire types of `POST /v1/messages` and `POST /v1/messages/count_tokens`.
//!
//! Field names are Anthropic's. Unknown fields are ignored, as the official API does for
//! forward compatibility; content blocks of unknown types are kept as
//! [`ContentBlock::Unsupported`] so translation can answer with a 400 that names them instead of
//! an opaque parse error.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Body of `POST /v1/messages`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MessagesRequest {
    /// Model name as sent by the client (the caller resolves it through
    /// `crate::config::ModelAliases`).
    #[serde(default)]
    pub model: String,
    /// How long the model stays loaded after this request (Ollama's `keep_alive`).
    #[serde(default)]
    pub keep_alive: Option<crate::keep_alive::KeepAlive>,
    /// Most tokens to generate. Required by Anthropic; kept optional here so a missing or
    /// negative value is reported by validation with a message naming the field.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// System prompt: a string or an array of text blocks.
    #[serde(default)]
    pub system: Option<MessageContent>,
    /// Conversation turns: `user` and `assistant`, and `system` turns anywhere (current Claude
    /// Code sends one after the first user turn).
    #[serde(default)]
    pub messages: Vec<InputMessage>,
    /// Tools the model may call.
    #[serde(default)]
    pub tools: Option<Vec<ToolDefinition>>,
    /// How the model should use the tools.
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    /// Custom strings that stop generation.
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    /// Sampling temperature, 0.0 to 1.0; Anthropic's default is 1.0.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, 0.0 to 1.0.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Sample only from the k most likely tokens.
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Stream the reply as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Caller metadata (`user_id`); accepted and ignored.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Extended thinking: `enabled`/`disabled` become the template's `enable_thinking`;
    /// `budget_tokens` bounds the reasoning (the engine closes it).
    #[serde(default)]
    pub thinking: Option<Value>,
    /// Anthropic capacity tier; accepted and ignored.
    #[serde(default)]
    pub service_tier: Option<Value>,
    /// Output settings: `effort` is accepted and ignored (the served models have no effort
    /// levels); `format` is enforced by
    /// constrained decoding.
    #[serde(default)]
    pub output_config: Option<OutputConfig>,
    /// Server-side context editing (Claude Code sends it); accepted and ignored: the server
    /// keeps no conversation state to edit.
    #[serde(default)]
    pub context_management: Option<Value>,
    /// The structured-outputs beta's spelling of `output_config.format`.
    #[serde(default)]
    pub output_format: Option<Value>,
}

/// `output_config` of a `/v1/messages` request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OutputConfig {
    /// `low`, `medium`, `high`, …; accepted and ignored.
    #[serde(default)]
    pub effort: Option<Value>,
    /// Structured output (`{"type": "json_schema", "schema": …}`).
    #[serde(default)]
    pub format: Option<Value>,
}

/// Body of `POST /v1/messages/count_tokens`: the prompt-shaping subset of [`MessagesRequest`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CountTokensRequest {
    /// Model name as sent by the client.
    #[serde(default)]
    pub model: String,
    /// System prompt: a string or an array of text blocks.
    #[serde(default)]
    pub system: Option<MessageContent>,
    /// Conversation turns.
    #[serde(default)]
    pub messages: Vec<InputMessage>,
    /// Tools whose definitions are part of the prompt.
    #[serde(default)]
    pub tools: Option<Vec<ToolDefinition>>,
    /// Tool choice; validated like in `/v1/messages`, does not change the count.
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    /// Extended thinking; `enabled`/`disabled` change the prompt as in `/v1/messages`.
    #[serde(default)]
    pub thinking: Option<Value>,
}

/// One conversation turn.
#[derive(Debug, Clone, Deserialize)]
pub struct InputMessage {
    /// `user`, `assistant`, or `system` / `developer` (validated during translation, so the error
    /// names the message).
    pub role: String,
    /// A string or an array of content blocks.
    pub content: MessageContent,
}

/// Content that Anthropic accepts either as a plain string or as an array of blocks.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    /// Shorthand for one text block.
    Text(String),
    /// Content blocks in order.
    Blocks(Vec<ContentBlock>),
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Hand-written instead of `#[serde(untagged)]`: a malformed block then yields an error that
        // says which block and why, not "did not match any variant".
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Self::Text(s)),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    ContentBlock::deserialize(v)
                        .map_err(|e| D::Error::custom(format!("content block {i}: {e}")))
                })
                .collect::<Result<_, _>>()
                .map(Self::Blocks),
            other => Err(D::Error::custom(format!(
                "content must be a string or an array of content blocks, got {}",
                json_kind(&other)
            ))),
        }
    }
}

/// One content block of a request message.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentBlock {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image; rejected during translation (the served models have no vision).
    Image,
    /// A tool call made by an earlier assistant turn.
    ToolUse {
        /// Call id (`toolu_…`), echoed by the matching `tool_result`.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments object.
        input: Value,
    },
    /// The result of a tool call, sent in a user turn.
    ToolResult {
        /// The `tool_use` block this answers.
        tool_use_id: String,
        /// A string or text blocks; absent means an empty result.
        content: Option<MessageContent>,
        /// True when the tool failed.
        is_error: bool,
    },
    /// Extended-thinking output from an earlier turn; dropped.
    Thinking,
    /// Redacted extended-thinking output from an earlier turn; dropped.
    RedactedThinking,
    /// Any other block type (`document`, server-tool results, …); rejected during translation.
    Unsupported {
        /// The block's `type`.
        kind: String,
    },
}

/// The block types parsed field by field; the rest only need their `type`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum KnownBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<MessageContent>,
        #[serde(default)]
        is_error: Option<bool>,
    },
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| D::Error::custom("content block without a string `type`"))?
            .to_owned();
        match kind.as_str() {
            "image" => Ok(Self::Image),
            "thinking" => Ok(Self::Thinking),
            "redacted_thinking" => Ok(Self::RedactedThinking),
            "text" | "tool_use" | "tool_result" => {
                let known = KnownBlock::deserialize(value)
                    .map_err(|e| D::Error::custom(format!("`{kind}` block: {e}")))?;
                Ok(match known {
                    KnownBlock::Text { text } => Self::Text { text },
                    KnownBlock::ToolUse { id, name, input } => Self::ToolUse { id, name, input },
                    KnownBlock::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } => Self::ToolResult {
                        tool_use_id,
                        content,
                        is_error: is_error.unwrap_or(false),
                    },
                })
            }
            _ => Ok(Self::Unsupported { kind }),
        }
    }
}

/// A tool definition.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolDefinition {
    /// Absent or `custom` for client tools; anything else is an Anthropic server tool
    /// (`web_search_…`, `bash_…`, …), which this server rejects.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Tool name the model calls.
    #[serde(default)]
    pub name: String,
    /// What the tool does, shown to the model.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema of the tool's input object.
    #[serde(default)]
    pub input_schema: Option<Value>,
    /// Prompt-caching hint; accepted and ignored (prefix reuse is automatic here).
    #[serde(default)]
    pub cache_control: Option<Value>,
    /// `true`: a call the model makes to this tool is held to `input_schema` by constrained
    /// decoding (see the README's structured outputs).
    #[serde(default)]
    pub strict: Option<bool>,
}

/// How the model should use the tools.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto {
        /// At most one tool call when true.
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must call some tool.
    Any {
        /// At most one tool call when true.
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must call the named tool.
    Tool {
        /// The tool to call.
        name: String,
        /// At most one tool call when true.
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must not call tools.
    None,
}

/// Names a JSON value's kind for error messages.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
