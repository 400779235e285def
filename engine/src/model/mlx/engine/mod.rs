//! `MlxEngine`: the real `Engine`. Renders and tokenizes prompts, prefills in chunks, decodes one
//! token per step with one MLX evaluation each, samples on the host, assembles text (UTF-8-safe,
//! stop strings) and reuses KV state across requests through the prefix cache. A sequence with
//! a constraint carries its own grammar matcher (`crate::guided`): its logits are masked before
//! each sample, in the batched path too, and it ends once the grammar is complete. Constraints
//! play no part in prefix reuse: the KV state of a prompt is the same whatever follows it.

use std::sync::Arc;
use std::time::Instant;

use tokenizers::Tokenizer;

use mlx_rs::Dtype;

mod bench;
pub use bench::RESUMED;
mod prompts;
mod schedule;
mod steps;

use super::config::ModelConfig;
use super::decoder::Model;
use super::device::{self, DeviceChoice};
use super::kv_cache::KvCache;
use super::loader::{self, dtype_name, LoadedModel, ModelSource};
use super::ops::Ops;
use super::prefix_cache::{PrefixCache, PrefixStats};
use super::slot_kv::SlotKv;
use crate::engine::{
    completion_budget, EngineError, EngineInfo, GenerateRequest, Prompt, PromptEncoder,
    SamplingParams, SeqId,
};
use crate::guided::{self, Guide, GuideFactory};
use crate::model::detok::IncrementalDecoder;
use crate::model::sampling::Sampler;
use crate::model::stops::StopMatcher;
use crate::model::template::ChatTemplate;
use crate::model::tokenizer::TokenizerBundle;
use crate::reasoning::ThinkingTracker;
use prompts::Prompts;

/// How to load and run a model.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub source: ModelSource,
    /// Served model id.
    pub model_id: String,
    /// `None` (`auto`): on CPU a GGUF's Q4_0/Q4_1/Q5_0/Q8_0/Q4_K/Q6_K matrices stay quantized
    /// and the rest is float32 (`MLX_SERVE_GGUF_BLOCKS=0`: all float32, see
    /// [`gguf_blocks_by_default`]); bfloat16 on a GPU. A named dtype dequantizes everything.
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
    /// The token sampled last (or the prompt's last token), not yet fed to the model.
    pending: Option<u32>,
    /// The prompt is in but no token was sampled yet: the first decode step that feeds its
    /// last token starts the reply.
    awaiting_start: bool,
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
    /// Where the reasoning stands and what is left of its budget, when the server separates it.
    thinking: Option<ThinkingTracker>,
}

pub struct MlxEngine {
    model: Model,
    /// Tokenizer and chat templates, shared with the front (see [`Engine::encoder`]).
    prompts: Arc<Prompts>,
    /// Shared with every sequence's incremental decoder.
    shared_tokenizer: Arc<Tokenizer>,
    eos: Vec<u32>,
    info: EngineInfo,
    context_length: usize,
    prefill_chunk: usize,
    max_batch: usize,
    /// Weight and KV dtype.
    dtype: Dtype,
    /// Admitted sequences, oldest first: at most one of them prefills per step, all of them with
    /// a pending token decode together.
    /// Paused and waiting sequences belong to the scheduler in front (see [`Engine::pause`]).
    running: Vec<Running>,
    last_batch: usize,
    preemptions: u64,
    batch_hist: [u64; 8],
    /// KV state of the decoding sequences (a sequence moves here from its own cache once its
    /// prompt is in).
    slots: SlotKv,
    prefix: PrefixCache,
    /// Compiles request constraints against this vocabulary; `Err` says why this tokenizer
    /// cannot be constrained (requests with a constraint then fail with that message).
    guides: Result<GuideFactory, String>,
}

/// Whether `dtype = "auto"` keeps GGUF blocks on CPU: yes, unless `MLX_SERVE_GGUF_BLOCKS=0`.
/// With the integer kernels both catalog models decode about twice as fast as from float32 on
/// the benchmark box, in a fifth of the memory (docs/benchmarks.md, issue #15).
pub fn gguf_blocks_by_default() -> bool {
    std::env::var("MLX_SERVE_GGUF_BLOCKS").as_deref() != Ok("0")
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
        let gguf_blocks = backend == "cpu" && options.dtype.is_none() && gguf_blocks_by_default();
        let LoadedModel {
            config,
            weights,
            tokenizer,
            ..
        } = loader::load_with(&options.source, dtype, keep_quantized, gguf_blocks)
            .map_err(EngineError::InvalidRequest)?;
        let weight_bytes: usize = weights.values().map(|a| a.nbytes()).sum();
        let kept = weights
            .keys()
            .filter(|k| k.ends_with(super::gguf_quant::TYPE_SUFFIX))
            .count();
        let resident = super::gguf_quant::resident_dtype(&weights, dtype_name(dtype));
        tracing::info!(
            quantized_matrices = kept,
            weight_bytes,
            "weights loaded ({})",
            if kept > 0 {
                "GGUF blocks kept for the CPU kernels, the rest float32"
            } else {
                "dequantized"
            }
        );
        let ops = Ops::for_backend(backend == "cpu")
            .without(&std::env::var("MLX_SERVE_STOCK_OPS").unwrap_or_default())
            .map_err(EngineError::InvalidRequest)?;
        let model = Model::with_ops(config.clone(), weights, ops).map_err(internal)?;
        let bos = tokenizer.bos_token.clone();
        let eos_text = tokenizer.eos_token.clone();
        let template = match tokenizer.template_for(false) {
            Some(src) => ChatTemplate::new(src, bos.clone(), eos_text.clone())
                .map_err(|e| EngineError::InvalidRequest(format!("chat template: {e}")))?,
            None => ChatTemplate::fallback_for(&config.model_type, bos.clone(), eos_text.clone()),
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
            dtype: resident,
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
            prompts: Arc::new(Prompts::new(
                tokenizer,
                template,
                tool_template,
                context_length,
            )),
            shared_tokenizer,
            eos,
            info,
            context_length,
            prefill_chunk: options.prefill_chunk.max(1),
            max_batch: options.max_batch.max(1),
            dtype,
            running: Vec::new(),
            last_batch: 0,
            preemptions: 0,
            batch_hist: [0; 8],
            slots: SlotKv::new(
                config.num_hidden_layers,
                config.kv_heads(),
                config.head_dim(),
                dtype,
            )
            .with_max_slots(options.max_batch.max(1)),
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
        &self.prompts.tokenizer
    }

    /// Tokens of a prompt as the engine would run it.
    pub fn tokenize_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        self.tokenize(prompt)
    }

    pub fn prefix_stats(&self) -> PrefixStats {
        self.prefix.stats()
    }

    fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        self.prompts.encode(prompt).map(|e| e.tokens)
    }

    fn admit(&mut self, id: SeqId, request: GenerateRequest) -> Result<Running, EngineError> {
        let encoded = match &request.encoded {
            Some(e) => e.clone(),
            None => Arc::new(self.prompts.encode(&request.prompt)?),
        };
        let prompt = encoded.tokens.clone();
        let max_tokens = completion_budget(self.context_length, prompt.len(), request.max_tokens)?;
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
        let thinking = match &request.reasoning {
            Some(spec) => {
                let mut spec = spec.clone();
                if guide.is_some() {
                    // Forced closing tokens could break the grammar: no budget under a constraint.
                    spec.budget = None;
                }
                ThinkingTracker::new(&spec, &encoded.tail)
            }
            None => None,
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
            awaiting_start: false,
            max_tokens,
            logprobs: request.logprobs,
            sampler,
            guide,
            detok: IncrementalDecoder::new(self.shared_tokenizer.clone()),
            stops: StopMatcher::new(&request.stop),
            started: Instant::now(),
            first_token_at: None,
            cancelled: false,
            thinking,
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

/// Greedy defaults used by the CLI when no sampling flags are given.
pub fn greedy() -> SamplingParams {
    SamplingParams::default()
}
