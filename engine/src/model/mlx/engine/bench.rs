//! In-process measurements of the engine's model: the bare decode loop the engine's own cost is
//! compared against, and per-operation profiles (`mlx-serve bench engine`).

use std::cell::RefCell;
use std::time::Instant;

use super::super::kv_cache::KvCache;
use super::super::profile::Profile;
use super::super::slot_kv::SlotKv;
use super::{internal, MlxEngine};
use crate::engine::EngineError;

impl MlxEngine {
    /// The bare model, no engine around it: prefill `prompt`, then `decode` greedy steps of one
    /// forward pass and one evaluation each, argmax on the host. Returns (prefill seconds, seconds
    /// per decoded token, of which seconds building the lazy graph) — the floor the engine's own
    /// per-token cost is measured against, and what overlapping graph building with evaluation
    /// could save at most.
    pub fn bench_bare_forward(
        &self,
        prompt: &[u32],
        decode: usize,
    ) -> Result<(f64, f64, f64), EngineError> {
        let mut cache = KvCache::new(self.model.num_layers());
        let t0 = Instant::now();
        let logits = self
            .model
            .forward_last(prompt, &mut cache)
            .map_err(internal)?;
        logits.eval().map_err(internal)?;
        let prefill = t0.elapsed().as_secs_f64();
        let mut token = argmax(&logits);
        let t1 = Instant::now();
        let mut building = 0.0;
        for _ in 0..decode {
            let tb = Instant::now();
            let logits = self
                .model
                .forward_last(&[token], &mut cache)
                .map_err(internal)?;
            building += tb.elapsed().as_secs_f64();
            logits.eval().map_err(internal)?;
            token = argmax(&logits);
        }
        let steps = decode.max(1) as f64;
        Ok((
            prefill,
            t1.elapsed().as_secs_f64() / steps,
            building / steps,
        ))
    }

    /// Where the time of a prefill of `prompt` (in `prefill_chunk`-token passes, as served), of
    /// `decode` greedy steps after it, and of a prompt resumed from the prefix cache (the last
    /// [`RESUMED`] tokens new but the last, then the last one in a decode slot, as a served hit runs
    /// them) goes, per group
    /// of operations (see [`Profile`]).
    pub fn bench_profile(
        &self,
        prompt: &[u32],
        decode: usize,
    ) -> Result<(Profile, Profile, Profile), EngineError> {
        let mut cache = KvCache::new(self.model.num_layers());
        let prefill = RefCell::new(Profile::default());
        let mut logits = None;
        for chunk in prompt.chunks(self.prefill_chunk) {
            logits = Some(
                self.model
                    .forward_profiled(chunk, &mut cache, &prefill)
                    .map_err(internal)?,
            );
        }
        let resumed = RefCell::new(Profile::default());
        let cut = prompt.len().saturating_sub(RESUMED).max(1);
        if cut + 1 < prompt.len() {
            // The cache as a served hit gets it: a finished sequence's prompt cache with its
            // slot's later positions written onto it (none here), shared with the prefix cache,
            // truncated to the shared prefix by the lookup.
            let c = &self.model.config;
            let mut slots =
                SlotKv::new(c.num_hidden_layers, c.kv_heads(), c.head_dim(), self.dtype);
            slots.insert(0, &cache).map_err(internal)?;
            let mut hit = slots.remove(0, cache.clone()).map_err(internal)?;
            hit.truncate(cut);
            let last = prompt.len() - 1;
            self.model
                .forward_profiled(&prompt[cut..last], &mut hit, &resumed)
                .map_err(internal)?;
            // The last prompt token in a decode slot, as the first decode step feeds it.
            slots.insert(0, &hit).map_err(internal)?;
            // What the copy into the slot costs a served hit is charged to `kv_cache`.
            let buffers: Vec<&mlx_rs::Array> = slots.arrays().collect();
            resumed
                .borrow_mut()
                .mark("kv_cache", &buffers)
                .map_err(internal)?;
            let logits = self
                .model
                .forward_batch_profiled(&prompt[last..], &mut slots, Some(&resumed))
                .map_err(internal)?;
            resumed
                .borrow_mut()
                .mark("lm_head", &[&logits])
                .map_err(internal)?;
        }
        let decoded = RefCell::new(Profile::default());
        let mut token = logits.as_ref().map_or(0, argmax);
        for _ in 0..decode {
            let logits = self
                .model
                .forward_profiled(&[token], &mut cache, &decoded)
                .map_err(internal)?;
            token = argmax(&logits);
        }
        Ok((
            prefill.into_inner(),
            decoded.into_inner(),
            resumed.into_inner(),
        ))
    }
}

/// New tokens of the resumed prompt in [`MlxEngine::bench_profile`]: a short new question after
/// a cached prefix, as `bench load --vary end` sends.
pub const RESUMED: usize = 8;

/// Greedy pick from evaluated f32 logits.
fn argmax(logits: &mlx_rs::Array) -> u32 {
    let v = logits.as_slice::<f32>();
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]))
        .unwrap_or(0) as u32
}

/// One line of the few-row table: a product shape and what `m` rows cost relative to one.
pub struct RowCost {
    pub name: &'static str,
    pub out: i32,
    pub inp: i32,
    /// `(m, seconds per product with the few-row kernel, seconds with OpenBLAS alone)`.
    pub costs: Vec<(i32, f64, f64)>,
}

impl MlxEngine {
    /// The few-row micro-benchmark: MLX matmuls `[m, in] · Wᵀ` on this model's projection shapes
    /// (random weights of the real sizes), for each `m` in `rows`, with the few-row kernel and
    /// with OpenBLAS alone.
    pub fn bench_rows(&self, rows: &[i32], repeat: usize) -> Result<Vec<RowCost>, EngineError> {
        let c = &self.model.config;
        let (h, i) = (c.hidden_size as i32, c.intermediate_size as i32);
        let q = (c.num_attention_heads * c.head_dim()) as i32;
        let kv = (c.kv_heads() * c.head_dim()) as i32;
        let shapes = [
            ("qkv_proj", q + 2 * kv, h),
            ("o_proj", h, q),
            ("gate_up_proj", 2 * i, h),
            ("down_proj", h, i),
            ("lm_head", c.vocab_size as i32, h),
        ];
        let mut out = Vec::new();
        for (name, n, k) in shapes {
            let w = mlx_rs::random::normal::<f32>(&[n, k], None, None, None).map_err(internal)?;
            w.eval().map_err(internal)?;
            let mut costs = Vec::new();
            for &m in rows {
                let x =
                    mlx_rs::random::normal::<f32>(&[m, k], None, None, None).map_err(internal)?;
                x.eval().map_err(internal)?;
                let time = |kernel: bool| -> Result<f64, EngineError> {
                    mlx_sys::fewrow::set_enabled(kernel);
                    let mut best = f64::MAX;
                    for _ in 0..repeat.max(1) {
                        let t = Instant::now();
                        x.matmul(w.t())
                            .map_err(internal)?
                            .eval()
                            .map_err(internal)?;
                        best = best.min(t.elapsed().as_secs_f64());
                    }
                    Ok(best)
                };
                let ours = time(true)?;
                let blas = time(false)?;
                mlx_sys::fewrow::set_enabled(true);
                costs.push((m, ours, blas));
            }
            out.push(RowCost {
                name,
                out: n,
                inp: k,
                costs,
            });
        }
        Ok(out)
    }

    /// Aggregate decode speed of `batch` sequences stepping together (one `forward_batch` and one
    /// evaluation per step), each after a prefill of `prompt`: tokens per second over all
    /// sequences.
    pub fn bench_batch_decode(
        &self,
        prompt: &[u32],
        batch: usize,
        steps: usize,
    ) -> Result<f64, EngineError> {
        let c = &self.model.config;
        let mut slots = SlotKv::new(c.num_hidden_layers, c.kv_heads(), c.head_dim(), self.dtype);
        let mut tokens = Vec::with_capacity(batch);
        for b in 0..batch {
            let mut cache = KvCache::new(self.model.num_layers());
            // Different lengths per sequence, as a real batch has.
            let len = prompt.len().saturating_sub(b * 7).max(1);
            let logits = self
                .model
                .forward_last(&prompt[..len], &mut cache)
                .map_err(internal)?;
            logits.eval().map_err(internal)?;
            tokens.push(argmax(&logits));
            slots.insert(b as u64, &cache).map_err(internal)?;
        }
        let t = Instant::now();
        for _ in 0..steps {
            let logits = self
                .model
                .forward_batch(&tokens, &mut slots)
                .map_err(internal)?;
            logits.eval().map_err(internal)?;
            let vocab = logits.shape()[1] as usize;
            let v = logits.as_slice::<f32>();
            for (b, token) in tokens.iter_mut().enumerate() {
                let row = &v[b * vocab..(b + 1) * vocab];
                *token = (0..vocab)
                    .max_by(|&x, &y| row[x].total_cmp(&row[y]))
                    .unwrap_or(0) as u32;
            }
        }
        Ok((steps * batch) as f64 / t.elapsed().as_secs_f64())
    }
}
