use super::*;
use crate::metrics::events::{CacheTierError, PrefixCacheState, ToolCallOutcome};

/// Value of the sample `name{...}` whose labels include every `labels` pair (`k="v"`).
pub(crate) fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| labels.iter().all(|lab| l.contains(lab)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn miss(model: &str) -> RequestFinished {
    RequestFinished {
        route: "/v1/chat/completions".into(),
        model: model.into(),
        status: 200,
        finish_reason: Some("stop".into()),
        cache: CacheOutcome::Miss,
        e2e_s: 2.0,
        ttft_s: Some(0.5),
        queue_s: Some(0.001),
        prefill_s: Some(0.4),
        decode_s: Some(1.5),
        prompt_tokens: 100,
        cached_tokens: 64,
        completion_tokens: 31,
        ..Default::default()
    }
}

fn hit(model: &str) -> RequestFinished {
    RequestFinished {
        cache: CacheOutcome::Hit,
        e2e_s: 0.0002,
        ttft_s: Some(0.0001),
        queue_s: None,
        prefill_s: None,
        decode_s: None,
        cached_tokens: 0,
        ..miss(model)
    }
}

#[test]
fn cache_hit_counts_as_hit_and_lands_in_the_lowest_latency_buckets() {
    let mut m = Metrics::new().unwrap();
    m.record_request(&hit("qwen"));
    let t = m.render();
    assert_eq!(
        sample(&t, n::RESPONSE_CACHE_HITS_TOTAL, &["model=\"qwen\""]),
        Some(1.0)
    );
    let bucket = format!("{}_bucket", n::E2E_REQUEST_LATENCY_SECONDS);
    assert_eq!(
        sample(&t, &bucket, &["cache=\"hit\"", "le=\"0.0001\""]),
        Some(0.0)
    );
    assert_eq!(
        sample(&t, &bucket, &["cache=\"hit\"", "le=\"0.00025\""]),
        Some(1.0)
    );
    // A replayed answer is not engine work.
    assert_eq!(sample(&t, n::GENERATION_TOKENS_TOTAL, &[]), None);
    assert_eq!(sample(&t, n::PREFIX_CACHE_QUERIES_TOTAL, &[]), None);
    assert_eq!(sample(&t, n::RESPONSE_CACHE_HIT_RATIO, &[]), Some(1.0));
}

#[test]
fn engine_request_moves_tokens_phases_and_prefix_cache() {
    let mut m = Metrics::new().unwrap();
    m.record_request(&miss("qwen"));
    m.record_request(&RequestFinished {
        cached_tokens: 0,
        ..miss("qwen")
    });
    let t = m.render();
    let q = ["model=\"qwen\""];
    assert_eq!(sample(&t, n::PROMPT_TOKENS_TOTAL, &q), Some(200.0));
    assert_eq!(sample(&t, n::GENERATION_TOKENS_TOTAL, &q), Some(62.0));
    assert_eq!(sample(&t, n::PREFIX_CACHE_QUERIES_TOTAL, &q), Some(2.0));
    assert_eq!(sample(&t, n::PREFIX_CACHE_HITS_TOTAL, &q), Some(1.0));
    assert_eq!(
        sample(&t, n::PREFIX_CACHE_QUERIED_TOKENS_TOTAL, &q),
        Some(200.0)
    );
    assert_eq!(
        sample(&t, n::PREFIX_CACHE_TOKENS_SAVED_TOTAL, &q),
        Some(64.0)
    );
    assert_eq!(sample(&t, n::RESPONSE_CACHE_MISSES_TOTAL, &q), Some(2.0));
    assert_eq!(sample(&t, n::RESPONSE_CACHE_HIT_RATIO, &[]), Some(0.0));
    let count = |name: &str| sample(&t, &format!("{name}_count"), &q);
    for h in [
        n::REQUEST_QUEUE_TIME_SECONDS,
        n::REQUEST_PREFILL_TIME_SECONDS,
        n::REQUEST_DECODE_TIME_SECONDS,
        n::TIME_PER_OUTPUT_TOKEN_SECONDS,
        n::REQUEST_PROMPT_TOKENS,
        n::REQUEST_GENERATION_TOKENS,
    ] {
        assert_eq!(count(h), Some(2.0), "{h}");
    }
    // (2.0 - 0.5) s over 30 tokens after the first = 50 ms each.
    assert_eq!(
        sample(&t, &format!("{}_sum", n::TIME_PER_OUTPUT_TOKEN_SECONDS), &q),
        Some(0.1)
    );
    assert_eq!(
        sample(&t, n::REQUEST_SUCCESS_TOTAL, &["finish_reason=\"stop\""]),
        Some(2.0)
    );
}

#[test]
fn failed_request_counts_error_type_and_not_success() {
    let mut m = Metrics::new().unwrap();
    m.record_request(&RequestFinished {
        route: "/v1/completions".into(),
        model: "qwen".into(),
        status: 400,
        error_type: Some("invalid_request_error".into()),
        finish_reason: Some("stop".into()),
        e2e_s: 0.001,
        ..Default::default()
    });
    let t = m.render();
    assert_eq!(
        sample(
            &t,
            n::ERRORS_TOTAL,
            &["error_type=\"invalid_request_error\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &t,
            n::REQUESTS_TOTAL,
            &["route=\"/v1/completions\"", "status=\"400\""]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&t, n::REQUEST_SUCCESS_TOTAL, &[]), None);
    assert_eq!(
        sample(
            &t,
            n::RESPONSE_CACHE_SKIPPED_TOTAL,
            &["reason=\"uncacheable\""]
        ),
        Some(1.0)
    );
}

#[test]
fn free_text_labels_are_bounded() {
    let mut m = Metrics::new().unwrap();
    m.record_request(&RequestFinished {
        finish_reason: Some("made up reason".into()),
        ..miss("a \"quoted\" model\nwith newline")
    });
    let t = m.render();
    assert_eq!(
        sample(&t, n::REQUEST_SUCCESS_TOTAL, &["finish_reason=\"other\""]),
        Some(1.0)
    );
    assert!(t.contains("model=\"a__quoted__model_with_newline\""), "{t}");
}

#[test]
fn tool_calls_split_into_parsed_and_failed_by_format() {
    let mut m = Metrics::new().unwrap();
    let call = |format: &str, ok| ToolCallOutcome {
        format: format.into(),
        name: Some("f".into()),
        ok,
    };
    m.record_request(&RequestFinished {
        tool_calls: vec![
            call("hermes", true),
            call("hermes", true),
            call("mistral", false),
        ],
        ..miss("qwen")
    });
    let t = m.render();
    assert_eq!(
        sample(&t, n::TOOL_CALLS_PARSED_TOTAL, &["format=\"hermes\""]),
        Some(2.0)
    );
    assert_eq!(
        sample(&t, n::TOOL_CALLS_FAILED_TOTAL, &["format=\"mistral\""]),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, n::TOOL_CALLS_FAILED_TOTAL, &["format=\"hermes\""]),
        None
    );
}

#[test]
fn cache_state_sets_gauges_and_follows_eviction_total_by_deltas() {
    let mut m = Metrics::new().unwrap();
    let state = |entries, evictions_total| CacheState {
        entries,
        bytes: entries * 100,
        evictions_total,
    };
    m.record_cache(&state(5, 2));
    m.record_cache(&state(7, 6));
    let t = m.render();
    assert_eq!(sample(&t, n::RESPONSE_CACHE_ENTRIES, &[]), Some(7.0));
    assert_eq!(sample(&t, n::RESPONSE_CACHE_BYTES, &[]), Some(700.0));
    assert_eq!(
        sample(&t, n::RESPONSE_CACHE_EVICTIONS_TOTAL, &[]),
        Some(6.0)
    );
    // The cache restarted its count: the counter must still only go up.
    m.record_cache(&state(1, 1));
    let t = m.render();
    assert_eq!(
        sample(&t, n::RESPONSE_CACHE_EVICTIONS_TOTAL, &[]),
        Some(7.0)
    );
}

#[test]
fn queue_and_model_gauges_and_process_memory() {
    let mut m = Metrics::new().unwrap();
    m.record_queue(&QueueState {
        model: "qwen".into(),
        running: 2,
        waiting: 3,
    });
    m.record_model_loaded(&ModelLoaded {
        model: "qwen".into(),
        seconds: 1.25,
        weight_bytes: 1 << 30,
    });
    let t = m.render();
    assert_eq!(
        sample(&t, n::NUM_REQUESTS_RUNNING, &["model=\"qwen\""]),
        Some(2.0)
    );
    assert_eq!(
        sample(&t, n::NUM_REQUESTS_WAITING, &["model=\"qwen\""]),
        Some(3.0)
    );
    assert_eq!(sample(&t, n::MODEL_LOAD_DURATION_SECONDS, &[]), Some(1.25));
    assert_eq!(sample(&t, n::MODEL_WEIGHTS_BYTES, &[]), Some(1073741824.0));
    let rss = sample(&t, n::PROCESS_RESIDENT_MEMORY_BYTES, &[]).unwrap();
    if cfg!(target_os = "linux") {
        assert!(rss > 1e6, "rss {rss}");
    }
}

#[test]
fn tpot_needs_two_tokens_and_prefers_ttft() {
    let mut ev = miss("m");
    ev.completion_tokens = 1;
    assert_eq!(time_per_output_token(&ev), None);
    ev.completion_tokens = 3;
    ev.e2e_s = 1.0;
    ev.ttft_s = Some(0.2);
    assert!((time_per_output_token(&ev).unwrap() - 0.4).abs() < 1e-12);
    ev.ttft_s = None;
    ev.decode_s = Some(0.6);
    assert!((time_per_output_token(&ev).unwrap() - 0.3).abs() < 1e-12);
}

#[test]
fn model_load_creates_zero_series_for_the_model() {
    let mut m = Metrics::new().unwrap();
    assert_eq!(sample(&m.render(), n::GENERATION_TOKENS_TOTAL, &[]), None);
    m.record_model_loaded(&ModelLoaded {
        model: "qwen".into(),
        seconds: 1.0,
        weight_bytes: 1,
    });
    let t = m.render();
    let q = ["model=\"qwen\""];
    assert_eq!(sample(&t, n::GENERATION_TOKENS_TOTAL, &q), Some(0.0));
    assert_eq!(sample(&t, n::RESPONSE_CACHE_HITS_TOTAL, &q), Some(0.0));
    assert_eq!(
        sample(
            &t,
            &format!("{}_count", n::E2E_REQUEST_LATENCY_SECONDS),
            &["cache=\"hit\""]
        ),
        Some(0.0)
    );
    assert_eq!(sample(&t, n::NUM_REQUESTS_WAITING, &q), Some(0.0));
}

#[test]
fn tier_hits_and_tier_errors_are_counted_by_tier() {
    let mut m = Metrics::new().unwrap();
    m.record_request(&RequestFinished {
        cache_tier: Some("redis".into()),
        ..hit("qwen")
    });
    // A hit whose tier is unknown still counts as a hit, just not by tier.
    m.record_request(&hit("qwen"));
    m.record_cache_tier_error(&CacheTierError {
        tier: "redis".into(),
    });
    let t = m.render();
    assert_eq!(sample(&t, n::RESPONSE_CACHE_HITS_TOTAL, &[]), Some(2.0));
    assert_eq!(
        sample(&t, n::RESPONSE_CACHE_TIER_HITS_TOTAL, &["tier=\"redis\""]),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, n::RESPONSE_CACHE_TIER_HITS_TOTAL, &["tier=\"memory\""]),
        Some(0.0),
        "known tiers start at 0"
    );
    assert_eq!(
        sample(&t, n::RESPONSE_CACHE_TIER_ERRORS_TOTAL, &["tier=\"redis\""]),
        Some(1.0)
    );
}

#[test]
fn prefix_cache_state_sets_gauges_and_evictions_per_model() {
    let mut m = Metrics::new().unwrap();
    let state = |model: &str, evictions_total| PrefixCacheState {
        model: model.into(),
        entries: 3,
        bytes: 1 << 20,
        evictions_total,
    };
    m.record_prefix_cache(&state("a", 4));
    m.record_prefix_cache(&state("b", 1));
    m.record_prefix_cache(&state("a", 5));
    let t = m.render();
    assert_eq!(
        sample(&t, n::PREFIX_CACHE_EVICTIONS_TOTAL, &["model=\"a\""]),
        Some(5.0)
    );
    assert_eq!(
        sample(&t, n::PREFIX_CACHE_EVICTIONS_TOTAL, &["model=\"b\""]),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, n::PREFIX_CACHE_BYTES, &["model=\"a\""]),
        Some(1048576.0)
    );
    assert_eq!(
        sample(&t, n::PREFIX_CACHE_ENTRIES, &["model=\"b\""]),
        Some(3.0)
    );
}
