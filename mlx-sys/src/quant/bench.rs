//! `cargo test -p mlx-sys --release --lib quant_speed -- --ignored --nocapture`
//!
//! Per weight type, one decoder layer's products at a real model's shapes, timed two ways:
//! hot (each matrix multiplied again and again, so it stays in L2: the kernels' compute cost)
//! and cold (a stack of distinct layers, larger than the last-level cache, walked once per
//! pass like a decode step walks the model: each matrix comes from DRAM). Printed as µs per
//! layer at one activation row and each row count's time over that.

use super::tests::{random_blocks, Rng};
use super::*;

/// `(n, k)` of one layer's products: SmolLM2-135M (fused qkv, o, fused gate/up, down) and
/// Qwen2.5-0.5B (the same four; its K-quants hold only `down`, the one k that 256 divides).
const SMOL: &[(usize, usize)] = &[(960, 576), (576, 576), (3072, 576), (576, 1536)];
const QWEN: &[(usize, usize)] = &[(1152, 896), (896, 896), (9728, 896), (896, 4864)];
const QWEN_DOWN: &[(usize, usize)] = &[(896, 4864)];

const ROWS: [usize; 6] = [1, 2, 4, 8, 16, 32];

/// The cold stack's size: well above this machine's last-level cache.
const COLD_BYTES: usize = 768 << 20;

struct Layer {
    /// Per product: ggml type as the kernel is called with it, bytes, n, k.
    mats: Vec<(u32, Vec<u8>, usize, usize)>,
}

fn layer(t: u32, shapes: &[(usize, usize)], rng: &mut Rng) -> Layer {
    let mats = shapes
        .iter()
        .map(|&(n, k)| {
            let w = random_blocks(t, n * k / block_elems(t), rng);
            let r = repack(t, w.clone(), n, k);
            (r.ggml_type, r.bytes, n, k)
        })
        .collect();
    Layer { mats }
}

fn run_layer(l: &Layer, x: &[f32], m: usize, out: &mut [f32]) {
    for (t, w, n, k) in &l.mats {
        // SAFETY: x holds m × max k floats, out m × max n; w is n rows of k elements.
        unsafe {
            qmm_kernel(
                x.as_ptr(),
                m as i64,
                *k as i64,
                w.as_ptr(),
                *n as i64,
                *t,
                out.as_mut_ptr(),
            )
        };
    }
}

/// Best of a few passes, µs per layer.
fn time(layers: &[Layer], x: &[f32], m: usize, out: &mut [f32], passes: usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..passes {
        let t0 = std::time::Instant::now();
        for l in layers {
            run_layer(l, x, m, out);
        }
        best = best.min(t0.elapsed().as_secs_f64() / layers.len() as f64);
    }
    best * 1e6
}

#[test]
#[ignore]
fn quant_speed() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average: {}", load.trim());
    println!("| type, shapes | case | µs/layer m=1 | m=2 | m=4 | m=8 | m=16 | m=32 |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut rng = Rng(1);
    let cases: [(u32, &str, &[(usize, usize)]); 6] = [
        (Q4_1, "SmolLM2", SMOL),
        (Q8_0, "SmolLM2", SMOL),
        (Q4_0, "SmolLM2", SMOL),
        (Q5_0, "Qwen", QWEN),
        (Q4_K, "Qwen down", QWEN_DOWN),
        (Q6_K, "Qwen down", QWEN_DOWN),
    ];
    // QUANT_SPEED_ONLY=Q4_1,Q6_K limits the run to those types.
    let only = std::env::var("QUANT_SPEED_ONLY").unwrap_or_default();
    for (t, model, shapes) in cases {
        if !only.is_empty() && !only.split(',').any(|o| o == super::type_label(t)) {
            continue;
        }
        let hot = layer(t, shapes, &mut rng);
        let bytes: usize = hot.mats.iter().map(|m| m.1.len()).sum();
        // Copies, not fresh random data: the cache sees distinct addresses either way.
        let cold: Vec<Layer> = (0..COLD_BYTES.div_ceil(bytes))
            .map(|_| Layer {
                mats: hot.mats.clone(),
            })
            .collect();
        let kmax = shapes.iter().map(|s| s.1).max().unwrap_or(0);
        let nmax = shapes.iter().map(|s| s.0).max().unwrap_or(0);
        for (case, layers, passes) in [("hot", std::slice::from_ref(&hot), 30), ("cold", &cold, 3)]
        {
            let mut row = Vec::new();
            let mut one = 0.0;
            for m in ROWS {
                let x: Vec<f32> = (0..m * kmax).map(|_| rng.unit()).collect();
                let mut out = vec![0f32; m * nmax];
                let us = time(layers, &x, m, &mut out, passes);
                if m == 1 {
                    one = us;
                    row.push(format!("{us:.0}"));
                } else {
                    row.push(format!("{:.2}×", us / one));
                }
            }
            println!(
                "| {} {model} ({:.1} MB/layer) | {case} | {} |",
                super::type_label(t),
                bytes as f64 / 1e6,
                row.join(" | ")
            );
        }
    }
}
