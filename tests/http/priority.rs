//! Request priority over HTTP: validation, admission order, and preemption under
//! `[scheduler] policy = "priority"` (fake engine, one slot).

use std::time::{Duration, Instant};

use mlx_serve::config::SchedulerPolicy;
use mlx_serve_engine::fake::FakeConfig;
use serde_json::{json, Value};

use crate::common::*;

fn slow_one_slot() -> FakeConfig {
    FakeConfig {
        token_delay: Duration::from_millis(20),
        max_running: 1,
        ..Default::default()
    }
}

fn words(tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{tag}{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[actix_rt::test]
async fn a_priority_out_of_range_or_not_an_integer_is_a_400_naming_it() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (status, body) = t
        .post_json(
            "/v1/chat/completions",
            chat_with("hi", json!({"priority": 5000})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body).1, Some("priority"));
    let (status, body) = t
        .post_json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "hi", "priority": "high"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let r = t
        .client
        .post(t.url("/v1/messages"))
        .header("x-priority", "soon")
        .json(&json!({"model": MODEL, "max_tokens": 5,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error", "Anthropic error shape: {body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("priority"));
    // In range, by field and by header: served.
    let (status, _) = t
        .post_json(
            "/v1/chat/completions",
            chat_with("hi", json!({"priority": -3})),
        )
        .await;
    assert_eq!(status, 200);
}

/// Sends `body` to `path` with an optional `x-priority` and returns (finish time, text).
async fn timed(t: &TestServer, path: &str, body: Value, header: Option<&str>) -> (Instant, Value) {
    let mut r = t.client.post(t.url(path)).json(&body);
    if let Some(h) = header {
        r = r.header("x-priority", h);
    }
    let resp = r.send().await.expect("sent");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    (Instant::now(), v)
}

fn content(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .or(v["choices"][0]["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[actix_rt::test]
async fn waiting_requests_are_admitted_by_priority_then_arrival() {
    let t = start(|s| s.cache.enabled = false, slow_one_slot()).await;
    let t = std::sync::Arc::new(t);
    let first = {
        let t = t.clone();
        actix_rt::spawn(async move {
            timed(&t, "/v1/chat/completions", chat(&words("a", 15)), None).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let low = {
        let t = t.clone();
        actix_rt::spawn(async move {
            let body = chat_with(&words("b", 3), json!({"priority": 7}));
            timed(&t, "/v1/chat/completions", body, None).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let high = {
        let t = t.clone();
        actix_rt::spawn(async move {
            let body = json!({"model": MODEL, "prompt": words("c", 3), "max_tokens": 5});
            timed(&t, "/v1/completions", body, Some("-7")).await
        })
    };
    let (first_done, _) = first.await.unwrap();
    let (low_done, _) = low.await.unwrap();
    let (high_done, _) = high.await.unwrap();
    assert!(high_done < low_done, "the better priority did not go first");
    assert!(
        first_done < high_done,
        "fcfs must not preempt the running request"
    );
}

#[actix_rt::test]
async fn the_priority_policy_pauses_a_running_request_which_still_completes_unchanged() {
    let t = start(
        |s| {
            s.cache.enabled = false;
            s.scheduler.policy = SchedulerPolicy::Priority;
        },
        slow_one_slot(),
    )
    .await;
    let long = chat_with(&words("a", 25), json!({"priority": 9}));
    let (_, alone) = timed(&t, "/v1/chat/completions", long.clone(), None).await;
    let t = std::sync::Arc::new(t);
    let background = {
        let (t, long) = (t.clone(), long.clone());
        actix_rt::spawn(async move { timed(&t, "/v1/chat/completions", long, None).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let urgent = chat_with(&words("u", 2), json!({"priority": -1}));
    let (urgent_done, _) = timed(&t, "/v1/chat/completions", urgent, None).await;
    let (long_done, paused) = background.await.unwrap();
    assert!(
        urgent_done < long_done,
        "the urgent request waited for the long one"
    );
    assert_eq!(
        content(&paused),
        content(&alone),
        "the paused request's answer changed"
    );
    assert_eq!(paused["usage"], alone["usage"]);
}
