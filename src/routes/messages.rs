//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: the Anthropic Messages API through
//! the same pipeline as the OpenAI routes (response cache, model queue, tool parser, metrics),
//! rendered as a `Message` or as Anthropic's SSE events. Every error is in Anthropic's shape
//! ([`AnthropicShape`]).

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use mlx_serve_actors::model::registry::Lease;
use mlx_serve_actors::tool_parser::ToolChoice as ParserChoice;
use mlx_serve_engine::engine::{GenerateRequest, Prompt, ToolCall};

use super::disconnect::ClientWatch;
use super::extract::{priority, request_id, ApiJson, Authorized};
use crate::anthropic::translate::tool_mode;
use crate::anthropic::{
    count_tokens_prompt, render_message, to_generate, Completion, CountTokensRequest,
    CountTokensResponse, MessagesRenderer, MessagesRequest, ToolMode,
};
use crate::error::{AnthropicShape, ApiError};
use crate::pipeline::cache::CacheScope;
use crate::pipeline::seams::Api;
use crate::pipeline::seams::ToolOptions;
use crate::pipeline::stream::{sse_response, StreamPlan};
use crate::pipeline::tool_prep;
use crate::pipeline::Resolved;
use crate::pipeline::{collect, start_on, RequestContext};
use crate::state::AppState;

/// `POST /v1/messages` (Claude Code adds `?beta=true`, which changes nothing here).
#[tracing::instrument(skip_all, fields(request_id))]
pub async fn messages(
    auth: Result<Authorized, ApiError>,
    req: HttpRequest,
    client: ClientWatch,
    scope: CacheScope,
    state: web::Data<AppState>,
    body: Result<ApiJson<MessagesRequest>, ApiError>,
) -> Result<HttpResponse, AnthropicShape> {
    auth?;
    let body = body?.0;
    let rid = request_id(&req);
    tracing::Span::current().record("request_id", rid.as_str());
    let translated = to_generate(&body)?;
    let model = state.resolve_model(&body.model)?;
    let keep_alive = crate::keep_alive::residency(&body.keep_alive)?;
    let mut request = translated.request;
    apply_tool_mode(&mut request.prompt, &translated.tool_mode);
    let lease = fit_max_tokens(&state, &model, &mut request).await?;
    let scope = CacheScope {
        // The translated choice: Anthropic's and OpenAI's spellings of the same choice may then
        // share entries.
        tool_choice: Some(serde_json::Value::String(format!(
            "{:?}/{}",
            translated.tool_mode, translated.parallel_tool_calls
        ))),
        ..scope
    };
    let mut ctx = RequestContext::new(rid, Api::Messages, translated.stream)
        .with_cache(scope)
        .with_model(model, keep_alive);
    ctx.tools = tool_options(&translated.tool_mode, translated.parallel_tool_calls);
    ctx.priority = priority(&req, None)?;
    let mut source = start_on(&state.pipeline, lease, request, ctx.clone()).await?;
    let cache_status = source.cache_status();
    if translated.stream {
        // An early failure (prompt too long, engine down) still gets a proper status.
        source
            .prime(Duration::from_secs_f64(state.settings.server.keep_alive_s))
            .await?;
        let plan = StreamPlan {
            first: source.into(),
            rest: Vec::new(),
            ctx,
        };
        let renderer = MessagesRenderer::new(body.model, translated.parallel_tool_calls);
        let mut resp = sse_response(state.pipeline.clone(), plan, Box::new(renderer));
        cache_status.apply(&mut resp);
        return Ok(resp);
    }
    let collected = client.collect(collect(source)).await?;
    let mut calls: Vec<ToolCall> = collected
        .tool_calls
        .into_iter()
        .map(|c| ToolCall {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        })
        .collect();
    if !translated.parallel_tool_calls {
        calls.truncate(1);
    }
    let message = render_message(Completion {
        model: &body.model,
        text: &collected.text,
        reasoning: &collected.reasoning,
        tool_calls: &calls,
        finish: collected.reason,
        stop_sequence: collected.stop_sequence.as_deref(),
        usage: collected.usage,
    })?;
    let mut resp = HttpResponse::Ok().json(message);
    cache_status.apply(&mut resp);
    Ok(resp)
}

/// `tool_choice` for the shared tool-call seam, which steers the prompt for `any`/`tool` and
/// checks the reply against it, exactly as on the OpenAI route.
fn tool_options(mode: &ToolMode, parallel: bool) -> ToolOptions {
    let choice = match mode {
        ToolMode::NoTools | ToolMode::Auto => ParserChoice::Auto,
        ToolMode::Required => ParserChoice::Required,
        ToolMode::Function(name) => ParserChoice::Function(name.clone()),
        ToolMode::None => ParserChoice::None,
    };
    ToolOptions { choice, parallel }
}

/// `POST /v1/messages/count_tokens`: the exact token count of the prompt `/v1/messages` would
/// run for the same system, messages, tools and tool_choice.
#[tracing::instrument(skip_all)]
pub async fn count_tokens(
    auth: Result<Authorized, ApiError>,
    state: web::Data<AppState>,
    body: Result<ApiJson<CountTokensRequest>, ApiError>,
) -> Result<HttpResponse, AnthropicShape> {
    auth?;
    let body = body?.0;
    let mut prompt = count_tokens_prompt(&body)?;
    let model = state.resolve_model(&body.model)?;
    let lease = state.lease(&model.entry).await?;
    let tools = body.tools.as_deref().unwrap_or_default();
    let (mode, parallel) = tool_mode(body.tool_choice.as_ref(), tools)?;
    apply_tool_mode(&mut prompt, &mode);
    // The same prompt preparation as a real request (tool instructions included).
    let mut request = GenerateRequest {
        prompt,
        sampling: Default::default(),
        max_tokens: None,
        stop: Vec::new(),
        logprobs: None,
        constraint: None,
        reasoning: None,
        encoded: None,
    };
    let options = tool_options(&mode, parallel);
    let _ = tool_prep::prepare(&state, lease.handle(), &mut request, &options).await;
    let input_tokens = lease
        .handle()
        .count_tokens(request.prompt)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(CountTokensResponse { input_tokens }))
}

/// `tool_choice: none` takes the tools out of the prompt (so no parser runs, as on the OpenAI
/// route); `any` and `tool` are steered and checked by the shared tool-call seam.
fn apply_tool_mode(prompt: &mut Prompt, mode: &ToolMode) {
    if let (Prompt::Chat { tools, .. }, ToolMode::None) = (prompt, mode) {
        tools.clear();
    }
}

/// Coding agents ask for far more output (`max_tokens` 32000) than a small local model has
/// context; Anthropic's models have the room, ours do not. When the prompt fits but prompt plus
/// `max_tokens` does not, generate up to the end of the context instead (the reply then stops
/// with `max_tokens`). A prompt that does not fit at all still fails: "prompt is too long".
///
/// Knowing the context needs the loaded model, so this takes the request's lease (loading the
/// model) and hands it on to the pipeline.
async fn fit_max_tokens(
    state: &AppState,
    model: &Resolved,
    request: &mut GenerateRequest,
) -> Result<Option<Lease>, ApiError> {
    let Some(max_tokens) = request.max_tokens else {
        return Ok(None);
    };
    let lease = state.lease(&model.entry).await?;
    let Some(context) = tool_prep::loaded_info(state, lease.handle())
        .await
        .map(|i| i.context_length)
    else {
        return Ok(Some(lease));
    };
    // A budget of at most half the context can only overflow with a prompt over the other half:
    // then the prompt, not the budget, is the problem, and counting is not worth a model-thread
    // round trip.
    if context == 0 || max_tokens.saturating_mul(2) <= context {
        return Ok(Some(lease));
    }
    let prompt = lease
        .handle()
        .count_tokens(request.prompt.clone())
        .await
        .map_err(ApiError::from)?;
    if prompt < context && prompt.saturating_add(max_tokens) > context {
        tracing::debug!(
            max_tokens,
            prompt,
            context,
            "max_tokens capped at the context"
        );
        request.max_tokens = None;
    }
    Ok(Some(lease))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_serve_engine::engine::ChatMessage;
    use serde_json::json;

    fn chat(messages: Vec<ChatMessage>) -> Prompt {
        Prompt::Chat {
            messages,
            tools: vec![json!({"type": "function", "function": {"name": "f"}})],
            add_generation_prompt: true,
            template_kwargs: Default::default(),
        }
    }

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            ..ChatMessage::default()
        }
    }

    fn parts(r: &Prompt) -> (&[ChatMessage], usize) {
        match r {
            Prompt::Chat {
                messages, tools, ..
            } => (messages, tools.len()),
            Prompt::Text(_) | Prompt::Tokens(_) => panic!("chat prompt expected"),
        }
    }

    #[test]
    fn tool_choice_none_removes_the_tools() {
        let mut r = chat(vec![msg("user", "hi")]);
        apply_tool_mode(&mut r, &ToolMode::None);
        assert_eq!(parts(&r).1, 0);
        let mut r = chat(vec![msg("user", "hi")]);
        apply_tool_mode(&mut r, &ToolMode::Auto);
        assert_eq!(parts(&r), (&[msg("user", "hi")][..], 1));
    }

    #[test]
    fn forced_tool_choices_go_to_the_shared_seam_unchanged_in_the_prompt() {
        let mut r = chat(vec![msg("system", "Be brief."), msg("user", "hi")]);
        apply_tool_mode(&mut r, &ToolMode::Function("get_weather".into()));
        assert_eq!(
            parts(&r),
            (&[msg("system", "Be brief."), msg("user", "hi")][..], 1)
        );
        let opts = tool_options(&ToolMode::Function("get_weather".into()), false);
        assert_eq!(opts.choice, ParserChoice::Function("get_weather".into()));
        assert!(!opts.parallel);
        assert_eq!(
            tool_options(&ToolMode::Required, true).choice,
            ParserChoice::Required
        );
        assert_eq!(
            tool_options(&ToolMode::NoTools, true).choice,
            ParserChoice::Auto
        );
        assert_eq!(
            tool_options(&ToolMode::None, true).choice,
            ParserChoice::None
        );
    }
}
