//! `mlx-serve tools parse`: model text in, OpenAI-shaped JSON out.

use serde_json::{json, Value};

use super::{parse, tool_call_delta, ParseOptions, StreamEvent, StreamParser, ToolFormat};

/// Parses `input` and returns `{"content": …|null, "tool_calls": [{"id","type","function":
/// {"name","arguments"}}]}`. `tools_json` is an array of tool definitions or an object with a
/// `tools` array; without it any function name is accepted, since the point is to see what the
/// model wrote. `Auto` with no template at hand tries every format.
pub fn run_parse_cli(format: ToolFormat, tools_json: Option<Value>, input: &str) -> Value {
    let out = parse(input, &cli_options(format, tools_json));
    let tool_calls: Vec<Value> = out
        .tool_calls
        .iter()
        .map(|c| {
            json!({"id": c.id, "type": "function",
                   "function": {"name": c.name, "arguments": c.arguments}})
        })
        .collect();
    let content = if out.content.is_empty() {
        Value::Null
    } else {
        Value::String(out.content)
    };
    json!({"content": content, "tool_calls": tool_calls})
}

/// `tools parse --stream`: feeds `input` in pieces of `chunk_chars` characters, as a model's
/// tokens would arrive, and returns the deltas a streaming client gets, one per line of output:
/// `{"content": …}` or `{"tool_calls": [<OpenAI delta>]}`.
pub fn run_parse_stream_cli(
    format: ToolFormat,
    tools_json: Option<Value>,
    input: &str,
    chunk_chars: usize,
) -> Vec<Value> {
    let mut parser = StreamParser::new(&cli_options(format, tools_json));
    let chars: Vec<char> = input.chars().collect();
    let mut events = Vec::new();
    for piece in chars.chunks(chunk_chars.max(1)) {
        events.extend(parser.push(&piece.iter().collect::<String>()));
    }
    events.extend(parser.finish());
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Content(text) => Some(json!({"content": text})),
            other => tool_call_delta(other).map(|d| json!({"tool_calls": [d]})),
        })
        .collect()
}

fn cli_options(format: ToolFormat, tools_json: Option<Value>) -> ParseOptions {
    let (tools, allow_unknown_tools) = match tools_json {
        Some(Value::Array(tools)) => (tools, false),
        Some(Value::Object(mut o)) => match o.remove("tools") {
            Some(Value::Array(tools)) => (tools, false),
            _ => (vec![Value::Object(o)], false),
        },
        _ => (Vec::new(), true),
    };
    ParseOptions {
        tools,
        format,
        allow_unknown_tools,
        ..ParseOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_prints_openai_shaped_calls_without_a_tools_file() {
        let v = run_parse_cli(
            ToolFormat::Auto,
            None,
            "Hi <tool_call>{\"name\": \"anything\", \"arguments\": {\"a\": 1}}</tool_call>",
        );
        assert_eq!(v["content"], "Hi");
        assert_eq!(v["tool_calls"][0]["type"], "function");
        assert_eq!(v["tool_calls"][0]["function"]["name"], "anything");
        assert_eq!(v["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
    }

    #[test]
    fn cli_stream_prints_the_name_once_then_argument_fragments() {
        let text =
            "Hi <tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"long text\"}}</tool_call>";
        let lines = run_parse_stream_cli(ToolFormat::Hermes, None, text, 3);
        assert_eq!(lines[0], json!({"content": "Hi"}));
        assert_eq!(lines[1]["tool_calls"][0]["function"]["name"], "f");
        let args: String = lines[2..]
            .iter()
            .map(|l| {
                assert!(l["tool_calls"][0]["function"].get("name").is_none());
                l["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert_eq!(args, r#"{"a":"long text"}"#);
        assert!(lines.len() > 4, "{lines:?}");
    }

    #[test]
    fn cli_with_tools_file_rejects_other_names() {
        let tools = json!({"tools": [{"type": "function", "function": {"name": "known"}}]});
        let v = run_parse_cli(
            ToolFormat::Hermes,
            Some(tools),
            "<tool_call>{\"name\": \"other\", \"arguments\": {}}</tool_call>",
        );
        assert_eq!(v["tool_calls"], json!([]));
        assert!(v["content"].as_str().unwrap_or("").contains("other"));
    }
}
