//! Grammars that hold a reply to a format's own tool-call markup (constrained decoding, see
//! `mlx_serve_engine::guided`):
//!
//! - **forced** ([`forced_call_grammar`]), for `tool_choice: "required"` or a named function: the
//!   reply is one call, or up to [`MAX_PARALLEL_CALLS`] when parallel calls are allowed, to the
//!   allowed tools, each one's arguments following its `parameters` schema;
//! - **lazy** ([`lazy_call_grammar`]), for `tool_choice: "auto"` with a tool marked `strict:
//!   true`: prose until the model opens a call with the format's marker, then calls as above
//!   (strict tools' arguments per their schema, the others' any object).
//!
//! The grammars are llguidance Lark inside [`Constraint::ToolMarkup`], so each marker is the
//! model's special token where its vocabulary has one and text where it does not. Formats whose
//! calls are JSON naming the tool live here; those that write arguments parameter by parameter
//! (Qwen3-Coder, GLM, MiniMax, FunctionGemma, pythonic lists) in [`params`].

mod params;
#[cfg(test)]
mod tests;

use serde_json::{json, Value};

use super::{ToolChoice, ToolFormat, ToolSet};
use mlx_serve_engine::engine::Constraint;

/// Most calls one constrained reply may hold when parallel calls are allowed: a bound, so a
/// small model cannot keep opening calls until `max_tokens` cuts one in half.
pub const MAX_PARALLEL_CALLS: usize = 4;

/// How a grammar holds one tool's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Args {
    /// Per the tool's `parameters` schema.
    Schema,
    /// Any object (a tool that is not `strict`, under a lazy grammar).
    AnyObject,
}

/// One tool a grammar allows.
struct Allowed<'a> {
    name: &'a str,
    params: Value,
    args: Args,
}

impl Allowed<'_> {
    /// The schema the arguments are held to.
    fn schema(&self) -> Value {
        match self.args {
            Args::Schema => self.params.clone(),
            Args::AnyObject => json!({"type": "object"}),
        }
    }
}

/// A grammar under construction: its rules and the markers they refer to.
#[derive(Default)]
struct Builder {
    markers: Vec<String>,
    rules: Vec<String>,
}

impl Builder {
    fn marker(&mut self, text: &str) -> usize {
        match self.markers.iter().position(|m| m == text) {
            Some(i) => i,
            None => {
                self.markers.push(text.to_owned());
                self.markers.len() - 1
            }
        }
    }

    /// The marker `text` (its special token, or its text).
    fn mk(&mut self, text: &str) -> String {
        format!("mk{}", self.marker(text))
    }

    /// Any text up to and including the first `text`.
    fn till(&mut self, text: &str) -> String {
        format!("till{}", self.marker(text))
    }

    /// A new rule with this body; returns its name.
    fn rule(&mut self, body: String) -> String {
        let name = format!("r{}", self.rules.len());
        self.rules.push(format!("{name}: {body}"));
        name
    }

    /// A rule for a JSON value following `schema`, in the server's JSON layout.
    fn json(&mut self, schema: &Value) -> String {
        let schema = mlx_serve_engine::guided::with_layout(schema);
        self.rule(format!("%json {schema}"))
    }

    fn finish(self, start: String) -> Constraint {
        let mut lark = format!("start: {start}\n");
        for rule in self.rules {
            lark.push_str(&rule);
            lark.push('\n');
        }
        Constraint::ToolMarkup {
            lark,
            markers: self.markers,
        }
    }
}

/// `text` as a Lark string literal.
fn lit(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// `first`, then up to `n - 1` times `more`, nested so the bound needs no repetition syntax.
fn repeat(first: &str, more: &str, n: usize) -> String {
    if n <= 1 {
        return first.to_owned();
    }
    let mut tail = more.to_owned();
    for _ in 2..n {
        tail = format!("{more} ({tail})?");
    }
    format!("{first} ({tail})?")
}

/// `a | b | …` in parentheses.
fn either(options: &[String]) -> String {
    format!("({})", options.join(" | "))
}

/// A format's reply: the marker that opens it (the lazy grammar's trigger; `None` for formats
/// whose calls start with no marker) and what follows that marker.
struct Reply {
    open: Option<String>,
    rest: String,
    /// Whether prose may come before the calls in this format (not gpt-oss, whose replies start
    /// with a channel header of their own).
    prose_first: bool,
    /// Calls also written as bare JSON in prose (`{"name": "…", "arguments": {…}}`), which this
    /// format's parser reads too: a lazy grammar holds those from `{"name": "` on.
    bare_json: bool,
}

/// Where a bare JSON call starts, in the server's JSON layout.
const BARE_JSON: &str = "{\"name\": \"";

/// The JSON Schema of one call object of `format` for the tools `choice` allows; `None` when
/// no offered tool is allowed.
pub fn call_schema(format: ToolFormat, tools: &ToolSet, choice: &ToolChoice) -> Option<Value> {
    json_call_schema(format, &allowed(tools, choice, false))
}

fn json_call_schema(format: ToolFormat, tools: &[Allowed<'_>]) -> Option<Value> {
    let args_key = match format {
        ToolFormat::Llama3Json => "parameters",
        _ => "arguments",
    };
    let variants: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {"name": {"const": t.name}, args_key: t.schema()},
                "required": ["name", args_key],
                "additionalProperties": false
            })
        })
        .collect();
    match variants.len() {
        0 => None,
        1 => variants.into_iter().next(),
        _ => Some(json!({"anyOf": variants})),
    }
}

/// The tools `choice` allows, each held to its schema (`lazy`: only the strict ones).
fn allowed<'a>(tools: &'a ToolSet, choice: &ToolChoice, lazy: bool) -> Vec<Allowed<'a>> {
    tools
        .iter()
        .filter(|(name, _)| match choice {
            ToolChoice::Function(wanted) => wanted == name,
            _ => true,
        })
        .map(|(name, params)| Allowed {
            name,
            params: match params {
                Value::Object(_) => closed(params.clone()),
                Value::Bool(_) => params.clone(),
                _ => json!({"type": "object"}),
            },
            args: if lazy && !tools.is_strict(name) {
                Args::AnyObject
            } else {
                Args::Schema
            },
        })
        .collect()
}

/// `schema` with `additionalProperties: false` on every object that lists `properties` and says
/// nothing about other keys. A grammar that allowed any other key would let a small model invent
/// keys until `max_tokens` cut the call in half; the listed ones are what the tool takes (OpenAI's
/// strict mode makes schemas say so).
fn closed(mut schema: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(o) => {
                if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                    o.insert("additionalProperties".into(), Value::Bool(false));
                }
                for (key, child) in o.iter_mut() {
                    // Constants and examples are data, not schemas.
                    if !matches!(key.as_str(), "const" | "enum" | "default" | "examples") {
                        walk(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

/// The grammar that forces a reply of `format` to call the tools `choice` allows, or `None`
/// when the choice does not force a call or this format cannot be held by one here (then the
/// instruction and the check after the reply remain). `template` is the model's chat template,
/// which tells the dialects of a format apart (Mistral's `[ARGS]`, DeepSeek V3.1).
pub fn forced_call_grammar(
    format: ToolFormat,
    tools: &ToolSet,
    choice: &ToolChoice,
    parallel: bool,
    template: Option<&str>,
) -> Option<Constraint> {
    if !matches!(choice, ToolChoice::Required | ToolChoice::Function(_)) {
        return None;
    }
    let allowed = allowed(tools, choice, false);
    let mut b = Builder::default();
    let reply = reply(format, &mut b, &allowed, parallel, template)?;
    let start = match &reply.open {
        Some(open) => format!("{} {}", b.mk(open), reply.rest),
        None => reply.rest,
    };
    Some(b.finish(start))
}

/// The grammar for `tool_choice: "auto"` when a tool is marked `strict: true`: prose, or prose
/// and then calls once the model writes the format's opening marker, with strict tools'
/// arguments held to their schemas. `None` when no tool is strict or the format has no opening
/// marker to wait for (Llama 3 JSON, pythonic lists, gpt-oss).
pub fn lazy_call_grammar(
    format: ToolFormat,
    tools: &ToolSet,
    parallel: bool,
    template: Option<&str>,
) -> Option<Constraint> {
    if !tools.names().any(|n| tools.is_strict(n)) {
        return None;
    }
    let allowed = allowed(tools, &ToolChoice::Auto, true);
    let mut b = Builder::default();
    let reply = reply(format, &mut b, &allowed, parallel, template)?;
    let open = reply.open.filter(|_| reply.prose_first)?;
    let mut triggers = vec![(b.marker(&open), reply.rest)];
    if reply.bare_json {
        let options: Vec<String> = allowed
            .iter()
            .map(|t| {
                let args = b.json(&t.schema());
                format!(
                    "{} \", \\\"arguments\\\": \" {args}",
                    lit(&format!("{}\"", t.name))
                )
            })
            .collect();
        triggers.push((b.marker(BARE_JSON), format!("{} \"}}\"", either(&options))));
    }
    // Prose, then a call wherever the model opens one (the first marker it writes wins), then
    // prose again.
    let all: Vec<String> = triggers.iter().map(|(m, _)| m.to_string()).collect();
    let segments: Vec<String> = triggers
        .iter()
        .map(|(m, rest)| {
            let mut name = vec![m.to_string()];
            name.extend(all.iter().filter(|o| **o != m.to_string()).cloned());
            format!("till{} {rest}", name.join("_"))
        })
        .collect();
    let start = format!("({})* prose_{}", segments.join(" | "), all.join("_"));
    Some(b.finish(start))
}

fn reply(
    format: ToolFormat,
    b: &mut Builder,
    tools: &[Allowed<'_>],
    parallel: bool,
    template: Option<&str>,
) -> Option<Reply> {
    if tools.is_empty() {
        return None;
    }
    let n = if parallel { MAX_PARALLEL_CALLS } else { 1 };
    match format {
        // Templates without tool markup are told to write the `<tool_call>` tags.
        ToolFormat::Hermes | ToolFormat::Json | ToolFormat::Auto => {
            let body = b.json(&json_call_schema(format, tools)?);
            let close = b.mk("</tool_call>");
            let after = b.rule(format!("\"\\n\" {body} \"\\n\" {close}"));
            let more = format!("\"\\n\" {} {after}", b.mk("<tool_call>"));
            Some(Reply {
                open: Some("<tool_call>".into()),
                rest: repeat(&after, &more, n),
                prose_first: true,
                bare_json: true,
            })
        }
        ToolFormat::Llama3Json => {
            let body = b.json(&json_call_schema(format, tools)?);
            Some(Reply {
                open: None,
                rest: repeat(&body, &format!("\"; \" {body}"), n),
                prose_first: false,
                bare_json: false,
            })
        }
        ToolFormat::Mistral => mistral(b, tools, n, template),
        ToolFormat::DeepseekV3 => deepseek(b, tools, n, template),
        ToolFormat::KimiK2 => kimi(b, tools, n),
        ToolFormat::GptOss => gpt_oss(b, tools),
        ToolFormat::Qwen3Coder => params::qwen3_coder(b, tools, n),
        ToolFormat::Glm45 => params::glm45(b, tools, n),
        ToolFormat::MinimaxM2 => params::minimax(b, tools, n),
        ToolFormat::Functiongemma => params::functiongemma(b, tools),
        ToolFormat::Pythonic => params::pythonic(b, tools, n),
        ToolFormat::Disabled => None,
    }
}

/// `NAME <sep> ARGS` for each tool, as alternatives; `sep` comes between name and arguments.
fn named_json_calls(
    b: &mut Builder,
    tools: &[Allowed<'_>],
    name: &dyn Fn(&str) -> String,
    sep: &str,
) -> String {
    let options: Vec<String> = tools
        .iter()
        .map(|t| {
            let args = b.json(&t.schema());
            format!("{} {sep} {args}", name(t.name))
        })
        .collect();
    either(&options)
}

/// v3 tokenizers: `[TOOL_CALLS] [{…}, …]`; v11+ (a template that writes `[ARGS]`):
/// `[TOOL_CALLS]NAME[ARGS]{…}` per call.
fn mistral(
    b: &mut Builder,
    tools: &[Allowed<'_>],
    n: usize,
    template: Option<&str>,
) -> Option<Reply> {
    const OPEN: &str = "[TOOL_CALLS]";
    let rest = if template.is_some_and(|t| t.contains("[ARGS]")) {
        let sep = b.mk("[ARGS]");
        let call = named_json_calls(b, tools, &|name| lit(name), &sep);
        let call = b.rule(call);
        repeat(&call, &format!("{} {call}", b.mk(OPEN)), n)
    } else {
        let body = b.json(&json_call_schema(ToolFormat::Mistral, tools)?);
        format!(
            "\" \"? \"[\" {} \"]\"",
            repeat(&body, &format!("\", \" {body}"), n)
        )
    };
    Some(Reply {
        open: Some(OPEN.into()),
        rest,
        prose_first: true,
        bare_json: false,
    })
}

/// V3: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{…}\n```
/// <｜tool▁call▁end｜>…<｜tool▁calls▁end｜>`; V3.1 (a template without the fence):
/// `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{…}<｜tool▁call▁end｜>`.
fn deepseek(
    b: &mut Builder,
    tools: &[Allowed<'_>],
    n: usize,
    template: Option<&str>,
) -> Option<Reply> {
    const CALLS_BEGIN: &str = "<\u{ff5c}tool\u{2581}calls\u{2581}begin\u{ff5c}>";
    const CALLS_END: &str = "<\u{ff5c}tool\u{2581}calls\u{2581}end\u{ff5c}>";
    const CALL_BEGIN: &str = "<\u{ff5c}tool\u{2581}call\u{2581}begin\u{ff5c}>";
    const CALL_END: &str = "<\u{ff5c}tool\u{2581}call\u{2581}end\u{ff5c}>";
    const SEP: &str = "<\u{ff5c}tool\u{2581}sep\u{ff5c}>";
    let v31 = template.is_some_and(|t| !t.contains("```json"));
    let sep = b.mk(SEP);
    let options: Vec<String> = tools
        .iter()
        .map(|t| {
            let args = b.json(&t.schema());
            if v31 {
                format!("{} {sep} {args}", lit(t.name))
            } else {
                format!(
                    "\"function\" {sep} {} \"\\n```json\\n\" {args} \"\\n```\"",
                    lit(t.name)
                )
            }
        })
        .collect();
    let call = format!(
        "{} {} {}",
        b.mk(CALL_BEGIN),
        either(&options),
        b.mk(CALL_END)
    );
    let call = b.rule(call);
    let rest = format!(
        "{} {}",
        repeat(&call, &format!("\"\\n\"? {call}"), n),
        b.mk(CALLS_END)
    );
    Some(Reply {
        open: Some(CALLS_BEGIN.into()),
        rest,
        prose_first: true,
        bare_json: false,
    })
}

/// `<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:I<|tool_call_argument_begin|>
/// {…}<|tool_call_end|>…<|tool_calls_section_end|>`, `I` counting the calls from 0.
fn kimi(b: &mut Builder, tools: &[Allowed<'_>], n: usize) -> Option<Reply> {
    let begin = b.mk("<|tool_call_begin|>");
    let args_begin = b.mk("<|tool_call_argument_begin|>");
    let end = b.mk("<|tool_call_end|>");
    let calls: Vec<String> = (0..n)
        .map(|i| {
            let id = |name: &str| lit(&format!("functions.{name}:{i}"));
            let call = named_json_calls(b, tools, &id, &args_begin);
            b.rule(format!("{begin} {call} {end}"))
        })
        .collect();
    let mut chain = calls[n - 1].clone();
    for call in calls[..n - 1].iter().rev() {
        chain = format!("{call} ({chain})?");
    }
    Some(Reply {
        open: Some("<|tool_calls_section_begin|>".into()),
        rest: format!("{chain} {}", b.mk("<|tool_calls_section_end|>")),
        prose_first: true,
        bare_json: false,
    })
}

/// Harmony: `<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{…}<|call|>`,
/// one call per message.
fn gpt_oss(b: &mut Builder, tools: &[Allowed<'_>]) -> Option<Reply> {
    let sep = format!(
        "\" \" {} \"json\" {}",
        b.mk("<|constrain|>"),
        b.mk("<|message|>")
    );
    let call = named_json_calls(
        b,
        tools,
        &|name| lit(&format!("commentary to=functions.{name}")),
        &sep,
    );
    Some(Reply {
        open: Some("<|channel|>".into()),
        rest: format!("{call} {}", b.mk("<|call|>")),
        prose_first: false,
        bare_json: false,
    })
}
