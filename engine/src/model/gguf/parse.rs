//! The binary layout of a GGUF header: magic, version, counts, key/value pairs, tensor infos.

use super::{GgmlType, GgufError, GgufValue, TensorInfo, DEFAULT_ALIGNMENT};

const MAGIC: u32 = 0x4655_4747; // "GGUF" read as little-endian u32
/// Arrays of arrays deeper than this are rejected rather than recursed into.
const MAX_NESTING: usize = 8;

pub(super) struct Parsed {
    pub version: u32,
    pub metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<TensorInfo>,
    pub data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn malformed(what: impl Into<String>) -> GgufError {
    GgufError::Malformed(what.into())
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GgufError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| malformed(format!("truncated at byte {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count that must be satisfiable by the bytes left (each item takes at least `min_item`).
    fn count(&mut self, min_item: usize) -> Result<usize, GgufError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item as u64) > left {
            return Err(malformed(format!("count {n} exceeds the file")));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.count(1)?;
        let bytes = self.take(n)?;
        // Token texts are occasionally not valid UTF-8 (partial byte sequences in old vocabs).
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<GgufValue, GgufError> {
        Ok(match ty {
            0 => GgufValue::U8(self.array::<1>()?[0]),
            1 => GgufValue::I8(self.array::<1>()?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array()?)),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array()?)),
            7 => GgufValue::Bool(self.array::<1>()?[0] != 0),
            8 => GgufValue::String(self.string()?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(malformed("arrays nested too deeply"));
                }
                let elem_ty = self.u32()?;
                let n = self.count(1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(malformed(format!("unknown metadata value type {other}"))),
        })
    }
}

pub(super) fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor { buf, pos: 0 };
    let magic = c.u32()?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic(magic));
    }
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion(version));
    }
    // A tensor info takes at least 8 + 4 + 4 + 8 bytes, a key/value pair at least 8 + 4 + 1.
    let n_tensors = c.count(24)?;
    let n_kv = c.count(13)?;

    let mut metadata = Vec::with_capacity(n_kv);
    for _ in 0..n_kv {
        let key = c.string()?;
        let ty = c.u32()?;
        let value = c.value(ty, 0)?;
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        Some((_, v)) => v
            .as_u64()
            .filter(|a| *a > 0 && a.is_power_of_two())
            .ok_or_else(|| malformed("general.alignment is not a power of two"))?,
        None => DEFAULT_ALIGNMENT,
    };

    let mut raw = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let name = c.string()?;
        let n_dims = c.u32()? as usize;
        if n_dims > 8 {
            return Err(malformed(format!(
                "tensor {name:?} has {n_dims} dimensions"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(c.u64()?);
        }
        let ty = GgmlType::from_id(c.u32()?);
        let offset = c.u64()?;
        raw.push((name, dims, ty, offset));
    }

    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    let file_len = buf.len() as u64;
    let mut tensors = Vec::with_capacity(raw.len());
    for (name, dims, ggml_type, rel) in raw {
        let shape: Vec<usize> = dims.iter().rev().map(|&d| d as usize).collect();
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| malformed(format!("tensor {name:?} is impossibly large")))?;
        let n_bytes = ggml_type.byte_size(n_elements as usize).map(|b| b as u64);
        let offset = data_offset
            .checked_add(rel)
            .ok_or_else(|| malformed(format!("tensor {name:?} offset overflows")))?;
        if let Some(n) = n_bytes {
            if offset.checked_add(n).is_none_or(|end| end > file_len) {
                return Err(malformed(format!(
                    "tensor {name:?} runs past the end of the file"
                )));
            }
        }
        tensors.push(TensorInfo {
            name,
            shape,
            ggml_type,
            offset,
            n_bytes,
        });
    }

    Ok(Parsed {
        version,
        metadata,
        tensors,
        data_offset,
    })
}
