//! `Settings`: one typed struct loaded from `config.toml`, `MLX_SERVE__SECTION__KEY` environment
//! variables and CLI flags (in rising precedence), validated once at start-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlx_serve_actors::cache::CacheSettings;
use serde::{Deserialize, Serialize};

mod aliases;
mod metrics;
mod models;
pub use aliases::ModelAliases;
pub use metrics::MetricsSettings;
pub use models::{default_model_id, keep_alive_of, ModelEntry, ModelSettings};

/// Everything the server is configured with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// HTTP server and request handling.
    pub server: ServerSettings,
    /// The model and its defaults (a one-entry model table when `[[models]]` is absent).
    pub model: ModelSettings,
    /// `[[models]]`: several models behind one server; when present, `[model]` is not served.
    pub models: Vec<ModelSettings>,
    /// Log output.
    pub logging: LoggingSettings,
    /// Tool calling.
    pub tools: ToolsSettings,
    /// Reasoning separation (`[reasoning] parser`).
    pub reasoning: ReasoningSettings,
    /// Admission order and preemption.
    pub scheduler: SchedulerSettings,
    /// Prometheus metrics and the latency window.
    pub metrics: MetricsSettings,
    /// The per-request JSONL trace.
    pub trace: mlx_serve_actors::metrics::TraceSettings,
    /// The response cache (`[cache]`, `[cache.disk]`, `[cache.redis]`).
    pub cache: CacheSettings,
    /// Model-name patterns accepted in `model` and answered by the served model.
    pub aliases: AliasSettings,
}

/// `[aliases]`: `"pattern" = "target"`; `*` in a pattern matches any run of characters. The
/// target is the served model's id or name, or `""` for whichever model is served. The default
/// maps `claude-*` so Claude Code works without configuration; a `[aliases]` table in the file
/// replaces the default as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AliasSettings(pub BTreeMap<String, String>);

impl Default for AliasSettings {
    fn default() -> Self {
        Self(BTreeMap::from([("claude-*".to_owned(), String::new())]))
    }
}

/// `[reasoning]`: how a model's thinking is kept apart from its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReasoningSettings {
    /// `auto` (from the chat template), `none`, `think` (`<think>…</think>`) or `gpt_oss`.
    pub parser: mlx_serve_engine::reasoning::ReasoningFormat,
}

/// What to do when the engine thread dies or wedges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineFailurePolicy {
    /// Load a fresh engine (up to `max_engine_restarts` times), then exit.
    Restart,
    /// Stop the server with a non-zero exit code.
    Exit,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind.
    pub host: String,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// Accepted API keys; empty disables authentication.
    pub api_keys: Vec<String>,
    /// Keys allowed to clear the response cache; empty: any accepted API key.
    pub admin_keys: Vec<String>,
    /// Largest accepted request body, bytes.
    pub body_limit: usize,
    /// Requests that may wait for the engine before new ones get 429.
    pub queue_size: usize,
    /// Seconds a client is told to wait (`Retry-After`) when the queue is full.
    pub retry_after_s: u64,
    /// Longest a single generation may take, seconds.
    pub request_timeout_s: u64,
    /// Seconds between SSE keep-alive comments while waiting for the first token.
    pub keep_alive_s: f64,
    /// Seconds in-flight requests get to finish after SIGTERM/ctrl-c.
    pub shutdown_grace_s: u64,
    /// Origins allowed by CORS; `*` allows all; empty disables CORS headers.
    pub cors_origins: Vec<String>,
    /// HTTP worker threads.
    pub workers: usize,
    /// A single engine step longer than this many seconds means the engine is wedged; a prompt
    /// chunk is allowed this times its weight (`Engine::step_weight`), so a long prefill on a
    /// slow machine is not taken for a hung engine.
    pub engine_wedge_timeout_s: f64,
    /// What to do when the engine dies or wedges.
    pub on_engine_failure: EngineFailurePolicy,
    /// Restarts allowed before giving up and exiting.
    pub max_engine_restarts: u32,
    /// Longest a client may take to send a request body once its headers are in, seconds;
    /// 0 disables. Slower bodies get 408 and the connection is closed.
    pub body_timeout_s: u64,
    /// Requests one client IP may have in flight at once (from headers received until the
    /// response body ends); more get 429. 0 disables.
    pub max_inflight_per_ip: usize,
    /// Models resident at once (0: no bound); the least recently used idle one is unloaded
    /// to make room.
    pub max_loaded_models: usize,
    /// Bytes of weights plus KV reserve (`prefix_cache_bytes`) of all resident models
    /// (0: no bound).
    pub max_loaded_bytes: u64,
    /// Pull a configured catalog model that is not on disk when a request first needs it;
    /// off: such requests get a 404 that says how to pull it. (In `[server]` because TOML
    /// cannot have both `[[models]]` entries and a `[models]` table.)
    pub pull_on_demand: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8080,
            api_keys: Vec::new(),
            admin_keys: Vec::new(),
            body_limit: 4 * 1024 * 1024,
            queue_size: 64,
            retry_after_s: 1,
            request_timeout_s: 600,
            keep_alive_s: 5.0,
            shutdown_grace_s: 10,
            cors_origins: Vec::new(),
            workers: 2,
            engine_wedge_timeout_s: 120.0,
            on_engine_failure: EngineFailurePolicy::Restart,
            max_engine_restarts: 3,
            body_timeout_s: 30,
            max_inflight_per_ip: 256,
            max_loaded_models: 3,
            max_loaded_bytes: 0,
            pull_on_demand: false,
        }
    }
}

/// Default sampling for requests that leave a value out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingDefaults {
    /// Temperature; 0 is greedy.
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// Top-k; 0 disables.
    pub top_k: usize,
    /// Min-p; 0 disables.
    pub min_p: f32,
    /// Repetition penalty; 1 disables.
    pub repetition_penalty: f32,
}

impl Default for SamplingDefaults {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
        }
    }
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingSettings {
    /// `EnvFilter` directive (`info`, `mlx_serve=debug,…`); `RUST_LOG` wins when set.
    pub level: String,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Log prompt and completion text (off: only counts are logged).
    pub log_prompts: bool,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            json: false,
            log_prompts: false,
        }
    }
}

/// `[tools]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsSettings {
    /// Tool-call format the model writes; `auto` detects it from the chat template.
    pub format: mlx_serve_actors::tool_parser::ToolFormat,
    /// Turn calls to functions the request did not offer into `tool_calls` anyway.
    pub allow_unknown_tools: bool,
}

/// `[scheduler]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// `fcfs` (default): requests wait for a free slot, best `priority` first, then arrival.
    /// `priority`: a request that outranks a running one while every slot is busy pauses it.
    pub policy: SchedulerPolicy,
}

/// How `[scheduler] policy` is spelled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerPolicy {
    #[default]
    Fcfs,
    Priority,
}

impl SchedulerPolicy {
    pub fn engine_policy(self) -> mlx_serve_actors::model::actor::Policy {
        match self {
            Self::Fcfs => mlx_serve_actors::model::actor::Policy::Fcfs,
            Self::Priority => mlx_serve_actors::model::actor::Policy::Priority,
        }
    }
}

/// Why the configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an override could not be read or has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value of a model-table entry is outside its accepted range.
    #[error("configuration: `{key}` = {value} is invalid: expected {expected}")]
    InvalidModel {
        /// Dotted key (`models[1].dtype`).
        key: String,
        /// The rejected value.
        value: String,
        /// The accepted range.
        expected: &'static str,
    },
    /// A value is outside its accepted range.
    #[error("configuration: `{key}` = {value} is invalid: expected {expected}")]
    Invalid {
        /// Dotted key (`server.port`).
        key: &'static str,
        /// The rejected value.
        value: String,
        /// The accepted range.
        expected: &'static str,
    },
}

/// Values from the command line that override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`: file to read; when unset, `config.toml` is read if present.
    pub config: Option<PathBuf>,
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--model`.
    pub model: Option<String>,
}

/// Environment variable prefix; `MLX_SERVE__SERVER__PORT=9000` sets `server.port`.
pub const ENV_PREFIX: &str = "MLX_SERVE";

impl Settings {
    /// Load file, environment and overrides, then validate.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let (path, required) = match &overrides.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from("config.toml"), false),
        };
        Self::load_from(&path, required, overrides)
    }

    fn load_from(path: &Path, required: bool, o: &Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(path, required, o, None)
    }

    /// `env`: the variables to read instead of the process environment (tests).
    fn load_with_env(
        path: &Path,
        required: bool,
        o: &Overrides,
        env: Option<config::Map<String, String>>,
    ) -> Result<Self, ConfigError> {
        let file = config::File::from(path)
            .format(config::FileFormat::Toml)
            .required(required);
        let env = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("server.api_keys")
            .with_list_parse_key("server.admin_keys")
            .with_list_parse_key("server.cors_origins")
            .with_list_parse_key("model.aliases")
            .source(env);
        let mut builder = config::Config::builder().add_source(file).add_source(env);
        if let Some(h) = &o.host {
            builder = builder.set_override("server.host", h.as_str())?;
        }
        if let Some(p) = o.port {
            builder = builder.set_override("server.port", p)?;
        }
        if let Some(m) = &o.model {
            builder = builder.set_override("model.name", m.as_str())?;
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        if o.model.is_some() {
            // `--model` serves that one model, whatever table the file has.
            settings.models.clear();
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Reject values outside their ranges, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(
            ok: bool,
            key: &'static str,
            value: impl ToString,
            expected: &'static str,
        ) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    value: value.to_string(),
                    expected,
                })
            }
        }
        metrics::validate(&self.metrics, &self.trace)?;
        let s = &self.server;
        check(
            !s.host.is_empty(),
            "server.host",
            "\"\"",
            "a host name or IP address",
        )?;
        check(
            (1024..=1 << 30).contains(&s.body_limit),
            "server.body_limit",
            s.body_limit,
            "1024 ..= 1073741824 bytes",
        )?;
        check(
            (1..=100_000).contains(&s.queue_size),
            "server.queue_size",
            s.queue_size,
            "1 ..= 100000",
        )?;
        check(
            (1..=3600).contains(&s.retry_after_s),
            "server.retry_after_s",
            s.retry_after_s,
            "1 ..= 3600",
        )?;
        check(
            (1..=86_400).contains(&s.request_timeout_s),
            "server.request_timeout_s",
            s.request_timeout_s,
            "1 ..= 86400",
        )?;
        check(
            s.keep_alive_s > 0.0 && s.keep_alive_s <= 300.0,
            "server.keep_alive_s",
            s.keep_alive_s,
            "0 < seconds <= 300",
        )?;
        check(
            s.shutdown_grace_s <= 3600,
            "server.shutdown_grace_s",
            s.shutdown_grace_s,
            "0 ..= 3600",
        )?;
        check(
            s.body_timeout_s <= 3600,
            "server.body_timeout_s",
            s.body_timeout_s,
            "0 ..= 3600 (0 disables)",
        )?;
        check(
            s.max_inflight_per_ip <= 1_000_000,
            "server.max_inflight_per_ip",
            s.max_inflight_per_ip,
            "0 ..= 1000000 (0 disables)",
        )?;
        check(
            (1..=64).contains(&s.workers),
            "server.workers",
            s.workers,
            "1 ..= 64",
        )?;
        check(
            s.engine_wedge_timeout_s > 0.0 && s.engine_wedge_timeout_s <= 86_400.0,
            "server.engine_wedge_timeout_s",
            s.engine_wedge_timeout_s,
            "0 < seconds <= 86400",
        )?;
        check(
            s.api_keys.iter().all(|k| !k.is_empty()),
            "server.api_keys",
            "\"\"",
            "non-empty keys",
        )?;
        models::validate_model("model", &self.model)?;
        models::validate_table(self)?;
        check(
            self.aliases.0.keys().all(|p| !p.trim().is_empty()),
            "aliases",
            "\"\"",
            "non-empty model-name patterns",
        )?;
        check(
            s.admin_keys.iter().all(|k| !k.is_empty()),
            "server.admin_keys",
            "\"\"",
            "non-empty keys",
        )?;
        let c = &self.cache;
        check(
            (1..=10_000_000).contains(&c.max_entries),
            "cache.max_entries",
            c.max_entries,
            "1 ..= 10000000",
        )?;
        check(
            c.max_bytes >= 1024,
            "cache.max_bytes",
            c.max_bytes,
            "at least 1024 bytes",
        )?;
        check(
            c.ttl_seconds != Some(0),
            "cache.ttl_seconds",
            0,
            "at least 1 second (leave it out for no expiry)",
        )?;
        check(
            !c.disk.enabled || !c.disk.path.as_os_str().is_empty(),
            "cache.disk.path",
            "\"\"",
            "a file path",
        )?;
        check(
            c.disk.max_bytes >= 1 << 16,
            "cache.disk.max_bytes",
            c.disk.max_bytes,
            "at least 65536 bytes",
        )?;
        check(
            c.disk.stored_responses_max_bytes >= 1 << 16,
            "cache.disk.stored_responses_max_bytes",
            c.disk.stored_responses_max_bytes,
            "at least 65536 bytes",
        )?;
        let r = &c.redis;
        check(
            r.url.as_deref().is_none_or(|u| {
                ["redis://", "rediss://", "redis+unix://", "unix://"]
                    .iter()
                    .any(|p| u.starts_with(p))
            }),
            "cache.redis.url",
            r.url.as_deref().unwrap_or(""),
            "a redis://, rediss:// or unix:// URL",
        )?;
        check(
            (1..=60_000).contains(&r.timeout_ms),
            "cache.redis.timeout_ms",
            r.timeout_ms,
            "1 ..= 60000",
        )?;
        check(
            r.ttl_seconds >= 1,
            "cache.redis.ttl_seconds",
            r.ttl_seconds,
            "at least 1",
        )?;
        check(
            !r.namespace.is_empty(),
            "cache.redis.namespace",
            "\"\"",
            "a non-empty prefix",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
