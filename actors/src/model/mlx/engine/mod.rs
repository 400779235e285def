//! `MlxEngine`: the real `Engine`. Renders and tokenizes prompts, prefills in chunks, decodes one
//! token per step with one MLX evaluation each, samples on the host, assembles text (UTF-8-safe,
//! stop strings) and reuses KV state across requests through the prefix cache. A sequence with
//! a constraint carries its own grammar matcher (`crate::guided`): its logits are masked before
//! each sample, in the batched path too, and it ends once the grammar is complete. Constraints
//! play no part in prefix reuse: the KV state of a prompt is the same whatever follows it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tokenizers::Tokenizer;

use mlx_rs::Dtype;

mod bench;

use super::config::ModelConfig;
use super::decoder::{Model, Ops};
use super::device::{self, DeviceChoice};
use super::kv_cache::KvCache;
use super::loader::{self, dtype_name, LoadedModel, ModelSource};
use super::prefix_cache::{PrefixCache, PrefixStats};
use super::slot_kv::SlotKv;
use crate::engine::{
    Engine, EngineError, EngineInfo, EngineStats, FinishReason, GenerateRequest, Prompt,
    SamplingParams, SeqEvent, SeqId, SeqTimings, TokenLogprob, Usage,
};
use crate::guided::{self, Guide, GuideFactory};
use crate::model::detok::IncrementalDecoder;
use crate::model::sampling::{logprobs, Sampler};
use crate::model::stops::StopMatcher;
use crate::model::template::ChatTemplate;
use crate::model::tokenizer::TokenizerBundle;

/// How to load and run a model.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub source: ModelSource,
    /// Served model id.
    pub model_id: String,
    /// `None`: float32 on CPU (fastest there), bfloat16 on a GPU.
    pub dtype: Option<String>,
    pub device: DeviceChoice,
    /// Overrides the model's own context length (capped by it).
    pub context_length: Option<usize>,
    /// Prompt tokens per prefill step (bounds memory and keeps steps short).
    pub prefill_chunk: usize,
    /// Bytes of KV state kept for prefix reuse (0 disables).
    pub prefix_cache_bytes: usize,
    /// Sequences decoded together, one token each per step (1: one at a time).
    pub max_batch: usize,
}

struct Running {
    id: SeqId,
    prompt: Vec<u32>,
    output: Vec<u32>,
    cache: KvCache,
    /// Prompt tokens whose KV is in `cache` (prefill progress).
    prefilled: usize,
    cached_tokens: usize,
    /// The token sampled last, not yet fed to the model.
    pending: Option<u32>,
    max_tokens: usize,
    logprobs: Option<usize>,
    sampler: Sampler,
    /// The grammar the output follows, if the request has a constraint.
    guide: Option<Guide>,
    detok: IncrementalDecoder<Arc<Tokenizer>>,
    stops: StopMatcher,
    started: Instant,
    first_token_at: Option<Instant>,
    cancelled: bool,
    /// Admitted by preempting another sequence (runs before paused ones).
    preempting: bool,
}

pub struct MlxEngine {
    model: Model,
    tokenizer: TokenizerBundle,
    /// Shared with every sequence's incremental decoder.
    shared_tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    /// The model's separate template for requests with tools, when it has one.
    tool_template: Option<ChatTemplate>,
    eos: Vec<u32>,
    info: EngineInfo,
    context_length: usize,
    prefill_chunk: usize,
    max_batch: usize,
    /// Weight and KV dtype.
    dtype: Dtype,
    /// Admitted sequences, oldest first: at most one of them prefills per step, all of them with
    /// a pending token decode together.
    running: Vec<Running>,
    waiting: VecDeque<Running>,
    /// Sequences paused for a higher-priority one, oldest first; they resume before `waiting`.
    paused: VecDeque<Running>,
    last_batch: usize,
    preemptions: u64,
    /// KV state of the decoding sequences (a sequence moves here from its own cache once its
    /// prompt is in).
    slots: SlotKv,
    prefix: PrefixCache,
    /// Compiles request constraints against this vocabulary; `Err` says why this tokenizer
    /// cannot be constrained (requests with a constraint then fail with that message).
    guides: Result<GuideFactory, String>,
}

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(e.to_string())
}

impl MlxEngine {
    /// Loads the model on the calling thread, which must be the thread that runs it.
    pub fn load(options: &EngineOptions) -> Result<Self, EngineError> {
        let t0 = Instant::now();
        let backend = device::select(options.device).map_err(EngineError::InvalidRequest)?;
        let dtype = match &options.dtype {
            Some(name) => loader::parse_dtype(name).map_err(EngineError::InvalidRequest)?,
            None if backend == "cpu" => Dtype::Float32,
            None => Dtype::Bfloat16,
        };
        let keep_quantized = backend != "cpu";
        let LoadedModel {
            config,
            weights,
            tokenizer,
            ..
        } = loader::load(&options.source, dtype, keep_quantized)
            .map_err(EngineError::InvalidRequest)?;
        let weight_bytes: usize = weights.values().map(|a| a.nbytes()).sum();
        let ops = Ops::for_backend(backend == "cpu")
            .without(&std::env::var("MLX_SERVE_STOCK_OPS").unwrap_or_default())
            .map_err(EngineError::InvalidRequest)?;
        let model = Model::with_ops(config.clone(), weights, ops).map_err(internal)?;
        let bos = tokenizer.bos_token.clone();
        let eos_text = tokenizer.eos_token.clone();
        let template = match tokenizer.template_for(false) {
            Some(src) => ChatTemplate::new(src, bos.clone(), eos_text.clone())
                .map_err(|e| EngineError::InvalidRequest(format!("chat template: {e}")))?,
            None => ChatTemplate::chatml(bos.clone(), eos_text.clone()),
        };
        let tool_template = match &tokenizer.tool_use_template {
            Some(src) => Some(ChatTemplate::new(src, bos, eos_text).map_err(|e| {
                EngineError::InvalidRequest(format!("tool_use chat template: {e}"))
            })?),
            None => None,
        };
        let eos = eos_ids(&config, &tokenizer);
        let context_length = options
            .context_length
            .map_or(config.max_position_embeddings, |c| {
                c.min(config.max_position_embeddings)
            });
        let info = EngineInfo {
            model_id: options.model_id.clone(),
            architecture: config.model_type.clone(),
            context_length,
            backend: backend.to_string(),
            dtype: dtype_name(dtype).to_string(),
            chat_template: tokenizer.chat_template.clone(),
            load_seconds: 0.0,
            weight_bytes: weight_bytes as u64,
        };
        let shared_tokenizer = Arc::new(tokenizer.tokenizer.clone());
        let guides = guided::vocab_bytes(&tokenizer.tokenizer, config.vocab_size)
            .and_then(|bytes| GuideFactory::new(&bytes, &eos))
            .map_err(|e| e.to_string());
        if let Err(e) = &guides {
            tracing::warn!(error = %e, "constrained decoding is unavailable for this model");
        }
        let mut engine = Self {
            model,
            tokenizer,
            shared_tokenizer,
            template,
            tool_template,
            eos,
            info,
            context_length,
            prefill_chunk: options.prefill_chunk.max(1),
            max_batch: options.max_batch.max(1),
            dtype,
            running: Vec::new(),
            waiting: VecDeque::new(),
            paused: VecDeque::new(),
            last_batch: 0,
            preemptions: 0,
            slots: SlotKv::new(
                config.num_hidden_layers,
                config.kv_heads(),
                config.head_dim(),
                dtype,
            ),
            prefix: PrefixCache::new(options.prefix_cache_bytes),
            guides,
        };
        // One tiny forward pass so the first request does not pay for MLX's lazy start-up.
        let mut warm = KvCache::new(engine.model.num_layers());
        engine
            .model
            .forward_last(&[0], &mut warm)
            .and_then(|l| l.eval())
            .map_err(internal)?;
        engine.info.load_seconds = t0.elapsed().as_secs_f64();
        Ok(engine)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    pub fn tokenizer(&self) -> &TokenizerBundle {
        &self.tokenizer
    }

    /// Tokens of a prompt as the engine would run it.
    pub fn tokenize_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        self.tokenize(prompt)
    }

    pub fn prefix_stats(&self) -> PrefixStats {
        self.prefix.stats()
    }

    fn render(&self, prompt: &Prompt) -> Result<String, EngineError> {
        match prompt {
            Prompt::Text(text) => Ok(text.clone()),
            Prompt::Tokens(ids) => self
                .tokenizer
                .tokenizer
                .decode(ids, false)
                .map_err(|e| EngineError::InvalidRequest(format!("prompt tokens: {e}"))),
            Prompt::Chat {
                messages,
                tools,
                add_generation_prompt,
            } => {
                let template = match (&self.tool_template, tools.is_empty()) {
                    (Some(t), false) => t,
                    _ => &self.template,
                };
                template.render(messages, tools, *add_generation_prompt)
            }
            .map_err(|e| EngineError::InvalidRequest(format!("chat template: {e}"))),
        }
    }

    fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        if let Prompt::Tokens(ids) = prompt {
            let vocab = self.tokenizer.tokenizer.get_vocab_size(true) as u32;
            if let Some(bad) = ids.iter().find(|&&id| id >= vocab) {
                return Err(EngineError::InvalidRequest(format!(
                    "prompt token {bad} is outside the vocabulary (0..{vocab})"
                )));
            }
            if ids.is_empty() {
                return Err(EngineError::InvalidRequest("the prompt is empty".into()));
            }
            return Ok(ids.clone());
        }
        let text = self.render(prompt)?;
        // A rendered chat already carries its special tokens; raw text gets BOS when the model
        // wants one.
        let add_special = matches!(prompt, Prompt::Text(_));
        let ids = self
            .tokenizer
            .encode(&text, add_special)
            .map_err(internal)?;
        if ids.is_empty() {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        Ok(ids)
    }

    fn token_logprob(&self, logits: &[f32], chosen: u32, top: usize) -> TokenLogprob {
        let (lp, alternatives) = logprobs(logits, chosen, top);
        let text = |id: u32| {
            let s = self
                .tokenizer
                .tokenizer
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

    /// Feeds the next prompt chunk of `seq`; once the prompt is complete, samples its first token.
    fn prefill_step(&mut self, seq: &mut Running) -> Result<Vec<SeqEvent>, EngineError> {
        let end = (seq.prefilled + self.prefill_chunk).min(seq.prompt.len());
        let logits = self
            .model
            .forward_last(&seq.prompt[seq.prefilled..end], &mut seq.cache)
            .map_err(internal)?;
        logits.eval().map_err(internal)?;
        seq.prefilled = end;
        if seq.prefilled < seq.prompt.len() {
            return Ok(Vec::new()); // more prompt to go; these logits are not needed
        }
        let events = vec![SeqEvent::Started {
            prompt_tokens: seq.prompt.len(),
            cached_tokens: seq.cached_tokens,
        }];
        self.emit(seq, logits.as_slice::<f32>().to_vec(), events)
    }

    /// Decodes one token for every sequence in `batch` (each has a pending token): one forward
    /// pass for all of them, then sampling and text per sequence. Returns each one's events.
    fn decode_step(
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
                seq.cache = KvCache::new(0);
            }
        }
        if self.slots.len() != batch.len() {
            return Err(internal("decode slots out of step with the batch"));
        }
        self.last_batch = batch.len();
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
            .map(|(seq, row)| self.emit(seq, row, Vec::new()))
            .collect())
    }

    /// Samples the next token of `seq` from its logits and turns it into events.
    fn emit(
        &mut self,
        seq: &mut Running,
        mut host: Vec<f32>,
        mut events: Vec<SeqEvent>,
    ) -> Result<Vec<SeqEvent>, EngineError> {
        let lp = seq.logprobs.map(|n| (n, host.clone()));
        if let Some(guide) = seq.guide.as_mut() {
            guide.mask(&mut host).map_err(constraint_failed)?;
        }
        let token = seq.sampler.sample(&mut host);
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
        if complete {
            // Only end-of-sequence can follow: it would be the next token, so end now.
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
    fn finish(
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

    fn finish_now(
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
        // The cache holds the prompt and every output token fed back so far.
        let cache = match self.slots.remove(seq.id).map_err(internal)? {
            Some(cache) => cache,
            None => std::mem::replace(&mut seq.cache, KvCache::new(0)),
        };
        let held = cache.offset();
        let mut tokens = seq.prompt.clone();
        tokens.extend_from_slice(&seq.output);
        tokens.truncate(held);
        self.prefix.insert(tokens, cache);
        Ok(events)
    }

    /// Moves an admitted sequence into the running set, resuming from the longest cached prefix.
    fn start_running(&mut self, mut seq: Running) {
        if let Some(hit) = self.prefix.lookup(&seq.prompt) {
            seq.cache = hit.cache;
            seq.prefilled = hit.tokens;
            seq.cached_tokens = hit.tokens;
        }
        seq.started = Instant::now();
        self.running.push(seq);
    }

    fn admit(&mut self, id: SeqId, request: GenerateRequest) -> Result<Running, EngineError> {
        let prompt = self.tokenize(&request.prompt)?;
        let room = self.context_length.saturating_sub(prompt.len());
        let max_tokens = match request.max_tokens {
            Some(n) if prompt.len() + n > self.context_length => {
                return Err(EngineError::ContextLength {
                    context_length: self.context_length,
                    prompt_tokens: prompt.len(),
                    max_tokens: n,
                    requested: prompt.len() + n,
                })
            }
            Some(n) => n,
            None if room == 0 => {
                return Err(EngineError::ContextLength {
                    context_length: self.context_length,
                    prompt_tokens: prompt.len(),
                    max_tokens: 1,
                    requested: prompt.len() + 1,
                })
            }
            None => room,
        };
        let guide =
            match &request.constraint {
                None => None,
                Some(c) => {
                    let factory = self.guides.as_ref().map_err(|e| {
                        EngineError::InvalidRequest(format!("constrained decoding: {e}"))
                    })?;
                    Some(factory.guide(c).map_err(|e| {
                        EngineError::InvalidRequest(format!("invalid constraint: {e}"))
                    })?)
                }
            };
        let mut sampler = Sampler::new(&request.sampling);
        sampler.add_prompt(&prompt);
        Ok(Running {
            id,
            prompt,
            output: Vec::new(),
            cache: KvCache::new(self.model.num_layers()),
            prefilled: 0,
            cached_tokens: 0,
            pending: None,
            max_tokens,
            logprobs: request.logprobs,
            sampler,
            guide,
            detok: IncrementalDecoder::new(self.shared_tokenizer.clone()),
            stops: StopMatcher::new(&request.stop),
            started: Instant::now(),
            first_token_at: None,
            cancelled: false,
            preempting: false,
        })
    }
}

fn constraint_failed(e: guided::ConstraintError) -> EngineError {
    EngineError::Internal(format!("constrained decoding: {e}"))
}

fn eos_ids(config: &ModelConfig, tokenizer: &TokenizerBundle) -> Vec<u32> {
    let mut ids = config.eos_ids();
    ids.extend(tokenizer.eos_token_ids.iter().copied());
    ids.sort_unstable();
    ids.dedup();
    ids
}

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
        }
    }

    fn count_prompt_tokens(&mut self, prompt: &Prompt) -> Result<usize, EngineError> {
        self.tokenize(prompt).map(|t| t.len())
    }

    fn add(&mut self, id: SeqId, request: GenerateRequest) -> Result<(), EngineError> {
        let seq = self.admit(id, request)?;
        self.waiting.push_back(seq);
        Ok(())
    }

    fn free_slots(&self) -> usize {
        self.max_batch
            .saturating_sub(self.running.len() + self.waiting.len() + self.paused.len())
    }

    fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty() || !self.paused.is_empty()
    }

    fn add_preempting(
        &mut self,
        victim: SeqId,
        id: SeqId,
        request: GenerateRequest,
    ) -> Result<bool, EngineError> {
        let Some(at) = self.running.iter().position(|s| s.id == victim) else {
            return Ok(false);
        };
        // Validate the newcomer before touching the victim: a bad request must not pause anyone.
        let seq = self.admit(id, request)?;
        let mut paused = self.running.remove(at);
        // Its KV leaves the decode slots for a cache of its own (kept, not recomputed).
        if let Some(cache) = self.slots.remove(victim).map_err(internal)? {
            paused.cache = cache;
        }
        self.paused.push_back(paused);
        self.preemptions += 1;
        // The newcomer goes first, ahead of anything admitted normally.
        let mut seq = seq;
        seq.preempting = true;
        self.waiting.push_front(seq);
        Ok(true)
    }

    fn step(&mut self) -> Vec<(SeqId, SeqEvent)> {
        // A preempting newcomer first, then paused sequences, then the rest in arrival order.
        while self.running.len() < self.max_batch {
            if let Some(seq) = self.waiting.front() {
                if seq.preempting {
                    let Some(seq) = self.waiting.pop_front() else {
                        break;
                    };
                    self.start_running(seq);
                    continue;
                }
            }
            if let Some(seq) = self.paused.pop_front() {
                self.running.push(seq);
                continue;
            }
            let Some(seq) = self.waiting.pop_front() else {
                break;
            };
            self.start_running(seq);
        }
        let mut out = Vec::new();
        let mut keep = Vec::with_capacity(self.running.len());
        let mut decode = Vec::new();
        let mut prefilled_one = false;
        for mut seq in std::mem::take(&mut self.running) {
            let id = seq.id;
            let result = if seq.cancelled {
                self.finish_now(&mut seq, FinishReason::Cancelled, None, Vec::new())
            } else if seq.prefilled < seq.prompt.len() {
                // One prompt chunk per step (the oldest prefilling sequence), so that the
                // others keep decoding between chunks of a long prompt.
                if prefilled_one {
                    keep.push(seq);
                    continue;
                }
                prefilled_one = true;
                self.prefill_step(&mut seq)
            } else {
                decode.push(seq);
                continue;
            };
            keep_unless_done(seq, id, result, &mut keep, &mut out);
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

    fn cancel(&mut self, id: SeqId) {
        if let Some(seq) = self.running.iter_mut().find(|s| s.id == id) {
            seq.cancelled = true;
        }
        if let Some(seq) = self.paused.iter_mut().find(|s| s.id == id) {
            // Resumes only to report its end.
            seq.cancelled = true;
        }
        self.waiting.retain(|s| s.id != id);
    }
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

/// Greedy defaults used by the CLI when no sampling flags are given.
pub fn greedy() -> SamplingParams {
    SamplingParams::default()
}
