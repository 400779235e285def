//! `mlx-serve convert`: write any loadable model as a Hugging Face directory (config.json,
//! model.safetensors, tokenizer.json, tokenizer_config.json with the chat template), so the
//! safetensors path is testable on real weights and other MLX tools can run the same weights.

use std::path::PathBuf;

use clap::Args;
use mlx_serve_engine::model::mlx::loader;

use super::model_args::ModelArgs;

#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output directory (created).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let models_dir = args
        .model
        .models_dir
        .clone()
        .unwrap_or_else(mlx_serve_engine::model::catalog::default_models_dir);
    let (source, id) = super::pull::resolve(&args.model.model, &models_dir)?;
    let dtype = loader::parse_dtype(args.model.dtype.as_deref().unwrap_or("float32"))
        .map_err(anyhow::Error::msg)?;
    mlx_rs::Device::set_default(&mlx_rs::Device::cpu());
    eprintln!(
        "mlx-serve: converting {id} to {} ({})",
        args.out.display(),
        loader::dtype_name(dtype)
    );
    let model = loader::load(&source, dtype, false).map_err(anyhow::Error::msg)?;
    loader::write_hf_dir(&model, dtype, &args.out).map_err(anyhow::Error::msg)?;
    eprintln!("mlx-serve: wrote {}", args.out.display());
    Ok(())
}
