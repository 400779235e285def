//! `GET /health` and `GET /version`. Health reads the engine's shared state (atomics), never
//! messages the model thread, so it answers in milliseconds during a long step.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use std::sync::atomic::Ordering;

use mlx_serve_actors::cache::CacheStats;
use mlx_serve_actors::model::registry::ModelState;

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
    pub engine_stats: mlx_serve_engine::engine::EngineStats,
    /// Every configured model's state (the fields above describe the default model).
    pub models: Vec<ModelHealth>,
    /// Memory of the resident models and of the process.
    pub memory: Memory,
}

/// One model in `/health`.
#[derive(Debug, Serialize)]
pub struct ModelHealth {
    /// Its id.
    pub id: String,
    /// `unloaded`, `loading`, `ready` or `failed`.
    pub state: ModelState,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Weights plus KV reserve while resident, bytes (what `server.max_loaded_bytes` counts).
    pub resident_bytes: u64,
    /// Weight bytes of the loaded engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_bytes: Option<u64>,
    /// Requests using it now.
    pub active_requests: usize,
    /// Requests waiting in its queue.
    pub queue_depth: usize,
    /// Seconds since its last request ended (resident and idle only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_s: Option<f64>,
    /// Seconds until keep-alive unloads it (resident and idle only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<f64>,
    /// Its keep-alive in seconds; null: for ever.
    pub keep_alive_s: Option<f64>,
    /// Loads since start.
    pub loads: u64,
    /// Unloads since start.
    pub unloads: u64,
}

/// `memory` in `/health`.
#[derive(Debug, Serialize)]
pub struct Memory {
    /// Sum of the models' `resident_bytes`.
    pub models_resident_bytes: u64,
    /// `server.max_loaded_bytes` (0: no bound).
    pub max_loaded_bytes: u64,
    /// Resident set size of the process (Linux).
    pub process_resident_bytes: Option<u64>,
}

/// Per-model rows of `/health` (also what `mlx-serve ps` prints).
pub fn model_rows(state: &AppState) -> Vec<ModelHealth> {
    state
        .model_status()
        .into_iter()
        .map(|s| ModelHealth {
            queue_depth: s.health.as_ref().map_or(0, |h| h.queued),
            id: s.id,
            state: s.state,
            error: s.error,
            resident_bytes: s.resident_bytes,
            weight_bytes: s.weight_bytes,
            active_requests: s.active,
            idle_s: s.idle_s,
            expires_in_s: s.expires_in_s,
            keep_alive_s: s.keep_alive_s,
            loads: s.loads,
            unloads: s.unloads,
        })
        .collect()
}

/// 200 when the default model serves or can be loaded on demand, 503 while it loads (at
/// start-up) or after it failed. Another model's failure shows in `models` but keeps 200: the
/// server still answers everything else.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let h = state.health();
    let models = model_rows(&state);
    let primary_state = models.first().map(|m| m.state);
    let ok = (h.loaded && h.alive && !h.wedged) || primary_state == Some(ModelState::Unloaded);
    let status = match (ok, h.loaded, h.failure.is_some() || h.wedged) {
        (true, _, _) => "ok",
        (false, _, true) => "error",
        (false, false, false) => "loading",
        (false, true, false) => "error",
    };
    let memory = Memory {
        models_resident_bytes: models.iter().map(|m| m.resident_bytes).sum(),
        max_loaded_bytes: state.settings.server.max_loaded_bytes,
        process_resident_bytes: mlx_serve_actors::metrics::resident_memory_bytes(),
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
        models,
        memory,
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
