//! The SSE renderer driver: turns pipeline events into `data:` chunks through an API-specific
//! [`ChunkRenderer`], with keep-alive comments, the usage chunk, `[DONE]`, and error events.
//!
//! The body stream owns the generation: when the client disconnects, actix drops the body,
//! the `Generation` inside drops and cancels its sequence.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpResponse;
use bytes::Bytes;
use futures_util::stream;
use mlx_serve_engine::engine::{FinishReason, GenerateRequest, TokenLogprob, Usage};

use super::choices::{add_choice_usage, start_choices, Choices};
use super::{Event, Pipeline, RequestContext};
use crate::error::ApiError;
use crate::sse;

/// How one API renders streamed events. `index` is the choice's position in the response:
/// `prompt * n + choice` (legacy completions with a list of prompts), the choice for chat.
pub trait ChunkRenderer: Send + 'static {
    /// Before the first token of choice `index` (chat: the role chunk).
    fn start(&mut self, index: usize) -> Vec<Bytes>;
    /// New text.
    fn text(&mut self, index: usize, text: &str, logprobs: &[TokenLogprob]) -> Vec<Bytes>;
    /// Reasoning text (kept apart from the answer); APIs without a place for it skip it.
    fn reasoning(&mut self, _index: usize, _text: &str) -> Vec<Bytes> {
        Vec::new()
    }
    /// A tool-call fragment.
    fn tool_call(
        &mut self,
        index: usize,
        call: usize,
        id: Option<&str>,
        name: Option<&str>,
        arguments: &str,
    ) -> Vec<Bytes>;
    /// The end of choice `index`; `tool_calls` when any call was emitted.
    fn finish(&mut self, index: usize, reason: FinishReason, tool_calls: bool) -> Vec<Bytes>;
    /// After the last choice: OpenAI sends the usage chunk (`choices: []`) when
    /// `stream_options.include_usage`, then `data: [DONE]`; other APIs end differently.
    fn end(&mut self, total: &Usage) -> Vec<Bytes>;
    /// Prefill of choice `index` is done (Anthropic's `message_start` carries these counts).
    fn started(
        &mut self,
        _index: usize,
        _prompt_tokens: usize,
        _cached_tokens: usize,
    ) -> Vec<Bytes> {
        Vec::new()
    }
    /// [`Self::finish`] with everything the engine reported; renderers that need the usage or
    /// the matched stop string per prompt override this one.
    fn finish_detailed(&mut self, index: usize, ending: &Ending<'_>) -> Vec<Bytes> {
        self.finish(index, ending.reason, ending.tool_calls)
    }
    /// A failure; nothing follows it.
    fn error(&mut self, e: &ApiError) -> Vec<Bytes> {
        vec![e.sse_oaicompat()]
    }
    /// Sent while waiting for the first token.
    fn keep_alive(&mut self) -> Bytes {
        sse::comment("keep-alive")
    }
}

/// How one prompt's generation ended.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    /// Why.
    pub reason: FinishReason,
    /// The stop string that matched.
    pub stop_sequence: Option<&'a str>,
    /// Token counts of this prompt.
    pub usage: &'a Usage,
    /// Whether any tool call was emitted.
    pub tool_calls: bool,
}

/// OpenAI's stream ending: the usage chunk if asked for, then `[DONE]`.
pub fn openai_end(usage_chunk: Option<Bytes>) -> Vec<Bytes> {
    usage_chunk.into_iter().chain([sse::done()]).collect()
}

/// What to stream.
pub struct StreamPlan {
    /// The choices of the first prompt, already started (and primed).
    pub first: Choices,
    /// Further prompts, started one after another (legacy completions with a list), each
    /// with as many choices as the first.
    pub rest: Vec<GenerateRequest>,
    /// For the later sources.
    pub ctx: RequestContext,
}

/// One choice's state while it streams.
#[derive(Debug, Clone, Copy, Default)]
struct ChoiceState {
    tool_calls: bool,
    finished: bool,
}

struct Driver {
    state: Arc<Pipeline>,
    current: Option<Choices>,
    rest: VecDeque<GenerateRequest>,
    ctx: RequestContext,
    renderer: Box<dyn ChunkRenderer>,
    keep_alive: Duration,
    /// Choices per prompt.
    n: usize,
    /// Which prompt streams now; its choice `i` is rendered as index `prompt * n + i`.
    prompt: usize,
    started_prompt: bool,
    choices: Vec<ChoiceState>,
    seen_output: bool,
    total: Usage,
    out: VecDeque<Bytes>,
    done: bool,
}

impl Driver {
    /// Produce the next piece of the body, or `None` at the end.
    async fn advance(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.out.pop_front() {
                return Some(b);
            }
            if self.done {
                return None;
            }
            let Some(current) = self.current.as_mut() else {
                match self.rest.pop_front() {
                    Some(req) => {
                        match start_choices(&self.state, req, self.ctx.clone(), self.n).await {
                            Ok(c) => self.current = Some(c),
                            Err(e) => self.error(e),
                        }
                    }
                    None => {
                        let end = self.renderer.end(&self.total);
                        self.out.extend(end);
                        self.done = true;
                    }
                }
                continue;
            };
            let base = self.prompt * self.n;
            if !self.started_prompt {
                self.started_prompt = true;
                self.choices = vec![ChoiceState::default(); self.n];
                for i in 0..self.n {
                    let chunks = self.renderer.start(base + i);
                    self.out.extend(chunks);
                }
                continue;
            }
            let ev = if self.seen_output {
                current.next().await
            } else {
                match tokio::time::timeout(self.keep_alive, current.next()).await {
                    Ok(ev) => ev,
                    Err(_) => return Some(self.renderer.keep_alive()),
                }
            };
            let Some((i, ev)) = ev else {
                if self.choices.iter().all(|c| c.finished) {
                    self.current = None;
                    self.prompt += 1;
                    self.started_prompt = false;
                    self.seen_output = false;
                } else {
                    self.error(ApiError::internal("generation ended without a result"));
                }
                continue;
            };
            let index = base + i;
            match ev {
                Event::Started {
                    prompt_tokens,
                    cached_tokens,
                } => {
                    let chunks = self.renderer.started(index, prompt_tokens, cached_tokens);
                    self.out.extend(chunks);
                }
                Event::Text { text, logprobs } => {
                    self.seen_output = true;
                    let chunks = self.renderer.text(index, &text, &logprobs);
                    self.out.extend(chunks);
                }
                Event::Reasoning { text } => {
                    self.seen_output = true;
                    let chunks = self.renderer.reasoning(index, &text);
                    self.out.extend(chunks);
                }
                Event::ToolCall {
                    index: call,
                    id,
                    name,
                    arguments,
                } => {
                    self.seen_output = true;
                    self.choices[i].tool_calls = true;
                    let chunks = self.renderer.tool_call(
                        index,
                        call,
                        id.as_deref(),
                        name.as_deref(),
                        &arguments,
                    );
                    self.out.extend(chunks);
                }
                Event::Finished {
                    reason,
                    usage,
                    stop_sequence,
                } => {
                    let ending = Ending {
                        reason,
                        stop_sequence: stop_sequence.as_deref(),
                        usage: &usage,
                        tool_calls: self.choices[i].tool_calls,
                    };
                    let chunks = self.renderer.finish_detailed(index, &ending);
                    self.out.extend(chunks);
                    add_choice_usage(&mut self.total, &usage, i);
                    self.choices[i].finished = true;
                }
                Event::Error(e) => self.error(e),
            }
        }
    }

    fn error(&mut self, e: ApiError) {
        let frames = self.renderer.error(&e);
        self.out.extend(frames);
        self.current = None;
        self.done = true;
    }
}

/// The SSE response for a plan.
pub fn sse_response(
    state: Arc<Pipeline>,
    plan: StreamPlan,
    renderer: Box<dyn ChunkRenderer>,
) -> HttpResponse {
    let keep_alive = Duration::from_secs_f64(state.settings.server.keep_alive_s);
    let driver = Driver {
        state,
        n: plan.first.len().max(1),
        current: Some(plan.first),
        rest: plan.rest.into(),
        ctx: plan.ctx,
        renderer,
        keep_alive,
        prompt: 0,
        started_prompt: false,
        choices: Vec::new(),
        seen_output: false,
        total: Usage::default(),
        out: VecDeque::new(),
        done: false,
    };
    let body = stream::unfold(driver, |mut d| async move {
        d.advance()
            .await
            .map(|b| (Ok::<Bytes, actix_web::Error>(b), d))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}
