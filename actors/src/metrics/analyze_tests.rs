use std::io::Write;

use super::*;

fn line(v: serde_json::Value) -> String {
    format!("{v}\n")
}

#[allow(clippy::too_many_arguments)]
fn rec(
    time: &str,
    hash: &str,
    model: &str,
    cache: &str,
    e2e: f64,
    ttft: Option<f64>,
    prompt: u64,
    completion: u64,
) -> serde_json::Value {
    serde_json::json!({
        "time": time, "request_hash": hash, "model": model, "route": "/v1/chat/completions",
        "status": 200, "prompt_tokens": prompt, "cached_tokens": 0, "completion_tokens": completion,
        "cache": cache, "ttft_s": ttft, "e2e_s": e2e, "finish_reason": "stop"
    })
}

fn sample_trace() -> String {
    let mut s = String::new();
    s += &line(rec(
        "2026-01-01T00:00:00Z",
        "a",
        "qwen",
        "miss",
        2.0,
        Some(0.5),
        10,
        31,
    ));
    s += &line(rec(
        "2026-01-01T00:00:01Z",
        "a",
        "qwen",
        "hit",
        0.0002,
        Some(0.0001),
        10,
        31,
    ));
    s += &line(rec(
        "2026-01-01T00:00:02Z",
        "a",
        "qwen",
        "hit",
        0.0002,
        Some(0.0001),
        10,
        31,
    ));
    s += &line(rec(
        "2026-01-01T00:00:03Z",
        "b",
        "llama",
        "miss",
        4.0,
        Some(1.0),
        20,
        7,
    ));
    let mut tool = rec(
        "2026-01-01T00:00:04Z",
        "c",
        "qwen",
        "bypass",
        1.0,
        Some(0.2),
        30,
        5,
    );
    tool["tools"] = serde_json::json!(["get_weather", "get_weather", "search"]);
    tool["tool_failures"] = serde_json::json!(1);
    tool["finish_reason"] = serde_json::json!("tool_calls");
    s += &line(tool);
    let mut err = rec(
        "2026-01-01T00:00:10Z",
        "d",
        "qwen",
        "uncacheable",
        0.01,
        None,
        0,
        0,
    );
    err["status"] = serde_json::json!(400);
    err["error_type"] = serde_json::json!("invalid_request_error");
    err["error"] = serde_json::json!("max_tokens 99999 exceeds context 4096");
    err.as_object_mut().map(|o| o.remove("finish_reason"));
    s += &line(err.clone());
    err["error"] = serde_json::json!("max_tokens 123 exceeds context 64");
    s += &line(err);
    // A crash mid-write and a hand edit: counted, skipped.
    s += "{\"time\":\"2026-01-01T00:00:11Z\",\"model\":\"qw\n";
    s += "not json at all\n";
    s += "\n";
    s
}

fn report() -> AnalysisReport {
    analyze_reader(sample_trace().as_bytes(), &AnalyzeOptions { slowest: 2 }).unwrap()
}

#[test]
fn malformed_and_truncated_lines_are_counted_and_skipped() {
    let r = report();
    assert_eq!(r.records, 7);
    assert_eq!(r.malformed_lines, 2);
    assert_eq!(r.lines, 9);
}

#[test]
fn counts_total_unique_and_failed_requests() {
    let r = report();
    assert_eq!(r.requests.total, 7);
    assert_eq!(r.requests.unique, 4);
    assert_eq!(r.requests.failed, 2);
    assert_eq!(r.requests.success_rate, Some(5.0 / 7.0));
    assert_eq!(r.span_seconds, Some(10.0));
    assert_eq!(r.requests.requests_per_second, Some(0.7));
}

#[test]
fn cache_rates_and_hit_speedup() {
    let c = report().cache;
    assert_eq!((c.hits, c.misses, c.bypass, c.uncacheable), (2, 2, 1, 2));
    assert_eq!(c.hit_rate, Some(2.0 / 7.0));
    assert_eq!(c.cacheable_hit_rate, Some(0.5));
    // "a" three times and "d" twice: 3 of 7 were repeats.
    assert_eq!(c.potential_hit_rate, Some(3.0 / 7.0));
    assert_eq!(c.hit_p50_s, Some(0.0002));
    assert_eq!(c.miss_p50_s, Some(2.0));
    assert!((c.hit_speedup.unwrap() - 10_000.0).abs() < 1e-6);
}

#[test]
fn latency_percentiles_and_tokens() {
    let r = report();
    assert_eq!(r.latency.e2e.max, Some(4.0));
    assert_eq!(r.latency.e2e.p50, Some(0.01));
    assert_eq!(r.latency.ttft.p99, Some(1.0));
    assert_eq!(r.tokens.prompt, 80);
    assert_eq!(r.tokens.completion, 105);
    // Engine requests with ttft: (30 + 6 + 4) tokens after the first over 1.5 + 3.0 + 0.8 s.
    let speed = r.tokens.generation_tokens_per_second.unwrap();
    assert!((speed - 40.0 / 5.3).abs() < 1e-9, "{speed}");
}

#[test]
fn tools_finish_reasons_and_error_patterns() {
    let r = report();
    assert_eq!(r.tools.get("get_weather"), Some(&2));
    assert_eq!(r.tools.get("search"), Some(&1));
    assert_eq!(r.requests_with_tools, 1);
    assert_eq!(r.tool_failures, 1);
    assert_eq!(r.finish_reasons.get("stop"), Some(&4));
    assert_eq!(r.finish_reasons.get("tool_calls"), Some(&1));
    assert_eq!(r.statuses.get("400"), Some(&2));
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert_eq!(r.errors[0].count, 2);
    assert_eq!(
        r.errors[0].pattern,
        "invalid_request_error: max_tokens N exceeds context N"
    );
}

#[test]
fn per_model_breakdown_and_slowest() {
    let r = report();
    assert_eq!(r.models[0].model, "qwen");
    assert_eq!(r.models[0].requests, 6);
    assert_eq!(r.models[0].failed, 2);
    assert_eq!(r.models[1].model, "llama");
    assert_eq!(r.models[1].e2e.p50, Some(4.0));
    assert_eq!(r.slowest.len(), 2);
    assert_eq!(r.slowest[0].e2e_s, 4.0);
    assert_eq!(r.slowest[1].request_hash.as_deref(), Some("a"));
}

#[test]
fn text_rendering_shows_the_headline_numbers() {
    let text = render_text(&report());
    assert!(text.contains("malformed (skipped): 2"), "{text}");
    assert!(text.contains("total 7  unique 4"), "{text}");
    assert!(text.contains("potential 42.9%"), "{text}");
    assert!(text.contains("200µs"), "{text}");
    assert!(text.contains("get_weather"), "{text}");
}

#[test]
fn json_report_carries_the_headline_fields() {
    let v = serde_json::to_value(report()).unwrap();
    assert_eq!(v["requests"]["total"], 7);
    assert_eq!(v["requests"]["unique"], 4);
    assert_eq!(v["malformed_lines"], 2);
    assert_eq!(v["cache"]["hits"], 2);
    assert_eq!(v["latency"]["e2e"]["max"], 4.0);
    assert_eq!(v["tools"]["get_weather"], 2);
    assert_eq!(v["models"][0]["model"], "qwen");
    // And it reads back (what a script consuming `--json` does).
    let back: AnalysisReport = serde_json::from_value(v).unwrap();
    assert_eq!((back.requests.total, back.cache.misses), (7, 2));
}

#[test]
fn analyze_reads_a_file_written_by_the_trace_writer() {
    use crate::metrics::{CacheOutcome, RequestFinished, TraceSettings, TraceWriter};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let mut w = TraceWriter::open(&TraceSettings {
        path: Some(path.clone()),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    for cache in [CacheOutcome::Miss, CacheOutcome::Hit] {
        w.write_event(&RequestFinished {
            model: "m".into(),
            status: 200,
            cache,
            e2e_s: 0.5,
            request_hash: Some("same".into()),
            ..Default::default()
        })
        .unwrap();
    }
    // Simulate a crash that left half a line behind.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"time\":")
        .unwrap();
    let r = analyze(&path, &AnalyzeOptions::default()).unwrap();
    assert_eq!((r.records, r.malformed_lines), (2, 1));
    assert_eq!(r.cache.hit_rate, Some(0.5));
    assert_eq!(r.requests.unique, 1);
}

#[test]
fn missing_file_is_an_error_naming_the_path() {
    let err = analyze(
        Path::new("/nonexistent/trace.jsonl"),
        &AnalyzeOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/trace.jsonl"));
}

#[test]
fn several_files_are_summarized_as_one_trace() {
    let dir = tempfile::tempdir().unwrap();
    let older = dir.path().join("trace.jsonl.1");
    let newer = dir.path().join("trace.jsonl");
    std::fs::write(
        &older,
        line(rec(
            "2026-01-01T00:00:00Z",
            "a",
            "m",
            "miss",
            1.0,
            None,
            1,
            1,
        )),
    )
    .unwrap();
    std::fs::write(
        &newer,
        line(rec(
            "2026-01-01T00:01:00Z",
            "a",
            "m",
            "hit",
            0.001,
            None,
            1,
            1,
        )) + "garbage\n",
    )
    .unwrap();
    let r = analyze_files(&[&older, &newer], &AnalyzeOptions::default()).unwrap();
    assert_eq!((r.records, r.malformed_lines), (2, 1));
    assert_eq!(r.requests.unique, 1);
    assert_eq!(r.span_seconds, Some(60.0));
    assert_eq!(r.cache.cacheable_hit_rate, Some(0.5));
}
