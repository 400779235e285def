//! SSE framing: role chunk, deltas, finish, usage chunk, [DONE], keep-alives, error events.

use mlx_serve_engine::fake::FakeConfig;
use serde_json::{json, Value};

use crate::common::*;

async fn stream_body(t: &TestServer, path: &str, body: Value) -> (u16, String, String) {
    let r = t.post(path, body).await;
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    (status, ctype, r.text().await.unwrap())
}

#[actix_rt::test]
async fn chat_stream_sends_role_deltas_finish_usage_and_done() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (status, ctype, body) = stream_body(
        &t,
        "/v1/chat/completions",
        chat_with(
            "alpha beta gamma",
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    let events: Vec<Value> = sse_events(&body).into_iter().flatten().collect();
    let n = events.len();
    assert_eq!(events[n - 1], "[DONE]");
    let first = &events[0];
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let id = first["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    let text: String = events[1..n - 3]
        .iter()
        .map(|e| e["choices"][0]["delta"]["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(text, "alpha beta gamma");
    assert_eq!(n - 4, 3, "one delta per token: {body}");
    let finish = &events[n - 3];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = &events[n - 2];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(
        usage["usage"]["total_tokens"],
        usage["usage"]["prompt_tokens"].as_u64().unwrap() + 3
    );
    assert!(events[..n - 1].iter().all(|e| e["id"] == id));
}

#[actix_rt::test]
async fn no_usage_chunk_unless_asked() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (_, _, body) = stream_body(
        &t,
        "/v1/chat/completions",
        chat_with("a b", json!({"stream": true})),
    )
    .await;
    let events: Vec<Value> = sse_events(&body).into_iter().flatten().collect();
    assert!(events.iter().all(|e| e.get("usage").is_none()), "{body}");
    assert_eq!(
        events[events.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
}

#[actix_rt::test]
async fn streamed_stop_and_length_finish_reasons() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (_, _, body) = stream_body(
        &t,
        "/v1/chat/completions",
        chat_with("one two three", json!({"stream": true, "max_tokens": 2})),
    )
    .await;
    let events: Vec<Value> = sse_events(&body).into_iter().flatten().collect();
    assert_eq!(
        events[events.len() - 2]["choices"][0]["finish_reason"],
        "length"
    );
    let (_, _, body) = stream_body(
        &t,
        "/v1/chat/completions",
        chat_with("one two three", json!({"stream": true, "stop": ["thr"]})),
    )
    .await;
    let text: String = sse_events(&body)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "one two ");
}

#[actix_rt::test]
async fn completions_stream_with_a_list_keeps_indexes() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (status, _, body) = stream_body(
        &t,
        "/v1/completions",
        json!({"model": MODEL, "prompt": ["a b", "c"], "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(status, 200);
    let events: Vec<Value> = sse_events(&body).into_iter().flatten().collect();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let mut texts = [String::new(), String::new()];
    let mut finishes = 0;
    for e in &events[..events.len() - 1] {
        assert_eq!(e["object"], "text_completion");
        if let Some(c) = e["choices"].get(0) {
            let i = c["index"].as_u64().unwrap() as usize;
            texts[i].push_str(c["text"].as_str().unwrap());
            if !c["finish_reason"].is_null() {
                finishes += 1;
            }
        }
    }
    assert_eq!(texts, ["a b".to_owned(), "c".to_owned()]);
    assert_eq!(finishes, 2);
    let usage = &events[events.len() - 2]["usage"];
    assert_eq!(usage["completion_tokens"], 3);
}

#[actix_rt::test]
async fn keep_alive_comments_flow_while_waiting_for_the_first_token() {
    let t = start(|s| s.server.keep_alive_s = 0.05, FakeConfig::default()).await;
    let (status, _, body) = stream_body(
        &t,
        "/v1/chat/completions",
        chat_with("__stall_ms=400__ hi", json!({"stream": true})),
    )
    .await;
    assert_eq!(status, 200);
    let events = sse_events(&body);
    let first_data = events
        .iter()
        .position(|e| {
            e.as_ref().is_some_and(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
            })
        })
        .unwrap();
    assert!(
        events[..first_data].iter().any(Option::is_none),
        "a keep-alive before the first token: {body}"
    );
    assert!(body.contains(": keep-alive\n\n"));
}

#[actix_rt::test]
async fn mid_stream_failure_is_an_error_event() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (status, _, body) = stream_body(
        &t,
        "/v1/chat/completions",
        chat_with("__fail__ a", json!({"stream": true})),
    )
    .await;
    assert_eq!(status, 200);
    let events: Vec<Value> = sse_events(&body).into_iter().flatten().collect();
    let last = events.last().unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{body}");
    assert!(events
        .iter()
        .any(|e| e["choices"][0]["delta"]["content"] == "__fail__"));
    assert!(!body.contains("[DONE]"));
}

#[actix_rt::test]
async fn streamed_logprobs_ride_on_each_delta() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (_, _, body) = stream_body(
        &t,
        "/v1/chat/completions",
        chat_with(
            "p q",
            json!({"stream": true, "logprobs": true, "top_logprobs": 1}),
        ),
    )
    .await;
    let deltas: Vec<Value> = sse_events(&body)
        .into_iter()
        .flatten()
        .filter(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .collect();
    assert_eq!(deltas.len(), 2);
    assert_eq!(
        deltas[1]["choices"][0]["logprobs"]["content"][0]["token"],
        " q"
    );
}
