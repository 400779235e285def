//! Metrics of decode batching and scheduling: batch sizes, slot occupancy, preemptions. The
//! engine keeps running totals (it has no registry); these turn them into Prometheus series.

use std::collections::HashMap;

use prometheus::Registry;
use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

use super::events::BatchState;
use super::names as n;

pub struct BatchingMetrics {
    batch_size: HistogramVec,
    slots_used: IntGaugeVec,
    usage: GaugeVec,
    preemptions: IntCounterVec,
    /// Last totals each model's engine reported, to turn them into increments.
    last: HashMap<String, ([u64; 8], u64)>,
}

impl BatchingMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = &[n::LABEL_MODEL];
        let batch_size = HistogramVec::new(
            HistogramOpts::new(n::BATCH_SIZE, "Sequences per decode step")
                .buckets(n::BATCH_BUCKETS.to_vec()),
            m,
        )?;
        let slots_used = IntGaugeVec::new(
            Opts::new(n::KV_SLOTS_USED, "Decode slots (KV buffers) in use"),
            m,
        )?;
        let usage = GaugeVec::new(
            Opts::new(
                n::KV_CACHE_USAGE_PERC,
                "Fraction of decode slots in use (0..1)",
            ),
            m,
        )?;
        let preemptions = IntCounterVec::new(
            Opts::new(
                n::PREEMPTIONS_TOTAL,
                "Running sequences paused for a higher-priority request",
            ),
            m,
        )?;
        r.register(Box::new(batch_size.clone()))?;
        r.register(Box::new(slots_used.clone()))?;
        r.register(Box::new(usage.clone()))?;
        r.register(Box::new(preemptions.clone()))?;
        Ok(Self {
            batch_size,
            slots_used,
            usage,
            preemptions,
            last: HashMap::new(),
        })
    }

    /// Creates the model's series at zero.
    pub fn init_series(&self, model: &str) {
        let m = [model];
        self.batch_size.with_label_values(&m);
        self.slots_used.with_label_values(&m);
        self.usage.with_label_values(&m);
        self.preemptions.with_label_values(&m);
    }

    pub fn record(&mut self, model: &str, ev: &BatchState) {
        let m = [model];
        self.slots_used
            .with_label_values(&m)
            .set(i64::try_from(ev.slots_used).unwrap_or(i64::MAX));
        let usage = if ev.slots_total == 0 {
            0.0
        } else {
            ev.slots_used as f64 / ev.slots_total as f64
        };
        self.usage.with_label_values(&m).set(usage);
        let (hist, preempted) = self.last.entry(model.to_owned()).or_default();
        // A smaller total means the engine restarted: everything it reports is new.
        let restarted = ev.preemptions_total < *preempted
            || ev
                .batch_hist
                .iter()
                .zip(hist.iter())
                .any(|(new, old)| new < old);
        if restarted {
            *hist = [0; 8];
            *preempted = 0;
        }
        self.preemptions
            .with_label_values(&m)
            .inc_by(ev.preemptions_total - *preempted);
        *preempted = ev.preemptions_total;
        let h = self.batch_size.with_label_values(&m);
        for (i, (new, old)) in ev.batch_hist.iter().zip(hist.iter_mut()).enumerate() {
            // Each step counts at its bucket's bound, so bucket counts are exact (the sum is
            // an upper bound).
            for _ in *old..*new {
                h.observe(n::BATCH_BUCKETS[i]);
            }
            *old = *new;
        }
    }
}
