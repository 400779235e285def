//! Grammars that force a reply into a format's tool-call markup, for `tool_choice: "required"`
//! or a named function (constrained decoding, see `crate::guided`).
//!
//! The reply is one call, or up to [`MAX_PARALLEL_CALLS`] when parallel calls are allowed, in
//! the format's own markup; each call is a JSON object `{"name": …, "arguments": …}` whose
//! `name` is one of the allowed tools and whose arguments follow that tool's `parameters`
//! schema (`anyOf` over the tools). The grammar is llguidance Lark with the call object as an
//! embedded `%json` schema.

use serde_json::{json, Value};

use super::{ToolChoice, ToolFormat, ToolSet};

/// Most calls one forced reply may hold when parallel calls are allowed: a bound, so a small
/// model cannot keep opening calls until `max_tokens` cuts one in half.
pub const MAX_PARALLEL_CALLS: usize = 4;

/// The JSON Schema of one call object of `format` for the tools `choice` allows; `None` when
/// no offered tool is allowed.
pub fn call_schema(format: ToolFormat, tools: &ToolSet, choice: &ToolChoice) -> Option<Value> {
    let args_key = match format {
        ToolFormat::Llama3Json => "parameters",
        _ => "arguments",
    };
    let variants: Vec<Value> = tools
        .iter()
        .filter(|(name, _)| match choice {
            ToolChoice::Function(wanted) => wanted == name,
            _ => true,
        })
        .map(|(name, params)| {
            let params = match params {
                Value::Object(_) | Value::Bool(_) => params.clone(),
                _ => json!({"type": "object"}),
            };
            json!({
                "type": "object",
                "properties": {"name": {"const": name}, args_key: params},
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

/// The Lark grammar that forces a reply of `format` to call the tools `choice` allows, or
/// `None` when the choice does not force a call or this format has no grammar here (Mistral's
/// control tokens, pythonic lists, Qwen3-Coder's XML, DeepSeek: those keep the instruction
/// and the check after the reply).
pub fn forced_call_grammar(
    format: ToolFormat,
    tools: &ToolSet,
    choice: &ToolChoice,
    parallel: bool,
) -> Option<String> {
    if !matches!(choice, ToolChoice::Required | ToolChoice::Function(_)) {
        return None;
    }
    let schema = call_schema(format, tools, choice)?;
    let (call, separator) = match format {
        // Templates without tool markup are told to write the `<tool_call>` tags.
        ToolFormat::Hermes | ToolFormat::Json | ToolFormat::Auto => {
            (r#""<tool_call>\n" body "\n</tool_call>""#, r#""\n""#)
        }
        ToolFormat::Llama3Json => ("body", r#""; ""#),
        _ => return None,
    };
    let repeat = if parallel { MAX_PARALLEL_CALLS } else { 1 };
    // call (sep call (sep call)?)? … nested, so the bound needs no repetition syntax.
    let mut calls = String::from("call");
    for _ in 1..repeat {
        calls = format!("call ({separator} {calls})?");
    }
    let schema = crate::guided::with_layout(&schema);
    Some(format!(
        "start: {calls}\ncall: {call}\nbody: %json {schema}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Constraint;
    use crate::guided::GuideFactory;

    fn tools() -> ToolSet {
        ToolSet::from_definitions(&[
            json!({"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                "required": ["city", "unit"]
            }}}),
            json!({"type": "function", "function": {"name": "now"}}),
        ])
    }

    /// Walks the grammar byte by byte, taking the wanted text where it can and the lowest
    /// allowed byte elsewhere; returns the text produced.
    fn walk(lark: &str, want: &str) -> String {
        let factory = GuideFactory::byte_level().expect("factory");
        let mut guide = factory
            .guide(&Constraint::Lark(lark.into()))
            .expect("grammar compiles");
        let mut want = want.bytes().peekable();
        let mut out = Vec::new();
        for _ in 0..500 {
            let mask = guide.allowed().expect("mask").clone();
            let pick = match want.next() {
                Some(b) if mask.is_allowed(u32::from(b)) => u32::from(b),
                Some(b) => panic!(
                    "{:?} refused after {:?}",
                    b as char,
                    String::from_utf8_lossy(&out)
                ),
                None => break,
            };
            out.push(pick as u8);
            if guide.advance(pick).expect("advance") {
                break;
            }
        }
        assert!(want.peek().is_none(), "stopped early");
        assert!(
            guide.is_accepting(),
            "incomplete: {:?}",
            String::from_utf8_lossy(&out)
        );
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn auto_and_none_choices_force_nothing() {
        for choice in [ToolChoice::Auto, ToolChoice::None] {
            assert_eq!(
                forced_call_grammar(ToolFormat::Hermes, &tools(), &choice, true),
                None
            );
        }
    }

    #[test]
    fn hermes_grammar_accepts_a_call_to_an_offered_tool() {
        let g = forced_call_grammar(ToolFormat::Hermes, &tools(), &ToolChoice::Required, true)
            .expect("grammar");
        let call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call>";
        assert_eq!(walk(&g, call), call);
        let two = format!(
            "{call}\n<tool_call>\n{{\"name\": \"now\", \"arguments\": {{}}}}\n</tool_call>"
        );
        assert_eq!(walk(&g, &two), two);
    }

    #[test]
    fn hermes_grammar_refuses_unknown_tools_and_bad_arguments() {
        let g = forced_call_grammar(ToolFormat::Hermes, &tools(), &ToolChoice::Required, false)
            .expect("grammar");
        let factory = GuideFactory::byte_level().expect("factory");
        let refused = |text: &str| {
            let mut guide = factory.guide(&Constraint::Lark(g.clone())).expect("guide");
            text.bytes().any(|b| {
                !guide.allowed().expect("mask").is_allowed(u32::from(b)) || {
                    let _ = guide.advance(u32::from(b));
                    false
                }
            })
        };
        assert!(refused("<tool_call>\n{\"name\": \"rm_rf\""));
        assert!(refused(
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": 3"
        ));
        assert!(refused(
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"P\", \"unit\": \"k\""
        ));
        assert!(refused("Sure! <tool_call>"));
    }

    #[test]
    fn a_named_function_is_the_only_one_allowed() {
        let named = ToolChoice::Function("now".into());
        let schema = call_schema(ToolFormat::Hermes, &tools(), &named).expect("schema");
        assert_eq!(schema["properties"]["name"]["const"], "now");
        let g = forced_call_grammar(ToolFormat::Json, &tools(), &named, false).expect("grammar");
        let call = "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>";
        assert_eq!(walk(&g, call), call);
    }

    #[test]
    fn llama3_calls_use_parameters_and_formats_without_a_grammar_force_nothing() {
        let g = forced_call_grammar(
            ToolFormat::Llama3Json,
            &tools(),
            &ToolChoice::Required,
            false,
        )
        .expect("grammar");
        let call = "{\"name\": \"now\", \"parameters\": {}}";
        assert_eq!(walk(&g, call), call);
        for format in [
            ToolFormat::Mistral,
            ToolFormat::Pythonic,
            ToolFormat::Qwen3Coder,
        ] {
            assert_eq!(
                forced_call_grammar(format, &tools(), &ToolChoice::Required, true),
                None
            );
        }
    }
}
