//! The Anthropic routes' HTTP contract on the real server (moved from the stand-alone app that
//! `tests/anthropic_http.rs` wired around a canned generator): status codes, error bodies,
//! body-extractor errors, aliases and both reply formats.

use mlx_serve_engine::fake::FakeConfig;
use serde_json::{json, Value};

use crate::anthropic::anthropic_events;
use crate::common::*;

const KEY: &str = "secret";

async fn secured() -> TestServer {
    start(
        |s| {
            s.server.api_keys = vec![KEY.into()];
            s.server.body_limit = 1 << 16;
        },
        FakeConfig::default(),
    )
    .await
}

async fn post(t: &TestServer, path: &str, body: &Value, key: &str) -> reqwest::Response {
    t.client
        .post(t.url(path))
        .header("x-api-key", key)
        .header("anthropic-version", "2099-01-01")
        .json(body)
        .send()
        .await
        .expect("request sent")
}

fn hello(extra: Value) -> Value {
    let mut v = json!({"model": "claude-sonnet-4-5", "max_tokens": 16,
        "messages": [{"role": "user", "content": "say hello world"}]});
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    v
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("JSON body");
    assert_eq!(body["type"], "error", "{body}");
    (status, body["error"].clone())
}

#[actix_rt::test]
async fn aliased_model_gets_a_message_reply() {
    let t = secured().await;
    let resp = post(&t, "/v1/messages?beta=true", &hello(json!({})), KEY).await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("JSON body");
    assert_eq!(body["type"], "message");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["content"][0]["text"], "say hello world");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["output_tokens"], 3);
}

#[actix_rt::test]
async fn streamed_reply_is_an_unbuffered_event_stream() {
    let t = secured().await;
    let body = hello(json!({"stream": true, "max_tokens": 2}));
    let resp = post(&t, "/v1/messages", &body, KEY).await;
    assert_eq!(resp.status().as_u16(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    let text = resp.text().await.expect("body");
    let events = anthropic_events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(
        names
            .iter()
            .filter(|e| **e == "content_block_delta")
            .count(),
        2
    );
    assert!(text.contains("\"stop_reason\":\"max_tokens\""), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"));
}

#[actix_rt::test]
async fn validation_errors_are_400_invalid_request() {
    let t = secured().await;
    let mut body = hello(json!({}));
    body.as_object_mut().map(|o| o.remove("max_tokens"));
    let (status, error) = error_of(post(&t, "/v1/messages", &body, KEY).await).await;
    assert_eq!(status, 400);
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["message"], "max_tokens: Field required");
}

#[actix_rt::test]
async fn malformed_json_is_400_in_anthropics_shape() {
    let t = secured().await;
    let resp = t
        .client
        .post(t.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .expect("request sent");
    let (status, error) = error_of(resp).await;
    assert_eq!(status, 400);
    assert_eq!(error["type"], "invalid_request_error");
}

#[actix_rt::test]
async fn oversized_body_is_413_request_too_large() {
    let t = secured().await;
    let big = "x ".repeat(40_000);
    let body = hello(json!({"messages": [{"role": "user", "content": big}]}));
    let (status, error) = error_of(post(&t, "/v1/messages", &body, KEY).await).await;
    assert_eq!(status, 413);
    assert_eq!(error["type"], "request_too_large");
}

#[actix_rt::test]
async fn unknown_model_is_404_and_bad_key_is_401() {
    let t = secured().await;
    let body = hello(json!({"model": "gpt-4o"}));
    let (status, error) = error_of(post(&t, "/v1/messages", &body, KEY).await).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (404, Some("not_found_error"))
    );
    let (status, error) =
        error_of(post(&t, "/v1/messages", &hello(json!({})), "wrong").await).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (401, Some("authentication_error"))
    );
}

#[actix_rt::test]
async fn count_tokens_answers_input_tokens() {
    let t = secured().await;
    let body = json!({"model": "claude-haiku-4-5", "system": "be nice",
        "messages": [{"role": "user", "content": "one two three"}]});
    let resp = post(&t, "/v1/messages/count_tokens", &body, KEY).await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("JSON body");
    // The fake engine counts the words of its ChatML rendering: the five words, plus a role
    // marker for each of the two turns and for the generation prompt.
    assert_eq!(body, json!({"input_tokens": 8}));
}
