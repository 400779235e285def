//! Hostile clients replayed against one server (loopback only, bounded in count and time):
//! every answer is a 2xx, or a 4xx with the error body of the route's API; afterwards the
//! server is healthy, idle and still answers. The classes are the ones of issue #20: half-closed
//! and vanished sockets, trickled bodies, wrong types, spec-valid oddities, encodings and
//! content types, methods and URLs, keys.

use std::time::{Duration, Instant};

use mlx_serve_engine::fake::FakeConfig;

use crate::common::*;
use crate::replay::{cases, final_response, replay, trickle, vanish};

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
    for case in cases(MODEL) {
        actix_rt::task::spawn_blocking(move || replay(addr, &case))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // A trickled body and a vanished client, at the end: neither may hold anything.
    let trickle = actix_rt::task::spawn_blocking(move || trickle(addr, Duration::from_secs(5)));
    vanish(addr, MODEL);
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
    let args = mlx_serve_bench::SoakArgs {
        url: t.base.clone(),
        model: Some(MODEL.into()),
        api_key: None,
        duration: Duration::from_secs(2),
        concurrency: 3,
        // The server runs inside this test process.
        pid: Some(std::process::id()),
        serve: false,
        server: None,
        serve_args: Vec::new(),
        sample_every: Duration::from_millis(500),
        max_tokens: 8,
        timeout: Duration::from_secs(10),
        json: false,
        out: None,
        quiet: true,
    };
    let report = mlx_serve_bench::run_soak(&args).await.expect("soak runs");
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

/// actix-http's own answers (a head it cannot parse, a head too slow) carry the JSON error of
/// the API the request line names, also for a second request on a kept-alive connection.
#[actix_rt::test]
async fn unparseable_and_slow_heads_get_the_api_error_body() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let addr = t.server.addr;
    let raw = actix_rt::task::spawn_blocking(move || {
        let ok = "GET /health HTTP/1.1\r\nhost: x\r\n\r\n";
        let bad = "POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n{}";
        crate::replay::exchange(addr, format!("{ok}{bad}").into_bytes(), false)
    })
    .await
    .unwrap();
    let second = raw
        .match_indices("HTTP/1.1 ")
        .nth(1)
        .map(|(i, _)| &raw[i..])
        .unwrap_or_else(|| panic!("one response only: {raw}"));
    assert!(raw.starts_with("HTTP/1.1 200 "), "{raw}");
    let (status, body) = final_response(second);
    assert_eq!(status, 400, "{second}");
    let body = body.unwrap_or_else(|| panic!("no JSON body: {second}"));
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");

    // Headers never finished: actix's 408 after its 5 s head timeout, in OpenAI's shape.
    let raw = actix_rt::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    let (status, body) = final_response(&raw);
    assert_eq!(status, 408, "{raw}");
    let body = body.unwrap_or_else(|| panic!("no JSON body: {raw}"));
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
}
