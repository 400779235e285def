//! One engine step's parts: a prompt chunk, a decode step for the batch, and turning a sampled
//! token into events (text, stop strings, the end of a sequence and its KV for the prefix cache).

use std::time::Instant;

use super::super::kv_cache::KvCache;
use super::{constraint_failed, internal, MlxEngine, Running};

/// Prompt tokens two sequences must share (past what the later one already has) for it to
/// wait rather than prefill beside the other.
const SHARED_STRETCH: usize = 32;
use crate::engine::{EngineError, FinishReason, SeqEvent, SeqTimings, TokenLogprob, Usage};
use crate::model::sampling::logprobs;

impl MlxEngine {
    pub(super) fn token_logprob(&self, logits: &[f32], chosen: u32, top: usize) -> TokenLogprob {
        let (lp, alternatives) = logprobs(logits, chosen, top);
        let text = |id: u32| {
            let s = self
                .shared_tokenizer
                .decode(&[id], false)
                .unwrap_or_default();
            let bytes = s.as_bytes().to_vec();
            (s, bytes)
        };
        let (token, bytes) = text(chosen);
        TokenLogprob {
            token,
            bytes,
            logprob: lp,
            top: alternatives
                .into_iter()
                .map(|(id, p)| {
                    let (t, b) = text(id);
                    (t, b, p)
                })
                .collect(),
        }
    }

    /// Plans `seq`'s part of this step's prompt pass beside `group` (the sequences already in
    /// it, with their chunks' ends), `left` tokens of the step's budget remaining: the end of its
    /// chunk, or `None` when it waits for a later step.
    pub(super) fn plan_chunk(
        &mut self,
        seq: &mut Running,
        group: &[(Running, usize)],
        left: usize,
    ) -> Option<usize> {
        // One whose prompt shares a stretch with a member's waits for that member's KV to
        // reach the prefix cache (an agent's parallel calls, `n` > 1) instead of computing it
        // again beside it.
        let have = match seq.prefilled {
            0 => self.prefix.peek(&seq.prompt),
            n => n,
        };
        let shares = |other: &Running| {
            let common = other
                .prompt
                .iter()
                .zip(&seq.prompt)
                .take_while(|(a, b)| a == b)
                .count();
            common >= have + SHARED_STRETCH
        };
        if self.prefix.enabled() && group.iter().any(|(other, _)| shares(other)) {
            return None;
        }
        if seq.prefilled == 0 {
            // Looked up at the sequence's first chunk, not when it joined the running set: by
            // now an older sequence with the same prefix (a cancelled attempt of this very
            // request, say) may have ended and left its KV.
            if let Some(hit) = self.prefix.lookup(&seq.prompt) {
                seq.cache = hit.cache;
                seq.prefilled = hit.tokens;
                seq.cached_tokens = hit.tokens;
            }
        }
        // The last prompt token is not part of any prompt pass: it joins the decode batch like
        // a sampled token. So a repeat of this prompt, resumed from the prefix cache at that
        // very token, computes its logits in the same decode row over the same KV, and a seeded
        // request samples the same text whether its prompt was cached or not (the
        // int8-activation kernels would otherwise round two shapes' last-bit differences
        // apart); and concurrent arrivals pay one batch row for it instead of a pass each.
        let last = seq.prompt.len().saturating_sub(1);
        let end = (seq.prefilled + left).min(last).max(seq.prefilled);
        let rows = end - seq.prefilled;
        // A one-token chunk runs alone: a pass of several parts takes the kernels of
        // many-row passes, which a one-token pass does not (see `Model::forward_chunks`).
        let small = |n: usize| n == 1;
        let first = group.iter().find(|(s, e)| *e > s.prefilled);
        match first {
            Some((s, e)) if rows > 0 && (small(rows) || small(*e - s.prefilled)) => None,
            _ => Some(end),
        }
    }

    /// Runs the planned prompt chunks of `group` (each sequence with its chunk's end) in one
    /// pass; a sequence whose prompt is then in gets its last token queued for the next decode
    /// step. Returns each one's events.
    pub(super) fn prefill_step(
        &mut self,
        group: &mut [(Running, usize)],
    ) -> Vec<Result<Vec<SeqEvent>, EngineError>> {
        let mut parts: Vec<(&[u32], &mut KvCache)> = group
            .iter_mut()
            .filter(|(s, end)| *end > s.prefilled)
            .map(|(s, end)| {
                let Running {
                    prompt,
                    cache,
                    prefilled,
                    ..
                } = s;
                (&prompt[*prefilled..*end], cache)
            })
            .collect();
        let pass = if parts.is_empty() {
            Ok(())
        } else {
            self.model
                .forward_chunks(&mut parts)
                .and_then(|()| mlx_rs::transforms::eval(parts.iter().flat_map(|(_, c)| c.arrays())))
        };
        drop(parts);
        if let Err(e) = pass {
            let e = internal(e);
            return group.iter().map(|_| Err(e.clone())).collect();
        }
        group
            .iter_mut()
            .map(|(seq, end)| {
                seq.prefilled = *end;
                self.prompt_done(seq)
            })
            .collect()
    }

    /// After a sequence's prompt pass: nothing while prompt remains, else its last token is
    /// queued for the next decode step.
    fn prompt_done(&mut self, seq: &mut Running) -> Result<Vec<SeqEvent>, EngineError> {
        let Some(last) = seq.prompt.len().checked_sub(1) else {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        };
        if seq.prefilled < last {
            return Ok(Vec::new()); // more prompt to go
        }
        // The prompt's KV goes to the prefix cache now, not only at the end: a request with the
        // same prefix arriving meanwhile (`n` > 1, an agent's parallel calls) starts from it.
        // Sharing is free (MLX arrays are immutable; decoding writes the slot buffers), and the
        // entry left at the end supersedes this one.
        if seq.prefilled > 0 {
            self.prefix
                .insert(seq.prompt[..seq.prefilled].to_vec(), seq.cache.clone());
        }
        seq.prefilled = seq.prompt.len();
        seq.pending = Some(seq.prompt[last]);
        seq.awaiting_start = true;
        Ok(Vec::new())
    }

    /// The events that open a reply, before its first token's.
    fn start_events(&self, seq: &Running) -> Vec<SeqEvent> {
        let mut events = vec![SeqEvent::Started {
            prompt_tokens: seq.prompt.len(),
            cached_tokens: seq.cached_tokens,
        }];
        // The prompt opened the reasoning: the reply starts inside it, and the client's
        // splitter must be told so, as if the model had written the marker.
        if let Some(open) = seq.thinking.as_ref().and_then(|t| t.prompt_opened()) {
            events.push(SeqEvent::Text {
                text: open.to_owned(),
                tokens: 0,
                logprobs: Vec::new(),
            });
        }
        events
    }

    /// Decodes one token for every sequence in `batch` (each has a pending token): one forward
    /// pass for all of them, then sampling and text per sequence. Returns each one's events.
    pub(super) fn decode_step(
        &mut self,
        batch: &mut [Running],
    ) -> Result<Vec<Result<Vec<SeqEvent>, EngineError>>, EngineError> {
        let tokens: Vec<u32> = batch.iter_mut().filter_map(|s| s.pending.take()).collect();
        if tokens.len() != batch.len() {
            return Err(internal("decode step without a pending token"));
        }
        // Sequences whose prompt just finished join the decode slots.
        for seq in batch.iter_mut() {
            if self.slots.slot_of(seq.id).is_none() {
                self.slots.insert(seq.id, &seq.cache).map_err(internal)?;
                // Kept for the prefix cache (see `finish_now`), dropped when there is none.
                if !self.prefix.enabled() {
                    seq.cache = KvCache::new(0);
                }
            }
        }
        if self.slots.len() != batch.len() {
            return Err(internal("decode slots out of step with the batch"));
        }
        self.last_batch = batch.len();
        crate::engine::EngineStats::count_batch(&mut self.batch_hist, batch.len());
        let mut by_slot = vec![0u32; batch.len()];
        let mut slot_of = Vec::with_capacity(batch.len());
        for (seq, token) in batch.iter().zip(&tokens) {
            let slot = self
                .slots
                .slot_of(seq.id)
                .ok_or_else(|| internal("decoding sequence without a slot"))?;
            by_slot[slot] = *token;
            slot_of.push(slot);
        }
        let logits = self
            .model
            .forward_batch(&by_slot, &mut self.slots)
            .map_err(internal)?;
        logits.eval().map_err(internal)?;
        let host = logits.as_slice::<f32>();
        let vocab = host.len() / batch.len();
        let rows: Vec<Vec<f32>> = slot_of
            .iter()
            .map(|&s| host[s * vocab..(s + 1) * vocab].to_vec())
            .collect();
        Ok(batch
            .iter_mut()
            .zip(rows)
            .map(|(seq, row)| {
                let events = if std::mem::take(&mut seq.awaiting_start) {
                    self.start_events(seq)
                } else {
                    Vec::new()
                };
                self.emit(seq, row, events)
            })
            .collect())
    }

    /// Samples the next token of `seq` from its logits and turns it into events.
    pub(super) fn emit(
        &mut self,
        seq: &mut Running,
        mut host: Vec<f32>,
        mut events: Vec<SeqEvent>,
    ) -> Result<Vec<SeqEvent>, EngineError> {
        let lp = seq.logprobs.map(|n| (n, host.clone()));
        let token = match seq.thinking.as_mut().and_then(|t| t.next_forced()) {
            // Closing a reasoning whose budget is spent (never under a constraint).
            Some(forced) => forced,
            None => {
                if let Some(guide) = seq.guide.as_mut() {
                    guide.mask(&mut host).map_err(constraint_failed)?;
                }
                seq.sampler.sample(&mut host)
            }
        };
        if seq.first_token_at.is_none() {
            seq.first_token_at = Some(Instant::now());
        }
        if self.eos.contains(&token) {
            return self.finish(seq, FinishReason::Stop, None, events);
        }
        let complete = match seq.guide.as_mut() {
            Some(guide) => guide.advance(token).map_err(constraint_failed)?,
            None => false,
        };
        seq.output.push(token);
        let logprob = lp.map(|(n, raw)| self.token_logprob(&raw, token, n));
        let piece = seq.detok.push(token).map_err(internal)?.unwrap_or_default();
        if let Some(t) = seq.thinking.as_mut() {
            if let Some(close) = t.observe(&piece).map(str::to_owned) {
                let ids = self
                    .prompts
                    .tokenizer
                    .encode(&close, false)
                    .map_err(internal)?;
                t.force(ids);
            }
        }
        let outcome = seq.stops.push(&piece);
        if !outcome.text.is_empty() || logprob.is_some() {
            events.push(SeqEvent::Text {
                text: outcome.text,
                tokens: 1,
                logprobs: logprob.into_iter().collect(),
            });
        }
        if let Some(stop) = outcome.stop {
            return self.finish_now(seq, FinishReason::StopSequence, Some(stop), events);
        }
        let budget_left = seq.max_tokens.saturating_sub(seq.output.len());
        let complete = complete
            || seq
                .guide
                .as_mut()
                .is_some_and(|g| g.ends_within(budget_left));
        if complete {
            // Only end-of-sequence can follow (or another part would not fit): end now.
            return self.finish(seq, FinishReason::Stop, None, events);
        }
        let total = seq.prompt.len() + seq.output.len();
        if seq.output.len() >= seq.max_tokens || total >= self.context_length {
            return self.finish(seq, FinishReason::Length, None, events);
        }
        seq.pending = Some(token);
        Ok(events)
    }

    /// Flushes held-back text, then ends the sequence.
    pub(super) fn finish(
        &mut self,
        seq: &mut Running,
        reason: FinishReason,
        stop: Option<String>,
        mut events: Vec<SeqEvent>,
    ) -> Result<Vec<SeqEvent>, EngineError> {
        let tail = seq.detok.finish().map_err(internal)?;
        let mut outcome = seq.stops.push(&tail);
        if outcome.stop.is_none() {
            outcome.text.push_str(&seq.stops.finish());
        }
        if !outcome.text.is_empty() {
            events.push(SeqEvent::Text {
                text: outcome.text,
                tokens: 0,
                logprobs: Vec::new(),
            });
        }
        match outcome.stop {
            Some(s) => self.finish_now(seq, FinishReason::StopSequence, Some(s), events),
            None => self.finish_now(seq, reason, stop, events),
        }
    }

    pub(super) fn finish_now(
        &mut self,
        seq: &mut Running,
        reason: FinishReason,
        stop_sequence: Option<String>,
        mut events: Vec<SeqEvent>,
    ) -> Result<Vec<SeqEvent>, EngineError> {
        let now = Instant::now();
        let first = seq.first_token_at.unwrap_or(now);
        events.push(SeqEvent::Finished {
            reason,
            stop_sequence,
            usage: Usage {
                prompt_tokens: seq.prompt.len(),
                cached_tokens: seq.cached_tokens,
                completion_tokens: seq.output.len(),
            },
            timings: SeqTimings {
                prefill_s: (first - seq.started).as_secs_f64(),
                decode_s: (now - first).as_secs_f64(),
            },
        });
        let base = std::mem::replace(&mut seq.cache, KvCache::new(0));
        if !self.prefix.enabled() {
            self.slots.discard(seq.id).map_err(internal)?;
            return Ok(events);
        }
        let mut tokens = seq.prompt.clone();
        tokens.extend_from_slice(&seq.output);
        // The entries this one supersedes (its prompt's, left when its prompt pass ended) go
        // first: then nothing else holds `base`'s buffers and the slot's new positions are
        // written into them in place.
        self.prefix.forget_prefixes_of(&tokens);
        // The cache holds the prompt and every output token fed back so far.
        let cache = self.slots.remove(seq.id, base).map_err(internal)?;
        tokens.truncate(cache.offset());
        self.prefix.insert(tokens, cache);
        Ok(events)
    }

    /// Moves an admitted sequence into the running set (its prefix is looked up at its first
    /// prompt chunk, see [`Self::prefill_step`]).
    pub(super) fn start_running(&mut self, mut seq: Running) {
        seq.started = Instant::now();
        self.running.push(seq);
    }
}
