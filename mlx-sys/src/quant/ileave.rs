//! Integer dot products on the column-interleaved layout of [`super::repack`]: each `vpdpbusd`
//! (AVX-512 VNNI, sixteen columns per register) or `vpmaddubsw` + `vpmaddwd` (AVX2, eight) takes
//! four activation bytes broadcast to every lane and leaves each column's partial sum in its
//! own lane. Per 32 weights and activation row what remains is the integer work itself plus
//! one convert, one scale multiply and one or two FMAs for all sixteen columns, so extra rows
//! cost little next to decoding the weights, and the outputs need no horizontal sums.
//!
//! Offsets: Q4_0, Q5_0, Q6_K (and Q8_0 on VNNI, stored `q ^ 0x80`) subtract a fixed integer
//! from every quant, so each lane starts at `−offset·Σq` of the activation block instead of
//! zero, exactly; Q4_1's and Q4_K's float minimums multiply the block's sum `s` in float.

use std::arch::x86_64::*;

use super::idot::IntIsa;
use super::q8::Q8Rows;
use super::repack::GROUP;
use super::{Q4_0, Q4_1, Q4_K, Q5_0, Q6_K, Q8_0};

/// One vector of columns on one instruction set.
pub(super) trait Lanes {
    /// Columns per vector.
    const W: usize;
    /// Most activation rows a tile keeps accumulators for (the register file's size).
    const ROWS: usize;
    /// Q8_0's integer offset: VNNI multiplies the stored `q ^ 0x80` unsigned, AVX2 the signs.
    const Q8_OFFSET: i32;
    type I: Copy;
    type F: Copy;
    unsafe fn load(p: *const u8) -> Self::I;
    unsafe fn low4(v: Self::I) -> Self::I;
    unsafe fn high4(v: Self::I) -> Self::I;
    unsafe fn splat(v: i32) -> Self::I;
    /// `acc` plus, per lane, the four weight bytes of `w` times the four bytes at `x`.
    unsafe fn dot(acc: Self::I, w: Self::I, x: *const i8) -> Self::I;
    /// A loaded Q8_0 chunk as [`Lanes::dot_q8`] takes it.
    unsafe fn q8(v: Self::I) -> Self::I;
    unsafe fn dot_q8(acc: Self::I, w: Self::I, x: *const i8) -> Self::I;
    /// `q` plus 16 in each byte whose bit is set in the mask at `mask` (one bit per byte).
    unsafe fn fifth(q: Self::I, mask: *const u8) -> Self::I;
    /// `lo | ((hi >> shift) & 3) << 4` per byte: Q6_K's two high bits.
    unsafe fn high2(lo: Self::I, hi: Self::I, shift: u32) -> Self::I;
    unsafe fn cvt(v: Self::I) -> Self::F;
    unsafe fn fsplat(v: f32) -> Self::F;
    unsafe fn zero() -> Self::F;
    unsafe fn mul(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn fma(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    unsafe fn halfs(p: *const u8) -> Self::F;
    unsafe fn u8s(p: *const u8) -> Self::F;
    unsafe fn i8s(p: *const u8) -> Self::F;
    unsafe fn store(p: *mut f32, v: Self::F);
}

pub(super) struct Vnni;
pub(super) struct Avx2;

impl Lanes for Vnni {
    const W: usize = 16;
    const ROWS: usize = 8;
    const Q8_OFFSET: i32 = -128;
    type I = __m512i;
    type F = __m512;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m512i {
        _mm512_loadu_si512(p as *const _)
    }
    #[inline(always)]
    unsafe fn low4(v: __m512i) -> __m512i {
        _mm512_and_si512(v, _mm512_set1_epi8(0x0f))
    }
    #[inline(always)]
    unsafe fn high4(v: __m512i) -> __m512i {
        _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0f))
    }
    #[inline(always)]
    unsafe fn splat(v: i32) -> __m512i {
        _mm512_set1_epi32(v)
    }
    #[inline(always)]
    unsafe fn dot(acc: __m512i, w: __m512i, x: *const i8) -> __m512i {
        _mm512_dpbusd_epi32(
            acc,
            w,
            _mm512_set1_epi32((x as *const i32).read_unaligned()),
        )
    }
    #[inline(always)]
    unsafe fn q8(v: __m512i) -> __m512i {
        v
    }
    #[inline(always)]
    unsafe fn dot_q8(acc: __m512i, w: __m512i, x: *const i8) -> __m512i {
        Self::dot(acc, w, x)
    }
    #[inline(always)]
    unsafe fn fifth(q: __m512i, mask: *const u8) -> __m512i {
        let bits = (mask as *const u64).read_unaligned();
        _mm512_mask_add_epi8(q, bits, q, _mm512_set1_epi8(16))
    }
    #[inline(always)]
    unsafe fn high2(lo: __m512i, hi: __m512i, shift: u32) -> __m512i {
        let h = if shift <= 4 {
            _mm512_sll_epi16(hi, _mm_cvtsi32_si128(4 - shift as i32))
        } else {
            _mm512_srl_epi16(hi, _mm_cvtsi32_si128(shift as i32 - 4))
        };
        // lo | (h & 0x30)
        _mm512_ternarylogic_epi32(lo, h, _mm512_set1_epi8(0x30), 0xf8)
    }
    #[inline(always)]
    unsafe fn cvt(v: __m512i) -> __m512 {
        _mm512_cvtepi32_ps(v)
    }
    #[inline(always)]
    unsafe fn fsplat(v: f32) -> __m512 {
        _mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn halfs(p: *const u8) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
    #[inline(always)]
    unsafe fn u8s(p: *const u8) -> __m512 {
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i)))
    }
    #[inline(always)]
    unsafe fn i8s(p: *const u8) -> __m512 {
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i)))
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
}

impl Lanes for Avx2 {
    const W: usize = 8;
    const ROWS: usize = 4;
    const Q8_OFFSET: i32 = 0;
    type I = __m256i;
    type F = __m256;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m256i {
        _mm256_loadu_si256(p as *const __m256i)
    }
    #[inline(always)]
    unsafe fn low4(v: __m256i) -> __m256i {
        _mm256_and_si256(v, _mm256_set1_epi8(0x0f))
    }
    #[inline(always)]
    unsafe fn high4(v: __m256i) -> __m256i {
        _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0f))
    }
    #[inline(always)]
    unsafe fn splat(v: i32) -> __m256i {
        _mm256_set1_epi32(v)
    }
    #[inline(always)]
    unsafe fn dot(acc: __m256i, w: __m256i, x: *const i8) -> __m256i {
        // Unsigned weights ≤ 63 (Q6_K) times |x| ≤ 127, two per i16: no saturation.
        let x = _mm256_set1_epi32((x as *const i32).read_unaligned());
        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
        _mm256_add_epi32(acc, p)
    }
    #[inline(always)]
    unsafe fn q8(v: __m256i) -> __m256i {
        // Back to the signed quants: 255·127·2 would saturate vpmaddubsw's i16 pairs.
        _mm256_xor_si256(v, _mm256_set1_epi8(-128))
    }
    #[inline(always)]
    unsafe fn dot_q8(acc: __m256i, w: __m256i, x: *const i8) -> __m256i {
        let x = _mm256_set1_epi32((x as *const i32).read_unaligned());
        let p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
        _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
    }
    #[inline(always)]
    unsafe fn fifth(q: __m256i, mask: *const u8) -> __m256i {
        let bits = (mask as *const u32).read_unaligned();
        // Byte j of `spread` is byte j/8 of `bits`; keep the bytes whose bit j%8 is set.
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(bits as i32),
            _mm256_setr_epi8(
                0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
                3, 3, 3, 3,
            ),
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
        _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(16)))
    }
    #[inline(always)]
    unsafe fn high2(lo: __m256i, hi: __m256i, shift: u32) -> __m256i {
        let h = if shift <= 4 {
            _mm256_sll_epi16(hi, _mm_cvtsi32_si128(4 - shift as i32))
        } else {
            _mm256_srl_epi16(hi, _mm_cvtsi32_si128(shift as i32 - 4))
        };
        _mm256_or_si256(lo, _mm256_and_si256(h, _mm256_set1_epi8(0x30)))
    }
    #[inline(always)]
    unsafe fn cvt(v: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(v)
    }
    #[inline(always)]
    unsafe fn fsplat(v: f32) -> __m256 {
        _mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn halfs(p: *const u8) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    unsafe fn u8s(p: *const u8) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i)))
    }
    #[inline(always)]
    unsafe fn i8s(p: *const u8) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i)))
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
}

/// One 32-element run of `W` columns, decoded: eight vectors of four-element groups, the scale
/// (Q6_K: of the first 16 elements, `d2` of the second) and the minimum.
pub(super) struct Run<L: Lanes> {
    q: [L::I; 8],
    d: L::F,
    d2: L::F,
    min: L::F,
}

impl<L: Lanes> Clone for Run<L> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<L: Lanes> Copy for Run<L> {}

/// A repacked block layout (see `repack` for the byte layouts).
pub(super) trait Layout {
    const ELEMS: usize;
    /// Bytes per group and block.
    const GB: usize;
    /// Minimums that multiply the activation block's sum `s` in float.
    const MIN: bool = false;
    /// A scale per 16 elements (Q6_K).
    const HALVES: bool = false;
    const Q8: bool = false;
    /// The integer subtracted from every quant.
    fn offset<L: Lanes>() -> i32;
    /// Run `r` of the group block at `p`, columns `W·h..W·h + W` of the group.
    unsafe fn run<L: Lanes>(p: *const u8, r: usize, h: usize) -> Run<L>;
}

/// Four nibble chunks at `p` as groups 0..8.
#[inline(always)]
unsafe fn nibbles<L: Lanes>(p: *const u8, h: usize) -> [L::I; 8] {
    let mut q = [L::splat(0); 8];
    for j in 0..4 {
        let v = L::load(p.add(64 * j + 4 * L::W * h));
        q[j] = L::low4(v);
        q[j + 4] = L::high4(v);
    }
    q
}

#[inline(always)]
unsafe fn run<L: Lanes>(q: [L::I; 8], d: L::F, min: L::F) -> Run<L> {
    Run { q, d, d2: d, min }
}

pub(super) struct RQ4_0;
pub(super) struct RQ4_1;
pub(super) struct RQ5_0;
pub(super) struct RQ8_0;
pub(super) struct RQ4K;
pub(super) struct RQ6K;

impl Layout for RQ4_0 {
    const ELEMS: usize = 32;
    const GB: usize = 288;
    fn offset<L: Lanes>() -> i32 {
        -8
    }
    #[inline(always)]
    unsafe fn run<L: Lanes>(p: *const u8, _: usize, h: usize) -> Run<L> {
        let d = L::halfs(p.add(2 * L::W * h));
        run(nibbles::<L>(p.add(32), h), d, d)
    }
}

impl Layout for RQ4_1 {
    const ELEMS: usize = 32;
    const GB: usize = 320;
    const MIN: bool = true;
    fn offset<L: Lanes>() -> i32 {
        0
    }
    #[inline(always)]
    unsafe fn run<L: Lanes>(p: *const u8, _: usize, h: usize) -> Run<L> {
        let d = L::halfs(p.add(2 * L::W * h));
        let m = L::halfs(p.add(32 + 2 * L::W * h));
        run(nibbles::<L>(p.add(64), h), d, m)
    }
}

impl Layout for RQ5_0 {
    const ELEMS: usize = 32;
    const GB: usize = 352;
    fn offset<L: Lanes>() -> i32 {
        -16
    }
    #[inline(always)]
    unsafe fn run<L: Lanes>(p: *const u8, _: usize, h: usize) -> Run<L> {
        let d = L::halfs(p.add(2 * L::W * h));
        let mut q = nibbles::<L>(p.add(96), h);
        for (g, v) in q.iter_mut().enumerate() {
            *v = L::fifth(*v, p.add(32 + 8 * g + L::W * h / 2));
        }
        run(q, d, d)
    }
}

impl Layout for RQ8_0 {
    const ELEMS: usize = 32;
    const GB: usize = 544;
    const Q8: bool = true;
    fn offset<L: Lanes>() -> i32 {
        L::Q8_OFFSET
    }
    #[inline(always)]
    unsafe fn run<L: Lanes>(p: *const u8, _: usize, h: usize) -> Run<L> {
        let d = L::halfs(p.add(2 * L::W * h));
        let mut q = [L::splat(0); 8];
        for (g, v) in q.iter_mut().enumerate() {
            *v = L::q8(L::load(p.add(32 + 64 * g + 4 * L::W * h)));
        }
        run(q, d, d)
    }
}

impl Layout for RQ4K {
    const ELEMS: usize = 256;
    const GB: usize = 2368;
    const MIN: bool = true;
    fn offset<L: Lanes>() -> i32 {
        0
    }
    #[inline(always)]
    unsafe fn run<L: Lanes>(p: *const u8, r: usize, h: usize) -> Run<L> {
        let d = L::halfs(p.add(2 * L::W * h));
        let dmin = L::halfs(p.add(32 + 2 * L::W * h));
        let sc = L::u8s(p.add(64 + 16 * r + L::W * h));
        let m = L::u8s(p.add(64 + 128 + 16 * r + L::W * h));
        let q = nibbles::<L>(p.add(320 + 256 * r), h);
        run(q, L::mul(d, sc), L::mul(L::mul(dmin, m), L::fsplat(-1.0)))
    }
}

impl Layout for RQ6K {
    const ELEMS: usize = 256;
    const GB: usize = 3360;
    const HALVES: bool = true;
    fn offset<L: Lanes>() -> i32 {
        -32
    }
    #[inline(always)]
    unsafe fn run<L: Lanes>(p: *const u8, r: usize, h: usize) -> Run<L> {
        let d = L::halfs(p.add(2 * L::W * h));
        let sc1 = L::i8s(p.add(32 + 16 * (2 * r) + L::W * h));
        let sc2 = L::i8s(p.add(32 + 16 * (2 * r + 1) + L::W * h));
        let lo = nibbles::<L>(p.add(288 + 256 * r), h);
        let hp = p.add(288 + 2048 + 128 * r + 4 * L::W * h);
        let hi = [L::load(hp), L::load(hp.add(64))];
        let mut q = lo;
        for (g, v) in q.iter_mut().enumerate() {
            *v = L::high2(*v, hi[g / 4], 2 * (g % 4) as u32);
        }
        Run {
            q,
            d: L::mul(d, sc1),
            d2: L::mul(d, sc2),
            min: d,
        }
    }
}

/// One product's operands for [`columns`]: `w` the repacked groups, `row_bytes` per row.
pub(super) struct Job<'a> {
    pub w: *const u8,
    pub row_bytes: usize,
    pub x: &'a Q8Rows,
    pub m: usize,
    pub out: *mut f32,
    pub ldo: usize,
}

// Threads write disjoint column ranges of `out` and only read the weights and activations.
unsafe impl Sync for Job<'_> {}

/// How far ahead of the block being multiplied its weights are prefetched: in decode every
/// matrix comes from DRAM, and the hardware prefetchers stop at each 4 KiB page.
const PREFETCH: usize = 2048;

/// `out[i0..i0+R]` for columns `W·h..` of groups `grp..grp+G`.
#[inline(always)]
unsafe fn tile<T: Layout, L: Lanes, const G: usize, const R: usize>(
    job: &Job,
    grp: usize,
    h: usize,
    i0: usize,
) {
    let k = job.x.k;
    let xblocks = k / 32;
    let gbytes = GROUP * job.row_bytes;
    let base = job.w.add(grp * gbytes);
    let off = T::offset::<L>();
    let mut acc = [[L::zero(); R]; G];
    for b in 0..k / T::ELEMS {
        for r in 0..T::ELEMS / 32 {
            let xb = b * (T::ELEMS / 32) + r;
            let run_bytes = T::GB / (T::ELEMS / 32);
            for g in 0..G {
                let at = base.add(g * gbytes + b * T::GB + r * run_bytes + PREFETCH);
                let mut line = 0;
                while line < run_bytes {
                    _mm_prefetch::<_MM_HINT_T0>(at.add(line) as *const i8);
                    line += 64;
                }
            }
            let mut runs = [T::run::<L>(base.add(b * T::GB), r, h); G];
            for (g, run) in runs.iter_mut().enumerate().skip(1) {
                *run = T::run::<L>(base.add(g * gbytes + b * T::GB), r, h);
            }
            for i in 0..R {
                let at = (i0 + i) * xblocks + xb;
                let xq = job.x.q.as_ptr().add(32 * at);
                let dx = L::fsplat(*job.x.d.get_unchecked(at));
                for (g, run) in runs.iter().enumerate() {
                    if T::HALVES {
                        let s = job.x.sum16.get_unchecked(2 * at..2 * at + 2);
                        let mut a1 = L::splat(off * s[0]);
                        let mut a2 = L::splat(off * s[1]);
                        for q in 0..4 {
                            a1 = L::dot(a1, run.q[q], xq.add(4 * q));
                            a2 = L::dot(a2, run.q[q + 4], xq.add(16 + 4 * q));
                        }
                        let t = L::fma(L::cvt(a2), run.d2, L::mul(L::cvt(a1), run.d));
                        acc[g][i] = L::fma(t, dx, acc[g][i]);
                        continue;
                    }
                    let mut a = L::splat(if off != 0 {
                        let s = job.x.sum16.get_unchecked(2 * at..2 * at + 2);
                        off * (s[0] + s[1])
                    } else {
                        0
                    });
                    for q in 0..8 {
                        a = if T::Q8 {
                            L::dot_q8(a, run.q[q], xq.add(4 * q))
                        } else {
                            L::dot(a, run.q[q], xq.add(4 * q))
                        };
                    }
                    acc[g][i] = L::fma(L::cvt(a), L::mul(run.d, dx), acc[g][i]);
                    if T::MIN {
                        let s = L::fsplat(*job.x.s.get_unchecked(at));
                        acc[g][i] = L::fma(run.min, s, acc[g][i]);
                    }
                }
            }
        }
    }
    for (g, rows) in acc.iter().enumerate() {
        for (i, v) in rows.iter().enumerate() {
            let col = GROUP * (grp + g) + L::W * h;
            L::store(job.out.add((i0 + i) * job.ldo + col), *v);
        }
    }
}

#[inline(always)]
unsafe fn rows<T: Layout, L: Lanes>(job: &Job, grp: usize, h: usize) {
    let mut i0 = 0;
    while i0 < job.m {
        let r = (job.m - i0).min(L::ROWS);
        match r {
            1 => tile::<T, L, 1, 1>(job, grp, h, i0),
            2 => tile::<T, L, 1, 2>(job, grp, h, i0),
            3 => tile::<T, L, 1, 3>(job, grp, h, i0),
            4 => tile::<T, L, 1, 4>(job, grp, h, i0),
            5 => tile::<T, L, 1, 5>(job, grp, h, i0),
            6 => tile::<T, L, 1, 6>(job, grp, h, i0),
            7 => tile::<T, L, 1, 7>(job, grp, h, i0),
            _ => tile::<T, L, 1, 8>(job, grp, h, i0),
        }
        i0 += r;
    }
}

#[inline(always)]
unsafe fn columns_typed<T: Layout, L: Lanes>(job: &Job, j0: usize, j1: usize) {
    let (mut g, g1) = (j0 / GROUP, j1.div_ceil(GROUP));
    if job.m == 1 {
        // Two groups' independent chains hide the `vpdpbusd` latency of a single row.
        while g + 2 <= g1 {
            for h in 0..GROUP / L::W {
                tile::<T, L, 2, 1>(job, g, h, 0);
            }
            g += 2;
        }
    }
    while g < g1 {
        for h in 0..GROUP / L::W {
            rows::<T, L>(job, g, h);
        }
        g += 1;
    }
}

#[inline(always)]
unsafe fn columns_isa<L: Lanes>(base: u32, job: &Job, j0: usize, j1: usize) {
    match base {
        Q4_0 => columns_typed::<RQ4_0, L>(job, j0, j1),
        Q4_1 => columns_typed::<RQ4_1, L>(job, j0, j1),
        Q5_0 => columns_typed::<RQ5_0, L>(job, j0, j1),
        Q8_0 => columns_typed::<RQ8_0, L>(job, j0, j1),
        Q4_K => columns_typed::<RQ4K, L>(job, j0, j1),
        Q6_K => columns_typed::<RQ6K, L>(job, j0, j1),
        _ => {}
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
unsafe fn columns_vnni(base: u32, job: &Job, j0: usize, j1: usize) {
    columns_isa::<Vnni>(base, job, j0, j1)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn columns_avx2(base: u32, job: &Job, j0: usize, j1: usize) {
    columns_isa::<Avx2>(base, job, j0, j1)
}

/// Output columns `j0..j1` (multiples of 16, or `j1` = n) of `job` on this thread; `base` is
/// the ggml type behind the repacked id.
///
/// # Safety
/// `isa` is supported by this CPU; `job.w` holds the repacked groups covering columns `..j1`
/// and `job.x.k` elements; `job.out` has room for `m` rows of `ldo ≥ j1` floats.
pub(super) unsafe fn columns(isa: IntIsa, base: u32, job: &Job, j0: usize, j1: usize) {
    match isa {
        IntIsa::Vnni => columns_vnni(base, job, j0, j1),
        IntIsa::Avx2 => columns_avx2(base, job, j0, j1),
    }
}
