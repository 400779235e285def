//! Q4_K and Q6_K super-blocks (256 elements) to floats, as plain loops over whole 32-element
//! runs that the compiler vectorizes.
//!
//! Q4_K: f16 `d`, f16 `dmin`, 12 bytes packing eight 6-bit scales and eight 6-bit minimums, 128
//! bytes of nibbles; sub-block `s` (32 elements) is `d·sc[s]·q − dmin·m[s]`, the low nibbles of
//! bytes 32·i.. forming sub-block 2i and the high nibbles sub-block 2i+1.
//! Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, sixteen int8 scales (one per 16
//! elements), then f16 `d`; an element is `d·sc·(q − 32)`.

use super::half_at;

/// The 6-bit scale and minimum of sub-block `j` (0..8) from a Q4_K block's 12 scale bytes.
#[inline(always)]
pub(super) fn scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// # Safety
/// `src` holds `blocks` Q4_K blocks and `dst` room for `256 · blocks` floats.
#[inline(always)]
pub unsafe fn q4_k(src: *const u8, blocks: usize, dst: *mut f32) {
    for b in 0..blocks {
        let s = std::slice::from_raw_parts(src.add(b * 144), 144);
        let out = std::slice::from_raw_parts_mut(dst.add(b * 256), 256);
        let d = half_at(s.as_ptr());
        let dmin = half_at(s.as_ptr().add(2));
        let scales = &s[4..16];
        let qs = &s[16..144];
        for i in 0..4 {
            let (sc1, m1) = scale_min(2 * i, scales);
            let (sc2, m2) = scale_min(2 * i + 1, scales);
            let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
            let q: &[u8; 32] = qs[32 * i..32 * i + 32].try_into().unwrap();
            let (lo, hi) = out[64 * i..64 * i + 64].split_at_mut(32);
            q4_run::<0>(q, d1, min1, lo.try_into().unwrap());
            q4_run::<4>(q, d2, min2, hi.try_into().unwrap());
        }
    }
}

/// Thirty-two Q4_K values of one sub-block: `d·q − min`, `q` the nibbles at `shift`.
#[inline(always)]
fn q4_run<const SHIFT: u32>(q: &[u8; 32], d: f32, min: f32, y: &mut [f32; 32]) {
    for l in 0..32 {
        y[l] = d * ((q[l] >> SHIFT) & 0x0f) as f32 - min;
    }
}

/// Sixteen Q6_K values with one scale: low nibbles (`shift` 0) or high nibbles (4) of `ql`,
/// two high bits of `qh` at `hshift`.
#[inline(always)]
fn q6_group(ql: &[u8; 16], qh: &[u8; 16], shift: u32, hshift: u32, scale: f32, y: &mut [f32]) {
    for l in 0..16 {
        let q = ((ql[l] >> shift) & 0x0f) | (((qh[l] >> hshift) & 3) << 4);
        y[l] = scale * (q as i32 - 32) as f32;
    }
}

/// # Safety
/// `src` holds `blocks` Q6_K blocks and `dst` room for `256 · blocks` floats.
#[inline(always)]
pub unsafe fn q6_k(src: *const u8, blocks: usize, dst: *mut f32) {
    for b in 0..blocks {
        let s = std::slice::from_raw_parts(src.add(b * 210), 210);
        let out = std::slice::from_raw_parts_mut(dst.add(b * 256), 256);
        let d = half_at(s.as_ptr().add(208));
        for n in 0..2 {
            let ql = &s[64 * n..64 * n + 64];
            let qh = &s[128 + 32 * n..128 + 32 * n + 32];
            let sc = &s[192 + 8 * n..192 + 8 * n + 8];
            let y = &mut out[128 * n..128 * n + 128];
            // Element l + 32·j (j = 0..4) of this half: ql byte l (+32 for odd j), nibble j / 2,
            // high bits 2·j of qh byte l; scale sc[l / 16 + 2·j].
            for j in 0..4 {
                for half in 0..2 {
                    let l0 = 16 * half;
                    let qlo = if j % 2 == 0 { l0 } else { l0 + 32 };
                    let ql16: &[u8; 16] = ql[qlo..qlo + 16].try_into().unwrap();
                    let qh16: &[u8; 16] = qh[l0..l0 + 16].try_into().unwrap();
                    let scale = d * (sc[half + 2 * j] as i8) as f32;
                    let shift = if j < 2 { 0 } else { 4 };
                    let at = 32 * j + l0;
                    q6_group(ql16, qh16, shift, 2 * j as u32, scale, &mut y[at..at + 16]);
                }
            }
        }
    }
}

/// The loops above compiled for AVX-512 and AVX2, so the compiler vectorizes them that wide
/// (Q4_K on AVX-512 has its own kernel in `x86`: the compiler kept that loop scalar).
#[cfg(target_arch = "x86_64")]
pub mod wide {
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn q6_k_avx512(src: *const u8, blocks: usize, dst: *mut f32) {
        super::q6_k(src, blocks, dst)
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn q4_k_avx2(src: *const u8, blocks: usize, dst: *mut f32) {
        super::q4_k(src, blocks, dst)
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn q6_k_avx2(src: *const u8, blocks: usize, dst: *mut f32) {
        super::q6_k(src, blocks, dst)
    }
}
