//! Responses request → engine request: input items (plus the stored conversation a
//! `previous_response_id` continues) into chat-template messages, function tools into the
//! OpenAI chat shape the templates and the tool parser expect, sampling and limits.

use std::collections::HashMap;

use mlx_serve_actors::tool_parser::ToolChoice;
use mlx_serve_engine::engine::{ChatMessage, GenerateRequest, Prompt, ToolCall};
use serde_json::{json, Value};

use super::request::{Content, Input, InputItem, ResponsesRequest};
use crate::config::ModelSettings;
use crate::error::ApiError;
use crate::openai::common::{check_max_tokens, SamplingInput};
use crate::pipeline::seams::ToolOptions;

/// One turn of a conversation, as the store keeps it: what a later `previous_response_id`
/// request puts in front of its own input.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Turn {
    /// A message; `developer` is already `system`.
    Message {
        /// `system`, `user` or `assistant`.
        role: String,
        /// Text parts joined.
        text: String,
    },
    /// The model called a function.
    Call {
        /// `call_…`, what the output item answers.
        call_id: String,
        /// Function name.
        name: String,
        /// Arguments JSON text.
        arguments: String,
    },
    /// The client's result of a call.
    Output {
        /// The call answered.
        call_id: String,
        /// Result text.
        output: String,
    },
}

/// A validated request in engine terms.
#[derive(Debug, Clone)]
pub struct Translated {
    /// What the engine runs.
    pub request: GenerateRequest,
    /// `tool_choice` and `parallel_tool_calls`.
    pub tools: ToolOptions,
    /// The stored history followed by this request's input: what a stored response continues.
    pub conversation: Vec<Turn>,
}

/// Item types that only hosted tools produce; sent back, they are dropped like `reasoning`.
const DROPPED_ITEMS: [&str; 8] = [
    "reasoning",
    "web_search_call",
    "file_search_call",
    "image_generation_call",
    "code_interpreter_call",
    "computer_call",
    "mcp_list_tools",
    "compaction",
];

/// Validate `req` and build the engine request on top of `history` (the conversation of the
/// `previous_response_id`, empty without one).
pub fn translate(
    req: &ResponsesRequest,
    history: &[Turn],
    model: &ModelSettings,
) -> Result<Translated, ApiError> {
    check_text_format(req)?;
    let input = input_turns(req.input.as_ref())?;
    if input.is_empty() && history.is_empty() {
        return Err(ApiError::invalid("input", "input must not be empty"));
    }
    check_call_ids(history, &input)?;
    let mut conversation = history.to_vec();
    conversation.extend(input);
    let tools = function_tools(req.tools.as_deref().unwrap_or_default())?;
    let choice = tool_choice(req.tool_choice.as_ref(), &tools)?;
    let options = ToolOptions {
        choice,
        parallel: req.parallel_tool_calls.unwrap_or(true),
    };
    let max_tokens = check_max_tokens("max_output_tokens", req.max_output_tokens)?
        .or((model.default_max_tokens > 0).then_some(model.default_max_tokens));
    let sampling = SamplingInput {
        temperature: req.temperature,
        top_p: req.top_p,
        ..SamplingInput::default()
    }
    .resolve(&model.sampling)?;
    let prompt_tools = if options.choice == ToolChoice::None {
        // As on the chat route: the model is not tempted by tools it may not call.
        Vec::new()
    } else {
        tools
    };
    Ok(Translated {
        request: GenerateRequest {
            prompt: Prompt::Chat {
                messages: chat_messages(req.instructions.as_deref(), &conversation),
                tools: prompt_tools,
                add_generation_prompt: true,
                template_kwargs: Default::default(),
            },
            sampling,
            max_tokens,
            stop: Vec::new(),
            logprobs: None,
            constraint: None,
            reasoning: None,
            encoded: None,
        },
        tools: options,
        conversation,
    })
}

/// `text.format`: plain text only until constrained decoding lands; a structured format would
/// otherwise come back as unconstrained prose.
fn check_text_format(req: &ResponsesRequest) -> Result<(), ApiError> {
    let Some(format) = req.text.as_ref().and_then(|t| t.format.as_ref()) else {
        return Ok(());
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(()),
        Some(kind @ ("json_schema" | "json_object")) => Err(ApiError::invalid(
            "text.format",
            format!(
                "text.format `{kind}` is not supported by this server yet (no constrained \
                 decoding); use `text` and ask for JSON in the prompt"
            ),
        )
        .with_code("unsupported_value")),
        _ => Err(ApiError::invalid(
            "text.format.type",
            format!("invalid text.format {format}: expected {{\"type\": \"text\"}}"),
        )),
    }
}

/// The request's `input` as turns.
pub fn input_turns(input: Option<&Input>) -> Result<Vec<Turn>, ApiError> {
    let items = match input {
        None => return Ok(Vec::new()),
        Some(Input::Text(text)) => {
            return Ok(vec![Turn::Message {
                role: "user".into(),
                text: text.clone(),
            }])
        }
        Some(Input::Items(items)) => items,
    };
    let mut turns = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(turn) = item_turn(i, item)? {
            turns.push(turn);
        }
    }
    Ok(turns)
}

fn item_turn(i: usize, item: &InputItem) -> Result<Option<Turn>, ApiError> {
    let at = format!("input[{i}]");
    let kind = item.kind.as_deref().unwrap_or("message");
    let field = |name: &str, v: &Option<String>| -> Result<String, ApiError> {
        v.clone().ok_or_else(|| {
            ApiError::invalid(
                format!("{at}.{name}"),
                format!("a `{kind}` item needs `{name}`"),
            )
        })
    };
    match kind {
        "message" => {
            let role = match item.role.as_deref() {
                Some("developer" | "system") => "system",
                Some(r @ ("user" | "assistant")) => r,
                Some(other) => {
                    return Err(ApiError::invalid(
                        format!("{at}.role"),
                        format!(
                            "invalid role `{other}`: expected user, assistant, system or developer"
                        ),
                    ))
                }
                None => {
                    return Err(ApiError::invalid(
                        format!("{at}.role"),
                        "a message needs `role`",
                    ))
                }
            };
            let Some(content) = &item.content else {
                return Err(ApiError::invalid(
                    format!("{at}.content"),
                    "a message needs `content`",
                ));
            };
            Ok(Some(Turn::Message {
                role: role.into(),
                text: content_text(&format!("{at}.content"), content)?,
            }))
        }
        "function_call" => Ok(Some(Turn::Call {
            call_id: field("call_id", &item.call_id)?,
            name: field("name", &item.name)?,
            arguments: item.arguments.clone().unwrap_or_else(|| "{}".into()),
        })),
        "function_call_output" => Ok(Some(Turn::Output {
            call_id: field("call_id", &item.call_id)?,
            output: output_text(&format!("{at}.output"), item.output.as_ref())?,
        })),
        k if DROPPED_ITEMS.contains(&k) => {
            tracing::debug!(item = k, "input item dropped from the prompt");
            Ok(None)
        }
        other => Err(ApiError::invalid(
            format!("{at}.type"),
            format!(
                "input items of type `{other}` are not supported; expected message, \
                 function_call, function_call_output or reasoning"
            ),
        )),
    }
}

fn content_text(at: &str, content: &Content) -> Result<String, ApiError> {
    match content {
        Content::Text(t) => Ok(t.clone()),
        Content::Parts(parts) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let text = match part.kind.as_str() {
                    "input_text" | "output_text" | "text" => part.text.as_deref(),
                    "refusal" => part.refusal.as_deref().or(part.text.as_deref()),
                    other => {
                        return Err(ApiError::invalid(
                            format!("{at}[{j}].type"),
                            format!(
                                "content parts of type `{other}` are not supported; only text \
                                 parts are (the served model has no vision or file input)"
                            ),
                        ))
                    }
                };
                let Some(text) = text else {
                    return Err(ApiError::invalid(
                        format!("{at}[{j}].text"),
                        "a text part needs `text`",
                    ));
                };
                texts.push(text);
            }
            Ok(texts.concat())
        }
    }
}

/// A function result: a string, or text parts (anything else is passed on as JSON text).
fn output_text(at: &str, output: Option<&Value>) -> Result<String, ApiError> {
    match output {
        None => Err(ApiError::invalid(
            at,
            "a `function_call_output` item needs `output`",
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let parts: Vec<super::request::ContentPart> =
                serde_json::from_value(Value::Array(parts.clone()))
                    .map_err(|e| ApiError::invalid(at, format!("invalid output parts: {e}")))?;
            content_text(at, &Content::Parts(parts))
        }
        Some(other) => Ok(other.to_string()),
    }
}

/// Every `function_call_output` must answer a `function_call` made earlier in the
/// conversation (the stored history or this input).
fn check_call_ids(history: &[Turn], input: &[Turn]) -> Result<(), ApiError> {
    let mut known: Vec<&str> = history
        .iter()
        .filter_map(|t| match t {
            Turn::Call { call_id, .. } => Some(call_id.as_str()),
            _ => None,
        })
        .collect();
    for (i, turn) in input.iter().enumerate() {
        match turn {
            Turn::Call { call_id, .. } => known.push(call_id),
            Turn::Output { call_id, .. } if !known.contains(&call_id.as_str()) => {
                return Err(ApiError::invalid(
                    format!("input[{i}].call_id"),
                    format!("No tool call found for function call output with call_id {call_id}."),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Turns as chat-template messages: `instructions` and leading system messages as one system
/// message; calls attached to the assistant turn before them; outputs as `tool` messages named
/// after the function they answer.
pub fn chat_messages(instructions: Option<&str>, turns: &[Turn]) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(turns.len() + 1);
    if let Some(text) = instructions.filter(|t| !t.is_empty()) {
        out.push(message("system", text));
    }
    let mut names: HashMap<&str, &str> = HashMap::new();
    for turn in turns {
        match turn {
            Turn::Message { role, text } => {
                let leading_system =
                    role == "system" && !out.is_empty() && out.iter().all(|m| m.role == "system");
                match out.last_mut() {
                    Some(prev) if leading_system => {
                        prev.content.push_str("\n\n");
                        prev.content.push_str(text);
                    }
                    _ => out.push(message(role, text)),
                }
            }
            Turn::Call {
                call_id,
                name,
                arguments,
            } => {
                names.insert(call_id, name);
                let call = ToolCall {
                    id: call_id.clone(),
                    name: name.clone(),
                    arguments: arguments.clone(),
                };
                match out.last_mut() {
                    Some(prev) if prev.role == "assistant" => prev.tool_calls.push(call),
                    _ => out.push(ChatMessage {
                        tool_calls: vec![call],
                        ..message("assistant", "")
                    }),
                }
            }
            Turn::Output { call_id, output } => out.push(ChatMessage {
                role: "tool".into(),
                content: output.clone(),
                tool_calls: Vec::new(),
                tool_call_id: Some(call_id.clone()),
                name: names.get(call_id.as_str()).map(|n| (*n).to_owned()),
            }),
        }
    }
    out
}

fn message(role: &str, text: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: text.into(),
        ..ChatMessage::default()
    }
}

/// Function tools in the chat shape (`{"type": "function", "function": {…}}`). Responses sends
/// them flat (`{"type": "function", "name", "parameters", …}`); the chat shape is accepted too.
/// Other tool types (`web_search`, `namespace`, `local_shell`, `custom`, …) have no meaning for a
/// local model: they are left out of the prompt with a log line.
pub fn function_tools(tools: &[Value]) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "function" {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
            tracing::info!(
                tool_type = kind,
                name,
                "tool of an unsupported type left out of the prompt"
            );
            continue;
        }
        if tool.get("function").is_some() {
            out.push(tool.clone());
            continue;
        }
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return Err(ApiError::invalid(
                format!("tools[{i}].name"),
                "a function tool needs `name`",
            ));
        };
        let mut function = json!({"name": name});
        for key in ["description", "parameters", "strict"] {
            if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                function[key] = v.clone();
            }
        }
        if function.get("parameters").is_none() {
            function["parameters"] = json!({"type": "object", "properties": {}});
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// `tool_choice` validated against the function tools. A choice of a hosted tool type
/// (`{"type": "web_search"}`, …) is refused: those tools are not run here.
fn tool_choice(value: Option<&Value>, tools: &[Value]) -> Result<ToolChoice, ApiError> {
    if let Some(kind) = value
        .and_then(|v| v.get("type"))
        .and_then(Value::as_str)
        .filter(|k| *k != "function")
    {
        return Err(ApiError::invalid(
            "tool_choice",
            format!(
                "tool_choice of type `{kind}` is not supported; use \"auto\", \"none\", \
                 \"required\" or {{\"type\": \"function\", \"name\": …}}"
            ),
        ));
    }
    crate::openai::tools::tool_choice(value, tools)
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
