//! The `MetricsActor`: owns the Prometheus registry, the recent-latency window behind `/health`
//! and `/v1/stats`, and the optional request trace. The pipeline sends it events
//! ([`RequestFinished`], [`QueueState`], [`CacheState`], [`CacheTierError`],
//! [`PrefixCacheState`], [`ModelLoaded`]); `GET /metrics` asks it
//! to [`Render`]. The logic lives in plain structs ([`Metrics`], [`LatencyWindow`],
//! [`TraceWriter`]) so it is tested without a running actor system.
//!
//! [`analyze`] reads a trace back for `mlx-serve analyze`.

pub mod analyze;
mod batching;
pub mod events;
pub mod names;
mod registry;
pub mod trace;
pub mod window;

use std::time::Instant;

use actix::{Actor, Context, Handler, Message, MessageResult};

pub use analyze::{
    analyze, analyze_files, analyze_reader, render_text, AnalysisReport, AnalyzeError,
    AnalyzeOptions,
};
pub use events::{
    CacheOutcome, CacheState, CacheTierError, ModelLoaded, PrefixCacheState, QueueState,
    RequestFinished, ToolCallOutcome,
};
pub use registry::{Metrics, MetricsError};
pub use trace::{TraceError, TraceRecord, TraceSettings, TraceWriter};
pub use window::{LatencySummary, LatencyWindow, Percentiles, WindowSettings};

/// Everything the metrics actor holds; events go through here so tests need no actor system.
#[derive(Debug)]
pub struct MetricsState {
    /// The registry.
    pub metrics: Metrics,
    /// Recent latencies.
    pub window: LatencyWindow,
    /// Trace log, when enabled.
    pub trace: Option<TraceWriter>,
}

impl MetricsState {
    /// Builds the registry and opens the trace file (if configured).
    pub fn new(window: WindowSettings, trace: &TraceSettings) -> Result<Self, MetricsStartError> {
        Ok(MetricsState {
            metrics: Metrics::new()?,
            window: LatencyWindow::new(window),
            trace: TraceWriter::open(trace)?,
        })
    }

    /// Records a finished request everywhere.
    pub fn request_finished(&mut self, ev: &RequestFinished, now: Instant) {
        self.metrics.record_request(ev);
        self.window.record(ev, now);
        if let Some(trace) = &mut self.trace {
            // The trace is a debugging aid: a full disk must not fail requests.
            if let Err(e) = trace.write_event(ev) {
                tracing::warn!(error = %e, "writing the request trace failed");
            }
        }
    }
}

/// The metrics actor could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsStartError {
    /// Registry construction failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The trace file could not be opened.
    #[error(transparent)]
    Trace(#[from] TraceError),
}

/// Thin actor over [`MetricsState`].
#[derive(Debug)]
pub struct MetricsActor {
    state: MetricsState,
}

impl MetricsActor {
    /// Wraps a state built with [`MetricsState::new`].
    pub fn new(state: MetricsState) -> Self {
        MetricsActor { state }
    }
}

impl Actor for MetricsActor {
    type Context = Context<Self>;
}

/// Asks for the Prometheus text exposition (`GET /metrics`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "String")]
pub struct Render;

/// Asks for the recent-latency summary (`/health`, `/v1/stats`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "LatencySummary")]
pub struct Summary;

impl Handler<RequestFinished> for MetricsActor {
    type Result = ();
    fn handle(&mut self, ev: RequestFinished, _: &mut Context<Self>) {
        self.state.request_finished(&ev, Instant::now());
    }
}

impl Handler<QueueState> for MetricsActor {
    type Result = ();
    fn handle(&mut self, ev: QueueState, _: &mut Context<Self>) {
        self.state.metrics.record_queue(&ev);
    }
}

impl Handler<CacheState> for MetricsActor {
    type Result = ();
    fn handle(&mut self, ev: CacheState, _: &mut Context<Self>) {
        self.state.metrics.record_cache(&ev);
    }
}

impl Handler<CacheTierError> for MetricsActor {
    type Result = ();
    fn handle(&mut self, ev: CacheTierError, _: &mut Context<Self>) {
        self.state.metrics.record_cache_tier_error(&ev);
    }
}

impl Handler<PrefixCacheState> for MetricsActor {
    type Result = ();
    fn handle(&mut self, ev: PrefixCacheState, _: &mut Context<Self>) {
        self.state.metrics.record_prefix_cache(&ev);
    }
}

impl Handler<events::BatchState> for MetricsActor {
    type Result = ();
    fn handle(&mut self, ev: events::BatchState, _: &mut Context<Self>) {
        self.state.metrics.record_batch(&ev);
    }
}

impl Handler<ModelLoaded> for MetricsActor {
    type Result = ();
    fn handle(&mut self, ev: ModelLoaded, _: &mut Context<Self>) {
        self.state.metrics.record_model_loaded(&ev);
    }
}

impl Handler<Render> for MetricsActor {
    type Result = String;
    fn handle(&mut self, _: Render, _: &mut Context<Self>) -> String {
        self.state.metrics.render()
    }
}

impl Handler<Summary> for MetricsActor {
    type Result = MessageResult<Summary>;
    fn handle(&mut self, _: Summary, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.window.summary(Instant::now()))
    }
}

#[cfg(test)]
#[path = "checks.rs"]
mod checks;
