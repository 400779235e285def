//! GGUF weights kept in their quantized file layout on CPU: the lazy MLX nodes of mlx-sys's
//! `GgufMatmul` / `GgufGather` primitives, and embeddings that gather quantized rows.
//!
//! A quantized weight is stored as a uint8 `[rows, row_bytes]` array of ggml blocks (one row per
//! output feature) next to a scalar `{prefix}.ggml_type` holding the ggml type id: `Weights` is
//! a map of arrays, and the type cannot be read back from the bytes.

use mlx_rs::error::Exception;
use mlx_rs::{Array, Stream};

use super::weights::Weights;

/// Key suffix of the scalar that marks a weight as ggml blocks of that type.
pub const TYPE_SUFFIX: &str = "ggml_type";

/// ggml's lower-case name of a type the kernels keep (`q4_k`), for reports.
pub fn type_name(ggml_type: u32) -> &'static str {
    use mlx_sys::quant::{Q4_0, Q4_1, Q4_K, Q5_0, Q6_K, Q8_0};
    match mlx_sys::quant::base_type(ggml_type) {
        Q4_0 => "q4_0",
        Q4_1 => "q4_1",
        Q5_0 => "q5_0",
        Q8_0 => "q8_0",
        Q4_K => "q4_k",
        Q6_K => "q6_k",
        _ => "ggml",
    }
}

/// What the weights really are in memory, for `EngineInfo.dtype`: `dense` alone, or the kept
/// GGUF block types then the dense dtype of the rest (`gguf q4_1+q8_0, float32`).
pub fn resident_dtype(w: &Weights, dense: &str) -> String {
    let mut kept: Vec<u32> = w
        .iter()
        .filter(|(k, _)| k.ends_with(TYPE_SUFFIX))
        .filter_map(|(_, a)| a.try_item_exact::<i32>().ok())
        .map(|t| t as u32)
        .collect();
    if kept.is_empty() {
        return dense.to_string();
    }
    kept.sort_unstable();
    kept.dedup();
    let names: Vec<&str> = kept.into_iter().map(type_name).collect();
    format!("gguf {}, {dense}", names.join("+"))
}

/// A `[rows, row_bytes]` uint8 matrix of ggml blocks and its type.
#[derive(Clone)]
pub struct GgufWeight {
    pub blocks: Array,
    pub ggml_type: u32,
}

fn built(what: &str, status: i32, res: mlx_sys::mlx_array) -> Result<Array, Exception> {
    if status == 0 {
        // SAFETY: on success the call initialized `res`, whose ownership the Array takes.
        return Ok(unsafe { Array::from_ptr(res) });
    }
    // SAFETY: `res` was created by mlx_array_new and is not used again; the message is a
    // NUL-terminated string owned by this thread.
    let msg = unsafe {
        mlx_sys::mlx_array_free(res);
        std::ffi::CStr::from_ptr(mlx_sys::quant::mlx_serve_gguf_last_error())
            .to_string_lossy()
            .into_owned()
    };
    Err(Exception::custom(format!("{what}: {msg}")))
}

impl GgufWeight {
    /// Takes `{prefix}.weight` if it is stored as ggml blocks.
    pub fn take(w: &mut Weights, prefix: &str) -> Option<Self> {
        let ty = w.remove(&format!("{prefix}.{TYPE_SUFFIX}"))?;
        let ggml_type = ty.try_item_exact::<i32>().ok()? as u32;
        let blocks = w.remove(&format!("{prefix}.weight"))?;
        Some(Self { blocks, ggml_type })
    }

    /// Input features (elements per row).
    pub fn k(&self) -> i32 {
        let row_bytes = *self.blocks.shape().last().unwrap_or(&0) as usize;
        let per_block = mlx_sys::quant::block_bytes(self.ggml_type).unwrap_or(1);
        (row_bytes / per_block * mlx_sys::quant::block_elems(self.ggml_type)) as i32
    }

    /// `x · Wᵀ` for float32 `x: [..., k]`.
    pub fn matmul(&self, x: &Array) -> Result<Array, Exception> {
        let stream = Stream::thread_local_or_default();
        // SAFETY: the arrays and the stream are live handles; the kernel is mlx-sys's own.
        unsafe {
            let mut res = mlx_sys::mlx_array_new();
            let status = mlx_sys::quant::mlx_serve_gguf_matmul(
                &mut res,
                x.as_ptr(),
                self.blocks.as_ptr(),
                self.ggml_type,
                mlx_sys::quant::qmm_kernel,
                stream.as_ptr(),
            );
            built("gguf matmul", status, res)
        }
    }

    /// Rows `ids` (any shape) as float32 `[..ids, k]`, read from the blocks in either layout.
    pub fn rows(&self, ids: &Array) -> Result<Array, Exception> {
        let stream = Stream::thread_local_or_default();
        // SAFETY: as in `matmul`.
        unsafe {
            let mut res = mlx_sys::mlx_array_new();
            let status = mlx_sys::quant::mlx_serve_gguf_gather(
                &mut res,
                self.blocks.as_ptr(),
                ids.as_ptr(),
                self.ggml_type,
                self.k() as i64,
                mlx_sys::quant::gather_kernel,
                stream.as_ptr(),
            );
            built("gguf gather", status, res)
        }
    }

    /// Rows stacked (fusing projections of one input); `None` unless all share type and width.
    pub fn concat(parts: &[&GgufWeight]) -> Result<Option<GgufWeight>, Exception> {
        let first = parts[0];
        let same = parts.iter().all(|p| {
            p.ggml_type == first.ggml_type && p.blocks.shape()[1] == first.blocks.shape()[1]
        });
        if !same {
            return Ok(None);
        }
        let blocks: Vec<&Array> = parts.iter().map(|p| &p.blocks).collect();
        Ok(Some(GgufWeight {
            blocks: mlx_rs::ops::concatenate(&blocks, 0)?,
            ggml_type: first.ggml_type,
        }))
    }
}

/// The token embedding: dense, or quantized rows that are gathered then dequantized. Tied output
/// heads multiply with it in the same form.
pub enum Embedding {
    Dense(Array),
    Gguf(GgufWeight),
}

impl Embedding {
    pub fn take(w: &mut Weights) -> Result<Self, Exception> {
        const PREFIX: &str = "model.embed_tokens";
        if let Some(q) = GgufWeight::take(w, PREFIX) {
            return Ok(Self::Gguf(q));
        }
        super::linear::take(w, &format!("{PREFIX}.weight")).map(Self::Dense)
    }

    /// Embeddings of `ids`, `[..ids, hidden]`.
    pub fn lookup(&self, ids: &Array) -> Result<Array, Exception> {
        match self {
            Self::Dense(e) => e.take_axis(ids, 0),
            Self::Gguf(q) => q.rows(ids),
        }
    }

    /// `h · Eᵀ`: logits through the tied embedding, `h: [rows, hidden]`.
    pub fn tied_head(&self, h: &Array) -> Result<Array, Exception> {
        match self {
            Self::Dense(e) => h.matmul(e.t()),
            Self::Gguf(q) => q.matmul(h),
        }
    }

    pub fn dtype(&self) -> mlx_rs::Dtype {
        match self {
            Self::Dense(e) => e.dtype(),
            Self::Gguf(_) => mlx_rs::Dtype::Float32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dequant::{dequantize, GgmlType};
    use crate::model::mlx::linear::{Linear, Projections};
    use half::f16;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const TYPES: [(u32, GgmlType); 6] = [
        (2, GgmlType::Q4_0),
        (3, GgmlType::Q4_1),
        (6, GgmlType::Q5_0),
        (8, GgmlType::Q8_0),
        (12, GgmlType::Q4K),
        (14, GgmlType::Q6K),
    ];

    /// `rows × k` random blocks of a type, with scales in a sane range.
    fn random_blocks(id: u32, rows: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let bb = mlx_sys::quant::block_bytes(id).unwrap();
        let per = mlx_sys::quant::block_elems(id);
        let mut out = vec![0u8; rows * k / per * bb];
        rng.fill(&mut out[..]);
        for block in out.chunks_mut(bb) {
            let d = f16::from_f32(rng.random_range(0.001..0.02)).to_le_bytes();
            let at = if id == 14 { 208 } else { 0 };
            block[at..at + 2].copy_from_slice(&d);
            if id == 3 || id == 12 {
                let m = f16::from_f32(rng.random_range(0.0..0.02)).to_le_bytes();
                block[2..4].copy_from_slice(&m);
            }
        }
        out
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * scale, "at {i}: {x} vs {y}");
        }
    }

    /// mlx-sys's kernels and the loader's dequantizers are separate implementations of ggml's
    /// layouts: they must agree element for element.
    #[test]
    fn kernels_dequantize_like_the_loader_on_random_blocks() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (id, ty) in TYPES {
            let (rows, k) = (3, 512);
            let bytes = random_blocks(id, rows, k, &mut rng);
            let want = dequantize(ty, &bytes, rows * k).unwrap();
            let mut got = vec![0f32; rows * k];
            // SAFETY: `bytes` holds `rows` rows of `k` elements of this type.
            unsafe {
                mlx_sys::quant::dequant_kernel(
                    bytes.as_ptr(),
                    rows as i64,
                    k as i64,
                    id,
                    got.as_mut_ptr(),
                )
            };
            close(&got, &want, 1e-6);
        }
    }

    fn weight(bytes: &[u8], rows: usize, id: u32) -> GgufWeight {
        GgufWeight {
            blocks: Array::from_slice(bytes, &[rows as i32, (bytes.len() / rows) as i32]),
            ggml_type: id,
        }
    }

    /// The lazy graph nodes against MLX's own dense product over the loader's dequantization,
    /// for a decode row, a few rows and a prefill-sized batch; and embedding rows.
    #[test]
    fn graph_nodes_match_a_dense_product_and_lookup() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for (id, ty) in TYPES {
            let (n, k) = (200, 512);
            let bytes = random_blocks(id, n, k, &mut rng);
            let dense = dequantize(ty, &bytes, n * k).unwrap();
            let dense = Array::from_slice(&dense, &[n as i32, k as i32]);
            let q = weight(&bytes, n, id);
            assert_eq!(q.k(), k as i32);
            for m in [1, 4, 40, 80] {
                let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
                let x = Array::from_slice(&x, &[1, m as i32, k as i32]);
                let got = q.matmul(&x).unwrap();
                assert_eq!(got.shape(), &[1, m as i32, n as i32]);
                let want = x.matmul(dense.t()).unwrap();
                // On x86 the kernels round x to 8 bits per 32-element block (step max|x|/127)
                // for every row count: for x uniform in ±1 the error of an output is ~0.13% of
                // the largest output (one standard deviation), so 1% is several deviations
                // wide; the exact bound is checked in mlx-sys's own tests. Elsewhere the
                // products are float32 throughout.
                let tol = if cfg!(target_arch = "x86_64") {
                    1e-2
                } else {
                    1e-5
                };
                close(got.as_slice::<f32>(), want.as_slice::<f32>(), tol);
            }
            let ids = Array::from_slice(&[5u32, 0, 199, 5], &[2, 2]);
            let rows = q.rows(&ids).unwrap();
            assert_eq!(rows.shape(), &[2, 2, k as i32]);
            let want = dense.take_axis(&ids, 0).unwrap();
            close(rows.as_slice::<f32>(), want.as_slice::<f32>(), 1e-6);
        }
    }

    #[test]
    fn resident_dtype_names_the_kept_block_types() {
        let mut w = Weights::new();
        w.insert("a.weight".into(), Array::from_slice(&[0f32], &[1]));
        assert_eq!(resident_dtype(&w, "float32"), "float32");
        for (p, t) in [("b", 8), ("c", 3), ("d", 8)] {
            w.insert(format!("{p}.{TYPE_SUFFIX}"), Array::from_int(t));
        }
        assert_eq!(resident_dtype(&w, "float32"), "gguf q4_1+q8_0, float32");
    }

    #[test]
    fn fused_gguf_projections_split_back_into_each_output() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let k = 256;
        let parts: Vec<Vec<u8>> = [64, 32, 32]
            .iter()
            .map(|&n| random_blocks(3, n, k, &mut rng))
            .collect();
        let linears = || {
            parts
                .iter()
                .map(|b| Linear::Gguf {
                    weight: weight(b, b.len() / (k / 32 * 20), 3),
                    bias: None,
                })
                .collect::<Vec<_>>()
        };
        let fused = Projections::new(linears()).unwrap();
        assert!(matches!(fused, Projections::Fused { .. }));
        let x: Vec<f32> = (0..2 * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let x = Array::from_slice(&x, &[1, 2, k as i32]);
        let a = fused.forward(&x).unwrap();
        let b = Projections::Separate(linears()).forward(&x).unwrap();
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a.shape(), b.shape());
            close(
                a.contiguous().unwrap().as_slice::<f32>(),
                b.as_slice::<f32>(),
                1e-6,
            );
        }
        // A different type cannot share the stacked matrix.
        let mut mixed = linears();
        mixed.push(Linear::Gguf {
            weight: weight(&random_blocks(8, 16, k, &mut rng), 16, 8),
            bias: None,
        });
        assert!(matches!(
            Projections::new(mixed).unwrap(),
            Projections::Separate(_)
        ));
    }
}
