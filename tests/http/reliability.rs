//! Hostile clients replayed against one server (loopback only, bounded in count and time):
//! every answer is a 2xx, or a 4xx with the error body of the route's API; afterwards the
//! server is healthy, idle and still answers. The classes are the ones of issue #20: half-closed
//! and vanished sockets, trickled bodies, wrong types, spec-valid oddities, encodings and
//! content types, methods and URLs, keys.

use std::time::{Duration, Instant};

use mlx_serve_actors::fake::FakeConfig;
use serde_json::{json, Value};

use crate::common::*;
use crate::hostile::{exchange, final_response, raw_post};

/// One replayed request: raw bytes, whether the client half-closes after sending.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    half_close: bool,
}

fn post(name: &'static str, path: &str, body: &str) -> Case {
    Case {
        name,
        bytes: raw_post(path, body).into_bytes(),
        half_close: false,
    }
}

fn with_headers(name: &'static str, method: &str, path: &str, headers: &str, body: &[u8]) -> Case {
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n{headers}\
         content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    Case {
        name,
        bytes,
        half_close: false,
    }
}

fn cases() -> Vec<Case> {
    let c = "/v1/chat/completions";
    let chat_with = |extra: Value| chat_with("a b c", extra).to_string();
    let tool =
        |function: Value| chat_with(json!({"tools": [{"type": "function", "function": function}]}));
    let ok = chat("half closed").to_string();
    let mut v = vec![
        // Wrong types.
        post(
            "logit_bias string",
            c,
            &chat_with(json!({"logit_bias": "x"})),
        ),
        post(
            "logit_bias range",
            c,
            &chat_with(json!({"logit_bias": {"3": 1e9}})),
        ),
        post(
            "response_format bool",
            c,
            &chat_with(json!({"response_format": true})),
        ),
        post(
            "stream_options array",
            c,
            &chat_with(json!({"stream_options": []})),
        ),
        post("array body", c, r#"["fake-model", []]"#),
        post("scalar body", c, "42"),
        post("empty body", c, ""),
        post("tool empty name", c, &tool(json!({"name": ""}))),
        post("tool name spaces", c, &tool(json!({"name": "a b"}))),
        post(
            "tool params string",
            c,
            &tool(json!({"name": "f", "parameters": "x"})),
        ),
        post(
            "tool params banana",
            c,
            &tool(json!({"name": "f", "parameters": {"type": "banana"}})),
        ),
        // Spec-valid oddities.
        post(
            "float ints",
            c,
            &chat_with(json!({"seed": 1.0, "max_tokens": 16.0})),
        ),
        post("top_p zero", c, &chat_with(json!({"top_p": 0}))),
        post("n two", c, &chat_with(json!({"n": 2}))),
        post(
            "token prompt",
            "/v1/completions",
            r#"{"model":"fake-model","prompt":[1,2,3]}"#,
        ),
        post(
            "suffix",
            "/v1/completions",
            r#"{"model":"fake-model","prompt":"x","suffix":"y"}"#,
        ),
        post(
            "best_of",
            "/v1/completions",
            r#"{"model":"fake-model","prompt":"x","best_of":3}"#,
        ),
        // Content types, encodings, methods, URLs.
        with_headers(
            "text/plain",
            "POST",
            c,
            "content-type: text/plain\r\n",
            ok.as_bytes(),
        ),
        with_headers(
            "unknown encoding",
            "POST",
            c,
            "content-type: application/json\r\ncontent-encoding: compress\r\n",
            ok.as_bytes(),
        ),
        with_headers(
            "fake gzip",
            "POST",
            c,
            "content-type: application/json\r\ncontent-encoding: gzip\r\n",
            ok.as_bytes(),
        ),
        with_headers("GET chat", "GET", c, "", b""),
        with_headers("DELETE messages", "DELETE", "/v1/messages", "", b""),
        with_headers("messages batch", "POST", "/v1/messages/batches", "", b"{}"),
        with_headers("unknown url", "GET", "/v2/anything", "", b""),
        with_headers("PATCH health", "PATCH", "/health", "", b""),
        post(
            "anthropic wrong type",
            "/v1/messages",
            r#"{"model":"fake-model","max_tokens":"many","messages":[]}"#,
        ),
        // A corrupt chunked body, after the headers were accepted.
        Case {
            name: "bad chunk",
            bytes: format!(
                "POST {c} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 connection: close\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{{\"m\r\nqq\r\n\r\n"
            )
            .into_bytes(),
            half_close: false,
        },
    ];
    // Half-closed clients of every generating route.
    for (path, body) in [
        (c, ok.clone()),
        (
            "/v1/completions",
            r#"{"model":"fake-model","prompt":"half closed"}"#.to_owned(),
        ),
        (
            "/v1/messages",
            r#"{"model":"fake-model","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#
                .to_owned(),
        ),
    ] {
        let mut case = post("half-closed", path, &body);
        case.half_close = true;
        v.push(case);
    }
    v
}

/// The error body of the API the path belongs to.
fn has_api_error_body(path: &str, body: &Value) -> bool {
    if path.starts_with("/v1/messages") {
        body["type"] == "error" && body["error"]["type"].is_string()
    } else {
        body["error"]["message"].is_string() && body["error"]["type"].is_string()
    }
}

fn path_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split(' ')
        .nth(1)
        .unwrap_or("")
        .to_owned()
}

#[actix_rt::test]
async fn hostile_clients_get_clear_answers_and_leave_the_server_healthy() {
    let t = start(
        |s| {
            s.server.body_timeout_s = 1;
            s.server.api_keys = Vec::new();
        },
        FakeConfig {
            token_delay: Duration::from_millis(2),
            ..FakeConfig::default()
        },
    )
    .await;
    let addr = t.server.addr;
    let t0 = Instant::now();
    for case in cases() {
        let path = path_of(&case.bytes);
        let (bytes, half) = (case.bytes.clone(), case.half_close);
        let raw = actix_rt::task::spawn_blocking(move || exchange(addr, bytes, half))
            .await
            .unwrap();
        let (status, body) = final_response(&raw);
        assert!(
            (200..300).contains(&status) || (400..500).contains(&status),
            "{}: status {status}: {raw}",
            case.name
        );
        if status >= 400 {
            let body = body.unwrap_or_else(|| panic!("{}: no JSON body: {raw}", case.name));
            assert!(
                has_api_error_body(&path, &body),
                "{}: not {path}'s error shape: {body}",
                case.name
            );
        }
        if case.half_close {
            assert_eq!(status, 200, "{}: {raw}", case.name);
        }
    }
    // A trickled body and a vanished client, at the end: neither may hold anything.
    let trickle = actix_rt::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let _ = s.write_all(
            b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 500\r\n\r\n{",
        );
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) if !out.is_empty() => break,
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    {
        use std::io::Write;
        let mut gone = std::net::TcpStream::connect(addr).unwrap();
        let body = chat(&"w ".repeat(500)).to_string();
        gone.write_all(raw_post("/v1/chat/completions", &body).as_bytes())
            .unwrap();
    }
    let raw = trickle.await.unwrap();
    assert_eq!(final_response(&raw).0, 408, "{raw}");
    wait_health(&t, Duration::from_secs(5), |h| {
        h["running"] == 0 && h["queue_depth"] == 0
    })
    .await;
    let (status, resp) = t
        .post_json("/v1/chat/completions", chat("still here"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(resp["choices"][0]["message"]["content"], "still here");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
}

#[actix_rt::test]
async fn a_short_soak_gets_only_expected_answers_and_leaves_the_server_idle() {
    let t = start(
        |_| {},
        FakeConfig {
            token_delay: Duration::from_millis(2),
            max_running: 4,
            ..FakeConfig::default()
        },
    )
    .await;
    let args = mlx_serve::bench::SoakArgs {
        url: t.base.clone(),
        model: Some(MODEL.into()),
        api_key: None,
        duration: Duration::from_secs(2),
        concurrency: 3,
        // The server runs inside this test process.
        pid: Some(std::process::id()),
        serve: false,
        serve_args: Vec::new(),
        sample_every: Duration::from_millis(500),
        max_tokens: 8,
        timeout: Duration::from_secs(10),
        json: false,
        out: None,
        quiet: true,
    };
    let report = mlx_serve::bench::run_soak(&args).await.expect("soak runs");
    assert_eq!(report.unexpected, 0, "{:?}", report.unexpected_examples);
    for kind in ["chat", "chat_stream", "messages", "disconnect", "malformed"] {
        assert!(
            report.by_kind.contains_key(kind),
            "{kind}: {:?}",
            report.by_kind
        );
    }
    assert!(report.rss.len() >= 3, "{:?}", report.rss);
    let after = report.after.expect("health after the run");
    assert_eq!((after.running, after.queue_depth), (0, 0));
}
