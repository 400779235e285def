//! `POST /v1/responses`, `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}`: the OpenAI
//! Responses API through the same pipeline as chat completions and messages (response cache,
//! model queue, tool parser, metrics, API keys), rendered by the Responses output machine as
//! a `response` object or as Responses SSE events. Errors are in OpenAI's shape.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::disconnect::ClientWatch;
use super::extract::{cache_scope, priority, request_id, ApiJson, Authorized};
use crate::error::ApiError;
use crate::pipeline::cache::CacheScope;
use crate::pipeline::seams::Api;
use crate::pipeline::stream::{sse_response, StreamPlan};
use crate::pipeline::{start, Event, RequestContext, Source};
use crate::responses::{
    base_response, translate, ResponseObject, ResponseStream, ResponsesRenderer, ResponsesRequest,
    Saver, Turn,
};
use crate::state::AppState;

/// `POST /v1/responses`.
#[tracing::instrument(skip_all, fields(request_id))]
pub async fn create(
    _auth: Authorized,
    req: HttpRequest,
    client: ClientWatch,
    scope: CacheScope,
    state: web::Data<AppState>,
    body: ApiJson<ResponsesRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let rid = request_id(&req);
    tracing::Span::current().record("request_id", rid.as_str());
    let model = state.resolve_model(&body.model)?;
    let keep_alive = crate::keep_alive::residency(&body.keep_alive)?;
    let history = match &body.previous_response_id {
        None => Vec::new(),
        Some(id) => previous(&state, &scope.tenant, id).await?,
    };
    let translated = translate(&body, &history, &model.entry.settings)?;
    let scope = CacheScope {
        // The translated choice: the same prompt with another choice or parallelism may not
        // share an answer.
        tool_choice: Some(json!(format!(
            "{:?}/{}",
            translated.tools.choice, translated.tools.parallel
        ))),
        ..scope
    };
    let saver = body.storing().then(|| Saver {
        store: state.responses.clone(),
        tenant: scope.tenant.clone(),
        conversation: translated.conversation.clone(),
    });
    let machine = ResponseStream::new(base_response(&body, &translated.request));
    let mut ctx = RequestContext::new(rid, Api::Responses, body.streaming())
        .with_cache(scope)
        .with_model(model, keep_alive);
    ctx.tools = translated.tools.clone();
    ctx.priority = priority(&req, None)?;
    let mut source = start(&state.pipeline, translated.request, ctx.clone()).await?;
    let cache_status = source.cache_status();
    if body.streaming() {
        // An early failure (prompt too long, engine down) still gets a proper status.
        source
            .prime(Duration::from_secs_f64(state.settings.server.keep_alive_s))
            .await?;
        let plan = StreamPlan {
            first: source.into(),
            rest: Vec::new(),
            ctx,
        };
        let renderer = ResponsesRenderer::new(machine, saver);
        let mut resp = sse_response(state.pipeline.clone(), plan, Box::new(renderer));
        cache_status.apply(&mut resp);
        return Ok(resp);
    }
    let response = drain_for(source, machine, client).await?;
    if let Some(saver) = saver {
        // Written through before the reply, so a restart or another replica behind the same
        // Redis can continue from it as soon as the client has the id.
        saver.save(&response).await;
    }
    let mut resp = HttpResponse::Ok().json(response);
    cache_status.apply(&mut resp);
    Ok(resp)
}

/// The conversation of a stored response; an unknown id (or another key's) is a 404.
async fn previous(state: &AppState, tenant: &str, id: &str) -> Result<Vec<Turn>, ApiError> {
    state
        .responses
        .get(tenant, id)
        .await
        .map(|(_, conversation)| conversation)
        .ok_or_else(|| {
            ApiError::response_not_found(id, "Previous response", Some("previous_response_id"))
        })
}

/// Run `source` to its end through the output machine: the JSON reply is the machine's final
/// response, the same object a streamed reply ends with. Abandoned (and the generation
/// cancelled) when the client disconnects first.
async fn drain_for(
    source: Source,
    machine: ResponseStream,
    client: ClientWatch,
) -> Result<ResponseObject, ApiError> {
    client
        .unless_gone(drain(source, machine))
        .await
        .unwrap_or_else(|| Err(ApiError::invalid("input", "client disconnected")))
}

async fn drain(
    mut source: Source,
    mut machine: ResponseStream,
) -> Result<ResponseObject, ApiError> {
    machine.begin();
    while let Some(ev) = source.next().await {
        match ev {
            Event::Started { .. } => {}
            Event::Reasoning { text } => {
                machine.reasoning(&text);
            }
            Event::Text { text, .. } => {
                machine.text(&text);
            }
            Event::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                machine.call(index, id.as_deref(), name.as_deref(), &arguments);
            }
            Event::Finished { reason, usage, .. } => {
                machine.finish(reason, usage);
                return Ok(machine.response().clone());
            }
            Event::Error(e) => return Err(e),
        }
    }
    Err(ApiError::internal("generation ended without a result"))
}

fn tenant(req: &HttpRequest, state: &AppState) -> String {
    cache_scope(req, &state.settings.server.api_keys).tenant
}

fn not_found(id: &str) -> ApiError {
    ApiError::response_not_found(id, "Response", None)
}

/// `GET /v1/responses/{id}`: a stored response of the caller's key.
#[tracing::instrument(skip_all)]
pub async fn get(
    _auth: Authorized,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (response, _) = state
        .responses
        .get(&tenant(&req, &state), &id)
        .await
        .ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Ok().json(response))
}

/// `DELETE /v1/responses/{id}`: forget a stored response of the caller's key.
#[tracing::instrument(skip_all)]
pub async fn delete(
    _auth: Authorized,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !state.responses.delete(&tenant(&req, &state), &id).await {
        return Err(not_found(&id));
    }
    Ok(HttpResponse::Ok().json(json!({"id": id.as_str(), "object": "response", "deleted": true})))
}
