//! The facts about one generation the pipeline gathers for metrics beyond what it needs itself
//! (timings, cache outcome, error), and how they complete a [`RequestRecord`].

use std::cell::Cell;
use std::future::Future;
use std::time::Instant;

use actix_web::ResponseError;
use mlx_serve_actors::metrics::CacheOutcome;
use mlx_serve_engine::engine::{GenerateRequest, SeqTimings};
use sha2::{Digest, Sha256};

#[cfg(test)]
use super::seams::{Api, Outcome};
use super::seams::{RequestRecord, Seams};
use super::RequestContext;
use crate::error::ApiError;

tokio::task_local! {
    static RECORDED: Cell<bool>;
}

/// Runs `fut` (a request's handler) and says whether the pipeline recorded the request itself;
/// the HTTP layer records the ones it did not (refused before the pipeline ran).
pub async fn recorded_by_pipeline<T>(fut: impl Future<Output = T>) -> (T, bool) {
    RECORDED
        .scope(Cell::new(false), async move {
            let out = fut.await;
            (out, RECORDED.with(Cell::get))
        })
        .await
}

/// The pipeline will record this request itself (called inside the handler).
pub(super) fn mark_recorded() {
    let _ = RECORDED.try_with(|c| c.set(true));
}

/// The failure of a request, as metrics and the trace see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorFacts {
    /// HTTP status of the error response.
    pub status: u16,
    /// API error type (`invalid_request_error`, …).
    pub error_type: &'static str,
    /// Message, for the trace log.
    pub message: String,
}

impl ErrorFacts {
    /// Facts of an API error.
    pub fn of(e: &ApiError) -> Self {
        Self {
            status: e.status_code().as_u16(),
            error_type: e.error_type(),
            message: e.to_string(),
        }
    }
}

/// What a `Source` collects for its metrics record while it runs.
#[derive(Debug, Clone, Default)]
pub struct RecordFacts {
    /// When prefill finished (the engine's `Started`).
    pub started: Option<Instant>,
    /// The engine's own timings, from `Finished`.
    pub timings: Option<SeqTimings>,
    /// What the response cache did.
    pub cache: CacheOutcome,
    /// Why it failed.
    pub error: Option<ErrorFacts>,
    model: String,
    request_hash: Option<String>,
    prompt_text: Option<String>,
}

impl RecordFacts {
    /// Facts known at the start; the hash and prompt are computed only when metrics are on.
    pub fn new(seams: &Seams, model: &str, request: &GenerateRequest, cache: CacheOutcome) -> Self {
        let Some(metrics) = &seams.metrics else {
            return Self::default();
        };
        Self {
            cache,
            model: model.to_owned(),
            request_hash: Some(request_hash(request)),
            prompt_text: metrics
                .wants_prompts()
                .then(|| serde_json::to_string(&request.prompt).unwrap_or_default()),
            ..Self::default()
        }
    }

    /// Fill in everything `base` (the pipeline's own view) lacks.
    pub fn complete(&self, base: RequestRecord, ctx: &RequestContext) -> RequestRecord {
        let hit = self.cache == CacheOutcome::Hit;
        let engine = if hit { None } else { self.timings };
        let queue_s = match (self.started, engine) {
            (Some(started), Some(t)) => {
                let to_started = started.duration_since(ctx.arrived).as_secs_f64();
                Some((to_started - t.prefill_s).max(0.0))
            }
            _ => None,
        };
        let (status, error_type, error_message) = match &self.error {
            // A stream that already sent its first event has answered 200.
            Some(e) if ctx.stream && self.started.is_some() => {
                (200, Some(e.error_type), Some(e.message.clone()))
            }
            Some(e) => (e.status, Some(e.error_type), Some(e.message.clone())),
            None => (200, None, None),
        };
        RequestRecord {
            model: self.model.clone(),
            route: base.api.route(),
            status,
            finish_reason: base.outcome.finish_reason(),
            queue_s,
            prefill_s: engine.map(|t| t.prefill_s),
            decode_s: engine.map(|t| t.decode_s),
            cache: self.cache,
            error_type,
            error_message,
            request_hash: self.request_hash.clone(),
            prompt_text: self.prompt_text.clone(),
            ..base
        }
    }
}

/// Hex SHA-256 (first 16 bytes) of the normalized request: equal requests hash equal, so the
/// trace analyzer can count repeats even without a response cache.
pub fn request_hash(request: &GenerateRequest) -> String {
    let bytes = serde_json::to_vec(request).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_serve_engine::engine::{Prompt, SamplingParams};

    fn request(text: &str) -> GenerateRequest {
        GenerateRequest {
            prompt: Prompt::Text(text.to_owned()),
            sampling: SamplingParams::default(),
            max_tokens: Some(4),
            stop: Vec::new(),
            logprobs: None,
            constraint: None,
            reasoning: None,
            encoded: None,
        }
    }

    #[test]
    fn equal_requests_hash_equal_and_different_ones_differ() {
        assert_eq!(request_hash(&request("a")), request_hash(&request("a")));
        assert_ne!(request_hash(&request("a")), request_hash(&request("b")));
        assert_eq!(request_hash(&request("a")).len(), 32);
    }

    fn ctx(stream: bool) -> RequestContext {
        RequestContext::new("r".into(), Api::Chat, stream)
    }

    #[test]
    fn queue_wait_is_time_to_prefill_end_minus_prefill() {
        let c = ctx(false);
        let facts = RecordFacts {
            started: Some(c.arrived + std::time::Duration::from_millis(300)),
            timings: Some(SeqTimings {
                prefill_s: 0.1,
                decode_s: 0.5,
            }),
            cache: CacheOutcome::Miss,
            ..RecordFacts::default()
        };
        let base = RequestRecord {
            api: Api::Chat,
            outcome: Outcome::Length,
            ..RequestRecord::default()
        };
        let r = facts.complete(base, &c);
        let q = r.queue_s.unwrap_or(-1.0);
        assert!((q - 0.2).abs() < 1e-6, "{q}");
        assert_eq!(r.prefill_s, Some(0.1));
        assert_eq!(r.decode_s, Some(0.5));
        assert_eq!(r.route, "/v1/chat/completions");
        assert_eq!(r.finish_reason, Some("length"));
        assert_eq!(r.status, 200);
    }

    #[test]
    fn a_started_stream_that_fails_reports_200_with_the_error_type() {
        let err = ErrorFacts::of(&ApiError::timeout(5));
        let started = RecordFacts {
            started: Some(Instant::now()),
            error: Some(err.clone()),
            ..RecordFacts::default()
        };
        let base = || RequestRecord {
            api: Api::Chat,
            outcome: Outcome::Timeout,
            ..RequestRecord::default()
        };
        let r = started.complete(base(), &ctx(true));
        assert_eq!(r.status, 200);
        assert_eq!(r.error_type, Some(err.error_type));
        assert_eq!(r.finish_reason, None);
        let not_started = RecordFacts {
            error: Some(err.clone()),
            ..RecordFacts::default()
        };
        assert_eq!(not_started.complete(base(), &ctx(true)).status, err.status);
    }

    #[test]
    fn cache_hits_carry_no_engine_timings() {
        let facts = RecordFacts {
            timings: Some(SeqTimings::default()),
            started: Some(Instant::now()),
            cache: CacheOutcome::Hit,
            ..RecordFacts::default()
        };
        let r = facts.complete(RequestRecord::default(), &ctx(false));
        assert_eq!((r.prefill_s, r.decode_s, r.queue_s), (None, None, None));
    }
}
