//! The mlx-serve runtime: the actors the HTTP front talks to, each owning its logic.
//!
//! - [`model`]: the `ModelActor` on its `SyncArbiter` thread and the engine behind it
//!   (MLX model code, GGUF/safetensors loading, tokenizer, chat template, sampling).
//! - [`cache`]: the `CacheActor`, the response cache and its tiers.
//! - [`tool_parser`]: the `ToolParserActor`, model text to OpenAI `tool_calls`.
//! - [`metrics`]: the `MetricsActor` and the Prometheus registry.
//! - [`engine`]: the seam between the model actor and an engine; [`fake`] is the deterministic
//!   engine protocol tests plug in.

pub mod cache;
pub mod engine;
pub mod fake;
pub mod guided;
pub mod metrics;
pub mod model;
pub mod reasoning;
pub mod tool_parser;
