//! The kernel of the `PrefillAttention` primitive (`csrc/slot_attention.cpp`): causal attention
//! of a prefill chunk's queries over a sequence's keys, without materialising the score matrix.
//!
//! MLX's CPU backend composes attention from a product, a softmax and a second product, so a
//! chunk of 512 queries over 20,000 keys writes, reads and rewrites a `heads × 512 × 20,000`
//! score matrix per layer (hundreds of megabytes, far beyond cache): at long contexts that is
//! most of a prefill's time. Here the scores of a tile of queries (the query heads sharing a
//! key/value head, stacked) are computed one block of keys at a time, folded into a running
//! softmax (the maximum, the sum and the weighted values are rescaled as the maximum grows) and
//! dropped, so every intermediate stays in cache. The products are `gemm`'s (runtime SIMD),
//! one thread per tile; tiles are shared between the cores.
//!
//! Key blocks are aligned to multiples of [`KEY_BLOCK`] from the first key, so a query's
//! arithmetic depends on its position and the keys only, not on which other queries share its
//! chunk.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::attention::{exp, reduce};

/// Keys per block: a tile's scores (`rows × KEY_BLOCK` floats) stay in L2 with its keys and values.
pub const KEY_BLOCK: usize = 256;

/// Query rows per tile (query heads of a group × positions), about.
const TILE_ROWS: usize = 256;

/// One array's layout: element `[head, position, i]` at `head·head_stride + position·pos_stride + i`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Strided {
    pub ptr: *const f32,
    pub head_stride: i64,
    pub pos_stride: i64,
}

// Only read, by every tile.
unsafe impl Send for Strided {}
unsafe impl Sync for Strided {}

/// The kernel's type, as the primitive calls it.
pub type PrefillAttentionFn = unsafe extern "C" fn(
    q: Strided,
    k: Strided,
    v: Strided,
    len: i64,
    keys: i64,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    scale: f32,
    window: i32,
    out: *mut f32,
);

extern "C" {
    /// Builds the node: `q` `[1, heads, len, d]`, `keys`/`values` `[1, kv_heads, keys, d]` (the
    /// chunk's own keys last), result `[1, len, heads·d]`; 0 on success, else see
    /// [`crate::attention::mlx_serve_slot_attention_last_error`].
    pub fn mlx_serve_prefill_attention(
        res: *mut crate::mlx_array,
        q: crate::mlx_array,
        keys: crate::mlx_array,
        values: crate::mlx_array,
        scale: f32,
        window: i32,
        kernel: PrefillAttentionFn,
        stream: crate::mlx_stream,
    ) -> i32;
}

/// `out[p, h, :] = softmax(scale · q[h, p] · K[g]ᵀ + causal) · V[g]`, `g = h / (heads /
/// kv_heads)`, for the `len` queries of a chunk whose last key is its own: query `p` sees keys
/// `0..=keys - len + p` (with `window > 0`, only the last `window` of those). `out` is
/// `[len, heads, head_dim]`, row-major.
///
/// # Safety
/// `q` spans `heads × len` rows, `k`/`v` `kv_heads × keys` rows of `head_dim` floats at their
/// strides; `out` holds `len × heads × head_dim` floats; `heads` is a multiple of `kv_heads`;
/// `keys ≥ len`.
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn prefill_attention_kernel(
    q: Strided,
    k: Strided,
    v: Strided,
    len: i64,
    keys: i64,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    scale: f32,
    window: i32,
    out: *mut f32,
) {
    let shape = Shape {
        len: len as usize,
        keys: keys as usize,
        heads: heads as usize,
        kv_heads: kv_heads as usize,
        d: head_dim as usize,
        scale,
        window: (window > 0).then_some(window as usize),
    };
    if shape.len == 0 || shape.heads == 0 || shape.kv_heads == 0 || shape.d == 0 {
        return;
    }
    let group = shape.heads / shape.kv_heads;
    // A chunk shorter than a tile gets a tile of its own height: padding a resumed prompt's few
    // new tokens to a full tile would multiply its work (`gemm` gives a row the same bits at
    // any height, see the chunk test).
    let block = (TILE_ROWS / group).clamp(8, 128).min(shape.len);
    let blocks = shape.len.div_ceil(block);
    let tiles = shape.kv_heads * blocks;
    let out = OutPtr(out);
    // The costliest tiles (the chunk's last queries see the most keys) are taken first, so the
    // threads finish together.
    let next = AtomicUsize::new(0);
    let job = |_: usize| {
        let mut scratch = Scratch::new(group * block, shape.d);
        loop {
            let t = next.fetch_add(1, Ordering::Relaxed);
            if t >= tiles {
                break;
            }
            let (g, b) = (t % shape.kv_heads, blocks - 1 - t / shape.kv_heads);
            let first = b * block;
            let valid = block.min(shape.len - first);
            // SAFETY: the caller's contract; tiles write disjoint parts of `out`.
            unsafe {
                tile(
                    &shape,
                    &q,
                    &k,
                    &v,
                    g,
                    first,
                    block,
                    valid,
                    &mut scratch,
                    &out,
                )
            };
        }
    };
    let work = shape.heads * shape.len * shape.keys * shape.d;
    let threads = if work < 1 << 20 {
        1
    } else {
        crate::fewrow::pool::threads().min(tiles)
    };
    crate::fewrow::pool::run(threads, &job);
}

struct Shape {
    len: usize,
    keys: usize,
    heads: usize,
    kv_heads: usize,
    d: usize,
    scale: f32,
    window: Option<usize>,
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// Tiles write disjoint rows.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

struct Scratch {
    q: Vec<f32>,
    scores: Vec<f32>,
    /// A short last block's keys and values, zero-padded to a full one.
    keys: Vec<f32>,
    values: Vec<f32>,
    acc: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

impl Scratch {
    fn new(rows: usize, d: usize) -> Self {
        Self {
            q: vec![0.0; rows * d],
            scores: vec![0.0; rows * KEY_BLOCK],
            keys: vec![0.0; KEY_BLOCK * d],
            values: vec![0.0; KEY_BLOCK * d],
            acc: vec![0.0; rows * d],
            max: vec![0.0; rows],
            sum: vec![0.0; rows],
        }
    }
}

/// Queries `first..first + valid` of every head of group `g`: tile row `r = head_in_group · n +
/// p`. Every tile is `n` queries by [`KEY_BLOCK`] keys per block, the last tile of a chunk
/// padded to `n` rows and a short last key block to full width: a row's reductions must run in
/// the same order in any tile (a row's `gemm` bits do not depend on the tile's height, which
/// the chunk test checks, so a chunk shorter than a tile takes its own height).
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    s: &Shape,
    q: &Strided,
    k: &Strided,
    v: &Strided,
    g: usize,
    first: usize,
    n: usize,
    valid: usize,
    scratch: &mut Scratch,
    out: &OutPtr,
) {
    let (d, group) = (s.d, s.heads / s.kv_heads);
    let rows = group * n;
    let past = s.keys - s.len;
    // Key index a query sees up to (inclusive), and from.
    let last_key = |p: usize| past + first + p;
    let first_key = |p: usize| s.window.map_or(0, |w| (last_key(p) + 1).saturating_sub(w));
    for hg in 0..group {
        let h = g * group + hg;
        for p in 0..n {
            let dst = &mut scratch.q[(hg * n + p) * d..(hg * n + p + 1) * d];
            if p >= valid {
                dst.fill(0.0);
                continue;
            }
            let src = q.ptr.offset(
                h as isize * q.head_stride as isize + (first + p) as isize * q.pos_stride as isize,
            );
            for (i, x) in dst.iter_mut().enumerate() {
                *x = *src.add(i) * s.scale;
            }
        }
    }
    scratch.acc[..rows * d].fill(0.0);
    scratch.max[..rows].fill(f32::NEG_INFINITY);
    scratch.sum[..rows].fill(0.0);
    let lo = first_key(0) / KEY_BLOCK * KEY_BLOCK;
    let hi = last_key(valid - 1) + 1;
    let kbase = k.ptr.offset(g as isize * k.head_stride as isize);
    let vbase = v.ptr.offset(g as isize * v.head_stride as isize);
    let mut k0 = lo;
    while k0 < hi {
        let width = KEY_BLOCK.min(hi - k0);
        let (kp, ks, vp, vs) = if width == KEY_BLOCK {
            (
                kbase.offset(k0 as isize * k.pos_stride as isize),
                k.pos_stride as isize,
                vbase.offset(k0 as isize * v.pos_stride as isize),
                v.pos_stride as isize,
            )
        } else {
            for (dst, src, stride) in [
                (&mut scratch.keys, kbase, k.pos_stride),
                (&mut scratch.values, vbase, v.pos_stride),
            ] {
                dst.fill(0.0);
                for j in 0..width {
                    let from = src.offset((k0 + j) as isize * stride as isize);
                    dst[j * d..(j + 1) * d].copy_from_slice(std::slice::from_raw_parts(from, d));
                }
            }
            (
                scratch.keys.as_ptr(),
                d as isize,
                scratch.values.as_ptr(),
                d as isize,
            )
        };
        let scores = &mut scratch.scores[..rows * KEY_BLOCK];
        // scores = q_tile · K[k0..k0 + width]ᵀ, rows KEY_BLOCK apart whatever the width, so that
        // a row's reductions run in the same order in a short last block as in a full one.
        gemm::gemm(
            rows,
            KEY_BLOCK,
            d,
            scores.as_mut_ptr(),
            1,
            KEY_BLOCK as isize,
            false,
            scratch.q.as_ptr(),
            1,
            d as isize,
            kp,
            ks,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
        // Only blocks at the diagonal or the window's edge need masking.
        let masked = k0 + width > last_key(0) + 1 || k0 < first_key(valid - 1);
        for r in 0..rows {
            let p = r % n;
            let row = &mut scores[r * KEY_BLOCK..(r + 1) * KEY_BLOCK];
            row[width..].fill(f32::NEG_INFINITY);
            if masked {
                let (from, to) = (first_key(p), last_key(p) + 1);
                for (j, x) in row[..width].iter_mut().enumerate() {
                    if k0 + j < from || k0 + j >= to {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
            let block_max = reduce(row, f32::NEG_INFINITY, f32::max);
            let old = scratch.max[r];
            let new = old.max(block_max);
            if new == f32::NEG_INFINITY {
                // Nothing visible to this query yet.
                row.fill(0.0);
                continue;
            }
            for x in row.iter_mut() {
                *x = exp(*x - new);
            }
            let correction = exp(old - new);
            scratch.sum[r] = scratch.sum[r] * correction + reduce(row, 0.0, |a, b| a + b);
            scratch.max[r] = new;
            if correction != 1.0 {
                for a in &mut scratch.acc[r * d..(r + 1) * d] {
                    *a *= correction;
                }
            }
        }
        // acc += P · V[k0..k0 + width]
        gemm::gemm(
            rows,
            d,
            KEY_BLOCK,
            scratch.acc.as_mut_ptr(),
            1,
            d as isize,
            true,
            scores.as_ptr(),
            1,
            KEY_BLOCK as isize,
            vp,
            1,
            vs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
        k0 += width;
    }
    for hg in 0..group {
        let h = g * group + hg;
        for p in 0..valid {
            let r = hg * n + p;
            let inv = 1.0 / scratch.sum[r];
            let dst = out.0.add(((first + p) * s.heads + h) * d);
            for (i, a) in scratch.acc[r * d..(r + 1) * d].iter().enumerate() {
                *dst.add(i) = a * inv;
            }
        }
    }
}

#[cfg(test)]
mod tests;
