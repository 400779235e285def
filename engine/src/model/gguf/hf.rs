//! Hugging Face views of a GGUF file: `config.json` fields, tensor names, and undoing
//! llama.cpp's Q/K row permutation.

use serde_json::{json, Map, Value};

use super::gemma3::{gguf_norm_to_hf, hf_tensor_name_for};
use super::{GgufError, GgufFile};

/// A tensor ready for a Hugging Face-layout model.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    /// Hugging Face name (`model.layers.0.self_attn.q_proj.weight`).
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Values, in Hugging Face row order.
    pub data: Vec<f32>,
}

/// Hugging Face tensor name of a GGUF tensor (`blk.3.attn_q.weight` →
/// `model.layers.3.self_attn.q_proj.weight`); `None` for tensors with no HF counterpart
/// (e.g. `rope_freqs.weight`).
pub fn hf_tensor_name(gguf_name: &str) -> Option<String> {
    let (stem, suffix) = match gguf_name.rsplit_once('.') {
        Some((stem, s @ ("weight" | "bias"))) => (stem, s),
        _ => return None,
    };
    let mapped = match stem {
        "token_embd" => "model.embed_tokens".to_string(),
        "output_norm" => "model.norm".to_string(),
        "output" => "lm_head".to_string(),
        _ => {
            let rest = stem.strip_prefix("blk.")?;
            let (layer, part) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let hf = match part {
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "attn_q_norm" => "self_attn.q_norm",
                "attn_k_norm" => "self_attn.k_norm",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                "attn_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                _ => return None,
            };
            format!("model.layers.{layer}.{hf}")
        }
    };
    Some(format!("{mapped}.{suffix}"))
}

/// Whether llama.cpp's converter permuted the Q/K projection rows of this architecture
/// (`general.architecture`). True for `llama` (which also covers Mistral models, converted
/// under the llama architecture) and `mistral`; false for `qwen2`, `qwen3` and others, whose
/// GGUF rows are already in Hugging Face order.
pub fn needs_qk_unpermute(architecture: &str) -> bool {
    matches!(architecture, "llama" | "mistral")
}

/// Undoes llama.cpp's Q/K permutation in place.
///
/// llama.cpp's `convert_hf_to_gguf.py` rewrites the rows of `attn_q` / `attn_k` (weights, and
/// biases with `cols == 1`) of **llama-architecture models (llama, mistral)** so that each
/// head's rotary pairs sit next to each other (interleaved RoPE): within a head of `d` rows,
/// Hugging Face row `s * d/2 + i` (`s` ∈ {0, 1}) is stored at row `2 * i + s`. This puts them
/// back into halves, the layout a Hugging Face (non-interleaved, "rotate half") RoPE expects.
/// Use `n_heads = num_attention_heads` for Q and `num_key_value_heads` for K.
/// **Qwen2 / Qwen3 GGUFs are not permuted**: do not call this for them (see
/// [`needs_qk_unpermute`]).
///
/// `data` is row-major `[rows, cols]`; `rows` must be a multiple of `2 * n_heads`.
/// Rows are moved whole, so `data` may also be quantized rows (`cols` = bytes per row).
pub fn undo_llama_qk_permutation<T: Copy + Default>(
    data: &mut [T],
    rows: usize,
    cols: usize,
    n_heads: usize,
) {
    reorder_rows(data, rows, cols, n_heads, |head_dim, s, i| {
        (s * head_dim / 2 + i, 2 * i + s)
    });
}

/// llama.cpp's permutation itself (HF → GGUF order); the inverse of
/// [`undo_llama_qk_permutation`], useful for writing GGUF-ordered test data.
pub fn llama_qk_permutation<T: Copy + Default>(
    data: &mut [T],
    rows: usize,
    cols: usize,
    n_heads: usize,
) {
    reorder_rows(data, rows, cols, n_heads, |head_dim, s, i| {
        (2 * i + s, s * head_dim / 2 + i)
    });
}

/// Moves rows within each head: `map(head_dim, s, i)` gives `(destination, source)` row
/// indices inside the head.
fn reorder_rows<T: Copy + Default>(
    data: &mut [T],
    rows: usize,
    cols: usize,
    n_heads: usize,
    map: impl Fn(usize, usize, usize) -> (usize, usize),
) {
    assert!(
        n_heads > 0 && rows % (2 * n_heads) == 0 && data.len() == rows * cols,
        "Q/K permutation needs rows ({rows}) divisible by 2 × heads ({n_heads}) and data of rows × cols"
    );
    let head_dim = rows / n_heads;
    let mut head = vec![T::default(); head_dim * cols];
    for h in 0..n_heads {
        let block = &mut data[h * head_dim * cols..(h + 1) * head_dim * cols];
        head.copy_from_slice(block);
        for s in 0..2 {
            for i in 0..head_dim / 2 {
                let (dst, src) = map(head_dim, s, i);
                block[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&head[src * cols..(src + 1) * cols]);
            }
        }
    }
}

impl GgufFile {
    /// A tensor under its Hugging Face name, dequantized to `f32`, with llama.cpp's Q/K
    /// permutation undone where the architecture needs it ([`needs_qk_unpermute`]).
    /// `Ok(None)` for tensors without a Hugging Face counterpart (e.g. `rope_freqs.weight`).
    pub fn hf_tensor_f32(&self, gguf_name: &str) -> Result<Option<HfTensor>, GgufError> {
        let arch = self.architecture().unwrap_or_default();
        let Some(hf_name) = hf_tensor_name_for(arch, gguf_name) else {
            return Ok(None);
        };
        let (shape, mut data) = self.tensor_f32(gguf_name)?;
        gguf_norm_to_hf(arch, &hf_name, &mut data);
        let is_q = hf_name.contains(".self_attn.q_proj.");
        let is_k = hf_name.contains(".self_attn.k_proj.");
        if needs_qk_unpermute(arch) && (is_q || is_k) {
            let heads = self.require_u64(arch, "attention.head_count")?;
            let heads = match is_k {
                true => self
                    .arch_u64(arch, "attention.head_count_kv")
                    .unwrap_or(heads),
                false => heads,
            } as usize;
            let rows = shape.first().copied().unwrap_or(0);
            let cols = shape.get(1).copied().unwrap_or(1);
            if heads == 0 || rows % (2 * heads) != 0 || rows * cols != data.len() {
                return Err(GgufError::Malformed(format!(
                    "{gguf_name}: shape {shape:?} does not split into {heads} heads"
                )));
            }
            undo_llama_qk_permutation(&mut data, rows, cols, heads);
        }
        Ok(Some(HfTensor {
            name: hf_name,
            shape,
            data,
        }))
    }

    fn arch_u64(&self, arch: &str, key: &str) -> Option<u64> {
        self.get_u64(&format!("{arch}.{key}"))
    }

    /// An `f32` value widened to the `f64` with the same shortest decimal form, so that
    /// `1e-5f32` becomes `1e-5` in the JSON rather than `9.999999747378752e-6`.
    fn arch_f32(&self, arch: &str, key: &str) -> Option<f64> {
        let x = self.get_f32(&format!("{arch}.{key}"))?;
        Some(x.to_string().parse().unwrap_or(x.into()))
    }

    fn require_u64(&self, arch: &str, key: &str) -> Result<u64, GgufError> {
        self.arch_u64(arch, key)
            .ok_or_else(|| GgufError::MissingKey(format!("{arch}.{key}")))
    }

    /// A Hugging Face `config.json` equivalent built from the metadata, for the architectures
    /// `llama`, `mistral`, `qwen2`, `qwen3` and `gemma3` (its text model, `gemma3_text`).
    ///
    /// `tie_word_embeddings` is true when there is no `output.weight` tensor; `attention_bias`
    /// is true when layer 0 has a `attn_q.bias` tensor (Qwen2). Llama 3.1-style frequency
    /// scaling, which GGUF stores as a `rope_freqs.weight` tensor rather than metadata, is not
    /// reconstructed into `rope_scaling`.
    pub fn hf_config(&self) -> Result<Value, GgufError> {
        let arch = self
            .architecture()
            .ok_or_else(|| GgufError::MissingKey("general.architecture".into()))?;
        let (model_type, class) = match arch {
            "llama" => ("llama", "LlamaForCausalLM"),
            "mistral" => ("mistral", "MistralForCausalLM"),
            "qwen2" => ("qwen2", "Qwen2ForCausalLM"),
            "qwen3" => ("qwen3", "Qwen3ForCausalLM"),
            "gemma3" => ("gemma3_text", "Gemma3ForCausalLM"),
            other => return Err(GgufError::UnsupportedArchitecture(other.to_string())),
        };
        let hidden = self.require_u64(arch, "embedding_length")?;
        let heads = self.require_u64(arch, "attention.head_count")?;
        if heads == 0 {
            return Err(GgufError::Malformed("attention.head_count is 0".into()));
        }
        let kv_heads = self
            .arch_u64(arch, "attention.head_count_kv")
            .unwrap_or(heads);
        let head_dim = self
            .arch_u64(arch, "attention.key_length")
            .unwrap_or(hidden / heads);
        let vocab = self
            .arch_u64(arch, "vocab_size")
            .or_else(|| {
                self.get("tokenizer.ggml.tokens")
                    .and_then(|v| v.as_array())
                    .map(|a| a.len() as u64)
            })
            .or_else(|| {
                self.tensor_info("token_embd.weight")
                    .and_then(|t| t.shape.first().map(|&d| d as u64))
            })
            .ok_or_else(|| GgufError::MissingKey(format!("{arch}.vocab_size")))?;

        let mut c = Map::new();
        c.insert("model_type".into(), json!(model_type));
        c.insert("architectures".into(), json!([class]));
        c.insert("hidden_size".into(), json!(hidden));
        c.insert(
            "intermediate_size".into(),
            json!(self.require_u64(arch, "feed_forward_length")?),
        );
        c.insert("num_attention_heads".into(), json!(heads));
        c.insert("num_key_value_heads".into(), json!(kv_heads));
        c.insert(
            "num_hidden_layers".into(),
            json!(self.require_u64(arch, "block_count")?),
        );
        c.insert("head_dim".into(), json!(head_dim));
        c.insert(
            "rms_norm_eps".into(),
            json!(self
                .arch_f32(arch, "attention.layer_norm_rms_epsilon")
                .unwrap_or(1e-6)),
        );
        c.insert(
            "rope_theta".into(),
            json!(self.arch_f32(arch, "rope.freq_base").unwrap_or(10_000.0)),
        );
        c.insert(
            "max_position_embeddings".into(),
            json!(self.arch_u64(arch, "context_length").unwrap_or(2048)),
        );
        c.insert("vocab_size".into(), json!(vocab));
        c.insert(
            "tie_word_embeddings".into(),
            json!(self.tensor_info("output.weight").is_none()),
        );
        c.insert(
            "attention_bias".into(),
            json!(self.tensor_info("blk.0.attn_q.bias").is_some()),
        );
        c.insert("hidden_act".into(), json!("silu"));
        for (key, hf_key) in [
            ("tokenizer.ggml.bos_token_id", "bos_token_id"),
            ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ] {
            if let Some(id) = self.get_u64(key) {
                c.insert(hf_key.into(), json!(id));
            }
        }
        if let Some(scaling) = self.rope_scaling(arch) {
            c.insert("rope_scaling".into(), scaling);
        }
        if arch == "gemma3" {
            self.gemma3_config(&mut c)?;
        }
        Ok(Value::Object(c))
    }

    fn rope_scaling(&self, arch: &str) -> Option<Value> {
        let kind = self.get_str(&format!("{arch}.rope.scaling.type"))?;
        if kind == "none" {
            return None;
        }
        let mut s = Map::new();
        s.insert("type".into(), json!(kind));
        s.insert("rope_type".into(), json!(kind));
        if let Some(f) = self.arch_f32(arch, "rope.scaling.factor") {
            s.insert("factor".into(), json!(f));
        }
        if let Some(n) = self.arch_u64(arch, "rope.scaling.original_context_length") {
            s.insert("original_max_position_embeddings".into(), json!(n));
        }
        Some(Value::Object(s))
    }
}
