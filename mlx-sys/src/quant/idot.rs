//! Integer dot products of GGUF weight blocks with int8 activation blocks ([`Q8Rows`]), as ggml
//! computes them: per 32 elements the weights' small unsigned integers times the activations'
//! int8 values, summed in four-element groups into eight i32 lanes by one `vpdpbusd` (AVX-512
//! VNNI) or `vpmaddubsw` + `vpmaddwd` (AVX2), then scaled once per block in float. That is a
//! handful of instructions per 32 weights, where dequantizing to float costs several per 8.
//!
//! The loop is written once over two traits: [`Dot`] (the instruction set) and [`Blocks`] (how
//! a weight type's block decodes into 32-byte chunks with a scale and an offset). A tile of `C`
//! weight rows × `R` activation rows decodes each weight chunk once for all `R` rows.
//!
//! Offsets: Q4_0/Q5_0 store `q − 8`/`q − 16` and Q4_1/Q4_K subtract a minimum, so the chunk's
//! `min` multiplies the activation block's sum `s`; Q6_K's `q − 32` has a scale per 16 elements,
//! so it subtracts `32·Σx` per lane in integers instead. Q8_0 is signed: `|w| · sign(w)·x`.

use std::arch::x86_64::*;

use super::kquants::scale_min;
use super::q8::Q8Rows;
use super::{Q4_0, Q4_1, Q4_K, Q5_0, Q6_K, Q8_0};

/// `Σ u8·s8` over each group of four bytes, into eight i32 lanes.
pub(super) trait Dot {
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i;
    /// `q` with 16 added to byte `j` where bit `j` of `bits` is set (Q5_0's fifth bits).
    unsafe fn add_fifth(q: __m256i, bits: u32) -> __m256i;
}

pub(super) struct Vnni;
pub(super) struct Avx2;

impl Dot for Vnni {
    #[inline(always)]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }
    #[inline(always)]
    unsafe fn add_fifth(q: __m256i, bits: u32) -> __m256i {
        _mm256_mask_add_epi8(q, bits, q, _mm256_set1_epi8(16))
    }
}

impl Dot for Avx2 {
    #[inline(always)]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        // u ≤ 128 (|Q8_0|) and |s| ≤ 127: a pair sums to at most 32,512, so the i16 step never
        // saturates.
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }
    #[inline(always)]
    unsafe fn add_fifth(q: __m256i, bits: u32) -> __m256i {
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
}

/// 32 weights: the unsigned integers `q`, the lane scales `d` (eight lanes of four elements) and
/// the multiplier of the activation block's sum.
#[derive(Clone, Copy)]
pub(super) struct Chunk {
    q: __m256i,
    d: __m256,
    min: f32,
    /// Q8_0 only: the signed weights, whose signs move onto the activations.
    sign: __m256i,
}

/// A ggml block type as chunks of 32 elements (chunk `j` of block `b` covers its elements
/// `32j..32j+32`, i.e. activation block `ELEMS/32 · b + j`).
pub(super) trait Blocks {
    const ELEMS: usize;
    const BYTES: usize;
    const SIGNED: bool = false;
    /// Subtract `32·Σx` per lane (Q6_K).
    const OFFSET32: bool = false;
    const HAS_MIN: bool = true;
    /// Chunk `sub` of the block at `p`. Plain functions, not callbacks: everything must inline
    /// into the `target_feature` entry points, or each intrinsic becomes a call (a closure
    /// that the compiler declined to inline made the K-quant tiles 60x slower).
    unsafe fn chunk<D: Dot>(p: *const u8, sub: usize) -> Chunk;
}

#[inline(always)]
unsafe fn half(p: *const u8) -> f32 {
    let h = (p as *const u16).read_unaligned();
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// The 16 bytes at `p` as 32 nibbles in element order (low nibbles, then high).
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let v = _mm_loadu_si128(p as *const __m128i);
    let both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

#[inline(always)]
fn chunk(q: __m256i, d: f32, min: f32) -> Chunk {
    // SAFETY: plain register operations; the callers run with AVX2 enabled.
    unsafe {
        Chunk {
            q,
            d: _mm256_set1_ps(d),
            min,
            sign: _mm256_setzero_si256(),
        }
    }
}

pub(super) struct BQ4_0;
pub(super) struct BQ4_1;
pub(super) struct BQ5_0;
pub(super) struct BQ8_0;
pub(super) struct BQ4K;
pub(super) struct BQ6K;

impl Blocks for BQ4_0 {
    const ELEMS: usize = 32;
    const BYTES: usize = 18;
    #[inline(always)]
    unsafe fn chunk<D: Dot>(p: *const u8, _: usize) -> Chunk {
        let d = half(p);
        chunk(nibbles(p.add(2)), d, -8.0 * d)
    }
}

impl Blocks for BQ4_1 {
    const ELEMS: usize = 32;
    const BYTES: usize = 20;
    #[inline(always)]
    unsafe fn chunk<D: Dot>(p: *const u8, _: usize) -> Chunk {
        chunk(nibbles(p.add(4)), half(p), half(p.add(2)))
    }
}

impl Blocks for BQ5_0 {
    const ELEMS: usize = 32;
    const BYTES: usize = 22;
    #[inline(always)]
    unsafe fn chunk<D: Dot>(p: *const u8, _: usize) -> Chunk {
        let d = half(p);
        let bits = (p.add(2) as *const u32).read_unaligned();
        chunk(D::add_fifth(nibbles(p.add(6)), bits), d, -16.0 * d)
    }
}

impl Blocks for BQ8_0 {
    const ELEMS: usize = 32;
    const BYTES: usize = 34;
    const SIGNED: bool = true;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn chunk<D: Dot>(p: *const u8, _: usize) -> Chunk {
        let w = _mm256_loadu_si256(p.add(2) as *const __m256i);
        // |−128| reads as 128 unsigned, which is right.
        let mut c = chunk(_mm256_abs_epi8(w), half(p), 0.0);
        c.sign = w;
        c
    }
}

impl Blocks for BQ4K {
    const ELEMS: usize = 256;
    const BYTES: usize = 144;
    #[inline(always)]
    unsafe fn chunk<D: Dot>(p: *const u8, sub: usize) -> Chunk {
        // Sub-blocks 2i and 2i+1 are the low and high nibbles of bytes 32i..32i+32.
        let scales = std::slice::from_raw_parts(p.add(4), 12);
        let (sc, m) = scale_min(sub, scales);
        let v = _mm256_loadu_si256(p.add(16 + 32 * (sub / 2)) as *const __m256i);
        let v = if sub % 2 == 0 {
            v
        } else {
            _mm256_srli_epi16(v, 4)
        };
        let q = _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
        chunk(q, half(p) * sc as f32, -half(p.add(2)) * m as f32)
    }
}

impl Blocks for BQ6K {
    const ELEMS: usize = 256;
    const BYTES: usize = 210;
    const OFFSET32: bool = true;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn chunk<D: Dot>(p: *const u8, sub: usize) -> Chunk {
        // Elements 32j.. of half n: nibble j/2 of ql byte l (+32 for odd j), bits 2j of qh
        // byte l; scales sc[2j] (first 16) and sc[2j + 1].
        let (n, j) = (sub / 4, sub % 4);
        let low = _mm256_loadu_si256(p.add(64 * n + 32 * (j % 2)) as *const __m256i);
        let low = if j < 2 {
            low
        } else {
            _mm256_srli_epi16(low, 4)
        };
        let nib = _mm256_and_si256(low, _mm256_set1_epi8(0x0f));
        let qh = _mm256_loadu_si256(p.add(128 + 32 * n) as *const __m256i);
        let shift = _mm_cvtsi32_si128(2 * j as i32);
        let high = _mm256_and_si256(_mm256_srl_epi16(qh, shift), _mm256_set1_epi8(3));
        let d = half(p.add(208));
        let sc = p.add(192 + 8 * n + 2 * j) as *const i8;
        Chunk {
            q: _mm256_or_si256(nib, _mm256_slli_epi16(high, 4)),
            d: _mm256_setr_m128(
                _mm_set1_ps(d * *sc as f32),
                _mm_set1_ps(d * *sc.add(1) as f32),
            ),
            min: 0.0,
            sign: _mm256_setzero_si256(),
        }
    }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// One product's operands for [`columns`].
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

/// `out[i0..i0+R, j..j+C]` from weight rows `j..j+C` and activation rows `i0..i0+R`.
#[inline(always)]
unsafe fn tile<T: Blocks, D: Dot, const C: usize, const R: usize>(job: &Job, j: usize, i0: usize) {
    let k = job.x.k;
    let xblocks = k / 32;
    let mut acc = [[_mm256_setzero_ps(); R]; C];
    let mut off = [[0f32; R]; C];
    let xq = job.x.q.as_ptr().add(i0 * k);
    let xd = job.x.d.as_ptr().add(i0 * xblocks);
    let xs = job.x.s.as_ptr().add(i0 * xblocks);
    let thirty_two = _mm256_set1_epi8(32);
    for b in 0..k / T::ELEMS {
        for sub in 0..T::ELEMS / 32 {
            let xb = b * (T::ELEMS / 32) + sub;
            for c in 0..C {
                let ch = T::chunk::<D>(job.w.add((j + c) * job.row_bytes + b * T::BYTES), sub);
                for i in 0..R {
                    let mut xv = _mm256_loadu_si256(xq.add(i * k + 32 * xb) as *const __m256i);
                    if T::SIGNED {
                        xv = _mm256_sign_epi8(xv, ch.sign);
                    }
                    let mut s = D::dot(ch.q, xv);
                    if T::OFFSET32 {
                        s = _mm256_sub_epi32(s, D::dot(thirty_two, xv));
                    }
                    let scale = _mm256_mul_ps(ch.d, _mm256_set1_ps(*xd.add(i * xblocks + xb)));
                    acc[c][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc[c][i]);
                    if T::HAS_MIN {
                        off[c][i] += ch.min * *xs.add(i * xblocks + xb);
                    }
                }
            }
        }
    }
    for c in 0..C {
        for i in 0..R {
            *job.out.add((i0 + i) * job.ldo + j + c) = hsum(acc[c][i]) + off[c][i];
        }
    }
}

/// Activation rows `0..m` against weight rows `j`..: up to four activation rows per tile.
#[inline(always)]
unsafe fn rows<T: Blocks, D: Dot, const C: usize>(job: &Job, j: usize) {
    let mut i0 = 0;
    while i0 < job.m {
        match job.m - i0 {
            1 => tile::<T, D, C, 1>(job, j, i0),
            2 => tile::<T, D, C, 2>(job, j, i0),
            3 => tile::<T, D, C, 3>(job, j, i0),
            _ => tile::<T, D, C, 4>(job, j, i0),
        }
        i0 += 4;
    }
}

#[inline(always)]
unsafe fn columns_typed<T: Blocks, D: Dot>(job: &Job, j0: usize, j1: usize) {
    let mut j = j0;
    if job.m == 1 {
        // Four independent accumulators hide the FMA latency and share each activation load.
        while j + 4 <= j1 {
            tile::<T, D, 4, 1>(job, j, 0);
            j += 4;
        }
    } else {
        while j + 2 <= j1 {
            rows::<T, D, 2>(job, j);
            j += 2;
        }
    }
    while j < j1 {
        rows::<T, D, 1>(job, j);
        j += 1;
    }
}

#[inline(always)]
unsafe fn columns_isa<D: Dot>(ggml_type: u32, job: &Job, j0: usize, j1: usize) {
    match ggml_type {
        Q4_0 => columns_typed::<BQ4_0, D>(job, j0, j1),
        Q4_1 => columns_typed::<BQ4_1, D>(job, j0, j1),
        Q5_0 => columns_typed::<BQ5_0, D>(job, j0, j1),
        Q8_0 => columns_typed::<BQ8_0, D>(job, j0, j1),
        Q4_K => columns_typed::<BQ4K, D>(job, j0, j1),
        Q6_K => columns_typed::<BQ6K, D>(job, j0, j1),
        _ => {}
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
unsafe fn columns_vnni(ggml_type: u32, job: &Job, j0: usize, j1: usize) {
    columns_isa::<Vnni>(ggml_type, job, j0, j1)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn columns_avx2(ggml_type: u32, job: &Job, j0: usize, j1: usize) {
    columns_isa::<Avx2>(ggml_type, job, j0, j1)
}

/// The instruction sets the integer kernels run on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IntIsa {
    Vnni,
    Avx2,
}

/// The best integer kernel for this CPU, `None` below AVX2 + FMA + F16C.
/// `MLX_SERVE_QUANT_ISA=avx2` forces the `maddubs` path (tests and benchmarks).
pub fn int_isa() -> Option<IntIsa> {
    use std::sync::OnceLock;
    static ISA: OnceLock<Option<IntIsa>> = OnceLock::new();
    *ISA.get_or_init(|| {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        if !avx2 {
            return None;
        }
        let vnni = is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bw");
        let forced = std::env::var("MLX_SERVE_QUANT_ISA").as_deref() == Ok("avx2");
        Some(if vnni && !forced {
            IntIsa::Vnni
        } else {
            IntIsa::Avx2
        })
    })
}

/// Output columns `j0..j1` of `job` on this thread.
///
/// # Safety
/// `isa` is supported by this CPU (`int_isa` or weaker); `job.w` holds at least `j1` rows of
/// `row_bytes` bytes of `ggml_type` blocks covering `job.x.k` elements; `job.out` has room for
/// `m` rows of `ldo ≥ j1` floats.
pub(super) unsafe fn columns(isa: IntIsa, ggml_type: u32, job: &Job, j0: usize, j1: usize) {
    match isa {
        IntIsa::Vnni => columns_vnni(ggml_type, job, j0, j1),
        IntIsa::Avx2 => columns_avx2(ggml_type, job, j0, j1),
    }
}
