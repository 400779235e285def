//! Non-streaming responses: shapes, usage, stop, logprobs, completions, models.

use mlx_serve_engine::fake::FakeConfig;
use serde_json::json;

use crate::common::*;

#[actix_rt::test]
async fn chat_completion_has_openai_shape_and_usage() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (status, body) = t
        .post_json("/v1/chat/completions", chat("Hello big world"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL);
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert!(body["system_fingerprint"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Hello big world");
    assert_eq!(choice["finish_reason"], "stop");
    // The fake counts whitespace-separated words of the ChatML rendering: 5 here.
    assert_eq!(body["usage"]["prompt_tokens"], 5);
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(body["usage"]["total_tokens"], 8);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

#[actix_rt::test]
async fn max_tokens_and_max_completion_tokens_end_with_length() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (_, body) = t
        .post_json(
            "/v1/chat/completions",
            chat_with("a b c d e", json!({"max_tokens": 2})),
        )
        .await;
    assert_eq!(body["choices"][0]["message"]["content"], "a b");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 2);
    let (_, body) = t
        .post_json(
            "/v1/chat/completions",
            chat_with(
                "a b c d e",
                json!({"max_tokens": 2, "max_completion_tokens": 3}),
            ),
        )
        .await;
    assert_eq!(body["choices"][0]["message"]["content"], "a b c");
}

#[actix_rt::test]
async fn stop_string_truncates_and_finishes_with_stop() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (_, body) = t
        .post_json(
            "/v1/chat/completions",
            chat_with("one two three four", json!({"stop": ["three"]})),
        )
        .await;
    assert_eq!(body["choices"][0]["message"]["content"], "one two ");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let (_, body) = t
        .post_json(
            "/v1/chat/completions",
            chat_with("one two three", json!({"stop": "two"})),
        )
        .await;
    assert_eq!(body["choices"][0]["message"]["content"], "one ");
}

#[actix_rt::test]
async fn logprobs_follow_the_openai_shape() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            chat_with("x y", json!({"logprobs": true, "top_logprobs": 2})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let content = body["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(content.len(), 2);
    assert_eq!(content[1]["token"], " y");
    assert!(content[0]["logprob"].as_f64().unwrap() <= 0.0);
    assert_eq!(content[0]["bytes"], json!([120]));
    assert_eq!(content[0]["top_logprobs"].as_array().unwrap().len(), 2);
    let (_, plain) = t.post_json("/v1/chat/completions", chat("x y")).await;
    assert!(plain["choices"][0]["logprobs"].is_null());
}

#[actix_rt::test]
async fn unknown_fields_are_ignored_and_sampling_fields_accepted() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let body = chat_with(
        "ok",
        json!({"temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": 7,
               "presence_penalty": 0.5, "frequency_penalty": 0.5, "repetition_penalty": 1.1,
               "n": 1, "user": "u", "some_future_field": {"x": 1},
               "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
               "tool_choice": "auto"}),
    );
    let (status, body) = t.post_json("/v1/chat/completions", body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "ok");
}

#[actix_rt::test]
async fn completions_serve_a_string_and_a_list_of_prompts() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (status, body) = t
        .post_json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "p q r"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "p q r");
    assert_eq!(body["usage"]["prompt_tokens"], 3);

    let (_, body) = t
        .post_json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": ["a b", "c d e"], "max_tokens": 2}),
        )
        .await;
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[1]["index"], 1);
    assert_eq!(choices[1]["text"], "c d");
    assert_eq!(choices[1]["finish_reason"], "length");
    assert_eq!(body["usage"]["prompt_tokens"], 5);
    assert_eq!(body["usage"]["completion_tokens"], 4);
}

#[actix_rt::test]
async fn completions_default_to_sixteen_tokens_and_echo() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let words: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
    let (_, body) = t
        .post_json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": words.join(" ")}),
        )
        .await;
    assert_eq!(body["usage"]["completion_tokens"], 16);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    let (_, body) = t
        .post_json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "hi", "echo": true, "logprobs": 1}),
        )
        .await;
    assert_eq!(body["choices"][0]["text"], "hihi");
    assert_eq!(body["choices"][0]["logprobs"]["text_offset"], json!([2]));
}

#[actix_rt::test]
async fn models_list_and_lookup() {
    let t = start(
        |s| s.model.aliases = vec!["alias-1".into()],
        FakeConfig::default(),
    )
    .await;
    let (status, body) = t.get_json("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], MODEL);
    assert_eq!(body["data"][0]["object"], "model");
    assert_eq!(body["data"][1]["id"], "alias-1");
    let (status, body) = t.get_json(&format!("/v1/models/{MODEL}")).await;
    assert_eq!((status, body["id"].as_str()), (200, Some(MODEL)));
    let (status, _) = t
        .post_json(
            "/v1/chat/completions",
            json!({"model": "alias-1", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = t.get_json("/v1/models/nope").await;
    assert_eq!(status, 404);
    assert_eq!(error_of(&body).2, Some("model_not_found"));
}

#[actix_rt::test]
async fn health_and_version_report_state() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let h = t.health().await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["model"], MODEL);
    assert_eq!(h["model_loaded"], true);
    assert_eq!(h["backend"], "fake");
    assert_eq!(h["engine_alive"], true);
    assert_eq!(h["queue_depth"], 0);
    assert_eq!(h["running"], 0);
    assert!(h["uptime_s"].as_f64().is_some());
    let (status, v) = t.get_json("/version").await;
    assert_eq!(status, 200);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}
