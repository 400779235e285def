//! Key/value state of the sequences that decode together, in one buffer per layer with a slot
//! per sequence, so that a decode step for B sequences is a constant number of operations per
//! layer: one scatter writes every sequence's new key at its own position, one attention call
//! covers the batch (positions past a sequence's length masked).
//!
//! Slots `0..len()` are occupied, in the order sequences joined; when one leaves, the last slot
//! moves into its place, so the batch is always the leading `len()` slots and no step pays for
//! holes. A sequence prefills in its own [`KvCache`] (prefix reuse works on those) and is copied in
//! when it starts decoding, and out again when it ends (for the prefix cache).

use mlx_rs::error::Exception;
use mlx_rs::ops::{concatenate, zeros};
use mlx_rs::{Array, Dtype};

use super::ffi::{copy, scatter_axes02, slice, slice_update};
use super::kv_cache::KvCache;

/// Capacity grows in blocks of this many positions.
const GROW_STEP: i32 = 256;

/// Buffers up to this size stay allocated while no sequence decodes. Freeing them at every idle
/// moment meant that a server under steady load (its batch emptying between waves of
/// requests) rebuilt them slot by slot each wave, and that every request of a client working
/// one at a time wrote its KV onto pages fresh from the kernel, whose faults cost more than the
/// copy (erratically so on a VM).
const IDLE_KEEP_BYTES: usize = 256 << 20;

pub struct SlotKv {
    /// Per layer `(keys, values)`, each `[slots, kv_heads, capacity, head_dim]`.
    layers: Vec<(Array, Array)>,
    num_layers: usize,
    kv_heads: i32,
    head_dim: i32,
    dtype: Dtype,
    slots: i32,
    /// Slots never grow past this (the engine's batch size).
    max_slots: i32,
    capacity: i32,
    /// Valid positions of each occupied slot.
    lengths: Vec<usize>,
    /// Which sequence each occupied slot holds.
    owners: Vec<u64>,
}

impl SlotKv {
    pub fn new(num_layers: usize, kv_heads: usize, head_dim: usize, dtype: Dtype) -> Self {
        Self {
            layers: Vec::new(),
            num_layers,
            kv_heads: kv_heads as i32,
            head_dim: head_dim as i32,
            dtype,
            slots: 0,
            max_slots: i32::MAX,
            capacity: 0,
            lengths: Vec::new(),
            owners: Vec::new(),
        }
    }

    /// Caps the slot count at `max` (the most sequences that ever decode together).
    pub fn with_max_slots(mut self, max: usize) -> Self {
        self.max_slots = max.clamp(1, i32::MAX as usize) as i32;
        self
    }

    /// The slot of sequence `owner`, if it has one.
    pub fn slot_of(&self, owner: u64) -> Option<usize> {
        self.owners.iter().position(|&o| o == owner)
    }

    /// Sequences in slot order.
    pub fn owners(&self) -> &[u64] {
        &self.owners
    }

    /// Occupied slots (the decode batch size).
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Valid positions of `slot`.
    pub fn length(&self, slot: usize) -> usize {
        self.lengths[slot]
    }

    /// Bytes the buffers hold (slots × capacity, not only valid positions).
    pub fn nbytes(&self) -> usize {
        self.layers
            .iter()
            .map(|(k, v)| k.nbytes() + v.nbytes())
            .sum()
    }

    /// Grows the buffers to at least `slots` slots of `capacity` positions, keeping their data.
    fn reserve(&mut self, slots: i32, capacity: i32) -> Result<(), Exception> {
        // Slots double (up to `max_slots`): each growth copies every slot, and a batch filling
        // up one arrival at a time would otherwise copy them once per arrival.
        let want_slots = if slots > self.slots {
            (self.slots * 2).min(self.max_slots).max(slots)
        } else {
            self.slots
        };
        // A reallocation sizes the capacity to the occupants (at least `capacity`), which may
        // shrink it: buffers kept from long prompts would otherwise make every slot added for
        // short ones that long (tens of MB of fresh pages each).
        let occupied = self.lengths.iter().max().map_or(0, |&l| l as i32 + 1);
        let needed = capacity.max(occupied);
        if want_slots == self.slots && needed <= self.capacity {
            return Ok(());
        }
        let want_cap = (needed + GROW_STEP - 1) / GROW_STEP * GROW_STEP;
        let (h, d) = (self.kv_heads, self.head_dim);
        let zeros_of = |shape: &[i32]| -> Result<Array, Exception> {
            zeros::<f32>(shape)?.as_dtype(self.dtype)
        };
        let kept = want_cap.min(self.capacity);
        let grow = |old: Option<&Array>| -> Result<Array, Exception> {
            let Some(old) = old else {
                return zeros_of(&[want_slots, h, want_cap, d]);
            };
            let mut a = match kept < self.capacity {
                true => slice(old, &[0, 0, 0, 0], &[self.slots, h, kept, d])?,
                false => old.clone(),
            };
            if want_cap > kept {
                let extra = zeros_of(&[self.slots, h, want_cap - kept, d])?;
                a = concatenate(&[&a, &extra], 2)?;
            }
            if want_slots > self.slots {
                let extra = zeros_of(&[want_slots - self.slots, h, want_cap, d])?;
                a = concatenate(&[&a, &extra], 0)?;
            }
            Ok(a)
        };
        let mut layers = Vec::with_capacity(self.num_layers);
        for l in 0..self.num_layers {
            let old = self.layers.get(l);
            layers.push((grow(old.map(|p| &p.0))?, grow(old.map(|p| &p.1))?));
        }
        // Evaluate now so the old buffers are released instead of living on in the graph.
        let arrays: Vec<&Array> = layers.iter().flat_map(|(k, v)| [k, v]).collect();
        mlx_rs::transforms::eval(arrays)?;
        self.layers = layers;
        self.slots = want_slots;
        self.capacity = want_cap;
        Ok(())
    }

    /// Copies a prefilled sequence's state into the next free slot and returns the slot.
    pub fn insert(&mut self, owner: u64, cache: &KvCache) -> Result<usize, Exception> {
        let slot = self.lengths.len() as i32;
        let len = cache.offset() as i32;
        self.reserve(slot + 1, len + 1)?;
        let (h, d) = (self.kv_heads, self.head_dim);
        if len > 0 {
            for l in 0..self.num_layers {
                let (k, v) = cache
                    .layer(l)
                    .ok_or_else(|| Exception::custom("slot insert: cache layer missing"))?;
                let (start, stop) = ([slot, 0, 0, 0], [slot + 1, h, len, d]);
                let (keys, values) = &self.layers[l];
                let keys = slice_update(keys, &k, &start, &stop)?;
                let values = slice_update(values, &v, &start, &stop)?;
                self.layers[l] = (keys, values);
            }
        }
        self.lengths.push(len as usize);
        self.owners.push(owner);
        Ok(slot as usize)
    }

    /// Takes sequence `owner` out (if it has a slot) and returns its state as a [`KvCache`] of
    /// its own; the last slot moves into the freed one. `base` is what the sequence's prompt
    /// passes left (its first positions, or an empty cache): only the slot's positions past it
    /// are written into it, in place when nothing else shares its buffers, so ending a sequence
    /// costs its new tokens' bytes instead of a fresh copy of its whole state (tens of MB at a
    /// 1k-token prompt, on pages the kernel must first hand out). Without a slot, `base` comes
    /// back as it is.
    pub fn remove(&mut self, owner: u64, base: KvCache) -> Result<KvCache, Exception> {
        let Some(slot) = self.slot_of(owner) else {
            return Ok(base);
        };
        let len = self.lengths[slot];
        let (s, h, d) = (slot as i32, self.kv_heads, self.head_dim);
        // Onto `base` unless its spare room would cost the prefix cache much more than the
        // positions themselves (a short prompt in a 256-position block: a copy is cheap there).
        let slack = base.capacity().saturating_sub(len);
        let onto = base.offset() > 0 && base.offset() <= len && slack <= (len / 4).max(64);
        let out = if onto {
            let mut out = base;
            let from = out.offset() as i32;
            if len as i32 > from {
                for l in 0..self.num_layers {
                    let (keys, values) = &self.layers[l];
                    let tail = |a: &Array| slice(a, &[s, 0, from, 0], &[s + 1, h, len as i32, d]);
                    out.update(l, &tail(keys)?, &tail(values)?)?;
                }
                out.advance(len - from as usize);
            }
            out
        } else {
            let mut layers = Vec::with_capacity(self.num_layers);
            for (keys, values) in &self.layers {
                let take = |a: &Array| -> Result<Array, Exception> {
                    // A copy, not a view: the slot is about to be overwritten.
                    copy(&slice(a, &[s, 0, 0, 0], &[s + 1, h, len.max(1) as i32, d])?)
                };
                layers.push((take(keys)?, take(values)?));
            }
            KvCache::from_layers(layers, len)
        };
        mlx_rs::transforms::eval(out.arrays().collect::<Vec<_>>())?;
        self.vacate(slot)?;
        Ok(out)
    }

    /// Frees sequence `owner`'s slot (if it has one) without keeping its state.
    pub fn discard(&mut self, owner: u64) -> Result<(), Exception> {
        match self.slot_of(owner) {
            Some(slot) => self.vacate(slot),
            None => Ok(()),
        }
    }

    /// Frees `slot`: the last slot moves into it.
    fn vacate(&mut self, slot: usize) -> Result<(), Exception> {
        let last = self.lengths.len() - 1;
        let (s, h, d) = (slot as i32, self.kv_heads, self.head_dim);
        if slot != last {
            // Copy the last slot out first, so that writing it back into the buffer can reuse
            // the buffer (a view of it would force a copy of the whole buffer).
            let (from, flen) = (last as i32, self.lengths[last].max(1) as i32);
            let mut parts = Vec::with_capacity(self.num_layers);
            for (keys, values) in &self.layers {
                let take = |a: &Array| -> Result<Array, Exception> {
                    copy(&slice(a, &[from, 0, 0, 0], &[from + 1, h, flen, d])?)
                };
                parts.push((take(keys)?, take(values)?));
            }
            mlx_rs::transforms::eval(parts.iter().flat_map(|(k, v)| [k, v]).collect::<Vec<_>>())?;
            let (start, stop) = ([s, 0, 0, 0], [s + 1, h, flen, d]);
            for (layer, (k, v)) in self.layers.iter_mut().zip(parts) {
                let keys = slice_update(&layer.0, &k, &start, &stop)?;
                let values = slice_update(&layer.1, &v, &start, &stop)?;
                *layer = (keys, values);
            }
        }
        self.lengths.swap_remove(slot);
        self.owners.swap_remove(slot);
        if self.lengths.is_empty() && self.nbytes() > IDLE_KEEP_BYTES {
            // Idle: give big buffers back rather than hold the busiest moment's size for ever.
            self.layers.clear();
            self.slots = 0;
            self.capacity = 0;
        }
        Ok(())
    }

    /// Frees the slots of sequences that `keep` rejects (sequences that failed or vanished).
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) -> Result<(), Exception> {
        let gone: Vec<u64> = self.owners.iter().copied().filter(|&o| !keep(o)).collect();
        for owner in gone {
            self.discard(owner)?;
        }
        Ok(())
    }

    /// What every layer of one decode step shares: the slots' positions and the additive mask.
    pub fn step(&mut self) -> Result<SlotStep, Exception> {
        let batch = self.lengths.len() as i32;
        let max_len = self.lengths.iter().copied().max().unwrap_or(0) as i32 + 1;
        self.reserve(batch, max_len)?;
        let positions: Vec<i32> = self.lengths.iter().map(|&l| l as i32).collect();
        let mut mask = vec![0.0f32; (batch * max_len) as usize];
        for (row, &p) in mask.chunks_mut(max_len as usize).zip(&positions) {
            row[p as usize + 1..].fill(f32::NEG_INFINITY);
        }
        let mask = Array::from_slice(&mask, &[batch, 1, 1, max_len]);
        Ok(SlotStep {
            slots: Array::from_slice(&(0..batch).collect::<Vec<i32>>(), &[batch]),
            positions: Array::from_slice(&positions, &[batch]),
            mask: if self.dtype == Dtype::Float32 {
                mask
            } else {
                mask.as_dtype(self.dtype)?
            },
            batch,
            max_len,
        })
    }

    /// Writes the step's new keys and values (`[B, kv_heads, 1, head_dim]`) of `layer` at each
    /// slot's position and returns the batch's keys and values up to the longest
    /// (`[B, kv_heads, max_len, head_dim]` views).
    pub fn update(
        &mut self,
        layer: usize,
        step: &SlotStep,
        k: &Array,
        v: &Array,
    ) -> Result<(Array, Array), Exception> {
        let (b, h, d) = (step.batch, self.kv_heads, self.head_dim);
        let shape = [b, 1, h, 1, d];
        let (keys, values) = &self.layers[layer];
        let keys = scatter_axes02(keys, &step.slots, &step.positions, &k.reshape(&shape)?)?;
        let values = scatter_axes02(values, &step.slots, &step.positions, &v.reshape(&shape)?)?;
        let stop = [b, h, step.max_len, d];
        let out = (
            slice(&keys, &[0, 0, 0, 0], &stop)?,
            slice(&values, &[0, 0, 0, 0], &stop)?,
        );
        self.layers[layer] = (keys, values);
        Ok(out)
    }

    /// Layer `layer`'s whole buffers `[slots, kv_heads, capacity, head_dim]`, as of the last
    /// [`Self::update`].
    pub fn buffers(&self, layer: usize) -> (&Array, &Array) {
        let (k, v) = &self.layers[layer];
        (k, v)
    }

    /// Marks the step's position of every slot as valid.
    pub fn advance(&mut self) {
        for l in &mut self.lengths {
            *l += 1;
        }
    }

    /// The arrays that hold the state (to evaluate them together with the logits).
    pub fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.layers.iter().flat_map(|(k, v)| [k, v])
    }
}

/// Per-step inputs shared by every layer.
pub struct SlotStep {
    slots: Array,
    /// Each slot's position for the new token (its length before the step), int32 `[B]`.
    pub positions: Array,
    /// Additive `[B, 1, 1, max_len]`: 0 up to each slot's new position, -inf after.
    pub mask: Array,
    pub batch: i32,
    pub max_len: i32,
}
