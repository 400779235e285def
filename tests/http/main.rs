//! HTTP protocol tests: a real server on a loopback port over the deterministic fake engine.

mod common;

mod anthropic;
mod anthropic_routes;
mod anthropic_tools;
mod api;
mod cache;
mod choices;
mod cli;
mod errors;
mod hostile;
mod metrics;
mod models;
mod priority;
mod reasoning;
mod reliability;
#[path = "../replay/mod.rs"]
mod replay;
mod responses;
mod responses_tiers;
mod runtime;
mod seams;
mod streaming;
mod structured;
mod tool_stream;
mod tools;
