//! The MLX engine behind `serve`: for each model of the table, a factory that resolves (and on
//! first use pulls) the model and loads it, on that model's own thread.

use std::path::PathBuf;
use std::sync::Arc;

use mlx_serve_actors::model::actor::EngineFactory;
use mlx_serve_engine::engine::{Engine, EngineError};
use mlx_serve_engine::model::catalog;
use mlx_serve_engine::model::mlx::engine::{EngineOptions, MlxEngine};

use crate::config::{ModelEntry, Settings};

/// Builds one model's factory. Resolving runs inside it, on the model thread, so pulling a
/// large model never blocks the HTTP workers; a model that cannot be resolved fails its load
/// with the reason (503 for its requests).
pub fn mlx_factory(entry: &ModelEntry, _settings: &Settings) -> EngineFactory {
    let m = entry.settings.clone();
    let id = entry.id.clone();
    Arc::new(move || {
        let models_dir = if m.models_dir.is_empty() {
            catalog::default_models_dir()
        } else {
            PathBuf::from(&m.models_dir)
        };
        let options = super::pull::resolve(&m.name, &models_dir).and_then(|(source, _)| {
            Ok(EngineOptions {
                source,
                model_id: id.clone(),
                dtype: (m.dtype != "auto").then(|| m.dtype.clone()),
                device: m.device.parse().map_err(anyhow::Error::msg)?,
                context_length: (m.context_length > 0).then_some(m.context_length),
                prefill_chunk: m.prefill_chunk,
                prefix_cache_bytes: m.prefix_cache_bytes,
                max_batch: m.max_batch,
            })
        });
        let options = options
            .map_err(|e| EngineError::InvalidRequest(format!("model {:?}: {e:#}", m.name)))?;
        tracing::info!(
            model = %options.model_id,
            mlx = mlx_sys::MLX_VERSION,
            backend = mlx_sys::BACKEND,
            blas = %mlx_sys::blas_info(),
            blas_core = mlx_sys::blas_core().as_deref().unwrap_or("none"),
            fewrow_kernel = ?mlx_sys::fewrow::isa(),
            "loading model"
        );
        MlxEngine::load(&options).map(|e| Box::new(e) as Box<dyn Engine>)
    })
}
