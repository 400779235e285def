//! Which of our replacements for MLX's stock operations a model runs with.

/// Which of our replacements for MLX's stock operations a model uses. All on for the CPU backend;
/// on GPU backends MLX's fused kernels win, so only the projection fusing stays. Switching them
/// off one by one (`MLX_SERVE_STOCK_OPS`) is how `bench engine --profile` shows what each gains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ops {
    /// One product for q/k/v and one for gate/up instead of five.
    pub fuse_projections: bool,
    /// Grouped-query attention with a shared additive mask instead of `fast::scaled_dot_product_attention`.
    pub grouped_attention: bool,
    /// Softmax and SiLU through `power` instead of MLX's slow CPU `exp` (see `cpu_ops`).
    pub power_exp: bool,
    /// Prefill's softmax and SiLU-gating on the host, one vectorized pass each (see
    /// `host_kernels`), and decode's attention as one node over each sequence's own slot
    /// (`slot_attention`); float32 only.
    pub host_kernels: bool,
    /// Prefill attention as one node that never materialises the scores (`PrefillAttention`
    /// of mlx-sys, a block of keys at a time); float32 on the CPU only.
    pub prefill_attention: bool,
    /// RMSNorm and RoPE as one node each (`host_nodes`) instead of MLX's composed CPU
    /// fallbacks; float32 on the CPU only.
    pub host_nodes: bool,
}

impl Ops {
    pub fn for_backend(cpu: bool) -> Self {
        Self {
            fuse_projections: true,
            grouped_attention: cpu,
            power_exp: cpu,
            host_kernels: cpu,
            prefill_attention: cpu,
            host_nodes: cpu,
        }
    }

    /// Whether a pass of `len` positions in `dtype` runs the host kernels.
    pub(super) fn host_kernels_for(&self, len: i32, dtype: mlx_rs::Dtype) -> bool {
        self.host_kernels && len > 1 && dtype == mlx_rs::Dtype::Float32
    }

    /// Whether the gated activation of a fused gate/up product runs on the host: eagerly in
    /// prefill (`host_kernels`), as one graph node in decode (`host_nodes`).
    pub(super) fn host_glu_for(&self, len: i32, dtype: mlx_rs::Dtype) -> bool {
        self.host_kernels_for(len, dtype) || (self.host_nodes && dtype == mlx_rs::Dtype::Float32)
    }

    /// Whether a pass of `len` positions in `dtype` runs the `PrefillAttention` node.
    pub(super) fn prefill_attention_for(&self, len: i32, dtype: mlx_rs::Dtype) -> bool {
        self.prefill_attention && self.host_kernels_for(len, dtype)
    }

    /// Turns off the replacements named in a comma list (`fuse`, `attention`, `exp`, `host`,
    /// `prefill`, `nodes`, or `all`).
    pub fn without(mut self, names: &str) -> Result<Self, String> {
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "fuse" => self.fuse_projections = false,
                "attention" => self.grouped_attention = false,
                "exp" => self.power_exp = false,
                "host" => self.host_kernels = false,
                "prefill" => self.prefill_attention = false,
                "nodes" => self.host_nodes = false,
                "all" => {
                    self = Self {
                        fuse_projections: false,
                        grouped_attention: false,
                        power_exp: false,
                        host_kernels: false,
                        prefill_attention: false,
                        host_nodes: false,
                    }
                }
                other => {
                    return Err(format!(
                        "unknown op {other:?} in MLX_SERVE_STOCK_OPS; use fuse, attention, exp, host, prefill, nodes or all"
                    ))
                }
            }
        }
        Ok(self)
    }
}

impl Default for Ops {
    fn default() -> Self {
        Self::for_backend(true)
    }
}
