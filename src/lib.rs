//! mlx-serve's front: CLI, configuration, HTTP routes and wire formats.
pub mod bench;
