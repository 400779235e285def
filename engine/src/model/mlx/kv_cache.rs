//! Key/value state of one sequence, held outside the model so the engine can keep one per
//! sequence and reuse prompt prefixes.

use mlx_rs::error::Exception;
use mlx_rs::ops::{concatenate, zeros};
use mlx_rs::Array;

use super::ffi::{slice, slice_update};

/// Buffers grow in blocks of this many positions, so decode does not reallocate every token.
const GROW_STEP: i32 = 256;

#[derive(Clone, Default)]
struct LayerKv {
    keys: Option<Array>,
    values: Option<Array>,
}

/// Per-layer key/value buffers of shape `[1, kv_heads, capacity, head_dim]`; positions
/// `0..offset` are valid.
#[derive(Clone)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    offset: usize,
    capacity: usize,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![LayerKv::default(); num_layers],
            offset: 0,
            capacity: 0,
        }
    }

    /// Number of valid positions.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Positions the buffers have room for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forget positions from `len` on (prefix reuse); the buffers are kept.
    pub fn truncate(&mut self, len: usize) {
        self.offset = self.offset.min(len);
    }

    /// Writes `len` new positions for `layer` at the current offset and returns all valid keys and
    /// values including them. Call `advance(len)` once every layer has been updated.
    pub fn update(
        &mut self,
        layer: usize,
        k: &Array,
        v: &Array,
    ) -> Result<(Array, Array), Exception> {
        let shape = k.shape().to_vec();
        let len = shape[2];
        let start = self.offset as i32;
        let end = start + len;
        let entry = &mut self.layers[layer];
        let need_grow = entry.keys.as_ref().is_none_or(|buf| buf.shape()[2] < end);
        if need_grow {
            let new_cap = ((end + GROW_STEP - 1) / GROW_STEP) * GROW_STEP;
            let grow = |old: Option<&Array>, like: &Array| -> Result<Array, Exception> {
                let extra_len = match old {
                    Some(o) => new_cap - o.shape()[2],
                    None => new_cap,
                };
                let extra = zeros_like_dtype(&[shape[0], shape[1], extra_len, shape[3]], like)?;
                match old {
                    Some(o) => concatenate(&[o, &extra], 2),
                    None => Ok(extra),
                }
            };
            entry.keys = Some(grow(entry.keys.as_ref(), k)?);
            entry.values = Some(grow(entry.values.as_ref(), v)?);
            self.capacity = self.capacity.max(new_cap as usize);
        }
        let (Some(keys), Some(values)) = (entry.keys.take(), entry.values.take()) else {
            return Err(Exception::custom("kv cache buffer missing"));
        };
        let at_start = [0, 0, start, 0];
        let at_end = [shape[0], shape[1], end, shape[3]];
        let keys = slice_update(&keys, k, &at_start, &at_end)?;
        let values = slice_update(&values, v, &at_start, &at_end)?;
        let valid = [shape[0], shape[1], end, shape[3]];
        let out_k = slice(&keys, &[0, 0, 0, 0], &valid)?;
        let out_v = slice(&values, &[0, 0, 0, 0], &valid)?;
        entry.keys = Some(keys);
        entry.values = Some(values);
        Ok((out_k, out_v))
    }

    /// Marks `len` positions written by the last `update` of every layer as valid.
    pub fn advance(&mut self, len: usize) {
        self.offset += len;
    }

    /// The arrays that hold the state (to evaluate them together with the logits).
    pub fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.layers
            .iter()
            .flat_map(|l| l.keys.iter().chain(l.values.iter()))
    }

    /// Bytes held by the buffers (capacity, not just valid positions).
    pub fn nbytes(&self) -> usize {
        self.arrays().map(|a| a.nbytes()).sum()
    }
}

fn zeros_like_dtype(shape: &[i32], like: &Array) -> Result<Array, Exception> {
    zeros::<f32>(shape)?.as_dtype(like.dtype())
}

impl KvCache {
    /// The valid keys and values of `layer` (`[1, kv_heads, offset, head_dim]` views).
    pub fn layer(&self, layer: usize) -> Option<(Array, Array)> {
        let entry = self.layers.get(layer)?;
        let (k, v) = (entry.keys.as_ref()?, entry.values.as_ref()?);
        let s = k.shape();
        let valid = [s[0], s[1], self.offset as i32, s[3]];
        Some((
            slice(k, &[0, 0, 0, 0], &valid).ok()?,
            slice(v, &[0, 0, 0, 0], &valid).ok()?,
        ))
    }

    /// A cache holding exactly these per-layer keys and values (`[1, kv_heads, len, head_dim]`).
    pub fn from_layers(layers: Vec<(Array, Array)>, len: usize) -> Self {
        let capacity = layers.first().map_or(0, |(k, _)| k.shape()[2] as usize);
        Self {
            layers: layers
                .into_iter()
                .map(|(k, v)| LayerKv {
                    keys: Some(k),
                    values: Some(v),
                })
                .collect(),
            offset: len,
            capacity,
        }
    }
}
