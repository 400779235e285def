//! `mlx-serve bench`: measures any OpenAI-compatible server over plain HTTP — functional suite,
//! concurrent load, response-cache hits, a mixed soak with disconnects and malformed requests. Knows nothing of this server's internals, so the same
//! numbers can be taken from a competitor.

pub mod cache;
pub mod client;
pub mod load;
pub mod soak;
pub mod sse;
pub mod stats;
pub mod suite;

use std::path::Path;

use serde::Serialize;

pub use cache::{run_cache, CacheArgs, CacheReport};
pub use load::{run_load, LoadArgs, LoadReport};
pub use soak::{run_soak, SoakArgs, SoakReport};
pub use suite::{run_suite, SuiteArgs, SuiteReport};

/// `mlx-serve bench <command>`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Functional scenarios with latency/TTFT; fails when any scenario fails.
    Suite(SuiteArgs),
    /// Throughput and latency percentiles under concurrent load.
    Load(LoadArgs),
    /// Response-cache hit latency and hits/s.
    Cache(CacheArgs),
    /// A mixed load with disconnects and malformed requests for a while, sampling the server's
    /// RSS: answers by status class, latency percentiles, memory over time.
    Soak(SoakArgs),
}

/// Runs a bench command inside the caller's tokio runtime (actix's is fine). Prints the JSON
/// report to stdout (soak: text unless `--json`), writes `--out`, and errors — for a non-zero
/// exit — when a suite scenario failed, a load run had no successful request or a soak got an
/// unexpected answer.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Suite(a) => {
            let report = run_suite(&a).await?;
            emit(&report, a.out.as_deref())?;
            for s in report.tests.iter().filter(|s| s.status != "PASS") {
                eprintln!("FAIL {}: {}", s.name, s.error.as_deref().unwrap_or(""));
            }
            if report.failed() > 0 {
                anyhow::bail!(
                    "{} of {} scenarios failed",
                    report.failed(),
                    report.summary.total
                );
            }
        }
        BenchCommand::Load(a) => {
            let report = run_load(&a).await?;
            emit(&report, a.out.as_deref())?;
            if report.requests_ok == 0 {
                anyhow::bail!("no request succeeded: {:?}", report.errors);
            }
        }
        BenchCommand::Cache(a) => {
            let report = run_cache(&a).await?;
            emit(&report, a.out.as_deref())?;
        }
        BenchCommand::Soak(a) => {
            let report = run_soak(&a).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", soak::render_text(&report));
            }
            if let Some(path) = &a.out {
                std::fs::write(path, serde_json::to_string_pretty(&report)?)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            }
            if report.unexpected > 0 {
                anyhow::bail!("{} unexpected answers", report.unexpected);
            }
        }
    }
    Ok(())
}

/// For a `main` that is not already inside a runtime: builds a multi-threaded one (so the client
/// side of `load`/`cache` is not limited to one core) and runs [`run`] on it.
pub fn run_blocking(args: BenchArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn emit<T: Serialize>(report: &T, out: Option<&Path>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    println!("{text}");
    if let Some(path) = out {
        std::fs::write(path, &text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}
