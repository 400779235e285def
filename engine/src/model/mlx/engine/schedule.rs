//! The `Engine` contract: starting a sequence, the step that mixes one prompt pass (chunks of
//! several prompts) with a decode step for every running sequence, pausing and resuming,
//! cancellation.

use std::sync::Arc;

use super::super::config::ModelConfig;
use super::super::kv_cache::KvCache;
use super::{internal, MlxEngine, Running};
use crate::engine::{
    Engine, EngineError, EngineInfo, EngineStats, FinishReason, GenerateRequest, PausedSeq, Prompt,
    PromptEncoder, SeqEvent, SeqId,
};

impl Engine for MlxEngine {
    fn info(&self) -> EngineInfo {
        self.info.clone()
    }

    fn stats(&self) -> EngineStats {
        let p = self.prefix.stats();
        EngineStats {
            prefix_queries: p.queries,
            prefix_hits: p.hits,
            prefix_tokens_saved: p.tokens_saved,
            prefix_entries: p.entries as u64,
            prefix_bytes: p.bytes as u64,
            prefix_evictions: p.evictions,
            last_batch: self.last_batch as u64,
            slots_used: self.slots.len() as u64,
            slots_total: self.max_batch as u64,
            preemptions: self.preemptions,
            batch_hist: self.batch_hist,
        }
    }

    fn count_prompt_tokens(&mut self, prompt: &Prompt) -> Result<usize, EngineError> {
        self.tokenize(prompt).map(|t| t.len())
    }

    fn encoder(&self) -> Option<Arc<dyn PromptEncoder>> {
        Some(self.prompts.clone())
    }

    fn add(&mut self, id: SeqId, request: GenerateRequest) -> Result<(), EngineError> {
        if self.running.len() >= self.max_batch {
            return Err(internal(
                "no free slot: the scheduler admitted past free_slots",
            ));
        }
        let seq = self.admit(id, request)?;
        self.start_running(seq);
        Ok(())
    }

    fn free_slots(&self) -> usize {
        self.max_batch.saturating_sub(self.running.len())
    }

    fn has_work(&self) -> bool {
        !self.running.is_empty()
    }

    fn pause(&mut self, id: SeqId) -> Option<PausedSeq> {
        let at = self.running.iter().position(|s| s.id == id)?;
        let mut seq = self.running.remove(at);
        // Its KV leaves the decode slots for a cache of its own (kept, not recomputed).
        let base = std::mem::replace(&mut seq.cache, KvCache::new(0));
        match self.slots.remove(id, base) {
            Ok(cache) => seq.cache = cache,
            Err(e) => {
                tracing::error!(error = %e, "moving a paused sequence's KV out of its slot failed");
                self.running.insert(at, seq);
                return None;
            }
        }
        self.preemptions += 1;
        Some(PausedSeq::new(id, Box::new(seq)))
    }

    fn resume(&mut self, seq: PausedSeq) -> Result<(), EngineError> {
        let id = seq.id();
        let seq = seq
            .into_state::<Running>()
            .map_err(|_| internal(format!("sequence {id} was not paused by this engine")))?;
        if self.running.len() >= self.max_batch {
            return Err(internal("no free slot to resume a paused sequence"));
        }
        // Back among the running in arrival order (`started`), at the next step's sort.
        self.running.push(*seq);
        Ok(())
    }

    fn step(&mut self) -> Vec<(SeqId, SeqEvent)> {
        let chunk = self.prompt_chunk();
        let mut out = Vec::new();
        let mut keep = Vec::with_capacity(self.running.len());
        let mut decode = Vec::new();
        // This step's prompt pass: prefilling sequences, oldest first, while the chunk budget
        // lasts, so that the others keep decoding between chunks of a long prompt and a wave of
        // short prompts pays one pass's fixed cost instead of one each.
        let mut prompt: Vec<(Running, usize)> = Vec::new();
        let mut left = chunk;
        for mut seq in std::mem::take(&mut self.running) {
            let id = seq.id;
            if seq.cancelled {
                let result = self.finish_now(&mut seq, FinishReason::Cancelled, None, Vec::new());
                keep_unless_done(seq, id, result, &mut keep, &mut out);
            } else if seq.prefilled < seq.prompt.len() {
                match self
                    .plan_chunk(&mut seq, &prompt, left)
                    .filter(|_| left > 0)
                {
                    Some(end) => {
                        left -= end - seq.prefilled;
                        prompt.push((seq, end));
                    }
                    None => keep.push(seq),
                }
            } else {
                decode.push(seq);
            }
        }
        if !prompt.is_empty() {
            let results = self.prefill_step(&mut prompt);
            for ((seq, _), result) in prompt.into_iter().zip(results) {
                let id = seq.id;
                keep_unless_done(seq, id, result, &mut keep, &mut out);
            }
        }
        if !decode.is_empty() {
            match self.decode_step(&mut decode) {
                Ok(results) => {
                    for (seq, result) in decode.into_iter().zip(results) {
                        let id = seq.id;
                        keep_unless_done(seq, id, result, &mut keep, &mut out);
                    }
                }
                Err(e) => out.extend(decode.iter().map(|s| (s.id, SeqEvent::Failed(e.clone())))),
            }
        }
        keep.sort_by_key(|s| s.started);
        // Slots of sequences that failed (not finished) are freed here.
        if let Err(e) = self.slots.retain(|id| keep.iter().any(|s| s.id == id)) {
            tracing::error!(error = %e, "freeing decode slots failed");
        }
        self.running = keep;
        out
    }

    fn step_weight(&self) -> f64 {
        // The prompt chunk this step would run: the oldest prefilling sequence's. Its cost against a 512-token chunk at position 0.
        let next = self
            .running
            .iter()
            .find(|s| !s.cancelled && s.prefilled < s.prompt.len());
        next.map_or(1.0, |s| {
            let chunk = self.prompt_chunk().min(s.prompt.len() - s.prefilled);
            chunk_weight(&self.model.config, s.prefilled, chunk)
        })
    }

    fn cancel(&mut self, id: SeqId) {
        if let Some(seq) = self.running.iter_mut().find(|s| s.id == id) {
            seq.cancelled = true;
        }
    }
}

impl MlxEngine {
    /// Prompt tokens for this step's chunk. While other sequences decode, a quarter of
    /// `prefill_chunk` (at least [`MIN_SHARED_CHUNK`]): their next token waits for the chunk, and
    /// a smaller chunk costs a long prompt little (each chunk's cost is nearly all compute,
    /// proportional to its tokens; the weights are read once per chunk either way).
    pub(super) fn prompt_chunk(&self) -> usize {
        let decoding = self
            .running
            .iter()
            .any(|s| !s.cancelled && s.prefilled >= s.prompt.len());
        if decoding {
            (self.prefill_chunk / 4)
                .max(MIN_SHARED_CHUNK)
                .min(self.prefill_chunk)
        } else {
            self.prefill_chunk
        }
    }
}

/// The smallest prompt chunk run beside decoding sequences.
const MIN_SHARED_CHUNK: usize = 64;

/// What a prompt chunk of `chunk` tokens starting at position `at` costs relative to a 512-token
/// chunk at position 0: projections cost the same per token wherever it sits, attention grows with
/// the positions before it. `context_ref` is the position at which attention costs as much per
/// token as the projections.
pub(super) fn chunk_weight(config: &ModelConfig, at: usize, chunk: usize) -> f64 {
    let h = config.hidden_size as f64;
    let head_dim = config
        .head_dim
        .unwrap_or(config.hidden_size / config.num_attention_heads.max(1))
        as f64;
    let q = config.num_attention_heads as f64 * head_dim;
    let kv = config
        .num_key_value_heads
        .unwrap_or(config.num_attention_heads) as f64
        * head_dim;
    let projections =
        2.0 * (2.0 * h * q + 2.0 * h * kv + 3.0 * h * config.intermediate_size as f64);
    let context_ref = projections / (4.0 * q).max(1.0);
    let c = chunk as f64;
    let attention = 1.0 + (at as f64 + c / 2.0) / context_ref;
    let base = 1.0 + 256.0 / context_ref;
    (c * attention / (512.0 * base)).max(1.0)
}

/// Collects a sequence's events and keeps it running unless it finished or failed.
fn keep_unless_done(
    seq: Running,
    id: SeqId,
    result: Result<Vec<SeqEvent>, EngineError>,
    keep: &mut Vec<Running>,
    out: &mut Vec<(SeqId, SeqEvent)>,
) {
    match result {
        Ok(events) => {
            let done = events
                .iter()
                .any(|e| matches!(e, SeqEvent::Finished { .. }));
            if !done {
                keep.push(seq);
            }
            out.extend(events.into_iter().map(|e| (id, e)));
        }
        Err(e) => out.push((id, SeqEvent::Failed(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Qwen2.5-0.5B's shape.
    fn qwen() -> ModelConfig {
        serde_json::from_value(serde_json::json!({
            "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "vocab_size": 151936,
        }))
        .unwrap()
    }

    #[test]
    fn a_chunk_deep_in_a_long_prompt_weighs_more_than_one_at_its_start() {
        let c = qwen();
        let start = chunk_weight(&c, 0, 512);
        assert!((start - 1.0).abs() < 1e-9, "{start}");
        // Small chunks and decode-sized steps never go below 1.
        assert_eq!(chunk_weight(&c, 0, 1), 1.0);
        let deep = chunk_weight(&c, 11_500, 512);
        assert!((2.0..3.5).contains(&deep), "{deep}");
        // Twice the tokens, about twice the work.
        let big = chunk_weight(&c, 0, 1024);
        assert!((1.9..2.2).contains(&big), "{big}");
    }
}
