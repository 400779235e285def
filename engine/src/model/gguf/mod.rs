//! GGUF files: metadata, tensor directory and tensor data, memory-mapped.
//!
//! Reads GGUF v2 and v3 (v1 used 32-bit counts and is long gone). Tensor shapes are given in
//! row-major order (ggml lists dimensions fastest-first; they are reversed here), so a
//! `[rows, cols]` matrix is `shape == [rows, cols]` as in PyTorch/MLX. [`hf`] maps the
//! metadata and tensor names onto Hugging Face conventions.

pub mod gemma3;
pub mod hf;
mod parse;

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

pub use super::dequant::GgmlType;
use super::dequant::{dequantize, DequantError};
pub use gemma3::{gguf_norm_to_hf, hf_tensor_name_for};
pub use hf::{hf_tensor_name, needs_qk_unpermute, undo_llama_qk_permutation, HfTensor};

/// Default data alignment when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;

/// Why a GGUF file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Opening or mapping the file failed.
    #[error("reading GGUF file: {0}")]
    Io(#[from] std::io::Error),
    /// Not a GGUF file at all.
    #[error("not a GGUF file (magic {0:#010x})")]
    BadMagic(u32),
    /// A GGUF version this reader does not handle.
    #[error("unsupported GGUF version {0}")]
    UnsupportedVersion(u32),
    /// The file is truncated or internally inconsistent.
    #[error("malformed GGUF file: {0}")]
    Malformed(String),
    /// No tensor with that name.
    #[error("no tensor named {0:?}")]
    MissingTensor(String),
    /// A metadata key the caller needs is absent or has the wrong type.
    #[error("GGUF metadata {0:?} is missing or has the wrong type")]
    MissingKey(String),
    /// The architecture has no Hugging Face mapping here.
    #[error("unsupported architecture {0:?}")]
    UnsupportedArchitecture(String),
    /// The tensor's type cannot be dequantized.
    #[error("tensor {name:?}: {source}")]
    Dequant {
        /// Tensor name.
        name: String,
        /// What failed.
        source: DequantError,
    },
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    /// Elements all share one type (arrays may nest).
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// Any integer type that fits in `u64` (negative values do not).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            Self::Bool(_) | Self::F32(_) | Self::F64(_) | Self::String(_) | Self::Array(_) => None,
        }
    }

    /// Any integer type as `i64` (a `u64` above `i64::MAX` does not fit).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::U64(v) => i64::try_from(v).ok(),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// Any number as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements of an array value.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// GGUF tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Row-major shape (ggml's dimensions reversed).
    pub shape: Vec<usize>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Bytes of data (`None` for a type whose layout is unknown).
    pub n_bytes: Option<u64>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// An open, memory-mapped GGUF file.
pub struct GgufFile {
    mmap: Mmap,
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let file = File::open(path)?;
        // SAFETY: the mapping is read-only; a GGUF file being rewritten underneath a running
        // server is outside what any loader can defend against (llama.cpp maps it the same way).
        let mmap = unsafe { Mmap::map(&file)? };
        Self::from_mmap(mmap)
    }

    fn from_mmap(mmap: Mmap) -> Result<Self, GgufError> {
        let parsed = parse::parse(&mmap)?;
        let index = parsed
            .metadata
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let tensor_index = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Self {
            mmap,
            version: parsed.version,
            metadata: parsed.metadata,
            index,
            tensors: parsed.tensors,
            tensor_index,
            data_offset: parsed.data_offset,
        })
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Absolute offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    /// One metadata value.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// An integer value (any integer type, non-negative).
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    /// A number as `f32`.
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f64().map(|v| v as f32)
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// An array of strings (`None` if any element is not a string).
    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        self.get(key)?
            .as_array()?
            .iter()
            .map(|v| v.as_str())
            .collect()
    }

    /// An array of numbers as `f32`.
    pub fn get_f32_array(&self, key: &str) -> Option<Vec<f32>> {
        let arr = self.get(key)?.as_array()?;
        arr.iter().map(|v| v.as_f64().map(|x| x as f32)).collect()
    }

    /// An array of integers as `i64`.
    pub fn get_i64_array(&self, key: &str) -> Option<Vec<i64>> {
        self.get(key)?
            .as_array()?
            .iter()
            .map(|v| v.as_i64())
            .collect()
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// The tensor directory, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// One tensor's directory entry.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw (possibly quantized) bytes of a tensor, borrowed from the mapping.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
        let n_bytes = info.n_bytes.ok_or_else(|| GgufError::Dequant {
            name: name.to_string(),
            source: DequantError::Unsupported(info.ggml_type.name()),
        })?;
        // Bounds were checked against the file length when parsing.
        let start = info.offset as usize;
        Ok(&self.mmap[start..start + n_bytes as usize])
    }

    /// A tensor dequantized to `f32`, with its row-major shape.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), GgufError> {
        let bytes = self.tensor_bytes(name)?;
        let info = &self.tensors[self.tensor_index[name]];
        let data = dequantize(info.ggml_type, bytes, info.n_elements()).map_err(|source| {
            GgufError::Dequant {
                name: name.to_string(),
                source,
            }
        })?;
        Ok((info.shape.clone(), data))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
