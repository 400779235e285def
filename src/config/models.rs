//! The model table: `[[models]]` entries, or the single `[model]` section as a one-entry table,
//! each with the id requests name it by, and their validation.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, SamplingDefaults, Settings};

/// `[model]`, and each `[[models]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// Catalog name or path of the model to load.
    pub name: String,
    /// Id served under `/v1/models`; empty uses the engine's id.
    pub id: String,
    /// Other ids accepted in the `model` field.
    pub aliases: Vec<String>,
    /// Compute dtype: `auto`, `float32`, `float16` or `bfloat16`.
    pub dtype: String,
    /// Context length; 0 uses the model's own.
    pub context_length: usize,
    /// Prompt tokens per prefill step.
    pub prefill_chunk: usize,
    /// Requests decoded together, one token each per step; more wait in the queue. 8 by default:
    /// with one attention call per layer for the whole batch, 8 sequences decode at about 3x the
    /// aggregate rate of one on the CPU backend (see docs/benchmarks.md).
    pub max_batch: usize,
    /// `max_tokens` for chat requests that do not set it; 0 means up to the context.
    pub default_max_tokens: usize,
    /// `auto` (GPU when the build has one), `cpu` or `gpu`.
    pub device: String,
    /// Bytes of KV state kept for prompt-prefix reuse; 0 disables it.
    pub prefix_cache_bytes: usize,
    /// Where catalog models are pulled to; empty: `$MLX_SERVE_MODELS` or the user's cache dir.
    pub models_dir: String,
    /// Default sampling.
    pub sampling: SamplingDefaults,
    /// Load at start-up instead of on the first request. Unset: yes for `[model]`, no for
    /// `[[models]]` entries.
    pub preload: Option<bool>,
    /// Seconds the model stays resident after its last request (Ollama's `keep_alive`):
    /// negative keeps it for ever, 0 unloads it right after each request.
    pub keep_alive: f64,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            name: "smollm2-135m-instruct".to_owned(),
            id: String::new(),
            aliases: Vec::new(),
            dtype: "auto".to_owned(),
            context_length: 0,
            prefill_chunk: 512,
            max_batch: 8,
            default_max_tokens: 0,
            device: "auto".to_owned(),
            prefix_cache_bytes: 512 << 20,
            models_dir: String::new(),
            sampling: SamplingDefaults::default(),
            preload: None,
            keep_alive: -1.0,
        }
    }
}

/// One served model, resolved from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    /// The id listed in `/v1/models` and accepted in `model`.
    pub id: String,
    /// Its settings (name or path, dtype, context, sampling defaults, ...).
    pub settings: ModelSettings,
    /// Load at start-up.
    pub preload: bool,
    /// Residency after the last request; `None`: for ever.
    pub keep_alive: Option<Duration>,
    /// From the single `[model]` section: pulled at start-up when missing, as it always was.
    pub legacy: bool,
}

impl ModelEntry {
    /// Every name a request may use for this model: its id, its aliases and its name.
    pub fn accepts(&self, requested: &str) -> bool {
        self.id == requested
            || self.settings.name == requested
            || self.settings.aliases.iter().any(|a| a == requested)
    }
}

/// The id a model is served under when `id` is left empty: a catalog name as is, else the
/// file's stem (the rule the engine loader has always used).
pub fn default_model_id(name: &str) -> String {
    if mlx_serve_engine::model::catalog::find(name).is_some() {
        return name.to_owned();
    }
    let path = Path::new(name);
    path.file_stem()
        .or_else(|| path.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_owned())
}

/// Seconds as configured or requested (negative: for ever) as a keep-alive.
pub fn keep_alive_of(seconds: f64) -> Option<Duration> {
    (seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)))
}

impl Settings {
    /// The served models, in order: the `[[models]]` entries, or `[model]` alone.
    pub fn model_table(&self) -> Vec<ModelEntry> {
        let (list, legacy) = if self.models.is_empty() {
            (std::slice::from_ref(&self.model), true)
        } else {
            (self.models.as_slice(), false)
        };
        list.iter()
            .map(|m| ModelEntry {
                id: if m.id.is_empty() {
                    default_model_id(&m.name)
                } else {
                    m.id.clone()
                },
                preload: m.preload.unwrap_or(legacy),
                keep_alive: keep_alive_of(m.keep_alive),
                settings: m.clone(),
                legacy,
            })
            .collect()
    }
}

fn check(
    ok: bool,
    key: impl FnOnce() -> String,
    value: impl ToString,
    expected: &'static str,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidModel {
            key: key(),
            value: value.to_string(),
            expected,
        })
    }
}

/// Ranges of one model's settings; keys are named under `prefix` (`model`, `models[2]`).
pub(super) fn validate_model(prefix: &str, m: &ModelSettings) -> Result<(), ConfigError> {
    let k = |field: &'static str| move || format!("{prefix}.{field}");
    check(
        !m.name.is_empty(),
        k("name"),
        "\"\"",
        "a catalog name or a path",
    )?;
    check(
        ["auto", "float32", "float16", "bfloat16"].contains(&m.dtype.as_str()),
        k("dtype"),
        &m.dtype,
        "one of auto, float32, float16, bfloat16",
    )?;
    check(
        m.context_length <= 1 << 24,
        k("context_length"),
        m.context_length,
        "0 (the model's own) ..= 16777216",
    )?;
    check(
        (1..=65_536).contains(&m.prefill_chunk),
        k("prefill_chunk"),
        m.prefill_chunk,
        "1 ..= 65536",
    )?;
    check(
        (1..=256).contains(&m.max_batch),
        k("max_batch"),
        m.max_batch,
        "1 ..= 256",
    )?;
    check(
        ["auto", "cpu", "gpu"].contains(&m.device.as_str()),
        k("device"),
        &m.device,
        "one of auto, cpu, gpu",
    )?;
    check(
        m.keep_alive.is_finite(),
        k("keep_alive"),
        m.keep_alive,
        "seconds (negative: for ever, 0: unload after each request)",
    )?;
    let d = &m.sampling;
    check(
        (0.0..=2.0).contains(&d.temperature),
        k("sampling.temperature"),
        d.temperature,
        "0 ..= 2",
    )?;
    check(
        d.top_p > 0.0 && d.top_p <= 1.0,
        k("sampling.top_p"),
        d.top_p,
        "0 < top_p <= 1",
    )?;
    check(
        (0.0..=1.0).contains(&d.min_p),
        k("sampling.min_p"),
        d.min_p,
        "0 ..= 1",
    )?;
    check(
        d.repetition_penalty > 0.0 && d.repetition_penalty <= 10.0,
        k("sampling.repetition_penalty"),
        d.repetition_penalty,
        "0 < value <= 10",
    )?;
    Ok(())
}

/// Every `[[models]]` entry in range, and no name that two entries claim.
pub(super) fn validate_table(s: &Settings) -> Result<(), ConfigError> {
    for (i, m) in s.models.iter().enumerate() {
        validate_model(&format!("models[{i}]"), m)?;
    }
    let table = s.model_table();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, e) in table.iter().enumerate() {
        let mut names = vec![e.id.as_str()];
        names.extend(e.settings.aliases.iter().map(String::as_str));
        for name in names {
            let clash = seen.iter().any(|(n, j)| *n == name && *j != i);
            check(
                !clash,
                || format!("models[{i}].id"),
                format!("{name:?}"),
                "an id or alias no other model uses",
            )?;
            seen.push((name, i));
        }
    }
    Ok(())
}
