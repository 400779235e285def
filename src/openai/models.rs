//! `GET /v1/models` and `GET /v1/models/{id}` wire types.

use mlx_serve_actors::model::registry::ModelState;
use serde::Serialize;

/// One model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelObject {
    /// Model id, as accepted in `model`.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds (server start).
    pub created: u64,
    /// Always `mlx-serve`.
    pub owned_by: &'static str,
    /// `[aliases]` patterns answered by this model (an mlx-serve extension; absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Whether the model is resident now (an mlx-serve extension, like Ollama's `ps`).
    pub loaded: bool,
    /// `unloaded`, `loading`, `ready` or `failed` (mlx-serve extension).
    pub state: ModelState,
}

impl ModelObject {
    /// A model entry.
    pub fn new(id: String, created: u64) -> Self {
        Self {
            id,
            object: "model",
            created,
            owned_by: "mlx-serve",
            aliases: Vec::new(),
            loaded: false,
            state: ModelState::Unloaded,
        }
    }
}

/// The list.
#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// The served model and its aliases.
    pub data: Vec<ModelObject>,
}
