//! MLX's own quantized checkpoints (mlx-community, `quantization: {group_size, bits}` in
//! config.json) kept quantized on the CPU: their affine layout (`w = scale · q + bias` per group,
//! `q` of `bits` bits) is repacked at load into ggml blocks, which the integer kernels of
//! `gguf_quant` multiply.
//!
//! - **4 bits:** Q4_1 stores the same form with `q` in 0..16, so the repack moves bits and copies
//!   each group's scale and bias into the 32-element blocks it covers (a group of 64 or 128
//!   becomes two or four blocks sharing them).
//! - **2 and 3 bits:** their `q` (0..4, 0..8) fit Q4_1's nibbles, so they become Q4_1 blocks of
//!   the same numbers too (at 5 bits per weight instead of their 2.5–3.5: the kernels have no
//!   narrower block).
//! - **5, 6 and 8 bits:** no ggml block has an 8-bit value with an offset, so the dequantized
//!   weights are requantized to Q8_0 (32 values, a float16 scale `max|w| / 127`). That rounds
//!   each weight by at most half a Q8_0 step, finer than the checkpoint's own step for 5 and 6
//!   bits and about as fine as it for 8 bits (`tests/real_quant.rs` measures the model's
//!   divergence from its dequantized float32 load).
//!
//! Scales and biases are rounded to float16, the blocks' type for them, which is exact for the
//! float16 and bfloat16 checkpoints mlx-lm writes unless a value falls below float16's normal
//! range (6.1e-5).

use half::f16;
use mlx_rs::{Array, Dtype};

use super::config::Quantization;

/// ggml's Q4_1: a float16 scale, a float16 minimum, then 16 bytes holding element `j` in the
/// low nibble of byte `j` and element `j + 16` in its high nibble.
const BLOCK_BYTES: usize = 20;

/// Whether the repack serves a checkpoint's quantization.
pub fn repackable(q: Quantization) -> bool {
    matches!(q.bits, 2..=6 | 8) && q.group_size > 0 && q.group_size % 32 == 0
}

/// The ggml block type a checkpoint's matrices become.
pub fn block_type(q: Quantization) -> u32 {
    if q.bits <= 4 {
        mlx_sys::quant::Q4_1
    } else {
        mlx_sys::quant::Q8_0
    }
}

/// Input features of a packed MLX matrix (`[rows, words]` of uint32, `32 / bits` per word).
pub fn unpacked_columns(weight: &Array, bits: i32) -> usize {
    let words = weight.shape().last().map_or(0, |&w| w as usize);
    if bits <= 0 {
        return 0;
    }
    words * 32 / bits as usize
}

/// The bytes of `rows` rows of [`block_type`] blocks holding an MLX quantized matrix, rows in
/// the same order.
pub fn blocks(
    weight: &Array,
    scales: &Array,
    biases: &Array,
    q: Quantization,
) -> Result<Vec<u8>, String> {
    if !repackable(q) {
        return Err(format!(
            "{}-bit groups of {} have no matching block",
            q.bits, q.group_size
        ));
    }
    if q.bits == 4 {
        return q4_1_blocks(weight, scales, biases, q.group_size as usize);
    }
    let shape = weight.shape();
    if shape.len() != 2 || weight.dtype() != Dtype::Uint32 {
        return Err(format!(
            "expected a uint32 matrix of packed {}-bit values, got {:?} {shape:?}",
            q.bits,
            weight.dtype()
        ));
    }
    let as_f32 = |a: &Array| a.as_dtype(Dtype::Float32).map_err(|e| e.to_string());
    let (scales, biases) = (as_f32(scales)?, as_f32(biases)?);
    let dense = mlx_rs::ops::dequantize(weight, &scales, &biases, q.group_size, q.bits)
        .map_err(|e| e.to_string())?;
    let (rows, k) = (shape[0] as usize, dense.shape()[1] as usize);
    let groups = k / q.group_size as usize;
    if k % 32 != 0 || scales.shape() != [rows as i32, groups as i32] {
        return Err(format!(
            "scales {:?} do not match {rows} rows of {groups} groups",
            scales.shape()
        ));
    }
    let w = dense.as_slice::<f32>();
    if q.bits < 4 {
        let (s, b) = (scales.as_slice::<f32>(), biases.as_slice::<f32>());
        Ok(small_q4_1_blocks(w, s, b, k, q.group_size as usize))
    } else {
        Ok(q8_0_blocks(w))
    }
}

/// 2- and 3-bit groups as Q4_1 blocks: the same scale and bias, `q` recovered from the
/// dequantized weights (exact: they are `scale · q + bias` in float32).
fn small_q4_1_blocks(w: &[f32], s: &[f32], b: &[f32], k: usize, group_size: usize) -> Vec<u8> {
    let per_row = k / 32;
    let groups = k / group_size;
    let mut out = vec![0u8; w.len() / 32 * BLOCK_BYTES];
    for (i, block) in out.chunks_exact_mut(BLOCK_BYTES).enumerate() {
        let (row, blk) = (i / per_row, i % per_row);
        let group = row * groups + blk * 32 / group_size;
        let (scale, bias) = (s[group], b[group]);
        block[0..2].copy_from_slice(&f16::from_f32(scale).to_le_bytes());
        block[2..4].copy_from_slice(&f16::from_f32(bias).to_le_bytes());
        let vals = &w[i * 32..][..32];
        let q = |e: usize| {
            if scale == 0.0 {
                0
            } else {
                ((vals[e] - bias) / scale).round().clamp(0.0, 15.0) as u8
            }
        };
        for j in 0..16 {
            block[4 + j] = q(j) | (q(j + 16) << 4);
        }
    }
    out
}

/// ggml's Q8_0: a float16 scale, then 32 signed bytes.
const Q8_0_BYTES: usize = 34;

/// Weights (a multiple of 32) as Q8_0 blocks, scaled by each block's largest magnitude.
fn q8_0_blocks(w: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; w.len() / 32 * Q8_0_BYTES];
    for (vals, block) in w.chunks_exact(32).zip(out.chunks_exact_mut(Q8_0_BYTES)) {
        let amax = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = f16::from_f32(amax / 127.0);
        block[0..2].copy_from_slice(&d.to_le_bytes());
        let d = d.to_f32();
        for (dst, v) in block[2..].iter_mut().zip(vals) {
            let q = if d == 0.0 { 0.0 } else { (v / d).round() };
            *dst = q.clamp(-127.0, 127.0) as i8 as u8;
        }
    }
    out
}

/// An MLX 4-bit matrix (`weight`: uint32 `[rows, k/8]`, eight values per word, lowest bits
/// first; `scales` and `biases`: `[rows, k/group_size]`) as the bytes of `rows` rows of
/// `k/32` Q4_1 blocks (20 bytes each), rows in the same order.
fn q4_1_blocks(
    weight: &Array,
    scales: &Array,
    biases: &Array,
    group_size: usize,
) -> Result<Vec<u8>, String> {
    let shape = weight.shape();
    if shape.len() != 2 || weight.dtype() != Dtype::Uint32 {
        return Err(format!(
            "expected a uint32 matrix of packed 4-bit values, got {:?} {shape:?}",
            weight.dtype()
        ));
    }
    let (rows, k) = (shape[0] as usize, shape[1] as usize * 8);
    if group_size == 0 || group_size % 32 != 0 || k % group_size != 0 {
        return Err(format!(
            "group size {group_size} does not tile {k} columns in 32s"
        ));
    }
    let groups = k / group_size;
    let want = [rows as i32, groups as i32];
    if scales.shape() != want || biases.shape() != want {
        return Err(format!(
            "scales {:?} / biases {:?} do not match {rows} rows of {groups} groups",
            scales.shape(),
            biases.shape()
        ));
    }
    let as_f32 = |a: &Array| a.as_dtype(Dtype::Float32).map_err(|e| e.to_string());
    let (scales, biases) = (as_f32(scales)?, as_f32(biases)?);
    let (w, s, b) = (
        weight.as_slice::<u32>(),
        scales.as_slice::<f32>(),
        biases.as_slice::<f32>(),
    );
    let per_row = k / 32;
    let mut out = vec![0u8; rows * per_row * BLOCK_BYTES];
    for (i, block) in out.chunks_exact_mut(BLOCK_BYTES).enumerate() {
        let (row, blk) = (i / per_row, i % per_row);
        let group = row * groups + blk * 32 / group_size;
        block[0..2].copy_from_slice(&f16::from_f32(s[group]).to_le_bytes());
        block[2..4].copy_from_slice(&f16::from_f32(b[group]).to_le_bytes());
        let words = &w[row * k / 8 + blk * 4..][..4];
        let q = |e: usize| ((words[e / 8] >> (4 * (e % 8))) & 0xf) as u8;
        for j in 0..16 {
            block[4 + j] = q(j) | (q(j + 16) << 4);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::ops::{dequantize, quantize};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// MLX's own quantizer and dequantizer against the repacked blocks read by the loader's
    /// ggml dequantizer: the same numbers, for each group size mlx-lm writes.
    #[test]
    fn repacked_blocks_hold_the_numbers_mlx_dequantizes() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (rows, k) = (6, 256);
        for group in [32, 64, 128] {
            let w: Vec<f32> = (0..rows * k).map(|_| rng.random_range(-0.1..0.1)).collect();
            let w = Array::from_slice(&w, &[rows as i32, k as i32]).as_dtype(Dtype::Float16);
            let (q, s, b) = quantize(w.unwrap(), group, 4).unwrap();
            // In float32 (MLX dequantizes float16 scales in float16 arithmetic).
            let f32 = |a: &Array| a.as_dtype(Dtype::Float32).unwrap();
            let want = dequantize(&q, f32(&s), &f32(&b), group, 4).unwrap();
            let blocks = q4_1_blocks(&q, &s, &b, group as usize).unwrap();
            assert_eq!(blocks.len(), rows * k / 32 * 20);
            let got = crate::model::dequant::dequantize(
                crate::model::dequant::GgmlType::Q4_1,
                &blocks,
                rows * k,
            )
            .unwrap();
            for (i, (g, w)) in got.iter().zip(want.as_slice::<f32>()).enumerate() {
                // float16 scales and biases are carried exactly: the same float32 products.
                assert!((g - w).abs() <= 1e-6, "group {group}, {i}: {g} vs {w}");
            }
        }
    }

    /// The other widths: 2 and 3 bits give MLX's numbers exactly (as Q4_1), 5, 6 and 8 bits
    /// within half a Q8_0 step of them.
    #[test]
    fn other_widths_hold_mlx_numbers_exactly_or_within_half_a_q8_0_step() {
        use crate::model::dequant::{dequantize as ggml, GgmlType};
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (rows, k) = (4, 256);
        for bits in [2, 3, 5, 6, 8] {
            for group in [32, 64, 128] {
                let w: Vec<f32> = (0..rows * k).map(|_| rng.random_range(-0.1..0.1)).collect();
                let w = Array::from_slice(&w, &[rows as i32, k as i32]).as_dtype(Dtype::Float16);
                let (q, s, b) = quantize(w.unwrap(), group, bits).unwrap();
                let f32 = |a: &Array| a.as_dtype(Dtype::Float32).unwrap();
                let want = dequantize(&q, f32(&s), &f32(&b), group, bits).unwrap();
                let want = want.as_slice::<f32>();
                let qz = Quantization {
                    group_size: group,
                    bits,
                };
                assert_eq!(unpacked_columns(&q, bits), k);
                let bytes = blocks(&q, &s, &b, qz).unwrap();
                let (ty, per_block) = if bits < 4 {
                    (GgmlType::Q4_1, 20)
                } else {
                    (GgmlType::Q8_0, 34)
                };
                assert_eq!(
                    block_type(qz),
                    if bits < 4 {
                        mlx_sys::quant::Q4_1
                    } else {
                        mlx_sys::quant::Q8_0
                    }
                );
                assert_eq!(bytes.len(), rows * k / 32 * per_block);
                let got = ggml(ty, &bytes, rows * k).unwrap();
                for (blk, (g, w)) in got.chunks(32).zip(want.chunks(32)).enumerate() {
                    let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                    // Half a step, plus float16's rounding of the scale (2^-11 of amax).
                    let bound = if bits < 4 {
                        1e-6
                    } else {
                        amax / 254.0 + amax / 1024.0
                    };
                    for (x, y) in g.iter().zip(w) {
                        assert!(
                            (x - y).abs() <= bound,
                            "{bits} bits, group {group}, block {blk}: {x} vs {y} (bound {bound})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn other_layouts_are_refused_with_a_reason() {
        assert!(repackable(Quantization {
            group_size: 64,
            bits: 4
        }));
        assert!(repackable(Quantization {
            group_size: 64,
            bits: 8
        }));
        assert!(!repackable(Quantization {
            group_size: 64,
            bits: 7
        }));
        assert!(!repackable(Quantization {
            group_size: 16,
            bits: 4
        }));
        let w = Array::from_slice(&[0f32; 64], &[2, 32]);
        let s = Array::from_slice(&[1f32; 2], &[2, 1]);
        assert!(q4_1_blocks(&w, &s, &s, 32).unwrap_err().contains("uint32"));
        let q = Array::from_slice(&[0u32; 8], &[2, 4]);
        let wrong = Array::from_slice(&[1f32; 4], &[2, 2]);
        assert!(q4_1_blocks(&q, &wrong, &wrong, 32)
            .unwrap_err()
            .contains("do not match"));
    }
}
