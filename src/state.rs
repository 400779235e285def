//! `AppState`: what every handler shares: the request [`Pipeline`] (settings, models, seams)
//! plus what only the HTTP front needs (start time, restarts, fingerprint, stored responses).

use std::ops::Deref;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Instant;

use mlx_serve_actors::model::actor::{EngineFactory, ModelHandle};
use mlx_serve_actors::model::registry::ReleaseHook;

pub use crate::pipeline::{ModelLoader, Pipeline, Resolved};
pub use mlx_serve_actors::cache::unix_now;

use crate::config::Settings;
use crate::pipeline::seams::Seams;
use crate::responses::ResponseStore;

/// Shared by all handlers (wrapped in `web::Data`).
pub struct AppState {
    /// What generations run on; routes hand it to the pipeline.
    pub pipeline: Arc<Pipeline>,
    /// Server start.
    pub started: Instant,
    /// Server start, Unix seconds (`created` of the model objects).
    pub created: u64,
    /// Engine restarts so far (all models).
    pub restarts: AtomicU32,
    /// `system_fingerprint` of every response.
    pub fingerprint: String,
    /// Stored Responses API responses (`previous_response_id`), in memory and the configured
    /// disk and Redis tiers.
    pub responses: Arc<ResponseStore>,
}

/// Handlers read settings, models and seams through the state as they would through the
/// pipeline they hand requests to.
impl Deref for AppState {
    type Target = Pipeline;

    fn deref(&self) -> &Pipeline {
        &self.pipeline
    }
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
        Self::around(Pipeline::new(settings, loader, seams, on_released))
    }

    /// The HTTP front around a built pipeline.
    pub fn around(pipeline: Pipeline) -> Self {
        let responses = ResponseStore::open(&pipeline.settings.cache);
        if let Some(to) = pipeline
            .seams
            .metrics
            .as_ref()
            .and_then(|m| m.cache_reporter())
        {
            responses.report_errors_to(to.tier_errors);
        }
        Self {
            pipeline: Arc::new(pipeline),
            responses: Arc::new(responses),
            started: Instant::now(),
            created: unix_now(),
            restarts: AtomicU32::new(0),
            fingerprint: format!(
                "fp_mlx_serve_{}",
                env!("CARGO_PKG_VERSION").replace('.', "_")
            ),
        }
    }
}
