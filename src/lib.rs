//! mlx-serve's front: CLI, configuration, HTTP routes and wire formats.
//!
//! - [`config`]: `Settings` from `config.toml`, environment and flags; `[aliases]`.
//! - [`server`]: `run_server(settings, factory)` and the composition root; [`state`]: what
//!   handlers share (the pipeline plus HTTP-only state).
//! - [`pipeline`]: the one request pipeline ([`pipeline::Pipeline`]: models, cache, tool-parser
//!   and metrics seams, settings) and its SSE driver; it depends only on the actors crate,
//!   [`config`], [`error`] and the SSE framing ([`sse`]). [`routes`] render it per API (their extractors: body, API key,
//!   cache scope, client disconnects); [`openai`], [`anthropic`], [`responses`]: wire types and
//!   translation per API; [`error`]: `ApiError`, one error rendered per API.
//! - [`limits`]: per-client limits (requests in flight per peer IP).
//! - [`cli`]: clap subcommands.

pub mod anthropic;
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
