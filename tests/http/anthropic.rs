//! The Anthropic Messages API over the shared pipeline and the fake engine (which echoes the last
//! user message word by word): every block and event type, errors in Anthropic's shape,
//! count_tokens, aliases.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mlx_serve_engine::fake::FakeConfig;
use serde_json::{json, Value};

use crate::common::*;

pub const CLAUDE: &str = "claude-sonnet-4-5-20250929";

pub fn message(text: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": CLAUDE,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": text}],
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

/// `(event name, data)` of every SSE event; each must have an `event:` line naming its `type`.
pub fn anthropic_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e
                .split_once('\n')
                .unwrap_or_else(|| panic!("event without data: {e:?}"));
            let name = name
                .strip_prefix("event: ")
                .unwrap_or_else(|| panic!("no event line: {e:?}"));
            let data: Value = serde_json::from_str(
                data.strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("no data line: {e:?}")),
            )
            .expect("JSON data");
            assert_eq!(data["type"], name, "event line names the type: {e}");
            (name.to_owned(), data)
        })
        .collect()
}

pub async fn stream(t: &TestServer, path: &str, body: Value) -> (u16, Vec<(String, Value)>) {
    let r = t.post(path, body).await;
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = r.text().await.expect("body");
    if status != 200 {
        panic!("stream answered {status}: {text}");
    }
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    (status, anthropic_events(&text))
}

pub fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn anthropic_error(body: &Value) -> &str {
    assert_eq!(body["type"], "error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["error"]["type"].as_str().unwrap_or_default()
}

#[actix_rt::test]
async fn text_reply_is_an_anthropic_message() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (status, m) = t
        .post_json("/v1/messages", message("Hello there world", json!({})))
        .await;
    assert_eq!(status, 200, "{m}");
    assert!(m["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], CLAUDE, "the requested name is reported");
    assert_eq!(
        m["content"],
        json!([{"type": "text", "text": "Hello there world"}])
    );
    assert_eq!(m["stop_reason"], "end_turn");
    assert!(m["stop_sequence"].is_null());
    let u = &m["usage"];
    assert_eq!(u["output_tokens"], 3);
    assert!(u["input_tokens"].as_u64().is_some_and(|n| n > 3), "{u}");
    assert_eq!(u["cache_read_input_tokens"], 0);
    assert_eq!(u["cache_creation_input_tokens"], 0);
}

#[actix_rt::test]
async fn max_tokens_and_stop_sequences_set_the_stop_reason() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (_, m) = t
        .post_json(
            "/v1/messages",
            message("a b c d e", json!({"max_tokens": 2})),
        )
        .await;
    assert_eq!(m["stop_reason"], "max_tokens");
    assert_eq!(m["content"][0]["text"], "a b");
    assert_eq!(m["usage"]["output_tokens"], 2);
    let (_, m) = t
        .post_json(
            "/v1/messages",
            message("one two STOP three", json!({"stop_sequences": ["STOP"]})),
        )
        .await;
    assert_eq!(m["stop_reason"], "stop_sequence", "{m}");
    assert_eq!(m["stop_sequence"], "STOP");
    assert_eq!(m["content"][0]["text"], "one two ");
    let (_, ev) = stream(
        &t,
        "/v1/messages",
        message(
            "one two STOP three",
            json!({"stop_sequences": ["STOP"], "stream": true}),
        ),
    )
    .await;
    let delta = &ev.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "stop_sequence");
    assert_eq!(delta["delta"]["stop_sequence"], "STOP");
}

#[actix_rt::test]
async fn streamed_text_has_every_event_in_order() {
    let t = start(|_| {}, FakeConfig::default()).await;
    // Claude Code posts to `/v1/messages?beta=true`.
    let (_, ev) = stream(
        &t,
        "/v1/messages?beta=true",
        message("Hello there world", json!({"stream": true})),
    )
    .await;
    let n = names(&ev);
    assert_eq!(n[0], "message_start");
    assert_eq!(n[1], "content_block_start");
    assert_eq!(
        &n[n.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(n[2..n.len() - 3]
        .iter()
        .all(|e| *e == "content_block_delta"));
    let start = &ev[0].1["message"];
    assert!(start["id"].as_str().is_some_and(|i| i.starts_with("msg_")));
    assert_eq!(start["model"], CLAUDE);
    assert_eq!(start["content"], json!([]));
    assert!(start["stop_reason"].is_null());
    let input = start["usage"]["input_tokens"].as_u64().unwrap();
    assert!(input > 3, "message_start carries the prompt size: {start}");
    assert_eq!(
        ev[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            assert_eq!(d["index"], 0);
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "Hello there world");
    let delta = &ev[n.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);
    assert_eq!(delta["usage"]["input_tokens"], input);
}

#[actix_rt::test]
async fn streamed_and_plain_replies_agree() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (_, plain) = t
        .post_json("/v1/messages", message("same words here", json!({})))
        .await;
    let (_, ev) = stream(
        &t,
        "/v1/messages",
        message("same words here", json!({"stream": true})),
    )
    .await;
    let text: String = ev
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(plain["content"][0]["text"], text);
    let delta = &ev.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(
        plain["usage"]["output_tokens"],
        delta["usage"]["output_tokens"]
    );
    assert_eq!(
        plain["usage"]["input_tokens"],
        delta["usage"]["input_tokens"]
    );
}

#[actix_rt::test]
async fn claude_code_request_shape_is_accepted() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let body = json!({
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be concise."}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "hi there", "cache_control": {"type": "ephemeral"}}
            ]}
        ],
        "tools": [{
            "name": "Bash", "description": "Run a command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"}
        }],
        "tool_choice": {"type": "auto"},
        "metadata": {"user_id": "user_abc_account_123_session_xyz"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "temperature": 1,
        "stream": true,
        "some_future_field": {"x": 1}
    });
    let r = t
        .client
        .post(t.url("/v1/messages?beta=true"))
        .header("anthropic-version", "2099-01-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        )
        .header("x-api-key", "anything")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ev = anthropic_events(&r.text().await.unwrap());
    assert_eq!(names(&ev).last(), Some(&"message_stop"));
    // max_tokens over the fake's 2048-token context is capped, not refused.
    let delta = &ev.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn", "{delta}");
}

#[actix_rt::test]
async fn count_tokens_matches_the_prompt_that_runs() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let shape = json!({
        "model": CLAUDE,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "count these four words"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    });
    let (status, counted) = t
        .post_json("/v1/messages/count_tokens", shape.clone())
        .await;
    assert_eq!(status, 200, "{counted}");
    let n = counted["input_tokens"].as_u64().unwrap();
    let mut run = shape.clone();
    run["max_tokens"] = json!(8);
    let (_, m) = t.post_json("/v1/messages", run).await;
    let u = &m["usage"];
    assert_eq!(
        u["input_tokens"].as_u64().unwrap() + u["cache_read_input_tokens"].as_u64().unwrap(),
        n
    );
    let mut longer = shape.clone();
    longer["messages"][0]["content"] = json!("count these four words and two more");
    let (_, c2) = t.post_json("/v1/messages/count_tokens", longer).await;
    assert_eq!(c2["input_tokens"].as_u64().unwrap(), n + 3);
    // tool_choice none takes the tools out of the prompt, and so out of the count.
    let mut none = shape.clone();
    none["tool_choice"] = json!({"type": "none"});
    let (_, c3) = t.post_json("/v1/messages/count_tokens", none).await;
    assert!(c3["input_tokens"].as_u64().unwrap() < n);
    let (status, e) = t
        .post_json(
            "/v1/messages/count_tokens",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(anthropic_error(&e), "not_found_error");
}

#[actix_rt::test]
async fn request_errors_are_in_anthropics_shape() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let r = t.post_raw("/v1/messages", "{\"model\": ").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        anthropic_error(&r.json().await.unwrap()),
        "invalid_request_error"
    );
    let cases = [
        (
            json!({"model": CLAUDE, "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (message("x", json!({"max_tokens": "many"})), "max_tokens"),
        (message("x", json!({"temperature": 3})), "temperature"),
        (
            json!({"model": CLAUDE, "max_tokens": 5, "messages": []}),
            "messages",
        ),
        (
            json!({"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
            ]}]}),
            "vision",
        ),
        (
            message(
                "x",
                json!({"tool_choice": {"type": "tool", "name": "nope"},
                "tools": [{"name": "f", "input_schema": {"type": "object"}}]}),
            ),
            "nope",
        ),
    ];
    for (body, mentions) in cases {
        let (status, e) = t.post_json("/v1/messages", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {e}");
        assert_eq!(anthropic_error(&e), "invalid_request_error");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(mentions), "{msg} should mention {mentions}");
    }
    let mut unknown = message("x", json!({}));
    unknown["model"] = json!("gpt-4o");
    let (status, e) = t.post_json("/v1/messages", unknown).await;
    assert_eq!(status, 404);
    assert_eq!(anthropic_error(&e), "not_found_error");
    assert!(e["error"]["message"].as_str().unwrap().contains("gpt-4o"));
}

#[actix_rt::test]
async fn prompt_over_the_context_says_prompt_is_too_long() {
    let t = start(
        |_| {},
        FakeConfig {
            context_length: 32,
            ..FakeConfig::default()
        },
    )
    .await;
    let long = (0..40)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    for streaming in [false, true] {
        let (status, e) = t
            .post_json("/v1/messages", message(&long, json!({"stream": streaming})))
            .await;
        assert_eq!(status, 400, "{e}");
        assert_eq!(anthropic_error(&e), "invalid_request_error");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("prompt is too long"),
            "{e}"
        );
    }
}

#[actix_rt::test]
async fn api_key_is_checked_from_x_api_key_or_bearer() {
    let t = start(
        |s| s.server.api_keys = vec!["sk-local".into()],
        FakeConfig::default(),
    )
    .await;
    let send = |key: Option<(&'static str, &'static str)>| {
        let mut rb = t
            .client
            .post(t.url("/v1/messages"))
            .json(&message("hi", json!({})));
        if let Some(h) = key {
            rb = rb.header(h.0, h.1);
        }
        rb.send()
    };
    for key in [None, Some(("x-api-key", "wrong"))] {
        let r = send(key).await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(
            anthropic_error(&r.json().await.unwrap()),
            "authentication_error"
        );
    }
    for key in [
        ("x-api-key", "sk-local"),
        ("authorization", "Bearer sk-local"),
    ] {
        assert_eq!(send(Some(key)).await.unwrap().status(), 200, "{key:?}");
    }
    let r = t
        .client
        .post(t.url("/v1/messages/count_tokens"))
        .json(&json!({"model": CLAUDE, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[actix_rt::test]
async fn full_queue_is_a_429_rate_limit_error() {
    let t = start(
        |s| {
            s.server.queue_size = 1;
            s.server.retry_after_s = 3;
        },
        FakeConfig {
            token_delay: Duration::from_millis(200),
            ..FakeConfig::default()
        },
    )
    .await;
    let spawn_req = |text: String| {
        let client = t.client.clone();
        let url = t.url("/v1/messages");
        actix_rt::spawn(async move {
            let r = client
                .post(url)
                .json(&message(&text, json!({})))
                .send()
                .await;
            r.map(|r| r.status().as_u16()).unwrap_or(0)
        })
    };
    let long = (0..10)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let running = spawn_req(long);
    wait_health(&t, Duration::from_secs(5), |h| h["running"] == 1).await;
    let waiting = spawn_req("x".into());
    wait_health(&t, Duration::from_secs(5), |h| h["queue_depth"] == 1).await;
    let r = t.post("/v1/messages", message("y", json!({}))).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    assert_eq!(
        anthropic_error(&r.json().await.unwrap()),
        "rate_limit_error"
    );
    assert_eq!(running.await.unwrap(), 200);
    assert_eq!(waiting.await.unwrap(), 200);
}

#[actix_rt::test]
async fn pings_flow_during_a_long_prefill() {
    let t = start(|s| s.server.keep_alive_s = 0.05, FakeConfig::default()).await;
    let (_, ev) = stream(
        &t,
        "/v1/messages",
        message("__stall_ms=400__ hi", json!({"stream": true})),
    )
    .await;
    let n = names(&ev);
    let start = n.iter().position(|e| *e == "message_start").unwrap();
    assert!(start >= 1, "pings before the first token: {n:?}");
    assert!(n[..start].iter().all(|e| *e == "ping"), "{n:?}");
    assert_eq!(n.last(), Some(&"message_stop"));
}

#[actix_rt::test]
async fn mid_stream_failure_is_an_error_event() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (_, ev) = stream(
        &t,
        "/v1/messages",
        message("__fail__ a b", json!({"stream": true})),
    )
    .await;
    let (last, data) = ev.last().unwrap();
    assert_eq!(last, "error", "{ev:?}");
    assert_eq!(data["error"]["type"], "api_error");
    assert!(!names(&ev).contains(&"message_stop"));
}

#[actix_rt::test]
async fn client_disconnect_cancels_the_generation() {
    let t = start(
        |_| {},
        FakeConfig {
            token_delay: Duration::from_millis(50),
            ..FakeConfig::default()
        },
    )
    .await;
    let long = (0..200)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let r = t
        .post(
            "/v1/messages",
            message(&long, json!({"stream": true, "max_tokens": 500})),
        )
        .await;
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("w1") {
        let chunk = body.next().await.expect("stream open").unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    drop(body);
    let t0 = Instant::now();
    let (status, m) = t
        .post_json("/v1/messages", message("next", json!({})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(m["content"][0]["text"], "next");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[actix_rt::test]
async fn aliases_are_listed_and_unknown_names_are_refused() {
    let t = start(
        |s| {
            s.aliases.0.insert("gpt-4o*".into(), MODEL.into());
            s.aliases
                .0
                .insert("elsewhere-*".into(), "not-served".into());
        },
        FakeConfig::default(),
    )
    .await;
    let (_, list) = t.get_json("/v1/models").await;
    assert_eq!(list["data"][0]["id"], MODEL);
    let aliases = list["data"][0]["aliases"].as_array().unwrap();
    assert!(aliases.contains(&json!("claude-*")), "{list}");
    assert!(aliases.contains(&json!("gpt-4o*")), "{list}");
    assert!(!aliases.contains(&json!("elsewhere-*")), "{list}");
    // The OpenAI route honours the same table.
    let (status, _) = t
        .post_json(
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(status, 200);
    let mut m = message("x", json!({}));
    m["model"] = json!("elsewhere-1");
    let (status, e) = t.post_json("/v1/messages", m).await;
    assert_eq!(status, 404);
    assert_eq!(anthropic_error(&e), "not_found_error");
}
