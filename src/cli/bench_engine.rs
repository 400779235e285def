//! `mlx-serve bench engine`: how fast the engine decodes and what it costs on top of the model.
//!
//! Runs, in one process and on one model: the bare decoder (forward + evaluate + argmax per
//! token), then the full engine (template, sampler, detokenizer, stop matching, prefix cache) on
//! the same prompt, and reports both and their ratio, so the overhead is a measured number.

use std::time::Instant;

use clap::Args;
use mlx_serve_engine::engine::{
    ChatMessage, Constraint, Engine, GenerateRequest, Prompt, SamplingParams, SeqEvent,
};
use mlx_serve_engine::model::mlx::engine::{MlxEngine, RESUMED};
use mlx_serve_engine::model::mlx::profile::Profile;

use super::model_args::ModelArgs;

#[derive(Debug, Clone, Args)]
pub struct EngineBenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Tokens to decode per run.
    #[arg(long, default_value_t = 128)]
    pub tokens: usize,
    /// Approximate prompt length in tokens for the long-prompt TTFT figure.
    #[arg(long, default_value_t = 1000)]
    pub long_prompt: usize,
    /// The decode prompt (a chat user message) from this file, e.g. the one a server benchmark
    /// used, so that the two decode rates compare like with like.
    #[arg(long)]
    pub prompt_file: Option<std::path::PathBuf>,
    /// Prompt tokens per prefill pass (the server's `model.prefill_chunk`).
    #[arg(long, default_value_t = 512)]
    pub prefill_chunk: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Instead of the speed figures: where the time of a long-prompt prefill and of decode steps
    /// goes, per group of operations (evaluating after each group).
    #[arg(long)]
    pub profile: bool,
    /// Also decode the same prompt under a JSON-schema constraint (an object with one long
    /// string) and report its decode rate next to the unconstrained one.
    #[arg(long)]
    pub constrained: bool,
    /// Instead of the speed figures: the few-row micro-benchmark (what a projection of this
    /// model costs for m = 1, 2, 4, … 32 rows relative to one row, with the few-row kernel and
    /// with OpenBLAS alone).
    #[arg(long)]
    pub rows: bool,
    /// Instead of the speed figures: aggregate decode tok/s of batches of these sizes (comma
    /// list), each sequence after a prefill of `--long-prompt` tokens less a few per member.
    #[arg(long, value_delimiter = ',')]
    pub batch: Vec<usize>,
}

/// The schema `--constrained` decodes under: the story goes into one string field, so the
/// grammar stays open for as long as the unconstrained run.
fn story_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {"title": {"type": "string", "maxLength": 60}, "story": {"type": "string"}},
        "required": ["title", "story"],
        "additionalProperties": false
    })
}

struct Run {
    ttft_s: f64,
    prompt_tokens: usize,
    cached_tokens: usize,
    completion_tokens: usize,
    decode_tok_s: f64,
}

fn chat(text: &str) -> Prompt {
    Prompt::Chat {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: text.into(),
            ..Default::default()
        }],
        tools: Vec::new(),
        add_generation_prompt: true,
        template_kwargs: Default::default(),
    }
}

fn run_once(engine: &mut MlxEngine, id: u64, prompt: Prompt, tokens: usize) -> anyhow::Result<Run> {
    run_with(engine, id, prompt, tokens, None)
}

fn run_with(
    engine: &mut MlxEngine,
    id: u64,
    prompt: Prompt,
    tokens: usize,
    constraint: Option<Constraint>,
) -> anyhow::Result<Run> {
    let start = Instant::now();
    engine.add(
        id,
        GenerateRequest {
            prompt,
            sampling: SamplingParams::default(),
            max_tokens: Some(tokens),
            stop: Vec::new(),
            logprobs: None,
            constraint,
            reasoning: None,
            encoded: None,
        },
    )?;
    let mut ttft = None;
    while engine.has_work() {
        for (_, event) in engine.step() {
            match event {
                SeqEvent::Started { .. } => {
                    ttft.get_or_insert_with(|| start.elapsed().as_secs_f64());
                }
                SeqEvent::Finished { usage, timings, .. } => {
                    let decoded = usage.completion_tokens.saturating_sub(1) as f64;
                    return Ok(Run {
                        ttft_s: ttft.unwrap_or_default(),
                        prompt_tokens: usage.prompt_tokens,
                        cached_tokens: usage.cached_tokens,
                        completion_tokens: usage.completion_tokens,
                        decode_tok_s: decoded / timings.decode_s.max(1e-9),
                    });
                }
                SeqEvent::Failed(e) => anyhow::bail!(e),
                SeqEvent::Text { .. } => {}
            }
        }
    }
    anyhow::bail!("the engine stopped without finishing the sequence")
}

fn filler(tokens: usize) -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(tokens / 10 + 1)
}

/// Rows of one profile: group, total ms, ms per pass, share of the total.
fn profile_json(p: &Profile, passes: usize) -> serde_json::Value {
    let total = p.total().as_secs_f64().max(1e-12);
    let groups: Vec<_> = p
        .groups()
        .iter()
        .map(|(name, d, _)| {
            serde_json::json!({
                "group": name,
                "ms": d.as_secs_f64() * 1e3,
                "ms_per_pass": d.as_secs_f64() * 1e3 / passes.max(1) as f64,
                "share": d.as_secs_f64() / total,
            })
        })
        .collect();
    serde_json::json!({ "passes": passes, "total_ms": total * 1e3, "groups": groups })
}

fn run_profile(args: &EngineBenchArgs, engine: &MlxEngine) -> anyhow::Result<()> {
    let info = engine.info();
    let prompt = engine.tokenize_prompt(&chat(&filler(args.long_prompt)))?;
    let chunk = args.prefill_chunk;
    let (prefill, decode, resumed) = engine.bench_profile(&prompt, args.tokens)?;
    let report = serde_json::json!({
        "model": info.model_id,
        "dtype": info.dtype,
        "backend": info.backend,
        "blas": mlx_sys::blas_info(),
        "prompt_tokens": prompt.len(),
        "prefill_chunk": chunk,
        "prefill": profile_json(&prefill, prompt.len().div_ceil(chunk.max(1))),
        "decode": profile_json(&decode, args.tokens),
        "resumed": profile_json(&resumed, 2),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    for (title, key) in [
        (format!("prefill of {} tokens", prompt.len()), "prefill"),
        (format!("decode, {} tokens", args.tokens), "decode"),
        (
            format!(
                "resumed from the prefix cache: {} new tokens, the last in a decode slot",
                RESUMED - 1
            ),
            "resumed",
        ),
    ] {
        let p = &report[key];
        println!(
            "\n{title}: {:.1} ms in {} passes\n| group | ms | ms/pass | share |\n|---|---:|---:|---:|",
            p["total_ms"].as_f64().unwrap_or_default(),
            p["passes"]
        );
        for g in p["groups"].as_array().into_iter().flatten() {
            println!(
                "| {} | {:.1} | {:.2} | {:.1}% |",
                g["group"].as_str().unwrap_or_default(),
                g["ms"].as_f64().unwrap_or_default(),
                g["ms_per_pass"].as_f64().unwrap_or_default(),
                g["share"].as_f64().unwrap_or_default() * 100.0
            );
        }
    }
    Ok(())
}

pub fn run(args: EngineBenchArgs) -> anyhow::Result<()> {
    let options = args
        .model
        .engine_options(args.prefill_chunk.max(1), 256 << 20)?;
    let mut engine = MlxEngine::load(&options)?;
    if args.profile {
        return run_profile(&args, &engine);
    }
    if args.rows {
        return super::bench_batch::run_rows(args.json, &engine);
    }
    if !args.batch.is_empty() {
        let prompt = engine.tokenize_prompt(&chat(&filler(args.long_prompt)))?;
        return super::bench_batch::run_batch(
            &args.batch,
            &prompt,
            args.tokens,
            args.json,
            &engine,
        );
    }
    let info = engine.info();
    let story = match &args.prompt_file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("reading --prompt-file {}: {e}", p.display()))?,
        None => "Write a long story about a lighthouse keeper and the sea.".to_owned(),
    };
    let story = story.as_str();
    // Greedy with ignore-EOS is not available, so pick a prompt that runs long and take the
    // tokens actually produced.
    let prompt_ids = engine.tokenize_prompt(&chat(story))?;
    let (bare_prefill, bare_per_token, build_per_token) =
        engine.bench_bare_forward(&prompt_ids, args.tokens)?;
    let short = run_once(&mut engine, 1, chat(story), args.tokens)?;
    let filler = filler(args.long_prompt);
    let long_cold = run_once(
        &mut engine,
        2,
        chat(&format!("{filler}\nSummarize the text above.")),
        8,
    )?;
    let long_warm = run_once(
        &mut engine,
        3,
        chat(&format!("{filler}\nHow many times does 'fox' appear?")),
        8,
    )?;
    let constrained = if args.constrained {
        let prompt = chat(&format!(
            "{story}\nAnswer as JSON with a title and the story."
        ));
        let plain = run_once(&mut engine, 4, prompt.clone(), args.tokens)?;
        let guided = run_with(
            &mut engine,
            5,
            prompt,
            args.tokens,
            Some(Constraint::JsonSchema(story_schema())),
        )?;
        Some((plain, guided))
    } else {
        None
    };
    let engine_per_token = 1.0 / short.decode_tok_s.max(1e-9);
    let mut report = serde_json::json!({
        "model": info.model_id,
        "dtype": info.dtype,
        "backend": info.backend,
        "blas": mlx_sys::blas_info(),
        "bare": {
            "prefill_s": bare_prefill,
            "prompt_tokens": prompt_ids.len(),
            "decode_tok_s": 1.0 / bare_per_token.max(1e-9),
            "ms_per_token": bare_per_token * 1e3,
            "graph_build_ms_per_token": build_per_token * 1e3,
        },
        "engine": {
            "ttft_s": short.ttft_s,
            "decode_tok_s": short.decode_tok_s,
            "ms_per_token": engine_per_token * 1e3,
            "overhead_ms_per_token": (engine_per_token - bare_per_token) * 1e3,
            "overhead_ratio": engine_per_token / bare_per_token.max(1e-12),
        },
        "long_prompt": {
            "prompt_tokens": long_cold.prompt_tokens,
            "cold_ttft_s": long_cold.ttft_s,
            "cold_prefill_tok_s": long_cold.prompt_tokens as f64 / long_cold.ttft_s.max(1e-9),
            "shared_prefix_ttft_s": long_warm.ttft_s,
            "shared_prefix_cached_tokens": long_warm.cached_tokens,
        },
    });
    if let Some((plain, guided)) = &constrained {
        report["constrained"] = serde_json::json!({
            "unconstrained_decode_tok_s": plain.decode_tok_s,
            "unconstrained_tokens": plain.completion_tokens,
            "constrained_decode_tok_s": guided.decode_tok_s,
            "constrained_tokens": guided.completion_tokens,
            "ratio": guided.decode_tok_s / plain.decode_tok_s.max(1e-9),
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "model {} ({}, {}, BLAS: {})",
        info.model_id,
        info.dtype,
        info.backend,
        mlx_sys::blas_info()
    );
    println!("| measure | value |\n|---|---|");
    println!(
        "| bare forward decode | {:.1} tok/s ({:.1} ms/token) |",
        1.0 / bare_per_token,
        bare_per_token * 1e3
    );
    println!(
        "| of which building the lazy graph | {:.2} ms/token ({:.1}%) |",
        build_per_token * 1e3,
        build_per_token / bare_per_token * 100.0
    );
    println!(
        "| engine decode | {:.1} tok/s ({:.1} ms/token) |",
        short.decode_tok_s,
        engine_per_token * 1e3
    );
    println!(
        "| engine overhead per token | {:.2} ms ({:.1}%) |",
        (engine_per_token - bare_per_token) * 1e3,
        (engine_per_token / bare_per_token - 1.0) * 100.0
    );
    println!(
        "| TTFT, {}-token chat prompt | {:.3} s |",
        short.prompt_tokens, short.ttft_s
    );
    println!(
        "| TTFT, {}-token prompt, cold | {:.3} s ({:.0} tok/s) |",
        long_cold.prompt_tokens,
        long_cold.ttft_s,
        long_cold.prompt_tokens as f64 / long_cold.ttft_s
    );
    println!(
        "| TTFT, same prefix + new question | {:.3} s ({} tokens reused) |",
        long_warm.ttft_s, long_warm.cached_tokens
    );
    if let Some((plain, guided)) = &constrained {
        println!(
            "| decode, JSON prompt, unconstrained | {:.1} tok/s ({} tokens) |",
            plain.decode_tok_s, plain.completion_tokens
        );
        println!(
            "| decode, same prompt, JSON-schema constrained | {:.1} tok/s ({} tokens, {:.0}% of unconstrained) |",
            guided.decode_tok_s,
            guided.completion_tokens,
            guided.decode_tok_s / plain.decode_tok_s.max(1e-9) * 100.0
        );
    }
    Ok(())
}
