//! Reference vectors from the public tool-parser suites of vLLM (`tests/tool_parsers/`,
//! `tests/entrypoints/openai/tool_parsers/`) and SGLang (`test/srt/test_function_call_parser.py`):
//! each is a model output and the calls those suites expect from it, recorded as data in
//! `testdata/public_vectors.json` (source file and test name kept with each). Every vector must
//! give the same calls here, token by token as well as whole, except the few listed in
//! [`DIFFERENT`], where this server decides otherwise on purpose.

use serde_json::{json, Value};

use super::testutil::assert_chunking_invariant;
use super::{ParseOptions, ToolFormat};

/// `(format, test)` of vectors whose expectation this parser does not share, and why.
const DIFFERENT: &[(&str, &str, &str)] = &[
    (
        "llama3_json",
        "TestLlama32Detector.test_invalid_then_valid_json",
        "a call whose arguments began streaming is never dropped, even when its JSON breaks",
    ),
    (
        "kimi_k2",
        "TestKimiK2Detector.test_partial_tool_call",
        "a mid-stream state (arguments not yet known), not a whole reply",
    ),
    (
        "qwen3_coder",
        "TestQwen3CoderDetector.test_parse_streaming_multiple_tools",
        "values keep their inner indentation (code); only the newlines around them are layout",
    ),
    (
        "glm45",
        "TestGlm4MoeDetector.test_array_argument_with_escaped_json (raw string r\"\"\")",
        "literal backslash-n text between the tags is not GLM markup",
    ),
    (
        "mistral",
        "test_extract_tool_calls[complex]",
        "truncated argument JSON after [TOOL_CALLS] stays content (Mistral calls are sent whole)",
    ),
    (
        "glm45",
        "test_extract_tool_calls_incomplete_tool_call",
        "a call whose arguments are complete is kept when the reply ends before </tool_call>",
    ),
    (
        "gpt_oss",
        "test_extract_tool_calls_multiple_tools",
        "rebuilt from token ids; arguments that are not JSON are not calls here",
    ),
];

/// Vectors whose suites check only the call names.
const NAMES_ONLY: &[(&str, &str)] = &[("kimi_k2", "test_extract_tool_calls_invalid_json")];

fn format(name: &str) -> ToolFormat {
    let name = if name == "deepseek_v31" {
        "deepseek_v3"
    } else {
        name
    };
    name.parse()
        .unwrap_or_else(|e| panic!("format {name}: {e:?}"))
}

fn schema_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        _ => "string",
    }
}

/// The request's tools: every function the vector expects, its parameters typed from the
/// expected values (typed formats convert by the schema), and one more so that none is empty.
fn tools(calls: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = calls
        .iter()
        .map(|c| {
            let props: serde_json::Map<String, Value> = c["arguments"]
                .as_object()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.clone(), json!({"type": schema_type(v)})))
                        .collect()
                })
                .unwrap_or_default();
            json!({"type": "function", "function": {"name": c["name"],
                "parameters": {"type": "object", "properties": props}}})
        })
        .collect();
    out.push(
        json!({"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {}}}}),
    );
    out
}

fn arguments(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

#[test]
fn public_suite_vectors_give_the_same_calls() {
    let vectors: Vec<Value> =
        serde_json::from_str(include_str!("testdata/public_vectors.json")).expect("vectors");
    assert!(vectors.len() > 100, "{} vectors", vectors.len());
    let mut checked = 0;
    for v in &vectors {
        let (fmt, test) = (v["format"].as_str().unwrap(), v["test"].as_str().unwrap());
        if DIFFERENT.iter().any(|(f, t, _)| *f == fmt && *t == test) {
            continue;
        }
        let expected = v["calls"].as_array().cloned().unwrap_or_default();
        let options = ParseOptions {
            tools: tools(&expected),
            format: format(fmt),
            ..ParseOptions::default()
        };
        let input = v["input"].as_str().unwrap();
        let out = assert_chunking_invariant(&options, input);
        let names_only = NAMES_ONLY.iter().any(|(f, t)| *f == fmt && *t == test);
        let got: Vec<(String, Value)> = out
            .tool_calls
            .iter()
            .map(|c| (c.name.clone(), arguments(&c.arguments)))
            .collect();
        let want: Vec<(String, Value)> = expected
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["arguments"].clone(),
                )
            })
            .collect();
        if names_only {
            let names = |v: &[(String, Value)]| v.iter().map(|c| c.0.clone()).collect::<Vec<_>>();
            assert_eq!(names(&got), names(&want), "{fmt} {test}");
        } else {
            assert_eq!(got, want, "{fmt} {test}: {input:?}");
        }
        checked += 1;
    }
    assert_eq!(checked + DIFFERENT.len(), vectors.len());
}
