use std::process::ExitCode;

use clap::Parser;
use mlx_serve::cli::{self, Cli, Engines};

/// The real engine's loader: MLX when built with it (the default).
fn engines() -> Engines {
    #[cfg(feature = "mlx")]
    let real = Some(cli::engine_loader::mlx_factory as cli::serve::EngineLoader);
    #[cfg(not(feature = "mlx"))]
    let real = None;
    Engines { real }
}

fn main() -> ExitCode {
    match cli::run(Cli::parse(), engines()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mlx-serve: {e}");
            ExitCode::FAILURE
        }
    }
}
