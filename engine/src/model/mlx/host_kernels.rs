//! Two prefill kernels run on the host instead of in MLX: the attention softmax and SiLU-gating.
//!
//! MLX 0.32's CPU backend evaluates transcendental functions one element at a time (`exp` ~9 ns,
//! `power` ~3 ns per element here) and runs each elementwise step as its own pass over memory,
//! so a softmax over a prefill chunk's `[heads, chunk, keys]` scores costs five passes and ~4.7M
//! slow exponentials per layer. Here each is one pass, with an exponential the compiler can
//! vectorize, split over the cores. Prefill evaluates a whole chunk at a time, so leaving the
//! lazy graph for these two steps costs one evaluation per layer and step — nothing next to the
//! work. Decode (one token) keeps everything in MLX's graph.

use mlx_rs::error::Exception;
use mlx_rs::Array;

use super::ffi::data_mut_unshared;

pub use mlx_sys::attention::{exp, reduce};

/// Softmax of the valid (unmasked) part of a row, in place.
fn softmax_row_in_place(x: &mut [f32]) {
    let max = reduce(x, f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
    for v in x.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / reduce(x, 0.0, |a, b| a + b);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `x·sigmoid(x)·u` for one row of `[gate | up]`.
pub(super) fn silu_mul_row(gate_up: &[f32], out: &mut [f32]) {
    let (gate, up) = gate_up.split_at(out.len());
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + exp(-g)) * u;
    }
}

/// `f(input_row, output_row)` over all rows into a new buffer (see [`rows_parallel_in_place`]).
fn map_rows(
    input: &[f32],
    in_row: usize,
    out_row: usize,
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let rows = input.len() / in_row.max(1);
    let mut out = vec![0.0f32; rows * out_row];
    rows_parallel_in_place(&mut out, out_row, |r, o| {
        f(&input[r * in_row..(r + 1) * in_row], o)
    });
    out
}

/// `f(row_index, row)` over all rows of `data`, in place, split across the cores when the work is
/// big enough to pay for the threads (the calling thread takes the first share).
fn rows_parallel_in_place(data: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = data.len() / row.max(1);
    let threads = mlx_sys::fewrow::pool::threads();
    let per = if threads < 2 || data.len() < (1 << 16) {
        rows.max(1)
    } else {
        rows.div_ceil(threads)
    };
    let parts = rows.div_ceil(per.max(1));
    if parts <= 1 {
        for (r, o) in data.chunks_mut(row.max(1)).enumerate() {
            f(r, o);
        }
        return;
    }
    let base = Rows(data.as_mut_ptr());
    // The few-row pool's parked threads, not a thread spawned per call.
    mlx_sys::fewrow::pool::run(parts, &|t| {
        for r in t * per..((t + 1) * per).min(rows) {
            // SAFETY: row `r` lies in `data`, and each row is handed to exactly one thread.
            f(r, unsafe { base.row(r, row) });
        }
    });
}

/// The rows of `rows_parallel_in_place`'s buffer, shared by threads that write disjoint rows.
struct Rows(*mut f32);
// SAFETY: see the one use: each row goes to one thread.
unsafe impl Sync for Rows {}

impl Rows {
    /// # Safety
    /// Row `r` of `len` floats lies in the buffer, and no other thread touches it meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, r: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(r * len), len)
    }
}

/// The evaluated data of a row-contiguous float32 array (a matmul or elementwise output).
fn data(a: &Array) -> Result<&[f32], Exception> {
    a.try_as_slice::<f32>()
        .map_err(|e| Exception::custom(format!("host kernel input: {e}")))
}

/// Softmax over the last axis of float32 attention scores `[..., rows, keys]`, in place, which
/// saves allocating and copying a buffer of tens of megabytes per layer.
///
/// With `causal = Some((len, offset))` the rows are queries at positions `offset + row % len`
/// (query heads of a group stacked `len` rows each), and each sees keys `0..=offset + row % len`:
/// the masked tail is not exponentiated, only zeroed.
///
/// With `window = Some(w)` each query also loses sight of keys `w` or more positions before its
/// own (sliding-window attention), masked like the tail.
///
/// # Safety
/// `scores` must be a freshly computed array nothing else references (see
/// [`data_mut_unshared`]).
pub unsafe fn softmax_in_place(
    mut scores: Array,
    causal: Option<(usize, usize)>,
    window: Option<usize>,
) -> Result<Array, Exception> {
    let row = *scores.shape().last().unwrap_or(&1) as usize;
    // SAFETY: the caller's contract is data_mut_unshared's.
    let data = unsafe { data_mut_unshared(&mut scores)? };
    rows_parallel_in_place(data, row, |r, x| {
        let valid = causal.map_or(row, |(len, offset)| (offset + r % len + 1).min(row));
        let first = window.map_or(0, |w| valid.saturating_sub(w));
        let (head, masked) = x.split_at_mut(valid);
        let (before, live) = head.split_at_mut(first);
        softmax_row_in_place(live);
        before.fill(0.0);
        masked.fill(0.0);
    });
    Ok(scores)
}

/// `gelu_tanh(x)·u` for one row of `[gate | up]`, as `x / (1 + e^(-2u))` (see `gemma3`).
pub(super) fn gelu_tanh_mul_row(gate_up: &[f32], out: &mut [f32]) {
    const C: f32 = -2.0 * 0.797_884_6; // -2·√(2/π)
    let (gate, up) = gate_up.split_at(out.len());
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + exp(C * (g + 0.044715 * g * g * g))) * u;
    }
}

/// SiLU(gate)·up from a fused `[..., 2·I]` projection output whose first half is the gate.
pub fn silu_mul(gate_up: &Array) -> Result<Array, Exception> {
    glu(gate_up, silu_mul_row)
}

/// GELU(gate)·up (tanh approximation, Gemma's GeGLU), laid out as for [`silu_mul`].
pub fn gelu_tanh_mul(gate_up: &Array) -> Result<Array, Exception> {
    glu(gate_up, gelu_tanh_mul_row)
}

fn glu(gate_up: &Array, f: fn(&[f32], &mut [f32])) -> Result<Array, Exception> {
    let mut shape = gate_up.shape().to_vec();
    let width = *shape.last().unwrap_or(&0) as usize;
    let half = width / 2;
    let out = map_rows(data(gate_up)?, width, half, f);
    if let Some(last) = shape.last_mut() {
        *last = half as i32;
    }
    Ok(Array::from_slice(&out, &shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm_and_zero_for_masked() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, libm) = (exp(x), x.exp());
            assert!(
                (ours - libm).abs() <= 2.5e-7 * libm,
                "exp({x}) = {ours}, libm {libm}"
            );
            x += 0.0137;
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn softmax_and_silu_match_mlx() {
        let v: Vec<f32> = (0..3 * 300)
            .map(|i| ((i * 7919) % 1000) as f32 / 50.0 - 10.0)
            .collect();
        let mut masked = v.clone();
        masked[250..300].fill(f32::NEG_INFINITY);
        let x = Array::from_slice(&masked, &[3, 300]);
        // SAFETY: a fresh product, referenced nowhere else.
        let ours =
            unsafe { softmax_in_place(x.multiply(Array::from_f32(1.0)).unwrap(), None, None) }
                .unwrap();
        let theirs = mlx_rs::ops::softmax_axis(&x, -1, true).unwrap();
        for (a, b) in ours.as_slice::<f32>().iter().zip(theirs.as_slice::<f32>()) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
        assert!(ours.as_slice::<f32>()[250..300].iter().all(|&p| p == 0.0));

        // Causal: 2 stacked heads × 3 queries at positions 4..7 over 7 keys, against an
        // explicit -inf mask.
        let scores: Vec<f32> = (0..6 * 7).map(|i| ((i * 13) % 17) as f32 / 3.0).collect();
        let mut explicit = scores.clone();
        for r in 0..6 {
            for k in (4 + r % 3 + 1)..7 {
                explicit[r * 7 + k] = f32::NEG_INFINITY;
            }
        }
        // SAFETY: a fresh array, referenced nowhere else.
        let ours =
            unsafe { softmax_in_place(Array::from_slice(&scores, &[1, 6, 7]), Some((3, 4)), None) }
                .unwrap();
        let theirs =
            mlx_rs::ops::softmax_axis(Array::from_slice(&explicit, &[1, 6, 7]), -1, true).unwrap();
        for (a, b) in ours.as_slice::<f32>().iter().zip(theirs.as_slice::<f32>()) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }

        // A big enough input to take the threaded path.
        let big: Vec<f32> = (0..256 * 600)
            .map(|i| ((i * 31) % 97) as f32 / 8.0 - 6.0)
            .collect();
        let gu = Array::from_slice(&big, &[1, 256, 600]);
        let ours = silu_mul(&gu).unwrap();
        assert_eq!(ours.shape(), &[1, 256, 300]);
        let parts = gu.split_at_indices(&[300], -1).unwrap();
        let theirs = mlx_rs::nn::silu(&parts[0])
            .unwrap()
            .multiply(&parts[1])
            .unwrap();
        for (a, b) in ours.as_slice::<f32>().iter().zip(theirs.as_slice::<f32>()) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// `cargo test -p mlx-serve-actors --release --lib host_kernel_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn host_kernel_speed() {
        let n = 3 * 1536 * 1024;
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 50.0 - 10.0)
            .collect();
        let x = Array::from_slice(&v, &[1, 3, 1536, 1024]);
        x.eval().unwrap();
        let time = |name: &str, f: &dyn Fn() -> Array| {
            f().eval().unwrap();
            let t = std::time::Instant::now();
            for _ in 0..5 {
                f().eval().unwrap();
            }
            let per = t.elapsed().as_secs_f64() / 5.0;
            eprintln!(
                "{name}: {:.2} ms, {:.2} ns/element",
                per * 1e3,
                per * 1e9 / n as f64
            );
        };
        time("mlx softmax", &|| {
            mlx_rs::ops::softmax_axis(&x, -1, true).unwrap()
        });
        time("power softmax", &|| {
            super::super::cpu_ops::softmax_last(&x, true).unwrap()
        });
        let ones = Array::from_f32(1.0);
        time("host softmax (incl. a copy of the input)", &|| {
            // SAFETY: a fresh product, referenced nowhere else.
            unsafe { softmax_in_place(x.multiply(&ones).unwrap(), None, None) }.unwrap()
        });
        time("host softmax, causal", &|| {
            // SAFETY: a fresh product, referenced nowhere else.
            unsafe { softmax_in_place(x.multiply(&ones).unwrap(), Some((512, 512)), None) }.unwrap()
        });
        let mut out = vec![0.0f32; n];
        let t = std::time::Instant::now();
        out.copy_from_slice(&v);
        for r in out.chunks_mut(1024) {
            softmax_row_in_place(r);
        }
        eprintln!(
            "host softmax one thread, no copies: {:.2} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        let t = std::time::Instant::now();
        let a = Array::from_slice(&out, &[1, 3, 1536, 1024]);
        a.eval().unwrap();
        eprintln!(
            "Array::from_slice: {:.2} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}
