//! mlx-serve's front: CLI, configuration, HTTP routes and wire formats.
//!
//! - [`config`]: `Settings` from `config.toml`, environment and flags.
//! - [`server`]: `run_server(settings, factory)`; [`state`]: what handlers share.
//! - [`pipeline`]: the one request pipeline (cache, model, tool-parser and metrics seams) and
//!   its SSE driver; [`routes`] render it per API; [`openai`], [`anthropic`], [`responses`]: wire
//!   types and translation per API; [`error`]: `ApiError`.
//! - [`limits`]: per-client limits (requests in flight per peer IP).
//! - [`cli`]: clap subcommands.

pub mod anthropic;
pub mod bench;
pub mod cli;
pub mod config;
pub mod connection;
pub mod error;
pub mod keep_alive;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod openai;
pub mod pipeline;
pub mod responses;
pub mod routes;
pub mod server;
pub mod sse;
pub mod state;
pub mod tools;

pub use mlx_serve_actors::model::actor::EngineFactory;
pub use server::{
    run_server, run_server_models, run_server_with, start_server, start_server_with_loader,
    RunningServer,
};
