//! MLX tensor code: the decoder, its KV cache, weight loading and the engine that drives them.
//!
//! Everything here runs on the model actor's thread: MLX evaluates a lazy graph only on the thread
//! that built it, so arrays never leave this module unevaluated.

mod affine_repack;
mod attention;
pub mod config;
mod cpu_ops;
pub mod decoder;
pub mod device;
pub mod engine;
mod ffi;
pub mod gemma3;
pub mod gguf_quant;
mod host_kernels;
mod host_nodes;
pub mod kv_cache;
mod linear;
pub mod loader;
pub mod ops;
pub mod prefix_cache;
pub mod profile;
mod rope;
pub mod slot_attention;
pub mod slot_kv;
pub mod weights;

#[cfg(test)]
mod reference_tests;
