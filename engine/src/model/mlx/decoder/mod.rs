//! One decoder for the Llama family and its close relatives, with per-family switches:
//! Llama/Mistral (plain), Qwen2 (q/k/v bias), Qwen3 (per-head q/k RMS norm), Gemma 3 (sliding
//! window layers, sandwich norms, GeGLU: see `gemma3`). Tied or separate output embeddings.
//! Weights are looked up by their Hugging Face names.

use std::cell::RefCell;

use mlx_rs::error::Exception;
use mlx_rs::ops::concatenate;
use mlx_rs::Array;

use super::attention::{attend, prefill_attention, CausalMask};
use super::config::ModelConfig;
use super::cpu_ops::{silu, softmax_last};
use super::ffi::slice;
use super::gemma3::{self, SlotWindow};
use super::gguf_quant::Embedding;
use super::host_nodes::{self, rms_norm as norm};
use super::kv_cache::KvCache;
use super::linear::{Linear, Projections};
use super::ops::Ops;
use super::profile::Profile;
use super::rope::Rope;
use super::slot_attention::slot_attention;
use super::slot_kv::{SlotKv, SlotStep};
mod load;

struct Attention {
    /// q_proj, k_proj and v_proj of the checkpoint.
    qkv: Projections,
    o_proj: Linear,
    q_norm: Option<Array>,
    k_norm: Option<Array>,
    n_heads: i32,
    n_kv_heads: i32,
    head_dim: i32,
    scale: f32,
    /// A sliding-window layer: its own RoPE base, and only the window's keys.
    sliding: bool,
}

struct Mlp {
    /// gate_proj and up_proj of the checkpoint.
    gate_up: Projections,
    down_proj: Linear,
    /// GeGLU (tanh-approximated GELU, Gemma) instead of SwiGLU.
    gelu: bool,
}

struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: Array,
    post_attention_layernorm: Array,
    /// Gemma's sandwich norms: with these, `post_attention_layernorm` norms the attention output
    /// before the residual add, and these norm the MLP's input and output.
    pre_feedforward_layernorm: Option<Array>,
    post_feedforward_layernorm: Option<Array>,
}

/// The decoder stack plus embeddings and output head.
pub struct Model {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: Array,
    lm_head: Option<Linear>,
    rope: Rope,
    /// The sliding layers' RoPE (Gemma 3).
    local_rope: Option<Rope>,
    /// Window of the sliding layers.
    window: Option<i32>,
    /// Gemma scales embeddings by `sqrt(hidden_size)`.
    embed_scale: Option<f32>,
    final_logit_softcapping: Option<f32>,
    eps: f32,
    ops: Ops,
    pub config: ModelConfig,
}

impl Model {
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Runs `tokens` (one sequence) through the model at the cache's offset, appends their keys and
    /// values to `cache`, and returns the logits of the last position, shape `[vocab]`.
    pub fn forward_last(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Array, Exception> {
        self.forward_inner(tokens, cache, None)
    }

    /// `forward_last`, evaluating after every group of operations and charging its time to
    /// `profile` (see [`Profile`]).
    pub fn forward_profiled(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        profile: &RefCell<Profile>,
    ) -> Result<Array, Exception> {
        profile.borrow_mut().restart();
        let logits = self.forward_inner(tokens, cache, Some(profile))?;
        profile.borrow_mut().mark("lm_head", &[&logits])?;
        Ok(logits)
    }

    fn forward_inner(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        profile: Option<&RefCell<Profile>>,
    ) -> Result<Array, Exception> {
        let h = self.forward_parts(&mut [(tokens, cache)], profile)?;
        let (len, d) = (tokens.len() as i32, *h.shape().last().unwrap_or(&0));
        let last = slice(&h, &[0, len - 1, 0], &[1, len, d])?;
        self.logits(&last)?.reshape(&[-1])
    }

    /// Prompt chunks of several sequences in one pass: `parts[i].0` runs at `parts[i].1`'s offset
    /// and its keys and values are appended there. The projections and the MLP run once over
    /// every part's rows (a pass's fixed cost, reading the weights and building the graph, is
    /// paid once); attention runs per part, over its own cache. A part's rows compute as they
    /// would alone as long as each part has two or more tokens (one-token passes take the decode
    /// kernels). The caches are left to evaluate (see [`KvCache::arrays`]).
    pub fn forward_chunks(&self, parts: &mut [(&[u32], &mut KvCache)]) -> Result<(), Exception> {
        if parts.len() > 1 && parts.iter().any(|(t, _)| t.len() < 2) {
            return Err(Exception::custom(
                "batched prompt chunks need two or more tokens each",
            ));
        }
        self.forward_parts(parts, None).map(drop)
    }

    /// The hidden states `[1, rows, hidden]` of `parts`' tokens, one after another.
    fn forward_parts(
        &self,
        parts: &mut [(&[u32], &mut KvCache)],
        profile: Option<&RefCell<Profile>>,
    ) -> Result<Array, Exception> {
        let tokens: Vec<u32> = parts.iter().flat_map(|(t, _)| t.iter().copied()).collect();
        let rows = tokens.len() as i32;
        if rows == 0 {
            return Err(Exception::custom("a forward pass without tokens"));
        }
        let ids = Array::from_slice(&tokens, &[1, rows]);
        let mut h = self.embed(&ids)?;
        let passes = parts
            .iter()
            .map(|(t, cache)| self.chunk_pass(t.len() as i32, cache.offset() as i32, &h, profile))
            .collect::<Result<Vec<_>, _>>()?;
        passes[0].mark("embed+mask", &[&h])?;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, &passes[0], &mut |a, n| {
                a.forward_parts(n, i, &passes, parts)
            })?;
        }
        for (t, cache) in parts.iter_mut() {
            cache.advance(t.len());
        }
        Ok(h)
    }

    /// What the layers share for one sequence's `len` new positions at `offset`.
    fn chunk_pass<'a>(
        &'a self,
        len: i32,
        offset: i32,
        h: &Array,
        profile: Option<&'a RefCell<Profile>>,
    ) -> Result<Pass<'a>, Exception> {
        // The additive matrix serves only the composed attention path.
        let composed = self.ops.grouped_attention && !self.ops.host_kernels_for(len, h.dtype());
        Ok(Pass {
            offset,
            rope: &self.rope,
            local_rope: self.local_rope.as_ref(),
            window: self.window,
            eps: self.eps,
            mask: CausalMask::new(len, offset, h.dtype(), composed)?,
            // The prefill node masks by position itself.
            window_mask: match self.window {
                Some(w) if !self.ops.prefill_attention_for(len, h.dtype()) => {
                    gemma3::pass_window_mask(len, offset, w, h.dtype())?
                }
                _ => None,
            },
            slot_window: None,
            slot_attention: false,
            ops: self.ops,
            profile,
        })
    }

    /// One decode step for every sequence in `kv`: `tokens[i]` is the next token of the sequence
    /// in slot `i`. Returns float32 logits `[batch, vocab]`.
    pub fn forward_batch(&self, tokens: &[u32], kv: &mut SlotKv) -> Result<Array, Exception> {
        self.forward_batch_profiled(tokens, kv, None)
    }

    /// `forward_batch`, optionally charging each group of operations to `profile`.
    pub fn forward_batch_profiled(
        &self,
        tokens: &[u32],
        kv: &mut SlotKv,
        profile: Option<&RefCell<Profile>>,
    ) -> Result<Array, Exception> {
        if tokens.is_empty() || tokens.len() != kv.len() {
            return Err(Exception::custom("decode batch: one token per slot"));
        }
        let batch = tokens.len() as i32;
        let ids = Array::from_slice(tokens, &[batch, 1]);
        let mut h = self.embed(&ids)?;
        let step = kv.step()?;
        let slot_attention = self.ops.host_kernels && h.dtype() == mlx_rs::Dtype::Float32;
        // Only MLX's masked path needs the window as a mask; `slot_attention` takes its length.
        let slot_window = match self.window {
            Some(w) if !slot_attention => Some(SlotWindow::new(kv, step.max_len, w, h.dtype())?),
            _ => None,
        };
        let pass = Pass {
            offset: 0,
            rope: &self.rope,
            local_rope: self.local_rope.as_ref(),
            window: self.window,
            eps: self.eps,
            mask: None,
            window_mask: None,
            slot_window,
            slot_attention,
            ops: self.ops,
            profile,
        };
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, &pass, &mut |a, n| {
                a.forward_slots(n, i, &pass, &step, kv)
            })?;
        }
        kv.advance();
        self.logits(&h)?.reshape(&[batch, -1])
    }

    fn embed(&self, ids: &Array) -> Result<Array, Exception> {
        let h = self.embed_tokens.lookup(ids)?;
        match self.embed_scale {
            // In the weights' dtype, as Hugging Face rounds the factor.
            Some(s) => h.multiply(Array::from_f32(s).as_dtype(h.dtype())?),
            None => Ok(h),
        }
    }

    /// Final norm and output head; float32 (sampling reads it on the host whatever the dtype).
    fn logits(&self, h: &Array) -> Result<Array, Exception> {
        let h = norm(h, &self.norm, self.eps, self.ops.host_nodes)?;
        // One row per position of the batch, as one matrix (see `Linear::forward`).
        let h = h.reshape(&[-1, *h.shape().last().unwrap_or(&0)])?;
        let logits = match &self.lm_head {
            Some(head) => head.forward(&h)?,
            None => self.embed_tokens.tied_head(&h)?,
        };
        let logits = logits.as_dtype(mlx_rs::Dtype::Float32)?;
        match self.final_logit_softcapping {
            Some(cap) => {
                let cap = Array::from_f32(cap);
                mlx_rs::ops::tanh(&logits.divide(&cap)?)?.multiply(&cap)
            }
            None => Ok(logits),
        }
    }
}

/// What every layer of one forward pass shares.
struct Pass<'a> {
    /// Position of the first new token (the cache's length before this pass).
    offset: i32,
    rope: &'a Rope,
    local_rope: Option<&'a Rope>,
    window: Option<i32>,
    eps: f32,
    /// Causal mask for this pass's queries (none for a single token).
    mask: Option<CausalMask>,
    /// The sliding layers' mask for this pass's queries (none for a single token).
    window_mask: Option<CausalMask>,
    /// The sliding layers' keys and mask in a decode step of the slots.
    slot_window: Option<SlotWindow>,
    /// Decode attention through `slot_attention` (CPU, float32), else MLX's masked product.
    slot_attention: bool,
    ops: Ops,
    profile: Option<&'a RefCell<Profile>>,
}

impl Pass<'_> {
    /// Whether this pass runs the host kernels: several positions at once, in float32.
    fn host_kernels(&self, x: &Array) -> bool {
        self.ops.host_kernels_for(x.shape()[1], x.dtype())
    }

    /// Profiling only: evaluate `arrays` and charge the time since the last mark to `group`.
    fn mark(&self, group: &'static str, arrays: &[&Array]) -> Result<(), Exception> {
        match self.profile {
            Some(p) => p.borrow_mut().mark(group, arrays),
            None => Ok(()),
        }
    }
}

/// Computes a layer's attention output for the normed input (one sequence, or a decode batch).
type AttentionFn<'a> = dyn FnMut(&Attention, &Array) -> Result<Array, Exception> + 'a;

impl DecoderLayer {
    fn forward(&self, x: &Array, pass: &Pass, attn: &mut AttentionFn) -> Result<Array, Exception> {
        let normed = norm(x, &self.input_layernorm, pass.eps, pass.ops.host_nodes)?;
        pass.mark("rms_norm", &[&normed])?;
        let attn = attn(&self.self_attn, &normed)?;
        if let (Some(pre), Some(post)) = (
            &self.pre_feedforward_layernorm,
            &self.post_feedforward_layernorm,
        ) {
            let attn = norm(
                &attn,
                &self.post_attention_layernorm,
                pass.eps,
                pass.ops.host_nodes,
            )?;
            let h = x.add(&attn)?;
            let normed = norm(&h, pre, pass.eps, pass.ops.host_nodes)?;
            pass.mark("rms_norm", &[&normed])?;
            let mlp = norm(
                &self.mlp.forward(&normed, pass)?,
                post,
                pass.eps,
                pass.ops.host_nodes,
            )?;
            let out = h.add(&mlp)?;
            pass.mark("residual", &[&out])?;
            return Ok(out);
        }
        let h = x.add(&attn)?;
        let normed = norm(
            &h,
            &self.post_attention_layernorm,
            pass.eps,
            pass.ops.host_nodes,
        )?;
        pass.mark("rms_norm", &[&normed])?;
        let out = h.add(self.mlp.forward(&normed, pass)?)?;
        pass.mark("residual", &[&out])?;
        Ok(out)
    }
}

impl Attention {
    fn rope<'a>(&self, pass: &Pass<'a>) -> &'a Rope {
        match (self.sliding, pass.local_rope) {
            (true, Some(local)) => local,
            _ => pass.rope,
        }
    }

    /// q, k and v for `x: [batch, len, hidden]`.
    fn project(&self, x: &Array, pass: &Pass) -> Result<[Array; 3], Exception> {
        let qkv: [Array; 3] = self
            .qkv
            .forward(x)?
            .try_into()
            .map_err(|_| Exception::custom("q/k/v projection count"))?;
        pass.mark("qkv_proj", &[&qkv[0], &qkv[1], &qkv[2]])?;
        Ok(qkv)
    }

    /// Prompt chunks (`x: [1, rows, hidden]`, the parts' rows in order): projections and the
    /// output projection over all rows, attention per part over its own cache.
    fn forward_parts(
        &self,
        x: &Array,
        index: usize,
        passes: &[Pass],
        parts: &mut [(&[u32], &mut KvCache)],
    ) -> Result<Array, Exception> {
        let [q, k, v] = self.project(x, &passes[0])?;
        let mut outs = Vec::with_capacity(parts.len());
        let mut at = 0;
        for ((tokens, cache), pass) in parts.iter_mut().zip(passes) {
            let len = tokens.len() as i32;
            let rows = |t: &Array| -> Result<Array, Exception> {
                if len == x.shape()[1] {
                    return Ok(t.clone());
                }
                let f = *t.shape().last().unwrap_or(&0);
                slice(t, &[0, at, 0], &[1, at + len, f])
            };
            let host = pass.ops.host_kernels_for(len, x.dtype());
            outs.push(self.attend_one(
                &rows(&q)?,
                &rows(&k)?,
                &rows(&v)?,
                index,
                pass,
                cache,
                host,
            )?);
            at += len;
        }
        let out = match outs.len() {
            1 => outs.remove(0),
            _ => concatenate(&outs.iter().collect::<Vec<_>>(), 1)?,
        };
        let out = self.o_proj.forward(&out)?;
        passes[0].mark("o_proj", &[&out])?;
        Ok(out)
    }

    /// A decode batch: row `i` of `x: [batch, 1, hidden]` is the next token of the sequence in
    /// slot `i` of `kv`. The projections run once for the whole batch (the weights are read once
    /// instead of once per sequence: decoding is bound by reading them), and so does attention:
    /// one scatter writes every new key and value at its sequence's position, one product per
    /// side covers every sequence's keys, positions past each one's length masked.
    fn forward_slots(
        &self,
        x: &Array,
        index: usize,
        pass: &Pass,
        step: &SlotStep,
        kv: &mut SlotKv,
    ) -> Result<Array, Exception> {
        let [q, k, v] = self.project(x, pass)?;
        let (b, d) = (step.batch, self.head_dim);
        let heads = |t: &Array, n: i32| -> Result<Array, Exception> {
            t.reshape(&[b, 1, n, d])?.transpose_axes(&[0, 2, 1, 3])
        };
        let mut q = heads(&q, self.n_heads)?;
        let mut k = heads(&k, self.n_kv_heads)?;
        let v = heads(&v, self.n_kv_heads)?;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = norm(&q, qn, pass.eps, pass.ops.host_nodes)?;
            k = norm(&k, kn, pass.eps, pass.ops.host_nodes)?;
        }
        let rope = self.rope(pass);
        let q = rope.apply_rows(&q, &step.positions, pass.ops.host_nodes)?;
        let k = rope.apply_rows(&k, &step.positions, pass.ops.host_nodes)?;
        pass.mark("rope", &[&q, &k, &v])?;
        let (keys, values) = kv.update(index, step, &k, &v)?;
        if pass.slot_attention {
            // Each sequence over its own keys only: the same bits alone or batched.
            let (all_keys, all_values) = kv.buffers(index);
            let q = q.reshape(&[b, self.n_heads, d])?;
            let window = pass.window.filter(|_| self.sliding);
            let out = slot_attention(
                &q,
                all_keys,
                all_values,
                &step.positions,
                self.scale,
                window,
            )?
            .reshape(&[b, 1, self.n_heads * d])?;
            pass.mark("attention", &[&out])?;
            let out = self.o_proj.forward(&out)?;
            pass.mark("o_proj", &[&out])?;
            return Ok(out);
        }
        let (keys, values, mask) = match (&pass.slot_window, self.sliding) {
            (Some(w), true) => (w.keys(&keys)?, w.keys(&values)?, &w.mask),
            _ => (keys, values, &step.mask),
        };
        pass.mark("kv_cache", &[&keys, &values])?;
        // Query heads that share a key/value head stacked: [B, kv_heads, group, d].
        let group = self.n_heads / self.n_kv_heads;
        let q = q
            .multiply(Array::from_f32(self.scale).as_dtype(q.dtype())?)?
            .reshape(&[b, self.n_kv_heads, group, d])?;
        let scores = q.matmul(keys.swap_axes(-1, -2)?)?.add(mask)?;
        let probs = softmax_last(&scores, pass.ops.power_exp)?;
        let out = probs.matmul(&values)?.reshape(&[b, 1, self.n_heads * d])?;
        pass.mark("attention", &[&out])?;
        let out = self.o_proj.forward(&out)?;
        pass.mark("o_proj", &[&out])?;
        Ok(out)
    }

    /// Attention of one sequence's new positions (`q/k/v: [1, len, features]`) over its cache,
    /// which gains their keys and values; returns `[1, len, heads·head_dim]`.
    #[allow(clippy::too_many_arguments)]
    fn attend_one(
        &self,
        q: &Array,
        k: &Array,
        v: &Array,
        index: usize,
        pass: &Pass,
        cache: &mut KvCache,
        host_kernels: bool,
    ) -> Result<Array, Exception> {
        let (offset, rope, eps) = (pass.offset, self.rope(pass), pass.eps);
        let len = q.shape()[1];
        let heads = |t: &Array, n: i32| -> Result<Array, Exception> {
            t.reshape(&[1, len, n, self.head_dim])?
                .transpose_axes(&[0, 2, 1, 3])
        };
        let mut q = heads(q, self.n_heads)?;
        let mut k = heads(k, self.n_kv_heads)?;
        let v = heads(v, self.n_kv_heads)?;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = norm(&q, qn, eps, pass.ops.host_nodes)?;
            k = norm(&k, kn, eps, pass.ops.host_nodes)?;
        }
        let q = rope.apply(&q, offset, pass.ops.host_nodes)?;
        let k = rope.apply(&k, offset, pass.ops.host_nodes)?;
        pass.mark("rope", &[&q, &k, &v])?;
        let (keys, values) = cache.update(index, &k, &v)?;
        let (keys, values, mask) = match (pass.window, self.sliding) {
            (Some(w), true) => (
                gemma3::window_keys(&keys, offset, w)?,
                gemma3::window_keys(&values, offset, w)?,
                pass.window_mask.as_ref(),
            ),
            _ => (keys, values, pass.mask.as_ref()),
        };
        pass.mark("kv_cache", &[&keys, &values])?;
        if pass.ops.prefill_attention_for(len, q.dtype()) {
            let window = pass.window.filter(|_| self.sliding);
            let out = prefill_attention(&q, &keys, &values, self.scale, window)?;
            pass.mark("attention", &[&out])?;
            return Ok(out);
        }
        let out = attend(
            &q,
            &keys,
            &values,
            self.scale,
            mask,
            pass.ops,
            host_kernels,
            &|group, arrays| pass.mark(group, arrays),
        )?;
        let out =
            out.transpose_axes(&[0, 2, 1, 3])?
                .reshape(&[1, len, self.n_heads * self.head_dim])?;
        pass.mark("attention", &[&out])?;
        Ok(out)
    }
}

impl Mlp {
    fn forward(&self, x: &Array, pass: &Pass) -> Result<Array, Exception> {
        let act = match &self.gate_up {
            Projections::Fused { linear, .. } if pass.ops.host_glu_for(x.shape()[1], x.dtype()) => {
                let gate_up = linear.forward(x)?;
                pass.mark("gate_up_proj", &[&gate_up])?;
                host_nodes::glu(&gate_up, self.gelu, pass.host_kernels(x))?
            }
            _ => {
                let gate_up = self.gate_up.forward(x)?;
                let [gate, up] = gate_up.as_slice() else {
                    return Err(Exception::custom("gate/up projection count"));
                };
                pass.mark("gate_up_proj", &[gate, up])?;
                match self.gelu {
                    true => gemma3::gelu_tanh(gate, pass.ops.power_exp)?.multiply(up)?,
                    false => silu(gate, pass.ops.power_exp)?.multiply(up)?,
                }
            }
        };
        pass.mark("silu*up", &[&act])?;
        let out = self.down_proj.forward(&act)?;
        pass.mark("down_proj", &[&out])?;
        Ok(out)
    }
}
