//! `mlx-serve bench engine --rows` and `--batch`: what batching costs on this machine, measured
//! in one process on one model (the few-row product table the batching design rests on, and the
//! aggregate decode speed of batches stepping together).

use mlx_serve_engine::engine::Engine;
use mlx_serve_engine::model::mlx::engine::MlxEngine;

const ROWS: [i32; 6] = [1, 2, 4, 8, 16, 32];

pub fn run_rows(json: bool, engine: &MlxEngine) -> anyhow::Result<()> {
    let table = engine.bench_rows(&ROWS, 20)?;
    let report = serde_json::json!({
        "model": engine.info().model_id,
        "blas": mlx_sys::blas_info(),
        "isa": format!("{:?}", mlx_sys::fewrow::isa()),
        "shapes": table.iter().map(|r| serde_json::json!({
            "name": r.name, "out": r.out, "in": r.inp,
            "rows": r.costs.iter().map(|(m, ours, blas)| serde_json::json!({
                "m": m, "kernel_us": ours * 1e6, "openblas_us": blas * 1e6,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "few-row products on {} ({}, kernel {}): cost of m rows relative to m = 1 (µs for m = 1)",
        report["model"].as_str().unwrap_or_default(),
        report["blas"].as_str().unwrap_or_default(),
        report["isa"].as_str().unwrap_or_default()
    );
    let header: Vec<String> = ROWS.iter().map(|m| format!("m={m}")).collect();
    println!("| product | path | m=1 µs | {} |", header.join(" | "));
    println!("|---|---|---:|{}", "---:|".repeat(ROWS.len()));
    for r in &table {
        for (path, pick) in [("kernel", 0usize), ("openblas", 1)] {
            let cost = |c: &(i32, f64, f64)| if pick == 0 { c.1 } else { c.2 };
            let base = r.costs.first().map(cost).unwrap_or(f64::NAN);
            let ratios: Vec<String> = r
                .costs
                .iter()
                .map(|c| format!("{:.2}×", cost(c) / base))
                .collect();
            println!(
                "| {} {}×{} | {path} | {:.0} | {} |",
                r.name,
                r.out,
                r.inp,
                base * 1e6,
                ratios.join(" | ")
            );
        }
    }
    Ok(())
}

pub fn run_batch(
    sizes: &[usize],
    prompt: &[u32],
    steps: usize,
    json: bool,
    engine: &MlxEngine,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &b in sizes {
        let tok_s = engine.bench_batch_decode(prompt, b.max(1), steps)?;
        rows.push((b, tok_s));
    }
    let base = rows.first().map(|r| r.1).unwrap_or(f64::NAN);
    if json {
        let report = serde_json::json!({
            "model": engine.info().model_id,
            "prompt_tokens": prompt.len(),
            "steps": steps,
            "batches": rows.iter().map(|(b, t)| serde_json::json!({"batch": b, "tok_s": t})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "batched decode on {} after ~{} prompt tokens, {} steps",
        engine.info().model_id,
        prompt.len(),
        steps
    );
    println!("| batch | aggregate tok/s | vs first |\n|---:|---:|---:|");
    for (b, t) in rows {
        println!("| {b} | {t:.1} | {:.2}× |", t / base);
    }
    Ok(())
}
