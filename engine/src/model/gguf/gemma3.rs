//! Gemma 3 GGUF files (`general.architecture = gemma3`) in Hugging Face terms.
//!
//! llama.cpp's converter writes Gemma 3 differently from the Llama family:
//! - tensor names: `ffn_norm` is the *pre*-feed-forward norm and the sandwich norms have names of
//!   their own (`post_attention_norm`, `post_ffw_norm`);
//! - every RMSNorm weight is stored with Gemma's `+1` already added (the checkpoint's `weight`
//!   becomes `1 + weight`; checked on gemma-3-270m: only the shifted reading gives coherent text,
//!   `scripts/gemma3_logits.py`), which [`gguf_norm_to_hf`] undoes so the weights are the
//!   checkpoint's;
//! - some hyper-parameters are not stored at all and llama.cpp hard-codes them for the
//!   architecture: every 6th layer global, RoPE base 10000 for the sliding layers, queries
//!   scaled by `head_dim^-0.5` (by `(hidden_size / heads)^-0.5` for the 62-layer 27B model).
//!
//! The Q/K rows are in Hugging Face order (llama.cpp runs Gemma with the NeoX-style RoPE).

use serde_json::{json, Map, Value};

use super::hf::hf_tensor_name;
use super::{GgufError, GgufFile};

/// llama.cpp's fixed settings for the architecture (`llama-model.cpp`, `LLM_ARCH_GEMMA3`).
const SLIDING_WINDOW_PATTERN: u64 = 6;
const ROPE_LOCAL_BASE_FREQ: f64 = 10_000.0;
const LAYERS_27B: u64 = 62;

/// Hugging Face name of a tensor of a Gemma 3 GGUF.
pub fn hf_tensor_name_gemma3(gguf_name: &str) -> Option<String> {
    let renamed = [
        (".post_attention_norm.", ".post_attention_layernorm."),
        (".ffn_norm.", ".pre_feedforward_layernorm."),
        (".post_ffw_norm.", ".post_feedforward_layernorm."),
    ];
    for (gguf, hf) in renamed {
        if let Some((stem, suffix)) = gguf_name.split_once(gguf) {
            let layer: usize = stem.strip_prefix("blk.")?.parse().ok()?;
            return Some(format!("model.layers.{layer}{hf}{suffix}"));
        }
    }
    hf_tensor_name(gguf_name)
}

/// Hugging Face name of a tensor of a GGUF of `architecture`.
pub fn hf_tensor_name_for(architecture: &str, gguf_name: &str) -> Option<String> {
    match architecture {
        "gemma3" => hf_tensor_name_gemma3(gguf_name),
        _ => hf_tensor_name(gguf_name),
    }
}

/// Turns a Gemma 3 GGUF's RMSNorm weight (`1 + w`) back into the checkpoint's `w`, in place;
/// other tensors are left alone. `hf_name` is the Hugging Face name.
pub fn gguf_norm_to_hf(architecture: &str, hf_name: &str, data: &mut [f32]) {
    if architecture == "gemma3" && hf_name.ends_with("norm.weight") {
        data.iter_mut().for_each(|v| *v -= 1.0);
    }
}

impl GgufFile {
    /// The Gemma 3 fields of `config.json`, added to the common ones in `c`.
    pub(super) fn gemma3_config(&self, c: &mut Map<String, Value>) -> Result<(), GgufError> {
        let arch = "gemma3";
        let get = |key: &str| self.get_u64(&format!("{arch}.{key}"));
        let layers = get("block_count").unwrap_or(0);
        let hidden = get("embedding_length").unwrap_or(0);
        let heads = get("attention.head_count").unwrap_or(1).max(1);
        let head_dim = get("attention.key_length").unwrap_or(hidden / heads);
        let window = get("attention.sliding_window")
            .ok_or_else(|| GgufError::MissingKey(format!("{arch}.attention.sliding_window")))?;
        let scalar = if layers == LAYERS_27B {
            hidden / heads
        } else {
            head_dim
        };
        c.remove("hidden_act");
        c.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
        c.insert("query_pre_attn_scalar".into(), json!(scalar));
        c.insert("sliding_window".into(), json!(window));
        c.insert(
            "sliding_window_pattern".into(),
            json!(SLIDING_WINDOW_PATTERN),
        );
        let types: Vec<&str> = (0..layers)
            .map(|i| match (i + 1) % SLIDING_WINDOW_PATTERN {
                0 => "full_attention",
                _ => "sliding_attention",
            })
            .collect();
        c.insert("layer_types".into(), json!(types));
        c.insert("rope_local_base_freq".into(), json!(ROPE_LOCAL_BASE_FREQ));
        c.insert("final_logit_softcapping".into(), Value::Null);
        c.insert("attn_logit_softcapping".into(), Value::Null);
        // Gemma's token ids that end a turn (`<end_of_turn>`) come from the tokenizer's types.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_norm_names_map_onto_the_sandwich_norms() {
        for (g, h) in [
            (
                "blk.2.attn_norm.weight",
                "model.layers.2.input_layernorm.weight",
            ),
            (
                "blk.2.post_attention_norm.weight",
                "model.layers.2.post_attention_layernorm.weight",
            ),
            (
                "blk.2.ffn_norm.weight",
                "model.layers.2.pre_feedforward_layernorm.weight",
            ),
            (
                "blk.2.post_ffw_norm.weight",
                "model.layers.2.post_feedforward_layernorm.weight",
            ),
            (
                "blk.0.attn_q_norm.weight",
                "model.layers.0.self_attn.q_norm.weight",
            ),
            ("output_norm.weight", "model.norm.weight"),
        ] {
            assert_eq!(hf_tensor_name_for("gemma3", g).as_deref(), Some(h), "{g}");
        }
        // The Llama meaning of ffn_norm stays for other architectures.
        assert_eq!(
            hf_tensor_name_for("llama", "blk.2.ffn_norm.weight").as_deref(),
            Some("model.layers.2.post_attention_layernorm.weight")
        );
    }

    #[test]
    fn gemma3_norms_lose_the_added_one_and_nothing_else_does() {
        let mut norm = vec![1.5f32, 0.0];
        gguf_norm_to_hf(
            "gemma3",
            "model.layers.0.self_attn.k_norm.weight",
            &mut norm,
        );
        assert_eq!(norm, [0.5, -1.0]);
        let mut proj = vec![1.5f32];
        gguf_norm_to_hf("gemma3", "model.layers.0.mlp.up_proj.weight", &mut proj);
        gguf_norm_to_hf("llama", "model.norm.weight", &mut proj);
        assert_eq!(proj, [1.5]);
    }
}
