//! Every client mistake is a 4xx in OpenAI's error shape, naming the field.

use mlx_serve_engine::fake::FakeConfig;
use serde_json::json;

use crate::common::*;

async fn expect_400(t: &TestServer, path: &str, body: serde_json::Value, param: Option<&str>) {
    let (status, resp) = t.post_json(path, body.clone()).await;
    assert_eq!(status, 400, "{body} -> {resp}");
    let (kind, p, _) = error_of(&resp);
    assert_eq!(kind, "invalid_request_error");
    assert_eq!(p, param, "{body} -> {resp}");
}

#[actix_rt::test]
async fn malformed_json_is_a_400_without_param() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let r = t.post_raw("/v1/chat/completions", "{\"model\": ").await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_of(&body), ("invalid_request_error", None, None));
}

#[actix_rt::test]
async fn invalid_fields_are_named() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let c = "/v1/chat/completions";
    expect_400(
        &t,
        c,
        json!({"messages": [{"role": "user", "content": "x"}]}),
        Some("model"),
    )
    .await;
    expect_400(&t, c, json!({"model": MODEL}), Some("messages")).await;
    expect_400(
        &t,
        c,
        json!({"model": MODEL, "messages": []}),
        Some("messages"),
    )
    .await;
    expect_400(
        &t,
        c,
        json!({"model": MODEL, "messages": "hi"}),
        Some("messages"),
    )
    .await;
    expect_400(
        &t,
        c,
        json!({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}),
        Some("messages[0].role"),
    )
    .await;
    expect_400(
        &t,
        c,
        json!({"model": MODEL, "messages": [{"content": "x"}]}),
        Some("messages[0].role"),
    )
    .await;
    expect_400(
        &t,
        c,
        chat_with("x", json!({"temperature": "hot"})),
        Some("temperature"),
    )
    .await;
    expect_400(
        &t,
        c,
        chat_with("x", json!({"temperature": 2.5})),
        Some("temperature"),
    )
    .await;
    expect_400(&t, c, chat_with("x", json!({"top_p": 1.5})), Some("top_p")).await;
    expect_400(
        &t,
        c,
        chat_with("x", json!({"presence_penalty": -3})),
        Some("presence_penalty"),
    )
    .await;
    expect_400(
        &t,
        c,
        chat_with("x", json!({"max_tokens": 0})),
        Some("max_tokens"),
    )
    .await;
    expect_400(&t, c, chat_with("x", json!({"n": 17})), Some("n")).await;
    expect_400(
        &t,
        c,
        chat_with("x", json!({"top_logprobs": 30, "logprobs": true})),
        Some("top_logprobs"),
    )
    .await;
    expect_400(&t, c, chat_with("x", json!({"stop": 5})), Some("stop")).await;
    let p = "/v1/completions";
    expect_400(&t, p, json!({"model": MODEL}), Some("prompt")).await;
    expect_400(
        &t,
        p,
        // Token ids are accepted (tests/http/hostile.rs); a mixed list is not a prompt.
        json!({"model": MODEL, "prompt": [1, "two"]}),
        Some("prompt"),
    )
    .await;
    expect_400(
        &t,
        p,
        json!({"model": MODEL, "prompt": "x", "n": 0}),
        Some("n"),
    )
    .await;
}

#[actix_rt::test]
async fn unknown_model_is_a_404_model_not_found() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            json!({"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        error_of(&body),
        (
            "invalid_request_error",
            Some("model"),
            Some("model_not_found")
        )
    );
    let (status, _) = t
        .post_json("/v1/completions", json!({"model": "gpt-17", "prompt": "x"}))
        .await;
    assert_eq!(status, 404);
}

#[actix_rt::test]
async fn prompt_over_context_is_a_400_with_the_numbers() {
    let t = start(
        |_| {},
        FakeConfig {
            context_length: 12,
            ..FakeConfig::default()
        },
    )
    .await;
    let long = "w ".repeat(20);
    for stream in [false, true] {
        let (status, body) = t
            .post_json(
                "/v1/chat/completions",
                chat_with(&long, json!({"stream": stream})),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let (_, _, code) = error_of(&body);
        assert_eq!(code, Some("context_length_exceeded"));
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("12 tokens"),
            "{body}"
        );
    }
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            chat_with("short", json!({"max_tokens": 100})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body).2, Some("context_length_exceeded"));
}

#[actix_rt::test]
async fn oversized_body_is_a_413() {
    let t = start(|s| s.server.body_limit = 2048, FakeConfig::default()).await;
    let (status, body) = t
        .post_json("/v1/chat/completions", chat(&"x".repeat(5000)))
        .await;
    assert_eq!(status, 413);
    assert_eq!(error_of(&body).2, Some("request_too_large"));
    let (status, _) = t.post_json("/v1/chat/completions", chat("fits")).await;
    assert_eq!(status, 200);
}

#[actix_rt::test]
async fn api_keys_are_required_when_configured() {
    let t = start(
        |s| s.server.api_keys = vec!["k-1".into(), "k-2".into()],
        FakeConfig::default(),
    )
    .await;
    let url = t.url("/v1/chat/completions");
    let r = t.client.post(&url).json(&chat("x")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_of(&body).2, Some("invalid_api_key"));
    let r = t
        .client
        .post(&url)
        .bearer_auth("k-3")
        .json(&chat("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = t
        .client
        .post(&url)
        .bearer_auth("k-2")
        .json(&chat("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = t
        .client
        .post(&url)
        .header("x-api-key", "k-1")
        .json(&chat("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = t.client.get(t.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Probes stay open.
    let r = t.client.get(t.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[actix_rt::test]
async fn unknown_route_is_a_json_404() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (status, body) = t.get_json("/v1/nothing").await;
    assert_eq!(status, 404);
    assert_eq!(error_of(&body).0, "invalid_request_error");
}

#[actix_rt::test]
async fn engine_failure_before_output_is_a_500_not_a_hang() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (status, body) = t
        .post_json("/v1/chat/completions", chat("__fail__ a b"))
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(error_of(&body).0, "server_error");
}

#[actix_rt::test]
async fn cors_headers_follow_the_configured_origins() {
    let t = start(
        |s| s.server.cors_origins = vec!["http://app.test".into()],
        FakeConfig::default(),
    )
    .await;
    let r = t
        .client
        .request(reqwest::Method::OPTIONS, t.url("/v1/chat/completions"))
        .header("origin", "http://app.test")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://app.test"
    );
    let r = t
        .client
        .get(t.url("/v1/models"))
        .header("origin", "http://evil.test")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
