//! Named weights, as read from safetensors or converted from GGUF.

use std::collections::HashMap;

use mlx_rs::Array;

/// Weights by their Hugging Face names.
pub type Weights = HashMap<String, Array>;
