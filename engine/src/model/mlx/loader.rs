//! Turns a GGUF file or a Hugging Face directory into a `ModelConfig`, Hugging Face-named MLX
//! weights in the chosen dtype, and the tokenizer bundle; and writes the HF form back out
//! (`mlx-serve convert`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_rs::ops::dequantize;
use mlx_rs::{Array, Dtype};

use super::config::ModelConfig;
use super::gemma3;
use super::weights::Weights;
use crate::model::gguf::{
    gguf_norm_to_hf, hf_tensor_name_for, undo_llama_qk_permutation, GgmlType, GgufFile,
};
use crate::model::template::GEMMA_TURN_TEMPLATE;
use crate::model::tokenizer::TokenizerBundle;

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A single `.gguf` file.
    Gguf(PathBuf),
    /// A directory with `config.json`, `*.safetensors` and tokenizer files.
    HfDir(PathBuf),
}

/// A loaded model, ready for `decoder::Model::new`.
pub struct LoadedModel {
    pub config: ModelConfig,
    pub weights: Weights,
    pub tokenizer: TokenizerBundle,
    /// `config.json` as read or derived (written back by `convert`).
    pub raw_config: serde_json::Value,
}

pub type LoadResult<T> = Result<T, String>;

/// Parses `float32`, `bfloat16`, `float16` (and short forms).
pub fn parse_dtype(name: &str) -> LoadResult<Dtype> {
    match name {
        "float32" | "f32" | "fp32" => Ok(Dtype::Float32),
        "bfloat16" | "bf16" => Ok(Dtype::Bfloat16),
        "float16" | "f16" | "fp16" => Ok(Dtype::Float16),
        other => Err(format!(
            "unknown dtype {other:?}; use float32, bfloat16 or float16"
        )),
    }
}

pub fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::Float32 => "float32",
        Dtype::Bfloat16 => "bfloat16",
        Dtype::Float16 => "float16",
        _ => "other",
    }
}

pub fn load(source: &ModelSource, dtype: Dtype, keep_quantized: bool) -> LoadResult<LoadedModel> {
    load_with(source, dtype, keep_quantized, false)
}

/// [`load`], and with `gguf_blocks` a GGUF's matrices of the types the CPU kernels cover
/// (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K) stay in their ggml blocks (see `gguf_quant`), and an MLX
/// checkpoint's matrices become Q4_1 (2–4 bits) or Q8_0 (5, 6, 8 bits) blocks (`affine_repack`);
/// every other tensor is
/// dequantized to `dtype` as before. For the CPU backend only: GPU backends have no kernel for
/// ggml blocks.
pub fn load_with(
    source: &ModelSource,
    dtype: Dtype,
    keep_quantized: bool,
    gguf_blocks: bool,
) -> LoadResult<LoadedModel> {
    match source {
        ModelSource::Gguf(path) => load_gguf(path, dtype, gguf_blocks),
        ModelSource::HfDir(dir) => load_hf_dir(dir, dtype, keep_quantized, gguf_blocks),
    }
}

/// The ggml type id of a tensor that can stay in its blocks, if it can.
fn kept_block_type(t: GgmlType, shape: &[usize]) -> Option<u32> {
    let id = match t {
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q5_0 => 6,
        GgmlType::Q8_0 => 8,
        GgmlType::Q4K => 12,
        GgmlType::Q6K => 14,
        _ => return None,
    };
    (shape.len() == 2 && mlx_sys::quant::supported(id, shape[1])).then_some(id)
}

/// A matrix of ggml blocks and its type scalar as the CPU kernels read them: in mlx-sys's
/// interleaved layout where it applies, embeddings included (their lookups read rows from it,
/// and a tied output head multiplies with it like any projection).
fn kernel_blocks(id: u32, bytes: Vec<u8>, rows: usize, k: usize) -> (Array, Array) {
    let kept = mlx_sys::quant::repack(id, bytes, rows, k);
    let row_bytes = (kept.bytes.len() / rows.max(1)) as i32;
    (
        Array::from_slice(&kept.bytes, &[rows as i32, row_bytes]),
        Array::from_int(kept.ggml_type as i32),
    )
}

fn load_gguf(path: &Path, dtype: Dtype, gguf_blocks: bool) -> LoadResult<LoadedModel> {
    let file = GgufFile::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let raw_config = file
        .hf_config()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let config: ModelConfig = serde_json::from_value(raw_config.clone())
        .map_err(|e| format!("{}: hyper-parameters: {e}", path.display()))?;
    config.validate()?;
    // llama.cpp permutes Q/K rows of llama-architecture models for its interleaved RoPE.
    let permuted = matches!(config.model_type.as_str(), "llama" | "mistral");
    let arch = file.architecture().unwrap_or_default().to_string();
    let mut weights = Weights::new();
    let names: Vec<String> = file.tensors().iter().map(|t| t.name.clone()).collect();
    for name in names {
        let Some(hf) = hf_tensor_name_for(&arch, &name) else {
            continue; // e.g. rope_freqs: recomputed from the config
        };
        let qk_heads = |hf: &str| {
            if !permuted {
                None
            } else if hf.ends_with("self_attn.q_proj.weight") {
                Some(config.num_attention_heads)
            } else if hf.ends_with("self_attn.k_proj.weight") {
                Some(config.kv_heads())
            } else {
                None
            }
        };
        let info = file
            .tensor_info(&name)
            .ok_or_else(|| format!("{}: tensor {name} vanished", path.display()))?;
        if let (true, Some(id)) = (gguf_blocks, kept_block_type(info.ggml_type, &info.shape)) {
            let rows = info.shape[0];
            let mut bytes = file
                .tensor_bytes(&name)
                .map_err(|e| format!("{}: tensor {name}: {e}", path.display()))?
                .to_vec();
            let row_bytes = bytes.len() / rows;
            if let Some(heads) = qk_heads(&hf) {
                undo_llama_qk_permutation(&mut bytes, rows, row_bytes, heads);
            }
            let prefix = hf.strip_suffix(".weight").unwrap_or(&hf).to_string();
            let (blocks, ty) = kernel_blocks(id, bytes, rows, info.shape[1]);
            weights.insert(hf, blocks);
            weights.insert(format!("{prefix}.{}", super::gguf_quant::TYPE_SUFFIX), ty);
            continue;
        }
        let (shape, mut data) = file
            .tensor_f32(&name)
            .map_err(|e| format!("{}: tensor {name}: {e}", path.display()))?;
        gguf_norm_to_hf(&arch, &hf, &mut data);
        if shape.len() == 2 {
            if let Some(heads) = qk_heads(&hf) {
                undo_llama_qk_permutation(&mut data, shape[0], shape[1], heads);
            }
        }
        let dims: Vec<i32> = shape.iter().map(|&d| d as i32).collect();
        let array = cast(Array::from_slice(&data, &dims), dtype)?;
        weights.insert(hf, array);
    }
    let tokenizer = TokenizerBundle::from_gguf(&file)
        .map_err(|e| format!("{}: tokenizer: {e}", path.display()))?;
    Ok(LoadedModel {
        config,
        weights,
        tokenizer,
        raw_config,
    })
}

fn cast(a: Array, dtype: Dtype) -> LoadResult<Array> {
    if a.dtype() == dtype || !is_float(a.dtype()) {
        return Ok(a);
    }
    let out = a.as_dtype(dtype).map_err(|e| e.to_string())?;
    // Materialize now so the source buffer is freed before the next tensor is read.
    out.eval().map_err(|e| e.to_string())?;
    Ok(out)
}

fn is_float(d: Dtype) -> bool {
    matches!(d, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16)
}

fn safetensors_files(dir: &Path) -> LoadResult<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text =
            std::fs::read_to_string(&index).map_err(|e| format!("{}: {e}", index.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
        let mut files: Vec<String> = json["weight_map"]
            .as_object()
            .ok_or_else(|| format!("{}: no weight_map", index.display()))?
            .values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no *.safetensors files", dir.display()));
    }
    Ok(files)
}

fn load_hf_dir(
    dir: &Path,
    dtype: Dtype,
    keep_quantized: bool,
    cpu_blocks: bool,
) -> LoadResult<LoadedModel> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let raw_config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let raw_config = gemma3::text_config(raw_config);
    let config: ModelConfig = serde_json::from_value(raw_config.clone())
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    config.validate()?;
    let mut raw = HashMap::new();
    for file in safetensors_files(dir)? {
        let tensors =
            Array::load_safetensors(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        raw.extend(tensors);
    }
    let mut weights = Weights::new();
    let quant = config.quantization;
    if config.is_gemma3() {
        raw = raw
            .into_iter()
            .filter_map(|(n, a)| gemma3::text_weight_name(&n).map(|n| (n, a)))
            .collect();
    }
    let names: Vec<String> = raw.keys().cloned().collect();
    for name in names {
        if name.ends_with(".scales") || name.ends_with(".biases") || name.contains("rotary_emb") {
            continue;
        }
        let Some(array) = raw.remove(&name) else {
            continue;
        };
        let prefix = name.strip_suffix(".weight").unwrap_or(&name).to_string();
        let scales = raw.remove(&format!("{prefix}.scales"));
        match (scales, quant) {
            (Some(scales), Some(q)) => {
                let biases = raw
                    .remove(&format!("{prefix}.biases"))
                    .ok_or_else(|| format!("{prefix}: quantized weight without biases"))?;
                let k = super::affine_repack::unpacked_columns(&array, q.bits);
                let ty = super::affine_repack::block_type(q);
                if cpu_blocks
                    && super::affine_repack::repackable(q)
                    && mlx_sys::quant::supported(ty, k)
                {
                    let bytes = super::affine_repack::blocks(&array, &scales, &biases, q)
                        .map_err(|e| format!("{name}: {e}"))?;
                    let rows = array.shape()[0] as usize;
                    let (blocks, ty) = kernel_blocks(ty, bytes, rows, k);
                    weights.insert(name, blocks);
                    weights.insert(format!("{prefix}.{}", super::gguf_quant::TYPE_SUFFIX), ty);
                } else if keep_quantized && !prefix.ends_with("embed_tokens") {
                    // Embeddings are gathered, not multiplied: MLX's kernels keep them dense.
                    weights.insert(name, array);
                    weights.insert(format!("{prefix}.scales"), cast(scales, dtype)?);
                    weights.insert(format!("{prefix}.biases"), cast(biases, dtype)?);
                } else {
                    let dense = dequantize(&array, &scales, &biases, q.group_size, q.bits)
                        .map_err(|e| format!("{name}: {e}"))?;
                    weights.insert(name, cast(dense, dtype)?);
                }
            }
            _ => {
                weights.insert(name, cast(array, dtype)?);
            }
        }
    }
    let tokenizer = TokenizerBundle::from_hf_dir(dir)
        .map_err(|e| format!("{}: tokenizer: {e}", dir.display()))?;
    Ok(LoadedModel {
        config,
        weights,
        tokenizer,
        raw_config,
    })
}

/// Writes a loaded model as a Hugging Face directory (config.json, model.safetensors, tokenizer
/// files with the chat template) that this server, `mlx_lm` and `transformers` can read.
pub fn write_hf_dir(model: &LoadedModel, dtype: Dtype, out: &Path) -> LoadResult<()> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut config = model.raw_config.clone();
    if let Some(obj) = config.as_object_mut() {
        obj.insert("torch_dtype".into(), dtype_name(dtype).into());
        obj.remove("quantization");
    }
    let text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(out.join("config.json"), text).map_err(|e| e.to_string())?;
    let mut names: Vec<&String> = model.weights.keys().collect();
    names.sort();
    let arrays: Vec<(&String, Array)> = names
        .into_iter()
        .map(|n| cast(model.weights[n].clone(), dtype).map(|a| (n, a)))
        .collect::<LoadResult<_>>()?;
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    Array::save_safetensors(
        arrays.iter().map(|(n, a)| (n.as_str(), a)),
        &metadata,
        out.join("model.safetensors"),
    )
    .map_err(|e| format!("writing safetensors: {e}"))?;
    let mut tokenizer = model.tokenizer.clone();
    if tokenizer.chat_template.is_none() && model.config.is_gemma3() {
        // What the server renders for it, so that other runtimes format chats the same way.
        tokenizer.chat_template = Some(GEMMA_TURN_TEMPLATE.to_string());
    }
    tokenizer
        .write_hf_files(out)
        .map_err(|e| format!("writing tokenizer files: {e}"))?;
    Ok(())
}
