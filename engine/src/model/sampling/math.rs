//! Vocabulary-wide numeric kernels written so that LLVM vectorizes them: a 150k-entry logit
//! row must be scanned several times per token, and libm's `expf` alone would cost ~0.7 ms.

/// Independent accumulators; enough to fill an AVX-512 register and let the reductions
/// vectorize (a single f32 accumulator forces a serial dependency chain).
const LANES: usize = 16;

/// `exp(x)` for `x <= 0` with relative error below 3e-7 (about two f32 ulps); NaN and very negative inputs give ~0.
///
/// Branch-free so a loop over it vectorizes. Range reduction `x = n·ln2 + r`, `|r| <= ln2/2`,
/// then a degree-6 Taylor polynomial for `e^r` and `2^n` built from the exponent bits.
#[inline(always)]
pub(crate) fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to the nearest integer without a libm call or SSE4.1, and leaves
    // that integer in the low mantissa bits, so no float→int conversion is needed either.
    const ROUND: f32 = 12_582_912.0;
    // Comparisons rather than `max`/`min`: they vectorize to one blend each, and NaN fails
    // the first test and becomes the lower bound. The bound keeps 2^n a normal number.
    let x = if x >= -87.0 { x } else { -87.0 };
    let x = if x <= 0.0 { x } else { 0.0 };
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// Largest value, ignoring NaN; `-inf` for an empty or all-NaN slice.
pub(crate) fn max(values: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in acc.iter().chain(rest) {
        if v > m {
            m = v;
        }
    }
    m
}

/// Index of the largest value; the lowest index wins ties, NaN never wins.
pub(crate) fn argmax(values: &[f32]) -> usize {
    let m = max(values);
    values.iter().position(|&v| v == m).unwrap_or(0)
}

/// Writes `exp((x - max) * scale)` for every logit into `out` and returns their sum.
pub(crate) fn softmax_weights(logits: &[f32], max: f32, scale: f32, out: &mut Vec<f32>) -> f64 {
    out.clear();
    out.resize(logits.len(), 0.0);
    let mut acc = [0.0f32; LANES];
    let mut outs = out.chunks_exact_mut(LANES);
    let mut ins = logits.chunks_exact(LANES);
    for (o, i) in (&mut outs).zip(&mut ins) {
        for ((o, &l), a) in o.iter_mut().zip(i).zip(acc.iter_mut()) {
            let w = exp_neg((l - max) * scale);
            *o = w;
            *a += w;
        }
    }
    let mut sum: f64 = acc.iter().map(|&a| f64::from(a)).sum();
    for (o, &l) in outs.into_remainder().iter_mut().zip(ins.remainder()) {
        let w = exp_neg((l - max) * scale);
        *o = w;
        sum += f64::from(w);
    }
    sum
}

/// `sum(exp((x - max) * scale))` over the row, without storing the terms.
pub(crate) fn sum_exp(logits: &[f32], max: f32, scale: f32) -> f64 {
    let mut acc = [0.0f32; LANES];
    let chunks = logits.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &l) in acc.iter_mut().zip(chunk) {
            *a += exp_neg((l - max) * scale);
        }
    }
    let mut sum: f64 = acc.iter().map(|&a| f64::from(a)).sum();
    for &l in rest {
        sum += f64::from(exp_neg((l - max) * scale));
    }
    sum
}

/// Buckets of [`top_mass_threshold`]: bucket `j` holds weights in `[2^-(j+1), 2^-j)`.
const BUCKETS: usize = 64;

/// One pass over the row that returns `sum(exp((x - max) * scale))` and the largest power of
/// two `t` such that the weights `>= t` hold at least `fraction` of that sum.
///
/// The weight's f32 exponent is its bucket, so no logarithm is taken; the result lets `top_p`
/// gather the nucleus (within a factor 2 of its cutoff) in a single scan.
pub(crate) fn top_mass_threshold(
    logits: &[f32],
    max: f32,
    scale: f32,
    fraction: f64,
) -> (f64, f32) {
    // f64 sums: a bucket can hold 10^5 similar weights, too many for an f32 accumulator.
    let mut mass = [0.0f64; BUCKETS];
    let mut weights = [0.0f32; LANES];
    for chunk in logits.chunks(LANES) {
        // Exponentials a block at a time (this loop vectorizes), then the scattered adds.
        for (w, &l) in weights.iter_mut().zip(chunk) {
            *w = exp_neg((l - max) * scale);
        }
        for &w in &weights[..chunk.len()] {
            // w <= 1, so its biased exponent is at most 127; 126 - exponent is the bucket.
            let exponent = (w.to_bits() >> 23) as usize;
            let bucket = 126usize.saturating_sub(exponent).min(BUCKETS - 1);
            mass[bucket] += f64::from(w);
        }
    }
    let total: f64 = mass.iter().sum();
    let target = fraction * total;
    let mut cum = 0.0f64;
    for (j, &m) in mass.iter().enumerate() {
        cum += m;
        if cum >= target {
            return (total, (-(j as f32 + 1.0)).exp2());
        }
    }
    (total, 0.0)
}

/// How many values are `>= bar` (NaN never is).
pub(crate) fn count_at_least(values: &[f32], bar: f32) -> usize {
    let mut acc = [0u32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += u32::from(v >= bar);
        }
    }
    acc.iter().map(|&a| a as usize).sum::<usize>() + rest.iter().filter(|&&v| v >= bar).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_neg_matches_libm_over_its_range() {
        let mut worst = 0.0f64;
        let mut x = -80.0f32;
        while x <= 0.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp_neg(x));
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_3;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
    }

    #[test]
    fn exp_neg_sends_nan_and_huge_negatives_to_almost_zero() {
        assert!(exp_neg(f32::NAN) < 1e-37);
        assert!(exp_neg(f32::NEG_INFINITY) < 1e-37);
        assert!(exp_neg(-1e30) < 1e-37);
    }

    #[test]
    fn max_and_argmax_ignore_nan_and_prefer_the_first_tie() {
        let mut v = vec![0.5f32; 37];
        v[3] = f32::NAN;
        v[20] = 2.0;
        v[33] = 2.0;
        assert_eq!(max(&v), 2.0);
        assert_eq!(argmax(&v), 20);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
    }

    #[test]
    fn top_mass_threshold_is_the_largest_power_of_two_holding_the_mass() {
        let logits: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.01)
            .collect();
        let m = max(&logits);
        let weights: Vec<f64> = logits.iter().map(|&l| f64::from(l - m).exp()).collect();
        let mass_at = |t: f64| weights.iter().filter(|&&w| w >= t).sum::<f64>();
        for fraction in [0.1, 0.5, 0.9, 0.99] {
            let (total, t) = top_mass_threshold(&logits, m, 1.0, fraction);
            let total_ref: f64 = weights.iter().sum();
            assert!((total - total_ref).abs() / total_ref < 1e-5);
            let t = f64::from(t);
            assert!(
                mass_at(t) >= fraction * total_ref * (1.0 - 1e-6),
                "fraction {fraction}"
            );
            assert!(
                mass_at(2.0 * t) < fraction * total_ref,
                "fraction {fraction}"
            );
        }
    }

    #[test]
    fn softmax_weights_sum_matches_a_plain_reference() {
        let logits: Vec<f32> = (0..1000)
            .map(|i| ((i * 37) % 101) as f32 * 0.13 - 5.0)
            .collect();
        let m = max(&logits);
        let mut w = Vec::new();
        let sum = softmax_weights(&logits, m, 0.7, &mut w);
        let want: f64 = logits.iter().map(|&l| (f64::from(l - m) * 0.7).exp()).sum();
        assert!((sum - want).abs() / want < 1e-5);
        assert!(
            (sum_exp(&logits, m, 1.0)
                - logits.iter().map(|&l| f64::from(l - m).exp()).sum::<f64>())
            .abs()
                < 1e-3
        );
        assert_eq!(w.len(), 1000);
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// `cargo test -p mlx-serve-actors --no-default-features --lib sampling::math::bench -- --ignored --nocapture`
    #[test]
    #[ignore = "timing, not behaviour"]
    fn bench_kernels_at_qwen_vocab() {
        let logits: Vec<f32> = (0..151_936u32)
            .map(|i| ((i.wrapping_mul(2654435761)) % 1000) as f32 * 0.012 - 6.0)
            .collect();
        let mut out = Vec::new();
        let n = 300;
        let time = |name: &str, f: &mut dyn FnMut()| {
            let start = std::time::Instant::now();
            for _ in 0..n {
                f();
            }
            println!("{name:>16}: {:?}", start.elapsed() / n);
        };
        time("max", &mut || {
            std::hint::black_box(max(std::hint::black_box(&logits)));
        });
        time("softmax_weights", &mut || {
            std::hint::black_box(softmax_weights(
                std::hint::black_box(&logits),
                6.0,
                1.25,
                &mut out,
            ));
        });
        time("sum_exp", &mut || {
            std::hint::black_box(sum_exp(std::hint::black_box(&logits), 6.0, 1.25));
        });
        time("count_at_least", &mut || {
            std::hint::black_box(count_at_least(std::hint::black_box(&logits), 5.0));
        });
    }
}
