//! The `mlx-serve` command line: one subcommand per variant, each in its own module.

pub mod analyze;
pub mod bench;
#[cfg(feature = "mlx")]
mod bench_batch;
#[cfg(feature = "mlx")]
pub mod bench_engine;
#[cfg(feature = "mlx")]
pub mod convert;
#[cfg(feature = "mlx")]
pub mod engine_loader;
#[cfg(feature = "mlx")]
pub mod generate;
pub mod model_args;
pub mod ps;
pub mod pull;
pub mod serve;
pub mod tools;

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
    /// Generate text for one prompt in the terminal, with speed figures.
    #[cfg(feature = "mlx")]
    Generate(generate::GenerateArgs),
    /// Fetch a model from the catalog (see --list).
    Pull(pull::PullArgs),
    /// List the models a running server has loaded, their size and idle time.
    Ps(ps::PsArgs),
    /// Write a model as a Hugging Face directory (config.json, safetensors, tokenizer).
    #[cfg(feature = "mlx")]
    Convert(convert::ConvertArgs),
    /// Tool-call parsing utilities.
    Tools(tools::ToolsArgs),
    /// Summarize request trace logs.
    Analyze(analyze::AnalyzeArgs),
    /// Benchmarks: the engine itself, or any OpenAI-compatible server (suite, load, cache).
    Bench(bench::BenchArgs),
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
    /// Any other command's failure, with its context.
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
    /// `serve` without `--fake` in a build that has no real engine.
    #[error("this build has no model engine (feature `mlx` is off); run `serve --fake`")]
    NoEngine,
    /// `serve --fake` in a build without the fake engines.
    #[error("this build has no fake engine (feature `testing` is off)")]
    NoFake,
    /// `serve --fake --script FILE` with a file that cannot be read or parsed.
    #[error("script {path}: {why}")]
    Script {
        /// The script file.
        path: std::path::PathBuf,
        /// What went wrong.
        why: String,
    },
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
        #[cfg(feature = "mlx")]
        Command::Generate(args) => Ok(generate::run(args)?),
        Command::Pull(args) => Ok(pull::run(args)?),
        Command::Ps(args) => Ok(ps::run(args)?),
        #[cfg(feature = "mlx")]
        Command::Convert(args) => Ok(convert::run(args)?),
        Command::Tools(args) => Ok(tools::run(args)?),
        Command::Analyze(args) => Ok(analyze::run(args)?),
        Command::Bench(args) => Ok(bench::run(args)?),
    }
}
