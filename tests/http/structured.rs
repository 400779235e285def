//! Structured outputs over the fake engine, which honours constraints (it writes text the
//! grammar accepts): `response_format`, vLLM's `structured_outputs`, Anthropic's
//! `output_config.format`, and the 400s for what cannot be enforced.

use mlx_serve_engine::fake::FakeConfig;
use serde_json::{json, Value};

use crate::common::*;

async fn server() -> TestServer {
    start(|_| {}, FakeConfig::default()).await
}

fn content(body: &Value) -> Value {
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content: {body}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[actix_rt::test]
async fn json_schema_response_format_constrains_chat_and_completions() {
    let t = server().await;
    let schema = json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "rank": {"type": "integer"},
                       "tags": {"type": "array", "items": {"enum": ["big", "old"]}, "minItems": 1}},
        "required": ["city", "rank", "tags"],
        "additionalProperties": false
    });
    let format = json!({"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": true}});
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            chat_with("Paris", json!({"response_format": format})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let doc = content(&body);
    assert_eq!(doc["city"], "Paris");
    assert!(doc["rank"].is_i64() && doc["tags"][0].is_string(), "{doc}");

    let (status, body) = t
        .post_json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "Paris", "max_tokens": 64,
                   "response_format": {"type": "json_object"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["text"], "{}");
}

#[actix_rt::test]
async fn a_constraint_that_runs_out_of_tokens_ends_with_length() {
    let t = server().await;
    let format = json!({"type": "json_schema", "json_schema": {"name": "c", "schema": {
        "type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]}}});
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            chat_with(
                "a long story that does not fit in four tokens",
                json!({"response_format": format, "max_tokens": 4}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

#[actix_rt::test]
async fn streamed_constrained_text_is_the_same_as_whole() {
    let t = server().await;
    let extra =
        |stream: bool| json!({"stream": stream, "structured_outputs": {"choice": ["yes", "no"]}});
    let (_, whole) = t
        .post_json("/v1/chat/completions", chat_with("no way", extra(false)))
        .await;
    assert_eq!(whole["choices"][0]["message"]["content"], "no");
    let r = t
        .post("/v1/chat/completions", chat_with("no way", extra(true)))
        .await;
    let text = r.text().await.expect("body");
    let streamed: String = sse_events(&text)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(streamed, "no");
}

#[actix_rt::test]
async fn formats_that_cannot_be_enforced_are_400s_naming_the_field() {
    let t = server().await;
    let cases = [
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strng"}}}}),
            "response_format",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
            "response_format.json_schema.schema",
        ),
        (
            json!({"response_format": {"type": "yaml"}}),
            "response_format.type",
        ),
        (
            json!({"structured_outputs": {"regex": "(unclosed"}}),
            "structured_outputs",
        ),
    ];
    for (extra, param) in cases {
        let (status, body) = t
            .post_json("/v1/chat/completions", chat_with("x", extra.clone()))
            .await;
        assert_eq!(status, 400, "{extra}: {body}");
        assert_eq!(error_of(&body).1, Some(param), "{body}");
    }
    let (status, body) = t
        .post_json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x",
                   "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strng"}}}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body).1, Some("response_format"));
}

#[actix_rt::test]
async fn anthropic_output_config_format_constrains_the_reply() {
    let t = server().await;
    let schema =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    for key in ["output_config", "output_format"] {
        let format = json!({"type": "json_schema", "schema": schema});
        let spec = if key == "output_config" {
            json!({"format": format})
        } else {
            format
        };
        let (status, body) = t
            .post_json(
                "/v1/messages",
                json!({"model": MODEL, "max_tokens": 64,
                       "messages": [{"role": "user", "content": "Paris"}], key: spec}),
            )
            .await;
        assert_eq!(status, 200, "{key}: {body}");
        assert_eq!(
            body["content"][0]["text"], "{\"city\": \"Paris\"}",
            "{body}"
        );
        assert_eq!(body["stop_reason"], "end_turn");
    }
    let (status, body) = t
        .post_json(
            "/v1/messages",
            json!({"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "x"}],
                   "output_config": {"format": {"type": "json_schema", "schema": {"type": "strng"}}}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("output_config.format.schema"), "{body}");
}
