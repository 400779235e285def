//! The pipeline under load and failure: queue limits, cancellation, health during long work,
//! the engine watchdog, graceful shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{test as atest, web, App};
use futures_util::StreamExt;
use mlx_serve::pipeline::seams::Seams;
use mlx_serve::routes;
use mlx_serve::state::AppState;
use mlx_serve_actors::model::actor::{EngineFactory, ModelHandle};
use mlx_serve_engine::engine::{Engine, EngineError};
use mlx_serve_engine::fake::{FakeConfig, FakeEngine};
use serde_json::{json, Value};

use crate::common::*;

fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn slow(ms: u64) -> FakeConfig {
    FakeConfig {
        token_delay: Duration::from_millis(ms),
        ..FakeConfig::default()
    }
}

#[actix_rt::test]
async fn health_and_models_answer_fast_during_a_slow_generation() {
    let t = start(|_| {}, slow(1000)).await;
    let client = t.client.clone();
    let url = t.url("/v1/chat/completions");
    let long =
        actix_rt::spawn(async move { client.post(url).json(&chat(&words(20))).send().await });
    wait_health(&t, Duration::from_secs(5), |h| h["running"] == 1).await;
    for _ in 0..3 {
        let t0 = Instant::now();
        let h = t.health().await;
        let (status, _) = t.get_json("/v1/models").await;
        let took = t0.elapsed();
        assert_eq!(h["status"], "ok");
        assert_eq!(status, 200);
        // One engine step takes 300 ms; both answers together must not wait for one.
        assert!(
            took < Duration::from_millis(150),
            "health+models took {took:?}"
        );
    }
    long.abort();
}

#[actix_rt::test]
async fn full_queue_answers_429_with_retry_after_at_once() {
    let t = start(
        |s| {
            s.server.queue_size = 1;
            s.server.retry_after_s = 2
        },
        slow(200),
    )
    .await;
    let spawn_req = |text: String| {
        let client = t.client.clone();
        let url = t.url("/v1/chat/completions");
        actix_rt::spawn(async move {
            let r = client.post(url).json(&chat(&text)).send().await.unwrap();
            r.status().as_u16()
        })
    };
    let running = spawn_req(words(10));
    wait_health(&t, Duration::from_secs(5), |h| h["running"] == 1).await;
    let waiting = spawn_req("x".into());
    wait_health(&t, Duration::from_secs(5), |h| h["queue_depth"] == 1).await;
    let t0 = Instant::now();
    let r = t.post("/v1/chat/completions", chat("y")).await;
    assert!(
        t0.elapsed() < Duration::from_millis(1000),
        "429 must not wait for the engine"
    );
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_of(&body).2, Some("rate_limit_exceeded"));
    assert_eq!(running.await.unwrap(), 200);
    assert_eq!(waiting.await.unwrap(), 200);
}

#[actix_rt::test]
async fn client_disconnect_cancels_and_the_next_request_starts() {
    let t = start(|_| {}, slow(50)).await;
    // 200 tokens at 50 ms would take 10 s if not cancelled.
    let r = t
        .post(
            "/v1/chat/completions",
            chat_with(&words(200), json!({"stream": true})),
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
    let (status, resp) = t.post_json("/v1/chat/completions", chat("next")).await;
    assert_eq!(status, 200);
    assert_eq!(resp["choices"][0]["message"]["content"], "next");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "next request waited {:?}",
        t0.elapsed()
    );
    wait_health(&t, Duration::from_secs(2), |h| {
        h["running"] == 0 && h["queue_depth"] == 0
    })
    .await;
}

#[actix_rt::test]
async fn graceful_shutdown_lets_in_flight_streams_finish() {
    let t = start(|_| {}, slow(40)).await;
    let r = t
        .post(
            "/v1/chat/completions",
            chat_with(&words(10), json!({"stream": true})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let handle = t.server.handle.clone();
    let stopping = actix_rt::spawn(async move { handle.stop(true).await });
    let body = r.text().await.unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    stopping.await.unwrap();
    t.server.wait().await.expect("clean exit");
}

#[actix_rt::test]
async fn engine_panic_with_exit_policy_stops_the_server_with_an_error() {
    let t = start(
        |s| s.server.on_engine_failure = mlx_serve::config::EngineFailurePolicy::Exit,
        FakeConfig::default(),
    )
    .await;
    let (status, body) = t.post_json("/v1/chat/completions", chat("__panic__")).await;
    assert!(status >= 500, "{status} {body}");
    let err = tokio::time::timeout(Duration::from_secs(10), t.server.wait())
        .await
        .expect("server stops")
        .expect_err("non-zero exit");
    assert!(err.to_string().contains("panicked"), "{err}");
}

#[actix_rt::test]
async fn wedged_engine_is_restarted_and_serves_again() {
    let t = start(
        |s| {
            s.server.engine_wedge_timeout_s = 0.3;
            s.server.max_engine_restarts = 1;
        },
        FakeConfig::default(),
    )
    .await;
    let client = t.client.clone();
    let url = t.url("/v1/chat/completions");
    let stuck = actix_rt::spawn(async move {
        client
            .post(url)
            .json(&chat("__stall_ms=3000__ a"))
            .send()
            .await
    });
    wait_health(&t, Duration::from_secs(5), |h| {
        h["engine_restarts"] == 1 && h["status"] == "ok"
    })
    .await;
    let (status, body) = t.post_json("/v1/chat/completions", chat("fresh")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "fresh");
    stuck.abort();
}

/// Health over a state with no watchdog, so the failure stays visible.
async fn health_of(state: web::Data<AppState>) -> (u16, Value) {
    let app = atest::init_service(App::new().app_data(state).configure(routes::configure)).await;
    let resp =
        atest::call_service(&app, atest::TestRequest::get().uri("/health").to_request()).await;
    let status = resp.status().as_u16();
    (status, atest::read_body_json(resp).await)
}

#[actix_rt::test]
async fn health_is_503_when_the_engine_failed_to_load() {
    let factory: EngineFactory = Arc::new(|| Err(EngineError::Internal("no weights".into())));
    let model = ModelHandle::start(factory.clone(), 4);
    let state = web::Data::new(AppState::new(
        test_settings(),
        model,
        factory,
        Seams::default(),
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = health_of(state.clone()).await;
        if body["error"].is_string() {
            assert_eq!(status, 503);
            assert_eq!(body["status"], "error");
            assert_eq!(body["engine_alive"], false);
            assert!(body["error"].as_str().unwrap().contains("no weights"));
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let app = atest::init_service(App::new().app_data(state).configure(routes::configure)).await;
    let req = atest::TestRequest::post()
        .uri("/v1/chat/completions")
        .set_json(chat("x"))
        .to_request();
    // A dead engine is the server's problem: 503, which clients retry, not a hang or a 4xx.
    assert_eq!(atest::call_service(&app, req).await.status().as_u16(), 503);
}

#[actix_rt::test]
async fn health_is_503_after_the_engine_panics() {
    let loads = Arc::new(AtomicUsize::new(0));
    let l = loads.clone();
    let factory: EngineFactory = Arc::new(move || {
        l.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakeEngine::new(FakeConfig {
            model_id: MODEL.into(),
            ..FakeConfig::default()
        })) as Box<dyn Engine>)
    });
    let model = ModelHandle::start(factory.clone(), 4);
    let state = web::Data::new(AppState::new(
        test_settings(),
        model.clone(),
        factory,
        Seams::default(),
    ));
    let app = atest::init_service(
        App::new()
            .app_data(state.clone())
            .configure(routes::configure),
    )
    .await;
    let req = atest::TestRequest::post()
        .uri("/v1/chat/completions")
        .set_json(chat("__panic__"))
        .to_request();
    let resp = atest::call_service(&app, req).await;
    assert_eq!(resp.status().as_u16(), 500);
    let (status, body) = health_of(state).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["engine_alive"], false);
    assert!(body["error"].as_str().unwrap().contains("panicked"));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    // Later requests fail fast instead of hanging.
    let req = atest::TestRequest::post()
        .uri("/v1/chat/completions")
        .set_json(chat("x"))
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status().as_u16(), 503);
}

#[actix_rt::test]
async fn non_streaming_client_that_gives_up_frees_the_engine() {
    let t = start(|_| {}, slow(50)).await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        t.post("/v1/chat/completions", chat(&words(200))),
    )
    .await;
    assert!(gave_up.is_err(), "the slow request should still be running");
    let t0 = Instant::now();
    let (status, resp) = t.post_json("/v1/chat/completions", chat("next")).await;
    assert_eq!(status, 200);
    assert_eq!(resp["choices"][0]["message"]["content"], "next");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "next request waited {:?}",
        t0.elapsed()
    );
}

#[actix_rt::test]
async fn generation_past_the_request_timeout_is_cut_off() {
    let t = start(|s| s.server.request_timeout_s = 1, slow(100)).await;
    let t0 = Instant::now();
    let (status, body) = t.post_json("/v1/chat/completions", chat(&words(100))).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_of(&body).2, Some("timeout"));
    assert!(t0.elapsed() < Duration::from_secs(3));
    wait_health(&t, Duration::from_secs(2), |h| h["running"] == 0).await;
}

#[actix_rt::test]
async fn many_concurrent_requests_all_complete() {
    let t = start(|_| {}, slow(2)).await;
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let client = t.client.clone();
            let url = t.url("/v1/chat/completions");
            actix_rt::spawn(async move {
                let r = client
                    .post(url)
                    .json(&chat(&format!("req{i} a b")))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            format!("req{i} a b")
        );
    }
    // The actor updates its gauges just after the last event goes out.
    wait_health(&t, Duration::from_secs(2), |h| {
        h["queue_depth"] == 0 && h["running"] == 0
    })
    .await;
}
