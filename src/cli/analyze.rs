//! `mlx-serve analyze`: summarize request trace logs (JSONL) written by the server.

use std::path::PathBuf;

use clap::Args;
use mlx_serve_actors::metrics::{analyze_files, render_text, AnalyzeOptions};

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Trace files; rotated ones (trace.jsonl.1 …) may be given together.
    #[arg(required = true)]
    pub traces: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// How many of the slowest requests to list.
    #[arg(long, default_value_t = 10)]
    pub slowest: usize,
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    let report = analyze_files(
        &args.traces,
        &AnalyzeOptions {
            slowest: args.slowest,
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&report));
    }
    Ok(())
}
