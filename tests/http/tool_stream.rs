//! Tool-call arguments streamed as the model writes them, on all three APIs, over the scripted
//! fake engine (one word per token): the fragments rebuild exactly the non-streaming call.

use mlx_serve_actors::tool_parser::ToolFormat;
use mlx_serve_engine::fake::{FakeConfig, Script, ScriptEntry};
use serde_json::{json, Value};

use crate::common::*;

/// A 20-line file written through a `write_file` call, Hermes style.
fn write_call() -> String {
    let content: String = (0..20)
        .map(|i| format!("line {i}: \"quoted\" \\ tab\there\n"))
        .collect();
    let args = json!({"path": "notes.txt", "content": content});
    format!("I'll write it.\n<tool_call>\n{{\"name\": \"write_file\", \"arguments\": {args}}}\n</tool_call>")
}

const QWEN3_CALL: &str = "<tool_call>\n<function=write_file>\n<parameter=path>\nsrc/a.py\n</parameter>\n<parameter=content>\ndef f(x):\n    return x < 2\n\nprint(f(1))\n</parameter>\n<parameter=mode>\n420\n</parameter>\n</function>\n</tool_call>";

fn tool_defs() -> Value {
    json!([{"type": "function", "function": {"name": "write_file", "description": "Write a file",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string"}, "content": {"type": "string"}, "mode": {"type": "integer"}},
            "required": ["path", "content"]}}}])
}

async fn scripted(replies: &[&str], format: ToolFormat) -> TestServer {
    let entries = replies
        .iter()
        .map(|r| ScriptEntry::Reply(r.to_string()))
        .collect();
    start(
        |s| {
            s.tools.format = format;
            s.cache.enabled = false;
        },
        FakeConfig {
            script: Some(Script::new(entries)),
            ..FakeConfig::default()
        },
    )
    .await
}

fn chat_body(stream: bool, extra: Value) -> Value {
    let mut b = chat_with(
        "write notes.txt",
        json!({"tools": tool_defs(), "stream": stream}),
    );
    if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    b
}

/// `(name, arguments)` rebuilt from chat chunks the way the official client does, checking
/// that id, type and name come once, in the first delta of their index.
fn rebuild_chat(chunks: &[Value]) -> (Vec<(String, String)>, usize, Option<String>) {
    let mut calls: Vec<(String, String)> = Vec::new();
    let mut fragments = 0;
    let mut finish = None;
    for c in chunks {
        let Some(choice) = c["choices"].get(0) else {
            continue;
        };
        if let Some(r) = choice["finish_reason"].as_str() {
            finish = Some(r.to_string());
        }
        for d in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = d["index"].as_u64().expect("index on every delta") as usize;
            if i == calls.len() {
                assert!(
                    d["id"].as_str().is_some_and(|id| id.starts_with("call_")),
                    "{d}"
                );
                assert_eq!(d["type"], "function");
                calls.push((
                    d["function"]["name"].as_str().expect("name").into(),
                    String::new(),
                ));
            } else {
                assert!(
                    d.get("id").is_none() && d["function"].get("name").is_none(),
                    "{d}"
                );
            }
            if let Some(a) = d["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                calls[i].1.push_str(a);
                fragments += 1;
            }
        }
    }
    (calls, fragments, finish)
}

fn chat_calls(body: &Value) -> Vec<(String, String)> {
    body["choices"][0]["message"]["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let f = &c["function"];
            (
                f["name"].as_str().unwrap_or("").into(),
                f["arguments"].as_str().unwrap_or("").into(),
            )
        })
        .collect()
}

#[actix_rt::test]
async fn streamed_chat_arguments_arrive_in_pieces_and_equal_the_whole_reply() {
    let reply = write_call();
    for (format, reply) in [
        (ToolFormat::Hermes, reply.as_str()),
        (ToolFormat::Qwen3Coder, QWEN3_CALL),
    ] {
        let t = scripted(&[reply, reply], format).await;
        let chunks = sse_data_events(&t, "/v1/chat/completions", chat_body(true, json!({}))).await;
        let (streamed, fragments, finish) = rebuild_chat(&chunks);
        let (status, whole) = t
            .post_json("/v1/chat/completions", chat_body(false, json!({})))
            .await;
        assert_eq!(status, 200, "{whole}");
        assert_eq!(streamed, chat_calls(&whole), "{format}");
        assert_eq!(streamed.len(), 1);
        assert!(fragments >= 5, "{format}: {fragments} fragments");
        assert_eq!(finish.as_deref(), Some("tool_calls"));
        let args: Value = serde_json::from_str(&streamed[0].1).expect("arguments JSON");
        if format == ToolFormat::Qwen3Coder {
            assert_eq!(args["mode"], 420);
            assert_eq!(
                args["content"],
                "def f(x):\n    return x < 2\n\nprint(f(1))"
            );
        }
        // No markup in the content.
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert!(
            !content.contains('<') && !content.contains('{'),
            "{content:?}"
        );
    }
}

#[actix_rt::test]
async fn call_cut_off_by_max_tokens_keeps_its_arguments_and_says_length() {
    let reply = write_call();
    let t = scripted(&[&reply, &reply], ToolFormat::Hermes).await;
    let cut = json!({"max_tokens": 30});
    let chunks = sse_data_events(&t, "/v1/chat/completions", chat_body(true, cut.clone())).await;
    let (streamed, _, finish) = rebuild_chat(&chunks);
    let (_, whole) = t
        .post_json("/v1/chat/completions", chat_body(false, cut))
        .await;
    assert_eq!(finish.as_deref(), Some("length"));
    assert_eq!(whole["choices"][0]["finish_reason"], "length");
    assert_eq!(streamed, chat_calls(&whole));
    assert_eq!(streamed.len(), 1, "{whole}");
    assert!(
        streamed[0]
            .1
            .starts_with(r#"{"path":"notes.txt","content":"line 0"#),
        "{}",
        streamed[0].1
    );
    assert!(serde_json::from_str::<Value>(&streamed[0].1).is_err());
}

fn anthropic_body(stream: bool, max_tokens: u32) -> Value {
    json!({"model": MODEL, "max_tokens": max_tokens, "stream": stream,
        "messages": [{"role": "user", "content": "write notes.txt"}],
        "tools": [{"name": "write_file", "input_schema": tool_defs()[0]["function"]["parameters"]}]})
}

#[actix_rt::test]
async fn anthropic_input_json_deltas_rebuild_the_non_streaming_input() {
    let reply = write_call();
    let t = scripted(&[&reply, &reply, &reply, &reply], ToolFormat::Hermes).await;
    for max_tokens in [1000, 30] {
        let evs = sse_data_events(&t, "/v1/messages", anthropic_body(true, max_tokens)).await;
        let json: String = evs
            .iter()
            .filter(|e| e["delta"]["type"] == "input_json_delta")
            .map(|e| {
                e["delta"]["partial_json"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        let pieces = evs
            .iter()
            .filter(|e| e["delta"]["type"] == "input_json_delta")
            .count();
        let (status, whole) = t
            .post_json("/v1/messages", anthropic_body(false, max_tokens))
            .await;
        assert_eq!(status, 200, "{whole}");
        let block = whole["content"]
            .as_array()
            .and_then(|c| c.iter().find(|b| b["type"] == "tool_use"))
            .cloned()
            .expect("tool_use block");
        let expect = if max_tokens == 1000 {
            assert_eq!(whole["stop_reason"], "tool_use");
            serde_json::from_str::<Value>(&json).expect("whole input")
        } else {
            // Cut off: the whole members, as the client's partial reading gives them.
            assert_eq!(whole["stop_reason"], "max_tokens");
            json!({"path": "notes.txt"})
        };
        assert_eq!(block["input"], expect, "{json}");
        assert!(pieces >= 3, "{pieces} pieces");
    }
}

#[actix_rt::test]
async fn responses_argument_deltas_equal_done_and_the_non_streaming_call() {
    let reply = write_call();
    let t = scripted(&[&reply, &reply], ToolFormat::Hermes).await;
    let body = |stream: bool| {
        json!({"model": MODEL, "input": "write notes.txt", "stream": stream,
            "tools": [{"type": "function", "name": "write_file",
                "parameters": tool_defs()[0]["function"]["parameters"]}]})
    };
    let evs = sse_data_events(&t, "/v1/responses", body(true)).await;
    let deltas: Vec<&str> = evs
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    let done = evs
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .expect("done event");
    assert!(deltas.len() >= 3, "{deltas:?}");
    assert_eq!(deltas.concat(), done["arguments"].as_str().unwrap_or(""));
    let (status, whole) = t.post_json("/v1/responses", body(false)).await;
    assert_eq!(status, 200, "{whole}");
    let call = whole["output"]
        .as_array()
        .and_then(|o| o.iter().find(|i| i["type"] == "function_call"))
        .expect("function_call item");
    assert_eq!(call["arguments"], done["arguments"]);
}
