//! GGUF weights kept in their quantized file layout on CPU: the lazy MLX nodes of mlx-sys's
//! `GgufMatmul` / `GgufDequantize` primitives, and embeddings that gather quantized rows.
//!
//! A quantized weight is stored as a uint8 `[rows, row_bytes]` array of ggml blocks (one row per
//! output feature) next to a scalar `{prefix}.ggml_type` holding the ggml type id: `Weights` is
//! a map of arrays, and the type cannot be read back from the bytes.

use mlx_rs::error::Exception;
use mlx_rs::{Array, Stream};

use super::weights::Weights;

/// Key suffix of the scalar that marks a weight as ggml blocks of that type.
pub const TYPE_SUFFIX: &str = "ggml_type";

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
        (row_bytes / per_block * mlx_sys::quant::BLOCK) as i32
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

    /// Rows `ids` (any shape) as float32 `[..ids, k]`: gathered as blocks, then dequantized.
    pub fn rows(&self, ids: &Array) -> Result<Array, Exception> {
        let gathered = self.blocks.take_axis(ids, 0)?;
        let stream = Stream::thread_local_or_default();
        // SAFETY: as in `matmul`.
        unsafe {
            let mut res = mlx_sys::mlx_array_new();
            let status = mlx_sys::quant::mlx_serve_gguf_dequantize(
                &mut res,
                gathered.as_ptr(),
                self.ggml_type,
                self.k() as i64,
                mlx_sys::quant::dequant_kernel,
                stream.as_ptr(),
            );
            built("gguf dequantize", status, res)
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
