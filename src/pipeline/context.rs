//! What the pipeline knows about a request besides what to generate: its id, API, stream flag,
//! tool options, cache scope, priority, model and keep-alive.

use std::time::{Duration, Instant};

use super::cache::CacheScope;
use super::seams::{Api, ToolOptions};
use super::Resolved;

/// Per-request facts for logs and metrics.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// `x-request-id`.
    pub request_id: String,
    /// The API it came in through.
    pub api: Api,
    /// Whether the response streams.
    pub stream: bool,
    /// When the request arrived.
    pub arrived: Instant,
    /// `tool_choice` and `parallel_tool_calls` (defaults: auto, parallel).
    pub tools: ToolOptions,
    /// Tenant, side fields and `Cache-Control` for the response cache.
    pub cache: CacheScope,
    /// Lower runs sooner (body `priority` or header `x-priority`; 0 by default).
    pub priority: i32,
    /// The model that answers (`None`: the default model).
    pub model: Option<Resolved>,
    /// The request's own `keep_alive`: `Some(None)` keeps the model for ever, `Some(Some(0))`
    /// unloads it after this request; `None` leaves the model's configured keep-alive.
    pub keep_alive: Option<Option<Duration>>,
}

impl RequestContext {
    /// A context for a request arriving now.
    pub fn new(request_id: String, api: Api, stream: bool) -> Self {
        Self {
            request_id,
            api,
            stream,
            arrived: Instant::now(),
            tools: ToolOptions::default(),
            cache: CacheScope::default(),
            priority: 0,
            model: None,
            keep_alive: None,
        }
    }

    /// This context for a resolved model and the request's `keep_alive`.
    pub fn with_model(mut self, model: Resolved, keep_alive: Option<Option<Duration>>) -> Self {
        self.model = Some(model);
        self.keep_alive = keep_alive;
        self
    }

    /// This context with the request's cache scope.
    pub fn with_cache(mut self, cache: CacheScope) -> Self {
        self.cache = cache;
        self
    }
}
