//! Model hyper-parameters, named as in Hugging Face `config.json`.

use serde::{Deserialize, Serialize};

/// The subset of `config.json` the decoder needs; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// `llama`, `mistral`, `qwen2`, `qwen3` or `gemma3_text`.
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_context")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Bias on the q/k/v projections (Qwen2 has it without saying so in older configs).
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub bos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// MLX-community quantized checkpoints: `{"group_size": 64, "bits": 4}`.
    #[serde(default)]
    pub quantization: Option<Quantization>,
    /// Gemma 3 (see `gemma3.rs`): queries are scaled by `query_pre_attn_scalar^-0.5`.
    #[serde(default)]
    pub query_pre_attn_scalar: Option<f64>,
    /// Gemma 3: how many positions back a sliding-attention layer sees (itself included).
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Gemma 3 (older configs): every `sliding_window_pattern`-th layer attends globally.
    #[serde(default)]
    pub sliding_window_pattern: Option<usize>,
    /// Gemma 3 (newer configs): `sliding_attention` or `full_attention` per layer.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Gemma 3: the RoPE base of the sliding-attention layers (`rope_theta` is the global one).
    #[serde(default)]
    pub rope_local_base_freq: Option<f64>,
    /// Gemma 2-style `tanh` capping of the output logits (null in Gemma 3 configs).
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    /// Gemma 2-style capping of the attention scores; not supported (null in Gemma 3).
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
}

/// `rope_scaling`: how positions are stretched past the trained context. Only the fields the
/// supported kinds (`default`, `linear`, `llama3`) read; others are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// The kind (newer configs).
    #[serde(default)]
    pub rope_type: Option<String>,
    /// The kind (older configs).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<f64>,
}

impl RopeScaling {
    /// `rope_type`, else `type`, else `default`.
    pub fn kind(&self) -> &str {
        self.rope_type
            .as_deref()
            .or(self.kind.as_deref())
            .unwrap_or("default")
    }
}

/// A token id or a list of them (`eos_token_id` is either).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

/// Affine quantization parameters of an MLX checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantization {
    pub group_size: i32,
    pub bits: i32,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_context() -> usize {
    4096
}

impl ModelConfig {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// Qwen2 projects q/k/v with a bias; Llama and Mistral do not unless the config says so.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias.unwrap_or(self.model_type == "qwen2")
    }

    /// Qwen3 and Gemma 3 normalize queries and keys per head before RoPE.
    pub fn qk_norm(&self) -> bool {
        matches!(self.model_type.as_str(), "qwen3" | "gemma3_text")
    }

    /// Checks the shape arithmetic once, so the decoder can trust it.
    pub fn validate(&self) -> Result<(), String> {
        const KNOWN: [&str; 5] = ["llama", "mistral", "qwen2", "qwen3", "gemma3_text"];
        if !KNOWN.contains(&self.model_type.as_str()) {
            return Err(format!(
                "unsupported model_type {:?}; supported: {}",
                self.model_type,
                KNOWN.join(", ")
            ));
        }
        if self.num_attention_heads == 0 || self.kv_heads() == 0 {
            return Err("num_attention_heads and num_key_value_heads must be positive".into());
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if self.is_gemma3() {
            self.validate_gemma3()?;
        }
        if let Some(scaling) = &self.rope_scaling {
            let kind = scaling.kind();
            if !matches!(kind, "default" | "linear" | "llama3") {
                return Err(format!("unsupported rope_scaling type {kind:?}"));
            }
        }
        Ok(())
    }

    /// Token ids that end generation, from `eos_token_id` (an integer or a list).
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(TokenIds::One(id)) => vec![*id],
            Some(TokenIds::Many(ids)) => ids.clone(),
            None => Vec::new(),
        }
    }
}
