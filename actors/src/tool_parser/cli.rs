//! `mlx-serve tools parse`: model text in, OpenAI-shaped JSON out.

use serde_json::{json, Value};

use super::{parse, ParseOptions, ToolFormat};

/// Parses `input` and returns `{"content": …|null, "tool_calls": [{"id","type","function":
/// {"name","arguments"}}]}`. `tools_json` is an array of tool definitions or an object with a
/// `tools` array; without it any function name is accepted, since the point is to see what the
/// model wrote. `Auto` with no template at hand tries every format.
pub fn run_parse_cli(format: ToolFormat, tools_json: Option<Value>, input: &str) -> Value {
    let (tools, allow_unknown_tools) = match tools_json {
        Some(Value::Array(tools)) => (tools, false),
        Some(Value::Object(mut o)) => match o.remove("tools") {
            Some(Value::Array(tools)) => (tools, false),
            _ => (vec![Value::Object(o)], false),
        },
        _ => (Vec::new(), true),
    };
    let out = parse(
        input,
        &ParseOptions {
            tools,
            format,
            allow_unknown_tools,
            ..ParseOptions::default()
        },
    );
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
