//! What Gemma 3 (`gemma3_text`) does differently from the Llama-style decoder, kept apart so the
//! shared decoder only gains switches:
//! - most layers attend within a sliding window (`sliding_window`, 512 for 270M) with their own
//!   RoPE base (`rope_local_base_freq`); every `sliding_window_pattern`-th layer (or those
//!   `layer_types` calls `full_attention`) attends globally with `rope_theta` (and `rope_scaling`);
//! - RMSNorm multiplies by `1 + weight` (Hugging Face checkpoints store `weight`; the decoder gets
//!   the sum, see [`shift_norms`]);
//! - a norm after each sublayer as well as before (`post_attention_layernorm`,
//!   `pre_feedforward_layernorm`, `post_feedforward_layernorm`), plus per-head `q_norm`/`k_norm`;
//! - GeGLU with the tanh approximation of GELU; embeddings scaled by `sqrt(hidden_size)`;
//!   queries scaled by `query_pre_attn_scalar^-0.5`.
//!
//! The KV cache keeps every position of every layer (so prefix reuse and the decode slots work
//! unchanged); sliding layers read only the window's part of it.

use mlx_rs::error::Exception;
use mlx_rs::{Array, Dtype};
use serde_json::Value;

use super::attention::CausalMask;
use super::config::ModelConfig;
use super::ffi::slice;
use super::slot_kv::SlotKv;
use super::weights::Weights;

/// Hugging Face's defaults for `Gemma3TextConfig` fields a config may leave out.
const DEFAULT_PATTERN: usize = 6;
const DEFAULT_WINDOW: usize = 4096;
const DEFAULT_LOCAL_BASE: f64 = 10_000.0;

impl ModelConfig {
    pub fn is_gemma3(&self) -> bool {
        self.model_type == "gemma3_text"
    }

    pub(super) fn validate_gemma3(&self) -> Result<(), String> {
        if self.attn_logit_softcapping.is_some() {
            return Err("attn_logit_softcapping is not supported".into());
        }
        if let Some(types) = &self.layer_types {
            if types.len() != self.num_hidden_layers {
                return Err(format!(
                    "layer_types has {} entries for {} layers",
                    types.len(),
                    self.num_hidden_layers
                ));
            }
            if let Some(bad) = types
                .iter()
                .find(|t| !matches!(t.as_str(), "sliding_attention" | "full_attention"))
            {
                return Err(format!("unknown layer type {bad:?} in layer_types"));
            }
        }
        if self.sliding_window == Some(0) || self.sliding_window_pattern == Some(0) {
            return Err("sliding_window and sliding_window_pattern must be positive".into());
        }
        Ok(())
    }

    /// Whether layer `i` attends within the sliding window (Gemma 3 only).
    pub fn is_sliding_layer(&self, i: usize) -> bool {
        if !self.is_gemma3() {
            return false;
        }
        match &self.layer_types {
            Some(types) => types.get(i).is_some_and(|t| t == "sliding_attention"),
            None => (i + 1) % self.sliding_window_pattern.unwrap_or(DEFAULT_PATTERN) != 0,
        }
    }

    /// The window of the sliding layers, when the model has any.
    pub fn attention_window(&self) -> Option<usize> {
        (0..self.num_hidden_layers)
            .any(|i| self.is_sliding_layer(i))
            .then(|| self.sliding_window.unwrap_or(DEFAULT_WINDOW))
    }

    /// RoPE base of the sliding layers.
    pub fn local_rope_base(&self) -> f64 {
        self.rope_local_base_freq.unwrap_or(DEFAULT_LOCAL_BASE)
    }

    /// The factor applied to queries before `q·kᵀ`.
    pub fn attention_scale(&self) -> f32 {
        let scalar = self.query_pre_attn_scalar.unwrap_or(self.head_dim() as f64);
        scalar.powf(-0.5) as f32
    }
}

/// Adds 1 to every RMSNorm weight of a Gemma checkpoint, so that the decoder's plain
/// `x̂ · weight` is Gemma's `x̂ · (1 + weight)`. The sum is formed in float32, as Hugging Face
/// does, and cast back.
pub(super) fn shift_norms(w: &mut Weights) -> Result<(), Exception> {
    for (name, array) in w.iter_mut() {
        if name.ends_with("norm.weight") {
            let dtype = array.dtype();
            let shifted = array
                .as_dtype(Dtype::Float32)?
                .add(Array::from_f32(1.0))?
                .as_dtype(dtype)?;
            shifted.eval()?;
            *array = shifted;
        }
    }
    Ok(())
}

/// `gelu_pytorch_tanh`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, written as
/// `x / (1 + e^(-2u))` (the same function: `(1 + tanh u)/2 = 1/(1 + e^(-2u))`) so that on the CPU
/// the exponential can go through `power` as SiLU's does (see `cpu_ops`).
pub(super) fn gelu_tanh(x: &Array, composed: bool) -> Result<Array, Exception> {
    if !composed || x.dtype() != Dtype::Float32 {
        return mlx_rs::nn::gelu_approximate(x);
    }
    let c = Array::from_f32(-2.0 * (2.0 / std::f32::consts::PI).sqrt());
    let cubic = x
        .multiply(x)?
        .multiply(x)?
        .multiply(Array::from_f32(0.044715))?;
    let exponent = x.add(&cubic)?.multiply(&c)?;
    let denom = Array::from_f32(std::f32::consts::E)
        .power(&exponent)?
        .add(Array::from_f32(1.0))?;
    x.divide(&denom)
}

/// First key position a query at `pos` sees through a window of `window`.
pub(super) fn window_start(pos: i32, window: i32) -> i32 {
    (pos + 1 - window).max(0)
}

/// The sliding layers' mask for a pass of `len` queries at `offset..offset + len`: their keys
/// are sliced to start at the first query's window start, so the mask covers
/// `offset + len - start` keys. `None` for a single query (the slice is its whole window).
pub(super) fn pass_window_mask(
    len: i32,
    offset: i32,
    window: i32,
    dtype: Dtype,
) -> Result<Option<CausalMask>, Exception> {
    CausalMask::windowed(len, offset - window_start(offset, window), window, dtype)
}

/// The sliding layers' view of one decode step of the slots: keys from the earliest window
/// start of any slot, and an additive `[B, 1, 1, keys]` mask hiding each slot's positions before
/// its own window and after its new token.
pub(super) struct SlotWindow {
    pub start: i32,
    pub mask: Array,
}

impl SlotWindow {
    pub fn new(kv: &SlotKv, max_len: i32, window: i32, dtype: Dtype) -> Result<Self, Exception> {
        let positions: Vec<i32> = (0..kv.len()).map(|s| kv.length(s) as i32).collect();
        let start = positions
            .iter()
            .map(|&p| window_start(p, window))
            .min()
            .unwrap_or(0);
        let keys = (max_len - start).max(1);
        let mut mask = vec![f32::NEG_INFINITY; positions.len() * keys as usize];
        for (row, &p) in mask.chunks_mut(keys as usize).zip(&positions) {
            let (lo, hi) = (window_start(p, window) - start, p - start);
            row[lo as usize..=hi as usize].fill(0.0);
        }
        let mask = Array::from_slice(&mask, &[positions.len() as i32, 1, 1, keys]);
        let mask = if dtype == Dtype::Float32 {
            mask
        } else {
            mask.as_dtype(dtype)?
        };
        Ok(Self { start, mask })
    }

    /// The window's part of `[B, kv_heads, max_len, d]` keys or values.
    pub fn keys(&self, a: &Array) -> Result<Array, Exception> {
        if self.start == 0 {
            return Ok(a.clone());
        }
        let s = a.shape();
        slice(a, &[0, 0, self.start, 0], &[s[0], s[1], s[2], s[3]])
    }
}

/// The window's part of one sequence's `[1, kv_heads, offset + len, d]` keys or values for a
/// pass whose first query is at `offset`.
pub(super) fn window_keys(a: &Array, offset: i32, window: i32) -> Result<Array, Exception> {
    let start = window_start(offset, window);
    if start == 0 {
        return Ok(a.clone());
    }
    let s = a.shape();
    slice(a, &[0, 0, start, 0], &[s[0], s[1], s[2], s[3]])
}

/// Multimodal Gemma 3 checkpoints (`model_type: gemma3`) nest the language model's settings in
/// `text_config`: those, with the top level's token ids where the nested ones lack them, are the
/// text model's `config.json`.
pub fn text_config(raw: Value) -> Value {
    if raw["model_type"] != "gemma3" {
        return raw;
    }
    let Some(mut text) = raw.get("text_config").cloned() else {
        return raw;
    };
    if let Some(obj) = text.as_object_mut() {
        obj.insert("model_type".into(), "gemma3_text".into());
        for key in ["bos_token_id", "eos_token_id", "tie_word_embeddings"] {
            if let (false, Some(v)) = (obj.contains_key(key), raw.get(key)) {
                obj.insert(key.into(), v.clone());
            }
        }
    }
    text
}

/// The text model's name of a multimodal checkpoint's tensor (`language_model.model.…` →
/// `model.…`); `None` for the vision tower and projector.
pub fn text_weight_name(name: &str) -> Option<String> {
    if name.starts_with("vision_tower.") || name.starts_with("multi_modal_projector.") {
        return None;
    }
    Some(
        name.strip_prefix("language_model.")
            .unwrap_or(name)
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: Value) -> ModelConfig {
        let mut c = serde_json::json!({
            "model_type": "gemma3_text", "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 12, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 4, "vocab_size": 10
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        serde_json::from_value(c).unwrap()
    }

    #[test]
    fn gemma3_layer_kinds_follow_layer_types_else_the_pattern() {
        let c = config(serde_json::json!({}));
        let global: Vec<usize> = (0..12).filter(|&i| !c.is_sliding_layer(i)).collect();
        assert_eq!(global, [5, 11]);
        assert_eq!(c.attention_window(), Some(4096));
        let mut types = vec!["full_attention"; 12];
        types[0] = "sliding_attention";
        let c = config(serde_json::json!({"layer_types": types, "sliding_window": 512}));
        assert!(c.is_sliding_layer(0) && !c.is_sliding_layer(1));
        assert_eq!(c.attention_window(), Some(512));
        assert!(
            config(serde_json::json!({"layer_types": ["full_attention"]}))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn gemma3_query_scale_comes_from_query_pre_attn_scalar() {
        assert_eq!(config(serde_json::json!({})).attention_scale(), 0.5);
        let c = config(serde_json::json!({"query_pre_attn_scalar": 16}));
        assert_eq!(c.attention_scale(), 0.25);
    }

    #[test]
    fn gelu_tanh_composed_matches_mlx() {
        let v: Vec<f32> = (0..200).map(|i| (i as f32 - 100.0) * 0.11).collect();
        let x = Array::from_slice(&v, &[200]);
        let ours = gelu_tanh(&x, true).unwrap();
        let theirs = mlx_rs::nn::gelu_approximate(&x).unwrap();
        for (a, b) in ours.as_slice::<f32>().iter().zip(theirs.as_slice::<f32>()) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn slot_window_mask_shows_each_slot_only_its_window() {
        let mut kv = SlotKv::new(1, 1, 2, Dtype::Float32);
        for (owner, len) in [(0u64, 9usize), (1, 3)] {
            let mut c = super::super::kv_cache::KvCache::new(1);
            let x = Array::from_slice(&vec![0.0f32; len * 2], &[1, 1, len as i32, 2]);
            c.update(0, &x, &x).unwrap();
            c.advance(len);
            kv.insert(owner, &c).unwrap();
        }
        // Slot 0's new token is at 9 and sees 6..=9; slot 1's at 3 sees 0..=3.
        let w = SlotWindow::new(&kv, 10, 4, Dtype::Float32).unwrap();
        assert_eq!(w.start, 0);
        let m = w.mask.as_slice::<f32>();
        let seen =
            |row: &[f32]| -> Vec<usize> { (0..row.len()).filter(|&i| row[i] == 0.0).collect() };
        assert_eq!(seen(&m[..10]), [6, 7, 8, 9]);
        assert_eq!(seen(&m[10..]), [0, 1, 2, 3]);
    }

    #[test]
    fn multimodal_config_and_names_become_the_text_model() {
        let raw = serde_json::json!({
            "model_type": "gemma3", "eos_token_id": [1, 106],
            "text_config": {"model_type": "gemma3_text", "hidden_size": 2560}
        });
        let text = text_config(raw);
        assert_eq!(text["model_type"], "gemma3_text");
        assert_eq!(text["eos_token_id"], serde_json::json!([1, 106]));
        assert_eq!(
            text_weight_name("language_model.model.layers.0.mlp.up_proj.weight").as_deref(),
            Some("model.layers.0.mlp.up_proj.weight")
        );
        assert_eq!(text_weight_name("vision_tower.x.weight"), None);
    }
}
