//! `AppState`: what every handler shares: settings, the model table and its registry, the seams.

use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mlx_serve_actors::model::actor::{EngineFactory, HealthSnapshot, ModelHandle};
use mlx_serve_actors::model::catalog;
use mlx_serve_actors::model::registry::{
    AcquireError, Lease, Limits, ModelRegistry, ModelSpec, ModelStatus, ReleaseHook, SlotConfig,
};

use crate::anthropic::ModelAliases;
use crate::config::{ModelEntry, Settings};
use crate::error::ApiError;
use crate::pipeline::seams::Seams;
use crate::responses::ResponseStore;

/// Builds a model's engine factory from its table entry (called when the model is loaded).
pub type ModelLoader = Arc<dyn Fn(&ModelEntry, &Settings) -> EngineFactory + Send + Sync>;

/// Shared by all handlers (wrapped in `web::Data`).
pub struct AppState {
    /// The validated configuration.
    pub settings: Arc<Settings>,
    /// The served models, in configuration order; the first is the default one.
    pub models: Vec<Arc<ModelEntry>>,
    /// Which models are resident, loading them on demand.
    pub registry: ModelRegistry,
    /// Server start.
    pub started: Instant,
    /// Server start, Unix seconds (`created` of the model objects).
    pub created: u64,
    /// Engine restarts so far (all models).
    pub restarts: AtomicU32,
    /// Cache, tool-parser and metrics plug-ins.
    pub seams: Seams,
    /// `system_fingerprint` of every response.
    pub fingerprint: String,
    /// Model-name patterns from `[aliases]`.
    pub aliases: ModelAliases,
    /// Stored Responses API responses (`previous_response_id`), in memory and the configured
    /// disk and Redis tiers.
    pub responses: Arc<ResponseStore>,
    /// Response-cache keys per model, dropped with the model.
    pub cache_keys: crate::pipeline::cache::ModelKeys,
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A request's `model`, resolved to a served model.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The name as requested (echoed in responses).
    pub requested: String,
    /// The model that answers it.
    pub entry: Arc<ModelEntry>,
}

impl AppState {
    /// State around one already started model; every table entry is built with `factory`
    /// (tests and single-engine callers).
    pub fn new(
        settings: Settings,
        model: ModelHandle,
        factory: EngineFactory,
        seams: Seams,
    ) -> Self {
        let loader: ModelLoader = Arc::new(move |_, _| factory.clone());
        let state = Self::with_loader(settings, loader, seams, None);
        let _ = state.registry.adopt(&state.models[0].id, model);
        state
    }

    /// State whose models are built by `loader` when first needed; nothing is loaded yet.
    pub fn with_loader(
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
        let registry = ModelRegistry::new(specs, limits, on_released);
        let aliases = ModelAliases::new(settings.aliases.0.clone());
        let responses = ResponseStore::open(&settings.cache);
        if let Some(to) = seams.metrics.as_ref().and_then(|m| m.cache_reporter()) {
            responses.report_errors_to(to.tier_errors);
        }
        Self {
            aliases,
            responses: Arc::new(responses),
            cache_keys: crate::pipeline::cache::ModelKeys::new(settings.cache.max_entries),
            settings: Arc::new(settings),
            models,
            registry,
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
        ApiError::ModelNotFound {
            model: requested.to_owned(),
            available: self.model_ids(),
        }
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
            return Err(ApiError::ModelNotPulled {
                model: entry.id.clone(),
                name: name.clone(),
            });
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
            AcquireError::Failed { .. } | AcquireError::Busy { .. } => {
                ApiError::Unavailable(e.to_string())
            }
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
