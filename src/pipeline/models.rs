//! [`Pipeline`]: what every generation runs on — the configuration, the served models and their
//! registry, the seams, the response-cache keys. Built once by the composition root
//! (`crate::server`); `AppState` owns it and adds what only HTTP needs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mlx_serve_actors::model::actor::{EngineFactory, HealthSnapshot};
use mlx_serve_actors::model::registry::{
    AcquireError, Lease, Limits, ModelRegistry, ModelSpec, ModelStatus, ReleaseHook, SlotConfig,
};
use mlx_serve_engine::model::catalog;

use super::cache::ModelKeys;
use super::seams::Seams;
use crate::config::{ModelAliases, ModelEntry, Settings};
use crate::error::ApiError;

/// Builds a model's engine factory from its table entry (called when the model is loaded).
pub type ModelLoader = Arc<dyn Fn(&ModelEntry, &Settings) -> EngineFactory + Send + Sync>;

/// The request pipeline's runtime.
pub struct Pipeline {
    /// The validated configuration (timeouts, retry-after, logging, reasoning).
    pub settings: Arc<Settings>,
    /// The served models, in configuration order; the first is the default one.
    pub models: Vec<Arc<ModelEntry>>,
    /// Which models are resident, loading them on demand.
    pub registry: ModelRegistry,
    /// Model-name patterns from `[aliases]`.
    pub aliases: ModelAliases,
    /// Cache, tool-parser and metrics plug-ins.
    pub seams: Seams,
    /// Response-cache keys per model, dropped with the model.
    pub cache_keys: ModelKeys,
}

/// A request's `model`, resolved to a served model.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The name as requested (echoed in responses).
    pub requested: String,
    /// The model that answers it.
    pub entry: Arc<ModelEntry>,
}

impl Pipeline {
    /// The pipeline whose models are built by `loader` when first needed; nothing is loaded yet.
    pub fn new(
        settings: Settings,
        loader: ModelLoader,
        seams: Seams,
        on_released: Option<ReleaseHook>,
    ) -> Self {
        let models: Vec<Arc<ModelEntry>> =
            settings.model_table().into_iter().map(Arc::new).collect();
        let s = &settings.server;
        let specs = models
            .iter()
            .map(|e| ModelSpec {
                config: SlotConfig {
                    id: e.id.clone(),
                    keep_alive: e.keep_alive,
                    kv_reserve_bytes: e.settings.prefix_cache_bytes as u64,
                    estimated_weight_bytes: estimated_weight_bytes(e),
                },
                factory: loader(e, &settings),
                queue_capacity: s.queue_size,
                policy: settings.scheduler.policy.engine_policy(),
            })
            .collect();
        let limits = Limits {
            max_models: s.max_loaded_models,
            max_bytes: s.max_loaded_bytes,
        };
        Self {
            registry: ModelRegistry::new(specs, limits, on_released),
            aliases: ModelAliases::new(settings.aliases.0.clone()),
            cache_keys: ModelKeys::new(settings.cache.max_entries),
            settings: Arc::new(settings),
            models,
            seams,
        }
    }

    /// The default model: the first of the table.
    pub fn primary(&self) -> &Arc<ModelEntry> {
        &self.models[0]
    }

    /// A step longer than this means the engine is wedged.
    pub fn wedge_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.settings.server.engine_wedge_timeout_s)
    }

    /// A model's engine state now; the default (not loaded) while it is not resident.
    pub fn model_health(&self, id: &str) -> HealthSnapshot {
        match self.registry.handle(id) {
            Some(h) => h.health().snapshot(self.wedge_timeout()),
            None => mlx_serve_actors::model::actor::EngineHealth::default()
                .snapshot(self.wedge_timeout()),
        }
    }

    /// The default model's engine state now.
    pub fn health(&self) -> HealthSnapshot {
        self.model_health(&self.primary().id)
    }

    /// Every model's residency.
    pub fn model_status(&self) -> Vec<ModelStatus> {
        self.registry.status(self.wedge_timeout())
    }

    /// The default model's id.
    pub fn primary_model_id(&self) -> String {
        self.primary().id.clone()
    }

    /// Every served id, in table order.
    pub fn model_ids(&self) -> Vec<String> {
        self.models.iter().map(|e| e.id.clone()).collect()
    }

    fn not_found(&self, requested: &str) -> ApiError {
        ApiError::model_not_found(requested, &self.model_ids())
    }

    /// The entry that accepts `name` (its id, name or one of its aliases, or the id its
    /// loaded engine reports).
    fn entry_named(&self, name: &str) -> Option<&Arc<ModelEntry>> {
        self.models.iter().find(|e| e.accepts(name)).or_else(|| {
            self.models.iter().find(|e| {
                self.registry
                    .handle(&e.id)
                    .and_then(|h| h.health().snapshot(Duration::MAX).info)
                    .is_some_and(|i| i.model_id == name)
            })
        })
    }

    /// Resolve a request's `model`: a served model's id, name or alias, or an `[aliases]`
    /// pattern (whose empty target means the default model).
    pub fn resolve_model(&self, requested: &str) -> Result<Resolved, ApiError> {
        let found = |entry: &Arc<ModelEntry>| Resolved {
            requested: requested.to_owned(),
            entry: entry.clone(),
        };
        if let Some(e) = self.entry_named(requested) {
            return Ok(found(e));
        }
        match self.aliases.resolve(requested) {
            Some("") => {
                tracing::info!(requested, served = %self.primary().id, "model alias used");
                Ok(found(self.primary()))
            }
            Some(target) => match self.entry_named(target) {
                Some(e) => {
                    tracing::info!(requested, served = %e.id, "model alias used");
                    Ok(found(e))
                }
                None => {
                    tracing::warn!(
                        requested,
                        target,
                        "model alias points at a model that is not served"
                    );
                    Err(self.not_found(requested))
                }
            },
            None => Err(self.not_found(requested)),
        }
    }

    /// The `[aliases]` patterns that lead to `entry`, for `/v1/models`.
    pub fn alias_patterns(&self, entry: &ModelEntry) -> Vec<String> {
        let primary = entry.id == self.primary().id;
        self.aliases
            .entries()
            .filter(|(_, target)| {
                (target.is_empty() && primary)
                    || (!target.is_empty()
                        && self.entry_named(target).is_some_and(|e| e.id == entry.id))
            })
            .map(|(pattern, _)| pattern.to_owned())
            .collect()
    }

    /// Where catalog models live.
    pub fn models_dir(&self, entry: &ModelEntry) -> PathBuf {
        if entry.settings.models_dir.is_empty() {
            catalog::default_models_dir()
        } else {
            PathBuf::from(&entry.settings.models_dir)
        }
    }

    /// A catalog model of the table that is not on disk and may not be pulled on demand.
    /// (The single `[model]` section is pulled when it loads, as it always was.)
    pub fn check_pulled(&self, entry: &ModelEntry) -> Result<(), ApiError> {
        if entry.legacy || self.settings.server.pull_on_demand {
            return Ok(());
        }
        let name = &entry.settings.name;
        if catalog::find(name).is_some()
            && catalog::local_path(name, &self.models_dir(entry)).is_none()
        {
            return Err(ApiError::model_not_pulled(&entry.id, name));
        }
        Ok(())
    }

    /// A lease on a model for one request, loading it first if it is not resident.
    pub async fn lease(&self, entry: &ModelEntry) -> Result<Lease, ApiError> {
        self.check_pulled(entry)?;
        let wait = Duration::from_secs(self.settings.server.request_timeout_s);
        self.registry
            .acquire(&entry.id, wait)
            .await
            .map_err(|e| self.acquire_error(e))
    }

    /// A registry refusal as an API error.
    pub fn acquire_error(&self, e: AcquireError) -> ApiError {
        match e {
            AcquireError::Unknown(id) => self.not_found(&id),
            AcquireError::Failed { .. } | AcquireError::Busy { .. } => ApiError::unavailable(e),
        }
    }
}

/// Weight bytes to budget for a model before its first load: the size of its file or catalog
/// entry (quantized weights dequantized at load can take more; the real size replaces this
/// estimate once it has loaded).
fn estimated_weight_bytes(e: &ModelEntry) -> u64 {
    if let Some(m) = catalog::find(&e.settings.name) {
        return m.size;
    }
    std::fs::metadata(&e.settings.name)
        .map(|m| if m.is_file() { m.len() } else { 0 })
        .unwrap_or(0)
}
