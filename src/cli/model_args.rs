//! Flags shared by the commands that load a model or sample from it.

use clap::Args;
use mlx_serve_engine::engine::SamplingParams;

/// Which model to load and how.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Catalog name (`mlx-serve pull --list`), a .gguf file or a Hugging Face directory.
    #[arg(long, short = 'm', default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// Where pulled models live (default: $MLX_SERVE_MODELS or ~/.cache/mlx-serve/models).
    #[arg(long)]
    pub models_dir: Option<std::path::PathBuf>,
    /// Weight dtype: float32, bfloat16, float16. Left out (auto): on CPU a GGUF's
    /// Q4_0/Q4_1/Q5_0/Q8_0/Q4_K/Q6_K matrices stay quantized, the rest float32
    /// (MLX_SERVE_GGUF_BLOCKS=0: all float32); bfloat16 on a GPU.
    #[arg(long)]
    pub dtype: Option<String>,
    /// auto, cpu or gpu.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// Sampling flags, mapped onto the engine's `SamplingParams`.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// 0 disables.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    pub fn to_params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
            logit_bias: Vec::new(),
        }
    }
}

#[cfg(feature = "mlx")]
impl ModelArgs {
    /// Resolves the model (pulling a catalog model on first use) into engine options.
    pub fn engine_options(
        &self,
        prefill_chunk: usize,
        prefix_cache_bytes: usize,
    ) -> anyhow::Result<mlx_serve_engine::model::mlx::engine::EngineOptions> {
        use mlx_serve_engine::model::catalog;
        use mlx_serve_engine::model::mlx::engine::EngineOptions;
        let models_dir = self
            .models_dir
            .clone()
            .unwrap_or_else(catalog::default_models_dir);
        let (source, model_id) = super::pull::resolve(&self.model, &models_dir)?;
        Ok(EngineOptions {
            source,
            model_id,
            dtype: self.dtype.clone(),
            device: self.device.parse().map_err(anyhow::Error::msg)?,
            context_length: None,
            prefill_chunk,
            prefix_cache_bytes,
            // One request at a time (CLI commands and single-stream benchmarks).
            max_batch: 1,
        })
    }
}
