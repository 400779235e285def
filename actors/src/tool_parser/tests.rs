//! Cross-format behaviour: the chunking property, streaming shape, choice and the actor.

use serde_json::json;

use super::testutil::{
    assert_chunking_invariant, calls, options, parse_with, shape, stream_chunks,
};
use super::*;

/// Replies in every format, with the hard cases; each must parse the same however it is cut.
fn corpus() -> Vec<String> {
    let ds = |s: &str| s.replace('|', "\u{ff5c}").replace('_', "\u{2581}");
    vec![
        "Plain answer, no tools. Braces {like this} and [brackets] < > stay.".into(),
        "Let me check.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich ☀\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>".into(),
        "<tool_call>{\"name\": \"run_code\", \"arguments\": {\"code\": \"s = '<tool_call>}'\\nprint(s)\"}}</tool_call> after".into(),
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>".into(),
        "[TOOL_CALLS][{\"name\": \"get_time\", \"arguments\": {}}]".into(),
        "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Nice\"}".into(),
        "<|python_tag|>{\"name\": \"get_time\", \"parameters\": {}}; {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Bern\"}}".into(),
        "[get_weather(city='SF', days=2), get_time()]".into(),
        ds("ok<|tool_calls_begin|><|tool_call_begin|>function<|tool_sep|>NAME\n```json\n{}\n```<|tool_call_end|><|tool_calls_end|>")
            .replace("NAME", "get_time"),
        "Sure:\n```json\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n```\nThat's it.".into(),
        "{\"tool\": \"get_time\", \"arguments\": {}} then get_weather({\"city\": \"Kyiv\"})".into(),
        "Truncated <tool_call>{\"name\": \"get_weather\", \"argu".into(),
        "<tool_call>{\"name\": \"unknown_tool\", \"arguments\": {}}</tool_call>".into(),
        "a < b and c <tool d [TOOL x <|py".into(),
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Kyoto\"}<|tool_call_end|><|tool_calls_section_end|>".into(),
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Lima</arg_value>\n<arg_key>days</arg_key>\n<arg_value>4</arg_value>\n</tool_call>".into(),
        "<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>{}<|call|>".into(),
        "<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Quito</parameter>\n</invoke>\n</minimax:tool_call>".into(),
        "<start_function_call>call:get_weather{city:<escape>Oslo<escape>}<end_function_call>".into(),
    ]
}

#[test]
fn every_chunking_matches_the_whole_parse_in_every_format() {
    let formats = [
        ToolFormat::Auto,
        ToolFormat::Hermes,
        ToolFormat::Qwen3Coder,
        ToolFormat::Mistral,
        ToolFormat::Llama3Json,
        ToolFormat::Pythonic,
        ToolFormat::DeepseekV3,
        ToolFormat::Json,
        ToolFormat::KimiK2,
        ToolFormat::Glm45,
        ToolFormat::GptOss,
        ToolFormat::MinimaxM2,
        ToolFormat::Functiongemma,
    ];
    for text in corpus() {
        for format in formats {
            assert_chunking_invariant(&options(format), &text);
        }
    }
}

#[test]
fn auto_finds_calls_of_every_format_in_the_corpus() {
    let found: Vec<usize> = corpus()
        .iter()
        .map(|t| parse(t, &options(ToolFormat::Auto)).tool_calls.len())
        .collect();
    assert_eq!(
        found,
        [0, 2, 1, 1, 1, 1, 2, 2, 1, 1, 2, 0, 0, 0, 1, 1, 1, 1, 1]
    );
}

#[test]
fn content_before_a_call_streams_immediately() {
    let mut p = StreamParser::new(&options(ToolFormat::Hermes));
    assert_eq!(
        p.push("Hello there"),
        [StreamEvent::Content("Hello there".into())]
    );
    // A possible marker start is held, and only that.
    assert_eq!(
        p.push(" wait <tool"),
        [StreamEvent::Content(" wait".into())]
    );
    assert_eq!(
        p.push("box> ok"),
        [StreamEvent::Content(" <toolbox> ok".into())]
    );
    assert_eq!(p.push("\n<tool_call>{\"name\": \"get_time\""), []);
    let events = p.push(", \"arguments\": {}}</tool_call>");
    assert!(
        matches!(&events[0], StreamEvent::ToolCallStart { index: 0, name, .. } if name == "get_time")
    );
    assert!(p.finish().is_empty());
}

#[test]
fn markup_never_leaks_into_streamed_content() {
    let text = "Hi <tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>";
    let singles: Vec<String> = text.chars().map(String::from).collect();
    let refs: Vec<&str> = singles.iter().map(String::as_str).collect();
    let (_, events) = stream_chunks(&options(ToolFormat::Hermes), &refs);
    for e in &events {
        if let StreamEvent::Content(c) = e {
            assert!(!c.contains('<') && !c.contains('{'), "leaked {c:?}");
        }
    }
}

#[test]
fn streamed_deltas_send_id_type_and_name_once_per_index() {
    let text = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call><tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>";
    let (out, events) = stream_chunks(
        &options(ToolFormat::Hermes),
        &[&text[..20], &text[20..70], &text[70..]],
    );
    let deltas: Vec<serde_json::Value> = events.iter().filter_map(tool_call_delta).collect();
    assert_eq!(deltas.len(), 4);
    for (i, d) in deltas.iter().enumerate() {
        let first = i % 2 == 0;
        assert_eq!(d["index"], i / 2);
        assert_eq!(d.get("id").is_some(), first);
        assert_eq!(d.get("type").is_some(), first);
        assert_eq!(d["function"].get("name").is_some(), first);
    }
    assert_eq!(deltas[1]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_ne!(out.tool_calls[0].id, out.tool_calls[1].id);
    let ids_ok = out.tool_calls.iter().all(|c| {
        c.id.len() == 29
            && c.id.starts_with("call_")
            && c.id[5..].chars().all(|ch| ch.is_ascii_alphanumeric())
    });
    assert!(ids_ok);
}

#[test]
fn tool_choice_none_returns_the_text_as_content() {
    let text = "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>";
    let mut opts = options(ToolFormat::Hermes);
    opts.tool_choice = ToolChoice::None;
    let out = parse(text, &opts);
    assert!(out.tool_calls.is_empty());
    assert_eq!(out.content, text);
}

#[test]
fn unknown_tools_become_calls_only_when_allowed() {
    let text = "<tool_call>{\"name\": \"search_web\", \"arguments\": {\"q\": \"x\"}}</tool_call>";
    assert!(parse_with(ToolFormat::Hermes, text).tool_calls.is_empty());
    let mut opts = options(ToolFormat::Hermes);
    opts.allow_unknown_tools = true;
    assert_eq!(
        calls(&assert_chunking_invariant(&opts, text)),
        [("search_web", r#"{"q":"x"}"#)]
    );
}

#[test]
fn without_tools_text_passes_through_untouched() {
    let text = "  {\"name\": \"get_time\", \"arguments\": {}} <tool_call>  ";
    let opts = ParseOptions {
        format: ToolFormat::Auto,
        ..ParseOptions::default()
    };
    let mut p = StreamParser::new(&opts);
    assert_eq!(shape(&parse(text, &opts)), (text.to_string(), vec![]));
    assert_eq!(
        p.push("<tool\n\n"),
        [StreamEvent::Content("<tool\n\n".into())]
    );
}

#[test]
fn reply_that_is_only_calls_has_empty_content() {
    let out = parse_with(
        ToolFormat::Auto,
        "\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n\n",
    );
    assert_eq!(out.content, "");
    assert_eq!(calls(&out), [("get_time", "{}")]);
}

#[test]
fn arguments_keep_unicode_and_key_order() {
    let out = parse_with(
        ToolFormat::Hermes,
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"z\": \"日本\\u00e9\", \"a\": {\"name\": [1, 2]}}}</tool_call>",
    );
    assert_eq!(
        calls(&out),
        [("get_weather", r#"{"z":"日本\u00e9","a":{"name":[1,2]}}"#)]
    );
    let v: serde_json::Value =
        serde_json::from_str(&out.tool_calls[0].arguments).unwrap_or_default();
    assert_eq!(v["z"], "日本é");
}

#[test]
fn actor_parses_and_counts_by_format() {
    let sys = actix::System::new();
    sys.block_on(async {
        let addr = ToolParserActor::new().start();
        let text = "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"get_time\", \"arguments\": {</tool_call>";
        let out = addr
            .send(ParseComplete { text: text.into(), options: options(ToolFormat::Hermes) })
            .await
            .unwrap_or_default();
        // The second call began (name and arguments) and then broke: it stays a call.
        assert_eq!(out.tool_calls.len(), 2);
        assert_eq!(out.tool_calls[1].arguments, "{");
        assert_eq!(out.content, "</tool_call>");
        let mut whole = StreamParser::new(&options(ToolFormat::Hermes));
        whole.push(text);
        whole.finish();
        assert_eq!((whole.stats().calls["hermes"], whole.stats().failures["hermes"]), (2, 1));
        let mut streamed = StreamParser::new(&options(ToolFormat::Pythonic));
        streamed.push("[get_time()]");
        streamed.finish();
        assert_eq!(streamed.stats().calls["pythonic"], 1);
        let _ = json!(null);
    });
}

/// Random replies stitched from markers, partial markers and JSON/Python pieces (fixed seed):
/// no panic, and chunking never changes the result, in any format.
#[test]
fn random_marker_soup_is_chunking_invariant_and_never_panics() {
    use rand::{Rng, SeedableRng};
    let pieces = [
        "<tool_call>",
        "</tool_call>",
        "<tool_",
        "\n",
        " ",
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        "\"",
        "'",
        ":",
        ",",
        ";",
        "{\"name\": \"get_time\", \"arguments\": {}}",
        "\"name\"",
        "\"arguments\"",
        "get_time",
        "get_weather",
        "(city=\"x\")",
        "[TOOL_CALLS]",
        "[ARGS]",
        "<|python_tag|>",
        "<function=get_time>",
        "</function>",
        "<parameter=city>",
        "</parameter>",
        "```",
        "```json\n",
        "\u{ff5c}",
        "<\u{ff5c}tool\u{2581}calls\u{2581}begin\u{ff5c}>",
        "<\u{ff5c}tool\u{2581}sep\u{ff5c}>",
        "é☀",
        "True",
        "\\",
        "1.5",
        "-",
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"",
    ];
    let formats = [
        ToolFormat::Auto,
        ToolFormat::Hermes,
        ToolFormat::Qwen3Coder,
        ToolFormat::Mistral,
        ToolFormat::Llama3Json,
        ToolFormat::Pythonic,
        ToolFormat::DeepseekV3,
        ToolFormat::Json,
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    for _ in 0..400 {
        let n = rng.random_range(1..20);
        let text: String = (0..n)
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect();
        for format in formats {
            assert_chunking_invariant(&options(format), &text);
        }
    }
}

#[test]
fn the_reply_tools_instruction_asks_for_parses_as_a_call() {
    // What `tools_instruction` asks an untemplated model for must parse in the `json` format.
    let reply = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
    assert!(tools_instruction(&[]).contains("<tool_call>\n{\"name\": \"<function-name>\""));
    assert_eq!(
        calls(&parse_with(ToolFormat::Json, reply)),
        [("get_time", "{}")]
    );
}

#[test]
fn long_streamed_call_and_long_prose_stay_fast() {
    let code = "x = 1\n".repeat(3000);
    let call = format!(
        "{}<tool_call>{}</tool_call>",
        "Some prose. ".repeat(2000),
        json!({"name": "run_code", "arguments": {"code": code}})
    );
    let started = std::time::Instant::now();
    let mut p = StreamParser::new(&options(ToolFormat::Hermes));
    let mut events = Vec::new();
    for chunk in call.as_bytes().chunks(4) {
        events.extend(p.push(std::str::from_utf8(chunk).unwrap_or_default()));
    }
    events.extend(p.finish());
    let out = ParsedOutput::from_events(events);
    assert_eq!(out.tool_calls.len(), 1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// A long file written through a call: at every split, and one character at a time, the
/// fragments rebuild the whole-parse arguments, and they really arrive piece by piece.
#[test]
fn long_arguments_stream_incrementally_and_rebuild_the_whole_call() {
    let code: String = (0..12)
        .map(|i| format!("    line_{i} = \"<tag>\\\\ {{x}}\" # ü\n"))
        .collect();
    let json_code = serde_json::Value::String(code.clone()).to_string();
    let replies = [
        (
            ToolFormat::Hermes,
            format!("<tool_call>\n{{\"name\": \"run_code\", \"arguments\": {{\"code\": {json_code}}}}}\n</tool_call>"),
        ),
        (
            ToolFormat::Llama3Json,
            format!("<|python_tag|>{{\"name\": \"run_code\", \"parameters\": {{\"code\": {json_code}}}}}"),
        ),
        (
            ToolFormat::Json,
            format!("Writing it. {{\"name\": \"run_code\", \"arguments\": {{\"code\": {json_code}}}}}"),
        ),
        (
            ToolFormat::Qwen3Coder,
            format!("<tool_call>\n<function=run_code>\n<parameter=code>\n{code}</parameter>\n</function>\n</tool_call>"),
        ),
    ];
    for (format, text) in replies {
        let opts = options(format);
        let whole = assert_chunking_invariant(&opts, &text);
        assert_eq!(whole.tool_calls.len(), 1, "{format}: {text}");
        let v: serde_json::Value =
            serde_json::from_str(&whole.tool_calls[0].arguments).unwrap_or_default();
        assert_eq!(
            v["code"].as_str().map(str::trim_end),
            Some(code.trim_end()),
            "{format}"
        );
        let singles: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = singles.iter().map(String::as_str).collect();
        let (_, events) = stream_chunks(&opts, &refs);
        let fragments = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::ToolCallArgs { .. }))
            .count();
        assert!(
            fragments > code.len() / 2,
            "{format}: only {fragments} fragments"
        );
    }
}
