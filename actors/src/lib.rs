//! The mlx-serve actors the HTTP front talks to, each a thin shell over plain logic tested
//! without a running system. The engine they drive is the `mlx-serve-engine` crate.
//!
//! - [`model`]: the `ModelActor` on its `SyncArbiter` thread, its scheduler and the registry
//!   of loaded models.
//! - [`cache`]: the `CacheActor`, the response cache and its tiers.
//! - [`tool_parser`]: the `ToolParserActor`, model text to OpenAI `tool_calls`.
//! - [`metrics`]: the `MetricsActor`, the Prometheus registry and the trace analyzer.

pub mod cache;
pub mod metrics;
pub mod model;
pub mod tool_parser;
