//! Small CPU kernels as single MLX graph nodes (the `HostOp` primitive of csrc/host_op.cpp):
//! RMSNorm and rotate-half RoPE, which MLX's CPU backend otherwise runs as their composed
//! fallbacks of ~10 and ~25 nodes each. A node's cost is mostly its graph and scheduling work,
//! not its arithmetic, at decode sizes.

use std::ffi::{c_char, c_void};

/// One input of a host op: element `(i0, i1, …)` at `ptr[Σ ik · strides[k]]`, innermost stride 1.
#[repr(C)]
pub struct HostIn {
    pub ptr: *const c_void,
    pub ndim: i32,
    pub shape: *const i32,
    pub strides: *const i64,
}

/// The kernel as the C function pointer csrc/host_op.cpp takes.
pub type HostFn = unsafe extern "C" fn(*const HostIn, i32, *mut f32, i64, *const f32, i32);

extern "C" {
    /// Builds a lazy node of float32 `out_shape` computed by `kernel`; 0 on success.
    pub fn mlx_serve_host_op(
        res: *mut crate::mlx_array,
        inputs: *const crate::mlx_array,
        n_inputs: i32,
        out_shape: *const i32,
        out_ndim: i32,
        kernel: HostFn,
        params: *const f32,
        n_params: i32,
        name: *const c_char,
        stream: crate::mlx_stream,
    ) -> i32;
    /// The message of this thread's last failed call above.
    pub fn mlx_serve_host_op_last_error() -> *const c_char;
}

impl HostIn {
    /// # Safety
    /// `shape` and `strides` hold `ndim` values.
    pub unsafe fn dims(&self) -> (&[i32], &[i64]) {
        let n = self.ndim.max(0) as usize;
        if n == 0 {
            return (&[], &[]);
        }
        (
            std::slice::from_raw_parts(self.shape, n),
            std::slice::from_raw_parts(self.strides, n),
        )
    }

    /// Element offset of index `idx` of the leading axes (the innermost one left out).
    fn offset(strides: &[i64], idx: &[usize]) -> isize {
        idx.iter()
            .zip(strides)
            .map(|(&i, &s)| i as i64 * s)
            .sum::<i64>() as isize
    }
}

/// Calls `f(row, offset)` for every innermost row of an array of `shape` and `strides`, rows in
/// row-major order.
pub fn for_each_row(shape: &[i32], strides: &[i64], mut f: impl FnMut(usize, isize)) {
    let lead = &shape[..shape.len().saturating_sub(1)];
    let rows: usize = lead.iter().map(|&d| d.max(0) as usize).product();
    let mut idx = vec![0usize; lead.len()];
    for row in 0..rows {
        f(row, HostIn::offset(strides, &idx));
        for axis in (0..lead.len()).rev() {
            idx[axis] += 1;
            if idx[axis] < lead[axis] as usize {
                break;
            }
            idx[axis] = 0;
        }
    }
}

/// `out = x · rsqrt(mean(x²) + eps) · w` over the last axis: inputs `x [..., n]` and `w [n]`,
/// params `[eps]`.
///
/// # Safety
/// As the primitive calls it: two float32 inputs of those shapes, `out` of `x`'s size.
pub unsafe extern "C" fn rms_norm_kernel(
    inputs: *const HostIn,
    n_inputs: i32,
    out: *mut f32,
    _out_size: i64,
    params: *const f32,
    n_params: i32,
) {
    if n_inputs != 2 || n_params != 1 {
        return;
    }
    let (x, w) = (&*inputs, &*inputs.add(1));
    let eps = *params;
    let (shape, strides) = x.dims();
    let n = shape.last().copied().unwrap_or(0).max(0) as usize;
    let w = std::slice::from_raw_parts(w.ptr as *const f32, n);
    let base = x.ptr as *const f32;
    for_each_row(shape, strides, |row, at| {
        let x = std::slice::from_raw_parts(base.offset(at), n);
        let o = std::slice::from_raw_parts_mut(out.add(row * n), n);
        norm_row(x, w, eps, o);
    });
}

fn norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    // Eight partial sums, which the compiler keeps in one vector register.
    let mut acc = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    let sum = acc.iter().sum::<f32>() + tail;
    let inv = 1.0 / (sum / x.len().max(1) as f32 + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * inv * g;
    }
}

/// Rotate-half RoPE (Hugging Face's, MLX's `traditional = false`): inputs `x [B, H, L, d]`,
/// `positions` int32 `[1]` or `[B]` (the position of row `l = 0` of each batch row) and
/// optionally `freqs [dims / 2]` (per-frequency periods, replacing the base); params `[dims,
/// base, scale]`. Angles are computed in double precision. Output contiguous `[B, H, L, d]`;
/// features past `dims` pass through.
///
/// # Safety
/// As the primitive calls it: inputs of those shapes and types, `out` of `x`'s size.
pub unsafe extern "C" fn rope_kernel(
    inputs: *const HostIn,
    n_inputs: i32,
    out: *mut f32,
    _out_size: i64,
    params: *const f32,
    n_params: i32,
) {
    if !(2..=3).contains(&n_inputs) || n_params != 3 {
        return;
    }
    let (x, pos) = (&*inputs, &*inputs.add(1));
    let (shape, strides) = x.dims();
    if shape.len() != 4 {
        return;
    }
    let [b, h, l, d] = [0, 1, 2, 3].map(|i| shape[i].max(0) as usize);
    let dims = (*params as usize).min(d);
    let (base, scale) = (*params.add(1) as f64, *params.add(2) as f64);
    let half = dims / 2;
    let inv_freq: Vec<f64> = if n_inputs == 3 {
        let f = std::slice::from_raw_parts((*inputs.add(2)).ptr as *const f32, half);
        f.iter().map(|&p| 1.0 / p as f64).collect()
    } else {
        (0..half)
            .map(|i| base.powf(-2.0 * i as f64 / dims as f64))
            .collect()
    };
    let (pos_shape, _) = pos.dims();
    let n_pos: usize = pos_shape.iter().map(|&v| v.max(0) as usize).product();
    let positions = std::slice::from_raw_parts(pos.ptr as *const i32, n_pos);
    let xp = x.ptr as *const f32;
    let (mut cos, mut sin) = (vec![0f32; half], vec![0f32; half]);
    for bi in 0..b {
        let start = positions.get(if n_pos == 1 { 0 } else { bi }).copied();
        let start = start.unwrap_or(0) as f64;
        for li in 0..l {
            let p = (start + li as f64) * scale;
            for i in 0..half {
                let (s, c) = (p * inv_freq[i]).sin_cos();
                (sin[i], cos[i]) = (s as f32, c as f32);
            }
            for hi in 0..h {
                let at = bi as i64 * strides[0] + hi as i64 * strides[1] + li as i64 * strides[2];
                let src = std::slice::from_raw_parts(xp.offset(at as isize), d);
                let dst = std::slice::from_raw_parts_mut(out.add(((bi * h + hi) * l + li) * d), d);
                rotate(src, &cos, &sin, dst);
            }
        }
    }
}

fn rotate(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = cos.len();
    let (x1, rest) = x.split_at(half);
    let x2 = &rest[..half];
    let (o1, rest) = out.split_at_mut(half);
    let (o2, pass) = rest.split_at_mut(half);
    for i in 0..half {
        o1[i] = x1[i] * cos[i] - x2[i] * sin[i];
        o2[i] = x1[i] * sin[i] + x2[i] * cos[i];
    }
    pass.copy_from_slice(&x[2 * half..]);
}
