//! Vocabulary-wide numeric kernels written so that LLVM vectorizes them: a 150k-entry logit
//! row must be scanned several times per token, and libm's `expf` alone would cost ~0.7 ms.

/// Independent accumulators; enough to fill an AVX-512 register and let the reductions
/// vectorize (a single f32 accumulator forces a serial dependency chain).
const LANES: usize = 16;

/// `exp(x)` for `x <= 0` with relative error below 2e-7; NaN and very negative inputs give ~0.
///
/// Branch-free so a loop over it vectorizes. Range reduction `x = n·ln2 + r`, `|r| <= ln2/2`,
/// then a degree-6 Taylor polynomial for `e^r` and `2^n` built from the exponent bits.
#[inline(always)]
pub(crate) fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to the nearest integer without a libm call or SSE4.1.
    const ROUND: f32 = 12_582_912.0;
    // `max` maps NaN to the bound; the bound keeps 2^n a normal number.
    let x = x.max(-87.0).min(0.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let bits = ((n as i32 + 127) as u32) << 23;
    p * f32::from_bits(bits)
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

/// `sum(exp(x - max))` over the row, without storing the terms.
pub(crate) fn sum_exp(logits: &[f32], max: f32) -> f64 {
    let mut acc = [0.0f32; LANES];
    let chunks = logits.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &l) in acc.iter_mut().zip(chunk) {
            *a += exp_neg(l - max);
        }
    }
    let mut sum: f64 = acc.iter().map(|&a| f64::from(a)).sum();
    for &l in rest {
        sum += f64::from(exp_neg(l - max));
    }
    sum
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
        assert!(worst < 2e-7, "worst relative error {worst}");
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
    fn softmax_weights_sum_matches_a_plain_reference() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 * 0.13 - 5.0).collect();
        let m = max(&logits);
        let mut w = Vec::new();
        let sum = softmax_weights(&logits, m, 0.7, &mut w);
        let want: f64 = logits.iter().map(|&l| (f64::from(l - m) * 0.7).exp()).sum();
        assert!((sum - want).abs() / want < 1e-5);
        assert!((sum_exp(&logits, m) - logits.iter().map(|&l| f64::from(l - m).exp()).sum::<f64>()).abs() < 1e-3);
        assert_eq!(w.len(), 1000);
    }
}
