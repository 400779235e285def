//! How each pipeline event moves the registry's metrics.

use prometheus::HistogramVec;

use super::Metrics;
use crate::metrics::events::{
    CacheOutcome, CacheState, CacheTierError, ModelLoaded, PrefixCacheState, QueueState,
    RequestFinished,
};

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

impl Metrics {
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
                if let Some(tier) = &ev.cache_tier {
                    self.cache_tier_hits
                        .with_label_values(&[clean_label(tier).as_str()])
                        .inc();
                }
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
        self.cache_evictions
            .inc_by(advance(&mut self.last_evictions, ev.evictions_total));
    }

    /// Counts a failed cache-tier operation.
    pub fn record_cache_tier_error(&mut self, ev: &CacheTierError) {
        self.cache_tier_errors
            .with_label_values(&[clean_label(&ev.tier).as_str()])
            .inc();
    }

    /// Sets the prefix-cache gauges and advances its evictions counter.
    pub fn record_prefix_cache(&mut self, ev: &PrefixCacheState) {
        let model = clean_label(&ev.model);
        let m = [model.as_str()];
        self.prefix_entries
            .with_label_values(&m)
            .set(saturating_i64(ev.entries));
        self.prefix_bytes
            .with_label_values(&m)
            .set(saturating_i64(ev.bytes));
        let last = self.last_prefix_evictions.entry(model.clone()).or_default();
        self.prefix_evictions
            .with_label_values(&m)
            .inc_by(advance(last, ev.evictions_total));
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
            &self.prefix_evictions,
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
        self.prefix_entries.with_label_values(&m);
        self.prefix_bytes.with_label_values(&m);
        self.running.with_label_values(&m);
        self.waiting.with_label_values(&m);
        self.batching.init_series(model);
    }

    /// Batch and slot gauges, preemptions and batch sizes from the engine's totals.
    pub fn record_batch(&mut self, ev: &crate::metrics::events::BatchState) {
        let model = clean_label(&ev.model);
        self.batching.record(&model, ev);
    }
}

/// Turns a running total reported by another component into an increment. A smaller total means
/// that component restarted its count: everything it reports is new.
fn advance(last: &mut u64, total: u64) -> u64 {
    let delta = if total >= *last { total - *last } else { total };
    *last = total;
    delta
}

fn observe(h: &HistogramVec, labels: &[&str], value: Option<f64>) {
    if let Some(v) = value.filter(|v| v.is_finite() && *v >= 0.0) {
        h.with_label_values(labels).observe(v);
    }
}

pub(super) fn saturating_i64(v: u64) -> i64 {
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
