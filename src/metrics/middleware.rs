//! Counts API requests that failed before the pipeline could record them (bad JSON, unknown
//! model, missing API key, full queue, …). The pipeline marks each request it will record
//! through a task-local flag set while the handler runs; unmarked `POST /v1/…` requests that
//! ended with an error status are recorded here.

use std::cell::Cell;
use std::future::Future;
use std::time::Instant;

use actix_web::dev::ServiceResponse;
use actix_web::{web, Error};

use crate::error::ApiError;
use crate::pipeline::seams::RequestRecord;
use crate::state::AppState;

tokio::task_local! {
    static RECORDED: Cell<bool>;
}

/// The pipeline will record this request itself (called inside the handler).
pub fn mark_recorded() {
    let _ = RECORDED.try_with(|c| c.set(true));
}

/// Run `fut` (the rest of the service chain) and record the request if it failed unrecorded.
pub fn watch<B, F>(fut: F) -> impl Future<Output = Result<ServiceResponse<B>, Error>>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    let arrived = Instant::now();
    RECORDED.scope(Cell::new(false), async move {
        let res = fut.await?;
        let recorded = RECORDED.with(Cell::get);
        if !recorded {
            record_unpiped(&res, arrived);
        }
        Ok(res)
    })
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
        api: "http",
        outcome: "error",
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
