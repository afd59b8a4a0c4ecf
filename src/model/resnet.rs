//! diffusers `ResnetBlock2D` (UNet: with a time-embedding projection; VAE: without), `time_embedding_norm`
//! "default", output scale 1.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::adapter::{AdaptableLayers, LayerMut};
use super::layers::{Conv2d, GroupNorm, Linear};

/// Shape and normalisation settings of one resnet block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResnetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Width of the time embedding (`None` in the VAE: no `time_emb_proj`).
    pub temb_channels: Option<usize>,
    pub groups: usize,
    pub eps: f64,
}

/// `conv2(silu(norm2(conv1(silu(norm1(x))) + time_emb_proj(silu(temb))))) + shortcut(x)`.
#[derive(Debug, Clone)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    /// 1×1 convolution, present when the channel count changes.
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    /// Loads `<prefix>.{norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut}`.
    pub fn load(vb: VarBuilder, config: &ResnetConfig) -> Result<Self> {
        let (in_c, out_c) = (config.in_channels, config.out_channels);
        let time_emb_proj = match config.temb_channels {
            Some(temb) => Some(Linear::load(vb.pp("time_emb_proj"), temb, out_c, true)?),
            None => None,
        };
        let conv_shortcut = if in_c != out_c {
            Some(Conv2d::load(vb.pp("conv_shortcut"), in_c, out_c, 1, 1, 0)?)
        } else {
            None
        };
        Ok(ResnetBlock2D {
            norm1: GroupNorm::load(vb.pp("norm1"), config.groups, in_c, config.eps)?,
            conv1: Conv2d::load(vb.pp("conv1"), in_c, out_c, 3, 1, 1)?,
            time_emb_proj,
            norm2: GroupNorm::load(vb.pp("norm2"), config.groups, out_c, config.eps)?,
            conv2: Conv2d::load(vb.pp("conv2"), out_c, out_c, 3, 1, 1)?,
            conv_shortcut,
        })
    }

    /// `xs: [B, C_in, H, W]`, `temb: [B, temb_channels]` (ignored when the block has no `time_emb_proj`).
    ///
    /// GroupNorm and SiLU are fused into the convolutions that read them (`Conv2d::forward_normed`); the bias, the
    /// time embedding shift and the shortcut are written into the convolutions' outputs before they accumulate.
    pub fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let shift = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(temb)) => Some(proj.forward(&temb.silu()?)?),
            _ => None,
        };
        let hidden = self
            .conv1
            .forward_normed(xs, &self.norm1, shift.as_ref(), None)?;
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(xs)?,
            None => xs.clone(),
        };
        self.conv2
            .forward_normed(&hidden, &self.norm2, None, Some(&shortcut))
    }
}

impl AdaptableLayers for ResnetBlock2D {
    /// `conv1`, `time_emb_proj`, `conv2`, `conv_shortcut` (those present).
    fn collect_layers<'a>(&'a mut self, out: &mut Vec<LayerMut<'a>>) {
        out.push(LayerMut::Conv2d(&mut self.conv1));
        if let Some(proj) = &mut self.time_emb_proj {
            out.push(LayerMut::Linear(proj));
        }
        out.push(LayerMut::Conv2d(&mut self.conv2));
        if let Some(shortcut) = &mut self.conv_shortcut {
            out.push(LayerMut::Conv2d(shortcut));
        }
    }
}
