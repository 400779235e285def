//! `/metrics`, `/v1/stats`, `latency` in `/health` and the trace, over the fake engine with the
//! real metrics actor (attached by default).

use std::collections::BTreeSet;
use std::time::Duration;

use mlx_serve::pipeline::cache::ActorCache;
use mlx_serve::pipeline::seams::Seams;
use mlx_serve_engine::fake::FakeConfig;
use serde_json::{json, Value};

use crate::common::*;

/// The value of the sample whose line starts with `prefix` (name plus labels), summed over
/// every matching line.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next().is_some_and(|n| n == name))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(t: &TestServer) -> String {
    let r = t.client.get(t.url("/metrics")).send().await.expect("sent");
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.expect("body")
}

/// Poll /metrics until `cond` holds: events reach the actor asynchronously.
async fn scrape_until(t: &TestServer, cond: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(t).await;
        if cond(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never matched:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn metrics_count_requests_tokens_and_latency_after_requests() {
    let t = start(|_| {}, FakeConfig::default()).await;
    let (s, _) = t
        .post_json(
            "/v1/chat/completions",
            chat_with("one two three", json!({"max_tokens": 2})),
        )
        .await;
    assert_eq!(s, 200);
    let streamed = t
        .post(
            "/v1/chat/completions",
            chat_with("four five", json!({"stream": true})),
        )
        .await
        .text()
        .await
        .expect("stream body");
    assert!(streamed.contains("[DONE]"));
    let (s, _) = t
        .post_json(
            "/v1/chat/completions",
            json!({"model": "no-such-model", "messages": []}),
        )
        .await;
    assert_eq!(s, 404);

    // The engine gauges are published every `metrics.publish_interval`: wait for the one
    // after the requests finished, too.
    let idle = format!("mlx_serve_num_requests_running{{model=\"{MODEL}\"}} 0");
    let text = scrape_until(&t, |m| {
        sample(m, "mlx_serve_requests_total", &[]) >= 3.0 && m.contains(&idle)
    })
    .await;
    let ok = ["route=\"/v1/chat/completions\"", "status=\"200\""];
    assert_eq!(
        sample(&text, "mlx_serve_requests_total", &ok),
        2.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "mlx_serve_requests_total", &["status=\"404\""]),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "mlx_serve_errors_total",
            &["error_type=\"invalid_request_error\""]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "mlx_serve_request_success_total",
            &["finish_reason=\"length\""]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "mlx_serve_request_success_total",
            &["finish_reason=\"stop\""]
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "mlx_serve_generation_tokens_total", &[]),
        2.0 + 2.0
    );
    assert!(sample(&text, "mlx_serve_prompt_tokens_total", &[]) > 0.0);
    // Both successful requests (and the 404) have an e2e observation; TTFT only the two.
    assert_eq!(
        sample(&text, "mlx_serve_e2e_request_latency_seconds_count", &[]),
        3.0
    );
    assert_eq!(
        sample(&text, "mlx_serve_time_to_first_token_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        sample(&text, "mlx_serve_request_prefill_time_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        sample(&text, "mlx_serve_request_queue_time_seconds_count", &[]),
        2.0
    );
    assert!(text.contains(&format!(
        "mlx_serve_num_requests_running{{model=\"{MODEL}\"}} 0"
    )));
    assert!(text.contains(&format!(
        "mlx_serve_num_requests_waiting{{model=\"{MODEL}\"}} 0"
    )));
    assert!(
        text.contains("mlx_serve_model_load_duration_seconds"),
        "{text}"
    );
    t.server.handle.stop(true).await;
}

#[actix_rt::test]
async fn stats_and_health_report_latency_percentiles() {
    let t = start(|_| {}, FakeConfig::default()).await;
    for i in 0..4 {
        let (s, _) = t
            .post_json(
                "/v1/completions",
                json!({"model": MODEL, "prompt": format!("p {i}"), "max_tokens": 3}),
            )
            .await;
        assert_eq!(s, 200);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let (s, v) = t.get_json("/v1/stats").await;
        assert_eq!(s, 200);
        if v["latency"]["requests_total"] == 4 {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lat = &stats["latency"];
    assert_eq!(lat["window_requests"], 4);
    let (p50, p99) = (
        lat["e2e_seconds"]["p50"].as_f64().unwrap_or(-1.0),
        lat["e2e_seconds"]["p99"].as_f64().unwrap_or(-1.0),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{lat}");
    assert!(lat["ttft_seconds"]["p95"].as_f64().is_some(), "{lat}");
    assert_eq!(stats["model"], MODEL);
    let health = t.health().await;
    assert_eq!(health["latency"]["requests_total"], 4, "{health}");
    assert!(health["latency"]["e2e_seconds"]["p95"].as_f64().is_some());
    t.server.handle.stop(true).await;
}

#[actix_rt::test]
async fn trace_gets_one_line_per_request_with_outcome_and_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("trace.jsonl");
    let p = path.clone();
    let t = start(move |s| s.trace.path = Some(p), FakeConfig::default()).await;
    let body = chat_with("same words", json!({"max_tokens": 2}));
    assert_eq!(
        t.post_json("/v1/chat/completions", body.clone()).await.0,
        200
    );
    assert_eq!(t.post_json("/v1/chat/completions", body).await.0, 200);
    let long = "w ".repeat(5000);
    let (s, _) = t.post_json("/v1/chat/completions", chat(&long)).await;
    assert_eq!(s, 400);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("trace line is JSON"))
            .collect();
        if lines.len() >= 3 {
            break lines;
        }
        assert!(std::time::Instant::now() < deadline, "trace: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["model"], MODEL);
    assert_eq!(lines[0]["finish_reason"], "length");
    assert_eq!(lines[0]["completion_tokens"], 2);
    assert!(lines[0]["request_hash"]
        .as_str()
        .is_some_and(|h| h.len() == 32));
    assert_eq!(lines[0]["request_hash"], lines[1]["request_hash"]);
    assert!(
        lines[0].get("prompt").is_none_or(Value::is_null),
        "no prompt by default"
    );
    assert_eq!(lines[2]["status"], 400);
    assert!(
        lines[2]["error_type"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{}",
        lines[2]
    );
    t.server.handle.stop(true).await;
}

#[actix_rt::test]
async fn disabled_metrics_serve_no_metrics_route() {
    let t = start(|s| s.metrics.enabled = false, FakeConfig::default()).await;
    let r = t.client.get(t.url("/metrics")).send().await.expect("sent");
    assert_eq!(r.status(), 404);
    assert!(t.health().await.get("latency").is_none());
    t.server.handle.stop(true).await;
}

/// Every `mlx_serve_…` name the Grafana dashboards (`grafana/dashboards/*.json`) query, as
/// written (histograms with their `_bucket`/`_sum`/`_count` suffix).
fn dashboard_names() -> BTreeSet<String> {
    fn exprs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => map.iter().for_each(|(k, v)| match (k.as_str(), v) {
                ("expr", Value::String(q)) => out.push(q.clone()),
                _ => exprs(v, out),
            }),
            Value::Array(items) => items.iter().for_each(|i| exprs(i, out)),
            _ => {}
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("grafana/dashboards") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("dashboard");
            exprs(
                &serde_json::from_str(&text).expect("dashboard JSON"),
                &mut queries,
            );
        }
    }
    let mut names = BTreeSet::new();
    for query in &queries {
        let mut rest = query.as_str();
        while let Some(i) = rest.find("mlx_serve_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

/// The family a sample name belongs to in `text` (a histogram's series map to its base name).
fn family<'a>(text: &str, name: &'a str) -> &'a str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| {
            name.strip_suffix(suffix)
                .filter(|base| text.contains(&format!("# TYPE {base} histogram")))
        })
        .unwrap_or(name)
}

#[actix_rt::test]
async fn every_dashboard_metric_is_exported_and_response_cache_metrics_follow_the_cache() {
    let mut settings = test_settings();
    // One entry: the second distinct answer evicts the first.
    settings.cache.max_entries = 1;
    let seams = Seams {
        cache: Some(ActorCache::start(&settings.cache)),
        ..Seams::default()
    };
    let factory = fake_factory(FakeConfig {
        model_id: MODEL.into(),
        ..FakeConfig::default()
    });
    let server = mlx_serve::start_server(settings, factory, seams)
        .await
        .expect("server starts");
    let t = TestServer::new(server);
    wait_health(&t, Duration::from_secs(5), |h| h["status"] == "ok").await;

    // Before any request the tier counters already have their series at 0.
    let text = scrape_until(&t, |m| m.contains("mlx_serve_response_cache_entries ")).await;
    for tier in ["disk", "redis"] {
        let series = format!("mlx_serve_response_cache_tier_errors_total{{tier=\"{tier}\"}} 0");
        assert!(
            text.lines().any(|l| l == series),
            "{tier} tier errors start at 0:\n{text}"
        );
    }
    assert_eq!(sample(&text, "mlx_serve_response_cache_entries", &[]), 0.0);

    // An insert moves the occupancy gauges.
    let greedy = |text: &str| chat_with(text, json!({"temperature": 0}));
    let (s, _) = t.post_json("/v1/chat/completions", greedy("first")).await;
    assert_eq!(s, 200);
    let text = scrape_until(&t, |m| {
        sample(m, "mlx_serve_response_cache_entries", &[]) == 1.0
    })
    .await;
    assert!(
        sample(&text, "mlx_serve_response_cache_bytes", &[]) > 0.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "mlx_serve_response_cache_evictions_total", &[]),
        0.0
    );

    // A second answer does not fit beside the first: an eviction.
    let (s, _) = t.post_json("/v1/chat/completions", greedy("second")).await;
    assert_eq!(s, 200);
    let text = scrape_until(&t, |m| {
        sample(m, "mlx_serve_response_cache_evictions_total", &[]) >= 1.0
    })
    .await;
    assert_eq!(sample(&text, "mlx_serve_response_cache_entries", &[]), 1.0);

    // Clearing empties the gauges; the evictions counter keeps its count.
    let r = t
        .client
        .delete(t.url("/v1/cache"))
        .send()
        .await
        .expect("sent");
    assert!(r.status().is_success(), "{}", r.status());
    let text = scrape_until(&t, |m| {
        sample(m, "mlx_serve_response_cache_entries", &[]) == 0.0
    })
    .await;
    assert_eq!(sample(&text, "mlx_serve_response_cache_bytes", &[]), 0.0);
    assert_eq!(
        sample(&text, "mlx_serve_response_cache_evictions_total", &[]),
        1.0
    );

    // After answers, an error and a publication of the engine state, every family the
    // dashboard charts is exported. Tool-call counters are labelled by a format only a parsed
    // reply names, so they appear with the first tool call (tests/http/tools.rs).
    let (s, _) = t
        .post_json(
            "/v1/chat/completions",
            json!({"model": "no-such-model", "messages": []}),
        )
        .await;
    assert_eq!(s, 404);
    let text = scrape_until(&t, |m| {
        m.contains("mlx_serve_errors_total{")
            && m.contains("mlx_serve_model_load_duration_seconds{")
    })
    .await;
    let names = dashboard_names();
    assert!(names.len() >= 15, "too few dashboard metrics: {names:?}");
    for name in &names {
        let family = family(&text, name);
        if family.starts_with("mlx_serve_tool_calls_") {
            continue;
        }
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{name} (dashboard) is not exported:\n{text}"
        );
    }
}
