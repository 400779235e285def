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

use actix_web::{web, HttpRequest, HttpResponse, ResponseError, Route};

use crate::error::ApiError;

/// Register every route. Each path answers other methods with 405 and `Allow`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let post = |path: &'static str, route: Route| resource(path, "POST", route);
    let get = |path: &'static str, route: Route| resource(path, "GET", route);
    cfg.service(post(
        "/v1/chat/completions",
        web::post().to(chat::chat_completions),
    ))
    .service(post(
        "/v1/completions",
        web::post().to(completions::completions),
    ))
    .service(post("/v1/messages", web::post().to(messages::messages)))
    .service(post(
        "/v1/messages/count_tokens",
        web::post().to(messages::count_tokens),
    ))
    .service(post("/v1/responses", web::post().to(responses::create)))
    .service(
        resource(
            "/v1/responses/{id}",
            "GET, DELETE",
            web::get().to(responses::get),
        )
        .route(web::delete().to(responses::delete)),
    )
    .service(get("/v1/models", web::get().to(models::list)))
    // Before `/v1/models/{id}`, whose pattern would take these paths too.
    .service(post(
        "/v1/models/{id:.+}/load",
        web::post().to(models::load),
    ))
    .service(post(
        "/v1/models/{id:.+}/unload",
        web::post().to(models::unload),
    ))
    .service(get("/v1/models/{id:.+}", web::get().to(models::get)))
    .service(get("/v1/cache/stats", web::get().to(cache::stats)))
    .service(resource(
        "/v1/cache",
        "DELETE",
        web::delete().to(cache::clear),
    ))
    .service(get("/health", web::get().to(health::health)))
    .service(get("/version", web::get().to(health::version)))
    .service(get("/metrics", web::get().to(metrics::metrics)))
    .service(get("/v1/stats", web::get().to(metrics::stats)));
}

/// One path with its route; any other method is a 405 naming `allow`.
fn resource(path: &'static str, allow: &'static str, route: Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(move |req: HttpRequest| async move {
            let e = ApiError::method_not_allowed(req.method().as_str(), req.path(), allow);
            error_for(&req, e)
        }))
}

/// True for the Anthropic API's paths, whose errors take Anthropic's shape.
pub fn is_anthropic_path(path: &str) -> bool {
    path == "/v1/messages" || path.starts_with("/v1/messages/")
}

/// An error rendered in the shape of the API the path belongs to.
pub fn error_for(req: &HttpRequest, e: ApiError) -> HttpResponse {
    error_for_path(req.path(), e)
}

fn error_for_path(path: &str, e: ApiError) -> HttpResponse {
    if is_anthropic_path(path) {
        e.http_anthropic()
    } else {
        e.error_response()
    }
}

/// How long a client may take to send a request's head (actix-web's default): then 408.
pub const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The JSON body for an error actix-http answers by itself, before routing (see
/// [`crate::connection`]): `path` is the request's, or empty when its request line was unreadable.
pub fn bare_error_body(path: &str, status: u16) -> Option<Vec<u8>> {
    let message = match status {
        400 => "Malformed HTTP request: the request line, a header or the body framing \
                (Content-Length, Transfer-Encoding) could not be parsed."
            .to_owned(),
        408 => format!(
            "The request headers were not received within {} s.",
            HEAD_TIMEOUT.as_secs()
        ),
        431 => "The request headers are too large.".to_owned(),
        _ => return None,
    };
    let code = if status == 408 {
        "request_timeout"
    } else {
        "malformed_request"
    };
    let e = ApiError::invalid_request(message).with_code(code);
    let body = error_for_path(path, e).into_body();
    actix_web::body::MessageBody::try_into_bytes(body)
        .ok()
        .map(|b| b.to_vec())
}

/// Unknown routes get the error shape of their API (OpenAI's, or Anthropic's under
/// `/v1/messages`) rather than an empty 404.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let e = ApiError::not_found(req.method().as_str(), req.path());
    error_for(&req, e)
}
