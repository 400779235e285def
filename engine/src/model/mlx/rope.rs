//! Rotary position embeddings as Hugging Face applies them (rotate-half), with the `linear` and
//! `llama3` frequency scalings.

use mlx_rs::error::Exception;
use mlx_rs::fast::rope;
use mlx_rs::Array;

use super::config::ModelConfig;
use super::ffi::rope_per_row;

/// Rotary embedding settings shared by every layer.
pub(super) struct Rope {
    pub dims: i32,
    pub base: f32,
    pub scale: f32,
    /// Per-frequency periods for Llama 3 scaling (replaces `base`).
    pub freqs: Option<Array>,
}

impl Rope {
    pub fn from_config(config: &ModelConfig) -> Result<Self, Exception> {
        let dims = config.head_dim() as i32;
        let base = config.rope_theta as f32;
        let mut rope = Rope {
            dims,
            base,
            scale: 1.0,
            freqs: None,
        };
        let Some(scaling) = &config.rope_scaling else {
            return Ok(rope);
        };
        match scaling.kind() {
            "linear" => rope.scale = 1.0 / scaling.factor.unwrap_or(1.0) as f32,
            "llama3" => {
                let factor = scaling.factor.unwrap_or(8.0);
                let low = scaling.low_freq_factor.unwrap_or(1.0);
                let high = scaling.high_freq_factor.unwrap_or(4.0);
                let original = scaling.original_max_position_embeddings.unwrap_or(8192.0);
                let low_wavelen = original / low;
                let high_wavelen = original / high;
                let periods: Vec<f32> = (0..dims / 2)
                    .map(|i| {
                        let freq = (base as f64).powf(2.0 * i as f64 / dims as f64);
                        let wavelen = 2.0 * std::f64::consts::PI * freq;
                        let scaled = if wavelen > low_wavelen {
                            freq * factor
                        } else if wavelen < high_wavelen {
                            freq
                        } else {
                            let smooth = (original / wavelen - low) / (high - low);
                            freq / ((1.0 - smooth) / factor + smooth)
                        };
                        scaled as f32
                    })
                    .collect();
                rope.freqs = Some(Array::from_slice(&periods, &[dims / 2]));
            }
            _ => {}
        }
        Ok(rope)
    }

    /// Rotates `x: [B, heads, 1, d]` with row `b` at position `positions[b]`; one node when
    /// `host` (see `host_nodes`).
    pub fn apply_rows(&self, x: &Array, positions: &Array, host: bool) -> Result<Array, Exception> {
        if host && x.dtype() == mlx_rs::Dtype::Float32 {
            return self.host(x, positions);
        }
        let base = self.freqs.is_none().then_some(self.base);
        rope_per_row(
            x,
            self.dims,
            base,
            self.scale,
            positions,
            self.freqs.as_ref(),
        )
    }

    pub fn apply(&self, x: &Array, offset: i32, host: bool) -> Result<Array, Exception> {
        if host && x.dtype() == mlx_rs::Dtype::Float32 {
            return self.host(x, &Array::from_slice(&[offset], &[1]));
        }
        match &self.freqs {
            Some(freqs) => rope(x, self.dims, false, None::<f32>, self.scale, offset, freqs),
            None => rope(
                x,
                self.dims,
                false,
                self.base,
                self.scale,
                offset,
                None::<&Array>,
            ),
        }
    }

    fn host(&self, x: &Array, positions: &Array) -> Result<Array, Exception> {
        let freqs = self.freqs.as_ref();
        super::host_nodes::rope(x, self.dims, self.base, self.scale, positions, freqs)
    }
}
