//! The `mlx-serve` command line: one subcommand per variant, each in its own module.

pub mod serve;

use clap::{Parser, Subcommand};

use crate::config::ConfigError;

/// Local LLM inference server on MLX.
#[derive(Debug, Parser)]
#[command(name = "mlx-serve", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the model over the OpenAI-compatible HTTP API.
    Serve(serve::ServeArgs),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Server or file I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// `serve` without `--fake` in a build that has no real engine.
    #[error("this build has no model engine (feature `mlx` is off); run `serve --fake`")]
    NoEngine,
}

/// Engines main.rs can provide (the MLX loader with feature `mlx`).
#[derive(Default, Clone, Copy)]
pub struct Engines {
    /// Builds the factory of the real engine from the settings.
    pub real: Option<serve::EngineLoader>,
}

/// Run a parsed command line.
pub fn run(cli: Cli, engines: Engines) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve::run(args, engines.real),
    }
}
