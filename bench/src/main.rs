//! `mlx-serve-bench`: the HTTP benchmarks as their own binary, so the server carries no HTTP
//! client or TLS stack. `mlx-serve bench suite|load|cache|soak …` runs this binary.

use clap::Parser;
use mlx_serve_bench::BenchArgs;

#[derive(Debug, Parser)]
#[command(name = "mlx-serve-bench", version, about)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

fn main() -> std::process::ExitCode {
    match mlx_serve_bench::run_blocking(Cli::parse().bench) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
