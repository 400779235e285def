//! Projections `x · Wᵀ (+ b)`, dense or MLX-affine-quantized, and fusing several projections of
//! the same input into one matrix product.

use mlx_rs::error::Exception;
use mlx_rs::ops::{concatenate, quantized_matmul};
use mlx_rs::Array;

use super::gguf_quant::GgufWeight;
use super::weights::Weights;

pub(super) fn take(w: &mut Weights, name: &str) -> Result<Array, Exception> {
    w.remove(name)
        .ok_or_else(|| Exception::custom(format!("missing weight {name}")))
}

/// A projection `x · Wᵀ (+ b)`: dense, MLX-affine-quantized, or ggml blocks (CPU).
pub enum Linear {
    Gguf {
        weight: GgufWeight,
        bias: Option<Array>,
    },
    Dense {
        weight: Array,
        bias: Option<Array>,
    },
    Quantized {
        weight: Array,
        scales: Array,
        biases: Array,
        bias: Option<Array>,
        group_size: i32,
        bits: i32,
    },
}

impl Linear {
    pub fn load(w: &mut Weights, prefix: &str, with_bias: bool) -> Result<Self, Exception> {
        let bias = if with_bias {
            Some(take(w, &format!("{prefix}.bias"))?)
        } else {
            w.remove(&format!("{prefix}.bias"))
        };
        if let Some(weight) = GgufWeight::take(w, prefix) {
            return Ok(Linear::Gguf { weight, bias });
        }
        let weight = take(w, &format!("{prefix}.weight"))?;
        if let Some(scales) = w.remove(&format!("{prefix}.scales")) {
            let biases = take(w, &format!("{prefix}.biases"))?;
            let (group_size, bits) = quant_params(&weight, &scales)?;
            return Ok(Linear::Quantized {
                weight,
                scales,
                biases,
                bias,
                group_size,
                bits,
            });
        }
        Ok(Linear::Dense { weight, bias })
    }

    pub fn forward(&self, x: &Array) -> Result<Array, Exception> {
        let (y, bias) = match self {
            Linear::Gguf { weight, bias } => (weight.matmul(x)?, bias),
            Linear::Dense { weight, bias } => {
                // Rows of every leading axis as one matrix, so that a decode batch
                // `[batch, 1, in]` is one `[batch, in]` product (the weights read once), not
                // `batch` single-row ones.
                let shape = x.shape();
                let rows: i32 = shape[..shape.len() - 1].iter().product();
                let flat = x.reshape(&[rows, shape[shape.len() - 1]])?;
                let mut out_shape = shape[..shape.len() - 1].to_vec();
                out_shape.push(weight.shape()[0]);
                (flat.matmul(weight.t())?.reshape(&out_shape)?, bias)
            }
            Linear::Quantized {
                weight,
                scales,
                biases,
                bias,
                group_size,
                bits,
            } => (
                quantized_matmul(x, weight, scales, biases, true, *group_size, *bits)?,
                bias,
            ),
        };
        match bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
}

/// Infers MLX's quantization parameters from packed shapes (32-bit words along the input axis).
fn quant_params(weight: &Array, scales: &Array) -> Result<(i32, i32), Exception> {
    let packed = *weight.shape().last().unwrap_or(&0);
    let groups = *scales.shape().last().unwrap_or(&0);
    if packed == 0 || groups == 0 {
        return Err(Exception::custom("malformed quantized weight"));
    }
    for bits in [4, 8, 2, 3, 6, 5] {
        let in_features = packed * 32 / bits;
        if in_features % groups == 0 {
            let group_size = in_features / groups;
            if [32, 64, 128].contains(&group_size) {
                return Ok((group_size, bits));
            }
        }
    }
    Err(Exception::custom(
        "cannot infer quantization bits/group size",
    ))
}

fn concat_rows(parts: &[&Array]) -> Result<Array, Exception> {
    concatenate(parts, 0)
}

impl Linear {
    /// Output features (rows of the weight; packing does not change the row count).
    pub fn out_features(&self) -> i32 {
        let w = match self {
            Linear::Dense { weight, .. } | Linear::Quantized { weight, .. } => weight,
            Linear::Gguf { weight, .. } => &weight.blocks,
        };
        w.shape()[0]
    }

    /// One projection computing all of `parts` (their outputs side by side, in order), or the
    /// parts back when they cannot share a matrix (mixed dense/quantized, different bits, bias on
    /// some only). One product of the stacked weights replaces several smaller ones: on CPU the
    /// narrow k/v products of a prefill chunk run far below BLAS's peak, and in decode each product
    /// is one more kernel launch per layer.
    pub fn fuse(parts: Vec<Linear>) -> Result<Result<Linear, Vec<Linear>>, Exception> {
        let biases: Vec<Option<&Array>> = parts
            .iter()
            .map(|p| match p {
                Linear::Dense { bias, .. }
                | Linear::Quantized { bias, .. }
                | Linear::Gguf { bias, .. } => bias.as_ref(),
            })
            .collect();
        let all_bias = biases.iter().all(Option::is_some);
        if parts.len() < 2 || !(all_bias || biases.iter().all(Option::is_none)) {
            return Ok(Err(parts));
        }
        let bias = if all_bias {
            Some(concat_rows(
                &biases.iter().flatten().copied().collect::<Vec<_>>(),
            )?)
        } else {
            None
        };
        let gguf: Vec<&GgufWeight> = parts
            .iter()
            .filter_map(|p| match p {
                Linear::Gguf { weight, .. } => Some(weight),
                _ => None,
            })
            .collect();
        if !gguf.is_empty() {
            if gguf.len() != parts.len() {
                return Ok(Err(parts));
            }
            return Ok(match GgufWeight::concat(&gguf)? {
                Some(weight) => Ok(Linear::Gguf { weight, bias }),
                None => Err(parts),
            });
        }
        let dense: Vec<&Array> = parts
            .iter()
            .filter_map(|p| match p {
                Linear::Dense { weight, .. } => Some(weight),
                _ => None,
            })
            .collect();
        if dense.len() == parts.len() {
            if dense.iter().any(|w| w.dtype() != dense[0].dtype()) {
                return Ok(Err(parts));
            }
            let weight = concat_rows(&dense)?;
            return Ok(Ok(Linear::Dense { weight, bias }));
        }
        let (mut weights, mut scales_, mut biases_, mut params) = (vec![], vec![], vec![], vec![]);
        for p in &parts {
            match p {
                Linear::Quantized {
                    weight,
                    scales,
                    biases,
                    group_size,
                    bits,
                    ..
                } => {
                    weights.push(weight);
                    scales_.push(scales);
                    biases_.push(biases);
                    params.push((*group_size, *bits));
                }
                Linear::Dense { .. } | Linear::Gguf { .. } => return Ok(Err(parts)),
            }
        }
        let (group_size, bits) = params[0];
        if params.iter().any(|&q| q != (group_size, bits)) {
            return Ok(Err(parts));
        }
        let fused = Linear::Quantized {
            weight: concat_rows(&weights)?,
            scales: concat_rows(&scales_)?,
            biases: concat_rows(&biases_)?,
            bias,
            group_size,
            bits,
        };
        Ok(Ok(fused))
    }
}

/// Several projections of one input: fused into one product when their weights allow it.
pub enum Projections {
    Fused {
        linear: Linear,
        /// Where each part's output ends, except the last (split points on the last axis).
        splits: Vec<i32>,
    },
    Separate(Vec<Linear>),
}

impl Projections {
    pub fn new(parts: Vec<Linear>) -> Result<Self, Exception> {
        let mut splits = Vec::new();
        let mut end = 0;
        for p in &parts[..parts.len().saturating_sub(1)] {
            end += p.out_features();
            splits.push(end);
        }
        Ok(match Linear::fuse(parts)? {
            Ok(linear) => Projections::Fused { linear, splits },
            Err(parts) => Projections::Separate(parts),
        })
    }

    /// Each part's output, in the order the parts were given.
    pub fn forward(&self, x: &Array) -> Result<Vec<Array>, Exception> {
        match self {
            Projections::Fused { linear, splits } => {
                let y = linear.forward(x)?;
                let axis = y.ndim() as i32 - 1;
                y.split_at_indices(splits, axis)
            }
            Projections::Separate(parts) => parts.iter().map(|p| p.forward(x)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::ops::quantize;

    fn matrix(rows: i32, cols: i32, seed: i32) -> Array {
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| (((i + seed) * 7919) % 201) as f32 / 1000.0 - 0.1)
            .collect();
        Array::from_slice(&v, &[rows, cols])
    }

    fn quantized(w: &Array, bits: i32) -> Linear {
        let (weight, scales, biases) = quantize(w, 64, bits).unwrap();
        Linear::Quantized {
            weight,
            scales,
            biases,
            bias: None,
            group_size: 64,
            bits,
        }
    }

    fn outputs(p: &Projections, x: &Array) -> Vec<Vec<f32>> {
        p.forward(x)
            .unwrap()
            .iter()
            .map(|a| a.contiguous().unwrap().as_slice::<f32>().to_vec())
            .collect()
    }

    #[test]
    fn fused_projections_give_each_part_its_own_output() {
        let x = matrix(3, 128, 1);
        let ws = [matrix(64, 128, 2), matrix(32, 128, 3), matrix(32, 128, 4)];
        let bias = |n: i32| Some(Array::from_slice(&vec![0.5f32; n as usize], &[n]));
        let dense = || {
            ws.iter()
                .map(|w| Linear::Dense {
                    weight: w.clone(),
                    bias: bias(w.shape()[0]),
                })
                .collect::<Vec<_>>()
        };
        let fused = Projections::new(dense()).unwrap();
        assert!(matches!(fused, Projections::Fused { .. }));
        let separate = Projections::Separate(dense());
        for (a, b) in outputs(&fused, &x).iter().zip(outputs(&separate, &x)) {
            assert_eq!(a.len(), b.len());
            assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-5));
        }

        let q = |bits| ws.iter().map(|w| quantized(w, bits)).collect::<Vec<_>>();
        let fused = Projections::new(q(4)).unwrap();
        assert!(matches!(fused, Projections::Fused { .. }));
        for (a, b) in outputs(&fused, &x)
            .iter()
            .zip(outputs(&Projections::Separate(q(4)), &x))
        {
            assert_eq!(a, &b);
        }
    }

    #[test]
    fn mismatched_parts_stay_separate() {
        let ws = [matrix(64, 128, 2), matrix(64, 128, 3)];
        let mixed_bits = vec![quantized(&ws[0], 4), quantized(&ws[1], 8)];
        assert!(matches!(
            Projections::new(mixed_bits).unwrap(),
            Projections::Separate(_)
        ));
        let mixed_kind = vec![
            quantized(&ws[0], 4),
            Linear::Dense {
                weight: ws[1].clone(),
                bias: None,
            },
        ];
        assert!(matches!(
            Projections::new(mixed_kind).unwrap(),
            Projections::Separate(_)
        ));
        let some_bias = vec![
            Linear::Dense {
                weight: ws[0].clone(),
                bias: Some(Array::from_slice(&[0.0f32; 64], &[64])),
            },
            Linear::Dense {
                weight: ws[1].clone(),
                bias: None,
            },
        ];
        assert!(matches!(
            Projections::new(some_bias).unwrap(),
            Projections::Separate(_)
        ));
    }
}
