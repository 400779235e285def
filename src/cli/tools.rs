//! `mlx-serve tools parse`: model text on stdin → OpenAI-shaped `{content, tool_calls}` on stdout,
//! with the same parser the server uses (handy for checking what a model's output becomes).

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use mlx_serve_actors::tool_parser::{run_parse_cli, run_parse_stream_cli, ToolFormat};

#[derive(Debug, Clone, Args)]
pub struct ToolsArgs {
    #[command(subcommand)]
    pub command: ToolsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ToolsCommand {
    /// Parse model output from stdin into tool calls.
    Parse {
        /// hermes, qwen3_coder, mistral, llama3_json, pythonic, deepseek_v3, kimi_k2, glm45,
        /// gpt_oss, minimax_m2, functiongemma, json, or auto.
        #[arg(long, default_value = "auto")]
        format: String,
        /// Print the streamed deltas (one JSON object per line) instead of the whole result.
        #[arg(long)]
        stream: bool,
        /// With --stream: characters per simulated token.
        #[arg(long, default_value_t = 4)]
        chunk_chars: usize,
        /// A JSON file with the request's `tools` array (calls to other names stay text).
        #[arg(long)]
        tools: Option<PathBuf>,
    },
}

pub fn run(args: ToolsArgs) -> anyhow::Result<()> {
    let ToolsCommand::Parse {
        format,
        tools,
        stream,
        chunk_chars,
    } = args.command;
    let format: ToolFormat = format
        .parse()
        .map_err(|e| anyhow::anyhow!("--format: {e}"))?;
    let tools = match tools {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("--tools {}: {e}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("--tools {}: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    if stream {
        for line in run_parse_stream_cli(format, tools, &input, chunk_chars) {
            println!("{line}");
        }
        return Ok(());
    }
    let out = run_parse_cli(format, tools, &input);
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
