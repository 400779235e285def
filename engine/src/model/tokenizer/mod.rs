//! Tokenizers: built from GGUF metadata or loaded from a Hugging Face directory, bundled with
//! the chat template and special tokens that the engine needs alongside.

mod from_gguf;

use std::path::Path;

use serde_json::{json, Value};
use tokenizers::Tokenizer;

use super::gguf::{GgufError, GgufFile};

/// Why a tokenizer could not be built, loaded, saved or run.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// Reading the GGUF metadata failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A file of a Hugging Face directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// A JSON file is not what Hugging Face writes.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The GGUF tokenizer metadata is missing something or is of an unknown kind.
    #[error("GGUF tokenizer: {0}")]
    Metadata(String),
    /// The `tokenizers` crate rejected the model or failed to encode/decode.
    #[error("tokenizer: {0}")]
    Tokenizers(String),
}

fn tk_err(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Tokenizers(e.to_string())
}

/// A tokenizer with the model's chat template and special-token facts.
#[derive(Clone)]
pub struct TokenizerBundle {
    /// The tokenizer. Its post-processor prepends BOS when `add_bos` (so `encode(.., true)`
    /// does, as Hugging Face's does); chat prompts are encoded with `add_special_tokens =
    /// false` because templates write the BOS text themselves.
    pub tokenizer: Tokenizer,
    /// The default chat template source.
    pub chat_template: Option<String>,
    /// A separate template for requests with tools, when the model ships one (`tool_use`).
    pub tool_use_template: Option<String>,
    /// BOS token text (`bos_token` in templates).
    pub bos_token: Option<String>,
    /// EOS token text (`eos_token` in templates).
    pub eos_token: Option<String>,
    /// Every token id that ends generation (EOS, end-of-turn, …), deduplicated.
    pub eos_token_ids: Vec<u32>,
    /// Whether the model expects a BOS token at the start of a raw prompt.
    pub add_bos: bool,
}

impl std::fmt::Debug for TokenizerBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenizerBundle")
            .field("vocab_size", &self.tokenizer.get_vocab_size(true))
            .field("has_chat_template", &self.chat_template.is_some())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("eos_token_ids", &self.eos_token_ids)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

impl TokenizerBundle {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata (`gpt2` byte-level BPE or `llama`
    /// SentencePiece-style BPE) and reads `tokenizer.chat_template`.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, TokenizerError> {
        from_gguf::bundle(gguf)
    }

    /// Loads `tokenizer.json`, `tokenizer_config.json` (chat template, BOS/EOS, `add_bos_token`),
    /// `chat_template.jinja` when present, and `generation_config.json` (`eos_token_id`).
    pub fn from_hf_dir(dir: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let dir = dir.as_ref();
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| TokenizerError::BadFile {
            path: tok_path.display().to_string(),
            message: e.to_string(),
        })?;
        let config = read_json_if_exists(&dir.join("tokenizer_config.json"))?.unwrap_or(json!({}));
        let (mut chat_template, tool_use_template) = pick_templates(&config["chat_template"]);
        let jinja = dir.join("chat_template.jinja");
        if chat_template.is_none() && jinja.exists() {
            chat_template =
                Some(
                    std::fs::read_to_string(&jinja).map_err(|source| TokenizerError::Io {
                        path: jinja.display().to_string(),
                        source,
                    })?,
                );
        }
        let bos_token = token_text(&config["bos_token"]);
        let eos_token = token_text(&config["eos_token"]);

        let mut eos_token_ids = Vec::new();
        if let Some(gen) = read_json_if_exists(&dir.join("generation_config.json"))? {
            match &gen["eos_token_id"] {
                Value::Array(ids) => eos_token_ids.extend(ids.iter().filter_map(json_u32)),
                v => eos_token_ids.extend(json_u32(v)),
            }
        }
        if let Some(id) = eos_token.as_deref().and_then(|t| tokenizer.token_to_id(t)) {
            eos_token_ids.push(id);
        }
        dedup(&mut eos_token_ids);

        let add_bos = match config["add_bos_token"].as_bool() {
            Some(b) => b,
            None => post_processor_adds(&tokenizer, bos_token.as_deref()),
        };
        Ok(Self {
            tokenizer,
            chat_template,
            tool_use_template,
            bos_token,
            eos_token,
            eos_token_ids,
            add_bos,
        })
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` (chat template(s), BOS/EOS,
    /// `add_bos_token`) and `generation_config.json` (`eos_token_id`) so that
    /// [`from_hf_dir`](Self::from_hf_dir) — or Hugging Face's `AutoTokenizer` — loads them.
    pub fn write_hf_files(&self, dir: impl AsRef<Path>) -> Result<(), TokenizerError> {
        let dir = dir.as_ref();
        let tok_path = dir.join("tokenizer.json");
        self.tokenizer
            .save(&tok_path, false)
            .map_err(|e| TokenizerError::BadFile {
                path: tok_path.display().to_string(),
                message: e.to_string(),
            })?;
        let chat_template = match (&self.chat_template, &self.tool_use_template) {
            (Some(d), Some(t)) => json!([
                {"name": "default", "template": d},
                {"name": "tool_use", "template": t},
            ]),
            (Some(d), None) => json!(d),
            (None, Some(t)) => json!([{"name": "tool_use", "template": t}]),
            (None, None) => Value::Null,
        };
        let mut config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": false,
            "add_bos_token": self.add_bos,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
        });
        if !chat_template.is_null() {
            config["chat_template"] = chat_template;
        }
        write_json(&dir.join("tokenizer_config.json"), &config)?;
        if !self.eos_token_ids.is_empty() {
            write_json(
                &dir.join("generation_config.json"),
                &json!({ "eos_token_id": self.eos_token_ids }),
            )?;
        }
        Ok(())
    }

    /// Token ids of `text`; `add_special_tokens` applies the post-processor (BOS when `add_bos`).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .tokenizer
            .encode_fast(text, add_special_tokens)
            .map_err(tk_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(tk_err)
    }

    /// The template to render a request with: the `tool_use` one when there are tools and the
    /// model has one, else the default.
    pub fn template_for(&self, has_tools: bool) -> Option<&str> {
        match (&self.tool_use_template, has_tools) {
            (Some(t), true) => Some(t),
            _ => self
                .chat_template
                .as_deref()
                .or(self.tool_use_template.as_deref()),
        }
    }
}

fn json_u32(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

fn dedup(ids: &mut Vec<u32>) {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
}

/// A token given as a string or as an `AddedToken` object (`{"content": …}`).
fn token_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// `(default, tool_use)` from a `chat_template` that is a string or a list of
/// `{"name", "template"}`; without a `default` entry, the first non-`tool_use` one is used.
fn pick_templates(v: &Value) -> (Option<String>, Option<String>) {
    match v {
        Value::String(s) => (Some(s.clone()), None),
        Value::Array(list) => {
            let named = |want: &str| {
                list.iter().find_map(|e| {
                    (e["name"].as_str() == Some(want))
                        .then(|| e["template"].as_str().map(str::to_string))
                        .flatten()
                })
            };
            let default = named("default").or_else(|| {
                list.iter()
                    .filter(|e| e["name"].as_str() != Some("tool_use"))
                    .find_map(|e| e["template"].as_str().map(str::to_string))
            });
            (default, named("tool_use"))
        }
        _ => (None, None),
    }
}

/// Whether encoding with special tokens prepends the BOS token.
fn post_processor_adds(tokenizer: &Tokenizer, bos: Option<&str>) -> bool {
    let Some(bos_id) = bos.and_then(|b| tokenizer.token_to_id(b)) else {
        return false;
    };
    tokenizer
        .encode_fast("a", true)
        .map(|e| e.get_ids().first() == Some(&bos_id))
        .unwrap_or(false)
}

fn read_json_if_exists(path: &Path) -> Result<Option<Value>, TokenizerError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TokenizerError::BadFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

fn write_json(path: &Path, v: &Value) -> Result<(), TokenizerError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| TokenizerError::BadFile {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::write(path, text).map_err(|source| TokenizerError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests;
