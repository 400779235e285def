use mlx_serve_engine::engine::{ChatMessage, Constraint, SamplingParams};
use serde_json::json;

use super::*;
use crate::error::ErrorKind;

const QWEN_LIKE: &str = "{%- if tools %}<tools>{% endif %}<tool_call>\n{\"name\": …}\n</tool_call>";
const SMOL_LIKE: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>{% endfor %}";
const CALL: &str =
    "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";

fn weather() -> Vec<Value> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}),
    ]
}

fn request(text: &str) -> GenerateRequest {
    GenerateRequest {
        prompt: Prompt::Chat {
            messages: vec![ChatMessage {
                role: "user".into(),
                content: text.into(),
                tool_calls: Vec::new(),
                tool_call_id: None,
                name: None,
            }],
            tools: weather(),
            add_generation_prompt: true,
            template_kwargs: Default::default(),
        },
        sampling: SamplingParams::default(),
        max_tokens: None,
        stop: Vec::new(),
        logprobs: None,
        constraint: None,
        reasoning: None,
        encoded: None,
    }
}

fn seam() -> ToolCalling {
    ToolCalling::new(&ToolsSettings::default())
}

fn options(choice: ToolChoice, parallel: bool) -> ToolOptions {
    ToolOptions { choice, parallel }
}

/// Feeds `chunks`, then finishes; returns (text, calls as (id, name, arguments)).
fn run(
    parser: &mut dyn StreamingToolParser,
    chunks: &[&str],
) -> (String, Vec<(String, String, String)>) {
    let mut deltas = Vec::new();
    for c in chunks {
        deltas.extend(parser.push(c));
    }
    deltas.extend(parser.finish());
    let mut text = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for d in deltas {
        match d {
            ParsedDelta::Text(t) => text.push_str(&t),
            ParsedDelta::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                if let (Some(id), Some(name)) = (id, name) {
                    assert_eq!(index, calls.len(), "indices are dense and in order");
                    calls.push((id, name, arguments));
                } else {
                    let call = calls.get_mut(index).expect("first delta came first");
                    call.2.push_str(&arguments);
                }
            }
        }
    }
    (text, calls)
}

fn args(text: &str) -> Value {
    serde_json::from_str(text).expect("arguments are JSON")
}

#[test]
fn first_delta_carries_id_and_name_then_only_arguments() {
    let mut req = request("x");
    let mut p = seam()
        .prepare(&mut req, &ToolOptions::default(), Some(QWEN_LIKE))
        .expect("a parser");
    let mut deltas = p.push(&format!("Let me check. {CALL}"));
    deltas.extend(p.finish());
    assert_eq!(deltas.len(), 3, "{deltas:?}");
    assert_eq!(deltas[0], ParsedDelta::Text("Let me check.".into()));
    let ParsedDelta::ToolCall {
        index: 0,
        id: Some(id),
        name: Some(name),
        arguments,
    } = &deltas[1]
    else {
        panic!("start delta: {deltas:?}");
    };
    assert!(id.starts_with("call_"));
    assert_eq!((name.as_str(), arguments.as_str()), ("get_weather", ""));
    let ParsedDelta::ToolCall {
        index: 0,
        id: None,
        name: None,
        arguments,
    } = &deltas[2]
    else {
        panic!("arguments delta: {deltas:?}");
    };
    assert_eq!(args(arguments), json!({"city": "Paris"}));
    assert_eq!(p.verdict(), Ok(()));
    assert_eq!(
        p.outcome(),
        Some(ToolParseOutcome {
            format: "hermes",
            calls: 1,
            ok: true
        })
    );
}

#[test]
fn any_chunking_gives_the_same_calls_and_text() {
    let reply = format!("Sure. {CALL}\n{CALL}");
    let whole = {
        let mut req = request("x");
        let mut p = seam()
            .prepare(&mut req, &ToolOptions::default(), Some(QWEN_LIKE))
            .expect("parser");
        run(p.as_mut(), &[reply.as_str()])
    };
    assert_eq!(whole.1.len(), 2);
    let chars: Vec<String> = reply.chars().map(String::from).collect();
    let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
    let mut req = request("x");
    let mut p = seam()
        .prepare(&mut req, &ToolOptions::default(), Some(QWEN_LIKE))
        .expect("parser");
    let split = run(p.as_mut(), &refs);
    assert_eq!(split.0, whole.0);
    let strip = |c: &[(String, String, String)]| -> Vec<(String, Value)> {
        c.iter().map(|(_, n, a)| (n.clone(), args(a))).collect()
    };
    assert_eq!(strip(&split.1), strip(&whole.1));
}

#[test]
fn parallel_false_keeps_only_the_first_call() {
    let mut req = request("x");
    let opts = options(ToolChoice::Auto, false);
    let mut p = seam()
        .prepare(&mut req, &opts, Some(QWEN_LIKE))
        .expect("parser");
    let (text, calls) = run(p.as_mut(), &[CALL, CALL]);
    assert_eq!(calls.len(), 1);
    assert_eq!(text, "");
    assert_eq!(p.outcome().map(|o| o.calls), Some(1));
}

#[test]
fn required_choice_fails_a_reply_without_a_call() {
    let mut req = request("x");
    let opts = options(ToolChoice::Required, true);
    let mut p = seam()
        .prepare(&mut req, &opts, Some(QWEN_LIKE))
        .expect("parser");
    let (text, calls) = run(p.as_mut(), &["It is sunny."]);
    assert_eq!((text.as_str(), calls.len()), ("It is sunny.", 0));
    let err = p.verdict().expect_err("required needs a call");
    assert!(err.kind == ErrorKind::ToolChoiceUnsatisfied, "{err:?}");
    assert_eq!(p.outcome().map(|o| o.ok), Some(false));
    // The prompt told the model so.
    let Prompt::Chat { messages, .. } = &req.prompt else {
        panic!("chat")
    };
    assert_eq!(messages[0].role, "system");
    assert!(messages[0].content.contains("calling one or more"));
}

#[test]
fn named_choice_rejects_a_call_to_another_tool() {
    let tools = vec![
        weather()[0].clone(),
        json!({"type": "function", "function": {"name": "get_time"}}),
    ];
    let mut req = request("x");
    if let Prompt::Chat { tools: t, .. } = &mut req.prompt {
        *t = tools;
    }
    let opts = options(ToolChoice::Function("get_time".into()), true);
    let mut p = seam()
        .prepare(&mut req, &opts, Some(QWEN_LIKE))
        .expect("parser");
    let (_, calls) = run(p.as_mut(), &[CALL]);
    assert_eq!(calls.len(), 1);
    let err = p.verdict().expect_err("wrong tool");
    assert!(err.to_string().contains("get_time"), "{err}");
}

#[test]
fn none_choice_keeps_markup_as_text_and_the_prompt_unchanged() {
    let mut req = request("x");
    let before = req.clone();
    let opts = options(ToolChoice::None, true);
    let mut p = seam()
        .prepare(&mut req, &opts, Some(SMOL_LIKE))
        .expect("parser");
    let (text, calls) = run(p.as_mut(), &[CALL]);
    assert_eq!((text.as_str(), calls.len()), (CALL, 0));
    assert_eq!(req, before);
}

#[test]
fn unknown_tool_names_stay_text_unless_allowed() {
    let other = "<tool_call>{\"name\": \"launch\", \"arguments\": {}}</tool_call>";
    let mut req = request("x");
    let mut p = seam()
        .prepare(&mut req, &ToolOptions::default(), Some(QWEN_LIKE))
        .expect("parser");
    assert_eq!(run(p.as_mut(), &[other]), (other.to_owned(), Vec::new()));
    let allow = ToolsSettings {
        allow_unknown_tools: true,
        ..ToolsSettings::default()
    };
    let mut p = ToolCalling::new(&allow)
        .prepare(&mut request("x"), &ToolOptions::default(), Some(QWEN_LIKE))
        .expect("parser");
    assert_eq!(run(p.as_mut(), &[other]).1.len(), 1);
}

#[test]
fn format_follows_template_and_config_override() {
    let outcome_format = |settings: &ToolsSettings, template: Option<&str>| {
        let mut p = ToolCalling::new(settings)
            .prepare(&mut request("x"), &ToolOptions::default(), template)
            .expect("parser");
        run(p.as_mut(), &[]);
        p.outcome().map(|o| o.format)
    };
    let auto = ToolsSettings::default();
    assert_eq!(outcome_format(&auto, Some(QWEN_LIKE)), Some("hermes"));
    assert_eq!(outcome_format(&auto, Some(SMOL_LIKE)), Some("json"));
    let mistral = ToolsSettings {
        format: ToolFormat::Mistral,
        ..ToolsSettings::default()
    };
    assert_eq!(outcome_format(&mistral, Some(QWEN_LIKE)), Some("mistral"));
    let off = ToolsSettings {
        format: ToolFormat::Disabled,
        ..ToolsSettings::default()
    };
    assert!(ToolCalling::new(&off)
        .prepare(&mut request("x"), &ToolOptions::default(), Some(QWEN_LIKE))
        .is_none());
}

#[test]
fn templates_without_tools_get_the_tools_in_the_system_prompt() {
    let mut req = request("x");
    seam().prepare(&mut req, &ToolOptions::default(), Some(SMOL_LIKE));
    let Prompt::Chat { messages, .. } = &req.prompt else {
        panic!("chat")
    };
    assert_eq!(messages.len(), 2);
    assert!(messages[0].content.contains("<tools>") && messages[0].content.contains("get_weather"));
    let mut req = request("x");
    seam().prepare(&mut req, &ToolOptions::default(), Some(QWEN_LIKE));
    let Prompt::Chat { messages, .. } = &req.prompt else {
        panic!("chat")
    };
    assert_eq!(messages.len(), 1, "the template renders tools itself");
}

#[test]
fn a_strict_tool_under_auto_gets_a_lazy_grammar() {
    let strict_request = || {
        let mut req = request("x");
        if let Prompt::Chat { tools, .. } = &mut req.prompt {
            tools[0]["function"]["strict"] = json!(true);
        }
        req
    };
    let mut req = strict_request();
    let mut p = seam()
        .prepare(&mut req, &ToolOptions::default(), Some(QWEN_LIKE))
        .expect("parser");
    assert!(
        matches!(req.constraint, Some(Constraint::ToolMarkup { .. })),
        "{:?}",
        req.constraint
    );
    // Calls in the markup the grammar watches are parsed as ever.
    let (_, calls) = run(p.as_mut(), &[CALL]);
    assert_eq!(calls.len(), 1);
    // Pretty-printed JSON escaped the grammar (its marker is `{"name": "` exactly), so it is
    // not a strict call: it stays text (seen on Qwen2.5-Coder at temperature 1.2: `"days": "7"`).
    let pretty = "Here it is:\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\"city\": 7}\n}";
    let mut again = strict_request();
    let mut p = seam()
        .prepare(&mut again, &ToolOptions::default(), Some(QWEN_LIKE))
        .expect("parser");
    let (text, calls) = run(p.as_mut(), &[pretty]);
    assert!(calls.is_empty(), "{calls:?}");
    assert_eq!(text, pretty);
    // Bare JSON in the marker's own spelling was held by the grammar: a call.
    let mut again = strict_request();
    let mut p = seam()
        .prepare(&mut again, &ToolOptions::default(), Some(QWEN_LIKE))
        .expect("parser");
    let bare = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";
    assert_eq!(run(p.as_mut(), &[bare]).1.len(), 1);
    // Without a strict tool the same text is a call (the fallback formats stay on).
    let mut plain = request("x");
    let mut p = seam()
        .prepare(&mut plain, &ToolOptions::default(), Some(QWEN_LIKE))
        .expect("parser");
    assert_eq!(run(p.as_mut(), &[pretty]).1.len(), 1);
    let mut plain = request("x");
    seam().prepare(&mut plain, &ToolOptions::default(), Some(QWEN_LIKE));
    assert_eq!(plain.constraint, None, "no strict tool, no grammar");
}
