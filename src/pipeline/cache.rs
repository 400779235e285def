//! The response cache inside the pipeline: which requests may use it, their key, the lookup
//! with coalescing, replay of a hit as engine events, the `x-cache` header, and the adapter
//! that plugs the `CacheActor` into [`ResponseCacheSeam`].
//!
//! The cache stores the model's raw text (before tool-call parsing) with the original usage;
//! a hit is replayed through the same [`super::Source`] as a live generation, so the request's
//! tool parser and the JSON/SSE renderers treat it exactly like fresh output.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpResponse;
use futures_util::future::BoxFuture;
use mlx_serve_actors::cache::{
    should_cache, CacheActor, CacheDirectives, CacheKey, CachePolicy, CacheReporter, CacheSettings,
    CacheStats, CacheTier, CachedResponse, Clear, Forget, KeyInput, LeaderGuard, Lookup,
    LookupOutcome, ReportTo, Stats, Store,
};
use mlx_serve_engine::engine::{GenerateRequest, SeqEvent};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::seams::{ResponseCacheSeam, Seams};
use super::Pipeline;

/// The request facts the cache key needs beyond the engine request, plus the client's
/// `Cache-Control` directives. Routes fill it (its extractor reads tenant and directives from
/// the HTTP request); the default (no tenant, no side fields) suits a server without API keys.
#[derive(Debug, Clone, Default)]
pub struct CacheScope {
    /// SHA-256 (hex) of the caller's API key; empty without one. Raw keys are never kept.
    pub tenant: String,
    /// `tool_choice` as sent.
    pub tool_choice: Option<Value>,
    /// `response_format` as sent.
    pub response_format: Option<Value>,
    /// Other output-changing fields (an object), if an API has any.
    pub extra: Option<Value>,
    /// `Cache-Control: no-cache` / `no-store`.
    pub directives: CacheDirectives,
}

impl CacheScope {
    /// The key of `request` under this scope for the served `model`.
    pub fn key(&self, model: &str, request: &GenerateRequest) -> CacheKey {
        CacheKey::compute(&KeyInput {
            tenant: &self.tenant,
            model,
            request,
            tool_choice: self.tool_choice.as_ref(),
            response_format: self.response_format.as_ref(),
            extra: self.extra.as_ref(),
        })
    }
}

/// The response-cache keys each model's requests may have stored, so a model's entries can
/// be dropped from memory when it is unloaded (keys are hashes: the cache cannot tell models
/// apart). At most `capacity` keys per model are remembered, the newest: the memory tier
/// holds no more entries than that anyway.
pub struct ModelKeys {
    keys: std::sync::Mutex<std::collections::HashMap<String, hashlink::LinkedHashSet<CacheKey>>>,
    capacity: usize,
}

impl ModelKeys {
    /// Remember up to `capacity` keys per model.
    pub fn new(capacity: usize) -> Self {
        Self {
            keys: Default::default(),
            capacity: capacity.max(1),
        }
    }

    /// `key` may be stored for `model`.
    pub fn note(&self, model: &str, key: CacheKey) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let set = map.entry(model.to_owned()).or_default();
        set.remove(&key);
        set.insert(key);
        while set.len() > self.capacity {
            set.pop_front();
        }
    }

    /// Every key remembered for `model`, forgotten here.
    pub fn take(&self, model: &str) -> Vec<CacheKey> {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(model)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default()
    }
}

/// Drop an unloaded model's entries from the response cache's memory tier.
pub async fn forget_model(state: &Pipeline, model: &str) {
    let keys = state.cache_keys.take(model);
    let Some(cache) = &state.seams.cache else {
        return;
    };
    if keys.is_empty() {
        return;
    }
    let removed = cache.forget(keys).await;
    tracing::debug!(
        model,
        ?removed,
        "response-cache entries of an unloaded model dropped"
    );
}

/// A tenant id: a domain-separated SHA-256 of the API key, so neither memory, disk nor Redis
/// ever hold a usable key.
pub fn tenant_id(api_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"mlx-serve/tenant/v1\0");
    h.update(api_key.as_bytes());
    hex::encode(h.finalize())
}

/// How the cache took part in a response (`x-cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// The cache was not consulted: off, policy (sampled request), `Cache-Control`, or
    /// unreachable.
    Bypass,
    /// Looked up, not found: generated (and stored if it finished).
    Miss,
    /// Answered from a tier, or from an identical request in flight (`Coalesced`).
    Hit(CacheTier),
}

impl CacheStatus {
    /// `HIT`, `MISS` or `BYPASS`.
    pub fn header_value(self) -> &'static str {
        match self {
            Self::Bypass => "BYPASS",
            Self::Miss => "MISS",
            Self::Hit(_) => "HIT",
        }
    }

    /// Several prompts in one response (legacy completions): a hit only when all hit.
    pub fn combine(self, other: Self) -> Self {
        match (self, other) {
            (Self::Hit(a), Self::Hit(_)) => Self::Hit(a),
            (Self::Miss, _) | (_, Self::Miss) => Self::Miss,
            (Self::Bypass, _) | (_, Self::Bypass) => Self::Bypass,
        }
    }

    /// Sets `x-cache` (and `x-cache-tier` on a hit) on a response.
    pub fn apply(self, resp: &mut HttpResponse) {
        let headers = resp.headers_mut();
        headers.insert(
            HeaderName::from_static("x-cache"),
            HeaderValue::from_static(self.header_value()),
        );
        if let Self::Hit(tier) = self {
            let tier = match tier {
                CacheTier::Memory => "memory",
                CacheTier::Disk => "disk",
                CacheTier::Redis => "redis",
                CacheTier::Coalesced => "coalesced",
            };
            headers.insert(
                HeaderName::from_static("x-cache-tier"),
                HeaderValue::from_static(tier),
            );
        }
    }
}

/// The right to store a generation's result under its key. Stores go through the seam; the
/// leadership (if this request leads the key's flight) is held until then, and dropping it
/// unstored (failure, cancel, disconnect) releases the coalesced waiters to generate.
pub(crate) struct StoreTicket {
    key: CacheKey,
    cache: Arc<dyn ResponseCacheSeam>,
    _leader: Option<LeaderGuard>,
}

impl StoreTicket {
    pub(crate) fn store(self, value: CachedResponse) {
        // The store resolves the flight first; the guard's release that follows is a no-op.
        self.cache.store(self.key, value);
    }
}

/// What the cache says about a request before it runs.
pub(crate) struct Resolution {
    pub(crate) status: CacheStatus,
    pub(crate) hit: Option<Arc<CachedResponse>>,
    pub(crate) ticket: Option<StoreTicket>,
}

impl Resolution {
    fn bypass(ticket: Option<StoreTicket>) -> Self {
        Self {
            status: CacheStatus::Bypass,
            hit: None,
            ticket,
        }
    }
}

/// Consult the cache for `request`: a hit, leadership of a miss, or the answer of an identical
/// request in flight (coalescing). Never fails: an unreachable cache means generate.
pub(crate) async fn resolve(
    state: &Pipeline,
    model: &str,
    request: &GenerateRequest,
    scope: &CacheScope,
) -> Resolution {
    let Some(cache) = state.seams.cache.clone() else {
        return Resolution::bypass(None);
    };
    if !should_cache(&request.sampling, cache.policy()) || !scope.directives.store_allowed() {
        return Resolution::bypass(None);
    }
    let key = scope.key(model, request);
    state.cache_keys.note(model, key);
    if !scope.directives.lookup_allowed() {
        return Resolution::bypass(Some(StoreTicket {
            key,
            cache,
            _leader: None,
        }));
    }
    // Waiting is bounded like a generation: a leader that hangs past it has failed anyway.
    let wait_limit = Duration::from_secs(state.settings.server.request_timeout_s);
    // A released waiter looks up once more: by then the key may be stored or free to lead.
    for _ in 0..2 {
        let outcome = match cache.lookup(key).await {
            Some(outcome) => outcome,
            None => return Resolution::bypass(None),
        };
        match outcome {
            LookupOutcome::Hit { value, tier } => {
                return Resolution {
                    status: CacheStatus::Hit(tier),
                    hit: Some(value),
                    ticket: None,
                }
            }
            LookupOutcome::Miss(guard) => {
                return Resolution {
                    status: CacheStatus::Miss,
                    hit: None,
                    ticket: Some(StoreTicket {
                        key,
                        cache,
                        _leader: Some(guard),
                    }),
                }
            }
            LookupOutcome::Wait(waiter) => {
                match tokio::time::timeout(wait_limit, waiter.wait()).await {
                    Ok(Some(value)) => {
                        return Resolution {
                            status: CacheStatus::Hit(CacheTier::Coalesced),
                            hit: Some(value),
                            ticket: None,
                        }
                    }
                    Ok(None) => continue,
                    Err(_) => break,
                }
            }
        }
    }
    Resolution {
        status: CacheStatus::Miss,
        hit: None,
        ticket: Some(StoreTicket {
            key,
            cache,
            _leader: None,
        }),
    }
}

/// A stored response as the engine events that produced it. Usage is the original one.
pub(crate) fn replay_events(hit: &CachedResponse) -> VecDeque<SeqEvent> {
    VecDeque::from([
        SeqEvent::Started {
            prompt_tokens: hit.usage.prompt_tokens,
            cached_tokens: hit.usage.cached_tokens,
        },
        SeqEvent::Text {
            text: hit.text.clone(),
            tokens: hit.usage.completion_tokens,
            logprobs: hit.logprobs.clone().unwrap_or_default(),
        },
        SeqEvent::Finished {
            reason: hit.finish_reason,
            stop_sequence: hit.stop_sequence.clone(),
            usage: hit.usage,
            timings: Default::default(),
        },
    ])
}

/// [`ResponseCacheSeam`] over a running [`CacheActor`].
pub struct ActorCache {
    addr: Addr<CacheActor>,
    policy: CachePolicy,
}

impl ActorCache {
    /// Start the actor on the current actix system (call inside one).
    pub fn start(settings: &CacheSettings) -> Arc<Self> {
        Arc::new(Self {
            addr: CacheActor::new(settings).start(),
            policy: settings.policy,
        })
    }
}

impl ResponseCacheSeam for ActorCache {
    fn policy(&self) -> CachePolicy {
        self.policy
    }

    fn lookup(&self, key: CacheKey) -> BoxFuture<'static, Option<LookupOutcome>> {
        let sent = self.addr.send(Lookup { key });
        Box::pin(async move { sent.await.ok() })
    }

    fn store(&self, key: CacheKey, response: CachedResponse) {
        self.addr.do_send(Store {
            key,
            value: response,
        });
    }

    fn stats(&self) -> BoxFuture<'static, Option<CacheStats>> {
        let sent = self.addr.send(Stats);
        Box::pin(async move { sent.await.ok() })
    }

    fn clear(&self) -> BoxFuture<'static, Option<usize>> {
        let sent = self.addr.send(Clear);
        Box::pin(async move { sent.await.ok() })
    }

    fn forget(&self, keys: Vec<CacheKey>) -> BoxFuture<'static, Option<usize>> {
        let sent = self.addr.send(Forget(keys));
        Box::pin(async move { sent.await.ok() })
    }

    fn report_to(&self, to: CacheReporter) {
        self.addr.do_send(ReportTo(to));
    }
}

/// `seams` with the configured response cache plugged in, unless one already is or the cache
/// is disabled. Call inside the actix system that will run the server.
pub fn with_configured_cache(mut seams: Seams, settings: &CacheSettings) -> Seams {
    if seams.cache.is_none() && settings.enabled {
        seams.cache = Some(ActorCache::start(settings));
    }
    seams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_status_is_a_hit_only_when_every_prompt_hit() {
        let hit = CacheStatus::Hit(CacheTier::Memory);
        assert_eq!(hit.combine(hit), hit);
        assert_eq!(hit.combine(CacheStatus::Miss), CacheStatus::Miss);
        assert_eq!(CacheStatus::Bypass.combine(hit), CacheStatus::Bypass);
        assert_eq!(
            CacheStatus::Bypass.combine(CacheStatus::Miss),
            CacheStatus::Miss
        );
    }
}
