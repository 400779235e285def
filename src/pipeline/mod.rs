//! One request pipeline, rendered two ways (JSON or SSE) by every API.
//!
//! validate → normalize to `GenerateRequest` (the API's wire module) → [`start`]: response-cache
//! lookup (seam) or queue admission on the model → [`Source`]: engine events, passed through the
//! tool parser (seam), timed out, logged and reported to metrics (seam) → a renderer:
//! [`collect`] for JSON or [`stream::sse_response`] for SSE.

pub mod seams;
pub mod stream;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use actix_web::web;
use mlx_serve_actors::engine::{
    FinishReason, GenerateRequest, Prompt, SeqEvent, TokenLogprob, Usage,
};
use mlx_serve_actors::model::actor::Generation;
use tokio::time::timeout_at;

use crate::error::ApiError;
use crate::state::AppState;
use seams::{CachedResponse, ParsedDelta, RequestRecord, StreamingToolParser};

/// What renderers consume.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Prefill done.
    Started {
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Of those, from the prefix cache.
        cached_tokens: usize,
    },
    /// Assistant text.
    Text {
        /// The new text.
        text: String,
        /// Logprobs of the tokens it covers.
        logprobs: Vec<TokenLogprob>,
    },
    /// A tool-call fragment from the tool parser.
    ToolCall {
        /// Which call.
        index: usize,
        /// Call id (first fragment).
        id: Option<String>,
        /// Function name (first fragment).
        name: Option<String>,
        /// Argument text fragment.
        arguments: String,
    },
    /// The end.
    Finished {
        /// Why.
        reason: FinishReason,
        /// Token counts.
        usage: Usage,
        /// The stop string that ended it (`FinishReason::StopSequence`).
        stop_sequence: Option<String>,
    },
    /// The request failed; nothing follows.
    Error(ApiError),
}

/// Per-request facts for logs and metrics.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// `x-request-id`.
    pub request_id: String,
    /// `chat`, `completions`, …
    pub api: &'static str,
    /// Whether the response streams.
    pub stream: bool,
    /// When the request arrived.
    pub arrived: Instant,
}

impl RequestContext {
    /// A context for a request arriving now.
    pub fn new(request_id: String, api: &'static str, stream: bool) -> Self {
        Self {
            request_id,
            api,
            stream,
            arrived: Instant::now(),
        }
    }
}

enum Origin {
    Live(Generation),
    Replay(VecDeque<SeqEvent>),
}

/// The event stream of one generation.
pub struct Source {
    origin: Origin,
    state: web::Data<AppState>,
    ctx: RequestContext,
    request: Option<GenerateRequest>,
    parser: Option<Box<dyn StreamingToolParser>>,
    pending: VecDeque<Event>,
    deadline: tokio::time::Instant,
    raw_text: String,
    first_token: Option<Instant>,
    tool_calls: bool,
    ended: bool,
}

/// Start a generation: response cache first, else the model's queue.
pub async fn start(
    state: &web::Data<AppState>,
    request: GenerateRequest,
    ctx: RequestContext,
) -> Result<Source, ApiError> {
    let parser = match (&state.seams.tool_parser, &request.prompt) {
        (Some(tp), Prompt::Chat { tools, .. }) if !tools.is_empty() => tp.parser(tools),
        _ => None,
    };
    let cached = match &state.seams.cache {
        Some(cache) if request.logprobs.is_none() => cache.lookup(&request).await,
        _ => None,
    };
    // Kept only where something needs it afterwards: the cache stores it, the prompt log prints it.
    let keep = state.seams.cache.is_some() || state.settings.logging.log_prompts;
    let kept = keep.then(|| request.clone());
    let origin = match cached {
        Some(hit) => Origin::Replay(replay_events(hit)),
        None => match state.model().submit(request) {
            Ok(generation) => Origin::Live(generation),
            Err(e) => {
                let err = ApiError::from_submit(e, state.settings.server.retry_after_s);
                if let Some(m) = &state.seams.metrics {
                    let reason = match err {
                        ApiError::QueueFull { .. } => "queue_full",
                        _ => "unavailable",
                    };
                    m.rejected(ctx.api, reason);
                }
                return Err(err);
            }
        },
    };
    let timeout = Duration::from_secs(state.settings.server.request_timeout_s);
    Ok(Source {
        origin,
        state: state.clone(),
        ctx,
        request: kept,
        parser,
        pending: VecDeque::new(),
        deadline: tokio::time::Instant::now() + timeout,
        raw_text: String::new(),
        first_token: None,
        tool_calls: false,
        ended: false,
    })
}

fn replay_events(hit: CachedResponse) -> VecDeque<SeqEvent> {
    VecDeque::from([
        SeqEvent::Started {
            prompt_tokens: hit.usage.prompt_tokens,
            cached_tokens: hit.usage.cached_tokens,
        },
        SeqEvent::Text {
            text: hit.text,
            tokens: hit.usage.completion_tokens,
            logprobs: Vec::new(),
        },
        SeqEvent::Finished {
            reason: hit.finish_reason,
            stop_sequence: hit.stop_sequence,
            usage: hit.usage,
            timings: Default::default(),
        },
    ])
}

impl Source {
    /// Wait up to `window` for the first event; an error that comes that early is returned so
    /// the handler can answer with a proper status instead of an SSE error event.
    pub async fn prime(&mut self, window: Duration) -> Result<(), ApiError> {
        match tokio::time::timeout(window, self.next()).await {
            Err(_) => Ok(()),
            Ok(Some(Event::Error(e))) => Err(e),
            Ok(Some(ev)) => {
                self.pending.push_front(ev);
                Ok(())
            }
            Ok(None) => Ok(()),
        }
    }

    /// The next event; `None` after `Finished` or `Error`.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(ev);
            }
            if self.ended {
                return None;
            }
            let raw = match &mut self.origin {
                Origin::Replay(events) => events.pop_front(),
                Origin::Live(generation) => {
                    match timeout_at(self.deadline, generation.next()).await {
                        Ok(ev) => ev,
                        Err(_) => {
                            let secs = self.state.settings.server.request_timeout_s;
                            self.fail(ApiError::Timeout(secs), "timeout");
                            continue;
                        }
                    }
                }
            };
            match raw {
                None => self.fail(
                    ApiError::Unavailable("the model engine stopped during the request".into()),
                    "error",
                ),
                Some(ev) => self.absorb(ev),
            }
        }
    }

    fn absorb(&mut self, ev: SeqEvent) {
        match ev {
            SeqEvent::Started {
                prompt_tokens,
                cached_tokens,
            } => self.pending.push_back(Event::Started {
                prompt_tokens,
                cached_tokens,
            }),
            SeqEvent::Text { text, logprobs, .. } => {
                self.first_token.get_or_insert_with(Instant::now);
                self.raw_text.push_str(&text);
                match self.parser.as_mut() {
                    None => self.pending.push_back(Event::Text { text, logprobs }),
                    Some(p) => {
                        let deltas = p.push(&text);
                        self.push_parsed(deltas, logprobs);
                    }
                }
            }
            SeqEvent::Finished {
                reason,
                stop_sequence,
                usage,
                ..
            } => {
                if let Some(p) = self.parser.as_mut() {
                    let deltas = p.finish();
                    self.push_parsed(deltas, Vec::new());
                }
                self.pending.push_back(Event::Finished {
                    reason,
                    usage,
                    stop_sequence: stop_sequence.clone(),
                });
                self.finish(reason, stop_sequence, usage);
            }
            SeqEvent::Failed(e) => self.fail(e.into(), "error"),
        }
    }

    fn push_parsed(&mut self, deltas: Vec<ParsedDelta>, mut logprobs: Vec<TokenLogprob>) {
        for d in deltas {
            match d {
                ParsedDelta::Text(text) => self.pending.push_back(Event::Text {
                    text,
                    logprobs: std::mem::take(&mut logprobs),
                }),
                ParsedDelta::ToolCall {
                    index,
                    id,
                    name,
                    arguments,
                } => {
                    self.tool_calls = true;
                    self.pending.push_back(Event::ToolCall {
                        index,
                        id,
                        name,
                        arguments,
                    });
                }
            }
        }
    }

    fn fail(&mut self, e: ApiError, outcome: &'static str) {
        tracing::warn!(request_id = %self.ctx.request_id, api = self.ctx.api, error = %e, "generation failed");
        self.record(outcome, Usage::default());
        self.pending.push_back(Event::Error(e));
        self.ended = true;
    }

    fn finish(&mut self, reason: FinishReason, stop_sequence: Option<String>, usage: Usage) {
        self.ended = true;
        let outcome = match reason {
            _ if self.tool_calls => "tool_calls",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Stop | FinishReason::StopSequence => "stop",
        };
        self.record(outcome, usage);
        let cache_hit = matches!(self.origin, Origin::Replay(_));
        if !cache_hit && reason != FinishReason::Cancelled {
            if let (Some(cache), Some(request)) = (&self.state.seams.cache, self.request.take()) {
                cache.store(
                    request,
                    CachedResponse {
                        text: self.raw_text.clone(),
                        finish_reason: reason,
                        stop_sequence,
                        usage,
                    },
                );
            }
        }
    }

    fn record(&self, outcome: &'static str, usage: Usage) {
        let duration_s = self.ctx.arrived.elapsed().as_secs_f64();
        let ttft = self
            .first_token
            .map(|t| t.duration_since(self.ctx.arrived).as_secs_f64());
        tracing::info!(
            request_id = %self.ctx.request_id,
            api = self.ctx.api,
            stream = self.ctx.stream,
            outcome,
            prompt_tokens = usage.prompt_tokens,
            cached_tokens = usage.cached_tokens,
            completion_tokens = usage.completion_tokens,
            ttft_ms = ttft.map(|t| (t * 1000.0) as u64),
            latency_ms = (duration_s * 1000.0) as u64,
            "generation finished"
        );
        if self.state.settings.logging.log_prompts {
            tracing::info!(request_id = %self.ctx.request_id, prompt = ?self.request, completion = %self.raw_text, "generation text");
        }
        if let Some(m) = &self.state.seams.metrics {
            m.record(RequestRecord {
                api: self.ctx.api,
                stream: self.ctx.stream,
                outcome,
                usage,
                time_to_first_token_s: ttft,
                duration_s,
                cache_hit: matches!(self.origin, Origin::Replay(_)),
            });
        }
    }
}

/// A tool call assembled from its fragments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssembledToolCall {
    /// Call id.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Argument JSON text.
    pub arguments: String,
}

/// A whole generation, for JSON responses.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    /// Assistant text.
    pub text: String,
    /// Logprobs of every token.
    pub logprobs: Vec<TokenLogprob>,
    /// Tool calls, in index order.
    pub tool_calls: Vec<AssembledToolCall>,
    /// Why it ended.
    pub reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// The stop string that ended it (`FinishReason::StopSequence`).
    pub stop_sequence: Option<String>,
}

/// [`collect`], abandoned (and the generation cancelled) if the client disconnects first.
pub async fn collect_for(
    source: Source,
    peer: Option<crate::routes::disconnect::PeerSocket>,
) -> Result<Collected, ApiError> {
    let Some(peer) = peer else {
        return collect(source).await;
    };
    tokio::select! {
        result = collect(source) => result,
        () = peer.gone(Duration::from_millis(50)) => {
            tracing::info!("client disconnected; generation cancelled");
            Err(ApiError::InvalidRequest {
                message: "client disconnected".into(),
                param: None,
                code: None,
            })
        }
    }
}

/// Drain a source into one response (the JSON renderer's input).
pub async fn collect(mut source: Source) -> Result<Collected, ApiError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    let mut calls: BTreeMap<usize, AssembledToolCall> = BTreeMap::new();
    while let Some(ev) = source.next().await {
        match ev {
            Event::Started { .. } => {}
            Event::Text {
                text: t,
                logprobs: l,
            } => {
                text.push_str(&t);
                logprobs.extend(l);
            }
            Event::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                let call = calls.entry(index).or_default();
                if let Some(id) = id {
                    call.id = id;
                }
                if let Some(name) = name {
                    call.name = name;
                }
                call.arguments.push_str(&arguments);
            }
            Event::Finished {
                reason,
                usage,
                stop_sequence,
            } => {
                return Ok(Collected {
                    text,
                    logprobs,
                    tool_calls: calls.into_values().collect(),
                    reason,
                    usage,
                    stop_sequence,
                })
            }
            Event::Error(e) => return Err(e),
        }
    }
    Err(ApiError::Internal(
        "generation ended without a result".into(),
    ))
}
