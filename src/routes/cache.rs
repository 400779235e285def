//! `GET /v1/cache/stats` and `DELETE /v1/cache`: the response cache's counters and its reset.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use mlx_serve_actors::cache::CacheStats;
use serde_json::json;

use super::extract::{key_matches, presented_keys, Authorized};
use crate::error::ApiError;
use crate::state::AppState;

/// Longest `/health` and the stats route wait for the cache actor's snapshot.
const STATS_WAIT: Duration = Duration::from_millis(500);

/// The cache's statistics; `enabled: false` (all zero) when no cache is configured, `None`
/// when it did not answer in time.
pub async fn snapshot(state: &AppState) -> Option<CacheStats> {
    match &state.seams.cache {
        None => Some(CacheStats::default()),
        Some(cache) => tokio::time::timeout(STATS_WAIT, cache.stats())
            .await
            .ok()
            .flatten(),
    }
}

/// `GET /v1/cache/stats`.
pub async fn stats(
    _auth: Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    match snapshot(&state).await {
        Some(stats) => Ok(HttpResponse::Ok().json(stats)),
        None => Err(ApiError::unavailable("the response cache did not answer")),
    }
}

/// Operator actions need an admin key when `server.admin_keys` is set, else any valid API key
/// (none when no keys are configured): 401 without a valid key, 403 with a non-admin one.
pub fn require_admin(req: &HttpRequest, state: &AppState, what: &str) -> Result<(), ApiError> {
    let server = &state.settings.server;
    let presented = presented_keys(req.headers());
    let any_of = |keys: &[String]| presented.iter().any(|k| key_matches(k, keys));
    let admin = any_of(&server.admin_keys);
    if !(admin || server.api_keys.is_empty() || any_of(&server.api_keys)) {
        return Err(ApiError::invalid_api_key());
    }
    if !server.admin_keys.is_empty() && !admin {
        return Err(ApiError::forbidden(format!(
            "{what} needs an admin key (server.admin_keys)."
        )));
    }
    Ok(())
}

/// `DELETE /v1/cache`: empties memory, disk and this deployment's Redis namespace. Needs an
/// admin key when `server.admin_keys` is set, else any valid API key (none when no keys are
/// configured). A request that is authenticated but not as an admin gets 403; one without a
/// valid key at all gets 401.
pub async fn clear(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state, "Clearing the response cache")?;
    let removed = match &state.seams.cache {
        None => 0,
        Some(cache) => cache
            .clear()
            .await
            .ok_or_else(|| ApiError::unavailable("the response cache did not answer"))?,
    };
    tracing::info!(removed, "response cache cleared");
    Ok(HttpResponse::Ok()
        .json(json!({"object": "cache.cleared", "cleared": true, "removed": removed})))
}
