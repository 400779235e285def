//! `GET /metrics` (Prometheus text exposition) and `GET /v1/stats` (recent-latency percentiles
//! plus the engine's queue and prefix-cache counters), both answered by the metrics actor.

use actix_web::{web, HttpResponse};
use mlx_serve_actors::metrics::LatencySummary;
use mlx_serve_engine::engine::EngineStats;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// Content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn disabled(path: &str) -> ApiError {
    ApiError::not_found("GET", path)
}

/// `GET /metrics`.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(m) = &state.seams.metrics else {
        return Err(disabled("/metrics"));
    };
    // Gauges as of this scrape, not of the last periodic publication.
    crate::metrics::publish_now(&state);
    let text = m
        .render()
        .await
        .ok_or_else(|| ApiError::internal("the metrics actor is not running"))?;
    Ok(HttpResponse::Ok().content_type(PROMETHEUS_TEXT).body(text))
}

/// `/v1/stats` body.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Served model id.
    pub model: String,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Requests waiting for the engine.
    pub queue_depth: usize,
    /// Sequences generating.
    pub running: usize,
    /// Recent latency percentiles and all-time counts.
    pub latency: LatencySummary,
    /// The engine's prefix-cache counters.
    pub engine: EngineStats,
}

/// `GET /v1/stats`.
pub async fn stats(
    _auth: super::extract::Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(m) = &state.seams.metrics else {
        return Err(disabled("/v1/stats"));
    };
    let latency = m
        .summary()
        .await
        .ok_or_else(|| ApiError::internal("the metrics actor is not running"))?;
    let h = state.health();
    Ok(HttpResponse::Ok().json(Stats {
        model: state.primary_model_id(),
        uptime_s: state.started.elapsed().as_secs_f64(),
        queue_depth: h.queued,
        running: h.running,
        latency,
        engine: h.stats,
    }))
}
