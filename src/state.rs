//! `AppState`: what every handler shares: settings, the model handle, the seams.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mlx_serve_actors::model::actor::{EngineFactory, HealthSnapshot, ModelHandle};

use crate::anthropic::ModelAliases;
use crate::config::Settings;
use crate::error::ApiError;
use crate::pipeline::seams::Seams;
use crate::responses::ResponseStore;

/// Shared by all handlers (wrapped in `web::Data`).
pub struct AppState {
    /// The validated configuration.
    pub settings: Arc<Settings>,
    model: RwLock<ModelHandle>,
    /// Builds engines (first start and restarts).
    pub factory: EngineFactory,
    /// Server start.
    pub started: Instant,
    /// Server start, Unix seconds (`created` of the model objects).
    pub created: u64,
    /// Engine restarts so far.
    pub restarts: AtomicU32,
    /// Cache, tool-parser and metrics plug-ins.
    pub seams: Seams,
    /// `system_fingerprint` of every response.
    pub fingerprint: String,
    /// Model-name patterns from `[aliases]`.
    pub aliases: ModelAliases,
    /// Stored Responses API responses (`previous_response_id`).
    pub responses: Arc<ResponseStore>,
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AppState {
    /// State around a started model.
    pub fn new(
        settings: Settings,
        model: ModelHandle,
        factory: EngineFactory,
        seams: Seams,
    ) -> Self {
        let aliases = ModelAliases::new(settings.aliases.0.clone());
        Self {
            aliases,
            responses: Arc::new(ResponseStore::default()),
            settings: Arc::new(settings),
            model: RwLock::new(model),
            factory,
            started: Instant::now(),
            created: unix_now(),
            restarts: AtomicU32::new(0),
            seams,
            fingerprint: format!(
                "fp_mlx_serve_{}",
                env!("CARGO_PKG_VERSION").replace('.', "_")
            ),
        }
    }

    /// The current model handle (replaced when the engine restarts).
    pub fn model(&self) -> ModelHandle {
        match self.model.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swap in a freshly started model.
    pub fn replace_model(&self, handle: ModelHandle) {
        match self.model.write() {
            Ok(mut m) => *m = handle,
            Err(poisoned) => *poisoned.into_inner() = handle,
        }
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// A step longer than this means the engine is wedged.
    pub fn wedge_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.settings.server.engine_wedge_timeout_s)
    }

    /// The engine's state now.
    pub fn health(&self) -> HealthSnapshot {
        self.model().health().snapshot(self.wedge_timeout())
    }

    /// The id listed first in `/v1/models`.
    pub fn primary_model_id(&self) -> String {
        let m = &self.settings.model;
        if !m.id.is_empty() {
            return m.id.clone();
        }
        match self.health().info {
            Some(info) => info.model_id,
            None => m.name.clone(),
        }
    }

    /// The ids listed in `/v1/models`: the primary id, then the aliases.
    pub fn listed_model_ids(&self) -> Vec<String> {
        let mut ids = vec![self.primary_model_id()];
        for a in &self.settings.model.aliases {
            if !ids.contains(a) {
                ids.push(a.clone());
            }
        }
        ids
    }

    /// Check a request's `model`; the engine's own id and the configured name are accepted too.
    pub fn resolve_model(&self, requested: &str) -> Result<String, ApiError> {
        let mut accepted = self.listed_model_ids();
        accepted.push(self.settings.model.name.clone());
        if let Some(info) = self.health().info {
            accepted.push(info.model_id);
        }
        if accepted.iter().any(|id| id == requested) {
            return Ok(requested.to_owned());
        }
        match self.aliases.resolve(requested) {
            Some(target) if target.is_empty() || accepted.iter().any(|id| id == target) => {
                tracing::info!(requested, served = %self.primary_model_id(), "model alias used");
                Ok(requested.to_owned())
            }
            Some(target) => {
                tracing::warn!(
                    requested,
                    target,
                    "model alias points at a model that is not served"
                );
                Err(ApiError::ModelNotFound(requested.to_owned()))
            }
            None => Err(ApiError::ModelNotFound(requested.to_owned())),
        }
    }

    /// The `[aliases]` patterns that lead to the served model, for `/v1/models`.
    pub fn alias_patterns(&self) -> Vec<String> {
        let mut accepted = self.listed_model_ids();
        accepted.push(self.settings.model.name.clone());
        self.aliases
            .entries()
            .filter(|(_, target)| target.is_empty() || accepted.iter().any(|id| id == target))
            .map(|(pattern, _)| pattern.to_owned())
            .collect()
    }
}
