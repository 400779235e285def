//! Cross-checks against the outside world: `promtool` on the exposition, the Grafana dashboard
//! against the names we export, and the actor shell end to end.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::*;

/// A registry that has seen one of every event, so every family has samples.
fn busy_metrics() -> Metrics {
    let mut m = Metrics::new().unwrap();
    let base = RequestFinished {
        route: "/v1/chat/completions".into(),
        model: "qwen".into(),
        status: 200,
        finish_reason: Some("stop".into()),
        cache: CacheOutcome::Miss,
        e2e_s: 1.2,
        ttft_s: Some(0.3),
        queue_s: Some(0.01),
        prefill_s: Some(0.25),
        decode_s: Some(0.9),
        prompt_tokens: 50,
        cached_tokens: 20,
        completion_tokens: 10,
        tool_calls: vec![
            ToolCallOutcome {
                format: "hermes".into(),
                name: Some("f".into()),
                ok: true,
            },
            ToolCallOutcome {
                format: "hermes".into(),
                name: None,
                ok: false,
            },
        ],
        ..Default::default()
    };
    m.record_request(&base);
    m.record_model_residency(&crate::metrics::ModelResidency {
        model: "qwen".into(),
        loaded: true,
        resident_bytes: 5,
        loads_total: 2,
        unloads_total: 1,
    });
    m.record_request(&RequestFinished {
        cache: CacheOutcome::Hit,
        cache_tier: Some("memory".into()),
        e2e_s: 0.0001,
        ..base.clone()
    });
    m.record_request(&RequestFinished {
        cache: CacheOutcome::Bypass,
        status: 500,
        error_type: Some("server_error".into()),
        ..base
    });
    m.record_queue(&QueueState {
        model: "qwen".into(),
        running: 1,
        waiting: 0,
    });
    m.record_cache(&CacheState {
        entries: 1,
        bytes: 300,
        evictions_total: 0,
    });
    m.record_cache_tier_error(&CacheTierError {
        tier: "redis".into(),
    });
    m.record_prefix_cache(&PrefixCacheState {
        model: "qwen".into(),
        entries: 2,
        bytes: 4096,
        evictions_total: 1,
    });
    m.record_model_loaded(&ModelLoaded {
        model: "qwen".into(),
        seconds: 2.0,
        weight_bytes: 1000,
    });
    m
}

fn promtool() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    })
}

#[test]
fn exposition_passes_promtool_check_metrics() {
    let Some(promtool) = promtool() else {
        eprintln!("skipped: promtool not on PATH (apt-get install prometheus)");
        return;
    };
    let text = busy_metrics().render();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_name_constant_is_exported() {
    let text = busy_metrics().render();
    for name in names::ALL {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from /metrics"
        );
    }
}

/// Metric names (`mlx_serve_…`) anywhere in the dashboard's queries.
fn dashboard_metric_names() -> BTreeSet<String> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../grafana/dashboards/mlx-serve.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    collect_queries(&json, &mut queries);
    assert!(queries.len() > 15, "found only {} queries", queries.len());
    let mut names = BTreeSet::new();
    for q in queries {
        let mut rest = q.as_str();
        while let Some(i) = rest.find("mlx_serve_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

fn collect_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::Object(q)) => {
                        if let Some(serde_json::Value::String(s)) = q.get("query") {
                            out.push(s.clone());
                        }
                    }
                    _ => collect_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_queries(i, out)),
        _ => {}
    }
}

#[test]
fn dashboard_uses_only_exported_metric_names() {
    let text = busy_metrics().render();
    let used = dashboard_metric_names();
    assert!(used.len() >= 15, "dashboard uses too few metrics: {used:?}");
    for name in &used {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| text.contains(&format!("# TYPE {base} histogram")))
            })
            .unwrap_or(name);
        assert!(names::ALL.contains(&family), "{name} is not in names.rs");
        assert!(
            text.lines().any(|l| l.starts_with(name.as_str())),
            "{name} has no samples in /metrics after events"
        );
    }
}

#[actix::test]
async fn actor_records_events_and_answers_render_and_summary() {
    let state = MetricsState::new(WindowSettings::default(), &TraceSettings::default()).unwrap();
    let addr = MetricsActor::new(state).start();
    for e2e in [0.1, 0.2, 0.3] {
        addr.do_send(RequestFinished {
            model: "qwen".into(),
            route: "/v1/chat/completions".into(),
            status: 200,
            cache: CacheOutcome::Miss,
            e2e_s: e2e,
            ttft_s: Some(e2e / 2.0),
            ..Default::default()
        });
    }
    addr.do_send(QueueState {
        model: "qwen".into(),
        running: 1,
        waiting: 4,
    });
    let summary = addr.send(Summary).await.unwrap();
    assert_eq!(summary.requests_total, 3);
    assert_eq!(summary.e2e_seconds.p50, Some(0.2));
    assert_eq!(summary.ttft_seconds.p99, Some(0.15));
    let text = addr.send(Render).await.unwrap();
    assert!(
        text.contains("mlx_serve_num_requests_waiting{model=\"qwen\"} 4"),
        "{text}"
    );
    assert!(text.contains(
        "mlx_serve_requests_total{model=\"qwen\",route=\"/v1/chat/completions\",status=\"200\"} 3"
    ));
}

#[test]
fn state_writes_the_trace_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/trace.jsonl");
    let settings = TraceSettings {
        path: Some(path.clone()),
        ..Default::default()
    };
    let mut state = MetricsState::new(WindowSettings::default(), &settings).unwrap();
    state.request_finished(
        &RequestFinished {
            model: "qwen".into(),
            status: 200,
            e2e_s: 0.5,
            ..Default::default()
        },
        std::time::Instant::now(),
    );
    let report = analyze(&path, &AnalyzeOptions::default()).unwrap();
    assert_eq!(report.records, 1);
    assert_eq!(report.models[0].model, "qwen");
}
