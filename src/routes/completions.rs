//! `POST /v1/completions`: legacy text completions; a list of prompts runs one after another,
//! one choice per prompt (`index`), streamed or not.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use mlx_serve_actors::engine::{FinishReason, TokenLogprob, Usage};

use super::chat::ResponseMeta;
use super::disconnect::PeerWatch;
use super::extract::{priority, request_id, ApiJson, Authorized};
use crate::error::ApiError;
use crate::openai::common::{add_usage, finish_reason, UsageOut};
use crate::openai::completions::{CompletionChoice, CompletionLogprobs, CompletionRequest};
use crate::pipeline::cache::CacheScope;
use crate::pipeline::stream::{openai_end, sse_response, ChunkRenderer, StreamPlan};
use crate::pipeline::{collect_for, start, RequestContext};
use crate::sse;
use crate::state::AppState;

/// The handler.
#[tracing::instrument(skip_all, fields(request_id))]
pub async fn completions(
    _auth: Authorized,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: ApiJson<CompletionRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let rid = request_id(&req);
    tracing::Span::current().record("request_id", rid.as_str());
    let model = state.resolve_model(&body.model)?;
    let mut requests = body.normalize(&state.settings.model)?.into_iter();
    let want_logprobs = body.logprobs.is_some();
    let echo_prompts = if body.echo.unwrap_or(false) {
        body.prompts()
    } else {
        Vec::new()
    };
    let scope = CacheScope::from_request(&req, &state.settings.server.api_keys);
    let mut ctx = RequestContext::new(rid, "completions", body.streaming()).with_cache(scope);
    ctx.priority = priority(&req, body.priority)?;
    let meta = ResponseMeta::new("cmpl", model, &state);
    let Some(first) = requests.next() else {
        return Err(ApiError::invalid("prompt", "prompt must not be empty"));
    };
    let mut source = start(&state, first, ctx.clone()).await?;
    // A stream's headers go out before later prompts run: it reports the first prompt.
    let mut cache_status = source.cache_status();
    if body.streaming() {
        source
            .prime(Duration::from_secs_f64(state.settings.server.keep_alive_s))
            .await?;
        let plan = StreamPlan {
            first: source,
            rest: requests.collect(),
            ctx,
        };
        let renderer = CompletionRenderer {
            meta,
            logprobs: want_logprobs,
            include_usage: body.include_usage(),
            echo: echo_prompts,
            offsets: HashMap::new(),
        };
        let mut resp = sse_response(state, plan, Box::new(renderer));
        cache_status.apply(&mut resp);
        return Ok(resp);
    }
    let mut choices = Vec::new();
    let mut total = Usage::default();
    let mut next = Some(source);
    let mut index = 0;
    loop {
        let Some(source) = next.take() else { break };
        let c = collect_for(source, PeerWatch::of(&req)).await?;
        let prefix = echo_prompts.get(index).cloned().unwrap_or_default();
        let logprobs = want_logprobs.then(|| {
            let mut lp = CompletionLogprobs::default();
            lp.extend(&c.logprobs, prefix.len());
            lp
        });
        choices.push(CompletionChoice {
            text: prefix + &c.text,
            index,
            logprobs,
            finish_reason: Some(finish_reason(c.reason, false)),
        });
        add_usage(&mut total, &c.usage);
        index += 1;
        if let Some(r) = requests.next() {
            let source = start(&state, r, ctx.clone()).await?;
            cache_status = cache_status.combine(source.cache_status());
            next = Some(source);
        }
    }
    let mut resp =
        HttpResponse::Ok().json(meta.envelope("text_completion", choices, Some(total.into())));
    cache_status.apply(&mut resp);
    Ok(resp)
}

/// Completion chunks.
pub struct CompletionRenderer {
    meta: ResponseMeta,
    logprobs: bool,
    include_usage: bool,
    echo: Vec<String>,
    offsets: HashMap<usize, usize>,
}

impl CompletionRenderer {
    fn chunk(&self, choices: Vec<CompletionChoice>, usage: Option<UsageOut>) -> Bytes {
        sse::data(&self.meta.envelope("text_completion", choices, usage))
    }

    fn choice(
        &mut self,
        index: usize,
        text: &str,
        lps: &[TokenLogprob],
        finish: Option<&'static str>,
    ) -> Bytes {
        let offset = self.offsets.entry(index).or_insert(0);
        let logprobs = self.logprobs.then(|| {
            let mut lp = CompletionLogprobs::default();
            lp.extend(lps, *offset);
            lp
        });
        *offset += text.len();
        self.chunk(
            vec![CompletionChoice {
                text: text.to_owned(),
                index,
                logprobs,
                finish_reason: finish,
            }],
            None,
        )
    }
}

impl ChunkRenderer for CompletionRenderer {
    fn start(&mut self, index: usize) -> Vec<Bytes> {
        match self.echo.get(index).cloned() {
            Some(prompt) if !prompt.is_empty() => vec![self.choice(index, &prompt, &[], None)],
            _ => Vec::new(),
        }
    }

    fn text(&mut self, index: usize, text: &str, logprobs: &[TokenLogprob]) -> Vec<Bytes> {
        if text.is_empty() && logprobs.is_empty() {
            return Vec::new();
        }
        vec![self.choice(index, text, logprobs, None)]
    }

    fn tool_call(
        &mut self,
        _: usize,
        _: usize,
        _: Option<&str>,
        _: Option<&str>,
        _: &str,
    ) -> Vec<Bytes> {
        Vec::new()
    }

    fn finish(&mut self, index: usize, reason: FinishReason, _tool_calls: bool) -> Vec<Bytes> {
        vec![self.choice(index, "", &[], Some(finish_reason(reason, false)))]
    }

    fn end(&mut self, total: &Usage) -> Vec<Bytes> {
        let usage = self
            .include_usage
            .then(|| self.chunk(Vec::new(), Some((*total).into())));
        openai_end(usage)
    }
}
