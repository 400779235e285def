//! Row-major single-precision products `C = alpha·A·op(B) + beta·C` for few rows of `A` (decode
//! steps of one to a few dozen sequences), reading each element of `B` from memory once for all
//! rows.
//!
//! For such shapes OpenBLAS's `sgemm` packs `B` first, which costs several times the product
//! itself (measured 5–9× a single row for 2–32 rows), and its `sgemv` serves one row only. Decoding
//! is bound by reading the weights, so the kernel here streams blocks of `B` once and keeps the
//! rows of `A` (a few kilobytes each) in cache: a block of four weight rows is multiplied with
//! every row of `A` before the next block is read. The SIMD width is chosen at run time
//! (AVX-512, AVX2+FMA, NEON, else scalar), and the output columns are split over the threads of a
//! small pool, so both cores of a small machine stream weights.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// `B` as stored: `Trans` means `B` is `n × k` (rows are the output columns, a linear layer's
/// weight), `NoTrans` means `k × n`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BLayout {
    Trans,
    NoTrans,
}

/// One product's operands. Pointers follow the CBLAS row-major contract.
#[derive(Clone, Copy)]
pub struct Product {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub a: *const f32,
    pub lda: usize,
    pub b: *const f32,
    pub ldb: usize,
    pub layout: BLayout,
    pub beta: f32,
    pub c: *mut f32,
    pub ldc: usize,
}

// Workers write disjoint column ranges of `c` and only read `a` and `b`.
unsafe impl Send for Product {}
unsafe impl Sync for Product {}

/// Products with at most this many rows take the kernel here (above it `sgemm`'s packing pays).
pub const MAX_ROWS: usize = 32;

/// Below this many multiply-adds, one thread does the whole product (waking a worker costs more).
const PARALLEL_WORK: usize = 1 << 17;

/// The widest kernel this CPU runs, decided once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Isa {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        if std::env::var("MLX_SERVE_FEWROW_ISA").as_deref() == Ok("scalar") {
            return Isa::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let no512 = std::env::var("MLX_SERVE_FEWROW_ISA").as_deref() == Ok("avx2");
            if !no512 && std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                return Isa::Neon;
            }
        }
        Isa::Scalar
    })
}

/// Whether the kernel is on: `MLX_SERVE_FEWROW=1` turns it on (default off), and benchmarks
/// flip it at run time.
static ENABLED: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

pub fn set_enabled(on: bool) {
    ENABLED.store(if on { ON } else { OFF }, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            // Off unless asked for: inside MLX the kernel measured slower than OpenBLAS's sgemm on a
            // quiet machine (docs/benchmarks.md), although alone it is 3-4x faster; until that is
            // understood, `MLX_SERVE_FEWROW=1` turns it on.
            let on = std::env::var("MLX_SERVE_FEWROW").as_deref() == Ok("1");
            set_enabled(on);
            on
        }
    }
}

/// Whether the kernel here should serve a product of this shape. One row stays with OpenBLAS's
/// `sgemv`, which streams a single row at least as fast.
pub fn serves(m: usize, n: usize, k: usize) -> bool {
    (2..=MAX_ROWS).contains(&m) && n >= 1 && k >= 1 && enabled()
}

/// Computes the product, splitting the output columns over the pool when it is big enough.
///
/// # Safety
/// The pointers and leading dimensions describe valid row-major matrices: `a` is `m × k`
/// (`lda ≥ k`), `b` is `n × k` or `k × n` by `layout`, `c` is `m × n` (`ldc ≥ n`), and `c` does not
/// overlap `a` or `b`.
pub unsafe fn run(p: &Product) {
    let work = p.m * p.n * p.k;
    let threads = pool::threads();
    if threads <= 1 || work < PARALLEL_WORK || p.n < 64 {
        columns(p, 0, p.n);
        return;
    }
    // Chunks are a multiple of 16 columns so that every worker runs whole blocks.
    let per = p.n.div_ceil(threads).div_ceil(16) * 16;
    pool::run(threads, &|t| {
        let start = t * per;
        let end = (start + per).min(p.n);
        if start < end {
            // SAFETY: disjoint column ranges of the same valid product.
            unsafe { columns(p, start, end) }
        }
    });
}

/// Output columns `j0..j1` of the product, on the calling thread.
///
/// # Safety
/// As [`run`].
pub unsafe fn columns(p: &Product, j0: usize, j1: usize) {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::columns_avx512(p, j0, j1),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::columns_avx2(p, j0, j1),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => arm::columns_neon(p, j0, j1),
        Isa::Scalar => scalar_columns(p, j0, j1),
    }
}

/// Stores `alpha·dot + beta·c` (never reading `c` when `beta` is 0, which may be uninitialised).
#[inline(always)]
unsafe fn store(p: &Product, i: usize, j: usize, dot: f32) {
    let out = p.c.add(i * p.ldc + j);
    *out = if p.beta == 0.0 {
        p.alpha * dot
    } else {
        p.alpha * dot + p.beta * *out
    };
}

/// The reference every SIMD path is tested against, and the fallback.
pub unsafe fn scalar_columns(p: &Product, j0: usize, j1: usize) {
    for i in 0..p.m {
        let a = std::slice::from_raw_parts(p.a.add(i * p.lda), p.k);
        for j in j0..j1 {
            let mut dot = 0.0f32;
            match p.layout {
                BLayout::Trans => {
                    let b = std::slice::from_raw_parts(p.b.add(j * p.ldb), p.k);
                    for (x, y) in a.iter().zip(b) {
                        dot += x * y;
                    }
                }
                BLayout::NoTrans => {
                    for (q, x) in a.iter().enumerate() {
                        dot += x * *p.b.add(q * p.ldb + j);
                    }
                }
            }
            store(p, i, j, dot);
        }
    }
}

/// Generates the blocked kernels for one SIMD width from a handful of primitive operations, so
/// that the loop structure is written once for every instruction set.
macro_rules! kernels {
    (
        $(#[$attr:meta])* $name:ident, $lanes:expr, $vec:ty,
        zero: $zero:path, load: $load:path, splat: $splat:path, fma: $fma:path, sum: $sum:path,
        store_v: $store_v:path
    ) => {
        $(#[$attr])*
        pub unsafe fn $name(p: &Product, j0: usize, j1: usize) {
            match p.layout {
                BLayout::Trans => trans(p, j0, j1),
                BLayout::NoTrans => no_trans(p, j0, j1),
            }

            /// `B` is `n × k`: blocks of 4 weight rows, each multiplied with every row of `A`
            /// (up to 4 at a time) while it is in cache.
            $(#[$attr])*
            unsafe fn trans(p: &Product, j0: usize, j1: usize) {
                let mut j = j0;
                while j < j1 {
                    let nb = (j1 - j).min(4);
                    let brow = |r: usize| p.b.add((j + r.min(nb - 1)) * p.ldb);
                    let bp = [brow(0), brow(1), brow(2), brow(3)];
                    let mut i = 0;
                    while i < p.m {
                        let mb = (p.m - i).min(4);
                        let arow = |r: usize| p.a.add((i + r.min(mb - 1)) * p.lda);
                        let ap = [arow(0), arow(1), arow(2), arow(3)];
                        // Constant tile sizes keep the accumulators in registers.
                        let dots = match (mb, nb == 4) {
                            (1, true) => tile::<1, 4>(&ap, &bp, p.k),
                            (2, true) => tile::<2, 4>(&ap, &bp, p.k),
                            (3, true) => tile::<3, 4>(&ap, &bp, p.k),
                            (4, true) => tile::<4, 4>(&ap, &bp, p.k),
                            (1, false) => tile::<1, 3>(&ap, &bp, p.k),
                            (2, false) => tile::<2, 3>(&ap, &bp, p.k),
                            (3, false) => tile::<3, 3>(&ap, &bp, p.k),
                            _ => tile::<4, 3>(&ap, &bp, p.k),
                        };
                        for (r, row) in dots.iter().enumerate().take(mb) {
                            for (c, dot) in row.iter().enumerate().take(nb) {
                                store(p, i + r, j + c, *dot);
                            }
                        }
                        i += 4;
                    }
                    j += 4;
                }
            }

            /// Dot products of `MR` rows of `A` with `NR` rows of `B` over `k`.
            $(#[$attr])*
            #[inline]
            unsafe fn tile<const MR: usize, const NR: usize>(
                ap: &[*const f32; 4],
                bp: &[*const f32; 4],
                k: usize,
            ) -> [[f32; 4]; 4] {
                const L: usize = $lanes;
                let kv = k / L * L;
                let mut acc: [[$vec; NR]; MR] = [[$zero(); NR]; MR];
                let mut q = 0;
                while q < kv {
                    let mut bv: [$vec; NR] = [$zero(); NR];
                    for c in 0..NR {
                        bv[c] = $load(bp[c].add(q));
                    }
                    for r in 0..MR {
                        let av = $load(ap[r].add(q));
                        for c in 0..NR {
                            acc[r][c] = $fma(av, bv[c], acc[r][c]);
                        }
                    }
                    q += L;
                }
                let mut out = [[0.0f32; 4]; 4];
                for r in 0..MR {
                    for c in 0..NR {
                        let mut dot = $sum(acc[r][c]);
                        for t in kv..k {
                            dot += *ap[r].add(t) * *bp[c].add(t);
                        }
                        out[r][c] = dot;
                    }
                }
                out
            }

            /// `B` is `k × n`: for each block of `L` output columns and up to 4 rows of `A`,
            /// stream the rows of `B` once.
            $(#[$attr])*
            unsafe fn no_trans(p: &Product, j0: usize, j1: usize) {
                const L: usize = $lanes;
                let mut j = j0;
                while j + L <= j1 {
                    let mut i = 0;
                    while i < p.m {
                        let mb = (p.m - i).min(4);
                        let arow = |r: usize| p.a.add((i + r.min(mb - 1)) * p.lda);
                        let ap = [arow(0), arow(1), arow(2), arow(3)];
                        let b = p.b.add(j);
                        let acc = match mb {
                            1 => column::<1>(&ap, b, p.ldb, p.k),
                            2 => column::<2>(&ap, b, p.ldb, p.k),
                            3 => column::<3>(&ap, b, p.ldb, p.k),
                            _ => column::<4>(&ap, b, p.ldb, p.k),
                        };
                        for (r, acc) in acc.iter().enumerate().take(mb) {
                            let mut lanes = [0.0f32; L];
                            $store_v(lanes.as_mut_ptr(), *acc);
                            for (c, dot) in lanes.iter().enumerate() {
                                store(p, i + r, j + c, *dot);
                            }
                        }
                        i += 4;
                    }
                    j += L;
                }
                if j < j1 {
                    scalar_columns(p, j, j1);
                }
            }

            /// `L` columns of `MR` rows: `Σ_q A[r, q] · B[q, j..j + L]`.
            $(#[$attr])*
            #[inline]
            unsafe fn column<const MR: usize>(
                ap: &[*const f32; 4],
                b: *const f32,
                ldb: usize,
                k: usize,
            ) -> [$vec; 4] {
                let mut acc: [$vec; 4] = [$zero(); 4];
                for q in 0..k {
                    let bv = $load(b.add(q * ldb));
                    for r in 0..MR {
                        acc[r] = $fma($splat(*ap[r].add(q)), bv, acc[r]);
                    }
                }
                acc
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{scalar_columns, store, BLayout, Product};
    use std::arch::x86_64::*;

    kernels!(
        #[target_feature(enable = "avx512f")]
        columns_avx512, 16, __m512,
        zero: z512, load: ld512, splat: set512, fma: fma512, sum: sum512, store_v: st512
    );

    kernels!(
        #[target_feature(enable = "avx2,fma")]
        columns_avx2, 8, __m256,
        zero: z256, load: ld256, splat: set256, fma: fma256, sum: hsum256, store_v: st256
    );

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn z512() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn ld512(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn set512(x: f32) -> __m512 {
        _mm512_set1_ps(x)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn fma512(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn sum512(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn st512(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn z256() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn ld256(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn set256(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma256(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn st256(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{scalar_columns, store, BLayout, Product};
    use std::arch::aarch64::*;

    kernels!(
        #[target_feature(enable = "neon")]
        columns_neon, 4, float32x4_t,
        zero: z128, load: ld128, splat: set128, fma: fma128, sum: sum128, store_v: st128
    );

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn z128() -> float32x4_t {
        vdupq_n_f32(0.0)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn ld128(p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn set128(x: f32) -> float32x4_t {
        vdupq_n_f32(x)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn fma128(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        vfmaq_f32(c, a, b)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn sum128(v: float32x4_t) -> f32 {
        vaddvq_f32(v)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn st128(p: *mut f32, v: float32x4_t) {
        vst1q_f32(p, v)
    }
}

pub mod pool;

#[cfg(test)]
mod tests;
