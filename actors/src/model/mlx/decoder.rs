//! One decoder for the Llama family and its close relatives, with per-family switches:
//! Llama/Mistral (plain), Qwen2 (q/k/v bias), Qwen3 (per-head q/k RMS norm). Tied or separate
//! output embeddings. Weights are looked up by their Hugging Face names.

use std::collections::HashMap;

use mlx_rs::error::Exception;
use mlx_rs::fast::{rms_norm, rope, scaled_dot_product_attention, ScaledDotProductAttentionMask};
use mlx_rs::nn::silu;
use mlx_rs::ops::quantized_matmul;
use mlx_rs::Array;

use super::config::ModelConfig;
use super::ffi::slice;
use super::kv_cache::KvCache;

/// Named weights, as read from safetensors or converted from GGUF.
pub type Weights = HashMap<String, Array>;

fn take(w: &mut Weights, name: &str) -> Result<Array, Exception> {
    w.remove(name)
        .ok_or_else(|| Exception::custom(format!("missing weight {name}")))
}

/// A projection `x · Wᵀ (+ b)`, dense or MLX-affine-quantized.
pub enum Linear {
    Dense {
        weight: Array,
        bias: Option<Array>,
    },
    Quantized {
        weight: Array,
        scales: Array,
        biases: Array,
        bias: Option<Array>,
        group_size: i32,
        bits: i32,
    },
}

impl Linear {
    pub fn load(w: &mut Weights, prefix: &str, with_bias: bool) -> Result<Self, Exception> {
        let bias = if with_bias {
            Some(take(w, &format!("{prefix}.bias"))?)
        } else {
            w.remove(&format!("{prefix}.bias"))
        };
        let weight = take(w, &format!("{prefix}.weight"))?;
        if let Some(scales) = w.remove(&format!("{prefix}.scales")) {
            let biases = take(w, &format!("{prefix}.biases"))?;
            let (group_size, bits) = quant_params(&weight, &scales)?;
            return Ok(Linear::Quantized {
                weight,
                scales,
                biases,
                bias,
                group_size,
                bits,
            });
        }
        Ok(Linear::Dense { weight, bias })
    }

    pub fn forward(&self, x: &Array) -> Result<Array, Exception> {
        let (y, bias) = match self {
            Linear::Dense { weight, bias } => (x.matmul(weight.t())?, bias),
            Linear::Quantized {
                weight,
                scales,
                biases,
                bias,
                group_size,
                bits,
            } => (
                quantized_matmul(x, weight, scales, biases, true, *group_size, *bits)?,
                bias,
            ),
        };
        match bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
}

/// Infers MLX's quantization parameters from packed shapes (32-bit words along the input axis).
fn quant_params(weight: &Array, scales: &Array) -> Result<(i32, i32), Exception> {
    let packed = *weight.shape().last().unwrap_or(&0);
    let groups = *scales.shape().last().unwrap_or(&0);
    if packed == 0 || groups == 0 {
        return Err(Exception::custom("malformed quantized weight"));
    }
    for bits in [4, 8, 2, 3, 6, 5] {
        let in_features = packed * 32 / bits;
        if in_features % groups == 0 {
            let group_size = in_features / groups;
            if [32, 64, 128].contains(&group_size) {
                return Ok((group_size, bits));
            }
        }
    }
    Err(Exception::custom(
        "cannot infer quantization bits/group size",
    ))
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Option<Array>,
    k_norm: Option<Array>,
    n_heads: i32,
    n_kv_heads: i32,
    head_dim: i32,
    scale: f32,
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: Array,
    post_attention_layernorm: Array,
}

/// Rotary embedding settings shared by every layer.
struct Rope {
    dims: i32,
    base: f32,
    scale: f32,
    /// Per-frequency periods for Llama 3 scaling (replaces `base`).
    freqs: Option<Array>,
}

/// The decoder stack plus embeddings and output head.
pub struct Model {
    embed_tokens: Array,
    layers: Vec<DecoderLayer>,
    norm: Array,
    lm_head: Option<Linear>,
    rope: Rope,
    eps: f32,
    pub config: ModelConfig,
}

impl Model {
    /// Builds the model from Hugging Face-named weights (consumed).
    pub fn new(config: ModelConfig, mut w: Weights) -> Result<Self, Exception> {
        config.validate().map_err(Exception::custom)?;
        let head_dim = config.head_dim() as i32;
        let bias = config.qkv_bias();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let (q_norm, k_norm) = if config.qk_norm() {
                (
                    Some(take(&mut w, &format!("{p}.self_attn.q_norm.weight"))?),
                    Some(take(&mut w, &format!("{p}.self_attn.k_norm.weight"))?),
                )
            } else {
                (None, None)
            };
            layers.push(DecoderLayer {
                self_attn: Attention {
                    q_proj: Linear::load(&mut w, &format!("{p}.self_attn.q_proj"), bias)?,
                    k_proj: Linear::load(&mut w, &format!("{p}.self_attn.k_proj"), bias)?,
                    v_proj: Linear::load(&mut w, &format!("{p}.self_attn.v_proj"), bias)?,
                    o_proj: Linear::load(&mut w, &format!("{p}.self_attn.o_proj"), false)?,
                    q_norm,
                    k_norm,
                    n_heads: config.num_attention_heads as i32,
                    n_kv_heads: config.kv_heads() as i32,
                    head_dim,
                    scale: (head_dim as f32).powf(-0.5),
                },
                mlp: Mlp {
                    gate_proj: Linear::load(&mut w, &format!("{p}.mlp.gate_proj"), false)?,
                    up_proj: Linear::load(&mut w, &format!("{p}.mlp.up_proj"), false)?,
                    down_proj: Linear::load(&mut w, &format!("{p}.mlp.down_proj"), false)?,
                },
                input_layernorm: take(&mut w, &format!("{p}.input_layernorm.weight"))?,
                post_attention_layernorm: take(
                    &mut w,
                    &format!("{p}.post_attention_layernorm.weight"),
                )?,
            });
        }
        let embed_tokens = take(&mut w, "model.embed_tokens.weight")?;
        let lm_head = if w.contains_key("lm_head.weight") && !config.tie_word_embeddings {
            Some(Linear::load(&mut w, "lm_head", false)?)
        } else {
            None
        };
        let norm = take(&mut w, "model.norm.weight")?;
        let rope = Rope::from_config(&config)?;
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
            eps: config.rms_norm_eps as f32,
            config,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Runs `tokens` (one sequence) through the model at the cache's offset, appends their keys and
    /// values to `cache`, and returns the logits of the last position, shape `[vocab]`.
    pub fn forward_last(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Array, Exception> {
        let len = tokens.len() as i32;
        let ids = Array::from_slice(tokens, &[1, len]);
        let mut h = self.embed_tokens.take_axis(&ids, 0)?;
        let pass = Pass {
            offset: cache.offset() as i32,
            rope: &self.rope,
            eps: self.eps,
        };
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, i, &pass, cache)?;
        }
        cache.advance(tokens.len());
        let d = *h.shape().last().unwrap_or(&0);
        let last = slice(&h, &[0, len - 1, 0], &[1, len, d])?;
        let last = rms_norm(&last, Some(&self.norm), self.eps)?;
        let logits = match &self.lm_head {
            Some(head) => head.forward(&last)?,
            None => last.matmul(self.embed_tokens.t())?,
        };
        // Sampling reads f32 on the host whatever the weights' dtype.
        logits.reshape(&[-1])?.as_dtype(mlx_rs::Dtype::Float32)
    }
}

impl Rope {
    fn from_config(config: &ModelConfig) -> Result<Self, Exception> {
        let dims = config.head_dim() as i32;
        let base = config.rope_theta as f32;
        let mut rope = Rope {
            dims,
            base,
            scale: 1.0,
            freqs: None,
        };
        let Some(scaling) = &config.rope_scaling else {
            return Ok(rope);
        };
        let get = |k: &str| scaling.get(k).and_then(|v| v.as_f64());
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        match kind {
            "linear" => rope.scale = 1.0 / get("factor").unwrap_or(1.0) as f32,
            "llama3" => {
                let factor = get("factor").unwrap_or(8.0);
                let low = get("low_freq_factor").unwrap_or(1.0);
                let high = get("high_freq_factor").unwrap_or(4.0);
                let original = get("original_max_position_embeddings").unwrap_or(8192.0);
                let low_wavelen = original / low;
                let high_wavelen = original / high;
                let periods: Vec<f32> = (0..dims / 2)
                    .map(|i| {
                        let freq = (base as f64).powf(2.0 * i as f64 / dims as f64);
                        let wavelen = 2.0 * std::f64::consts::PI * freq;
                        let scaled = if wavelen > low_wavelen {
                            freq * factor
                        } else if wavelen < high_wavelen {
                            freq
                        } else {
                            let smooth = (original / wavelen - low) / (high - low);
                            freq / ((1.0 - smooth) / factor + smooth)
                        };
                        scaled as f32
                    })
                    .collect();
                rope.freqs = Some(Array::from_slice(&periods, &[dims / 2]));
            }
            _ => {}
        }
        Ok(rope)
    }

    fn apply(&self, x: &Array, offset: i32) -> Result<Array, Exception> {
        match &self.freqs {
            Some(freqs) => rope(x, self.dims, false, None::<f32>, self.scale, offset, freqs),
            None => rope(
                x,
                self.dims,
                false,
                self.base,
                self.scale,
                offset,
                None::<&Array>,
            ),
        }
    }
}

/// What every layer of one forward pass shares.
struct Pass<'a> {
    /// Position of the first new token (the cache's length before this pass).
    offset: i32,
    rope: &'a Rope,
    eps: f32,
}

impl DecoderLayer {
    fn forward(
        &self,
        x: &Array,
        index: usize,
        pass: &Pass,
        cache: &mut KvCache,
    ) -> Result<Array, Exception> {
        let normed = rms_norm(x, Some(&self.input_layernorm), pass.eps)?;
        let attn = self.self_attn.forward(&normed, index, pass, cache)?;
        let h = x.add(&attn)?;
        let normed = rms_norm(&h, Some(&self.post_attention_layernorm), pass.eps)?;
        h.add(self.mlp.forward(&normed)?)
    }
}

impl Attention {
    fn forward(
        &self,
        x: &Array,
        index: usize,
        pass: &Pass,
        cache: &mut KvCache,
    ) -> Result<Array, Exception> {
        let Pass { offset, rope, eps } = *pass;
        let len = x.shape()[1];
        let heads = |t: Array, n: i32| -> Result<Array, Exception> {
            t.reshape(&[1, len, n, self.head_dim])?
                .transpose_axes(&[0, 2, 1, 3])
        };
        let mut q = heads(self.q_proj.forward(x)?, self.n_heads)?;
        let mut k = heads(self.k_proj.forward(x)?, self.n_kv_heads)?;
        let v = heads(self.v_proj.forward(x)?, self.n_kv_heads)?;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = rms_norm(&q, Some(qn), eps)?;
            k = rms_norm(&k, Some(kn), eps)?;
        }
        let q = rope.apply(&q, offset)?;
        let k = rope.apply(&k, offset)?;
        let (keys, values) = cache.update(index, &k, &v)?;
        // A causal mask only matters when several queries attend at once; MLX aligns it to the
        // end of the keys, which is right for a prefill chunk that follows cached positions.
        let mask = (len > 1).then_some(ScaledDotProductAttentionMask::Causal);
        let out = scaled_dot_product_attention(&q, &keys, &values, self.scale, mask, None)?;
        let out =
            out.transpose_axes(&[0, 2, 1, 3])?
                .reshape(&[1, len, self.n_heads * self.head_dim])?;
        self.o_proj.forward(&out)
    }
}

impl Mlp {
    fn forward(&self, x: &Array) -> Result<Array, Exception> {
        let gate = silu(self.gate_proj.forward(x)?)?;
        let up = self.up_proj.forward(x)?;
        self.down_proj.forward(&gate.multiply(&up)?)
    }
}
