//! Scaled dot-product attention for grouped-query heads.
//!
//! MLX's CPU backend has no fused attention kernel: `fast::scaled_dot_product_attention` falls
//! back to composed operations that broadcast the keys over each group's query heads, so a
//! prefill chunk becomes `heads` small `[len, head_dim] × [head_dim, keys]` products plus a mask
//! built from index comparisons in every layer. Here the query heads that share a key/value head
//! are stacked into one `[group·len, head_dim]` matrix (one product per key/value head instead of
//! one per query head), and the causal mask is built once per forward pass as an additive
//! matrix shared by every layer; the softmax runs on the host (`host_kernels`) or through
//! `cpu_ops`. This is for prefill chunks; a single decode query and GPU backends (where MLX's
//! fused kernel wins) use `fast::scaled_dot_product_attention`.
//!
//! On the CPU in float32, [`prefill_attention`] replaces all of that with one node that never
//! materialises the scores (mlx-sys's `PrefillAttention`): at 8,000 positions of context the
//! composed path spent three quarters of a prefill writing and rereading them.

use mlx_rs::error::Exception;
use mlx_rs::fast::{scaled_dot_product_attention, ScaledDotProductAttentionMask};
use mlx_rs::{Array, Dtype, Stream};

use super::cpu_ops::softmax_last;
use super::host_kernels;
use super::ops::Ops;

/// Causal masking of a pass with several queries, at positions `offset..offset + len`.
pub struct CausalMask {
    /// Additive `[len, offset + len]` matrix (0 where a query may see the key, -inf after it),
    /// built only for the composed path: MLX's kernel and the host softmax mask by position.
    additive: Option<Array>,
    /// Sliding-window layers: a query sees at most this many keys, its own included.
    window: Option<i32>,
}

impl CausalMask {
    /// `None` for a single query (it sees everything).
    pub fn new(
        len: i32,
        offset: i32,
        dtype: Dtype,
        materialize: bool,
    ) -> Result<Option<Self>, Exception> {
        if len <= 1 {
            return Ok(None);
        }
        if !materialize {
            return Ok(Some(Self {
                additive: None,
                window: None,
            }));
        }
        Self::build(len, offset, None, dtype).map(Some)
    }

    /// Like [`CausalMask::new`] for a sliding-window layer, whose keys start `past` positions
    /// before the first query; each query also loses sight of keys `window` or more positions
    /// back. Always materialized: MLX's kernel has no windowed mode.
    pub fn windowed(
        len: i32,
        past: i32,
        window: i32,
        dtype: Dtype,
    ) -> Result<Option<Self>, Exception> {
        if len <= 1 {
            return Ok(None);
        }
        Self::build(len, past, Some(window), dtype).map(Some)
    }

    fn build(len: i32, offset: i32, window: Option<i32>, dtype: Dtype) -> Result<Self, Exception> {
        let keys = offset + len;
        let mut m = vec![0.0f32; (len * keys) as usize];
        for (row, chunk) in m.chunks_mut(keys as usize).enumerate() {
            let visible_end = offset as usize + row + 1;
            chunk[visible_end..].fill(f32::NEG_INFINITY);
            if let Some(w) = window {
                chunk[..visible_end.saturating_sub(w as usize)].fill(f32::NEG_INFINITY);
            }
        }
        let mask = Array::from_slice(&m, &[len, keys]);
        let additive = if dtype == Dtype::Float32 {
            mask
        } else {
            mask.as_dtype(dtype)?
        };
        Ok(Self {
            additive: Some(additive),
            window,
        })
    }
}

/// Profiling hook: evaluate the arrays and charge the time to the named group.
pub type Mark<'a> = &'a dyn Fn(&'static str, &[&Array]) -> Result<(), Exception>;

/// `softmax(q·kᵀ·scale + mask)·v` with `q: [1, heads, len, d]` and `keys/values:
/// [1, kv_heads, keys, d]`; returns `[1, heads, len, d]`.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    q: &Array,
    keys: &Array,
    values: &Array,
    scale: f32,
    mask: Option<&CausalMask>,
    ops: Ops,
    host_softmax: bool,
    mark: Mark,
) -> Result<Array, Exception> {
    // A single query (decode) has little to gain from grouping and pays for every extra
    // operation: MLX's own path measured ~5% faster there at 1,000 positions of context.
    if !ops.grouped_attention || q.shape()[2] == 1 {
        let mask = match mask {
            Some(CausalMask {
                additive: Some(m),
                window: Some(_),
            }) => Some(ScaledDotProductAttentionMask::Array(m)),
            Some(_) => Some(ScaledDotProductAttentionMask::Causal),
            None => None,
        };
        return scaled_dot_product_attention(q, keys, values, scale, mask, None);
    }
    let (heads, len, d) = (q.shape()[1], q.shape()[2], q.shape()[3]);
    let kv_heads = keys.shape()[1];
    let group = heads / kv_heads;
    let q = q
        .multiply(Array::from_f32(scale).as_dtype(q.dtype())?)?
        .reshape(&[1, kv_heads, group * len, d])?;
    mark("attention: q scale", &[&q])?;
    let scores = q.matmul(keys.swap_axes(-1, -2)?)?;
    mark("attention: q·kᵀ", &[&scores])?;
    let k = keys.shape()[2];
    let probs = if host_softmax {
        // The host kernel applies the causal mask itself (and skips the masked tail).
        let causal = mask.map(|_| (len as usize, (k - len) as usize));
        let window = mask.and_then(|m| m.window).map(|w| w as usize);
        // SAFETY: `scores` is the product just computed, referenced nowhere else.
        unsafe { host_kernels::softmax_in_place(scores, causal, window)? }
    } else {
        let scores = match mask {
            Some(mask) => scores
                .reshape(&[1, kv_heads, group, len, k])?
                .add(
                    mask.additive
                        .as_ref()
                        .ok_or_else(|| Exception::custom("causal mask matrix not built"))?,
                )?
                .reshape(&[1, kv_heads, group * len, k])?,
            None => scores,
        };
        mark("attention: mask", &[&scores])?;
        softmax_last(&scores, ops.power_exp)?
    };
    mark("attention: softmax", &[&probs])?;
    let out = probs.matmul(values)?;
    mark("attention: p·v", &[&out])?;
    out.reshape(&[1, heads, len, d])
}

/// Causal attention of a chunk's queries `q: [1, heads, len, d]` over `keys`/`values: [1,
/// kv_heads, n, d]` whose last `len` positions are the chunk's own, as one lazy node; returns
/// `[1, len, heads·d]`. `window`: a sliding-window layer's length. CPU, float32.
pub fn prefill_attention(
    q: &Array,
    keys: &Array,
    values: &Array,
    scale: f32,
    window: Option<i32>,
) -> Result<Array, Exception> {
    let stream = Stream::thread_local_or_default();
    // SAFETY: live handles; on success the call initialized `res`, which the Array then owns; on
    // failure `res` is freed and the message is a NUL-terminated string of this thread.
    unsafe {
        let mut res = mlx_sys::mlx_array_new();
        let status = mlx_sys::prefill_attention::mlx_serve_prefill_attention(
            &mut res,
            q.as_ptr(),
            keys.as_ptr(),
            values.as_ptr(),
            scale,
            window.unwrap_or(0),
            mlx_sys::prefill_attention::prefill_attention_kernel,
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
        Err(Exception::custom(format!("prefill attention: {msg}")))
    }
}
