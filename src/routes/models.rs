//! `GET /v1/models` and `GET /v1/models/{id}`: answered from shared state, never the model thread.

use actix_web::{web, HttpResponse};

use super::extract::Authorized;
use crate::error::ApiError;
use crate::openai::models::{ModelList, ModelObject};
use crate::state::AppState;

/// The served model and its aliases.
pub async fn list(_auth: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let mut data: Vec<ModelObject> = state
        .listed_model_ids()
        .into_iter()
        .map(|id| ModelObject::new(id, state.created))
        .collect();
    if let Some(primary) = data.first_mut() {
        primary.aliases = state.alias_patterns();
    }
    HttpResponse::Ok().json(ModelList {
        object: "list",
        data,
    })
}

/// One model, or 404 `model_not_found`.
pub async fn get(
    _auth: Authorized,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = state.resolve_model(&id)?;
    Ok(HttpResponse::Ok().json(ModelObject::new(id, state.created)))
}
