//! The mlx-serve engine: everything that turns a prompt into tokens, with no actor or HTTP code.
//!
//! - [`engine`]: the seam a scheduler drives (the `Engine` trait, requests, events, stats).
//! - [`model`]: MLX model code, GGUF/safetensors loading, the catalog, tokenizer, chat template,
//!   sampling, stop strings and text assembly.
//! - [`guided`]: constrained decoding (JSON Schema, regex, Lark) on llguidance.
//! - [`reasoning`]: splitting a model's reasoning from its answer.
//! - `fake` (feature `testing`): the deterministic and scripted engines protocol tests plug in.

pub mod engine;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod guided;
pub mod model;
pub mod reasoning;
