//! A decode step's attention on the CPU, over each sequence's own KV slot (the `SlotAttention`
//! primitive of mlx-sys): one lazy node per layer for the whole batch, whose result for a
//! sequence depends only on that sequence (its query, its keys `0..=position`), never on the
//! batch's longest sequence or on who else decodes. So a request decodes the same tokens alone
//! or batched, bit for bit — which the int8-activation GGUF kernels need, because they turn the
//! last-bit differences a padded, masked product leaves into different roundings.
//! It also replaces four MLX operations (scores, mask, softmax, weighted sum) with one pass.

use mlx_rs::error::Exception;
use mlx_rs::{Array, Stream};

use super::host_kernels::{dot, exp, reduce};

/// Per-sequence work (keys × head_dim × heads, summed) above which both cores share a step.
const PARALLEL_WORK: usize = 1 << 18;

/// `out[b, h, :] = softmax(scale · q[b, h] · K[b, g]ᵀ) · V[b, g]` with `g = h / (heads /
/// kv_heads)` and `K, V` the slot's positions `0..=positions[b]`.
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
    let len = |seq: usize| (positions[seq].max(0) as usize + 1).min(cap);
    let row = |i: usize, o: &mut [f32]| {
        let (seq, head) = (i / h, i % h);
        let n = len(seq);
        let base = ((seq * kvh + head / group) * cap) * d;
        let (k, v) = (&keys[base..base + n * d], &values[base..base + n * d]);
        attend_row(&q[i * d..(i + 1) * d], k, v, scale, o);
    };
    let work: usize = (0..b).map(len).sum::<usize>() * h * d;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || work < PARALLEL_WORK || b * h < 2 {
        for (i, o) in out.chunks_exact_mut(d).enumerate() {
            row(i, o);
        }
        return;
    }
    // Rows split in two contiguous halves: a row's arithmetic is the same on either thread.
    let half = (b * h).div_ceil(2);
    let (first, second) = out.split_at_mut(half * d);
    std::thread::scope(|s| {
        s.spawn(|| {
            for (i, o) in second.chunks_exact_mut(d).enumerate() {
                row(half + i, o);
            }
        });
        for (i, o) in first.chunks_exact_mut(d).enumerate() {
            row(i, o);
        }
    });
}

/// One query over `n` keys and values (`k`, `v`: `n × d`), into `out` (`d`).
fn attend_row(q: &[f32], k: &[f32], v: &[f32], scale: f32, out: &mut [f32]) {
    let d = q.len();
    let mut scores: Vec<f32> = k.chunks_exact(d).map(|key| dot(q, key) * scale).collect();
    let max = reduce(&scores, f32::NEG_INFINITY, f32::max);
    for s in scores.iter_mut() {
        *s = exp(*s - max);
    }
    let inv = 1.0 / reduce(&scores, 0.0, |a, b| a + b);
    out.fill(0.0);
    for (&p, value) in scores.iter().zip(v.chunks_exact(d)) {
        for (o, &x) in out.iter_mut().zip(value) {
            *o += p * x;
        }
    }
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// The lazy node: `q` `[B, heads, d]`, `keys`/`values` the slot buffers `[slots, kv_heads,
/// capacity, d]` (batch row `i` in slot `i`), `positions` int32 `[B]`; returns `[B, heads, d]`.
pub fn slot_attention(
    q: &Array,
    keys: &Array,
    values: &Array,
    positions: &Array,
    scale: f32,
) -> Result<Array, Exception> {
    let stream = Stream::thread_local_or_default();
    // SAFETY: live handles; on success the call initialized `res`, which the Array then owns; on
    // failure `res` is freed and the message is a NUL-terminated string of this thread.
    unsafe {
        let mut res = mlx_sys::mlx_array_new();
        let status = mlx_sys::attention::mlx_serve_slot_attention(
            &mut res,
            q.as_ptr(),
            keys.as_ptr(),
            values.as_ptr(),
            positions.as_ptr(),
            scale,
            slot_attention_kernel,
            stream.as_ptr(),
        );
        if status == 0 {
            return Ok(Array::from_ptr(res));
        }
        mlx_sys::mlx_array_free(res);
        let msg =
            std::ffi::CStr::from_ptr(mlx_sys::attention::mlx_serve_slot_attention_last_error())
                .to_string_lossy()
                .into_owned();
        Err(Exception::custom(format!("slot attention: {msg}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::ops::softmax_axis;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Three sequences of different lengths in one call against MLX's own masked attention per
    /// sequence; then the first sequence alone, in a smaller buffer, gives the same bits.
    #[test]
    fn each_sequence_attends_over_its_own_keys_whatever_the_batch() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (heads, kvh, cap, d) = (6, 2, 40, 16);
        let positions = [4i32, 39, 17];
        let b = positions.len();
        let q = random(b * heads * d, &mut rng);
        let k = random(b * kvh * cap * d, &mut rng);
        let v = random(b * kvh * cap * d, &mut rng);
        let arr = |x: &[f32], shape: &[i32]| Array::from_slice(x, shape);
        let kv_shape = [b as i32, kvh as i32, cap as i32, d as i32];
        let scale = 0.25;
        let got = slot_attention(
            &arr(&q, &[b as i32, heads as i32, d as i32]),
            &arr(&k, &kv_shape),
            &arr(&v, &kv_shape),
            &Array::from_slice(&positions, &[b as i32]),
            scale,
        )
        .unwrap();
        let got = got.as_slice::<f32>().to_vec();
        let group = heads / kvh;
        for (seq, &pos) in positions.iter().enumerate() {
            let n = pos as usize + 1;
            for head in 0..heads {
                let base = ((seq * kvh + head / group) * cap) * d;
                let keys = arr(&k[base..base + n * d], &[n as i32, d as i32]);
                let vals = arr(&v[base..base + n * d], &[n as i32, d as i32]);
                let qi = &q[(seq * heads + head) * d..][..d];
                let scores = arr(qi, &[1, d as i32])
                    .matmul(keys.t())
                    .unwrap()
                    .multiply(Array::from_f32(scale))
                    .unwrap();
                let want = softmax_axis(&scores, -1, None)
                    .unwrap()
                    .matmul(&vals)
                    .unwrap();
                let row = &got[(seq * heads + head) * d..][..d];
                for (g, w) in row.iter().zip(want.as_slice::<f32>()) {
                    assert!((g - w).abs() < 1e-5, "seq {seq} head {head}: {g} vs {w}");
                }
            }
        }
        // Sequence 0 alone, in a one-slot buffer of another capacity.
        let small = 8;
        let mut k0 = vec![0f32; kvh * small * d];
        let mut v0 = vec![0f32; kvh * small * d];
        for g in 0..kvh {
            for p in 0..5 {
                let (src, dst) = ((g * cap + p) * d, (g * small + p) * d);
                k0[dst..dst + d].copy_from_slice(&k[src..src + d]);
                v0[dst..dst + d].copy_from_slice(&v[src..src + d]);
            }
        }
        let shape0 = [1, kvh as i32, small as i32, d as i32];
        let alone = slot_attention(
            &arr(&q[..heads * d], &[1, heads as i32, d as i32]),
            &arr(&k0, &shape0),
            &arr(&v0, &shape0),
            &Array::from_slice(&[4i32], &[1]),
            scale,
        )
        .unwrap();
        assert_eq!(
            alone.as_slice::<f32>(),
            &got[..heads * d],
            "not batch invariant"
        );
    }

    #[test]
    fn mismatched_shapes_are_an_error_not_a_crash() {
        let q = Array::from_slice(&[0f32; 12], &[1, 3, 4]);
        let kv = Array::from_slice(&[0f32; 16], &[1, 2, 2, 4]);
        let pos = Array::from_slice(&[0i32], &[1]);
        // 3 heads do not share 2 kv heads evenly.
        let e = slot_attention(&q, &kv, &kv, &pos, 1.0).unwrap_err();
        assert!(e.to_string().contains("shapes"), "{e}");
    }
}
