//! A decode step's attention on the CPU, over each sequence's own KV slot (the `SlotAttention`
//! primitive of mlx-sys): one lazy node per layer for the whole batch, whose result for a
//! sequence depends only on that sequence (its query, its keys `0..=position`), never on the
//! batch's longest sequence or on who else decodes. So a request decodes the same tokens alone
//! or batched, bit for bit — which the int8-activation GGUF kernels need, because they turn the
//! last-bit differences a padded, masked product leaves into different roundings.
//! It also replaces four MLX operations (scores, mask, softmax, weighted sum) with one pass.

use mlx_rs::error::Exception;
use mlx_rs::{Array, Stream};

/// The lazy node: `q` `[B, heads, d]`, `keys`/`values` the slot buffers `[slots, kv_heads,
/// capacity, d]` (batch row `i` in slot `i`), `positions` int32 `[B]`; returns `[B, heads, d]`.
/// `window`: a sliding-window layer's length (each query sees its last `window` keys).
pub fn slot_attention(
    q: &Array,
    keys: &Array,
    values: &Array,
    positions: &Array,
    scale: f32,
    window: Option<i32>,
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
            window.unwrap_or(0),
            mlx_sys::attention::slot_attention_kernel,
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

    /// Three sequences of different lengths in one call against MLX's own attention per
    /// sequence over its keys (all of them, or a sliding window's last 10); then the first
    /// sequence alone, in a smaller buffer, gives the same bits.
    #[test]
    fn each_sequence_attends_over_its_own_keys_whatever_the_batch() {
        for window in [None, Some(10)] {
            attends_over_own_keys(window);
        }
    }

    fn attends_over_own_keys(window: Option<i32>) {
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
            window,
        )
        .unwrap();
        let got = got.as_slice::<f32>().to_vec();
        let group = heads / kvh;
        for (seq, &pos) in positions.iter().enumerate() {
            let end = pos as usize + 1;
            let start = window.map_or(0, |w| end.saturating_sub(w as usize));
            let n = end - start;
            for head in 0..heads {
                let base = ((seq * kvh + head / group) * cap + start) * d;
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
                    assert!(
                        (g - w).abs() < 1e-5,
                        "window {window:?} seq {seq} head {head}: {g} vs {w}"
                    );
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
            window,
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
        let e = slot_attention(&q, &kv, &kv, &pos, 1.0, None).unwrap_err();
        assert!(e.to_string().contains("shapes"), "{e}");
    }
}
