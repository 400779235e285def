//! MLX tensor code (work in progress)
