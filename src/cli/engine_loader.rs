//! The MLX engine behind `serve`: resolves (and on first use pulls) the configured model on the
//! main thread, then hands the model thread a factory that loads it there.

use std::path::PathBuf;
use std::sync::Arc;

use mlx_serve_actors::engine::{Engine, EngineError};
use mlx_serve_actors::model::actor::EngineFactory;
use mlx_serve_actors::model::catalog;
use mlx_serve_actors::model::mlx::engine::{EngineOptions, MlxEngine};

use crate::config::Settings;

/// Builds the factory; a model that cannot be resolved becomes a factory that fails with the
/// reason, which the server reports and exits on.
pub fn mlx_factory(settings: &Settings) -> EngineFactory {
    let m = &settings.model;
    let models_dir = if m.models_dir.is_empty() {
        catalog::default_models_dir()
    } else {
        PathBuf::from(&m.models_dir)
    };
    let resolved = super::pull::resolve(&m.name, &models_dir);
    let options = resolved.and_then(|(source, id)| {
        Ok(EngineOptions {
            source,
            model_id: if m.id.is_empty() { id } else { m.id.clone() },
            dtype: (m.dtype != "auto").then(|| m.dtype.clone()),
            device: m.device.parse().map_err(anyhow::Error::msg)?,
            context_length: (m.context_length > 0).then_some(m.context_length),
            prefill_chunk: m.prefill_chunk,
            prefix_cache_bytes: m.prefix_cache_bytes,
            max_batch: m.max_batch,
        })
    });
    match options {
        Ok(options) => {
            tracing::info!(
                model = %options.model_id,
                mlx = mlx_sys::MLX_VERSION,
                backend = mlx_sys::BACKEND,
                blas = %mlx_sys::blas_info(),
                blas_core = mlx_sys::blas_core().as_deref().unwrap_or("none"),
                fewrow_kernel = ?mlx_sys::fewrow::isa(),
                "loading model"
            );
            Arc::new(move || MlxEngine::load(&options).map(|e| Box::new(e) as Box<dyn Engine>))
        }
        Err(e) => {
            let message = format!("model {:?}: {e}", m.name);
            Arc::new(move || Err(EngineError::InvalidRequest(message.clone())))
        }
    }
}
