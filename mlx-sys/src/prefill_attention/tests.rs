use super::*;

struct Case {
    heads: usize,
    kv_heads: usize,
    d: usize,
    keys: usize,
    window: i32,
}

fn random(n: usize, seed: &mut u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// q `[heads, keys, d]` (every position's query), k/v `[kv_heads, keys, d]`.
struct Inputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

fn inputs(c: &Case, seed: u64) -> Inputs {
    let mut s = seed;
    Inputs {
        q: random(c.heads * c.keys * c.d, &mut s),
        k: random(c.kv_heads * c.keys * c.d, &mut s),
        v: random(c.kv_heads * c.keys * c.d, &mut s),
    }
}

/// The queries at positions `start..start + len` over keys `0..start + len`, `[len, heads, d]`.
fn run(c: &Case, x: &Inputs, start: usize, len: usize, scale: f32) -> Vec<f32> {
    let keys = start + len;
    let mut out = vec![0f32; len * c.heads * c.d];
    let strided = |ptr: *const f32| Strided {
        ptr,
        head_stride: (c.keys * c.d) as i64,
        pos_stride: c.d as i64,
    };
    // SAFETY: the buffers hold what the kernel reads and writes.
    unsafe {
        prefill_attention_kernel(
            strided(x.q.as_ptr().add(start * c.d)),
            strided(x.k.as_ptr()),
            strided(x.v.as_ptr()),
            len as i64,
            keys as i64,
            c.heads as i64,
            c.kv_heads as i64,
            c.d as i64,
            scale,
            c.window,
            out.as_mut_ptr(),
        );
    }
    out
}

/// Plain f64 attention of the query at position `p` of head `h`.
fn reference(c: &Case, x: &Inputs, h: usize, p: usize, scale: f32) -> Vec<f64> {
    let g = h / (c.heads / c.kv_heads);
    let from = match c.window {
        w if w > 0 => (p + 1).saturating_sub(w as usize),
        _ => 0,
    };
    let q = &x.q[(h * c.keys + p) * c.d..][..c.d];
    let scores: Vec<f64> = (from..=p)
        .map(|t| {
            let k = &x.k[(g * c.keys + t) * c.d..][..c.d];
            q.iter()
                .zip(k)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
                * scale as f64
        })
        .collect();
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = w.iter().sum();
    let mut out = vec![0f64; c.d];
    for (t, wt) in (from..=p).zip(&w) {
        let v = &x.v[(g * c.keys + t) * c.d..][..c.d];
        for (o, &vi) in out.iter_mut().zip(v) {
            *o += wt / total * vi as f64;
        }
    }
    out
}

#[test]
fn matches_the_f64_reference_with_and_without_a_window() {
    for case in [
        Case {
            heads: 14,
            kv_heads: 2,
            d: 64,
            keys: 700,
            window: 0,
        },
        Case {
            heads: 9,
            kv_heads: 3,
            d: 64,
            keys: 600,
            window: 0,
        },
        Case {
            heads: 4,
            kv_heads: 1,
            d: 32,
            keys: 650,
            window: 100,
        },
        Case {
            heads: 2,
            kv_heads: 2,
            d: 8,
            keys: 5,
            window: 0,
        },
    ] {
        let x = inputs(&case, 7);
        let scale = 1.0 / (case.d as f32).sqrt();
        for (start, len) in [
            (0, case.keys),
            (case.keys - 300.min(case.keys - 1), 300.min(case.keys - 1)),
        ] {
            let out = run(&case, &x, start, len, scale);
            let mut worst = 0f64;
            for p in 0..len {
                for h in 0..case.heads {
                    let want = reference(&case, &x, h, start + p, scale);
                    let got = &out[(p * case.heads + h) * case.d..][..case.d];
                    for (g, w) in got.iter().zip(&want) {
                        worst = worst.max((*g as f64 - w).abs());
                    }
                }
            }
            assert!(
                worst < 1e-5,
                "heads {} window {} start {start}: off by {worst}",
                case.heads,
                case.window
            );
        }
    }
}

/// Prefix reuse needs a position's attention to be the same bits whichever chunk computed it.
#[test]
fn a_query_gives_the_same_bits_in_any_chunk() {
    for case in [
        Case {
            heads: 14,
            kv_heads: 2,
            d: 64,
            keys: 1100,
            window: 0,
        },
        Case {
            heads: 4,
            kv_heads: 1,
            d: 32,
            keys: 900,
            window: 300,
        },
        // SmolLM2's shapes: groups of 3 heads.
        Case {
            heads: 9,
            kv_heads: 3,
            d: 64,
            keys: 1300,
            window: 0,
        },
    ] {
        let x = inputs(&case, 11);
        let scale = 0.125;
        let whole = run(&case, &x, 0, case.keys, scale);
        let row = case.heads * case.d;
        for (start, len) in [
            (0, 1),
            (5, 3),
            (255, 2),
            (256, 513),
            (700, 400),
            (1, 40),
            (1290, 7),
            (1000, 85),
            (600, 17),
        ] {
            if start + len > case.keys {
                continue;
            }
            let part = run(&case, &x, start, len, scale);
            assert!(
                part == whole[start * row..(start + len) * row],
                "queries {start}..{} differ from the one-chunk run",
                start + len
            );
        }
    }
}

/// Qwen2.5-Coder-0.5B's shapes at growing context: `cargo test -p mlx-sys --release --lib
/// prefill_attention_speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn prefill_attention_speed() {
    for keys in [1024usize, 4096, 8192, 20480] {
        let case = Case {
            heads: 14,
            kv_heads: 2,
            d: 64,
            keys,
            window: 0,
        };
        let x = inputs(&case, 3);
        let len = 512;
        std::hint::black_box(run(&case, &x, keys - len, len, 0.125));
        let t = std::time::Instant::now();
        let reps = 3;
        for _ in 0..reps {
            std::hint::black_box(run(&case, &x, keys - len, len, 0.125));
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        let flops = 4.0 * 14.0 * len as f64 * (keys - len / 2) as f64 * 64.0;
        println!(
            "chunk of {len} over {keys} keys: {:.1} ms, {:.1} GFLOP/s",
            s * 1e3,
            flops / s / 1e9
        );
    }
}
