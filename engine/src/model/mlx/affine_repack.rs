//! MLX's own quantized checkpoints (mlx-community, `quantization: {group_size, bits}` in
//! config.json) kept quantized on the CPU: their 4-bit affine layout is repacked at load into
//! ggml Q4_1 blocks, which the integer kernels of `gguf_quant` multiply.
//!
//! Both formats store `w = scale · q + bias` with `q` in 0..16 per group, so the repack moves
//! bits and copies each group's scale and bias into the 32-element blocks it covers (a group of
//! 64 or 128 becomes two or four blocks sharing them); only the scale and bias are rounded to
//! float16, Q4_1's type for them, which is exact for the float16 and bfloat16 checkpoints
//! mlx-lm writes unless a value falls below float16's normal range (6.1e-5). Other bit widths
//! have no matching ggml block and are dequantized as before.

use half::f16;
use mlx_rs::{Array, Dtype};

use super::config::Quantization;

/// ggml's Q4_1: a float16 scale, a float16 minimum, then 16 bytes holding element `j` in the
/// low nibble of byte `j` and element `j + 16` in its high nibble.
const BLOCK_BYTES: usize = 20;

/// Whether the repack serves a checkpoint's quantization.
pub fn repackable(q: Quantization) -> bool {
    q.bits == 4 && q.group_size > 0 && q.group_size % 32 == 0
}

/// An MLX 4-bit matrix (`weight`: uint32 `[rows, k/8]`, eight values per word, lowest bits
/// first; `scales` and `biases`: `[rows, k/group_size]`) as the bytes of `rows` rows of
/// `k/32` Q4_1 blocks (20 bytes each), rows in the same order.
pub fn q4_1_blocks(
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

    #[test]
    fn other_layouts_are_refused_with_a_reason() {
        assert!(repackable(Quantization {
            group_size: 64,
            bits: 4
        }));
        assert!(!repackable(Quantization {
            group_size: 64,
            bits: 8
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
