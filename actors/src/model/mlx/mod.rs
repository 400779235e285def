//! MLX tensor code: the decoder, its KV cache, weight loading and the engine that drives them.
//!
//! Everything here runs on the model actor's thread: MLX evaluates a lazy graph only on the thread
//! that built it, so arrays never leave this module unevaluated.

pub mod config;
pub mod decoder;
pub mod device;
pub mod engine;
mod ffi;
pub mod kv_cache;
pub mod loader;
pub mod prefix_cache;

#[cfg(test)]
mod reference_tests;
