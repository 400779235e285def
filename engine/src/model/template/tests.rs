//! Templates against renderings by Python's jinja2 (`testdata/gen_template_cases.py` wrote
//! `testdata/template_cases.json` from the templates in the SmolLM2 and Qwen2.5 GGUF files).

use super::*;
use crate::engine::ToolCall;

fn user(text: &str) -> ChatMessage {
    ChatMessage {
        role: "user".into(),
        content: text.into(),
        ..Default::default()
    }
}

fn check_case(name: &str) {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../testdata/template_cases.json")).expect("fixture");
    let case = cases
        .iter()
        .find(|c| c["name"] == name)
        .expect("case present");
    let s = |k: &str| case[k].as_str().map(str::to_string);
    let template = ChatTemplate::new(
        case["template"].as_str().expect("template"),
        s("bos_token"),
        s("eos_token"),
    )
    .expect("compiles");
    let messages: Vec<ChatMessage> =
        serde_json::from_value(case["messages"].clone()).expect("messages");
    let tools: Vec<serde_json::Value> =
        serde_json::from_value(case["tools"].clone()).expect("tools");
    let agp = case["add_generation_prompt"].as_bool().expect("agp");
    let got = template.render(&messages, &tools, agp).expect("renders");
    assert_eq!(got, case["expected"].as_str().expect("expected"), "{name}");
}

#[test]
fn smollm2_template_renders_system_and_user_like_jinja2() {
    check_case("smollm2_system_user");
}

#[test]
fn smollm2_template_inserts_its_default_system_like_jinja2() {
    check_case("smollm2_default_system");
}

#[test]
fn qwen25_template_renders_tools_call_and_result_like_jinja2() {
    check_case("qwen25_tools_call_result");
}

#[test]
fn qwen25_template_without_tools_like_jinja2() {
    check_case("qwen25_no_tools_with_system");
}

#[test]
fn raise_exception_surfaces_the_template_message() {
    let t = ChatTemplate::new(
        "{% if messages[0].role != 'system' %}{{ raise_exception('System message first!') }}{% endif %}",
        None,
        None,
    )
    .expect("compiles");
    let err = t.render(&[user("hi")], &[], true).unwrap_err();
    assert_eq!(err, TemplateError::Raised("System message first!".into()));
}

#[test]
fn empty_tools_are_none_and_given_tools_are_a_list() {
    let t = ChatTemplate::new(
        "{% if tools is none %}none{% else %}{{ tools | length }}:{{ tools[0].function.name }}{% endif %}",
        None,
        None,
    )
    .expect("compiles");
    assert_eq!(t.render(&[], &[], false).expect("render"), "none");
    let tool = json!({"type": "function", "function": {"name": "f"}});
    assert_eq!(t.render(&[], &[tool], false).expect("render"), "1:f");
}

#[test]
fn tojson_writes_like_python_json_dumps() {
    let t = ChatTemplate::new(
        "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ 'é<>&' | tojson }}|{{ 'é' | tojson(ensure_ascii=true) }}|{{ [] | tojson(indent=2) }}",
        None,
        None,
    )
    .expect("compiles");
    let msg = ChatMessage {
        role: "user".into(),
        ..Default::default()
    };
    let src = "{% set x = {'a': [1, 2.5, none, true], 'b': 'q\"'} %}";
    let t2 = ChatTemplate::new(&format!("{src}{}", t.source()), None, None).expect("compiles");
    assert_eq!(
        t2.render(&[msg], &[], false).expect("render"),
        "{\"a\": [1, 2.5, null, true], \"b\": \"q\\\"\"}|{\n  \"a\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"b\": \"q\\\"\"\n}|\"é<>&\"|\"\\u00e9\"|[]"
    );
}

#[test]
fn tool_call_arguments_are_parsed_json_or_kept_as_text() {
    let t = ChatTemplate::new(
        "{% for c in messages[0].tool_calls %}{{ c.type }} {{ c.id }} {{ c.function.name }} {{ c.function.arguments is mapping }} {{ c.function.arguments | tojson }};{% endfor %}",
        None,
        None,
    )
    .expect("compiles");
    let call = |id: &str, args: &str| ToolCall {
        id: id.into(),
        name: "f".into(),
        arguments: args.into(),
    };
    let m = ChatMessage {
        role: "assistant".into(),
        tool_calls: vec![call("c1", "{\"x\": 1}"), call("c2", "not json")],
        ..Default::default()
    };
    assert_eq!(
        t.render(&[m], &[], false).expect("render"),
        "function c1 f True {\"x\": 1};function c2 f False \"not json\";"
    );
}

#[test]
fn python_string_methods_and_special_tokens_work() {
    let t = ChatTemplate::new(
        "{{ bos_token }}{% for m in messages %}{{ m.content.strip().upper() }}{% if m.content.startswith(' a') %}!{% endif %}{% for k, v in {'k': 1}.items() %}{{ k }}{{ v }}{% endfor %}{% endfor %}{{ eos_token }}",
        Some("<s>".into()),
        Some("</s>".into()),
    )
    .expect("compiles");
    assert_eq!(
        t.render(&[user(" abc ")], &[], false).expect("render"),
        "<s>ABC!k1</s>"
    );
}

#[test]
fn strftime_now_formats_the_current_date() {
    let t = ChatTemplate::new("{{ strftime_now('%Y') }}", None, None).expect("compiles");
    let year = t.render(&[], &[], false).expect("render");
    assert_eq!(year, chrono::Local::now().format("%Y").to_string());
    let bad = ChatTemplate::new("{{ strftime_now('%Q') }}", None, None).expect("compiles");
    assert!(matches!(
        bad.render(&[], &[], false),
        Err(TemplateError::Render(_))
    ));
}

#[test]
fn default_chatml_renders_turns_tool_calls_and_prompt() {
    let t = ChatTemplate::chatml(None, None);
    let call = ChatMessage {
        role: "assistant".into(),
        tool_calls: vec![ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: "{\"a\": 1}".into(),
        }],
        ..Default::default()
    };
    let result = ChatMessage {
        role: "tool".into(),
        content: "ok".into(),
        tool_call_id: Some("c".into()),
        ..Default::default()
    };
    let out = t
        .render(&[user("hi"), call, result], &[], true)
        .expect("render");
    assert_eq!(
        out,
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call><|im_end|>\n<|im_start|>tool\nok<|im_end|>\n<|im_start|>assistant\n"
    );
    let tool = json!({"type": "function", "function": {"name": "f"}});
    let sys = ChatMessage {
        role: "system".into(),
        content: "S".into(),
        ..Default::default()
    };
    let out = t
        .render(&[sys, user("hi")], &[tool], false)
        .expect("render");
    assert!(out.starts_with("<|im_start|>system\nS\n\n# Tools"), "{out}");
    assert!(out
        .contains("<tools>\n{\"function\": {\"name\": \"f\"}, \"type\": \"function\"}\n</tools>"));
    assert_eq!(out.matches("<|im_start|>system").count(), 1);
}

#[test]
fn markers_report_tool_call_syntax_in_the_source() {
    let t = ChatTemplate::new("{{ '<tool_call>' }}{{ tools }}", None, None).expect("compiles");
    assert_eq!(t.markers(), vec!["<tool_call>"]);
    assert!(t.supports_tools());
    let plain = ChatTemplate::new("{{ messages }}", None, None).expect("compiles");
    assert!(plain.markers().is_empty());
    assert!(!plain.supports_tools());
}

#[test]
fn generation_tags_are_ignored_and_syntax_errors_reported() {
    let t = ChatTemplate::new("a{%- generation %}b{% endgeneration -%}c", None, None)
        .expect("compiles");
    assert_eq!(t.render(&[], &[], false).expect("render"), "abc");
    assert!(matches!(
        ChatTemplate::new("{% for %}", None, None),
        Err(TemplateError::Syntax(_))
    ));
}

fn system(text: &str) -> ChatMessage {
    ChatMessage {
        role: "system".into(),
        content: text.into(),
        ..Default::default()
    }
}

#[test]
fn later_system_turn_stays_in_place_when_the_template_renders_it() {
    let t = ChatTemplate::chatml(None, None);
    let out = t
        .render(&[user("fix it"), system("cwd: /repo")], &[], true)
        .unwrap();
    let (u, s) = (out.find("fix it").unwrap(), out.find("cwd: /repo").unwrap());
    assert!(u < s, "{out}");
    assert!(
        out.contains("<|im_start|>system\ncwd: /repo<|im_end|>"),
        "{out}"
    );
}

#[test]
fn later_system_turn_is_merged_when_the_template_refuses_or_drops_it() {
    // Raises on any system turn but the first, as Llama 2 / Mistral style templates do.
    let strict = ChatTemplate::new(
        "{% for m in messages %}{% if m.role == 'system' and not loop.first %}\
         {{ raise_exception('system only first') }}{% endif %}[{{ m.role }}]{{ m.content }}\
         {% endfor %}",
        None,
        None,
    )
    .unwrap();
    // Renders only the first system message and silently skips the others.
    let dropping = ChatTemplate::new(
        "{% for m in messages %}{% if m.role != 'system' or loop.first %}\
         [{{ m.role }}]{{ m.content }}{% endif %}{% endfor %}",
        None,
        None,
    )
    .unwrap();
    let msgs = [system("base"), user("q"), system("env")];
    for t in [&strict, &dropping] {
        let out = t.render(&msgs, &[], false).unwrap();
        assert_eq!(out, "[system]base\n\nenv[user]q");
    }
    let out = strict
        .render(&[user("q"), system("env")], &[], false)
        .unwrap();
    assert_eq!(out, "[system]env[user]q");
}

#[test]
fn template_kwargs_reach_the_template_but_never_replace_its_own_variables() {
    // Qwen3's switch, as its template reads it.
    let src = "{% for m in messages %}{{ m.content }}{% endfor %}\
               {% if add_generation_prompt %}<|assistant|>\
               {% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}\
               {% endif %}";
    let t = ChatTemplate::new(src, None, None).unwrap();
    let msgs = [user("hi")];
    let plain = t.render(&msgs, &[], true).unwrap();
    assert_eq!(plain, "hi<|assistant|>");
    let mut kwargs = serde_json::Map::new();
    kwargs.insert("enable_thinking".into(), serde_json::json!(false));
    // A request cannot swap the conversation or the generation prompt.
    kwargs.insert(
        "messages".into(),
        serde_json::json!([{"content": "injected"}]),
    );
    kwargs.insert("add_generation_prompt".into(), serde_json::json!(false));
    let off = t.render_with(&msgs, &[], true, &kwargs).unwrap();
    assert_eq!(off, "hi<|assistant|><think>\n\n</think>\n\n");
}
