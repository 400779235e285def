//! RMSNorm and RoPE as one graph node each on the CPU (mlx-sys's `HostOp` primitive), where
//! MLX runs its "fast" versions as composed fallbacks of ~10 and ~25 nodes: at decode sizes a
//! node's graph and scheduling work, not its arithmetic, is what it costs. GPU backends and
//! dtypes other than float32 keep MLX's own.

use std::ffi::CStr;

use mlx_rs::error::Exception;
use mlx_rs::{Array, Dtype, Stream};
use mlx_sys::host_op::{rms_norm_kernel, rope_kernel, HostFn, HostIn};

fn host_op(
    name: &CStr,
    kernel: HostFn,
    inputs: &[&Array],
    out_shape: &[i32],
    params: &[f32],
) -> Result<Array, Exception> {
    let stream = Stream::thread_local_or_default();
    let handles: Vec<mlx_sys::mlx_array> = inputs.iter().map(|a| a.as_ptr()).collect();
    // SAFETY: live handles; on success the call initialized `res`, which the Array then owns; on
    // failure `res` is freed and the message is a NUL-terminated string of this thread.
    unsafe {
        let mut res = mlx_sys::mlx_array_new();
        let status = mlx_sys::host_op::mlx_serve_host_op(
            &mut res,
            handles.as_ptr(),
            handles.len() as i32,
            out_shape.as_ptr(),
            out_shape.len() as i32,
            kernel,
            params.as_ptr(),
            params.len() as i32,
            name.as_ptr(),
            stream.as_ptr(),
        );
        if status == 0 {
            return Ok(Array::from_ptr(res));
        }
        mlx_sys::mlx_array_free(res);
        let msg = CStr::from_ptr(mlx_sys::host_op::mlx_serve_host_op_last_error())
            .to_string_lossy()
            .into_owned();
        Err(Exception::custom(format!(
            "{}: {msg}",
            name.to_string_lossy()
        )))
    }
}

/// `x · rsqrt(mean(x²) + eps) · w` over the last axis; one node when `host` and float32.
pub fn rms_norm(x: &Array, w: &Array, eps: f32, host: bool) -> Result<Array, Exception> {
    if !host || x.dtype() != Dtype::Float32 || w.dtype() != Dtype::Float32 || x.ndim() == 0 {
        return mlx_rs::fast::rms_norm(x, Some(w), eps);
    }
    host_op(c"RmsNorm", rms_norm_kernel, &[x, w], x.shape(), &[eps])
}

/// Rotate-half RoPE of `x: [B, heads, L, d]`, batch row `b` starting at `positions[b]` (int32,
/// `[1]` for all rows alike); `freqs` per-frequency periods replacing `base`.
pub fn rope(
    x: &Array,
    dims: i32,
    base: f32,
    scale: f32,
    positions: &Array,
    freqs: Option<&Array>,
) -> Result<Array, Exception> {
    let params = [dims as f32, base, scale];
    let mut inputs = vec![x, positions];
    inputs.extend(freqs);
    host_op(c"Rope", rope_kernel, &inputs, x.shape(), &params)
}

/// The gated activation of a fused `[..., 2·I]` gate/up product (gate first): SiLU, or
/// Gemma's tanh GELU with `gelu`. `eager` (a prefill pass) evaluates it on the host at once
/// (`host_kernels`); otherwise it is one lazy node with the same per-row arithmetic, so a row
/// gets the same bits either way.
pub fn glu(gate_up: &Array, gelu: bool, eager: bool) -> Result<Array, Exception> {
    use super::host_kernels;
    match (eager, gelu) {
        (true, true) => host_kernels::gelu_tanh_mul(gate_up),
        (true, false) => host_kernels::silu_mul(gate_up),
        (false, gelu) => {
            let mut shape = gate_up.shape().to_vec();
            if let Some(last) = shape.last_mut() {
                *last /= 2;
            }
            let kernel: HostFn = if gelu {
                gelu_glu_kernel
            } else {
                silu_glu_kernel
            };
            host_op(c"Glu", kernel, &[gate_up], &shape, &[])
        }
    }
}

/// # Safety
/// As `HostOp` calls it: one float32 input `[..., 2·I]`, `out` of its size halved.
unsafe extern "C" fn silu_glu_kernel(
    i: *const HostIn,
    n: i32,
    o: *mut f32,
    s: i64,
    _: *const f32,
    _: i32,
) {
    glu_rows(i, n, o, s, super::host_kernels::silu_mul_row)
}

/// # Safety
/// As for [`silu_glu_kernel`].
unsafe extern "C" fn gelu_glu_kernel(
    i: *const HostIn,
    n: i32,
    o: *mut f32,
    s: i64,
    _: *const f32,
    _: i32,
) {
    glu_rows(i, n, o, s, super::host_kernels::gelu_tanh_mul_row)
}

unsafe fn glu_rows(
    inputs: *const HostIn,
    n_inputs: i32,
    out: *mut f32,
    _out_size: i64,
    row: fn(&[f32], &mut [f32]),
) {
    if n_inputs != 1 {
        return;
    }
    let x = &*inputs;
    let (shape, strides) = x.dims();
    let width = shape.last().copied().unwrap_or(0).max(0) as usize;
    let half = width / 2;
    let base = x.ptr as *const f32;
    mlx_sys::host_op::for_each_row(shape, strides, |r, at| {
        let src = std::slice::from_raw_parts(base.offset(at), width);
        row(src, std::slice::from_raw_parts_mut(out.add(r * half), half));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::ops::indexing::IndexOp;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(shape: &[i32], rng: &mut ChaCha8Rng) -> Array {
        let n: i32 = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
        Array::from_slice(&v, shape)
    }

    fn close(a: &Array, b: &Array, tol: f32) {
        assert_eq!(a.shape(), b.shape());
        let (a, b) = (a.as_slice::<f32>(), b.as_slice::<f32>());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "at {i}: {x} vs {y}");
        }
    }

    #[test]
    fn rms_norm_node_matches_mlx_on_rows_and_strided_views() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let w = random(&[96], &mut rng);
        for shape in [&[1, 1, 96][..], &[2, 5, 96], &[7, 96]] {
            let x = random(shape, &mut rng);
            let ours = rms_norm(&x, &w, 1e-5, true).unwrap();
            close(
                &ours,
                &mlx_rs::fast::rms_norm(&x, Some(&w), 1e-5).unwrap(),
                2e-6,
            );
        }
        // A transposed view (rows not contiguous): the node reads it where it lies.
        let x = random(&[4, 3, 96], &mut rng)
            .transpose_axes(&[1, 0, 2])
            .unwrap();
        let ours = rms_norm(&x, &w, 1e-6, true).unwrap();
        close(
            &ours,
            &mlx_rs::fast::rms_norm(&x, Some(&w), 1e-6).unwrap(),
            2e-6,
        );
    }

    #[test]
    fn rope_node_matches_mlx_for_offsets_positions_and_freqs() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        // A prefill chunk at an offset, as a transposed view like the decoder's.
        let x = random(&[1, 7, 3, 64], &mut rng)
            .transpose_axes(&[0, 2, 1, 3])
            .unwrap();
        let offset = Array::from_slice(&[37i32], &[1]);
        let ours = rope(&x, 64, 10000.0, 1.0, &offset, None).unwrap();
        let theirs =
            mlx_rs::fast::rope(&x, 64, false, 10000.0f32, 1.0, 37, None::<&Array>).unwrap();
        close(&ours, &theirs, 2e-5);
        // A decode batch, a position per row, partial rotary dims and a linear scale.
        let x = random(&[3, 4, 1, 32], &mut rng);
        let pos = Array::from_slice(&[0i32, 5, 900], &[3]);
        let ours = rope(&x, 16, 500000.0, 0.25, &pos, None).unwrap();
        for (b, p) in [0, 5, 900].into_iter().enumerate() {
            let row = x.index(b as i32..b as i32 + 1);
            let theirs =
                mlx_rs::fast::rope(&row, 16, false, 500000.0f32, 0.25, p, None::<&Array>).unwrap();
            close(&ours.index(b as i32..b as i32 + 1), &theirs, 2e-5);
        }
        // Explicit periods (Llama 3 scaling).
        let freqs: Vec<f32> = (0..16).map(|i| 1.5f32.powi(i)).collect();
        let freqs = Array::from_slice(&freqs, &[16]);
        let x = random(&[1, 2, 5, 32], &mut rng);
        let ours = rope(&x, 32, 0.0, 1.0, &offset, Some(&freqs)).unwrap();
        let theirs = mlx_rs::fast::rope(&x, 32, false, None::<f32>, 1.0, 37, &freqs).unwrap();
        close(&ours, &theirs, 2e-5);
    }

    #[test]
    fn glu_node_gives_the_eager_kernels_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for shape in [&[1, 1, 64][..], &[3, 1, 64], &[2, 4, 64]] {
            let gu = random(shape, &mut rng);
            for gelu in [false, true] {
                let lazy = glu(&gu, gelu, false).unwrap();
                let eager = glu(&gu, gelu, true).unwrap();
                assert_eq!(lazy.shape(), eager.shape());
                assert!(
                    lazy.as_slice::<f32>() == eager.as_slice::<f32>(),
                    "gelu {gelu}"
                );
            }
        }
        // Against MLX's own SiLU on the split halves.
        let gu = random(&[2, 1, 64], &mut rng);
        let parts = mlx_rs::ops::split_equal(&gu, 2, -1).unwrap();
        let theirs = mlx_rs::nn::silu(&parts[0])
            .unwrap()
            .multiply(&parts[1])
            .unwrap();
        close(&glu(&gu, false, false).unwrap(), &theirs, 1e-5);
    }
}
