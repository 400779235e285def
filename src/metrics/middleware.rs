//! Counts API requests that failed before the pipeline could record them (bad JSON, unknown
//! model, missing API key, full queue, …). The pipeline says which requests it recorded
//! ([`recorded_by_pipeline`]); the other `POST /v1/…` requests that ended with an error status
//! are recorded here.

use std::future::Future;
use std::time::Instant;

use actix_web::dev::ServiceResponse;
use actix_web::{web, Error};

use crate::error::ApiError;
use crate::pipeline::record::recorded_by_pipeline;
use crate::pipeline::seams::{Api, Outcome, RequestRecord};
use crate::state::AppState;

/// Run `fut` (the rest of the service chain) and record the request if it failed unrecorded.
pub fn watch<B, F>(fut: F) -> impl Future<Output = Result<ServiceResponse<B>, Error>>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    let arrived = Instant::now();
    async move {
        let (res, recorded) = recorded_by_pipeline(fut).await;
        let res = res?;
        if !recorded {
            record_unpiped(&res, arrived);
        }
        Ok(res)
    }
}

fn record_unpiped<B>(res: &ServiceResponse<B>, arrived: Instant) {
    let status = res.status();
    let req = res.request();
    if status.as_u16() < 400
        || req.method() != actix_web::http::Method::POST
        || !req.path().starts_with("/v1/")
    {
        return;
    }
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return;
    };
    let Some(metrics) = &state.seams.metrics else {
        return;
    };
    let api_error = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>());
    let error_type = match api_error {
        Some(e) => e.error_type(),
        None if status.is_server_error() => "server_error",
        None => "invalid_request_error",
    };
    metrics.record(RequestRecord {
        api: Api::Http,
        outcome: Outcome::Error,
        duration_s: arrived.elapsed().as_secs_f64(),
        model: state.primary_model_id(),
        route: route_label(req.match_pattern().as_deref()),
        status: status.as_u16(),
        error_type: Some(error_type),
        error_message: res.response().error().map(|e| e.to_string()),
        ..RequestRecord::default()
    });
}

/// Known API routes keep their pattern; anything else is one label, so scanners probing random
/// paths cannot blow up the label set.
fn route_label(pattern: Option<&str>) -> &'static str {
    match pattern {
        Some("/v1/chat/completions") => "/v1/chat/completions",
        Some("/v1/completions") => "/v1/completions",
        Some("/v1/messages") => "/v1/messages",
        Some("/v1/messages/count_tokens") => "/v1/messages/count_tokens",
        Some("/v1/responses") => "/v1/responses",
        _ => "other",
    }
}
