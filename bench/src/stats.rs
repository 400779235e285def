//! Latency/throughput summaries. Pure math, so the numbers every report prints are pinned by tests.

use serde::Serialize;

/// min/avg/percentiles/max over a set of samples (milliseconds, tokens/s, ... — unit-agnostic).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    pub min: f64,
    pub avg: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no samples: an empty set has no meaningful percentile, and printing 0 would lie.
    /// NaN samples are dropped so one broken measurement cannot poison the ordering.
    pub fn from_samples(samples: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let sum: f64 = sorted.iter().sum();
        Some(Self {
            count: sorted.len(),
            min: sorted[0],
            avg: sum / sorted.len() as f64,
            p50: percentile_sorted(&sorted, 50.0),
            p90: percentile_sorted(&sorted, 90.0),
            p95: percentile_sorted(&sorted, 95.0),
            p99: percentile_sorted(&sorted, 99.0),
            max: sorted[sorted.len() - 1],
        })
    }
}

/// Percentile with linear interpolation between closest ranks (numpy's default), so small sample
/// sets — a suite has a handful of requests — give a value between observations rather than
/// always snapping to the maximum.
pub fn percentile_sorted(sorted: &[f64], pct: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = (pct.clamp(0.0, 100.0) / 100.0) * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            let frac = rank - lo as f64;
            sorted[lo] + (sorted[hi] - sorted[lo]) * frac
        }
    }
}

/// `a / b`, or `None` when `b` is not a positive number (a ratio against zero is no speedup).
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_samples_have_no_summary() {
        assert_eq!(Summary::from_samples(&[]), None);
        assert_eq!(Summary::from_samples(&[f64::NAN]), None);
    }

    #[test]
    fn single_sample_is_every_percentile() {
        let s = Summary::from_samples(&[7.5]).unwrap();
        assert_eq!(
            (s.min, s.p50, s.p95, s.p99, s.max, s.avg),
            (7.5, 7.5, 7.5, 7.5, 7.5, 7.5)
        );
        assert_eq!(s.count, 1);
    }

    #[test]
    fn percentiles_interpolate_between_ranks_regardless_of_input_order() {
        let s = Summary::from_samples(&[4.0, 1.0, 3.0, 2.0, 5.0]).unwrap();
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 5.0);
        assert_eq!(s.avg, 3.0);
        assert_eq!(s.p50, 3.0);
        // rank 0.95 * 4 = 3.8 -> 4 + 0.8 * (5 - 4)
        assert!((s.p95 - 4.8).abs() < 1e-12);
        assert!((s.p99 - 4.96).abs() < 1e-12);
    }

    #[test]
    fn p50_of_even_count_is_midpoint() {
        let s = Summary::from_samples(&[10.0, 20.0]).unwrap();
        assert_eq!(s.p50, 15.0);
    }

    #[test]
    fn hundred_samples_p95_and_p99() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::from_samples(&v).unwrap();
        assert!((s.p90 - 90.1).abs() < 1e-9);
        assert!((s.p95 - 95.05).abs() < 1e-9);
        assert!((s.p99 - 99.01).abs() < 1e-9);
        assert_eq!(s.avg, 50.5);
    }

    #[test]
    fn nan_samples_are_ignored() {
        let s = Summary::from_samples(&[f64::NAN, 2.0, 4.0]).unwrap();
        assert_eq!(s.count, 2);
        assert_eq!(s.p50, 3.0);
    }

    #[test]
    fn ratio_refuses_zero_denominator() {
        assert_eq!(ratio(10.0, 2.0), Some(5.0));
        assert_eq!(ratio(10.0, 0.0), None);
        assert_eq!(ratio(f64::INFINITY, 1.0), None);
    }
}
