//! `POST /v1/completions`: legacy text completions; a list of prompts runs one after another,
//! `n` choices per prompt (`index` = prompt × `n` + choice), streamed or not; with `best_of`
//! above `n`, that many are generated and the best `n` returned.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use mlx_serve_engine::engine::{FinishReason, TokenLogprob, Usage};

use super::chat::ResponseMeta;
use super::disconnect::ClientWatch;
use super::extract::{priority, request_id, ApiJson, Authorized};
use crate::error::ApiError;
use crate::openai::common::{finish_reason, UsageOut};
use crate::openai::completions::{
    best_choices, CompletionChoice, CompletionLogprobs, CompletionRequest,
};
use crate::pipeline::cache::CacheScope;
use crate::pipeline::choices::add_choice_usage;
use crate::pipeline::seams::Api;
use crate::pipeline::stream::{openai_end, sse_response, ChunkRenderer, StreamPlan};
use crate::pipeline::{collect_choices, start_choices, RequestContext};
use crate::sse;
use crate::state::AppState;

/// The handler.
#[tracing::instrument(skip_all, fields(request_id))]
pub async fn completions(
    _auth: Authorized,
    req: HttpRequest,
    client: ClientWatch,
    scope: CacheScope,
    state: web::Data<AppState>,
    body: ApiJson<CompletionRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let rid = request_id(&req);
    tracing::Span::current().record("request_id", rid.as_str());
    let model = state.resolve_model(&body.model)?;
    let keep_alive = crate::keep_alive::residency(&body.keep_alive)?;
    let mut requests = body.normalize(&model.entry.settings)?.into_iter();
    let plan = body.choices()?;
    let want_logprobs = body.logprobs.is_some();
    let echo_prompts = if body.echo.unwrap_or(false) {
        body.prompts()
    } else {
        Vec::new()
    };
    let mut ctx = RequestContext::new(rid, Api::Completions, body.streaming())
        .with_cache(scope)
        .with_model(model.clone(), keep_alive);
    ctx.priority = priority(&req, body.priority)?;
    let meta = ResponseMeta::new("cmpl", model.requested, &state);
    let Some(first) = requests.next() else {
        return Err(ApiError::invalid("prompt", "prompt must not be empty"));
    };
    let mut choices = start_choices(&state.pipeline, first, ctx.clone(), plan.best_of).await?;
    // A stream's headers go out before later prompts run: it reports the first prompt.
    let mut cache_status = choices.cache_status();
    if body.streaming() {
        choices
            .prime(Duration::from_secs_f64(state.settings.server.keep_alive_s))
            .await?;
        let stream_plan = StreamPlan {
            first: choices,
            rest: requests.collect(),
            ctx,
        };
        let renderer = CompletionRenderer {
            meta,
            logprobs: want_logprobs,
            include_usage: body.include_usage(),
            echo: echo_prompts,
            n: plan.n,
            offsets: HashMap::new(),
        };
        let mut resp = sse_response(state.pipeline.clone(), stream_plan, Box::new(renderer));
        cache_status.apply(&mut resp);
        return Ok(resp);
    }
    let mut out = Vec::new();
    let mut total = Usage::default();
    let mut next = Some(choices);
    let mut prompt = 0;
    while let Some(choices) = next.take() {
        let mut generated = client.collect(collect_choices(choices)).await?;
        // Every generated choice is billed; the prompt once.
        for (i, c) in generated.iter().enumerate() {
            add_choice_usage(&mut total, &c.usage, i);
        }
        if plan.ranks() {
            generated = best_choices(generated, plan.n, |c| &c.logprobs);
        }
        let prefix = echo_prompts.get(prompt).cloned().unwrap_or_default();
        for (i, c) in generated.into_iter().enumerate() {
            let logprobs = want_logprobs.then(|| {
                let mut lp = CompletionLogprobs::default();
                lp.extend(&c.logprobs, prefix.len());
                lp
            });
            out.push(CompletionChoice {
                text: prefix.clone() + &c.text,
                index: prompt * plan.n + i,
                logprobs,
                finish_reason: Some(finish_reason(c.reason, false)),
            });
        }
        prompt += 1;
        if let Some(r) = requests.next() {
            let choices = start_choices(&state.pipeline, r, ctx.clone(), plan.best_of).await?;
            cache_status = cache_status.combine(choices.cache_status());
            next = Some(choices);
        }
    }
    let mut resp =
        HttpResponse::Ok().json(meta.envelope("text_completion", out, Some(total.into())));
    cache_status.apply(&mut resp);
    Ok(resp)
}

/// Completion chunks.
pub struct CompletionRenderer {
    meta: ResponseMeta,
    logprobs: bool,
    include_usage: bool,
    /// Echoed prompts, by prompt.
    echo: Vec<String>,
    /// Choices per prompt: choice `index` answers prompt `index / n`.
    n: usize,
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
        match self.echo.get(index / self.n.max(1)).cloned() {
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
