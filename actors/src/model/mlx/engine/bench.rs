//! In-process measurements of the engine's model: the bare decode loop the engine's own cost is
//! compared against, and per-operation profiles (`mlx-serve bench engine`).

use std::cell::RefCell;
use std::time::Instant;

use super::super::kv_cache::KvCache;
use super::super::profile::Profile;
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

    /// Where the time of a prefill of `prompt` (in `prefill_chunk`-token passes, as served) and
    /// of `decode` greedy steps after it goes, per group of operations (see [`Profile`]).
    pub fn bench_profile(
        &self,
        prompt: &[u32],
        decode: usize,
    ) -> Result<(Profile, Profile), EngineError> {
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
        let decoded = RefCell::new(Profile::default());
        let mut token = logits.as_ref().map_or(0, argmax);
        for _ in 0..decode {
            let logits = self
                .model
                .forward_profiled(&[token], &mut cache, &decoded)
                .map_err(internal)?;
            token = argmax(&logits);
        }
        Ok((prefill.into_inner(), decoded.into_inner()))
    }
}

/// Greedy pick from evaluated f32 logits.
fn argmax(logits: &mlx_rs::Array) -> u32 {
    let v = logits.as_slice::<f32>();
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]))
        .unwrap_or(0) as u32
}
