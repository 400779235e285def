//! `mlx-serve bench`: the engine benchmark (in process) and the HTTP benchmarks that work against
//! any OpenAI-compatible server.

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Decode tok/s, TTFT and the engine's per-token overhead over the bare MLX forward pass.
    #[cfg(feature = "mlx")]
    Engine(super::bench_engine::EngineBenchArgs),
    #[command(flatten)]
    Http(crate::bench::BenchCommand),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        #[cfg(feature = "mlx")]
        BenchCommand::Engine(a) => super::bench_engine::run(a),
        BenchCommand::Http(command) => {
            crate::bench::run_blocking(crate::bench::BenchArgs { command })
        }
    }
}
