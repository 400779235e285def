//! The front's side of the metrics: the [`MetricsSink`] adapter that implements the pipeline's
//! `MetricsSeam` over `Addr<MetricsActor>`, its start-up ([`attach`]), the periodic publication
//! of the engine's gauges ([`publish_engine_state`]), the recorder for requests refused before
//! the pipeline ran ([`middleware`]). The `[metrics]` settings live in `crate::config`.

pub mod middleware;

use std::io;
use std::sync::{Arc, Mutex};

use actix::{Actor, Addr};
use actix_web::web;
use futures_util::future::BoxFuture;
use mlx_serve_actors::cache::CacheReporter;
use mlx_serve_actors::metrics::{
    LatencySummary, MetricsActor, MetricsState, ModelLoaded, ModelResidency, PrefixCacheState,
    QueueState, Render, RequestFinished, Summary,
};
use mlx_serve_actors::model::actor::HealthSnapshot;
use mlx_serve_actors::model::registry::{ModelState, ModelStatus};

use crate::config::Settings;
use crate::pipeline::seams::{MetricsSeam, RequestRecord, Seams};
use crate::state::AppState;

/// `MetricsSeam` over the metrics actor: every call is a message, none blocks.
pub struct MetricsSink {
    addr: Addr<MetricsActor>,
    include_prompt: bool,
    /// The load last announced with `ModelLoaded` (model id, load seconds), to announce each
    /// load (and reload after an engine restart) once.
    announced: Mutex<Option<(String, u64)>>,
}

impl MetricsSink {
    /// A sink sending to `addr`.
    pub fn new(addr: Addr<MetricsActor>, include_prompt: bool) -> Self {
        Self {
            addr,
            include_prompt,
            announced: Mutex::new(None),
        }
    }
}

/// The metrics actor's event for a pipeline record.
pub fn finished_event(r: RequestRecord) -> RequestFinished {
    RequestFinished {
        route: r.route.to_owned(),
        model: r.model,
        status: r.status,
        finish_reason: r.finish_reason.map(str::to_owned),
        cache: r.cache,
        cache_tier: r.cache_tier,
        e2e_s: r.duration_s,
        ttft_s: r.time_to_first_token_s,
        queue_s: r.queue_s,
        prefill_s: r.prefill_s,
        decode_s: r.decode_s,
        prompt_tokens: r.usage.prompt_tokens as u64,
        cached_tokens: r.usage.cached_tokens as u64,
        completion_tokens: r.usage.completion_tokens as u64,
        tool_calls: r.tool_calls,
        error_type: r.error_type.map(str::to_owned),
        error_message: r.error_message,
        request_hash: r.request_hash,
        prompt_text: r.prompt_text,
    }
}

impl MetricsSeam for MetricsSink {
    fn record(&self, record: RequestRecord) {
        self.addr.do_send(finished_event(record));
    }

    fn render(&self) -> BoxFuture<'static, Option<String>> {
        let addr = self.addr.clone();
        Box::pin(async move { addr.send(Render).await.ok() })
    }

    fn summary(&self) -> BoxFuture<'static, Option<LatencySummary>> {
        let addr = self.addr.clone();
        Box::pin(async move { addr.send(Summary).await.ok() })
    }

    fn model_residency(&self, status: &ModelStatus) {
        self.addr.do_send(ModelResidency {
            model: status.id.clone(),
            loaded: matches!(status.state, ModelState::Ready | ModelState::Loading),
            resident_bytes: status.resident_bytes,
            loads_total: status.loads,
            unloads_total: status.unloads,
        });
    }

    fn engine_state(&self, model: &str, health: &HealthSnapshot) {
        self.addr.do_send(QueueState {
            model: model.to_owned(),
            running: health.running as u64,
            waiting: health.queued as u64,
        });
        if !health.loaded {
            return;
        }
        let s = health.stats;
        self.addr.do_send(PrefixCacheState {
            model: model.to_owned(),
            entries: s.prefix_entries,
            bytes: s.prefix_bytes,
            evictions_total: s.prefix_evictions,
        });
        self.addr
            .do_send(mlx_serve_actors::metrics::events::BatchState {
                model: model.to_owned(),
                slots_used: s.slots_used,
                slots_total: s.slots_total,
                preemptions_total: s.preemptions,
                batch_hist: s.batch_hist,
            });
        if let Some(info) = &health.info {
            let key = (model.to_owned(), info.load_seconds.to_bits());
            let Ok(mut announced) = self.announced.lock() else {
                return;
            };
            if announced.as_ref() != Some(&key) {
                *announced = Some(key);
                self.addr.do_send(ModelLoaded {
                    model: model.to_owned(),
                    seconds: info.load_seconds,
                    weight_bytes: info.weight_bytes,
                });
            }
        }
    }

    fn wants_prompts(&self) -> bool {
        self.include_prompt
    }

    fn cache_reporter(&self) -> Option<CacheReporter> {
        Some(CacheReporter {
            state: self.addr.clone().recipient(),
            tier_errors: self.addr.clone().recipient(),
        })
    }
}

/// Start the metrics actor and plug it into `seams` when `[metrics]` is enabled and no metrics
/// seam was given. Must run inside an actix system. Fails when the trace file cannot be opened.
pub fn attach(mut seams: Seams, settings: &Settings) -> io::Result<Seams> {
    if !settings.metrics.enabled || seams.metrics.is_some() {
        return Ok(seams);
    }
    let state = MetricsState::new(settings.metrics.window(), &settings.trace)
        .map_err(|e| io::Error::other(format!("starting the metrics: {e}")))?;
    let addr = MetricsActor::new(state).start();
    seams.metrics = Some(Arc::new(MetricsSink::new(
        addr,
        settings.trace.include_prompt,
    )));
    Ok(seams)
}

/// Publish the engine's gauges now.
pub fn publish_now(state: &AppState) {
    if let Some(m) = &state.seams.metrics {
        for status in state.model_status() {
            if let Some(health) = &status.health {
                m.engine_state(&status.id, health);
            }
            m.model_residency(&status);
        }
    }
}

/// Publish the engine's gauges every `[metrics] publish_interval_ms`, forever.
pub async fn publish_engine_state(state: web::Data<AppState>) {
    if state.seams.metrics.is_none() {
        return;
    }
    let period = state.settings.metrics.publish_interval();
    loop {
        publish_now(&state);
        tokio::time::sleep(period).await;
    }
}
