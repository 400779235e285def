//! The `SlotAttention` primitive of `csrc/slot_attention.cpp`: a decode step's attention over
//! each sequence's own KV slot, as one lazy MLX node whose arithmetic the caller supplies.

/// `out[b, h, :]` from `q[b, h, :]` over keys/values `[b, h / (heads / kv_heads), 0..=positions[b], :]`.
pub type SlotAttentionFn = unsafe extern "C" fn(
    q: *const f32,
    keys: *const f32,
    values: *const f32,
    positions: *const i32,
    batch: i64,
    heads: i64,
    kv_heads: i64,
    capacity: i64,
    head_dim: i64,
    scale: f32,
    out: *mut f32,
);

extern "C" {
    /// Builds the node; 0 on success, else see [`mlx_serve_slot_attention_last_error`].
    pub fn mlx_serve_slot_attention(
        res: *mut crate::mlx_array,
        q: crate::mlx_array,
        keys: crate::mlx_array,
        values: crate::mlx_array,
        positions: crate::mlx_array,
        scale: f32,
        kernel: SlotAttentionFn,
        stream: crate::mlx_stream,
    ) -> i32;
    /// The message of this thread's last failed call.
    pub fn mlx_serve_slot_attention_last_error() -> *const std::os::raw::c_char;
}
