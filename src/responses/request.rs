//! `POST /v1/responses` request wire types. Field names are exactly OpenAI's; unknown fields
//! are ignored, as OpenAI's servers ignore them.

use serde::Deserialize;
use serde_json::Value;

/// The request body.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    /// Model id.
    pub model: String,
    /// How long the model stays loaded after this request (Ollama's `keep_alive`).
    #[serde(default)]
    pub keep_alive: Option<crate::keep_alive::KeepAlive>,
    /// A user message as a string, or a list of input items.
    #[serde(default)]
    pub input: Option<Input>,
    /// A system (developer) message inserted first; not carried over by `previous_response_id`.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Tool definitions; only `function` tools reach the prompt, other types are dropped.
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto`, `required` or `{"type": "function", "name": …}`.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// `false`: at most one function call per response (default `true`).
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// Upper bound on generated tokens.
    #[serde(default)]
    pub max_output_tokens: Option<i64>,
    /// Sampling temperature, 0..=2.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Output format: `{"format": {"type": "text"}}`; structured formats are refused for now.
    #[serde(default)]
    pub text: Option<TextConfig>,
    /// Keep the response for `previous_response_id` and `GET /v1/responses/{id}` (default `true`).
    #[serde(default)]
    pub store: Option<bool>,
    /// Continue the conversation of a stored response.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// Up to 16 string pairs, echoed back.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Extra output to include (`reasoning.encrypted_content`, …); accepted and ignored.
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// Reasoning options (`effort`, `summary`); accepted and ignored: no reasoning model here.
    #[serde(default)]
    pub reasoning: Option<Value>,
    /// A hint for prompt caching; ignored (prefix reuse is automatic).
    #[serde(default)]
    pub prompt_cache_key: Option<String>,
    /// Client facts Codex sends; ignored.
    #[serde(default)]
    pub client_metadata: Option<Value>,
    /// End-user id; echoed, not used.
    #[serde(default)]
    pub user: Option<String>,
    /// `auto` or `disabled`; echoed (a prompt that does not fit is an error either way).
    #[serde(default)]
    pub truncation: Option<String>,
    /// Processing tier; echoed, not used.
    #[serde(default)]
    pub service_tier: Option<String>,
}

impl ResponsesRequest {
    /// True when the client asked for SSE.
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// True unless the client said `store: false`.
    pub fn storing(&self) -> bool {
        self.store.unwrap_or(true)
    }
}

/// `input`: a string (one user message) or items.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One user message.
    Text(String),
    /// Messages, function calls and their outputs, reasoning items.
    Items(Vec<InputItem>),
}

/// One input item. The fields of every supported item type in one tolerant struct, so that a
/// wrong or missing field is reported with its path instead of a generic parse error.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InputItem {
    /// `message` (the default when absent), `function_call`, `function_call_output`,
    /// `reasoning`, …
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Message role: `user`, `assistant`, `system` or `developer`.
    #[serde(default)]
    pub role: Option<String>,
    /// Message content: a string or content parts.
    #[serde(default)]
    pub content: Option<Content>,
    /// Item id (`msg_…`, `fc_…`); not needed here.
    #[serde(default)]
    pub id: Option<String>,
    /// The call a `function_call` makes or a `function_call_output` answers.
    #[serde(default)]
    pub call_id: Option<String>,
    /// Function name of a `function_call`.
    #[serde(default)]
    pub name: Option<String>,
    /// Arguments JSON text of a `function_call`.
    #[serde(default)]
    pub arguments: Option<String>,
    /// A `function_call_output`'s result: a string or content parts.
    #[serde(default)]
    pub output: Option<Value>,
}

/// Message content.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts; only text parts are supported.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// `input_text`, `output_text`, `refusal`, `input_image`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Text of a text part.
    #[serde(default)]
    pub text: Option<String>,
    /// Text of a `refusal` part.
    #[serde(default)]
    pub refusal: Option<String>,
}

/// `text`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TextConfig {
    /// `{"type": "text" | "json_object" | "json_schema", …}`.
    #[serde(default)]
    pub format: Option<Value>,
    /// `low`, `medium` or `high`; ignored.
    #[serde(default)]
    pub verbosity: Option<String>,
}
