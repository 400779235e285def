//! Building the decoder from Hugging Face-named weights.

use mlx_rs::error::Exception;

use super::super::config::ModelConfig;
use super::super::gemma3;
use super::super::gguf_quant::Embedding;
use super::super::linear::{take, Linear, Projections};
use super::super::ops::Ops;
use super::super::rope::Rope;
use super::super::weights::Weights;
use super::{Attention, DecoderLayer, Mlp, Model};

impl Model {
    /// Builds the model from Hugging Face-named weights (consumed).
    pub fn new(config: ModelConfig, w: Weights) -> Result<Self, Exception> {
        Self::with_ops(config, w, Ops::default())
    }

    pub fn with_ops(config: ModelConfig, mut w: Weights, ops: Ops) -> Result<Self, Exception> {
        let group = |parts| {
            if ops.fuse_projections {
                Projections::new(parts)
            } else {
                Ok(Projections::Separate(parts))
            }
        };
        config.validate().map_err(Exception::custom)?;
        let gemma = config.is_gemma3();
        if gemma {
            gemma3::shift_norms(&mut w)?;
        }
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
                    qkv: group(
                        ["q_proj", "k_proj", "v_proj"]
                            .iter()
                            .map(|n| Linear::load(&mut w, &format!("{p}.self_attn.{n}"), bias))
                            .collect::<Result<_, _>>()?,
                    )?,
                    o_proj: Linear::load(&mut w, &format!("{p}.self_attn.o_proj"), false)?,
                    q_norm,
                    k_norm,
                    n_heads: config.num_attention_heads as i32,
                    n_kv_heads: config.kv_heads() as i32,
                    head_dim,
                    scale: config.attention_scale(),
                    sliding: config.is_sliding_layer(i),
                },
                mlp: Mlp {
                    gate_up: group(vec![
                        Linear::load(&mut w, &format!("{p}.mlp.gate_proj"), false)?,
                        Linear::load(&mut w, &format!("{p}.mlp.up_proj"), false)?,
                    ])?,
                    down_proj: Linear::load(&mut w, &format!("{p}.mlp.down_proj"), false)?,
                    gelu: gemma,
                },
                input_layernorm: take(&mut w, &format!("{p}.input_layernorm.weight"))?,
                post_attention_layernorm: take(
                    &mut w,
                    &format!("{p}.post_attention_layernorm.weight"),
                )?,
                pre_feedforward_layernorm: gemma
                    .then(|| take(&mut w, &format!("{p}.pre_feedforward_layernorm.weight")))
                    .transpose()?,
                post_feedforward_layernorm: gemma
                    .then(|| take(&mut w, &format!("{p}.post_feedforward_layernorm.weight")))
                    .transpose()?,
            });
        }
        let embed_tokens = Embedding::take(&mut w)?;
        let lm_head = if w.contains_key("lm_head.weight") && !config.tie_word_embeddings {
            Some(Linear::load(&mut w, "lm_head", false)?)
        } else {
            None
        };
        let norm = take(&mut w, "model.norm.weight")?;
        let rope = Rope::from_config(&config)?;
        let window = config.attention_window().map(|w| w as i32);
        let local_rope = window.map(|_| Rope {
            dims: head_dim,
            base: config.local_rope_base() as f32,
            scale: 1.0,
            freqs: None,
        });
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
            local_rope,
            window,
            embed_scale: gemma.then(|| (config.hidden_size as f32).sqrt()),
            final_logit_softcapping: config.final_logit_softcapping.map(|c| c as f32),
            eps: config.rms_norm_eps as f32,
            ops,
            config,
        })
    }
}
