//! `GET /health` and `GET /version`. Health reads the engine's shared state (atomics), never
//! messages the model thread, so it answers in milliseconds during a long step.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use std::sync::atomic::Ordering;

use mlx_serve_actors::cache::CacheStats;

use crate::state::AppState;

/// `/health` body.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok`, `loading` or `error`.
    pub status: &'static str,
    /// Served model id.
    pub model: String,
    /// The engine finished loading.
    pub model_loaded: bool,
    /// `cpu`, `metal`, `cuda`, `fake`; null while loading.
    pub backend: Option<String>,
    /// The engine thread is usable.
    pub engine_alive: bool,
    /// A step has run past `server.engine_wedge_timeout_s`.
    pub engine_wedged: bool,
    /// Engine restarts since start.
    pub engine_restarts: u32,
    /// Requests waiting.
    pub queue_depth: usize,
    /// Sequences generating.
    pub running: usize,
    /// Milliseconds since the model thread last finished a step.
    pub since_heartbeat_ms: u64,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Why the engine is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Response-cache statistics (`hits`, `misses`, `total_requests`, `hit_rate`,
    /// `cached_items`, `evictions`, `bytes`, …); absent when the cache is off or busy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheStats>,
    /// p50/p95/p99 of end-to-end latency and time to first token over recent requests
    /// (`[metrics]` window); absent when metrics are off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<mlx_serve_actors::metrics::LatencySummary>,
    /// The engine's prefix-cache counters.
    pub engine_stats: mlx_serve_actors::engine::EngineStats,
}

/// 200 when the engine serves, 503 while loading or after a failure.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let h = state.health();
    let ok = h.loaded && h.alive && !h.wedged;
    let status = match (ok, h.loaded, h.failure.is_some() || h.wedged) {
        (true, _, _) => "ok",
        (false, _, true) => "error",
        (false, false, false) => "loading",
        (false, true, false) => "error",
    };
    let body = Health {
        status,
        model: state.primary_model_id(),
        model_loaded: h.loaded,
        backend: h.info.as_ref().map(|i| i.backend.clone()),
        engine_alive: h.alive && !h.wedged,
        engine_wedged: h.wedged,
        engine_restarts: state.restarts.load(Ordering::Relaxed),
        queue_depth: h.queued,
        running: h.running,
        since_heartbeat_ms: h.since_heartbeat_ms,
        uptime_s: state.started.elapsed().as_secs_f64(),
        error: if h.wedged {
            Some("the engine is wedged: a step exceeded server.engine_wedge_timeout_s".into())
        } else {
            h.failure
        },
        cache: if state.seams.cache.is_some() {
            super::cache::snapshot(&state).await
        } else {
            None
        },
        latency: match &state.seams.metrics {
            Some(m) => m.summary().await,
            None => None,
        },
        engine_stats: h.stats,
    };
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Build facts.
pub async fn version() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "mlx": cfg!(feature = "mlx"),
    }))
}
