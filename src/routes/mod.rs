//! HTTP routes. Every handler depends on `AppState` (and through it the model handle and the
//! seams), never on a concrete engine.

pub mod cache;
pub mod chat;
pub mod completions;
pub mod disconnect;
pub mod extract;
pub mod health;
pub mod messages;
pub mod metrics;
pub mod models;
pub mod responses;

use actix_web::{web, HttpRequest};

use crate::error::ApiError;

/// Register every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/chat/completions",
        web::post().to(chat::chat_completions),
    )
    .route("/v1/completions", web::post().to(completions::completions))
    .route("/v1/messages", web::post().to(messages::messages))
    .route(
        "/v1/messages/count_tokens",
        web::post().to(messages::count_tokens),
    )
    .route("/v1/responses", web::post().to(responses::create))
    .route("/v1/responses/{id}", web::get().to(responses::get))
    .route("/v1/responses/{id}", web::delete().to(responses::delete))
    .route("/v1/models", web::get().to(models::list))
    .route("/v1/models/{id:.+}", web::get().to(models::get))
    .route("/v1/cache/stats", web::get().to(cache::stats))
    .route("/v1/cache", web::delete().to(cache::clear))
    .route("/health", web::get().to(health::health))
    .route("/version", web::get().to(health::version))
    .route("/metrics", web::get().to(metrics::metrics))
    .route("/v1/stats", web::get().to(metrics::stats));
}

/// Unknown routes get OpenAI's error shape rather than an empty 404.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}
