//! `POST /v1/responses` (OpenAI Responses API) over the fake engine, which echoes the last
//! message: the response object, the SSE event sequence and its equality with the JSON reply,
//! function calls through the real tool-call parser, stored responses and the error cases.

use mlx_serve_engine::fake::FakeConfig;
use serde_json::{json, Value};

use crate::anthropic::{anthropic_events, names};
use crate::common::*;

const CALL: &str = r#"<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>"#;

fn body(input: Value, extra: Value) -> Value {
    let mut b = json!({"model": MODEL, "input": input});
    if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    b
}

fn tools() -> Value {
    json!([
        {"type": "function", "name": "get_weather", "description": "Weather in a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"type": "web_search"},
        {"type": "namespace", "name": "mcp__x", "tools": []},
    ])
}

async fn server() -> TestServer {
    start(|_| {}, FakeConfig::default()).await
}

async fn stream(t: &TestServer, body: Value) -> Vec<(String, Value)> {
    let mut body = body;
    body["stream"] = json!(true);
    let r = t.post("/v1/responses", body).await;
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let text = r.text().await.expect("body");
    // Keep-alive comments aside, every event names its type on an `event:` line.
    let events: String = text
        .split("\n\n")
        .filter(|e| !e.starts_with(':'))
        .map(|e| format!("{e}\n\n"))
        .collect();
    anthropic_events(&events)
}

/// The output items with the generated ids blanked, for comparing two replies.
fn without_ids(output: &Value) -> Value {
    let mut output = output.clone();
    for item in output.as_array_mut().into_iter().flatten() {
        item["id"] = json!("");
        if item["type"] == "function_call" {
            item["call_id"] = json!("");
        }
    }
    output
}

fn final_response(events: &[(String, Value)]) -> &Value {
    &events.last().expect("events").1["response"]
}

#[actix_rt::test]
async fn a_text_reply_is_a_response_object() {
    let t = server().await;
    let (status, r) = t
        .post_json(
            "/v1/responses",
            body(
                json!("Hello world"),
                json!({"instructions": "Be brief.", "metadata": {"k": "v"}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert!(
        r["id"].as_str().is_some_and(|id| id.starts_with("resp_")),
        "{r}"
    );
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], MODEL);
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["incomplete_details"], Value::Null);
    assert_eq!(r["instructions"], "Be brief.");
    assert_eq!(r["metadata"], json!({"k": "v"}));
    assert_eq!(r["tool_choice"], "auto");
    assert_eq!(r["parallel_tool_calls"], true);
    assert_eq!(r["store"], true);
    assert_eq!(r["text"], json!({"format": {"type": "text"}}));
    let item = &r["output"][0];
    assert_eq!(item["type"], "message");
    assert_eq!(item["role"], "assistant");
    assert_eq!(item["status"], "completed");
    assert!(item["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
    assert_eq!(item["content"][0]["type"], "output_text");
    assert_eq!(item["content"][0]["text"], "Hello world");
    assert_eq!(item["content"][0]["annotations"], json!([]));
    assert_eq!(r["usage"]["output_tokens"], 2);
    assert!(r["usage"]["input_tokens"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(
        r["usage"]["total_tokens"],
        r["usage"]["input_tokens"].as_u64().unwrap_or(0) + 2
    );
    assert!(r["usage"]["input_tokens_details"]["cached_tokens"].is_u64());
    assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 0);
}

#[actix_rt::test]
async fn the_stream_rebuilds_exactly_the_json_reply() {
    let t = server().await;
    let request = body(json!("one two three"), json!({}));
    let (_, plain) = t.post_json("/v1/responses", request.clone()).await;
    let events = stream(&t, request).await;
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (_, e)) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
    let done = final_response(&events);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["id"], events[0].1["response"]["id"]);
    assert_eq!(without_ids(&done["output"]), without_ids(&plain["output"]));
    assert_eq!(done["usage"], plain["usage"]);
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, e)| e["delta"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(deltas, "one two three");
}

#[actix_rt::test]
async fn a_tool_call_is_a_function_call_item_in_both_replies() {
    let t = server().await;
    let request = body(json!(CALL), json!({"tools": tools()}));
    let (status, plain) = t.post_json("/v1/responses", request.clone()).await;
    assert_eq!(status, 200, "{plain}");
    let output = plain["output"].as_array().expect("output");
    assert_eq!(output.len(), 1, "{plain}");
    let call = &output[0];
    assert_eq!(call["type"], "function_call");
    assert!(call["id"].as_str().is_some_and(|id| id.starts_with("fc_")));
    assert!(call["call_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["status"], "completed");
    let args: Value =
        serde_json::from_str(call["arguments"].as_str().expect("string")).expect("json");
    assert_eq!(args, json!({"city": "Paris"}));
    assert_eq!(plain["tools"], tools(), "tools echoed as sent");

    let events = stream(&t, request).await;
    let n = names(&events);
    assert!(
        n.contains(&"response.function_call_arguments.delta"),
        "{n:?}"
    );
    assert!(
        n.contains(&"response.function_call_arguments.done"),
        "{n:?}"
    );
    assert!(!n.contains(&"response.output_text.delta"), "{n:?}");
    let added = events
        .iter()
        .find(|(n, _)| n == "response.output_item.added")
        .expect("added");
    assert_eq!(added.1["item"]["type"], "function_call");
    assert_eq!(added.1["item"]["name"], "get_weather");
    assert_eq!(
        without_ids(&final_response(&events)["output"]),
        without_ids(&plain["output"])
    );
}

#[actix_rt::test]
async fn previous_response_id_continues_a_stored_conversation() {
    let t = server().await;
    let (_, first) = t
        .post_json(
            "/v1/responses",
            body(json!(CALL), json!({"tools": tools()})),
        )
        .await;
    let id = first["id"].as_str().expect("id").to_owned();
    let call_id = first["output"][0]["call_id"]
        .as_str()
        .expect("call id")
        .to_owned();
    // The second turn answers the first turn's call: its call id is only in the stored history.
    let (status, second) = t
        .post_json(
            "/v1/responses",
            body(
                json!([{"type": "function_call_output", "call_id": call_id, "output": "Sunny"}]),
                json!({"previous_response_id": id, "tools": tools()}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_response_id"], id.as_str());
    assert_eq!(second["output"][0]["content"][0]["text"], "Sunny");
    assert!(
        second["usage"]["input_tokens"].as_u64() > first["usage"]["input_tokens"].as_u64(),
        "the history is in the prompt: {first} {second}"
    );

    let (status, got) = t.get_json(&format!("/v1/responses/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got, first);
    let r = t
        .client
        .delete(t.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let (status, gone) = t.get_json(&format!("/v1/responses/{id}")).await;
    assert_eq!(status, 404, "{gone}");
}

#[actix_rt::test]
async fn an_unknown_or_unstored_previous_response_is_a_404() {
    let t = server().await;
    let (status, e) = t
        .post_json(
            "/v1/responses",
            body(json!("hi"), json!({"previous_response_id": "resp_nope"})),
        )
        .await;
    assert_eq!(status, 404, "{e}");
    assert_eq!(
        error_of(&e),
        (
            "invalid_request_error",
            Some("previous_response_id"),
            Some("previous_response_not_found")
        )
    );
    let (_, unstored) = t
        .post_json("/v1/responses", body(json!("hi"), json!({"store": false})))
        .await;
    assert_eq!(unstored["store"], false);
    let id = unstored["id"].as_str().expect("id");
    let (status, _) = t
        .post_json(
            "/v1/responses",
            body(json!("again"), json!({"previous_response_id": id})),
        )
        .await;
    assert_eq!(status, 404);
}

#[actix_rt::test]
async fn another_api_key_cannot_continue_or_read_a_response() {
    let t = start(
        |s| s.server.api_keys = vec!["sk-alice".into(), "sk-bob".into()],
        FakeConfig::default(),
    )
    .await;
    let post = |key: &'static str, b: Value| {
        t.client
            .post(t.url("/v1/responses"))
            .bearer_auth(key)
            .json(&b)
            .send()
    };
    let first: Value = post("sk-alice", body(json!("secret"), json!({})))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let id = first["id"].as_str().expect("id").to_owned();
    let r = post(
        "sk-bob",
        body(json!("hi"), json!({"previous_response_id": id})),
    )
    .await
    .expect("sent");
    assert_eq!(r.status(), 404);
    let r = t
        .client
        .get(t.url(&format!("/v1/responses/{id}")))
        .bearer_auth("sk-bob")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 404);
    let r = post(
        "sk-alice",
        body(json!("hi"), json!({"previous_response_id": id})),
    )
    .await
    .expect("sent");
    assert_eq!(r.status(), 200);
}

#[actix_rt::test]
async fn bad_input_is_a_400_naming_the_field() {
    let t = server().await;
    for (b, param) in [
        (
            body(
                json!([{"role": "user", "content": "x"},
                       {"type": "function_call_output", "call_id": "call_x", "output": "1"}]),
                json!({}),
            ),
            "input[1].call_id",
        ),
        (
            body(
                json!("hi"),
                json!({"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}),
            ),
            "text.format",
        ),
        (body(json!([{"type": "bogus"}]), json!({})), "input[0].type"),
        (
            body(json!("hi"), json!({"max_output_tokens": 0})),
            "max_output_tokens",
        ),
    ] {
        let (status, e) = t.post_json("/v1/responses", b.clone()).await;
        assert_eq!(status, 400, "{b} → {e}");
        assert_eq!(error_of(&e).1, Some(param), "{e}");
    }
    let (status, e) = t
        .post_json("/v1/responses", json!({"model": "nope", "input": "hi"}))
        .await;
    assert_eq!(status, 404, "{e}");
}

#[actix_rt::test]
async fn max_output_tokens_makes_an_incomplete_response() {
    let t = server().await;
    let request = body(json!("one two three four"), json!({"max_output_tokens": 2}));
    let (_, r) = t.post_json("/v1/responses", request.clone()).await;
    assert_eq!(r["status"], "incomplete", "{r}");
    assert_eq!(
        r["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(r["output"][0]["content"][0]["text"], "one two");
    let events = stream(&t, request).await;
    assert_eq!(names(&events).last().copied(), Some("response.incomplete"));
}

#[actix_rt::test]
async fn a_failure_mid_stream_is_an_error_event_then_response_failed() {
    let t = server().await;
    let events = stream(&t, body(json!("first __fail__ second"), json!({}))).await;
    let n = names(&events);
    assert_eq!(n[n.len() - 2..], ["error", "response.failed"], "{n:?}");
    let failed = final_response(&events);
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[actix_rt::test]
async fn codex_first_request_shape_is_accepted() {
    let t = server().await;
    let request = json!({
        "model": MODEL,
        "instructions": "You are a coding agent.",
        "input": [
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "<permissions/>"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "<environment_context/>"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "say hi"}]},
        ],
        "tools": [
            {"type": "function", "name": "exec_command", "description": "Run a command",
             "strict": false, "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
            {"type": "namespace", "name": "mcp", "description": "", "tools": []},
            {"type": "web_search", "external_web_access": false},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "reasoning": {"summary": "auto"},
        "store": false,
        "stream": true,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "019a-session",
        "client_metadata": {"x-codex-turn-metadata": "{}"},
    });
    let events = stream(&t, request).await;
    let done = final_response(&events);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"][0]["content"][0]["text"], "say hi");
}

#[actix_rt::test]
async fn text_before_a_call_is_a_message_then_a_function_call_in_both_replies() {
    let t = server().await;
    let request = body(
        json!(format!("Let me look. {CALL}")),
        json!({"tools": tools()}),
    );
    let (_, plain) = t.post_json("/v1/responses", request.clone()).await;
    let kinds: Vec<&str> = plain["output"]
        .as_array()
        .expect("output")
        .iter()
        .map(|i| i["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["message", "function_call"], "{plain}");
    assert_eq!(
        plain["output"][0]["content"][0]["text"]
            .as_str()
            .map(str::trim),
        Some("Let me look.")
    );
    let events = stream(&t, request).await;
    assert_eq!(
        without_ids(&final_response(&events)["output"]),
        without_ids(&plain["output"])
    );
}
