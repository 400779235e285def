use std::process::ExitCode;

use clap::Parser;
use mlx_serve::cli::{self, Cli, Engines};

/// The real engine's loader; `None` until the MLX engine is wired in.
fn engines() -> Engines {
    Engines { real: None }
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
