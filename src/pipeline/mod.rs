//! One request pipeline, rendered two ways (JSON or SSE) by every API.
//!
//! validate → normalize to `GenerateRequest` (the API's wire module) → [`start`]: response-cache
//! lookup (seam) or queue admission on the model → [`Source`]: engine events, passed through the
//! tool parser (seam), timed out, logged and reported to metrics (seam) → a renderer:
//! [`collect`] for JSON or [`stream::sse_response`] for SSE. A request for `n` choices runs `n`
//! sources merged by [`choices::Choices`] (events tagged by choice), rendered by the same two.

pub mod cache;
pub mod choices;
mod collect;
mod context;
mod models;
pub mod record;
pub mod seams;
pub mod stream;
pub mod tool_prep;

pub use choices::{start_choices, Choices};
pub use collect::{collect, collect_choices, AssembledToolCall, Collected};
pub use context::RequestContext;
pub use models::{ModelLoader, Pipeline, Resolved};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlx_serve_actors::metrics::CacheOutcome;
use mlx_serve_actors::model::actor::Generation;
use mlx_serve_actors::model::registry::Lease;
use mlx_serve_engine::engine::{FinishReason, GenerateRequest, SeqEvent, TokenLogprob, Usage};
use mlx_serve_engine::reasoning::{Piece, ReasoningSplitter};
use tokio::time::timeout_at;

use crate::config::ModelEntry;
use crate::error::ApiError;
use cache::{CacheStatus, StoreTicket};
use seams::{CachedResponse, Outcome, ParsedDelta, RequestRecord, StreamingToolParser};

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
    /// Thinking, kept apart from the answer by the reasoning splitter.
    Reasoning {
        /// The new reasoning text.
        text: String,
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

enum Origin {
    Live(Generation),
    Replay(VecDeque<SeqEvent>),
}

/// The event stream of one generation.
pub struct Source {
    origin: Origin,
    state: Arc<Pipeline>,
    ctx: RequestContext,
    request: Option<GenerateRequest>,
    parser: Option<Box<dyn StreamingToolParser>>,
    reasoning: Option<ReasoningSplitter>,
    pending: VecDeque<Event>,
    deadline: tokio::time::Instant,
    raw_text: String,
    raw_logprobs: Option<Vec<TokenLogprob>>,
    cache_status: CacheStatus,
    ticket: Option<StoreTicket>,
    first_token: Option<Instant>,
    tool_calls: bool,
    ended: bool,
    facts: record::RecordFacts,
    /// Keeps the model resident (and counted busy) until the request ends.
    lease: Lease,
}

/// Start a generation: response cache first, else the model's queue.
pub async fn start(
    state: &Arc<Pipeline>,
    request: GenerateRequest,
    ctx: RequestContext,
) -> Result<Source, ApiError> {
    start_on(state, None, request, ctx).await
}

/// The model a context names: its resolved entry, else the default model.
pub fn entry_of(state: &Pipeline, ctx: &RequestContext) -> Arc<ModelEntry> {
    match &ctx.model {
        Some(r) => r.entry.clone(),
        None => state.primary().clone(),
    }
}

/// [`start`] on a lease the route already holds (it needed the loaded model first), or on a
/// fresh one: the model is loaded here when it is not resident.
pub async fn start_on(
    state: &Arc<Pipeline>,
    lease: Option<Lease>,
    mut request: GenerateRequest,
    ctx: RequestContext,
) -> Result<Source, ApiError> {
    let entry = entry_of(state, &ctx);
    let mut lease = match lease {
        Some(l) => l,
        None => state.lease(&entry).await?,
    };
    if let Some(keep_alive) = ctx.keep_alive {
        lease.set_keep_alive(keep_alive);
    }
    let parser = tool_prep::prepare(state, lease.handle(), &mut request, &ctx.tools).await;
    let reasoning = tool_prep::reasoning_splitter(state, lease.handle(), &request).await;
    // The engine learns the model's markers (a prompt may open the reasoning; a budget closes
    // it); without a splitter there is no reasoning to bound.
    let budget = request.reasoning.as_ref().and_then(|r| r.budget);
    request.reasoning = reasoning.as_ref().and_then(|s| s.format().spec(budget));
    let resolution = cache::resolve(state, &entry.id, &request, &ctx.cache).await;
    let raw_logprobs = request.logprobs.map(|_| Vec::new());
    let kept = state.settings.logging.log_prompts.then(|| request.clone());
    let cache_outcome = match resolution.status {
        CacheStatus::Hit(_) => CacheOutcome::Hit,
        CacheStatus::Miss => CacheOutcome::Miss,
        CacheStatus::Bypass if state.seams.cache.is_some() => CacheOutcome::Bypass,
        CacheStatus::Bypass => CacheOutcome::Uncacheable,
    };
    let facts = record::RecordFacts::new(&state.seams, &entry.id, &request, cache_outcome);
    let origin = match &resolution.hit {
        Some(hit) => Origin::Replay(cache::replay_events(hit)),
        // A failed submit drops the store ticket, which releases coalesced waiters.
        None => match prepared(lease.handle(), request).await.and_then(|request| {
            lease
                .handle()
                .submit_with_priority(request, ctx.priority)
                .map_err(|e| ApiError::from_submit(e, state.settings.server.retry_after_s))
        }) {
            Ok(generation) => Origin::Live(generation),
            // Not recorded here: the HTTP middleware counts refused requests with their status.
            Err(e) => return Err(e),
        },
    };
    let timeout = Duration::from_secs(state.settings.server.request_timeout_s);
    record::mark_recorded();
    Ok(Source {
        origin,
        state: state.clone(),
        ctx,
        request: kept,
        parser,
        reasoning,
        pending: VecDeque::new(),
        deadline: tokio::time::Instant::now() + timeout,
        raw_text: String::new(),
        raw_logprobs,
        cache_status: resolution.status,
        ticket: resolution.ticket,
        first_token: None,
        tool_calls: false,
        ended: false,
        facts,
        lease,
    })
}

/// The request with its prompt encoded off the model thread; a prompt that cannot run (too long
/// for the context, an invalid template) is refused here, before it takes a queue place.
async fn prepared(
    model: &mlx_serve_actors::model::actor::ModelHandle,
    mut request: GenerateRequest,
) -> Result<GenerateRequest, ApiError> {
    model.prepare(&mut request).await?;
    Ok(request)
}

impl Source {
    /// How the response cache took part (`x-cache`).
    pub fn cache_status(&self) -> CacheStatus {
        self.cache_status
    }

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
                            self.fail(ApiError::timeout(secs), Outcome::Timeout);
                            continue;
                        }
                    }
                }
            };
            match raw {
                None => self.fail(
                    ApiError::unavailable("the model engine stopped during the request"),
                    Outcome::Error,
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
            } => {
                self.facts.started = Some(Instant::now());
                self.pending.push_back(Event::Started {
                    prompt_tokens,
                    cached_tokens,
                })
            }
            SeqEvent::Text { text, logprobs, .. } => {
                self.first_token.get_or_insert_with(Instant::now);
                self.raw_text.push_str(&text);
                if let Some(kept) = self.raw_logprobs.as_mut() {
                    kept.extend(logprobs.iter().cloned());
                }
                match self.reasoning.as_mut() {
                    None => self.content(text, logprobs),
                    Some(splitter) => {
                        let pieces = splitter.push(&text);
                        self.pieces(pieces, logprobs);
                    }
                }
            }
            SeqEvent::Finished {
                reason,
                stop_sequence,
                usage,
                timings,
            } => {
                self.facts.timings = Some(timings);
                if let Some(pieces) = self.reasoning.as_mut().map(ReasoningSplitter::finish) {
                    self.pieces(pieces, Vec::new());
                }
                if let Some(p) = self.parser.as_mut() {
                    let deltas = p.finish();
                    let verdict = p.verdict();
                    self.push_parsed(deltas, Vec::new());
                    if let Err(e) = verdict {
                        self.fail(e, Outcome::Error);
                        return;
                    }
                }
                self.pending.push_back(Event::Finished {
                    reason,
                    usage,
                    stop_sequence: stop_sequence.clone(),
                });
                self.finish(reason, stop_sequence, usage);
            }
            SeqEvent::Failed(e) => {
                let e = self.engine_error(e);
                self.fail(e, Outcome::Error)
            }
        }
    }

    /// Requests queued behind a load that then failed are not server bugs (500) but an
    /// unavailable model (503, which clients retry), with the load's reason.
    fn engine_error(&self, e: mlx_serve_engine::engine::EngineError) -> ApiError {
        let h = self.lease.handle().health().snapshot(Duration::MAX);
        match (h.loaded, h.failure) {
            (false, Some(why)) => ApiError::unavailable(why),
            _ => e.into(),
        }
    }

    /// Answer text: through the tool parser when there is one.
    fn content(&mut self, text: String, logprobs: Vec<TokenLogprob>) {
        match self.parser.as_mut() {
            None => self.pending.push_back(Event::Text { text, logprobs }),
            Some(p) => {
                let deltas = p.push(&text);
                self.push_parsed(deltas, logprobs);
            }
        }
    }

    /// The splitter's pieces: reasoning goes straight out, never to the tool parser.
    fn pieces(&mut self, pieces: Vec<Piece>, mut logprobs: Vec<TokenLogprob>) {
        for piece in pieces {
            match piece {
                Piece::Reasoning(text) => self.pending.push_back(Event::Reasoning { text }),
                Piece::Content(text) => self.content(text, std::mem::take(&mut logprobs)),
            }
        }
        if !logprobs.is_empty() {
            // Tokens that were all reasoning still carry their logprobs.
            self.pending.push_back(Event::Text {
                text: String::new(),
                logprobs,
            });
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

    fn fail(&mut self, e: ApiError, outcome: Outcome) {
        tracing::warn!(request_id = %self.ctx.request_id, api = self.ctx.api.as_str(), error = %e, "generation failed");
        self.facts.error = Some(record::ErrorFacts::of(&e));
        self.record(outcome, Usage::default());
        self.pending.push_back(Event::Error(e));
        self.ended = true;
        // Releases waiters on this key: they generate themselves.
        self.ticket = None;
    }

    fn finish(&mut self, reason: FinishReason, stop_sequence: Option<String>, usage: Usage) {
        self.ended = true;
        let outcome = match reason {
            _ if self.tool_calls => Outcome::ToolCalls,
            FinishReason::Length => Outcome::Length,
            FinishReason::Cancelled => Outcome::Cancelled,
            FinishReason::Stop | FinishReason::StopSequence => Outcome::Stop,
        };
        self.record(outcome, usage);
        let ticket = self.ticket.take();
        if let (Some(ticket), false) = (ticket, reason == FinishReason::Cancelled) {
            ticket.store(CachedResponse {
                text: self.raw_text.clone(),
                finish_reason: reason,
                stop_sequence,
                usage,
                logprobs: self.raw_logprobs.clone(),
                created_at: mlx_serve_actors::cache::unix_now(),
            });
        }
    }

    fn record(&self, outcome: Outcome, usage: Usage) {
        let duration_s = self.ctx.arrived.elapsed().as_secs_f64();
        let ttft = self
            .first_token
            .map(|t| t.duration_since(self.ctx.arrived).as_secs_f64());
        tracing::info!(
            request_id = %self.ctx.request_id,
            api = self.ctx.api.as_str(),
            stream = self.ctx.stream,
            outcome = outcome.as_str(),
            cache = self.cache_status.header_value(),
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
            let base = RequestRecord {
                api: self.ctx.api,
                stream: self.ctx.stream,
                outcome,
                usage,
                time_to_first_token_s: ttft,
                duration_s,
                cache_hit: matches!(self.origin, Origin::Replay(_)),
                tool_calls: self
                    .parser
                    .as_ref()
                    .and_then(|p| p.outcome())
                    .map(|o| o.to_metrics())
                    .unwrap_or_default(),
                ..RequestRecord::default()
            };
            m.record(self.facts.complete(base, &self.ctx));
        }
    }
}

// A source dropped before its end is a request the client abandoned (disconnect): it still
// counts, as aborted, so the metrics and the trace see every request.
impl Drop for Source {
    fn drop(&mut self) {
        if !self.ended {
            self.ended = true;
            self.record(Outcome::Cancelled, Usage::default());
        }
    }
}
