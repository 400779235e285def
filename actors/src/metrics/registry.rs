//! The Prometheus registry and how each event moves it.

use std::collections::HashMap;

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

#[cfg(test)]
use super::events::{CacheOutcome, CacheState, ModelLoaded, QueueState, RequestFinished};
use super::names as n;

/// Failure to build the registry (a bug: names or labels clash).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The prometheus crate refused a metric.
    #[error("metrics registry: {0}")]
    Prometheus(#[from] prometheus::Error),
}

/// Every metric the server exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    success: IntCounterVec,
    errors: IntCounterVec,
    e2e: HistogramVec,
    ttft: HistogramVec,
    tpot: HistogramVec,
    queue: HistogramVec,
    prefill: HistogramVec,
    decode: HistogramVec,
    prompt_tokens: IntCounterVec,
    generation_tokens: IntCounterVec,
    request_prompt_tokens: HistogramVec,
    request_generation_tokens: HistogramVec,
    running: IntGaugeVec,
    waiting: IntGaugeVec,
    cache_hits: IntCounterVec,
    cache_misses: IntCounterVec,
    cache_skipped: IntCounterVec,
    cache_evictions: IntCounter,
    cache_entries: IntGauge,
    cache_bytes: IntGauge,
    cache_hit_ratio: Gauge,
    cache_tier_hits: IntCounterVec,
    cache_tier_errors: IntCounterVec,
    prefix_queries: IntCounterVec,
    prefix_hits: IntCounterVec,
    prefix_queried_tokens: IntCounterVec,
    prefix_tokens_saved: IntCounterVec,
    prefix_entries: IntGaugeVec,
    prefix_bytes: IntGaugeVec,
    prefix_evictions: IntCounterVec,
    tool_parsed: IntCounterVec,
    tool_failed: IntCounterVec,
    model_load: GaugeVec,
    weights_bytes: IntGaugeVec,
    rss_bytes: IntGauge,
    pub(super) batching: super::batching::BatchingMetrics,
    /// Last `evictions_total` the cache reported, to turn its running total into increments.
    last_evictions: u64,
    /// Same for each model's prefix cache.
    last_prefix_evictions: HashMap<String, u64>,
    hits_since_start: u64,
    misses_since_start: u64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn histogram(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> prometheus::Result<HistogramVec> {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    reg.register(Box::new(h.clone()))?;
    Ok(h)
}

fn int_gauge_vec(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

fn int_gauge(reg: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, MetricsError> {
        let r = Registry::new();
        let m = [n::LABEL_MODEL];
        let mc = [n::LABEL_MODEL, n::LABEL_CACHE];
        let lat = n::LATENCY_BUCKETS;
        let tok = n::TOKEN_BUCKETS;
        let cache_hit_ratio = Gauge::new(
            n::RESPONSE_CACHE_HIT_RATIO,
            "Response-cache hits / (hits + misses) since start",
        )?;
        r.register(Box::new(cache_hit_ratio.clone()))?;
        let cache_evictions = IntCounter::new(
            n::RESPONSE_CACHE_EVICTIONS_TOTAL,
            "Entries evicted from the response cache",
        )?;
        r.register(Box::new(cache_evictions.clone()))?;
        let model_load = GaugeVec::new(
            Opts::new(
                n::MODEL_LOAD_DURATION_SECONDS,
                "Seconds the last load of the model took",
            ),
            &m,
        )?;
        r.register(Box::new(model_load.clone()))?;
        Ok(Self {
            requests: counter(
                &r,
                n::REQUESTS_TOTAL,
                "Finished HTTP requests",
                &[n::LABEL_MODEL, n::LABEL_ROUTE, n::LABEL_STATUS],
            )?,
            success: counter(
                &r,
                n::REQUEST_SUCCESS_TOTAL,
                "Successfully finished requests by finish reason",
                &[n::LABEL_MODEL, n::LABEL_FINISH_REASON],
            )?,
            errors: counter(
                &r,
                n::ERRORS_TOTAL,
                "Failed requests by error type",
                &[n::LABEL_MODEL, n::LABEL_ERROR_TYPE],
            )?,
            e2e: histogram(
                &r,
                n::E2E_REQUEST_LATENCY_SECONDS,
                "Request arrival to last byte",
                &mc,
                lat,
            )?,
            ttft: histogram(
                &r,
                n::TIME_TO_FIRST_TOKEN_SECONDS,
                "Request arrival to first token",
                &mc,
                lat,
            )?,
            tpot: histogram(
                &r,
                n::TIME_PER_OUTPUT_TOKEN_SECONDS,
                "Mean time between output tokens after the first",
                &m,
                lat,
            )?,
            queue: histogram(
                &r,
                n::REQUEST_QUEUE_TIME_SECONDS,
                "Time waiting for the engine",
                &m,
                lat,
            )?,
            prefill: histogram(
                &r,
                n::REQUEST_PREFILL_TIME_SECONDS,
                "Prompt processing time",
                &m,
                lat,
            )?,
            decode: histogram(
                &r,
                n::REQUEST_DECODE_TIME_SECONDS,
                "Generation time after prefill",
                &m,
                lat,
            )?,
            prompt_tokens: counter(
                &r,
                n::PROMPT_TOKENS_TOTAL,
                "Prompt tokens handled by the engine",
                &m,
            )?,
            generation_tokens: counter(
                &r,
                n::GENERATION_TOKENS_TOTAL,
                "Tokens generated by the engine",
                &m,
            )?,
            request_prompt_tokens: histogram(
                &r,
                n::REQUEST_PROMPT_TOKENS,
                "Prompt tokens per request",
                &m,
                tok,
            )?,
            request_generation_tokens: histogram(
                &r,
                n::REQUEST_GENERATION_TOKENS,
                "Generated tokens per request",
                &m,
                tok,
            )?,
            running: int_gauge_vec(&r, n::NUM_REQUESTS_RUNNING, "Sequences being generated", &m)?,
            waiting: int_gauge_vec(
                &r,
                n::NUM_REQUESTS_WAITING,
                "Requests waiting for the engine",
                &m,
            )?,
            cache_hits: counter(
                &r,
                n::RESPONSE_CACHE_HITS_TOTAL,
                "Requests answered from the response cache",
                &m,
            )?,
            cache_misses: counter(
                &r,
                n::RESPONSE_CACHE_MISSES_TOTAL,
                "Cacheable requests not found in the response cache",
                &m,
            )?,
            cache_skipped: counter(
                &r,
                n::RESPONSE_CACHE_SKIPPED_TOTAL,
                "Requests that skipped the response cache",
                &[n::LABEL_MODEL, n::LABEL_REASON],
            )?,
            cache_evictions,
            cache_entries: int_gauge(
                &r,
                n::RESPONSE_CACHE_ENTRIES,
                "Entries in the response cache",
            )?,
            cache_bytes: int_gauge(
                &r,
                n::RESPONSE_CACHE_BYTES,
                "Bytes held by the response cache",
            )?,
            cache_hit_ratio,
            cache_tier_hits: counter(
                &r,
                n::RESPONSE_CACHE_TIER_HITS_TOTAL,
                "Response-cache hits by the tier that served them",
                &[n::LABEL_TIER],
            )?,
            cache_tier_errors: counter(
                &r,
                n::RESPONSE_CACHE_TIER_ERRORS_TOTAL,
                "Failed operations on a response-cache tier",
                &[n::LABEL_TIER],
            )?,
            prefix_queries: counter(
                &r,
                n::PREFIX_CACHE_QUERIES_TOTAL,
                "Engine requests that looked up a cached prompt prefix",
                &m,
            )?,
            prefix_hits: counter(
                &r,
                n::PREFIX_CACHE_HITS_TOTAL,
                "Engine requests that reused cached prompt tokens",
                &m,
            )?,
            prefix_queried_tokens: counter(
                &r,
                n::PREFIX_CACHE_QUERIED_TOKENS_TOTAL,
                "Prompt tokens looked up in the prefix cache",
                &m,
            )?,
            prefix_tokens_saved: counter(
                &r,
                n::PREFIX_CACHE_TOKENS_SAVED_TOTAL,
                "Prompt tokens reused from the prefix cache",
                &m,
            )?,
            prefix_entries: int_gauge_vec(
                &r,
                n::PREFIX_CACHE_ENTRIES,
                "Cached prompt prefixes held",
                &m,
            )?,
            prefix_bytes: int_gauge_vec(
                &r,
                n::PREFIX_CACHE_BYTES,
                "Bytes of KV state held by the prefix cache",
                &m,
            )?,
            prefix_evictions: counter(
                &r,
                n::PREFIX_CACHE_EVICTIONS_TOTAL,
                "Prefixes evicted from the prefix cache",
                &m,
            )?,
            tool_parsed: counter(
                &r,
                n::TOOL_CALLS_PARSED_TOTAL,
                "Tool calls parsed from model output",
                &[n::LABEL_MODEL, n::LABEL_FORMAT],
            )?,
            tool_failed: counter(
                &r,
                n::TOOL_CALLS_FAILED_TOTAL,
                "Tool calls that could not be parsed",
                &[n::LABEL_MODEL, n::LABEL_FORMAT],
            )?,
            model_load,
            weights_bytes: int_gauge_vec(
                &r,
                n::MODEL_WEIGHTS_BYTES,
                "Bytes of model weights in memory",
                &m,
            )?,
            rss_bytes: int_gauge(
                &r,
                n::PROCESS_RESIDENT_MEMORY_BYTES,
                "Resident memory of the server process",
            )?,
            batching: super::batching::BatchingMetrics::register(&r)?,
            registry: r,
            last_evictions: 0,
            last_prefix_evictions: HashMap::new(),
            hits_since_start: 0,
            misses_since_start: 0,
        }
        .seeded())
    }

    /// Labelled counters whose label values are all known up front start at 0, so a dashboard
    /// shows 0 rather than "no data" for what has not happened yet.
    fn seeded(self) -> Self {
        for tier in n::CACHE_TIERS {
            self.cache_tier_hits.with_label_values(&[tier]);
        }
        for tier in n::FAILING_CACHE_TIERS {
            self.cache_tier_errors.with_label_values(&[tier]);
        }
        self
    }

    /// The registry, for callers that want to add their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Text exposition (format 0.0.4) of every metric, with process memory read now.
    pub fn render(&self) -> String {
        if let Some(rss) = resident_memory_bytes() {
            self.rss_bytes.set(saturating_i64(rss));
        }
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Resident set size from `/proc/self/status` (Linux); `None` elsewhere.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[path = "record.rs"]
mod record;
use record::saturating_i64;
#[cfg(test)]
use record::time_per_output_token;

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
