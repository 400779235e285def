//! Activation rows quantized to 8 bits in 32-element blocks, once per product, so that the
//! integer kernels (`idot`) multiply int8 activations with the weights' small integers.
//!
//! Each block keeps a scale `d = max|x| / 127` and `s = d·Σq`, the block's sum in activation
//! units, which serves the weight types with a per-block offset (Q4_0, Q4_1, Q5_0, Q4_K's
//! minimums). 32-element blocks also for the K-quants: their sub-blocks are 32 (Q4_K) or 16
//! (Q6_K) elements, so a per-32 activation scale costs nothing extra and loses less to outliers
//! than ggml's one scale per 256.

use super::BLOCK;

/// `m` rows of `k` activations as int8 blocks.
pub struct Q8Rows {
    pub k: usize,
    /// Row-major `m × k` quantized values, in the original element order.
    pub q: Vec<i8>,
    /// Per block (`m × k/32`): the scale.
    pub d: Vec<f32>,
    /// Per block: `d · Σq`.
    pub s: Vec<f32>,
    /// Per 16 elements: `Σq` (the repacked kernels' integer offsets).
    pub sum16: Vec<i32>,
}

impl Q8Rows {
    /// Quantizes `m` rows of `k` floats (`k` a multiple of 32).
    ///
    /// # Safety
    /// `x` holds `m × k` floats.
    pub unsafe fn quantize(x: *const f32, m: usize, k: usize) -> Self {
        let blocks = m * k / BLOCK;
        let mut out = Self {
            k,
            q: vec![0; m * k],
            d: vec![0.0; blocks],
            s: vec![0.0; blocks],
            sum16: vec![0; 2 * blocks],
        };
        let x = std::slice::from_raw_parts(x, m * k);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            quantize_avx2(x, &mut out);
            return out;
        }
        quantize_into(x, &mut out);
        out
    }

    /// The float value the kernels multiply for element `e` of row `i`.
    pub fn value(&self, i: usize, e: usize) -> f32 {
        self.q[i * self.k + e] as f32 * self.d[(i * self.k + e) / BLOCK]
    }
}

/// The plain loop; written over whole blocks with integer maxima (the bit patterns of
/// non-negative floats order like the floats) so that the compiler vectorizes it.
#[inline(always)]
fn quantize_into(x: &[f32], out: &mut Q8Rows) {
    for (b, (xs, qs)) in x
        .chunks_exact(BLOCK)
        .zip(out.q.chunks_exact_mut(BLOCK))
        .enumerate()
    {
        let amax = xs
            .iter()
            .fold(0u32, |a, v| a.max(v.to_bits() & 0x7fff_ffff));
        let d = f32::from_bits(amax) / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut sums = [0i32; 2];
        for (h, (qs, xs)) in qs.chunks_exact_mut(16).zip(xs.chunks_exact(16)).enumerate() {
            for (q, v) in qs.iter_mut().zip(xs) {
                let r = (v * id).round_ties_even() as i32;
                *q = r as i8;
                sums[h] += r;
            }
        }
        out.d[b] = d;
        out.s[b] = d * (sums[0] + sums[1]) as f32;
        out.sum16[2 * b..2 * b + 2].copy_from_slice(&sums);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_avx2(x: &[f32], out: &mut Q8Rows) {
    quantize_into(x, out)
}

#[cfg(test)]
pub(super) fn quantize_scalar(x: &[f32], m: usize, k: usize) -> Q8Rows {
    let mut out = Q8Rows {
        k,
        q: vec![0; m * k],
        d: vec![0.0; m * k / BLOCK],
        s: vec![0.0; m * k / BLOCK],
        sum16: vec![0; 2 * m * k / BLOCK],
    };
    quantize_into(x, &mut out);
    out
}
