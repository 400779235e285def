//! What the engine is made of.
//!
//! Pure parts (file formats, tokenizer, template, sampling, text assembly) build without MLX;
//! the tensor code needs the `mlx` feature.

pub mod catalog;
pub mod dequant;
pub mod detok;
pub mod gguf;
pub mod sampling;
pub mod stops;
pub mod template;
pub mod tokenizer;

#[cfg(feature = "mlx")]
pub mod mlx;
