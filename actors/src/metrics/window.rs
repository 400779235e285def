//! Latency percentiles over recent requests, for `/health` and `/v1/stats` readers who have no
//! Prometheus: the last `max_requests` requests that finished within the last `max_age`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::events::{CacheOutcome, RequestFinished};

/// How much history the summary covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowSettings {
    /// Keep at most this many recent requests.
    pub max_requests: usize,
    /// Forget requests older than this many seconds.
    pub max_age_secs: u64,
}

impl Default for WindowSettings {
    fn default() -> Self {
        WindowSettings {
            max_requests: 1000,
            max_age_secs: 300,
        }
    }
}

/// p50/p95/p99 (nearest rank) of one measurement, seconds. All `None` when nothing was measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Arithmetic mean.
    pub mean: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
}

impl Percentiles {
    /// Summarizes `values` (any order; non-finite values are ignored).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_by(f64::total_cmp);
        Percentiles {
            p50: Some(nearest_rank(&v, 0.50)),
            p95: Some(nearest_rank(&v, 0.95)),
            p99: Some(nearest_rank(&v, 0.99)),
            mean: Some(v.iter().sum::<f64>() / v.len() as f64),
            max: v.last().copied(),
        }
    }
}

/// Nearest-rank percentile of sorted, non-empty `v`.
pub(crate) fn nearest_rank(v: &[f64], q: f64) -> f64 {
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// What `/health` and `/v1/stats` show about recent traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Requests finished since the server started.
    pub requests_total: u64,
    /// Failed requests since the server started.
    pub errors_total: u64,
    /// Requests in the window below.
    pub window_requests: usize,
    /// Seconds between the oldest request in the window and now.
    pub window_seconds: f64,
    /// End-to-end latency in the window.
    pub e2e_seconds: Percentiles,
    /// Time to first token in the window.
    pub ttft_seconds: Percentiles,
    /// Generated tokens in the window over the window's length (server throughput).
    pub throughput_tokens_per_second: Option<f64>,
    /// Generated tokens over time spent generating them, engine requests only (decode speed).
    pub generation_tokens_per_second: Option<f64>,
    /// Response-cache hits / (hits + misses) in the window.
    pub cache_hit_rate: Option<f64>,
    /// Requests in the window that failed.
    pub window_errors: usize,
}

#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    e2e_s: f64,
    ttft_s: Option<f64>,
    generation_s: Option<f64>,
    completion_tokens: u64,
    cache: CacheOutcome,
    ok: bool,
}

/// The recent requests and the all-time counts behind a [`LatencySummary`].
#[derive(Debug, Clone)]
pub struct LatencyWindow {
    settings: WindowSettings,
    samples: VecDeque<Sample>,
    requests_total: u64,
    errors_total: u64,
}

impl LatencyWindow {
    /// An empty window.
    pub fn new(settings: WindowSettings) -> Self {
        LatencyWindow {
            settings,
            samples: VecDeque::new(),
            requests_total: 0,
            errors_total: 0,
        }
    }

    /// Adds a request that finished at `now`.
    pub fn record(&mut self, ev: &RequestFinished, now: Instant) {
        self.requests_total += 1;
        if !ev.is_success() {
            self.errors_total += 1;
        }
        // Time spent producing tokens: decode time if known, else everything after the first token.
        let generation_s = ev
            .decode_s
            .or_else(|| ev.ttft_s.map(|t| ev.e2e_s - t))
            .filter(|s| *s > 0.0);
        self.samples.push_back(Sample {
            at: now,
            e2e_s: ev.e2e_s,
            ttft_s: ev.ttft_s,
            generation_s,
            completion_tokens: ev.completion_tokens,
            cache: ev.cache,
            ok: ev.is_success(),
        });
        self.evict(now);
    }

    fn evict(&mut self, now: Instant) {
        let max_age = Duration::from_secs(self.settings.max_age_secs);
        while self.samples.len() > self.settings.max_requests.max(1) {
            self.samples.pop_front();
        }
        while self
            .samples
            .front()
            .is_some_and(|s| now.saturating_duration_since(s.at) > max_age)
        {
            self.samples.pop_front();
        }
    }

    /// Summary as of `now`.
    pub fn summary(&mut self, now: Instant) -> LatencySummary {
        self.evict(now);
        let s = &self.samples;
        let e2e: Vec<f64> = s.iter().map(|x| x.e2e_s).collect();
        let ttft: Vec<f64> = s.iter().filter_map(|x| x.ttft_s).collect();
        let window_seconds = s
            .front()
            .map_or(0.0, |x| now.saturating_duration_since(x.at).as_secs_f64());
        let engine = || s.iter().filter(|x| x.cache != CacheOutcome::Hit);
        let tokens_in_window: u64 = engine().map(|x| x.completion_tokens).sum();
        let (gen_tokens, gen_secs) = engine()
            .filter_map(|x| x.generation_s.map(|g| (x.completion_tokens, g)))
            .fold((0u64, 0.0f64), |(t, g), (xt, xg)| (t + xt, g + xg));
        let hits = s.iter().filter(|x| x.cache == CacheOutcome::Hit).count();
        let misses = s.iter().filter(|x| x.cache == CacheOutcome::Miss).count();
        LatencySummary {
            requests_total: self.requests_total,
            errors_total: self.errors_total,
            window_requests: s.len(),
            window_seconds,
            e2e_seconds: Percentiles::of(&e2e),
            ttft_seconds: Percentiles::of(&ttft),
            throughput_tokens_per_second: (window_seconds > 0.0 && !s.is_empty())
                .then(|| tokens_in_window as f64 / window_seconds),
            generation_tokens_per_second: (gen_secs > 0.0).then(|| gen_tokens as f64 / gen_secs),
            cache_hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
            window_errors: s.iter().filter(|x| !x.ok).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(e2e: f64, ttft: Option<f64>, cache: CacheOutcome, tokens: u64) -> RequestFinished {
        RequestFinished {
            route: "/v1/chat/completions".into(),
            model: "m".into(),
            status: 200,
            finish_reason: Some("stop".into()),
            cache,
            e2e_s: e2e,
            ttft_s: ttft,
            completion_tokens: tokens,
            ..Default::default()
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!(p.p50, Some(50.0));
        assert_eq!(p.p95, Some(95.0));
        assert_eq!(p.p99, Some(99.0));
        assert_eq!(p.max, Some(100.0));
        assert_eq!(Percentiles::of(&[3.0]).p99, Some(3.0));
        assert_eq!(Percentiles::of(&[]).p50, None);
    }

    #[test]
    fn window_keeps_only_the_last_n_requests() {
        let mut w = LatencyWindow::new(WindowSettings {
            max_requests: 3,
            max_age_secs: 3600,
        });
        let t0 = Instant::now();
        for e2e in [100.0, 1.0, 2.0, 3.0] {
            w.record(&req(e2e, None, CacheOutcome::Miss, 1), t0);
        }
        let s = w.summary(t0);
        assert_eq!(s.window_requests, 3);
        assert_eq!(s.requests_total, 4);
        assert_eq!(s.e2e_seconds.max, Some(3.0));
        assert_eq!(s.e2e_seconds.p50, Some(2.0));
    }

    #[test]
    fn window_forgets_requests_older_than_max_age() {
        let mut w = LatencyWindow::new(WindowSettings {
            max_requests: 100,
            max_age_secs: 60,
        });
        let t0 = Instant::now();
        w.record(&req(9.0, None, CacheOutcome::Miss, 1), t0);
        w.record(
            &req(1.0, None, CacheOutcome::Miss, 1),
            t0 + Duration::from_secs(50),
        );
        let s = w.summary(t0 + Duration::from_secs(70));
        assert_eq!(s.window_requests, 1);
        assert_eq!(s.e2e_seconds.max, Some(1.0));
        assert!((s.window_seconds - 20.0).abs() < 1e-9);
        assert_eq!(s.requests_total, 2);
    }

    #[test]
    fn summary_reports_hit_rate_and_decode_speed_from_engine_requests_only() {
        let mut w = LatencyWindow::new(WindowSettings::default());
        let t0 = Instant::now();
        // 11 tokens, 1 s to first token, 2 s more: 5.5 tok/s of generation.
        w.record(&req(3.0, Some(1.0), CacheOutcome::Miss, 11), t0);
        // A cache hit replays 50 tokens in 1 ms: must not inflate decode speed.
        w.record(&req(0.001, Some(0.0005), CacheOutcome::Hit, 50), t0);
        w.record(&req(0.001, Some(0.0005), CacheOutcome::Hit, 50), t0);
        w.record(&req(1.0, None, CacheOutcome::Bypass, 0), t0);
        let s = w.summary(t0 + Duration::from_secs(10));
        assert_eq!(s.cache_hit_rate, Some(2.0 / 3.0));
        assert_eq!(s.generation_tokens_per_second, Some(5.5));
        assert_eq!(s.throughput_tokens_per_second, Some(1.1));
        assert_eq!(s.ttft_seconds.p99, Some(1.0));
    }

    #[test]
    fn failed_requests_count_as_errors() {
        let mut w = LatencyWindow::new(WindowSettings::default());
        let t0 = Instant::now();
        let mut bad = req(0.01, None, CacheOutcome::Uncacheable, 0);
        bad.status = 400;
        bad.error_type = Some("invalid_request_error".into());
        w.record(&bad, t0);
        w.record(&req(0.5, None, CacheOutcome::Miss, 3), t0);
        let s = w.summary(t0);
        assert_eq!((s.errors_total, s.window_errors), (1, 1));
        assert_eq!(s.throughput_tokens_per_second, None);
    }
}
