//! Products and dequantization on GGUF-quantized weights kept in their file layout, the
//! arithmetic behind the `GgufMatmul` and `GgufGather` primitives (csrc/gguf_ops.cpp).
//!
//! A weight is `n` rows (output features), each row the ggml blocks of `k` inputs. On x86 with
//! AVX2 or AVX-512 VNNI every product — decode, batched decode and prefill alike — quantizes `x`
//! to int8 blocks once ([`q8`]) and runs integer dot products on the weight blocks ([`ileave`]
//! for the interleaved repack, [`idot`] for the file layout): each weight block is decoded once
//! per 8-row tile of `x` while it sits in L1. Elsewhere (and with `MLX_SERVE_QUANT_INT=0`) few
//! rows dequantize four weight rows at a time into a small per-thread buffer and run the f32
//! tile of [`crate::fewrow`], and many rows (prefill) dequantize a tile of weight rows for
//! OpenBLAS's `sgemm`. All split their output columns over the few-row pool's threads.
//!
//! Block layouts are ggml's (`ggml-common.h`): Q4_0, Q4_1, Q5_0 and Q8_0 have 32 elements per
//! block and an f16 scale `d`; Q4_1 adds an f16 minimum `m`; Q5_0 keeps the fifth bits in a
//! 32-bit word. Q4_K and Q6_K (the K-quants of `Q4_K_M` files) have 256-element super-blocks
//! with 6- or 8-bit sub-block scales (see `kquants`).

use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
use crate::fewrow::Isa;
use crate::fewrow::{self, pool, BLayout, Product};

mod gather;
#[cfg(target_arch = "x86_64")]
mod idot;
#[cfg(target_arch = "x86_64")]
mod ileave;
mod kquants;
pub mod q8;
pub mod repack;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use gather::{gather_kernel, mlx_serve_gguf_gather, GatherFn};
pub use repack::{base_type, is_repacked, repack, Repacked, REPACKED};

#[cfg(test)]
mod bench;
#[cfg(test)]
mod repack_tests;
#[cfg(test)]
mod tests;

/// ggml's name of a type, for reports.
pub fn type_label(ggml_type: u32) -> &'static str {
    match base_type(ggml_type) {
        Q4_0 => "Q4_0",
        Q4_1 => "Q4_1",
        Q5_0 => "Q5_0",
        Q8_0 => "Q8_0",
        Q4_K => "Q4_K",
        Q6_K => "Q6_K",
        _ => "?",
    }
}

/// ggml type ids (`enum ggml_type`) with a kernel here.
pub const Q4_0: u32 = 2;
pub const Q4_1: u32 = 3;
pub const Q5_0: u32 = 6;
pub const Q8_0: u32 = 8;
pub const Q4_K: u32 = 12;
pub const Q6_K: u32 = 14;

/// Elements per block of the 32-element types.
pub const BLOCK: usize = 32;
/// Elements per super-block of the K-quants.
pub const SUPER_BLOCK: usize = 256;

/// Bytes per block of a supported ggml type, `None` for the others; of a repacked one, a
/// group block's bytes per row.
pub fn block_bytes(ggml_type: u32) -> Option<usize> {
    if is_repacked(ggml_type) {
        return repack::group_block_bytes(base_type(ggml_type)).map(|b| b / repack::GROUP);
    }
    match ggml_type {
        Q4_0 => Some(18),
        Q4_1 => Some(20),
        Q5_0 => Some(22),
        Q8_0 => Some(34),
        Q4_K => Some(144),
        Q6_K => Some(210),
        _ => None,
    }
}

/// Elements per block of a supported type.
pub fn block_elems(ggml_type: u32) -> usize {
    match base_type(ggml_type) {
        Q4_K | Q6_K => SUPER_BLOCK,
        _ => BLOCK,
    }
}

/// Whether a tensor of this type and row length can stay quantized.
pub fn supported(ggml_type: u32, k: usize) -> bool {
    block_bytes(ggml_type).is_some() && k % block_elems(ggml_type) == 0 && k > 0
}

/// IEEE half to single precision (subnormals included); once per block, so no F16C needed.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if frac == 0 => sign,
        0 => {
            // Subnormal: value = frac · 2⁻²⁴.
            let v = frac as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        31 => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

#[inline(always)]
unsafe fn half_at(p: *const u8) -> f32 {
    f16_to_f32(u16::from_le_bytes([*p, *p.add(1)]))
}

/// The plain reference every SIMD path is tested against, and the fallback: `blocks` blocks at
/// `src` to `block_elems · blocks` floats at `dst`.
///
/// # Safety
/// `src` holds `blocks` whole blocks of `ggml_type` and `dst` room for their elements.
pub unsafe fn dequant_scalar(ggml_type: u32, src: *const u8, blocks: usize, dst: *mut f32) {
    let Some(bb) = block_bytes(ggml_type) else {
        return;
    };
    match ggml_type {
        Q4_K => return kquants::q4_k(src, blocks, dst),
        Q6_K => return kquants::q6_k(src, blocks, dst),
        _ => {}
    }
    for b in 0..blocks {
        let s = src.add(b * bb);
        let o = std::slice::from_raw_parts_mut(dst.add(b * BLOCK), BLOCK);
        let d = half_at(s);
        match ggml_type {
            Q4_0 | Q4_1 => {
                let (min, qs) = if ggml_type == Q4_0 {
                    (-8.0 * d, s.add(2))
                } else {
                    (half_at(s.add(2)), s.add(4))
                };
                for j in 0..16 {
                    let q = *qs.add(j);
                    o[j] = (q & 0x0f) as f32 * d + min;
                    o[j + 16] = (q >> 4) as f32 * d + min;
                }
            }
            Q5_0 => {
                let qh = u32::from_le_bytes([*s.add(2), *s.add(3), *s.add(4), *s.add(5)]);
                let qs = s.add(6);
                for j in 0..16 {
                    let q = *qs.add(j);
                    let lo = (q & 0x0f) as u32 | (((qh >> j) & 1) << 4);
                    let hi = (q >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4);
                    o[j] = (lo as f32 - 16.0) * d;
                    o[j + 16] = (hi as f32 - 16.0) * d;
                }
            }
            Q8_0 => {
                for (j, v) in o.iter_mut().enumerate() {
                    *v = *(s.add(2 + j) as *const i8) as f32 * d;
                }
            }
            _ => unreachable!(),
        }
    }
}

/// Dequantizes with the widest instructions this CPU has (see [`fewrow::isa`]).
///
/// # Safety
/// As [`dequant_scalar`].
#[inline]
pub unsafe fn dequant(ggml_type: u32, src: *const u8, blocks: usize, dst: *mut f32) {
    match fewrow::isa() {
        // The K-quants' plain loops, vectorized by the compiler for the widest instructions.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if ggml_type == Q4_K => x86::q4_k_avx512(src, blocks, dst),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if ggml_type == Q6_K => kquants::wide::q6_k_avx512(src, blocks, dst),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if ggml_type == Q4_K => kquants::wide::q4_k_avx2(src, blocks, dst),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if ggml_type == Q6_K => kquants::wide::q6_k_avx2(src, blocks, dst),
        _ if block_elems(ggml_type) != BLOCK => dequant_scalar(ggml_type, src, blocks, dst),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::dequant_avx512(ggml_type, src, blocks, dst),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::dequant_avx2(ggml_type, src, blocks, dst),
        // On aarch64 the plain loop, compiled with NEON (the baseline there), is what runs; the
        // f32 products that follow use fewrow's hand-written NEON tile.
        _ => dequant_scalar(ggml_type, src, blocks, dst),
    }
}

/// Raw operands of one product, shared read-only by the threads that split it.
#[derive(Clone, Copy)]
struct Operands {
    x: *const f32,
    m: usize,
    k: usize,
    w: *const u8,
    row_bytes: usize,
    n: usize,
    ggml_type: u32,
    out: *mut f32,
}

// Threads write disjoint column ranges of `out` and only read `x` and `w`.
unsafe impl Send for Operands {}
unsafe impl Sync for Operands {}

/// Below this many multiply-adds one thread does the whole product.
const PARALLEL_WORK: usize = 1 << 16;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out[m × n] = x[m × k] · Wᵀ`: the kernel the `GgufMatmul` primitive calls.
///
/// # Safety
/// `x` is row-major `m × k` floats, `w` `n` rows of `k / 32` blocks of `ggml_type`, `out` room
/// for `m × n` floats not overlapping either.
pub unsafe extern "C" fn qmm_kernel(
    x: *const f32,
    m: i64,
    k: i64,
    w: *const u8,
    n: i64,
    ggml_type: u32,
    out: *mut f32,
) {
    let (m, k, n) = (m as usize, k as usize, n as usize);
    let Some(bb) = block_bytes(ggml_type) else {
        return;
    };
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let ops = Operands {
        x,
        m,
        k,
        w,
        row_bytes: k / block_elems(ggml_type) * bb,
        n,
        ggml_type,
        out,
    };
    if m <= int_max_rows() && int_rows(&ops) {
        return;
    }
    if m > fewrow::MAX_ROWS {
        many_rows(&ops);
    } else {
        split_columns(&ops, row_tile(ggml_type, 4), &|j0, j1| {
            few_rows(&ops, j0, j1)
        });
    }
}

/// Products of up to this many rows take the integer kernels (`MLX_SERVE_QUANT_INT_ROWS`
/// overrides, for measurements); larger ones dequantize for `sgemm`. Unbounded by default: with
/// the interleaved weights (a group's weights stay in L1 while every 8-row tile of the
/// activations passes over them), a 1,049-token prefill ran 1.6× (SmolLM2 Q4_1) and 1.8×
/// (Qwen2.5-Coder Q4_K_M) faster on them than through the dequantized `sgemm`, and faster than
/// the float32 model (docs/benchmarks.md). The bound stays for CPUs where that may not hold.
fn int_max_rows() -> usize {
    static ROWS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ROWS.get_or_init(|| {
        std::env::var("MLX_SERVE_QUANT_INT_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX)
    })
}

/// Whether the integer kernels are on: `MLX_SERVE_QUANT_INT=0` turns them off (then few rows
/// dequantize to a buffer and run the f32 tile), for comparisons.
#[cfg(target_arch = "x86_64")]
fn int_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("MLX_SERVE_QUANT_INT").as_deref() != Ok("0"))
}

/// Few rows through the integer kernels (activations quantized to 8 bits once, here); `false`
/// where this CPU has none (aarch64 and pre-AVX2 x86 keep the dequantizing path).
fn int_rows(ops: &Operands) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let Some(isa) = idot::int_isa().filter(|_| int_enabled()) {
        // SAFETY: `x` holds m × k floats (qmm_kernel's contract).
        let q8 = unsafe { q8::Q8Rows::quantize(ops.x, ops.m, ops.k) };
        if is_repacked(ops.ggml_type) {
            let job = ileave::Job {
                w: ops.w,
                row_bytes: ops.row_bytes,
                x: &q8,
                m: ops.m,
                out: ops.out,
                ldo: ops.n,
            };
            let base = base_type(ops.ggml_type);
            // SAFETY: as below; the ranges are whole groups (n is a multiple of 16).
            split_columns(ops, repack::GROUP, &|j0, j1| unsafe {
                ileave::columns(isa, base, &job, j0, j1)
            });
            return true;
        }
        let job = idot::Job {
            w: ops.w,
            row_bytes: ops.row_bytes,
            x: &q8,
            m: ops.m,
            out: ops.out,
            ldo: ops.n,
        };
        // SAFETY: the ISA was detected; the column ranges are disjoint and within n.
        split_columns(ops, 4, &|j0, j1| unsafe {
            idot::columns(isa, ops.ggml_type, &job, j0, j1)
        });
        return true;
    }
    let _ = ops;
    false
}

/// Runs `part(j0, j1)` over column ranges (multiples of `align`) on the pool's threads, or all
/// on this one when the product is small.
fn split_columns(ops: &Operands, align: usize, part: &(dyn Fn(usize, usize) + Sync)) {
    let threads = pool::threads();
    if threads <= 1 || ops.m * ops.n * ops.k < PARALLEL_WORK || ops.n < 8 * threads {
        part(0, ops.n);
        return;
    }
    let per = ops.n.div_ceil(threads).div_ceil(align) * align;
    pool::run(threads, &|t| {
        let start = t * per;
        let end = (start + per).min(ops.n);
        if start < end {
            part(start, end);
        }
    });
}

/// Weight rows a dequantizing path takes at a time: repacked weights come in whole groups.
fn row_tile(ggml_type: u32, rows: usize) -> usize {
    if is_repacked(ggml_type) {
        repack::GROUP
    } else {
        rows
    }
}

thread_local! {
    static PLAIN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Weight rows `r0..r1` as floats at `dst`, `k` per row. Repacked weights go back to the file's
/// blocks a group at a time first (`r0` a multiple of 16, `r1` one or `n`).
///
/// # Safety
/// The rows exist and `dst` has room for `(r1 − r0)·k` floats.
unsafe fn dequant_rows(ops: &Operands, r0: usize, r1: usize, dst: *mut f32) {
    let (t, k) = (ops.ggml_type, ops.k);
    let blocks = k / block_elems(t);
    if !is_repacked(t) {
        for r in r0..r1 {
            dequant(
                t,
                ops.w.add(r * ops.row_bytes),
                blocks,
                dst.add((r - r0) * k),
            );
        }
        return;
    }
    let base = base_type(t);
    let plain_row = blocks * block_bytes(base).unwrap_or(0);
    let group = repack::GROUP;
    PLAIN.with(|p| {
        let mut p = p.borrow_mut();
        p.resize(group * plain_row, 0);
        let mut g = r0;
        while g < r1 {
            let src =
                std::slice::from_raw_parts(ops.w.add(g * ops.row_bytes), group * ops.row_bytes);
            repack::unrepack_group(base, src, blocks, &mut p);
            for r in g..(g + group).min(r1) {
                dequant(
                    base,
                    p.as_ptr().add((r - g) * plain_row),
                    blocks,
                    dst.add((r - r0) * k),
                );
            }
            g += group;
        }
    });
}

/// Columns `j0..j1` of a product with at most [`fewrow::MAX_ROWS`] rows, on this thread.
fn few_rows(ops: &Operands, j0: usize, j1: usize) {
    let k = ops.k;
    let tile = row_tile(ops.ggml_type, 4);
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < tile * k {
            s.resize(tile * k, 0.0);
        }
        let mut j = j0;
        while j < j1 {
            let nb = (j1 - j).min(tile);
            // SAFETY: rows j..j + nb exist (j1 ≤ n) and the buffer holds `tile` rows of k floats.
            unsafe {
                dequant_rows(ops, j, j + nb, s.as_mut_ptr());
                let p = Product {
                    m: ops.m,
                    n: nb,
                    k,
                    alpha: 1.0,
                    a: ops.x,
                    lda: k,
                    b: s.as_ptr(),
                    ldb: k,
                    layout: BLayout::Trans,
                    beta: 0.0,
                    c: ops.out.add(j),
                    ldc: ops.n,
                };
                fewrow::columns(&p, 0, nb);
            }
            j += tile;
        }
    });
}

/// Weight rows per dequantized tile of a many-row product: the whole matrix up to 64 MiB of
/// floats. Few large `sgemm` calls: alternating our dequantizing threads with OpenBLAS's (which
/// spin a while after each call) tile by tile made Qwen's prefill 2.7x slower on 2 busy cores.
fn tile_rows(k: usize, n: usize) -> usize {
    ((64 << 20) / (4 * k)).clamp(16, n.max(16)) / 16 * 16
}

#[cfg(mlx_serve_openblas)]
extern "C" {
    #[cfg_attr(mlx_serve_scipy_openblas, link_name = "scipy_sgemm_")]
    fn sgemm_(
        transa: *const std::os::raw::c_char,
        transb: *const std::os::raw::c_char,
        m: *const i32,
        n: *const i32,
        k: *const i32,
        alpha: *const f32,
        a: *const f32,
        lda: *const i32,
        b: *const f32,
        ldb: *const i32,
        beta: *const f32,
        c: *mut f32,
        ldc: *const i32,
    );
}

/// Prefill-sized products: a tile of weight rows at a time, dequantized by the pool's threads,
/// then one `sgemm` (threaded by OpenBLAS itself) for all rows of `x`.
#[cfg(mlx_serve_openblas)]
fn many_rows(ops: &Operands) {
    let (m, k, n) = (ops.m, ops.k, ops.n);
    let rows = tile_rows(k, n);
    let mut tile = vec![0.0f32; rows * k];
    let mut j0 = 0;
    while j0 < n {
        let tn = rows.min(n - j0);
        let dst = SendPtr(tile.as_mut_ptr());
        let tile_ops = Operands { n: tn, ..*ops };
        split_columns(&tile_ops, row_tile(ops.ggml_type, 1), &|r0, r1| {
            let dst = &dst;
            // SAFETY: rows j0 + r0..j0 + r1 exist; the tile has room for `rows` rows of k
            // floats and each thread writes its own rows (j0 and `rows` are multiples of 16).
            unsafe { dequant_rows(ops, j0 + r0, j0 + r1, dst.0.add(r0 * k)) };
        });
        let (t, nn) = (b'T' as std::os::raw::c_char, b'N' as std::os::raw::c_char);
        let (tn_i, m_i, k_i, n_i) = (tn as i32, m as i32, k as i32, n as i32);
        let (one, zero) = (1.0f32, 0.0f32);
        // Row-major out[:, j0..j0+tn] = x · tileᵀ is column-major outᵀ = tile(ᵀ as stored) · xᵀ.
        // SAFETY: the operands are valid for these dimensions (see qmm_kernel).
        unsafe {
            sgemm_(
                &t,
                &nn,
                &tn_i,
                &m_i,
                &k_i,
                &one,
                tile.as_ptr(),
                &k_i,
                ops.x,
                &k_i,
                &zero,
                ops.out.add(j0),
                &n_i,
            );
        }
        j0 += tn;
    }
}

/// Without OpenBLAS, many rows go through the few-row kernel, `MAX_ROWS` rows at a time.
#[cfg(not(mlx_serve_openblas))]
fn many_rows(ops: &Operands) {
    let mut i = 0;
    while i < ops.m {
        let rows = (ops.m - i).min(fewrow::MAX_ROWS);
        // SAFETY: rows i..i + rows of x and out exist.
        let part = unsafe {
            Operands {
                x: ops.x.add(i * ops.k),
                m: rows,
                out: ops.out.add(i * ops.n),
                ..*ops
            }
        };
        split_columns(&part, row_tile(ops.ggml_type, 4), &|j0, j1| {
            few_rows(&part, j0, j1)
        });
        i += rows;
    }
}

struct SendPtr(*mut f32);
unsafe impl Sync for SendPtr {}

/// `out[rows × k]` = the quantized rows at `w` (repacked weights dequantize whole, in groups of
/// 16 rows).
///
/// # Safety
/// `w` holds `rows` rows of `k / 32` blocks of `ggml_type`; `out` room for `rows × k` floats.
pub unsafe extern "C" fn dequant_kernel(
    w: *const u8,
    rows: i64,
    k: i64,
    ggml_type: u32,
    out: *mut f32,
) {
    let (rows, k) = (rows as usize, k as usize);
    let Some(bb) = block_bytes(ggml_type) else {
        return;
    };
    let blocks = k / block_elems(ggml_type);
    let ops = Operands {
        x: std::ptr::null(),
        m: 0,
        k,
        w,
        row_bytes: blocks * bb,
        n: rows,
        ggml_type,
        out,
    };
    dequant_rows(&ops, 0, rows, out);
}

/// The kernels as the C function pointers csrc/gguf_ops.cpp takes.
pub type QmmFn = unsafe extern "C" fn(*const f32, i64, i64, *const u8, i64, u32, *mut f32);

extern "C" {
    /// Builds a lazy `x · Wᵀ` node (see csrc/gguf_ops.cpp); 0 on success.
    pub fn mlx_serve_gguf_matmul(
        res: *mut crate::mlx_array,
        x: crate::mlx_array,
        w: crate::mlx_array,
        ggml_type: u32,
        kernel: QmmFn,
        stream: crate::mlx_stream,
    ) -> i32;
    /// The message of this thread's last failed call above.
    pub fn mlx_serve_gguf_last_error() -> *const std::os::raw::c_char;
}
