//! `mlx-serve generate`: one prompt through the real engine, streamed to the terminal, with the
//! numbers that matter (TTFT, prompt and decode speed, peak memory) at the end.

use std::io::Write;
use std::time::Instant;

use clap::Args;
use mlx_serve_engine::engine::{ChatMessage, Engine, GenerateRequest, Prompt, SeqEvent};
use mlx_serve_engine::model::mlx::engine::MlxEngine;

use super::model_args::{ModelArgs, SamplingArgs};

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The user message (or raw text with --raw).
    #[arg(long, short = 'p')]
    pub prompt: String,
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Feed the prompt as is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Stop strings (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let options = args.model.engine_options(512, 0)?;
    eprintln!(
        "mlx-serve: loading {} (MLX {} {}, BLAS: {})",
        options.model_id,
        mlx_sys::MLX_VERSION,
        mlx_sys::BACKEND,
        mlx_sys::blas_info()
    );
    let mut engine = MlxEngine::load(&options)?;
    let info = engine.info();
    eprintln!(
        "mlx-serve: {} ({}, {}, {}) loaded in {:.2}s",
        info.model_id, info.architecture, info.dtype, info.backend, info.load_seconds
    );
    let prompt = if args.raw {
        Prompt::Text(args.prompt.clone())
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage {
                role: "system".into(),
                content: system.clone(),
                ..Default::default()
            });
        }
        messages.push(ChatMessage {
            role: "user".into(),
            content: args.prompt.clone(),
            ..Default::default()
        });
        Prompt::Chat {
            messages,
            tools: Vec::new(),
            add_generation_prompt: true,
            template_kwargs: Default::default(),
        }
    };
    let request = GenerateRequest {
        prompt,
        sampling: args.sampling.to_params(),
        max_tokens: Some(args.max_tokens),
        stop: args.stop.clone(),
        logprobs: None,
        constraint: None,
        reasoning: None,
        encoded: None,
    };
    let _ = mlx_rs::memory::reset_peak_memory();
    let start = Instant::now();
    engine.add(1, request)?;
    let mut first_token = None;
    let mut stdout = std::io::stdout();
    while engine.has_work() {
        for (_, event) in engine.step() {
            match event {
                SeqEvent::Started { .. } => {
                    first_token.get_or_insert_with(Instant::now);
                }
                SeqEvent::Text { text, .. } => {
                    write!(stdout, "{text}")?;
                    stdout.flush()?;
                }
                SeqEvent::Finished {
                    reason,
                    usage,
                    timings,
                    ..
                } => {
                    let ttft = first_token.map_or(0.0, |t| (t - start).as_secs_f64());
                    let new_prompt = usage.prompt_tokens - usage.cached_tokens;
                    let decoded = usage.completion_tokens.saturating_sub(1);
                    let peak = mlx_rs::memory::peak_memory().unwrap_or(0);
                    eprintln!();
                    eprintln!(
                        "finish: {reason:?} | prompt: {} tokens ({} cached) | TTFT {:.3}s | prompt {:.1} tok/s | \
                         generated {} tokens | decode {:.1} tok/s | peak memory {:.1} MB",
                        usage.prompt_tokens,
                        usage.cached_tokens,
                        ttft,
                        new_prompt as f64 / timings.prefill_s.max(1e-9),
                        usage.completion_tokens,
                        decoded as f64 / timings.decode_s.max(1e-9),
                        peak as f64 / 1e6,
                    );
                }
                SeqEvent::Failed(e) => anyhow::bail!(e),
            }
        }
    }
    Ok(())
}
