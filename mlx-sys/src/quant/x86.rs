//! Block dequantization with AVX-512 and AVX2: the nibbles (or bytes) of a block widen to 32-bit
//! lanes, convert to float and take the block's scale and offset in one multiply-add.

use std::arch::x86_64::*;

use super::{block_bytes, half_at, Q4_0, Q4_1, Q5_0, Q8_0};

/// Low and high nibbles of the 16 bytes at `qs`: elements 0–15 and 16–31 of a 4-bit block.
#[inline(always)]
unsafe fn nibbles(qs: *const u8) -> (__m128i, __m128i) {
    let q = _mm_loadu_si128(qs as *const __m128i);
    let mask = _mm_set1_epi8(0x0f);
    (
        _mm_and_si128(q, mask),
        _mm_and_si128(_mm_srli_epi16(q, 4), mask),
    )
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn widen512(v: __m128i) -> __m512 {
    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v))
}

/// Nibbles plus their fifth bits (a 16-bit mask) minus 16: sixteen Q5_0 values.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn fifth512(v: __m128i, bits: u32) -> __m512 {
    let sixteen = _mm512_set1_epi32(16);
    let q = _mm512_cvtepu8_epi32(v);
    let q = _mm512_mask_add_epi32(q, bits as __mmask16, q, sixteen);
    _mm512_cvtepi32_ps(_mm512_sub_epi32(q, sixteen))
}

/// Eight bytes (the low or the high half of `v`) widened to eight 32-bit lanes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn eight256(v: __m128i, half: i32) -> __m256i {
    let v = if half == 0 { v } else { _mm_srli_si128(v, 8) };
    _mm256_cvtepu8_epi32(v)
}

#[target_feature(enable = "avx512f")]
pub unsafe fn dequant_avx512(ggml_type: u32, src: *const u8, blocks: usize, dst: *mut f32) {
    let Some(bb) = block_bytes(ggml_type) else {
        return;
    };
    for b in 0..blocks {
        let s = src.add(b * bb);
        let o = dst.add(b * 32);
        let d = half_at(s);
        let vd = _mm512_set1_ps(d);
        match ggml_type {
            Q4_0 | Q4_1 => {
                let (min, qs) = if ggml_type == Q4_0 {
                    (-8.0 * d, s.add(2))
                } else {
                    (half_at(s.add(2)), s.add(4))
                };
                let vm = _mm512_set1_ps(min);
                let (lo, hi) = nibbles(qs);
                _mm512_storeu_ps(o, _mm512_fmadd_ps(widen512(lo), vd, vm));
                _mm512_storeu_ps(o.add(16), _mm512_fmadd_ps(widen512(hi), vd, vm));
            }
            Q5_0 => {
                let qh = (s.add(2) as *const u32).read_unaligned();
                let (lo, hi) = nibbles(s.add(6));
                _mm512_storeu_ps(o, _mm512_mul_ps(fifth512(lo, qh & 0xffff), vd));
                _mm512_storeu_ps(o.add(16), _mm512_mul_ps(fifth512(hi, qh >> 16), vd));
            }
            Q8_0 => {
                for h in 0..2 {
                    let q = _mm_loadu_si128(s.add(2 + 16 * h) as *const __m128i);
                    let f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
                    _mm512_storeu_ps(o.add(16 * h), _mm512_mul_ps(f, vd));
                }
            }
            _ => return,
        }
    }
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn dequant_avx2(ggml_type: u32, src: *const u8, blocks: usize, dst: *mut f32) {
    let Some(bb) = block_bytes(ggml_type) else {
        return;
    };
    // Lane i of the shift vector picks bit i (plus an offset) of a Q5_0 block's fifth bits.
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for b in 0..blocks {
        let s = src.add(b * bb);
        let o = dst.add(b * 32);
        let d = half_at(s);
        let vd = _mm256_set1_ps(d);
        match ggml_type {
            Q4_0 | Q4_1 => {
                let (min, qs) = if ggml_type == Q4_0 {
                    (-8.0 * d, s.add(2))
                } else {
                    (half_at(s.add(2)), s.add(4))
                };
                let vm = _mm256_set1_ps(min);
                let (lo, hi) = nibbles(qs);
                for (i, (v, h)) in [(lo, 0), (lo, 1), (hi, 0), (hi, 1)].into_iter().enumerate() {
                    let f = _mm256_cvtepi32_ps(eight256(v, h));
                    _mm256_storeu_ps(o.add(8 * i), _mm256_fmadd_ps(f, vd, vm));
                }
            }
            Q5_0 => {
                let qh = (s.add(2) as *const u32).read_unaligned() as i32;
                let (lo, hi) = nibbles(s.add(6));
                let one = _mm256_set1_epi32(1);
                let sixteen = _mm256_set1_epi32(16);
                for (i, (v, h)) in [(lo, 0), (lo, 1), (hi, 0), (hi, 1)].into_iter().enumerate() {
                    let shift = _mm256_add_epi32(lanes, _mm256_set1_epi32(8 * i as i32));
                    let bit =
                        _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(qh), shift), one);
                    let q = _mm256_or_si256(eight256(v, h), _mm256_slli_epi32(bit, 4));
                    let f = _mm256_cvtepi32_ps(_mm256_sub_epi32(q, sixteen));
                    _mm256_storeu_ps(o.add(8 * i), _mm256_mul_ps(f, vd));
                }
            }
            Q8_0 => {
                for i in 0..4 {
                    let q = _mm_loadl_epi64(s.add(2 + 8 * i) as *const __m128i);
                    let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                    _mm256_storeu_ps(o.add(8 * i), _mm256_mul_ps(f, vd));
                }
            }
            _ => return,
        }
    }
}

/// Q4_K super-blocks (see `kquants`): each 32-byte run of nibbles is two sub-blocks, the low
/// nibbles `d·sc·q − dmin·m` of one and the high nibbles of the next.
#[target_feature(enable = "avx512f")]
pub unsafe fn q4_k_avx512(src: *const u8, blocks: usize, dst: *mut f32) {
    for b in 0..blocks {
        let s = src.add(b * 144);
        let o = dst.add(b * 256);
        let d = half_at(s);
        let dmin = half_at(s.add(2));
        let scales = std::slice::from_raw_parts(s.add(4), 12);
        for i in 0..4 {
            let q = s.add(16 + 32 * i);
            let (lo0, hi0) = nibbles(q);
            let (lo1, hi1) = nibbles(q.add(16));
            for (sub, (a, c)) in [(lo0, lo1), (hi0, hi1)].into_iter().enumerate() {
                let (sc, m) = super::kquants::scale_min(2 * i + sub, scales);
                let vd = _mm512_set1_ps(d * sc as f32);
                let vm = _mm512_set1_ps(-dmin * m as f32);
                let out = o.add(64 * i + 32 * sub);
                _mm512_storeu_ps(out, _mm512_fmadd_ps(widen512(a), vd, vm));
                _mm512_storeu_ps(out.add(16), _mm512_fmadd_ps(widen512(c), vd, vm));
            }
        }
    }
}
