//! `POST /v1/chat/completions`: the pipeline rendered as a `chat.completion` or as chunks.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use mlx_serve_engine::engine::{FinishReason, TokenLogprob, Usage};

use super::disconnect::ClientWatch;
use super::extract::{priority, request_id, ApiJson, Authorized};
use crate::error::ApiError;
use crate::openai::chat::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChatLogprobs, ChunkChoice, Delta, FunctionDelta, FunctionOut, ToolCallDelta, ToolCallOut,
};
use crate::openai::common::{finish_reason, Envelope, UsageOut};
use crate::pipeline::cache::CacheScope;
use crate::pipeline::choices::add_choice_usage;
use crate::pipeline::seams::Api;
use crate::pipeline::stream::{openai_end, sse_response, ChunkRenderer, StreamPlan};
use crate::pipeline::{collect_choices, start_choices, Collected, RequestContext};
use crate::sse;
use crate::state::{unix_now, AppState};

/// Fields every chunk and response of one request repeats.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    /// Response id.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// Model id as requested.
    pub model: String,
    /// `system_fingerprint`.
    pub fingerprint: String,
}

impl ResponseMeta {
    /// The envelope of a response or chunk of this response.
    pub fn envelope<C>(
        &self,
        object: &'static str,
        choices: Vec<C>,
        usage: Option<UsageOut>,
    ) -> Envelope<C> {
        Envelope {
            id: self.id.clone(),
            object,
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: self.fingerprint.clone(),
            choices,
            usage,
        }
    }

    /// Meta for a new response with an id prefix (`chatcmpl`, `cmpl`).
    pub fn new(prefix: &str, model: String, state: &AppState) -> Self {
        Self {
            id: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
            created: unix_now(),
            model,
            fingerprint: state.fingerprint.clone(),
        }
    }
}

/// The handler.
#[tracing::instrument(skip_all, fields(request_id))]
pub async fn chat_completions(
    _auth: Authorized,
    req: HttpRequest,
    client: ClientWatch,
    scope: CacheScope,
    state: web::Data<AppState>,
    body: ApiJson<ChatCompletionRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let rid = request_id(&req);
    tracing::Span::current().record("request_id", rid.as_str());
    let model = state.resolve_model(&body.model)?;
    let keep_alive = crate::keep_alive::residency(&body.keep_alive)?;
    let request = body.normalize(&model.entry.settings)?;
    let n = body.choices()?;
    let want_logprobs = request.logprobs.is_some();
    let scope = CacheScope {
        tool_choice: body.tool_choice.clone(),
        response_format: body.response_format.clone(),
        ..scope
    };
    let mut ctx = RequestContext::new(rid, Api::Chat, body.streaming())
        .with_cache(scope)
        .with_model(model.clone(), keep_alive);
    ctx.tools = body.tool_options()?;
    ctx.priority = priority(&req, body.priority)?;
    let mut choices = start_choices(&state.pipeline, request, ctx.clone(), n).await?;
    let cache_status = choices.cache_status();
    let meta = ResponseMeta::new("chatcmpl", model.requested, &state);
    if body.streaming() {
        choices
            .prime(Duration::from_secs_f64(state.settings.server.keep_alive_s))
            .await?;
        let plan = StreamPlan {
            first: choices,
            rest: Vec::new(),
            ctx,
        };
        let renderer = ChatRenderer {
            meta,
            logprobs: want_logprobs,
            include_usage: body.include_usage(),
        };
        let mut resp = sse_response(state.pipeline.clone(), plan, Box::new(renderer));
        cache_status.apply(&mut resp);
        return Ok(resp);
    }
    let collected = client.collect(collect_choices(choices)).await?;
    let mut resp = HttpResponse::Ok().json(render(meta, collected, want_logprobs));
    cache_status.apply(&mut resp);
    Ok(resp)
}

/// The `chat.completion` of every choice, `choices[i]` being choice `i`.
fn render(meta: ResponseMeta, choices: Vec<Collected>, want_logprobs: bool) -> ChatCompletion {
    let mut usage = Usage::default();
    for (i, c) in choices.iter().enumerate() {
        add_choice_usage(&mut usage, &c.usage, i);
    }
    let choices = choices
        .into_iter()
        .enumerate()
        .map(|(index, c)| render_choice(index, c, want_logprobs))
        .collect();
    meta.envelope("chat.completion", choices, Some(usage.into()))
}

fn render_choice(index: usize, c: Collected, want_logprobs: bool) -> ChatChoice {
    let tool_calls: Vec<ToolCallOut> = c
        .tool_calls
        .into_iter()
        .map(|t| ToolCallOut {
            id: t.id,
            kind: "function",
            function: FunctionOut {
                name: t.name,
                arguments: t.arguments,
            },
        })
        .collect();
    let has_calls = !tool_calls.is_empty();
    ChatChoice {
        index,
        message: AssistantMessage {
            role: "assistant",
            content: (!(has_calls && c.text.is_empty())).then_some(c.text),
            refusal: None,
            reasoning_content: (!c.reasoning.is_empty()).then_some(c.reasoning),
            tool_calls,
        },
        logprobs: want_logprobs.then(|| ChatLogprobs::from_engine(&c.logprobs)),
        finish_reason: finish_reason(c.reason, has_calls),
    }
}

/// Chat chunks.
pub struct ChatRenderer {
    meta: ResponseMeta,
    logprobs: bool,
    include_usage: bool,
}

impl ChatRenderer {
    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<UsageOut>) -> Bytes {
        let chunk: ChatCompletionChunk =
            self.meta.envelope("chat.completion.chunk", choices, usage);
        sse::data(&chunk)
    }

    fn delta(
        &self,
        index: usize,
        delta: Delta,
        logprobs: Option<ChatLogprobs>,
        finish: Option<&'static str>,
    ) -> Bytes {
        self.chunk(
            vec![ChunkChoice {
                index,
                delta,
                logprobs,
                finish_reason: finish,
            }],
            None,
        )
    }
}

impl ChunkRenderer for ChatRenderer {
    fn start(&mut self, index: usize) -> Vec<Bytes> {
        let delta = Delta {
            role: Some("assistant"),
            content: Some(String::new()),
            ..Delta::default()
        };
        vec![self.delta(index, delta, None, None)]
    }

    fn text(&mut self, index: usize, text: &str, logprobs: &[TokenLogprob]) -> Vec<Bytes> {
        if text.is_empty() && logprobs.is_empty() {
            return Vec::new();
        }
        let delta = Delta {
            content: Some(text.to_owned()),
            ..Delta::default()
        };
        let lp = self.logprobs.then(|| ChatLogprobs::from_engine(logprobs));
        vec![self.delta(index, delta, lp, None)]
    }

    fn reasoning(&mut self, index: usize, text: &str) -> Vec<Bytes> {
        let delta = Delta {
            reasoning_content: Some(text.to_owned()),
            ..Delta::default()
        };
        vec![self.delta(index, delta, None, None)]
    }

    fn tool_call(
        &mut self,
        index: usize,
        call: usize,
        id: Option<&str>,
        name: Option<&str>,
        arguments: &str,
    ) -> Vec<Bytes> {
        let delta = Delta {
            tool_calls: vec![ToolCallDelta {
                index: call,
                id: id.map(str::to_owned),
                kind: id.map(|_| "function"),
                function: FunctionDelta {
                    name: name.map(str::to_owned),
                    arguments: Some(arguments.to_owned()),
                },
            }],
            ..Delta::default()
        };
        vec![self.delta(index, delta, None, None)]
    }

    fn finish(&mut self, index: usize, reason: FinishReason, tool_calls: bool) -> Vec<Bytes> {
        vec![self.delta(
            index,
            Delta::default(),
            None,
            Some(finish_reason(reason, tool_calls)),
        )]
    }

    fn end(&mut self, total: &Usage) -> Vec<Bytes> {
        let usage = self
            .include_usage
            .then(|| self.chunk(Vec::new(), Some((*total).into())));
        openai_end(usage)
    }
}
