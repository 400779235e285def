//! Tool calling through the real tool-parser seam, over the fake engine.
//!
//! The fake echoes the last message, so a user message holding `<tool_call>…</tool_call>`
//! makes it "generate" that call. Its model has no chat template, so the format is the one
//! detected for "no template" (`json`, which also reads `<tool_call>` tags).

use std::sync::{Arc, Mutex};

use mlx_serve::pipeline::seams::{MetricsSeam, RequestRecord, Seams};
use mlx_serve_actors::metrics::ToolCallOutcome;
use mlx_serve_engine::fake::FakeConfig;
use serde_json::{json, Value};

use crate::common::*;

const CALL: &str = r#"<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>"#;

/// `text` with the fake's word for "ignore the constraint": the model disobeys, so the checks
/// behind constrained decoding (the 422) are what answers.
fn ignoring(text: &str) -> String {
    format!("{text} __ignore_constraint__")
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    ])
}

fn tool_chat(text: &str, extra: Value) -> Value {
    let mut body = chat_with(text, json!({"tools": tools()}));
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

async fn server() -> TestServer {
    start(|_| {}, FakeConfig::default()).await
}

/// The data events of an SSE body (no comments, no `[DONE]`).
async fn stream_events(t: &TestServer, body: Value) -> (Vec<Value>, String) {
    let r = t.post("/v1/chat/completions", body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    let events = sse_events(&text)
        .into_iter()
        .flatten()
        .filter(|e| e.is_object())
        .collect();
    (events, text)
}

fn args(text: &Value) -> Value {
    serde_json::from_str(text.as_str().expect("arguments is a string")).expect("arguments JSON")
}

#[actix_rt::test]
async fn tool_call_reply_has_openai_shape_with_null_content() {
    let t = server().await;
    let (status, body) = t
        .post_json("/v1/chat/completions", tool_chat(CALL, json!({})))
        .await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null(), "{body}");
    let calls = choice["message"]["tool_calls"]
        .as_array()
        .expect("tool_calls");
    assert_eq!(calls.len(), 1);
    assert!(calls[0]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("call_")));
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(
        args(&calls[0]["function"]["arguments"]),
        json!({"city": "Paris"})
    );
}

#[actix_rt::test]
async fn prose_before_a_call_stays_content() {
    let t = server().await;
    let (_, body) = t
        .post_json(
            "/v1/chat/completions",
            tool_chat(&format!("Let me look. {CALL}"), json!({})),
        )
        .await;
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], "Let me look.");
    assert_eq!(message["tool_calls"][0]["function"]["name"], "get_weather");
}

#[actix_rt::test]
async fn streamed_call_sends_id_type_name_once_then_arguments() {
    let t = server().await;
    let (events, text) = t_stream(&t, &format!("Checking now. {CALL}")).await;
    // Content before the call arrives before any tool-call delta.
    let first_tool = events
        .iter()
        .position(|e| e["choices"][0]["delta"].get("tool_calls").is_some())
        .expect("a tool-call delta");
    let content: String = events[..first_tool]
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Checking now.");
    let deltas: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert!(deltas.len() >= 2, "{text}");
    assert!(deltas.iter().all(|d| d["index"] == 0), "{text}");
    assert_eq!(deltas[0]["type"], "function");
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert!(deltas[0]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("call_")));
    for d in &deltas[1..] {
        assert!(d.get("id").is_none() && d.get("type").is_none(), "{d}");
        assert!(d["function"].get("name").is_none(), "{d}");
    }
    let joined: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&joined).ok(),
        Some(json!({"city": "Paris"}))
    );
    let finish: Vec<&Value> = events
        .iter()
        .map(|e| &e["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("tool_calls")]);
    assert!(!text.contains("<tool_call>"), "markup leaked: {text}");
}

async fn t_stream(t: &TestServer, text: &str) -> (Vec<Value>, String) {
    stream_events(t, tool_chat(text, json!({"stream": true}))).await
}

#[actix_rt::test]
async fn streaming_and_non_streaming_give_the_same_calls() {
    let t = server().await;
    let two = format!(
        "{CALL} {}",
        CALL.replace("get_weather", "get_time")
            .replace(r#""city":"Paris""#, "")
    );
    let (_, whole) = t
        .post_json("/v1/chat/completions", tool_chat(&two, json!({})))
        .await;
    let expected: Vec<(Value, Value)> = whole["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| {
            (
                c["function"]["name"].clone(),
                args(&c["function"]["arguments"]),
            )
        })
        .collect();
    assert_eq!(expected.len(), 2, "{whole}");
    let (events, _) = t_stream(&t, &two).await;
    let mut calls: Vec<(Value, String)> = Vec::new();
    for d in events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
    {
        let i = d["index"].as_u64().expect("index") as usize;
        if i == calls.len() {
            calls.push((d["function"]["name"].clone(), String::new()));
        }
        calls[i]
            .1
            .push_str(d["function"]["arguments"].as_str().unwrap_or(""));
    }
    let streamed: Vec<(Value, Value)> = calls
        .into_iter()
        .map(|(n, a)| (n, serde_json::from_str(&a).expect("JSON")))
        .collect();
    assert_eq!(streamed, expected);
}

#[actix_rt::test]
async fn tool_choice_none_keeps_markup_as_content() {
    let t = server().await;
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            tool_chat(CALL, json!({"tool_choice": "none"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["content"], CALL);
    assert!(choice["message"].get("tool_calls").is_none());
    assert_eq!(choice["finish_reason"], "stop");
}

#[actix_rt::test]
async fn required_choice_without_a_call_is_a_422_naming_tool_choice() {
    let t = server().await;
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            tool_chat(
                "It is sunny. __ignore_constraint__",
                json!({"tool_choice": "required"}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (kind, param, code) = error_of(&body);
    assert_eq!(kind, "invalid_response_error");
    assert_eq!(param, Some("tool_choice"));
    assert_eq!(code, Some("tool_choice_not_satisfied"));
    // With a call it passes.
    let (status, _) = t
        .post_json(
            "/v1/chat/completions",
            tool_chat(CALL, json!({"tool_choice": "required"})),
        )
        .await;
    assert_eq!(status, 200);
}

#[actix_rt::test]
async fn named_choice_with_another_call_fails_and_streams_end_in_an_error_event() {
    let t = server().await;
    let named = json!({"type": "function", "function": {"name": "get_time"}});
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            tool_chat(&ignoring(CALL), json!({"tool_choice": named})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("get_time"));
    let (events, text) = stream_events(
        &t,
        tool_chat(
            "no call here __ignore_constraint__",
            json!({"tool_choice": named, "stream": true}),
        ),
    )
    .await;
    let last = events.last().expect("events");
    assert_eq!(last["error"]["code"], "tool_choice_not_satisfied", "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
}

#[actix_rt::test]
async fn invalid_tool_choice_is_a_400_naming_the_field() {
    let t = server().await;
    for choice in [
        json!("sometimes"),
        json!({"type": "function", "function": {"name": "launch_rockets"}}),
        json!({"type": "function"}),
    ] {
        let (status, body) = t
            .post_json(
                "/v1/chat/completions",
                tool_chat(CALL, json!({"tool_choice": choice})),
            )
            .await;
        assert_eq!(status, 400, "{choice}: {body}");
        assert_eq!(error_of(&body).1, Some("tool_choice"), "{body}");
    }
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            chat_with("x", json!({"tool_choice": "required"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body).1, Some("tool_choice"));
}

#[actix_rt::test]
async fn unknown_tool_names_stay_text() {
    let t = server().await;
    let other = CALL.replace("get_weather", "launch_rockets");
    let (_, body) = t
        .post_json("/v1/chat/completions", tool_chat(&other, json!({})))
        .await;
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["content"], other.as_str());
    assert!(choice["message"].get("tool_calls").is_none());
    assert_eq!(choice["finish_reason"], "stop");
}

#[actix_rt::test]
async fn parallel_tool_calls_false_keeps_only_the_first() {
    let t = server().await;
    let (_, body) = t
        .post_json(
            "/v1/chat/completions",
            tool_chat(
                &format!("{CALL} {CALL}"),
                json!({"parallel_tool_calls": false}),
            ),
        )
        .await;
    let calls = body["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("calls");
    assert_eq!(calls.len(), 1, "{body}");
    let (_, body) = t
        .post_json(
            "/v1/chat/completions",
            tool_chat(&format!("{CALL} {CALL}"), json!({})),
        )
        .await;
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[actix_rt::test]
async fn tool_round_trip_messages_are_accepted() {
    let t = server().await;
    let body = json!({"model": MODEL, "tools": tools(), "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"}
    ]});
    let (status, body) = t.post_json("/v1/chat/completions", body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Sunny, 21 C");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

#[derive(Default)]
struct Outcomes(Mutex<Vec<Vec<ToolCallOutcome>>>);

impl MetricsSeam for Outcomes {
    fn record(&self, record: RequestRecord) {
        if let Ok(mut v) = self.0.lock() {
            v.push(record.tool_calls);
        }
    }
}

#[actix_rt::test]
async fn finished_records_carry_the_tool_call_outcome() {
    let metrics = Arc::new(Outcomes::default());
    let seams = Seams {
        metrics: Some(metrics.clone()),
        ..Seams::default()
    };
    let server = mlx_serve::start_server(
        test_settings(),
        fake_factory(FakeConfig {
            model_id: MODEL.into(),
            ..FakeConfig::default()
        }),
        seams,
    )
    .await
    .expect("server starts");
    let t = TestServer::new(server);
    wait_health(&t, std::time::Duration::from_secs(5), |h| {
        h["status"] == "ok"
    })
    .await;
    t.post_json("/v1/chat/completions", tool_chat(CALL, json!({})))
        .await;
    t.post_json(
        "/v1/chat/completions",
        tool_chat(
            "hi __ignore_constraint__",
            json!({"tool_choice": "required"}),
        ),
    )
    .await;
    t.post_json("/v1/chat/completions", chat("no tools")).await;
    let seen = metrics.0.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(
        seen,
        vec![
            vec![ToolCallOutcome {
                format: "json".into(),
                name: None,
                ok: true
            }],
            vec![ToolCallOutcome {
                format: "json".into(),
                name: None,
                ok: false
            }],
            vec![],
        ]
    );
}

#[test]
fn tools_parse_cli_prints_content_and_calls() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("temp dir");
    let tools_file = dir.path().join("tools.json");
    std::fs::write(&tools_file, json!({"tools": tools()}).to_string()).expect("write tools");
    let run = |extra: &[&str], input: &str| -> Value {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mlx-serve"))
            .args(["tools", "parse"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("exits");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    };
    let v = run(&["--format", "hermes"], &format!("Sure. {CALL}"));
    assert_eq!(v["content"], "Sure.");
    assert_eq!(v["tool_calls"][0]["type"], "function");
    assert_eq!(v["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(
        args(&v["tool_calls"][0]["function"]["arguments"]),
        json!({"city": "Paris"})
    );
    let path = tools_file.to_str().expect("utf-8 path");
    let other = CALL.replace("get_weather", "launch_rockets");
    let v = run(&["--tools", path], &other);
    assert_eq!(v["tool_calls"], json!([]));
    assert_eq!(v["content"], other.as_str());
}

#[actix_rt::test]
async fn required_choice_is_guaranteed_by_the_constraint() {
    let t = server().await;
    for stream in [false, true] {
        let body = tool_chat(
            "It is sunny.",
            json!({"tool_choice": "required", "stream": stream}),
        );
        if stream {
            let (events, text) = stream_events(&t, body).await;
            assert!(text.contains("\"tool_calls\""), "{text}");
            assert!(
                events
                    .iter()
                    .any(|e| e["choices"][0]["finish_reason"] == "tool_calls"),
                "{text}"
            );
            continue;
        }
        let (status, body) = t.post_json("/v1/chat/completions", body).await;
        assert_eq!(status, 200, "{body}");
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
        let call = &choice["message"]["tool_calls"][0]["function"];
        let name = call["name"].as_str().unwrap_or_default();
        assert!(["get_weather", "get_time"].contains(&name), "{body}");
        assert!(args(&call["arguments"]).is_object(), "{body}");
    }
    // A named function: that one, with arguments that follow its schema.
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            tool_chat("Paris", json!({"tool_choice": named})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let call = &body["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather");
    assert!(args(&call["arguments"])["city"].is_string(), "{body}");
}

#[actix_rt::test]
async fn a_forced_tool_whose_schema_cannot_be_enforced_is_a_400_naming_it() {
    let t = server().await;
    let mut body = tool_chat("hi", json!({"tool_choice": "required"}));
    body["tools"][1]["function"]["parameters"] = json!({"type": "strng"});
    let (status, body) = t.post_json("/v1/chat/completions", body).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_of(&body).1,
        Some("tools[1].function.parameters"),
        "{body}"
    );
}
