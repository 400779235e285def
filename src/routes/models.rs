//! `GET /v1/models`, `GET /v1/models/{id}`: answered from shared state, never a model thread;
//! `POST /v1/models/{id}/load` and `/unload` for operators.

use actix_web::{web, HttpRequest, HttpResponse};
use mlx_serve_actors::model::registry::{ModelState, ModelStatus};
use serde_json::json;

use super::extract::Authorized;
use crate::config::ModelEntry;
use crate::error::ApiError;
use crate::openai::models::{ModelList, ModelObject};
use crate::state::AppState;

fn object(state: &AppState, id: String, status: Option<&ModelStatus>) -> ModelObject {
    let model_state = status.map(|s| s.state).unwrap_or(ModelState::Unloaded);
    ModelObject {
        loaded: matches!(model_state, ModelState::Ready | ModelState::Loading),
        state: model_state,
        ..ModelObject::new(id, state.created)
    }
}

fn status_of<'a>(all: &'a [ModelStatus], entry: &ModelEntry) -> Option<&'a ModelStatus> {
    all.iter().find(|s| s.id == entry.id)
}

/// Every configured model (with `loaded`), then each one's configured aliases.
pub async fn list(_auth: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let all = state.model_status();
    let mut data: Vec<ModelObject> = Vec::new();
    for entry in &state.models {
        let status = status_of(&all, entry);
        let mut o = object(&state, entry.id.clone(), status);
        o.aliases = state.alias_patterns(entry);
        data.push(o);
    }
    for entry in &state.models {
        let status = status_of(&all, entry);
        for alias in &entry.settings.aliases {
            if !data.iter().any(|o| &o.id == alias) {
                data.push(object(&state, alias.clone(), status));
            }
        }
    }
    HttpResponse::Ok().json(ModelList {
        object: "list",
        data,
    })
}

/// One model, or 404 `model_not_found` listing the served ids.
pub async fn get(
    _auth: Authorized,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let resolved = state.resolve_model(&id)?;
    let all = state.model_status();
    let status = status_of(&all, &resolved.entry);
    Ok(HttpResponse::Ok().json(object(&state, resolved.requested, status)))
}

/// `POST /v1/models/{id}/load`: start loading now (idle models may be unloaded for room).
pub async fn load(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    super::cache::require_admin(&req, &state, "Loading a model")?;
    let entry = state.resolve_model(&id)?.entry;
    state.check_pulled(&entry)?;
    let started = state
        .registry
        .load(&entry.id)
        .map_err(|e| state.acquire_error(e))?;
    Ok(HttpResponse::Ok().json(json!({
        "object": "model.load",
        "id": entry.id,
        "started": started,
    })))
}

/// `POST /v1/models/{id}/unload`: unload now; requests already running on it finish first.
pub async fn unload(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    super::cache::require_admin(&req, &state, "Unloading a model")?;
    let entry = state.resolve_model(&id)?.entry;
    let unloaded = state
        .registry
        .unload(&entry.id)
        .map_err(|e| state.acquire_error(e))?;
    Ok(HttpResponse::Ok().json(json!({
        "object": "model.unload",
        "id": entry.id,
        "unloaded": unloaded,
    })))
}
