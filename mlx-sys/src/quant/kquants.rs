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
fn scale_min(j: usize, q: &[u8]) -> (u8, u8) {
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
            let q = &qs[32 * i..32 * i + 32];
            let (lo, hi) = out[64 * i..64 * i + 64].split_at_mut(32);
            for l in 0..32 {
                lo[l] = d1 * (q[l] & 0x0f) as f32 - min1;
                hi[l] = d2 * (q[l] >> 4) as f32 - min2;
            }
        }
    }
}

/// # Safety
/// `src` holds `blocks` Q6_K blocks and `dst` room for `256 · blocks` floats.
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
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                let scale = |i: usize| d * (sc[i] as i8) as f32;
                y[l] = scale(is) * q1 as f32;
                y[l + 32] = scale(is + 2) * q2 as f32;
                y[l + 64] = scale(is + 4) * q3 as f32;
                y[l + 96] = scale(is + 6) * q4 as f32;
            }
        }
    }
}
