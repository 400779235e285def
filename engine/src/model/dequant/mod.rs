//! ggml tensor types and their dequantizers to `f32`.
//!
//! Block layouts follow ggml (`ggml-common.h` / `ggml-quants.c`), which the `gguf` Python
//! package mirrors in `gguf.quants`; the tests compare against vectors that package produced.
//! Everything works block by block on plain byte slices: no allocation per element, so a
//! 500 MB model dequantizes in seconds.

use half::{bf16, f16};

/// Elements per super-block of the k-quants.
const QK_K: usize = 256;

/// A ggml tensor element type, as stored in a GGUF tensor info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    /// A type this crate cannot size or decode (the IQ quants, ternary types, …).
    Other(u32),
}

impl GgmlType {
    /// Maps the numeric id of `enum ggml_type`.
    pub fn from_id(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            24 => Self::I8,
            25 => Self::I16,
            26 => Self::I32,
            27 => Self::I64,
            28 => Self::F64,
            30 => Self::BF16,
            other => Self::Other(other),
        }
    }

    /// ggml's name of the type (`q4_K`, `bf16`, …).
    pub fn name(self) -> String {
        let s = match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
            Self::Q8_0 => "q8_0",
            Self::Q8_1 => "q8_1",
            Self::Q2K => "q2_K",
            Self::Q3K => "q3_K",
            Self::Q4K => "q4_K",
            Self::Q5K => "q5_K",
            Self::Q6K => "q6_K",
            Self::Q8K => "q8_K",
            Self::I8 => "i8",
            Self::I16 => "i16",
            Self::I32 => "i32",
            Self::I64 => "i64",
            Self::F64 => "f64",
            Self::BF16 => "bf16",
            Self::Other(id) => return format!("ggml_type({id})"),
        };
        s.to_string()
    }

    /// `(elements per block, bytes per block)`, or `None` for an unknown type.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        Some(match self {
            Self::F32 | Self::I32 => (1, 4),
            Self::F16 | Self::BF16 | Self::I16 => (1, 2),
            Self::I8 => (1, 1),
            Self::I64 | Self::F64 => (1, 8),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q8_1 => (32, 36),
            Self::Q2K => (QK_K, 84),
            Self::Q3K => (QK_K, 110),
            Self::Q4K => (QK_K, 144),
            Self::Q5K => (QK_K, 176),
            Self::Q6K => (QK_K, 210),
            Self::Q8K => (QK_K, 292),
            Self::Other(_) => return None,
        })
    }

    /// Bytes that `n_elements` of this type occupy, when the type is known and `n_elements`
    /// is a whole number of blocks.
    pub fn byte_size(self, n_elements: usize) -> Option<usize> {
        let (block, bytes) = self.block_layout()?;
        if n_elements % block != 0 {
            return None;
        }
        (n_elements / block).checked_mul(bytes)
    }
}

/// Why a buffer could not be dequantized.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DequantError {
    /// The type has no dequantizer here.
    #[error("dequantizing {0} is not supported")]
    Unsupported(String),
    /// The element count is not a whole number of blocks, or the buffers have the wrong size.
    #[error("{ty}: {n_elements} elements need {expected} bytes, got {actual}")]
    Size {
        /// Type name.
        ty: String,
        /// Elements requested.
        n_elements: usize,
        /// Bytes the elements need (0 when not a whole number of blocks).
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
}

/// Dequantizes `data` (exactly `n` elements of type `ty`) into a new vector.
pub fn dequantize(ty: GgmlType, data: &[u8], n: usize) -> Result<Vec<f32>, DequantError> {
    let mut out = vec![0f32; n];
    dequantize_into(ty, data, &mut out)?;
    Ok(out)
}

/// Dequantizes `data` into `out`; `out.len()` is the element count.
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    let n = out.len();
    let expected = ty.byte_size(n);
    if expected != Some(data.len()) {
        if ty.block_layout().is_none() {
            return Err(DequantError::Unsupported(ty.name()));
        }
        return Err(DequantError::Size {
            ty: ty.name(),
            n_elements: n,
            expected: expected.unwrap_or(0),
            actual: data.len(),
        });
    }
    match ty {
        GgmlType::F32 => elementwise::<4>(data, out, f32::from_le_bytes),
        GgmlType::F16 => elementwise::<2>(data, out, |b| f16::from_le_bytes(b).to_f32()),
        GgmlType::BF16 => elementwise::<2>(data, out, |b| bf16::from_le_bytes(b).to_f32()),
        GgmlType::F64 => elementwise::<8>(data, out, |b| f64::from_le_bytes(b) as f32),
        GgmlType::I8 => elementwise::<1>(data, out, |b| b[0] as i8 as f32),
        GgmlType::I16 => elementwise::<2>(data, out, |b| i16::from_le_bytes(b) as f32),
        GgmlType::I32 => elementwise::<4>(data, out, |b| i32::from_le_bytes(b) as f32),
        GgmlType::I64 => elementwise::<8>(data, out, |b| i64::from_le_bytes(b) as f32),
        GgmlType::Q4_0 => blocks::<32>(data, 18, out, q4_0),
        GgmlType::Q4_1 => blocks::<32>(data, 20, out, q4_1),
        GgmlType::Q5_0 => blocks::<32>(data, 22, out, q5_0),
        GgmlType::Q5_1 => blocks::<32>(data, 24, out, q5_1),
        GgmlType::Q8_0 => blocks::<32>(data, 34, out, q8_0),
        GgmlType::Q8_1 => blocks::<32>(data, 36, out, q8_1),
        GgmlType::Q2K => blocks::<QK_K>(data, 84, out, q2_k),
        GgmlType::Q3K => blocks::<QK_K>(data, 110, out, q3_k),
        GgmlType::Q4K => blocks::<QK_K>(data, 144, out, q4_k),
        GgmlType::Q5K => blocks::<QK_K>(data, 176, out, q5_k),
        GgmlType::Q6K => blocks::<QK_K>(data, 210, out, q6_k),
        GgmlType::Q8K => blocks::<QK_K>(data, 292, out, q8_k),
        GgmlType::Other(_) => return Err(DequantError::Unsupported(ty.name())),
    }
    Ok(())
}

fn elementwise<const B: usize>(data: &[u8], out: &mut [f32], f: impl Fn([u8; B]) -> f32) {
    for (o, chunk) in out.iter_mut().zip(data.chunks_exact(B)) {
        let mut b = [0u8; B];
        b.copy_from_slice(chunk);
        *o = f(b);
    }
}

fn blocks<const N: usize>(
    data: &[u8],
    block_bytes: usize,
    out: &mut [f32],
    f: fn(&[u8], &mut [f32; N]),
) {
    for (block, y) in data.chunks_exact(block_bytes).zip(out.chunks_exact_mut(N)) {
        // `chunks_exact_mut(N)` guarantees the length, so the conversion cannot fail.
        if let Ok(y) = <&mut [f32; N]>::try_from(y) {
            f(block, y);
        }
    }
}

fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

fn q4_0(b: &[u8], y: &mut [f32; 32]) {
    let d = half_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = ((qs[j] & 0x0f) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

fn q4_1(b: &[u8], y: &mut [f32; 32]) {
    let d = half_at(b, 0);
    let m = half_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0f) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

/// The 5th bits of a Q5 block: bit `j` belongs to element `j`.
fn q5_high_bits(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn q5_0(b: &[u8], y: &mut [f32; 32]) {
    let d = half_at(b, 0);
    let qh = q5_high_bits(&b[2..6]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((qs[j] & 0x0f) as u32 | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((qs[j] >> 4) as u32 | h1) as i32 - 16) as f32 * d;
    }
}

fn q5_1(b: &[u8], y: &mut [f32; 32]) {
    let d = half_at(b, 0);
    let m = half_at(b, 2);
    let qh = q5_high_bits(&b[4..8]);
    let qs = &b[8..24];
    for j in 0..16 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((qs[j] & 0x0f) as u32 | h0) as f32 * d + m;
        y[j + 16] = ((qs[j] >> 4) as u32 | h1) as f32 * d + m;
    }
}

fn q8_0(b: &[u8], y: &mut [f32; 32]) {
    let d = half_at(b, 0);
    for (o, &q) in y.iter_mut().zip(&b[2..34]) {
        *o = q as i8 as f32 * d;
    }
}

fn q8_1(b: &[u8], y: &mut [f32; 32]) {
    // The second half-float is the precomputed sum `d * Σq`, unused for dequantization.
    let d = half_at(b, 0);
    for (o, &q) in y.iter_mut().zip(&b[4..36]) {
        *o = q as i8 as f32 * d;
    }
}

fn q2_k(b: &[u8], y: &mut [f32; QK_K]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = half_at(b, 80);
    let dmin = half_at(b, 82);
    let mut is = 0;
    let mut out = 0;
    for q in qs.chunks_exact(32) {
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * (sc & 0x0f) as f32;
                let ml = dmin * (sc >> 4) as f32;
                for &v in &q[half * 16..half * 16 + 16] {
                    y[out] = dl * ((v >> shift) & 3) as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

/// Unpacks the twelve bytes of 6-bit scales of a Q3_K block into sixteen signed scales.
fn q3_k_scales(packed: &[u8]) -> [i8; 16] {
    let mut s = [0i8; 16];
    for (j, o) in s.iter_mut().enumerate() {
        let low = if j < 8 {
            packed[j] & 0x0f
        } else {
            packed[j - 8] >> 4
        };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = ((low | (high << 4)) as i32 - 32) as i8;
    }
    s
}

fn q3_k(b: &[u8], y: &mut [f32; QK_K]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let scales = q3_k_scales(&b[96..108]);
    let d = half_at(b, 108);
    let mut is = 0;
    let mut out = 0;
    let mut m = 1u8;
    for q in qs.chunks_exact(32) {
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let dl = d * scales[is] as f32;
                is += 1;
                for l in half * 16..half * 16 + 16 {
                    let low = ((q[l] >> shift) & 3) as i32;
                    let sub = if hmask[l] & m != 0 { 0 } else { 4 };
                    y[out] = dl * (low - sub) as f32;
                    out += 1;
                }
            }
            m <<= 1;
        }
    }
}

/// Scale and min of sub-block `j` from the twelve packed 6-bit bytes of Q4_K/Q5_K.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
    } else {
        let sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (sc as f32, m as f32)
    }
}

fn q4_k(b: &[u8], y: &mut [f32; QK_K]) {
    let d = half_at(b, 0);
    let dmin = half_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (i, q) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * i, scales);
        let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let y = &mut y[i * 64..i * 64 + 64];
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0x0f) as f32 - m1;
            y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

fn q5_k(b: &[u8], y: &mut [f32; QK_K]) {
    let d = half_at(b, 0);
    let dmin = half_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (i, ql) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * i, scales);
        let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let u1 = 1u8 << (2 * i);
        let u2 = 2u8 << (2 * i);
        let y = &mut y[i * 64..i * 64 + 64];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((ql[l] & 0x0f) + h1) as f32 - m1;
            y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
        }
    }
}

fn q6_k(b: &[u8], y: &mut [f32; QK_K]) {
    let ql_all = &b[0..128];
    let qh_all = &b[128..192];
    let sc_all = &b[192..208];
    let d = half_at(b, 208);
    for n in 0..2 {
        let ql = &ql_all[n * 64..n * 64 + 64];
        let qh = &qh_all[n * 32..n * 32 + 32];
        let sc = &sc_all[n * 8..n * 8 + 8];
        let y = &mut y[n * 128..n * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

fn q8_k(b: &[u8], y: &mut [f32; QK_K]) {
    // The trailing sixteen i16 block sums only serve dot products.
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (o, &q) in y.iter_mut().zip(&b[4..4 + QK_K]) {
        *o = q as i8 as f32 * d;
    }
}

#[cfg(test)]
mod tests;
