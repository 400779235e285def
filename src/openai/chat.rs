//! `POST /v1/chat/completions` wire types and their normalization into a `GenerateRequest`.

use std::collections::BTreeMap;

use mlx_serve_actors::tool_parser::ToolChoice;
use mlx_serve_engine::engine::{ChatMessage, GenerateRequest, Prompt, TokenLogprob, ToolCall};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{
    check_max_tokens, choice_count, opt_int, Envelope, SamplingInput, StopSpec, StreamOptions,
};
use crate::config::ModelSettings;
use crate::error::ApiError;
use crate::pipeline::seams::ToolOptions;

/// The request body. Unknown fields are ignored, as OpenAI's servers do.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    /// Model id.
    pub model: String,
    /// How long the model stays loaded after this request (Ollama's `keep_alive`).
    #[serde(default)]
    pub keep_alive: Option<crate::keep_alive::KeepAlive>,
    /// The conversation.
    pub messages: Vec<ChatMessageIn>,
    /// Legacy name of `max_completion_tokens`.
    #[serde(default, deserialize_with = "opt_int")]
    pub max_tokens: Option<i64>,
    /// Upper bound on generated tokens.
    #[serde(default, deserialize_with = "opt_int")]
    pub max_completion_tokens: Option<i64>,
    /// Sampling temperature, 0..=2.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Top-k (extension).
    #[serde(default, deserialize_with = "opt_int")]
    pub top_k: Option<i64>,
    /// Min-p (extension).
    #[serde(default)]
    pub min_p: Option<f32>,
    /// Scheduling priority: lower runs sooner (vLLM's field; default 0).
    #[serde(default)]
    pub priority: Option<i64>,
    /// Sampling seed.
    #[serde(default, deserialize_with = "opt_int")]
    pub seed: Option<i64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<StopSpec>,
    /// Presence penalty, -2..=2.
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    /// Frequency penalty, -2..=2.
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// Repetition penalty (extension).
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    /// Return logprobs of the output tokens.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Alternatives per position, 0..=20 (needs `logprobs`).
    #[serde(default, deserialize_with = "opt_int")]
    pub top_logprobs: Option<i64>,
    /// Choices to generate, 1 ..= `MAX_CHOICES` (default 1).
    #[serde(default, deserialize_with = "opt_int")]
    pub n: Option<i64>,
    /// End-user id (logged, not used).
    #[serde(default)]
    pub user: Option<String>,
    /// Stream chunks over SSE.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Token id (as a string key) to a bias in [-100, 100] added to its logit.
    #[serde(default)]
    pub logit_bias: Option<BTreeMap<String, f64>>,
    /// Tool definitions, rendered into the prompt.
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto`, `required` or a named function.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// `false`: at most one tool call per reply (default `true`).
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// `{"type": "text" | "json_object" | "json_schema", …}`: enforced by constrained
    /// decoding; part of the response-cache key.
    #[serde(default)]
    pub response_format: Option<Value>,
    /// vLLM's extension: one of `json`, `regex`, `choice`, `grammar` (Lark), `json_object`.
    #[serde(default)]
    pub structured_outputs: Option<Value>,
    /// vLLM's extension: extra chat-template variables (`{"enable_thinking": false}` for Qwen3).
    #[serde(default)]
    pub chat_template_kwargs: Option<Value>,
}

/// One message of the request.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessageIn {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// A string or an array of content parts.
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Participant name.
    #[serde(default)]
    pub name: Option<String>,
    /// Calls made by an assistant turn.
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallIn>>,
    /// The call a `tool` message answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// The call of an assistant turn in the older functions protocol (before `tool_calls`).
    #[serde(default)]
    pub function_call: Option<FunctionCallIn>,
}

/// `content`: a string or parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts; only `text` parts are supported.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// Part type (`text`, `image_url`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// A tool call in an assistant message of the request.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolCallIn {
    /// Call id.
    #[serde(default)]
    pub id: Option<String>,
    /// The function called.
    pub function: FunctionCallIn,
}

/// `function` of a tool call.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionCallIn {
    /// Function name.
    pub name: String,
    /// Arguments as JSON text.
    #[serde(default)]
    pub arguments: String,
}

/// `function` is the role of a function result in conversations from before tool calls.
const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

fn content_text(i: usize, content: Option<MessageContent>) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(MessageContent::Text(t)) => Ok(t),
        Some(MessageContent::Parts(parts)) => {
            let mut out = String::new();
            for (j, part) in parts.into_iter().enumerate() {
                if part.kind != "text" {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].content[{j}].type"),
                        format!(
                            "content part type `{}` is not supported; only `text` is",
                            part.kind
                        ),
                    ));
                }
                let Some(text) = part.text else {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].content[{j}].text"),
                        "a text content part needs `text`",
                    ));
                };
                out.push_str(&text);
            }
            Ok(out)
        }
    }
}

impl ChatCompletionRequest {
    /// True when the client asked for SSE.
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// True when the client asked for the usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// `tool_choice` and `parallel_tool_calls`, validated against `tools`.
    pub fn tool_options(&self) -> Result<ToolOptions, ApiError> {
        let tools = self.tools.as_deref().unwrap_or_default();
        let choice = super::tools::tool_choice(self.tool_choice.as_ref(), tools)?;
        Ok(ToolOptions {
            choice,
            parallel: self.parallel_tool_calls.unwrap_or(true),
        })
    }

    /// `n`, validated: how many choices to generate.
    pub fn choices(&self) -> Result<usize, ApiError> {
        choice_count("n", self.n)
    }

    /// Validate every field and build the engine request (one choice's; see [`Self::choices`]).
    pub fn normalize(&self, model: &ModelSettings) -> Result<GenerateRequest, ApiError> {
        self.choices()?;
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages", "messages must not be empty"));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::invalid(
                    format!("messages[{i}].role"),
                    format!(
                        "invalid role `{}`: expected one of system, developer, user, assistant, \
                         tool, function",
                        m.role
                    ),
                ));
            }
            let legacy_call = m.function_call.iter().map(|f| (None, f));
            let tool_calls = m
                .tool_calls
                .iter()
                .flatten()
                .map(|c| (c.id.clone(), &c.function))
                .chain(legacy_call)
                .enumerate()
                .map(|(k, (id, f))| ToolCall {
                    id: id.unwrap_or_else(|| format!("call_{i}_{k}")),
                    name: f.name.clone(),
                    arguments: f.arguments.clone(),
                })
                .collect::<Vec<_>>();
            if m.content.is_none() && tool_calls.is_empty() && m.role != "assistant" {
                return Err(ApiError::invalid(
                    format!("messages[{i}].content"),
                    format!("messages[{i}] with role `{}` needs `content`", m.role),
                ));
            }
            // `developer` is OpenAI's newer name for `system`, and a `function` message is a
            // tool result in the older protocol; chat templates know only `system` and `tool`.
            let role = match m.role.as_str() {
                "developer" => "system",
                "function" => "tool",
                other => other,
            };
            messages.push(ChatMessage {
                role: role.to_owned(),
                content: content_text(i, m.content.clone())?,
                tool_calls,
                tool_call_id: m.tool_call_id.clone(),
                name: m.name.clone(),
            });
        }
        let mut tools = self.tools.clone().unwrap_or_default();
        super::tools::check_tools(&tools)?;
        super::common::check_response_format(self.response_format.as_ref())?;
        // `none` leaves the tools out of the prompt too, so the model is not tempted to call.
        if self.tool_options()?.choice == ToolChoice::None {
            tools.clear();
        }
        let max_tokens =
            match check_max_tokens("max_completion_tokens", self.max_completion_tokens)? {
                Some(m) => Some(m),
                None => check_max_tokens("max_tokens", self.max_tokens)?,
            };
        let max_tokens =
            max_tokens.or((model.default_max_tokens > 0).then_some(model.default_max_tokens));
        let logprobs = match (self.logprobs.unwrap_or(false), self.top_logprobs) {
            (_, Some(k)) if !(0..=20).contains(&k) => {
                return Err(ApiError::invalid(
                    "top_logprobs",
                    format!("top_logprobs must be between 0 and 20, got {k}"),
                ))
            }
            (false, Some(_)) => {
                return Err(ApiError::invalid(
                    "top_logprobs",
                    "top_logprobs needs `logprobs: true`",
                ))
            }
            (true, k) => Some(k.unwrap_or(0) as usize),
            (false, None) => None,
        };
        let sampling = SamplingInput {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            seed: self.seed,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            repetition_penalty: self.repetition_penalty,
            logit_bias: self.logit_bias.clone(),
        }
        .resolve(&model.sampling)?;
        Ok(GenerateRequest {
            prompt: Prompt::Chat {
                messages,
                tools,
                add_generation_prompt: true,
                template_kwargs: super::common::template_kwargs(
                    self.chat_template_kwargs.as_ref(),
                )?,
            },
            sampling,
            max_tokens,
            stop: StopSpec::into_list(self.stop.clone())?,
            logprobs,
            constraint: super::structured::request_constraint(
                self.response_format.as_ref(),
                self.structured_outputs.as_ref(),
            )?,
            reasoning: None,
            encoded: None,
        })
    }
}

/// A tool call in a response.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCallOut {
    /// Call id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The call.
    pub function: FunctionOut,
}

/// `function` of a response tool call.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionOut {
    /// Function name.
    pub name: String,
    /// Arguments as JSON text.
    pub arguments: String,
}

/// The assistant message of a non-streamed choice.
#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// Generated text (null when the turn only calls tools).
    pub content: Option<String>,
    /// Refusals are never generated here.
    pub refusal: Option<String>,
    /// The model's reasoning, when a reasoning parser kept it apart (vLLM / DeepSeek field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls, when the tool parser found some.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut>,
}

/// One alternative token in `top_logprobs`.
#[derive(Debug, Clone, Serialize)]
pub struct TopLogprob {
    /// Token text.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token.
    pub bytes: Vec<u8>,
}

/// Logprob of one generated token.
#[derive(Debug, Clone, Serialize)]
pub struct TokenLogprobOut {
    /// Token text.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token.
    pub bytes: Vec<u8>,
    /// Most likely alternatives.
    pub top_logprobs: Vec<TopLogprob>,
}

/// `choices[].logprobs`.
#[derive(Debug, Clone, Serialize)]
pub struct ChatLogprobs {
    /// One entry per generated token.
    pub content: Vec<TokenLogprobOut>,
    /// Never generated here.
    pub refusal: Option<Vec<TokenLogprobOut>>,
}

impl ChatLogprobs {
    /// Convert engine logprobs.
    pub fn from_engine(lps: &[TokenLogprob]) -> Self {
        Self {
            content: lps
                .iter()
                .map(|lp| TokenLogprobOut {
                    token: lp.token.clone(),
                    logprob: lp.logprob,
                    bytes: lp.bytes.clone(),
                    top_logprobs: lp
                        .top
                        .iter()
                        .map(|(token, bytes, logprob)| TopLogprob {
                            token: token.clone(),
                            logprob: *logprob,
                            bytes: bytes.clone(),
                        })
                        .collect(),
                })
                .collect(),
            refusal: None,
        }
    }
}

/// One choice of a non-streamed response.
#[derive(Debug, Clone, Serialize)]
pub struct ChatChoice {
    /// Always 0.
    pub index: usize,
    /// The answer.
    pub message: AssistantMessage,
    /// Logprobs when requested.
    pub logprobs: Option<ChatLogprobs>,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: &'static str,
}

/// The non-streamed response.
pub type ChatCompletion = Envelope<ChatChoice>;

/// A tool call fragment in a streamed delta.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCallDelta {
    /// Which call this fragment belongs to.
    pub index: usize,
    /// Call id, in the first fragment only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, in the first fragment only.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// Name (first fragment) and argument text.
    pub function: FunctionDelta,
}

/// `function` of a tool-call delta.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionDelta {
    /// Function name, in the first fragment only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Argument text fragment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// `delta` of a streamed choice.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta {
    /// `assistant`, in the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Text fragment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Reasoning fragment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool-call fragments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDelta>,
}

/// One choice of a chunk.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice {
    /// Always 0.
    pub index: usize,
    /// What changed.
    pub delta: Delta,
    /// Logprobs of the tokens in this delta.
    pub logprobs: Option<ChatLogprobs>,
    /// Set in the last content chunk.
    pub finish_reason: Option<&'static str>,
}

/// A streamed chunk.
pub type ChatCompletionChunk = Envelope<ChunkChoice>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn parse(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).expect("parses")
    }

    #[test]
    fn text_parts_are_joined_and_unknown_fields_ignored() {
        let r = parse(serde_json::json!({
            "model": "m", "whatever": 1,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
        }));
        let g = r.normalize(&ModelSettings::default()).unwrap();
        let Prompt::Chat { messages, .. } = g.prompt else {
            panic!("chat")
        };
        assert_eq!(messages[0].content, "ab");
    }

    #[test]
    fn developer_role_becomes_system() {
        let r = parse(
            serde_json::json!({"model": "m", "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "x"}]}),
        );
        let g = r.normalize(&ModelSettings::default()).unwrap();
        let Prompt::Chat { messages, .. } = g.prompt else {
            panic!("chat")
        };
        assert_eq!(messages[0].role, "system");
    }

    #[test]
    fn bad_role_names_the_message() {
        let r = parse(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]}),
        );
        let e = r.normalize(&ModelSettings::default()).unwrap_err();
        assert!(
            e.kind == ErrorKind::InvalidRequest && e.param.as_deref() == Some("messages[1].role")
        );
    }

    #[test]
    fn max_completion_tokens_wins_and_logprobs_need_flag() {
        let r = parse(
            serde_json::json!({"model": "m", "max_tokens": 5, "max_completion_tokens": 7,
            "logprobs": true, "top_logprobs": 3, "messages": [{"role": "user", "content": "x"}]}),
        );
        let g = r.normalize(&ModelSettings::default()).unwrap();
        assert_eq!(g.max_tokens, Some(7));
        assert_eq!(g.logprobs, Some(3));
        let r = parse(
            serde_json::json!({"model": "m", "top_logprobs": 3, "messages": [{"role": "user", "content": "x"}]}),
        );
        assert!(r.normalize(&ModelSettings::default()).is_err());
    }

    #[test]
    fn image_parts_are_rejected_with_their_path() {
        let r = parse(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
        );
        let e = r.normalize(&ModelSettings::default()).unwrap_err();
        assert!(
            e.kind == ErrorKind::InvalidRequest
                && e.param.as_deref() == Some("messages[0].content[0].type")
        );
    }
}
