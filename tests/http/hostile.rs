//! Clients that misbehave at the socket level: half-closed connections, vanished peers.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mlx_serve_engine::fake::FakeConfig;
use serde_json::{json, Value};

use crate::common::*;
use crate::replay::{exchange, final_response, raw_post};

fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[actix_rt::test]
async fn half_closed_request_still_gets_its_completion() {
    let t = start(
        |_| {},
        FakeConfig {
            token_delay: Duration::from_millis(30),
            ..FakeConfig::default()
        },
    )
    .await;
    let addr = t.server.addr;
    // Ten tokens at 30 ms: the generation outlives several disconnect checks.
    let body = chat(&words(10)).to_string();
    let req = raw_post("/v1/chat/completions", &body).into_bytes();
    let raw = actix_rt::task::spawn_blocking(move || exchange(addr, req, true))
        .await
        .unwrap();
    let (status, json) = final_response(&raw);
    assert_eq!(status, 200, "{raw}");
    let json = json.expect("JSON body");
    assert_eq!(json["choices"][0]["message"]["content"], words(10));
}

#[actix_rt::test]
async fn half_closed_legacy_completion_and_message_are_served() {
    let t = start(
        |_| {},
        FakeConfig {
            token_delay: Duration::from_millis(20),
            ..FakeConfig::default()
        },
    )
    .await;
    let addr = t.server.addr;
    for (path, body) in [
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": words(6), "max_tokens": 20}),
        ),
        (
            "/v1/messages",
            json!({"model": MODEL, "max_tokens": 20,
                   "messages": [{"role": "user", "content": words(6)}]}),
        ),
    ] {
        let req = raw_post(path, &body.to_string()).into_bytes();
        let raw = actix_rt::task::spawn_blocking(move || exchange(addr, req, true))
            .await
            .unwrap();
        assert_eq!(final_response(&raw).0, 200, "{path}: {raw}");
    }
}

#[actix_rt::test]
async fn closed_socket_cancels_a_non_streamed_generation() {
    let t = start(
        |_| {},
        FakeConfig {
            token_delay: Duration::from_millis(50),
            ..FakeConfig::default()
        },
    )
    .await;
    // 200 tokens at 50 ms would take 10 s if nobody noticed the client left.
    let body = chat(&words(200)).to_string();
    let mut s = TcpStream::connect(t.server.addr).expect("connect");
    s.write_all(raw_post("/v1/chat/completions", &body).as_bytes())
        .unwrap();
    wait_health(&t, Duration::from_secs(5), |h| h["running"] == 1).await;
    drop(s);
    let t0 = Instant::now();
    wait_health(&t, Duration::from_secs(3), |h| {
        h["running"] == 0 && h["queue_depth"] == 0
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(3));
    let (status, resp) = t.post_json("/v1/chat/completions", chat("next")).await;
    assert_eq!(status, 200);
    assert_eq!(resp["choices"][0]["message"]["content"], "next");
}

/// Every field problem is a 400 in OpenAI's shape naming `param`.
async fn expect_param(t: &TestServer, path: &str, body: Value, param: Option<&str>) {
    let (status, resp) = t.post_json(path, body.clone()).await;
    assert_eq!(status, 400, "{body} -> {resp}");
    let (kind, p, _) = error_of(&resp);
    assert_eq!(kind, "invalid_request_error", "{resp}");
    assert_eq!(p, param, "{body} -> {resp}");
}

fn tool(function: Value) -> Value {
    chat_with(
        "x",
        json!({"tools": [{"type": "function", "function": function}]}),
    )
}

#[actix_rt::test]
async fn wrong_types_are_400s_naming_the_field() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let c = "/v1/chat/completions";
    for (extra, param) in [
        (json!({"logit_bias": "x"}), "logit_bias"),
        (json!({"logit_bias": {"abc": 1}}), "logit_bias"),
        (json!({"logit_bias": {"5": 101}}), "logit_bias"),
        (json!({"response_format": true}), "response_format"),
        (
            json!({"response_format": {"type": "banana"}}),
            "response_format.type",
        ),
        (json!({"stream_options": []}), "stream_options"),
        (json!({"stream_options": "yes"}), "stream_options"),
        (json!({"max_tokens": 2.5}), "max_tokens"),
        (json!({"seed": "1"}), "seed"),
    ] {
        expect_param(&t, c, chat_with("x", extra), Some(param)).await;
    }
    for (function, param) in [
        (json!({"name": ""}), "tools[0].function.name"),
        (json!({"name": "get weather"}), "tools[0].function.name"),
        (json!({"name": "naïve"}), "tools[0].function.name"),
        (
            json!({"name": "f", "parameters": "{}"}),
            "tools[0].function.parameters",
        ),
        (
            json!({"name": "f", "parameters": {"type": "banana"}}),
            "tools[0].function.parameters",
        ),
    ] {
        expect_param(&t, c, tool(function), Some(param)).await;
    }
    expect_param(
        &t,
        "/v1/completions",
        json!({"model": MODEL, "prompt": "x", "logit_bias": "x"}),
        Some("logit_bias"),
    )
    .await;
    // A JSON array as the whole body is not a request, even one whose items fit the fields.
    for path in [c, "/v1/completions", "/v1/messages"] {
        let r = t
            .post_raw(
                path,
                r#"["fake-model", [{"role": "user", "content": "x"}]]"#,
            )
            .await;
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        if path == "/v1/messages" {
            assert_eq!(body["type"], "error", "{body}");
        } else {
            assert_eq!(error_of(&body).1, None);
        }
    }
}

#[actix_rt::test]
async fn spec_valid_requests_are_served() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let c = "/v1/chat/completions";
    for extra in [
        json!({"seed": 1.0, "max_tokens": 16.0}),
        json!({"max_completion_tokens": 8.0, "n": 1.0}),
        json!({"top_p": 0}),
        json!({"logit_bias": {"1": -100, "42": 5.5}}),
        json!({"response_format": {"type": "json_object"}}),
        json!({"stream_options": {"include_usage": true}, "stream": true}),
    ] {
        let r = t.post(c, chat_with("hello there", extra.clone())).await;
        assert_eq!(r.status(), 200, "{extra}");
    }
    // The older functions protocol: an assistant `function_call` and a `function` result.
    let old = json!({"model": MODEL, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null,
         "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
    ]});
    let (status, resp) = t.post_json(c, old).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["choices"][0]["message"]["content"], "sunny");
    // Token-id prompts: the fake renders id N as the word tN.
    let (status, resp) = t
        .post_json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": [1, 2, 3]}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["choices"][0]["text"], "t1 t2 t3");
    let (status, resp) = t
        .post_json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": [[7], [8, 9]], "max_tokens": 4.0}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["choices"][1]["text"], "t8 t9");
}

#[actix_rt::test]
async fn unimplemented_or_out_of_range_options_are_clear_400s() {
    let t = start(|_| {}, FakeConfig::default()).await;
    expect_param(
        &t,
        "/v1/chat/completions",
        chat_with("x", json!({"n": 17})),
        Some("n"),
    )
    .await;
    let p = |extra: Value| {
        let mut b = json!({"model": MODEL, "prompt": "x"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (extra, param) in [
        (json!({"n": 17}), "n"),
        (json!({"n": 3, "best_of": 2}), "best_of"),
        (json!({"best_of": 2, "stream": true}), "best_of"),
        (json!({"suffix": "end"}), "suffix"),
        (json!({"prompt": [], "echo": false}), "prompt"),
        (json!({"prompt": [[]]}), "prompt"),
        (json!({"prompt": [1, 2], "echo": true}), "echo"),
    ] {
        expect_param(&t, "/v1/completions", p(extra), Some(param)).await;
    }
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[actix_rt::test]
async fn bodies_are_json_decoded_or_refused_with_415() {
    let t = start(|s| s.server.body_limit = 4096, FakeConfig::default()).await;
    let url = t.url("/v1/chat/completions");
    let send = |ct: Option<&'static str>, ce: Option<&'static str>, body: Vec<u8>| {
        let mut r = t.client.post(&url).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        if let Some(ce) = ce {
            r = r.header("content-encoding", ce);
        }
        async move {
            let r = r.send().await.expect("sent");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.expect("JSON body"))
        }
    };
    let body = chat("packed words").to_string().into_bytes();
    let (s, v) = send(Some("text/plain"), None, body.clone()).await;
    assert_eq!(s, 415, "{v}");
    assert_eq!(error_of(&v).2, Some("unsupported_media_type"));
    let (s, _) = send(
        Some("application/x-www-form-urlencoded"),
        None,
        body.clone(),
    )
    .await;
    assert_eq!(s, 415);
    // No Content-Type at all is read as JSON; parameters and +json types are fine.
    let (s, v) = send(None, None, body.clone()).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = send(Some("application/json; charset=utf-8"), None, body.clone()).await;
    assert_eq!(s, 200);
    // gzip is decoded; unknown codings are refused, never parsed as JSON.
    let (s, v) = send(Some("application/json"), Some("gzip"), gzip_stored(&body)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "packed words");
    let (s, v) = send(Some("application/json"), Some("compress"), body.clone()).await;
    assert_eq!(s, 415, "{v}");
    let (s, v) = send(Some("application/json"), Some("gzip"), body.clone()).await;
    assert_eq!(s, 400, "not gzip: {v}");
    // The limit applies to the decoded body.
    let big = chat(&"word ".repeat(2000)).to_string().into_bytes();
    let (s, v) = send(Some("application/json"), Some("gzip"), gzip_stored(&big)).await;
    assert_eq!(s, 413, "{v}");
    // The Anthropic route answers in its own shape with the same status.
    let r = t
        .client
        .post(t.url("/v1/messages"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
}

#[actix_rt::test]
async fn wrong_methods_are_405_with_allow_and_messages_urls_answer_anthropic_errors() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let r = t
        .client
        .get(t.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_of(&v).2, Some("method_not_allowed"));
    let r = t.client.post(t.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    let r = t.client.put(t.url("/v1/messages")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let (s, v) = t.post_json("/v1/messages/batches", json!({})).await;
    assert_eq!(s, 404);
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "not_found_error");
    let r = t
        .client
        .get(t.url("/v1/messages/count_tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[actix_rt::test]
async fn stats_need_a_key_and_cache_clearing_needs_an_admin_key() {
    let t = start(
        |s| {
            s.server.api_keys = vec!["sk-user".into(), "sk-admin".into()];
            s.server.admin_keys = vec!["sk-admin".into()];
        },
        FakeConfig::default(),
    )
    .await;
    let r = t.client.get(t.url("/v1/stats")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = t
        .client
        .get(t.url("/v1/stats"))
        .bearer_auth("sk-user")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = t
        .client
        .delete(t.url("/v1/cache"))
        .bearer_auth("sk-user")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_of(&v).2, Some("insufficient_permissions"));
}

#[actix_rt::test]
async fn a_trickled_body_gets_408_with_a_json_error() {
    let t = start(|s| s.server.body_timeout_s = 1, FakeConfig::default()).await;
    let addr = t.server.addr;
    let t0 = Instant::now();
    let raw = actix_rt::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              transfer-encoding: chunked\r\n\r\n",
        )
        .unwrap();
        // One byte every 200 ms, never done before the 1 s body timeout; reading in between,
        // so the answer is in before the server closes on unread bytes.
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        for _ in 0..25 {
            if out.is_empty() && s.write_all(b"1\r\n \r\n").is_err() {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        // The server closed the connection rather than wait for the rest of the body.
        assert!(
            matches!(s.read(&mut buf), Ok(0) | Err(_)),
            "connection kept open"
        );
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    let (status, body) = final_response(&raw);
    assert_eq!(status, 408, "{raw}");
    assert_eq!(error_of(&body.expect("JSON")).2, Some("request_timeout"));
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let (status, _) = t.post_json("/v1/chat/completions", chat("ok")).await;
    assert_eq!(status, 200);
}

#[actix_rt::test]
async fn one_peer_cannot_hold_more_than_its_share() {
    let t = start(
        |s| {
            s.server.max_inflight_per_ip = 2;
            s.server.body_timeout_s = 30;
        },
        FakeConfig::default(),
    )
    .await;
    // Two requests whose bodies never finish hold this IP's two slots.
    let head =
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 100\r\n\r\n{\"model\":";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(t.server.addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        held.push(s);
    }
    // Both are admitted (no answer yet) before the third request comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in &mut held {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        assert!(
            matches!(s.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock),
            "a held request was answered"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let (status, body) = t.post_json("/v1/chat/completions", chat("x")).await;
        if status == 429 {
            break body;
        }
        assert!(Instant::now() < deadline, "never limited: {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(error_of(&refused).0, "rate_limit_error");
    // Probes are not counted.
    assert_eq!(t.get_json("/health").await.0, 200);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = t.post_json("/v1/chat/completions", chat("x")).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_corrupt_chunked_body_gets_a_json_400() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let req =
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\n\r\n5\r\n{\"mod\r\nzz\r\nnot a chunk\r\n\r\n"
            .to_vec();
    let addr = t.server.addr;
    let raw = actix_rt::task::spawn_blocking(move || exchange(addr, req, false))
        .await
        .unwrap();
    let (status, body) = final_response(&raw);
    assert_eq!(status, 400, "{raw}");
    assert!(body.is_some(), "JSON body: {raw}");
}
