//! Writing small GGUF files byte by byte for tests (here and in the tokenizer's).

use std::io::Write;

/// Writes a GGUF v3 file: `kv` are pre-encoded (key, type id, value bytes) triples.
pub(crate) fn write_gguf(
    kv: &[(&str, u32, Vec<u8>)],
    tensors: &[(&str, Vec<u64>, u32, Vec<u8>)],
    alignment: usize,
) -> tempfile::NamedTempFile {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    b.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, ty, v) in kv {
        b.extend(gguf_str(k));
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(v);
    }
    let mut offset = 0usize;
    let mut offsets = Vec::new();
    for (name, dims, ty, data) in tensors {
        b.extend(gguf_str(name));
        b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&(offset as u64).to_le_bytes());
        offsets.push(offset);
        offset = (offset + data.len()).div_ceil(alignment) * alignment;
    }
    let data_start = b.len().div_ceil(alignment) * alignment;
    b.resize(data_start, 0);
    for ((_, _, _, data), off) in tensors.iter().zip(offsets) {
        b.resize(data_start + off, 0);
        b.extend_from_slice(data);
    }
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(&b).expect("write");
    f
}

pub(crate) fn gguf_str(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

pub(crate) fn str_array(items: &[&str]) -> Vec<u8> {
    let mut v = 8u32.to_le_bytes().to_vec();
    v.extend_from_slice(&(items.len() as u64).to_le_bytes());
    for s in items {
        v.extend(gguf_str(s));
    }
    v
}

pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Metadata entries for [`write_gguf`], built with typed helpers.
#[derive(Default)]
pub(crate) struct Kv(pub Vec<(&'static str, u32, Vec<u8>)>);

impl Kv {
    pub fn str(mut self, k: &'static str, v: &str) -> Self {
        self.0.push((k, 8, gguf_str(v)));
        self
    }
    pub fn u32(mut self, k: &'static str, v: u32) -> Self {
        self.0.push((k, 4, v.to_le_bytes().to_vec()));
        self
    }
    pub fn strs(mut self, k: &'static str, v: &[&str]) -> Self {
        self.0.push((k, 9, str_array(v)));
        self
    }
    pub fn i32s(mut self, k: &'static str, v: &[i32]) -> Self {
        let mut b = 5u32.to_le_bytes().to_vec();
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        b.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        self.0.push((k, 9, b));
        self
    }
    pub fn f32s(mut self, k: &'static str, v: &[f32]) -> Self {
        let mut b = 6u32.to_le_bytes().to_vec();
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        b.extend(f32_bytes(v));
        self.0.push((k, 9, b));
        self
    }
    pub fn write(self) -> tempfile::NamedTempFile {
        write_gguf(&self.0, &[], 32)
    }
}
