//! The Prometheus registry and how each event moves it.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::events::{CacheOutcome, CacheState, ModelLoaded, QueueState, RequestFinished};
use super::names as n;

/// Failure to build the registry (a bug: names or labels clash).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The prometheus crate refused a metric.
    #[error("metrics registry: {0}")]
    Prometheus(#[from] prometheus::Error),
}

/// Finish reasons kept as label values; anything else is folded into `other` so a misbehaving
/// caller cannot blow up cardinality.
const FINISH_REASONS: &[&str] = &[
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "function_call",
    "abort",
    "error",
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
];

/// Label values from callers are free text; keep them short and in a safe alphabet.
fn clean_label(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unknown".to_string()
    } else {
        cleaned
    }
}

fn finish_reason_label(reason: &str) -> &str {
    FINISH_REASONS
        .iter()
        .find(|r| **r == reason)
        .copied()
        .unwrap_or("other")
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
    prefix_queries: IntCounterVec,
    prefix_hits: IntCounterVec,
    prefix_queried_tokens: IntCounterVec,
    prefix_tokens_saved: IntCounterVec,
    tool_parsed: IntCounterVec,
    tool_failed: IntCounterVec,
    model_load: GaugeVec,
    weights_bytes: IntGaugeVec,
    rss_bytes: IntGauge,
    /// Last `evictions_total` the cache reported, to turn its running total into increments.
    last_evictions: u64,
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
        Ok(Metrics {
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
            registry: r,
            last_evictions: 0,
            hits_since_start: 0,
            misses_since_start: 0,
        })
    }

    /// The registry, for callers that want to add their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one finished request in every metric it touches.
    pub fn record_request(&mut self, ev: &RequestFinished) {
        let model = clean_label(&ev.model);
        let model = model.as_str();
        let cache = ev.cache.as_str();
        let status = ev.status.to_string();
        self.requests
            .with_label_values(&[model, &clean_label(&ev.route), &status])
            .inc();
        if ev.is_success() {
            if let Some(reason) = &ev.finish_reason {
                self.success
                    .with_label_values(&[model, finish_reason_label(reason)])
                    .inc();
            }
        }
        if let Some(err) = &ev.error_type {
            self.errors
                .with_label_values(&[model, &clean_label(err)])
                .inc();
        }
        observe(&self.e2e, &[model, cache], Some(ev.e2e_s));
        observe(&self.ttft, &[model, cache], ev.ttft_s);

        match ev.cache {
            CacheOutcome::Hit => {
                self.cache_hits.with_label_values(&[model]).inc();
                self.hits_since_start += 1;
            }
            CacheOutcome::Miss => {
                self.cache_misses.with_label_values(&[model]).inc();
                self.misses_since_start += 1;
            }
            CacheOutcome::Bypass | CacheOutcome::Uncacheable => {
                self.cache_skipped.with_label_values(&[model, cache]).inc();
            }
        }
        let lookups = self.hits_since_start + self.misses_since_start;
        if lookups > 0 {
            self.cache_hit_ratio
                .set(self.hits_since_start as f64 / lookups as f64);
        }

        // A response-cache hit replays stored text: no engine work to count below.
        let engine_ran =
            ev.cache != CacheOutcome::Hit && (ev.prompt_tokens > 0 || ev.completion_tokens > 0);
        if engine_ran {
            self.record_engine_work(model, ev);
        }

        for call in &ev.tool_calls {
            let labels = [model, &clean_label(&call.format)];
            if call.ok {
                self.tool_parsed.with_label_values(&labels).inc();
            } else {
                self.tool_failed.with_label_values(&labels).inc();
            }
        }
    }

    fn record_engine_work(&mut self, model: &str, ev: &RequestFinished) {
        let m = [model];
        self.prompt_tokens
            .with_label_values(&m)
            .inc_by(ev.prompt_tokens);
        self.generation_tokens
            .with_label_values(&m)
            .inc_by(ev.completion_tokens);
        self.request_prompt_tokens
            .with_label_values(&m)
            .observe(ev.prompt_tokens as f64);
        self.request_generation_tokens
            .with_label_values(&m)
            .observe(ev.completion_tokens as f64);
        observe(&self.queue, &m, ev.queue_s);
        observe(&self.prefill, &m, ev.prefill_s);
        observe(&self.decode, &m, ev.decode_s);
        observe(&self.tpot, &m, time_per_output_token(ev));

        self.prefix_queries.with_label_values(&m).inc();
        self.prefix_queried_tokens
            .with_label_values(&m)
            .inc_by(ev.prompt_tokens);
        if ev.cached_tokens > 0 {
            self.prefix_hits.with_label_values(&m).inc();
            self.prefix_tokens_saved
                .with_label_values(&m)
                .inc_by(ev.cached_tokens.min(ev.prompt_tokens));
        }
    }

    /// Sets the scheduler gauges.
    pub fn record_queue(&mut self, ev: &QueueState) {
        let model = clean_label(&ev.model);
        self.running
            .with_label_values(&[model.as_str()])
            .set(saturating_i64(ev.running));
        self.waiting
            .with_label_values(&[model.as_str()])
            .set(saturating_i64(ev.waiting));
    }

    /// Sets the response-cache gauges and advances the evictions counter.
    pub fn record_cache(&mut self, ev: &CacheState) {
        self.cache_entries.set(saturating_i64(ev.entries));
        self.cache_bytes.set(saturating_i64(ev.bytes));
        // A smaller total means the cache restarted its count: everything it reports is new.
        let delta = if ev.evictions_total >= self.last_evictions {
            ev.evictions_total - self.last_evictions
        } else {
            ev.evictions_total
        };
        self.cache_evictions.inc_by(delta);
        self.last_evictions = ev.evictions_total;
    }

    /// Records a model load.
    pub fn record_model_loaded(&mut self, ev: &ModelLoaded) {
        let model = clean_label(&ev.model);
        self.model_load
            .with_label_values(&[model.as_str()])
            .set(ev.seconds);
        self.weights_bytes
            .with_label_values(&[model.as_str()])
            .set(saturating_i64(ev.weight_bytes));
        self.init_series(model.as_str());
    }

    /// Creates the model's series at zero so dashboards show 0, not "No data", and `rate()`
    /// sees the first increment.
    fn init_series(&self, model: &str) {
        let m = [model];
        for c in [
            &self.prompt_tokens,
            &self.generation_tokens,
            &self.cache_hits,
            &self.cache_misses,
            &self.prefix_queries,
            &self.prefix_hits,
            &self.prefix_queried_tokens,
            &self.prefix_tokens_saved,
        ] {
            c.with_label_values(&m);
        }
        for h in [
            &self.tpot,
            &self.queue,
            &self.prefill,
            &self.decode,
            &self.request_prompt_tokens,
            &self.request_generation_tokens,
        ] {
            h.with_label_values(&m);
        }
        for outcome in [CacheOutcome::Hit, CacheOutcome::Miss] {
            self.e2e.with_label_values(&[model, outcome.as_str()]);
            self.ttft.with_label_values(&[model, outcome.as_str()]);
        }
        for reason in [CacheOutcome::Bypass, CacheOutcome::Uncacheable] {
            self.cache_skipped
                .with_label_values(&[model, reason.as_str()]);
        }
        self.running.with_label_values(&m);
        self.waiting.with_label_values(&m);
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

fn observe(h: &HistogramVec, labels: &[&str], value: Option<f64>) {
    if let Some(v) = value.filter(|v| v.is_finite() && *v >= 0.0) {
        h.with_label_values(labels).observe(v);
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// vLLM's definition: generation time after the first token over the tokens after the first.
pub(crate) fn time_per_output_token(ev: &RequestFinished) -> Option<f64> {
    if ev.completion_tokens < 2 {
        return None;
    }
    let after_first = match (ev.ttft_s, ev.decode_s) {
        (Some(ttft), _) => ev.e2e_s - ttft,
        (None, Some(decode)) => decode,
        (None, None) => return None,
    };
    Some(after_first / (ev.completion_tokens - 1) as f64).filter(|v| *v >= 0.0)
}

/// Resident set size from `/proc/self/status` (Linux); `None` elsewhere.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
