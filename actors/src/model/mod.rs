//! The `ModelActor` on its `SyncArbiter` thread, its scheduler, and the registry of the models
//! a server holds. The engine it drives is the `mlx-serve-engine` crate.

pub mod actor;
pub mod registry;
