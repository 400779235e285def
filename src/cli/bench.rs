//! `mlx-serve bench`: the engine benchmark runs in process; the HTTP benchmarks (`suite`, `load`,
//! `cache`, `soak`) are the separate `mlx-serve-bench` binary, which this forwards to so the
//! server itself carries no HTTP client.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
#[command(
    after_help = "suite, load, cache, soak: run by `mlx-serve-bench` with the same \
                        arguments (`mlx-serve-bench --help`)"
)]
pub enum BenchCommand {
    /// Decode tok/s, TTFT and the engine's per-token overhead over the bare MLX forward pass.
    #[cfg(feature = "mlx")]
    Engine(super::bench_engine::EngineBenchArgs),
    #[command(external_subcommand)]
    Http(Vec<OsString>),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        #[cfg(feature = "mlx")]
        BenchCommand::Engine(a) => super::bench_engine::run(a),
        BenchCommand::Http(argv) => {
            let exe = bench_binary();
            let status = std::process::Command::new(&exe)
                .args(argv)
                .status()
                .with_context(|| {
                    format!(
                        "running {} (build it with `cargo build -p mlx-serve-bench`, or put it on \
                         PATH)",
                        exe.display()
                    )
                })?;
            if !status.success() {
                anyhow::bail!("mlx-serve-bench exited with {status}");
            }
            Ok(())
        }
    }
}

/// `mlx-serve-bench` beside this executable (a cargo build puts both in one folder), else
/// whatever PATH finds.
fn bench_binary() -> PathBuf {
    let name = format!("mlx-serve-bench{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}
