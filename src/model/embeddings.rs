//! Timestep embeddings of the UNet: diffusers' `get_timestep_embedding` (`time_proj`) and `TimestepEmbedding`.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::Linear;

/// diffusers `Timesteps` (`time_proj`): sinusoidal features of one timestep, repeated for the batch.
///
/// Computed in f32 exactly as torch does: the (possibly fractional) timestep is rounded to f32, the frequencies are
/// `exp(-ln(10000) * i / (dim/2 - freq_shift))`, and the output is `[sin, cos]` (`[cos, sin]` when
/// `flip_sin_to_cos`). Returns `[batch, dim]`.
pub fn timestep_embedding(
    timestep: f64,
    batch: usize,
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f32,
    device: &Device,
) -> Result<Tensor> {
    let half_dim = dim / 2;
    let minus_log_max_period = -(10000f64.ln()) as f32;
    let timestep = timestep as f32;
    let arguments: Vec<f32> = (0..half_dim)
        .map(|i| {
            let exponent = minus_log_max_period * i as f32 / (half_dim as f32 - freq_shift);
            timestep * exponent.exp()
        })
        .collect();
    let sines = arguments.iter().map(|a| a.sin());
    let cosines = arguments.iter().map(|a| a.cos());
    let mut row: Vec<f32> = if flip_sin_to_cos {
        cosines.chain(sines).collect()
    } else {
        sines.chain(cosines).collect()
    };
    row.resize(dim, 0.0);
    let row = Tensor::from_vec(row, (1, dim), device)?;
    row.repeat((batch, 1))
}

/// diffusers `TimestepEmbedding` (`time_embedding`): `linear_2(silu(linear_1(x)))`.
#[derive(Debug, Clone)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    /// Loads `<prefix>.linear_1` (`in_channels → time_embed_dim`) and `<prefix>.linear_2`.
    pub fn load(vb: VarBuilder, in_channels: usize, time_embed_dim: usize) -> Result<Self> {
        Ok(TimestepEmbedding {
            linear_1: Linear::load(vb.pp("linear_1"), in_channels, time_embed_dim, true)?,
            linear_2: Linear::load(vb.pp("linear_2"), time_embed_dim, time_embed_dim, true)?,
        })
    }
}

impl Module for TimestepEmbedding {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(xs)?.silu()?)
    }
}
