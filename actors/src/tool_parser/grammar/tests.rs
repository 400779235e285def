use serde_json::{json, Value};

use super::*;
use crate::tool_parser::{parse, ParseOptions};
use mlx_serve_engine::guided::GuideFactory;

fn definitions() -> Vec<Value> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"]
        }}}),
        json!({"type": "function", "function": {"name": "now"}}),
    ]
}

fn tools() -> ToolSet {
    ToolSet::from_definitions(&definitions())
}

fn forced(format: ToolFormat, template: Option<&str>) -> Constraint {
    forced_call_grammar(format, &tools(), &ToolChoice::Required, true, template)
        .unwrap_or_else(|| panic!("{format:?} has a grammar"))
}

/// Feeds `want` byte by byte (markers as text: a byte-level vocabulary has no special tokens
/// but end-of-sequence); panics at the first refused byte; returns whether the grammar is
/// complete at the end.
fn walk(constraint: &Constraint, want: &str) -> bool {
    let factory = GuideFactory::byte_level().expect("factory");
    let mut guide = factory.guide(constraint).expect("grammar compiles");
    for (i, b) in want.bytes().enumerate() {
        let allowed = guide.allowed().expect("mask").is_allowed(u32::from(b));
        assert!(allowed, "{:?} refused after {:?}", b as char, &want[..i]);
        guide.advance(u32::from(b)).expect("advance");
    }
    guide.is_accepting()
}

/// Whether the grammar refuses `text` somewhere along it.
fn refuses(constraint: &Constraint, text: &str) -> bool {
    let factory = GuideFactory::byte_level().expect("factory");
    let mut guide = factory.guide(constraint).expect("grammar compiles");
    text.bytes().any(|b| {
        !guide.allowed().expect("mask").is_allowed(u32::from(b)) || {
            let _ = guide.advance(u32::from(b));
            false
        }
    })
}

fn calls(format: ToolFormat, text: &str) -> Vec<(String, Value)> {
    let out = parse(
        text,
        &ParseOptions {
            tools: definitions(),
            format,
            allow_unknown_tools: false,
            tool_choice: ToolChoice::Auto,
        },
    );
    out.tool_calls
        .into_iter()
        .map(|c| (c.name, serde_json::from_str(&c.arguments).expect("JSON")))
        .collect()
}

const DS_CALLS: &str = "<\u{ff5c}tool\u{2581}calls\u{2581}begin\u{ff5c}>";
const DS_CALLS_END: &str = "<\u{ff5c}tool\u{2581}calls\u{2581}end\u{ff5c}>";
const DS_CALL: &str = "<\u{ff5c}tool\u{2581}call\u{2581}begin\u{ff5c}>";
const DS_CALL_END: &str = "<\u{ff5c}tool\u{2581}call\u{2581}end\u{ff5c}>";
const DS_SEP: &str = "<\u{ff5c}tool\u{2581}sep\u{ff5c}>";

/// A call to `get_weather(city="Paris", unit="c")` in each format (and the template that picks
/// the dialect).
fn canonical() -> Vec<(ToolFormat, Option<&'static str>, String)> {
    let args = r#"{"city": "Paris", "unit": "c"}"#;
    vec![
        (
            ToolFormat::Hermes,
            None,
            format!("<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {args}}}\n</tool_call>"),
        ),
        (
            ToolFormat::Llama3Json,
            None,
            format!("{{\"name\": \"get_weather\", \"parameters\": {args}}}"),
        ),
        (
            ToolFormat::Mistral,
            None,
            format!("[TOOL_CALLS] [{{\"name\": \"get_weather\", \"arguments\": {args}}}]"),
        ),
        (
            ToolFormat::Mistral,
            Some("{{ '[TOOL_CALLS]' + name + '[ARGS]' }}"),
            format!("[TOOL_CALLS]get_weather[ARGS]{args}"),
        ),
        (
            ToolFormat::DeepseekV3,
            None,
            format!("{DS_CALLS}{DS_CALL}function{DS_SEP}get_weather\n```json\n{args}\n```{DS_CALL_END}{DS_CALLS_END}"),
        ),
        (
            ToolFormat::DeepseekV3,
            Some("{{ name + '<｜tool▁sep｜>' + arguments }}"),
            format!("{DS_CALLS}{DS_CALL}get_weather{DS_SEP}{args}{DS_CALL_END}{DS_CALLS_END}"),
        ),
        (
            ToolFormat::KimiK2,
            None,
            format!("<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{args}<|tool_call_end|><|tool_calls_section_end|>"),
        ),
        (
            ToolFormat::GptOss,
            None,
            format!("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{args}<|call|>"),
        ),
        (
            ToolFormat::Qwen3Coder,
            None,
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=unit>\nc\n</parameter>\n</function>\n</tool_call>".into(),
        ),
        (
            ToolFormat::Glm45,
            None,
            "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>unit</arg_key>\n<arg_value>c</arg_value>\n</tool_call>".into(),
        ),
        (
            ToolFormat::MinimaxM2,
            None,
            "<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris</parameter>\n<parameter name=\"unit\">c</parameter>\n</invoke>\n</minimax:tool_call>".into(),
        ),
        (
            ToolFormat::Functiongemma,
            None,
            "<start_function_call>call:get_weather{city:<escape>Paris<escape>,unit:<escape>c<escape>}<end_function_call>".into(),
        ),
        (
            ToolFormat::Pythonic,
            None,
            "[get_weather(city=\"Paris\", unit=\"c\")]".into(),
        ),
    ]
}

#[test]
fn every_format_grammar_accepts_its_own_call_and_the_parser_reads_it_back() {
    for (format, template, text) in canonical() {
        let g = forced(format, template);
        assert!(walk(&g, &text), "{format:?}: incomplete after {text:?}");
        assert_eq!(
            calls(format, &text),
            vec![(
                "get_weather".to_owned(),
                json!({"city": "Paris", "unit": "c"})
            )],
            "{format:?}: {text:?}"
        );
    }
}

#[test]
fn every_format_grammar_refuses_an_argument_outside_the_schema() {
    for (format, template, text) in canonical() {
        let g = forced(format, template);
        // The enum allows "c" and "f" only.
        let bad = text.replacen("\"c\"", "\"k\"", 1).replacen(">c<", ">k<", 1);
        let bad = bad.replacen("\nc\n", "\nk\n", 1);
        assert_ne!(bad, text, "{format:?}");
        assert!(refuses(&g, &bad), "{format:?} accepted {bad:?}");
        let unknown = text.replacen("get_weather", "rm_rf", 1);
        assert!(refuses(&g, &unknown), "{format:?} accepted {unknown:?}");
    }
}

#[test]
fn hermes_grammar_takes_parallel_calls_up_to_the_bound() {
    let g = forced(ToolFormat::Hermes, None);
    let call = "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>";
    let four = [call; 4].join("\n");
    assert!(walk(&g, &four));
    assert!(refuses(&g, &format!("{four}\n<")));
    let one = forced_call_grammar(
        ToolFormat::Hermes,
        &tools(),
        &ToolChoice::Required,
        false,
        None,
    )
    .expect("grammar");
    assert!(walk(&one, call));
    assert!(refuses(&one, &format!("{call}\n")));
}

#[test]
fn auto_and_none_choices_force_nothing() {
    for choice in [ToolChoice::Auto, ToolChoice::None] {
        assert_eq!(
            forced_call_grammar(ToolFormat::Hermes, &tools(), &choice, true, None),
            None
        );
    }
}

#[test]
fn a_named_function_is_the_only_one_allowed() {
    let named = ToolChoice::Function("now".into());
    let schema = call_schema(ToolFormat::Hermes, &tools(), &named).expect("schema");
    assert_eq!(schema["properties"]["name"]["const"], "now");
    let g = forced_call_grammar(ToolFormat::Json, &tools(), &named, false, None).expect("grammar");
    assert!(walk(
        &g,
        "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"
    ));
    assert!(refuses(&g, "<tool_call>\n{\"name\": \"get_weather\""));
    assert!(refuses(&g, "Sure! <tool_call>"));
}

fn strict_weather() -> ToolSet {
    let mut defs = definitions();
    defs[0]["function"]["strict"] = json!(true);
    ToolSet::from_definitions(&defs)
}

#[test]
fn a_lazy_grammar_lets_prose_through_and_holds_strict_calls_to_their_schema() {
    assert_eq!(
        lazy_call_grammar(ToolFormat::Hermes, &tools(), true, None),
        None,
        "no strict tool, no grammar"
    );
    let g = lazy_call_grammar(ToolFormat::Hermes, &strict_weather(), true, None).expect("grammar");
    assert!(walk(&g, "I can answer that without a tool: 4."));
    let call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call>";
    assert!(walk(&g, &format!("Let me check.\n{call}")));
    assert!(walk(&g, call));
    // `now` is not strict: any object will do.
    assert!(walk(
        &g,
        "<tool_call>\n{\"name\": \"now\", \"arguments\": {\"tz\": 1}}\n</tool_call>"
    ));
    assert!(refuses(
        &g,
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": 3"
    ));
    assert!(refuses(&g, "<tool_call>\n{\"name\": \"rm_rf\""));
}

#[test]
fn lazy_grammars_exist_for_the_formats_with_an_opening_marker() {
    for (format, template, text) in canonical() {
        let lazy = lazy_call_grammar(format, &strict_weather(), true, template);
        match format {
            ToolFormat::Llama3Json | ToolFormat::Pythonic | ToolFormat::GptOss => {
                assert_eq!(lazy, None, "{format:?}")
            }
            _ => {
                let g = lazy.unwrap_or_else(|| panic!("{format:?} has a lazy grammar"));
                assert!(walk(&g, &format!("Checking. {text}")), "{format:?}");
                assert!(walk(&g, "No call needed."), "{format:?}");
            }
        }
    }
}

#[test]
fn xml_formats_leave_optional_parameters_out_and_type_values_by_schema() {
    let defs = vec![
        json!({"type": "function", "function": {"name": "f", "parameters": {
            "type": "object",
            "properties": {"n": {"type": "integer"}, "note": {"type": "string"}},
            "required": ["n"]
        }}}),
    ];
    let set = ToolSet::from_definitions(&defs);
    let g = forced_call_grammar(
        ToolFormat::Qwen3Coder,
        &set,
        &ToolChoice::Required,
        false,
        None,
    )
    .expect("grammar");
    let call =
        "<tool_call>\n<function=f>\n<parameter=n>\n12\n</parameter>\n</function>\n</tool_call>";
    assert!(walk(&g, call));
    assert!(refuses(
        &g,
        "<tool_call>\n<function=f>\n<parameter=n>\ntwelve"
    ));
    let with_note = "<tool_call>\n<function=f>\n<parameter=n>\n1\n</parameter>\n<parameter=note>\na </parameter> b\n</parameter>\n</function>\n</tool_call>";
    // A value ends at the first closing tag on a line of its own; one inside the text stays.
    assert!(walk(&g, with_note));
    let out = parse(
        with_note,
        &ParseOptions {
            tools: defs.clone(),
            format: ToolFormat::Qwen3Coder,
            allow_unknown_tools: false,
            tool_choice: ToolChoice::Auto,
        },
    );
    let args: Value = serde_json::from_str(&out.tool_calls[0].arguments).expect("JSON");
    assert_eq!(args, json!({"n": 1, "note": "a </parameter> b"}));
    let g = forced_call_grammar(
        ToolFormat::Pythonic,
        &set,
        &ToolChoice::Required,
        false,
        None,
    )
    .expect("grammar");
    assert!(walk(&g, "[f(n=3)]"));
    assert!(walk(&g, "[f(n=3, note=\"hi\")]"));
    assert!(refuses(&g, "[f(note=\"hi\")]"));
}

#[test]
fn objects_that_list_their_properties_take_no_other_keys() {
    let g = forced(ToolFormat::Hermes, None);
    // The schema of get_weather says nothing about other keys: they are refused all the same.
    assert!(refuses(
        &g,
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"P\", \"unit\": \"c\", \"x"
    ));
    let schema = closed(
        json!({"type": "object", "properties": {"a": {"type": "object",
        "properties": {"b": {}}}, "c": {"additionalProperties": true, "properties": {}}},
        "default": {"properties": 1}}),
    );
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["a"]["additionalProperties"], false);
    assert_eq!(schema["properties"]["c"]["additionalProperties"], true);
    assert_eq!(schema["default"], json!({"properties": 1}));
}

#[test]
fn a_lazy_grammar_holds_a_call_opened_by_a_special_token_marker() {
    // Qwen's `<tool_call>` may come as a special token (GGUF control tokens).
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    tokens.push(b"\xFF<tool_call>".to_vec());
    tokens.push(b"\xFF</tool_call>".to_vec());
    tokens.push(b"\xFF<|end|>".to_vec());
    let factory = GuideFactory::new(&tokens, &[258]).expect("factory");
    let g = lazy_call_grammar(ToolFormat::Hermes, &strict_weather(), true, None).expect("grammar");
    let feed = |text: &[u32]| {
        let mut guide = factory.guide(&g).expect("compiles");
        for &t in text {
            if !guide.allowed().expect("mask").is_allowed(t) {
                return false;
            }
            guide.advance(t).expect("advance");
        }
        true
    };
    let mut good: Vec<u32> = "Sure ".bytes().map(u32::from).collect();
    good.push(256);
    good.extend(
        "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"P\", \"unit\": \"c\"}}\n"
            .bytes()
            .map(u32::from),
    );
    good.push(257);
    assert!(feed(&good));
    let mut bad: Vec<u32> = "Sure ".bytes().map(u32::from).collect();
    bad.push(256);
    bad.extend(
        "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"P\", \"unit\": \" F"
            .bytes()
            .map(u32::from),
    );
    assert!(!feed(&bad), "an argument outside the schema got through");
}

#[test]
fn a_lazy_hermes_grammar_holds_bare_json_calls_too() {
    let g = lazy_call_grammar(ToolFormat::Hermes, &strict_weather(), true, None).expect("grammar");
    let bare = r#"{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}"#;
    assert!(walk(&g, bare));
    assert!(walk(&g, &format!("```json\n{bare}\n```\nDone.")));
    assert!(refuses(
        &g,
        r#"{"name": "get_weather", "arguments": {"city": "Paris", "unit": " F"#
    ));
    let tagged = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"P\", \"unit\": \"f\"}}\n</tool_call>";
    assert!(walk(&g, &format!("{bare}\nand {tagged}")));
}
