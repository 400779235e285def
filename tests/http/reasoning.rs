//! Reasoning kept apart from the answer, through recorded model outputs played by the scripted
//! fake engine (no small reasoning model is available here): `reasoning_content` on chat,
//! `thinking` blocks on messages; never content, never parsed for tool calls.

use mlx_serve_engine::fake::{FakeConfig, Script, ScriptEntry};
use mlx_serve_engine::reasoning::ReasoningFormat;
use serde_json::{json, Value};

use crate::common::*;

/// A DeepSeek-R1-style reply: the reasoning mentions call markup, then a real call follows.
const R1: &str = "<think>\nThe user asks for Paris weather. A call looks like <tool_call>{\"name\": \"get_weather\"}</tool_call>.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
const PLAIN: &str = "<think>Short thought.</think>\nThe answer is 4.";

async fn scripted(replies: &[&str]) -> TestServer {
    let entries = replies
        .iter()
        .map(|r| ScriptEntry::Reply(r.to_string()))
        .collect();
    start(
        |s| {
            s.reasoning.parser = ReasoningFormat::Think;
            s.cache.enabled = false;
        },
        FakeConfig {
            script: Some(Script::new(entries)),
            ..FakeConfig::default()
        },
    )
    .await
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

#[actix_rt::test]
async fn chat_reasoning_goes_to_reasoning_content_and_is_not_parsed_for_calls() {
    let t = scripted(&[R1, R1]).await;
    let body = |stream: bool| {
        chat_with(
            "weather?",
            json!({"tools": weather_tools(), "stream": stream}),
        )
    };
    let (status, whole) = t.post_json("/v1/chat/completions", body(false)).await;
    assert_eq!(status, 200, "{whole}");
    let msg = &whole["choices"][0]["message"];
    let reasoning = msg["reasoning_content"]
        .as_str()
        .expect("reasoning_content");
    assert!(
        reasoning.contains("A call looks like <tool_call>"),
        "{reasoning}"
    );
    assert!(msg["content"].is_null(), "{whole}");
    let calls = msg["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(
        calls.len(),
        1,
        "the call inside the reasoning is not a call: {whole}"
    );
    assert_eq!(calls[0]["function"]["arguments"], r#"{"city":"Paris"}"#);

    let chunks = sse_data_events(&t, "/v1/chat/completions", body(true)).await;
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, reasoning);
    assert_eq!(content, "");
    let indexes: Vec<u64> = chunks
        .iter()
        .flat_map(|c| {
            c["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|d| d["index"].as_u64())
        .collect();
    assert!(
        !indexes.is_empty() && indexes.iter().all(|&i| i == 0),
        "{indexes:?}"
    );
}

#[actix_rt::test]
async fn messages_reasoning_is_a_thinking_block_streamed_with_thinking_deltas() {
    let t = scripted(&[PLAIN, PLAIN]).await;
    let body = |stream: bool| {
        json!({"model": MODEL, "max_tokens": 200, "stream": stream,
            "messages": [{"role": "user", "content": "2+2?"}]})
    };
    let (status, whole) = t.post_json("/v1/messages", body(false)).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["content"][0]["type"], "thinking", "{whole}");
    assert_eq!(whole["content"][0]["thinking"], "Short thought.");
    assert_eq!(
        whole["content"][1],
        json!({"type": "text", "text": "The answer is 4."})
    );

    let evs = sse_data_events(&t, "/v1/messages", body(true)).await;
    let starts: Vec<&str> = evs
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .filter_map(|e| e["content_block"]["type"].as_str())
        .collect();
    assert_eq!(starts, ["thinking", "text"]);
    let thinking: String = evs
        .iter()
        .filter(|e| e["delta"]["type"] == "thinking_delta")
        .filter_map(|e| e["delta"]["thinking"].as_str())
        .collect();
    let text: String = evs
        .iter()
        .filter(|e| e["delta"]["type"] == "text_delta")
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(
        (thinking.as_str(), text.as_str()),
        ("Short thought.", "The answer is 4.")
    );
}

#[actix_rt::test]
async fn reasoning_parser_none_leaves_the_text_alone() {
    let t = start(
        |s| s.reasoning.parser = ReasoningFormat::Disabled,
        FakeConfig {
            script: Some(Script::new(vec![ScriptEntry::Reply(PLAIN.into())])),
            ..FakeConfig::default()
        },
    )
    .await;
    let (_, whole) = t.post_json("/v1/chat/completions", chat("2+2?")).await;
    assert_eq!(whole["choices"][0]["message"]["content"], PLAIN);
    assert!(whole["choices"][0]["message"]
        .get("reasoning_content")
        .is_none());
}

#[actix_rt::test]
async fn thinking_and_template_kwargs_are_checked_and_a_budgeted_request_is_answered() {
    let t = scripted(&[PLAIN]).await;
    let messages = |thinking: Value| {
        json!({"model": MODEL, "max_tokens": 50, "thinking": thinking,
            "messages": [{"role": "user", "content": "2+2?"}]})
    };
    for (bad, field) in [
        (json!({"type": "sometimes"}), "thinking.type"),
        (
            json!({"type": "enabled", "budget_tokens": "many"}),
            "thinking.budget_tokens",
        ),
        (
            json!({"type": "enabled", "budget_tokens": 0}),
            "thinking.budget_tokens",
        ),
    ] {
        let (status, body) = t.post_json("/v1/messages", messages(bad)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["type"], "error", "{body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(field), "{body}");
    }
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            chat_with("2+2?", json!({"chat_template_kwargs": "x"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "chat_template_kwargs", "{body}");

    let (status, whole) = t
        .post_json(
            "/v1/messages",
            messages(json!({"type": "enabled", "budget_tokens": 1024})),
        )
        .await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["content"][0]["thinking"], "Short thought.", "{whole}");
}

#[actix_rt::test]
async fn responses_reasoning_is_a_reasoning_item_streamed_with_reasoning_text_deltas() {
    let t = scripted(&[PLAIN, PLAIN]).await;
    let body = |stream: bool| json!({"model": MODEL, "input": "2+2?", "stream": stream});
    let (status, whole) = t.post_json("/v1/responses", body(false)).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["output"][0]["type"], "reasoning", "{whole}");
    assert_eq!(
        whole["output"][0]["content"],
        json!([{"type": "reasoning_text", "text": "Short thought."}])
    );
    assert_eq!(whole["output"][1]["type"], "message", "{whole}");
    assert_eq!(whole["output"][1]["content"][0]["text"], "The answer is 4.");

    let evs = sse_data_events(&t, "/v1/responses", body(true)).await;
    let reasoning: String = evs
        .iter()
        .filter(|e| e["type"] == "response.reasoning_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    let text: String = evs
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(
        (reasoning.as_str(), text.as_str()),
        ("Short thought.", "The answer is 4.")
    );
    let done = evs
        .iter()
        .find(|e| e["type"] == "response.completed")
        .expect("completed");
    // The streamed response ends with the same output as the JSON one (ids aside).
    let without_ids = |v: &Value| -> Vec<Value> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                let mut i = i.clone();
                i["id"] = Value::Null;
                i
            })
            .collect()
    };
    assert_eq!(
        without_ids(&done["response"]["output"]),
        without_ids(&whole["output"])
    );
}
