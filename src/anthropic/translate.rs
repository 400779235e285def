//! Anthropic request → engine request: messages into the OpenAI/Hugging Face chat-template shape,
//! tools into OpenAI function definitions, sampling and stop settings.

use std::collections::HashMap;

use mlx_serve_engine::engine::{
    ChatMessage, Constraint, GenerateRequest, Prompt, ReasoningSpec, SamplingParams, ToolCall,
};
use mlx_serve_engine::guided;
use serde_json::{json, Value};

use super::request::{
    ContentBlock, CountTokensRequest, InputMessage, MessageContent, MessagesRequest, ToolChoice,
    ToolDefinition,
};
use crate::error::ApiError;

/// Anthropic's documented default temperature. Followed as is (not replaced by greedy) so a
/// client that leaves it out gets the sampling it would get from Anthropic.
pub const DEFAULT_TEMPERATURE: f32 = 1.0;

/// How the tool parser should treat the model's tool calls (from `tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolMode {
    /// No tools were given: plain text, no tool parsing.
    NoTools,
    /// `auto`: the model may call tools.
    Auto,
    /// `any`: the model must call some tool (OpenAI's `required`).
    Required,
    /// `tool`: the model must call this tool.
    Function(String),
    /// `none`: tools stay in the prompt, but calls are not parsed.
    None,
}

/// A validated `/v1/messages` request in engine terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// What the engine runs.
    pub request: GenerateRequest,
    /// Tool-call policy for the tool parser.
    pub tool_mode: ToolMode,
    /// False when `disable_parallel_tool_use` asks for at most one call.
    pub parallel_tool_calls: bool,
    /// The client asked for server-sent events.
    pub stream: bool,
}

/// Validates a `/v1/messages` request and translates it for the engine. Errors are 400s naming
/// the offending field.
pub fn to_generate(req: &MessagesRequest) -> Result<Translated, ApiError> {
    check_model(&req.model)?;
    let max_tokens = match req.max_tokens {
        None => return Err(ApiError::field("max_tokens", "Field required")),
        Some(n) if n < 1 => {
            return Err(ApiError::field(
                "max_tokens",
                format!("must be at least 1, got {n}"),
            ))
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let mut prompt = to_prompt(req.system.as_ref(), &req.messages, req.tools.as_deref())?;
    let budget = super::thinking::apply(&mut prompt, req.thinking.as_ref())?;
    let (tool_mode, parallel_tool_calls) = tool_mode(
        req.tool_choice.as_ref(),
        req.tools.as_deref().unwrap_or_default(),
    )?;
    Ok(Translated {
        request: GenerateRequest {
            prompt,
            sampling: sampling(req)?,
            max_tokens: Some(max_tokens),
            stop: stop_sequences(req.stop_sequences.as_deref().unwrap_or_default())?,
            logprobs: None,
            constraint: output_constraint(req)?,
            // The markers are filled in by the pipeline, which knows the model's format.
            reasoning: budget.map(|b| ReasoningSpec {
                budget: Some(b),
                ..ReasoningSpec::default()
            }),
            encoded: None,
        },
        tool_mode,
        parallel_tool_calls,
        stream: req.stream.unwrap_or(false),
    })
}

/// Validates a `/v1/messages/count_tokens` request; the engine counts the returned prompt.
pub fn count_tokens_prompt(req: &CountTokensRequest) -> Result<Prompt, ApiError> {
    check_model(&req.model)?;
    let mut prompt = to_prompt(req.system.as_ref(), &req.messages, req.tools.as_deref())?;
    super::thinking::apply(&mut prompt, req.thinking.as_ref())?;
    tool_mode(
        req.tool_choice.as_ref(),
        req.tools.as_deref().unwrap_or_default(),
    )?;
    Ok(prompt)
}

fn check_model(model: &str) -> Result<(), ApiError> {
    if model.trim().is_empty() {
        return Err(ApiError::field("model", "Field required"));
    }
    Ok(())
}

/// System prompt, messages and tools as a chat-template prompt.
pub fn to_prompt(
    system: Option<&MessageContent>,
    messages: &[InputMessage],
    tools: Option<&[ToolDefinition]>,
) -> Result<Prompt, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::field(
            "messages",
            "at least one message is required",
        ));
    }
    let mut out = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = system {
        let text = text_only(system, "system")?;
        if !text.is_empty() {
            out.push(chat("system", text));
        }
    }
    // Tool results name the tool they answer; some templates render that name.
    let mut tool_names: HashMap<String, String> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role.as_str() {
            "user" => user_turn(&m.content, &at, &tool_names, &mut out)?,
            "assistant" => {
                let turn = assistant_turn(&m.content, &at)?;
                for c in &turn.tool_calls {
                    tool_names.insert(c.id.clone(), c.name.clone());
                }
                push_merged(&mut out, turn);
            }
            // Current Claude Code sends its environment block as a `system` turn after the user
            // turn. Kept in place; the chat template merges it into the system prompt when it
            // renders only one.
            "system" | "developer" => {
                let text = text_only(&m.content, &format!("{at}.content"))?;
                if !text.trim().is_empty() {
                    out.push(chat("system", text));
                }
            }
            other => {
                return Err(ApiError::field(
                    format!("{at}.role"),
                    format!("must be `user`, `assistant` or `system`, got `{other}`"),
                ))
            }
        }
    }
    if messages.last().is_some_and(|m| m.role == "assistant") {
        // A trailing assistant turn asks Anthropic to continue it ("prefill"); the chat template
        // would close it and start a new turn instead, so refuse rather than answer differently.
        return Err(ApiError::field(
            format!("messages[{}]", messages.len() - 1),
            "a final assistant message (prefill) is not supported by this server; end with a user message",
        ));
    }
    Ok(Prompt::Chat {
        messages: out,
        tools: tools.map(openai_tools).transpose()?.unwrap_or_default(),
        add_generation_prompt: true,
        template_kwargs: Default::default(),
    })
}

fn chat(role: &str, content: String) -> ChatMessage {
    ChatMessage {
        role: role.to_owned(),
        content,
        ..ChatMessage::default()
    }
}

/// Anthropic combines consecutive turns of the same role into one; so does the translation.
fn push_merged(out: &mut Vec<ChatMessage>, msg: ChatMessage) {
    if let Some(prev) = out.last_mut() {
        if prev.role == msg.role && (msg.role == "user" || msg.role == "assistant") {
            if !msg.content.is_empty() {
                if !prev.content.is_empty() {
                    prev.content.push('\n');
                }
                prev.content.push_str(&msg.content);
            }
            prev.tool_calls.extend(msg.tool_calls);
            return;
        }
    }
    out.push(msg);
}

/// A user turn: one `tool` message per tool_result (Anthropic puts them first), then the text.
fn user_turn(
    content: &MessageContent,
    at: &str,
    tool_names: &HashMap<String, String>,
    out: &mut Vec<ChatMessage>,
) -> Result<(), ApiError> {
    let blocks = match content {
        MessageContent::Text(t) => {
            push_merged(out, chat("user", t.clone()));
            return Ok(());
        }
        MessageContent::Blocks(b) => b,
    };
    let mut texts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        match block {
            ContentBlock::Text { text } if text.is_empty() => {}
            ContentBlock::Text { text } => texts.push(text.as_str()),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let mut text = match content {
                    Some(c) => text_only(c, &format!("{at}.content"))?,
                    None => String::new(),
                };
                if *is_error {
                    text = format!("Error: {text}");
                }
                out.push(ChatMessage {
                    role: "tool".to_owned(),
                    content: text,
                    tool_calls: Vec::new(),
                    tool_call_id: Some(tool_use_id.clone()),
                    name: tool_names.get(tool_use_id).cloned(),
                });
            }
            ContentBlock::ToolUse { .. } => {
                return Err(ApiError::field(
                    at,
                    "`tool_use` blocks belong in assistant messages",
                ))
            }
            ContentBlock::Thinking | ContentBlock::RedactedThinking => {}
            other => return Err(unsupported(other, &at)),
        }
    }
    if !texts.is_empty() {
        push_merged(out, chat("user", texts.join("\n")));
    }
    Ok(())
}

fn assistant_turn(content: &MessageContent, at: &str) -> Result<ChatMessage, ApiError> {
    let blocks = match content {
        MessageContent::Text(t) => return Ok(chat("assistant", t.clone())),
        MessageContent::Blocks(b) => b,
    };
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        match block {
            ContentBlock::Text { text } if text.is_empty() => {}
            ContentBlock::Text { text } => texts.push(text.as_str()),
            ContentBlock::ToolUse { id, name, input } => {
                let input = if input.is_null() {
                    json!({})
                } else {
                    input.clone()
                };
                if !input.is_object() {
                    return Err(ApiError::field(format!("{at}.input"), "must be an object"));
                }
                tool_calls.push(ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: input.to_string(),
                });
            }
            ContentBlock::ToolResult { .. } => {
                return Err(ApiError::field(
                    at,
                    "`tool_result` blocks belong in user messages",
                ))
            }
            ContentBlock::Thinking | ContentBlock::RedactedThinking => {}
            other => return Err(unsupported(other, &at)),
        }
    }
    let mut content = texts.join("\n");
    if !tool_calls.is_empty() && content.trim().is_empty() {
        content.clear();
    }
    Ok(ChatMessage {
        role: "assistant".to_owned(),
        content,
        tool_calls,
        tool_call_id: None,
        name: None,
    })
}

/// Joins text blocks; anything else in a place that only takes text is a 400.
fn text_only(content: &MessageContent, at: &str) -> Result<String, ApiError> {
    match content {
        MessageContent::Text(t) => Ok(t.clone()),
        MessageContent::Blocks(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, block) in blocks.iter().enumerate() {
                match block {
                    ContentBlock::Text { text } if text.is_empty() => {}
                    ContentBlock::Text { text } => texts.push(text.as_str()),
                    other => return Err(unsupported(other, &format!("{at}[{j}]"))),
                }
            }
            Ok(texts.join("\n"))
        }
    }
}

fn unsupported(block: &ContentBlock, at: &str) -> ApiError {
    let why = match block {
        ContentBlock::Image => {
            "image content is not supported: the served model has no vision".to_owned()
        }
        ContentBlock::Unsupported { kind } => {
            format!("content blocks of type `{kind}` are not supported by this server")
        }
        ContentBlock::Text { .. } => "`text` block not allowed here".to_owned(),
        ContentBlock::ToolUse { .. } => "`tool_use` block not allowed here".to_owned(),
        ContentBlock::ToolResult { .. } => "`tool_result` block not allowed here".to_owned(),
        ContentBlock::Thinking | ContentBlock::RedactedThinking => {
            "thinking blocks are not allowed here".to_owned()
        }
    };
    ApiError::field(at, why)
}

/// Anthropic tool definitions as OpenAI function tools (what HF chat templates expect).
fn openai_tools(tools: &[ToolDefinition]) -> Result<Vec<Value>, ApiError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let at = format!("tools[{i}]");
            if let Some(kind) = t.kind.as_deref().filter(|k| *k != "custom") {
                return Err(ApiError::field(
                    format!("{at}.type"),
                    format!(
                        "server tool `{kind}` is not supported by this server; \
                         only client tools with an `input_schema` are"
                    ),
                ));
            }
            if t.name.is_empty() {
                return Err(ApiError::field(format!("{at}.name"), "Field required"));
            }
            let schema = match &t.input_schema {
                Some(s) if s.is_object() => s.clone(),
                Some(_) => {
                    return Err(ApiError::field(
                        format!("{at}.input_schema"),
                        "must be a JSON Schema object",
                    ))
                }
                None => {
                    return Err(ApiError::field(
                        format!("{at}.input_schema"),
                        "Field required",
                    ))
                }
            };
            let mut function = json!({"name": t.name, "parameters": schema});
            if let Some(d) = &t.description {
                function["description"] = json!(d);
            }
            if t.strict == Some(true) {
                function["strict"] = json!(true);
            }
            Ok(json!({"type": "function", "function": function}))
        })
        .collect()
}

/// The constraint of `output_config.format` or the beta `output_format` (`{"type":
/// "json_schema", "schema"}`), compiled once here: a schema that cannot be enforced is a 400
/// naming the field.
fn output_constraint(req: &MessagesRequest) -> Result<Option<Constraint>, ApiError> {
    let config_format = req
        .output_config
        .as_ref()
        .and_then(|c| c.format.as_ref())
        .filter(|f| !f.is_null());
    let beta = req.output_format.as_ref().filter(|f| !f.is_null());
    let (at, format) = match (config_format, beta) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "output_format",
                "use either output_config.format or output_format, not both",
            ))
        }
        (Some(f), None) => ("output_config.format", f),
        (None, Some(f)) => ("output_format", f),
        (None, None) => return Ok(None),
    };
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => {}
        Some(other) => {
            return Err(ApiError::field(
                format!("{at}.type"),
                format!("format type `{other}` is not supported; use `json_schema`"),
            ))
        }
        None => return Err(ApiError::field(format!("{at}.type"), "Field required")),
    }
    let schema = match format.get("schema") {
        Some(s) if s.is_object() => s.clone(),
        Some(_) => {
            return Err(ApiError::field(
                format!("{at}.schema"),
                "must be a JSON Schema object",
            ))
        }
        None => return Err(ApiError::field(format!("{at}.schema"), "Field required")),
    };
    let constraint = Constraint::JsonSchema(schema);
    guided::check(&constraint).map_err(|e| {
        ApiError::field(
            format!("{at}.schema"),
            format!("the schema cannot be enforced: {e}"),
        )
    })?;
    Ok(Some(constraint))
}

/// A forced call is generated under the tool's `input_schema`: one that cannot be enforced is
/// a 400 naming that tool.
fn check_forced_schemas(tools: &[ToolDefinition], only: Option<&str>) -> Result<(), ApiError> {
    for (i, t) in tools.iter().enumerate() {
        if only.is_some_and(|name| name != t.name) {
            continue;
        }
        let Some(schema) = t.input_schema.as_ref().filter(|s| s.is_object()) else {
            continue;
        };
        guided::check(&Constraint::JsonSchema(schema.clone())).map_err(|e| {
            ApiError::field(
                format!("tools[{i}].input_schema"),
                format!(
                    "the schema of tool `{}` cannot be enforced for tool_choice: {e}",
                    t.name
                ),
            )
        })?;
    }
    Ok(())
}

/// The tool policy `tool_choice` asks for (validated against `tools`) and whether parallel
/// calls are allowed.
pub fn tool_mode(
    choice: Option<&ToolChoice>,
    tools: &[ToolDefinition],
) -> Result<(ToolMode, bool), ApiError> {
    let needs_tools = |what: &str| {
        ApiError::field(
            "tool_choice",
            format!("`{what}` may only be specified while providing tools"),
        )
    };
    Ok(match choice {
        None if tools.is_empty() => (ToolMode::NoTools, true),
        None => (ToolMode::Auto, true),
        Some(ToolChoice::None) => (ToolMode::None, true),
        Some(ToolChoice::Auto {
            disable_parallel_tool_use: d,
        }) => {
            let mode = if tools.is_empty() {
                ToolMode::NoTools
            } else {
                ToolMode::Auto
            };
            (mode, !d.unwrap_or(false))
        }
        Some(ToolChoice::Any {
            disable_parallel_tool_use: d,
        }) => {
            if tools.is_empty() {
                return Err(needs_tools("any"));
            }
            check_forced_schemas(tools, None)?;
            (ToolMode::Required, !d.unwrap_or(false))
        }
        Some(ToolChoice::Tool {
            name,
            disable_parallel_tool_use: d,
        }) => {
            if tools.is_empty() {
                return Err(needs_tools("tool"));
            }
            if !tools.iter().any(|t| &t.name == name) {
                return Err(ApiError::field(
                    "tool_choice.name",
                    format!("no tool named `{name}` in `tools`"),
                ));
            }
            check_forced_schemas(tools, Some(name))?;
            (ToolMode::Function(name.clone()), !d.unwrap_or(false))
        }
    })
}

fn sampling(req: &MessagesRequest) -> Result<SamplingParams, ApiError> {
    let unit = |name: &str, v: Option<f64>| -> Result<Option<f32>, ApiError> {
        match v {
            Some(x) if !(0.0..=1.0).contains(&x) => Err(ApiError::field(
                name,
                format!("must be between 0 and 1, got {x}"),
            )),
            Some(x) => Ok(Some(x as f32)),
            None => Ok(None),
        }
    };
    let mut temperature = unit("temperature", req.temperature)?.unwrap_or(DEFAULT_TEMPERATURE);
    let top_p = unit("top_p", req.top_p)?.unwrap_or(1.0);
    if top_p == 0.0 {
        // The limit of an ever smaller nucleus is the single most likely token.
        temperature = 0.0;
    }
    let top_k = match req.top_k {
        Some(k) if k < 0 => {
            return Err(ApiError::field(
                "top_k",
                format!("must be at least 0, got {k}"),
            ))
        }
        Some(k) => usize::try_from(k).unwrap_or(usize::MAX),
        None => 0,
    };
    Ok(SamplingParams {
        temperature,
        top_p: if top_p == 0.0 { 1.0 } else { top_p },
        top_k,
        ..SamplingParams::default()
    })
}

fn stop_sequences(stops: &[String]) -> Result<Vec<String>, ApiError> {
    for (i, s) in stops.iter().enumerate() {
        if s.is_empty() {
            return Err(ApiError::field(
                format!("stop_sequences[{i}]"),
                "must not be empty",
            ));
        }
    }
    Ok(stops.to_vec())
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
