//! Chat templates: Hugging Face's Jinja chat templates rendered with minijinja.
//!
//! Rendering follows `transformers`' `apply_chat_template`: blocks trimmed (`trim_blocks`,
//! `lstrip_blocks`), Python string/dict methods (`.strip()`, `.items()`, … via
//! minijinja-contrib's pycompat), a `tojson` that writes like `json.dumps(ensure_ascii=False)`
//! (no HTML escaping, `indent` supported), `raise_exception(msg)`, `strftime_now(fmt)`, and the
//! variables `messages`, `tools` (none when there are no tools), `add_generation_prompt`,
//! `bos_token`, `eos_token`.

mod gemma;
mod json;

pub use gemma::GEMMA_TURN_TEMPLATE;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::json;

use crate::engine::ChatMessage;

/// Prefix that marks errors raised by the template itself through `raise_exception`.
const RAISED: &str = "raise_exception: ";
const TEMPLATE_NAME: &str = "chat";

/// ChatML, used when a model ships no template. Messages become
/// `<|im_start|>{role}\n{content}<|im_end|>\n`; tools are listed in the system turn and tool
/// calls written as `<tool_call>{"name", "arguments"}</tool_call>` (the Hermes/Qwen2.5
/// convention, which the tool parser understands); tool results are `tool` turns.
pub const DEFAULT_CHATML_TEMPLATE: &str = r#"{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
{{- '# Tools\n\nYou may call functions. Their signatures are within <tools></tools>:\n<tools>' }}
{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}
{{- '\n</tools>\n\nTo call one, reply with <tool_call>{"name": <name>, "arguments": <args-json-object>}</tool_call><|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if not (tools and loop.first and message.role == 'system') %}
{{- '<|im_start|>' + message.role + '\n' + message.content }}
{%- for call in message.tool_calls or [] %}
{{- '\n<tool_call>\n{"name": "' + call.function.name + '", "arguments": ' + (call.function.arguments | tojson) + '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"#;

/// Why a template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// The template source does not compile.
    #[error("invalid chat template: {0}")]
    Syntax(String),
    /// The template rejected the conversation (`raise_exception`), e.g. roles out of order.
    #[error("{0}")]
    Raised(String),
    /// Rendering failed for another reason.
    #[error("chat template failed: {0}")]
    Render(String),
}

/// A compiled chat template with the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos: Option<String>,
    eos: Option<String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos`/`eos` become `bos_token`/`eos_token`.
    pub fn new(
        source: &str,
        bos: Option<String>,
        eos: Option<String>,
    ) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, strip_generation_tags(source))
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        Ok(Self {
            env,
            source: source.to_string(),
            bos,
            eos,
        })
    }

    /// [`DEFAULT_CHATML_TEMPLATE`], for models without a template.
    pub fn chatml(bos: Option<String>, eos: Option<String>) -> Self {
        match Self::new(DEFAULT_CHATML_TEMPLATE, bos, eos) {
            Ok(t) => t,
            // The constant is covered by tests; failing to compile it is a build defect.
            Err(e) => panic!("default ChatML template does not compile: {e}"),
        }
    }

    /// The template source as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation. Assistant tool calls are passed as OpenAI-style
    /// `tool_calls: [{"id", "type": "function", "function": {"name", "arguments"}}]` with the
    /// arguments parsed from their JSON text (kept as a string when not valid JSON); tool
    /// results keep `tool_call_id` and `name`. Empty `tools` is passed as none.
    ///
    /// System turns after the first message are rendered where they stand when the template
    /// allows it; a template that refuses them (raises) or silently drops their text gets them
    /// merged, in order, into one leading system message instead, so no system text is lost.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        self.render_with(
            messages,
            tools,
            add_generation_prompt,
            &serde_json::Map::new(),
        )
    }

    /// [`Self::render`] with extra template variables (`chat_template_kwargs`).
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let rendered = |messages: &[ChatMessage]| {
            self.render_as_is(messages, tools, add_generation_prompt, kwargs)
        };
        let later_system: Vec<&ChatMessage> = messages
            .iter()
            .skip(1)
            .filter(|m| m.role == "system")
            .collect();
        if later_system.is_empty() {
            return rendered(messages);
        }
        match rendered(messages) {
            Ok(text)
                if later_system
                    .iter()
                    .all(|m| text.contains(m.content.as_str())) =>
            {
                Ok(text)
            }
            in_place => {
                let merged = merge_system_turns(messages);
                rendered(&merged).or_else(|e| in_place.map_err(|_| e))
            }
        }
    }

    fn render_as_is(
        &self,
        messages: &[ChatMessage],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let messages: Vec<serde_json::Value> = messages.iter().map(message_value).collect();
        let tools = if tools.is_empty() {
            Value::from(())
        } else {
            Value::from_serialize(tools)
        };
        // The request's own variables first, so that they cannot replace these.
        let mut ctx: std::collections::BTreeMap<String, Value> = kwargs
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
            .collect();
        ctx.insert("messages".into(), Value::from_serialize(&messages));
        ctx.insert("tools".into(), tools);
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        ctx.insert("bos_token".into(), Value::from(self.bos.clone()));
        ctx.insert("eos_token".into(), Value::from(self.eos.clone()));
        let ctx = Value::from_serialize(&ctx);
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Render(describe(&e)))?;
        template.render(ctx).map_err(|e| match raised_message(&e) {
            Some(msg) => TemplateError::Raised(msg),
            None => TemplateError::Render(describe(&e)),
        })
    }

    /// Tool-call markers that appear in the template source, for tool-format detection:
    /// any of `<tool_call>` (Hermes/Qwen), `[TOOL_CALLS]` (Mistral), `<|python_tag|>`
    /// (Llama 3.1), `<|tool_call|>`, `<function=`, `functools[`.
    pub fn markers(&self) -> Vec<&'static str> {
        const KNOWN: &[&str] = &[
            "<tool_call>",
            "[TOOL_CALLS]",
            "<|python_tag|>",
            "<|tool_call|>",
            "<function=",
            "functools[",
        ];
        KNOWN
            .iter()
            .copied()
            .filter(|m| self.source.contains(m))
            .collect()
    }

    /// Whether the template reads `tools` at all.
    pub fn supports_tools(&self) -> bool {
        self.source.contains("tools")
    }
}

/// All system turns joined, in order, into one leading system message; the rest unchanged.
fn merge_system_turns(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    let system: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == "system")
        .map(|m| m.content.as_str())
        .collect();
    let mut out = Vec::with_capacity(messages.len());
    out.push(ChatMessage {
        role: "system".to_owned(),
        content: system.join("\n\n"),
        ..ChatMessage::default()
    });
    out.extend(messages.iter().filter(|m| m.role != "system").cloned());
    out
}

fn message_value(m: &ChatMessage) -> serde_json::Value {
    let mut v = json!({ "role": m.role, "content": m.content });
    if !m.tool_calls.is_empty() {
        let calls: Vec<serde_json::Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                let args = serde_json::from_str::<serde_json::Value>(&c.arguments)
                    .unwrap_or_else(|_| serde_json::Value::String(c.arguments.clone()));
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": args },
                })
            })
            .collect();
        v["tool_calls"] = calls.into();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = id.clone().into();
    }
    if let Some(name) = &m.name {
        v["name"] = name.clone().into();
    }
    v
}

/// HF's `tojson`: `json.dumps(x, ensure_ascii=False, indent=indent, sort_keys=sort_keys)`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<Value> = kwargs.get("sort_keys")?;
    let _: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let v = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(Value::from_safe_string(json::to_python_json(
        &v,
        indent,
        ensure_ascii.unwrap_or(false),
    )))
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED}{msg}"),
    ))
}

/// Python's `datetime.now().strftime(fmt)` for templates that print today's date.
fn strftime_now(fmt: String) -> Result<Value, Error> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item> = StrftimeItems::new(&fmt).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: bad format {fmt:?}"),
        ));
    }
    Ok(chrono::Local::now()
        .format_with_items(items.into_iter())
        .to_string()
        .into())
}

fn raised_message(e: &Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(mj) = err.downcast_ref::<Error>() {
            if let Some(msg) = mj.detail().and_then(|d| d.strip_prefix(RAISED)) {
                return Some(msg.to_string());
            }
        }
        cur = err.source();
    }
    None
}

fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Removes `{% generation %}` / `{% endgeneration %}` tags (a transformers extension that
/// marks assistant text for training masks and renders nothing).
fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let Some(len) = rest[start..].find("%}") else {
            break;
        };
        let tag = &rest[start..start + len + 2];
        let inner =
            tag[2..tag.len() - 2].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        out.push_str(&rest[..start]);
        if inner != "generation" && inner != "endgeneration" {
            out.push_str(tag);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
