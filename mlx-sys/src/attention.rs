//! The `SlotAttention` primitive of `csrc/slot_attention.cpp`: a decode step's attention over
//! each sequence's own KV slot, as one lazy MLX node, and its kernel (here rather than in the
//! model crate so that it builds optimized in every profile), with the vectorizable `exp` and
//! fixed-order reductions it shares with the model crate's prefill kernels.

/// `out[b, h, :]` from `q[b, h, :]` over keys/values `[b, h / (heads / kv_heads), 0..=positions[b], :]`
/// (the last `window` of them when `window > 0`).
pub type SlotAttentionFn = unsafe extern "C" fn(
    q: *const f32,
    keys: *const f32,
    values: *const f32,
    positions: *const i32,
    batch: i64,
    heads: i64,
    kv_heads: i64,
    capacity: i64,
    head_dim: i64,
    scale: f32,
    window: i32,
    out: *mut f32,
);

extern "C" {
    /// Builds the node; 0 on success, else see [`mlx_serve_slot_attention_last_error`].
    pub fn mlx_serve_slot_attention(
        res: *mut crate::mlx_array,
        q: crate::mlx_array,
        keys: crate::mlx_array,
        values: crate::mlx_array,
        positions: crate::mlx_array,
        scale: f32,
        window: i32,
        kernel: SlotAttentionFn,
        stream: crate::mlx_stream,
    ) -> i32;
    /// The message of this thread's last failed call.
    pub fn mlx_serve_slot_attention_last_error() -> *const std::os::raw::c_char;
}

/// `eˣ` to about 1 ulp for x ≥ -87, and 0 below (so -inf, a masked score, gives exactly 0).
/// Range reduction `x = n·ln2 + r`, |r| ≤ ln2/2, then a degree-7 Taylor polynomial for `eʳ` and
/// `2ⁿ` assembled in the exponent bits. Branch-free and without `mul_add` (a libm call without
/// FMA), so it vectorizes on any x86-64 or aarch64 baseline.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer in the low bits
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.0, 88.0);
    let t = xc * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let scale = f32::from_bits((t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127)) << 23);
    if x < -87.0 {
        0.0
    } else {
        p * scale
    }
}

/// Lanes for reductions: floating-point addition is not associative, so the compiler keeps a
/// single running sum serial; eight independent partial sums let it use vector registers.
const LANES: usize = 8;

#[inline]
pub fn reduce(x: &[f32], init: f32, op: impl Fn(f32, f32) -> f32 + Copy) -> f32 {
    let mut acc = [init; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = op(*a, v);
        }
    }
    let tail = chunks.remainder().iter().fold(init, |a, &v| op(a, v));
    acc.iter().fold(tail, |a, &v| op(a, v))
}

/// `Σ aᵢ·bᵢ` in [`LANES`] partial sums: the order depends only on the length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(0.0, |s, (x, y)| s + x * y);
    let mut acc = [0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().fold(tail, |s, &v| s + v)
}

/// Per-sequence work (keys × head_dim × heads, summed) above which both cores share a step.
const PARALLEL_WORK: usize = 1 << 16;

/// `out[b, h, :] = softmax(scale · q[b, h] · K[b, g]ᵀ) · V[b, g]` with `g = h / (heads /
/// kv_heads)` and `K, V` the slot's positions `0..=positions[b]`, or with `window > 0` (a
/// sliding-window layer) only the last `window` of them.
///
/// # Safety
/// `q`/`out` hold `batch × heads × head_dim` floats, `keys`/`values` at least `batch × kv_heads ×
/// capacity × head_dim`, `positions` `batch` values; `heads` is a multiple of `kv_heads`.
pub unsafe extern "C" fn slot_attention_kernel(
    q: *const f32,
    keys: *const f32,
    values: *const f32,
    positions: *const i32,
    batch: i64,
    heads: i64,
    kv_heads: i64,
    capacity: i64,
    head_dim: i64,
    scale: f32,
    window: i32,
    out: *mut f32,
) {
    let (b, h, kvh, cap, d) = (
        batch as usize,
        heads as usize,
        kv_heads as usize,
        capacity as usize,
        head_dim as usize,
    );
    if b == 0 || h == 0 || d == 0 || kvh == 0 {
        return;
    }
    let group = h / kvh;
    // SAFETY: the sizes are the caller's contract.
    let (q, keys, values, positions, out) = unsafe {
        (
            std::slice::from_raw_parts(q, b * h * d),
            std::slice::from_raw_parts(keys, b * kvh * cap * d),
            std::slice::from_raw_parts(values, b * kvh * cap * d),
            std::slice::from_raw_parts(positions, b),
            std::slice::from_raw_parts_mut(out, b * h * d),
        )
    };
    // A sequence's keys `start..end`.
    let span = |seq: usize| {
        let end = (positions[seq].max(0) as usize + 1).min(cap);
        let start = match window {
            w if w > 0 => end.saturating_sub(w as usize),
            _ => 0,
        };
        (start, end)
    };
    let len = |seq: usize| {
        let (start, end) = span(seq);
        end - start
    };
    // One task per (sequence, kv head): its `group` query heads are consecutive output rows,
    // and its keys and values are read once for all of them.
    let unit = |u: usize, o: &mut [f32]| {
        let (start, end) = span(u / kvh);
        let base = u * cap * d;
        let (k, v) = (
            &keys[base + start * d..base + end * d],
            &values[base + start * d..base + end * d],
        );
        attend_group(&q[u * group * d..(u + 1) * group * d], k, v, d, scale, o);
    };
    let work: usize = (0..b).map(len).sum::<usize>() * h * d;
    let threads = crate::fewrow::pool::threads();
    let units = b * kvh;
    if threads < 2 || work < PARALLEL_WORK || units < 2 {
        for (u, o) in out.chunks_exact_mut(group * d).enumerate() {
            unit(u, o);
        }
        return;
    }
    // Tasks split in two contiguous halves: a task's arithmetic is the same on either thread.
    let half = units.div_ceil(2);
    let rows = OutRows(out.as_mut_ptr());
    crate::fewrow::pool::run(2, &|t| {
        let (first, end) = if t == 0 { (0, half) } else { (half, units) };
        for u in first..end {
            // SAFETY: each task writes its own `group × d` rows of `out`, and the two halves
            // are disjoint.
            let o = unsafe { rows.slice(u * group * d, group * d) };
            unit(u, o);
        }
    });
}

/// The output rows, shared by the pool's threads that write disjoint parts of them.
struct OutRows(*mut f32);
// SAFETY: see the one use: the threads write disjoint rows.
unsafe impl Sync for OutRows {}

impl OutRows {
    /// # Safety
    /// `at + len` is within the rows, and no other thread touches them meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, at: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(at), len)
    }
}

/// The queries `q` (`group × d`) over `n` keys and values (`k`, `v`: `n × d`), into `out`
/// (`group × d`). Each query's arithmetic is in a fixed order that depends only on `n`.
fn attend_group(q: &[f32], k: &[f32], v: &[f32], d: usize, scale: f32, out: &mut [f32]) {
    let (group, n) = (q.len() / d, k.len() / d);
    let mut scores = vec![0f32; group * n];
    for (t, key) in k.chunks_exact(d).enumerate() {
        for (g, qg) in q.chunks_exact(d).enumerate() {
            scores[g * n + t] = dot(qg, key) * scale;
        }
    }
    let mut inv = vec![0f32; group];
    for (g, row) in scores.chunks_exact_mut(n.max(1)).enumerate().take(group) {
        let max = reduce(row, f32::NEG_INFINITY, f32::max);
        for s in row.iter_mut() {
            *s = exp(*s - max);
        }
        inv[g] = 1.0 / reduce(row, 0.0, |a, b| a + b);
    }
    out.fill(0.0);
    for (t, value) in v.chunks_exact(d).enumerate() {
        for (g, og) in out.chunks_exact_mut(d).enumerate() {
            let p = scores[g * n + t];
            for (o, &x) in og.iter_mut().zip(value) {
                *o += p * x;
            }
        }
    }
    for (og, &i) in out.chunks_exact_mut(d).zip(&inv) {
        for o in og.iter_mut() {
            *o *= i;
        }
    }
}
