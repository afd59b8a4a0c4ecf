//! UNet blocks as in diffusers `unet_2d_blocks.py`: `Downsample2D`, `Upsample2D`, `CrossAttnDownBlock2D` /
//! `DownBlock2D`, `UNetMidBlock2DCrossAttn`, `CrossAttnUpBlock2D` / `UpBlock2D`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::adapter::{AdaptableLayers, LayerMut};
use super::attention::Transformer2DModel;
use super::layers::Conv2d;
use super::resnet::{ResnetBlock2D, ResnetConfig};

/// Nearest-neighbour resize of `[B, C, H, W]` to `[B, C, height, width]` with torch's `F.interpolate(mode="nearest")`
/// index rule: source index `min(floor(dst · (in/out as f32)), in - 1)`.
pub fn interpolate_nearest(xs: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (_, _, in_height, in_width) = xs.dims4()?;
    if height == 2 * in_height && width == 2 * in_width {
        return xs.upsample_nearest2d(height, width);
    }
    let source_indices = |in_size: usize, out_size: usize| -> Result<Tensor> {
        let scale = in_size as f32 / out_size as f32;
        let indices: Vec<u32> = (0..out_size)
            .map(|dst| {
                let src = if out_size == in_size {
                    dst
                } else if out_size == 2 * in_size {
                    dst / 2
                } else {
                    ((dst as f32 * scale).floor() as usize).min(in_size - 1)
                };
                src as u32
            })
            .collect();
        Tensor::from_vec(indices, out_size, xs.device())
    };
    let rows = source_indices(in_height, height)?;
    let cols = source_indices(in_width, width)?;
    xs.index_select(&rows, 2)?.index_select(&cols, 3)
}

/// diffusers `Downsample2D` with a convolution: 3×3 stride 2. `padding` 1 (UNet) pads symmetrically; `padding` 0
/// (VAE encoder) pads only right and bottom by one, as diffusers does.
#[derive(Debug, Clone)]
pub struct Downsample2D {
    pub conv: Conv2d,
    pub padding: usize,
}

impl Downsample2D {
    /// Loads `<prefix>.conv` (`channels → channels`).
    pub fn load(vb: VarBuilder, channels: usize, padding: usize) -> Result<Self> {
        Ok(Downsample2D {
            conv: Conv2d::load(vb.pp("conv"), channels, channels, 3, 2, padding)?,
            padding,
        })
    }
}

impl Module for Downsample2D {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if self.padding == 0 {
            let padded = xs.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?;
            self.conv.forward(&padded)
        } else {
            self.conv.forward(xs)
        }
    }
}

/// diffusers `Upsample2D` with a convolution: nearest ×2 (or to an explicit size), then a 3×3 convolution.
#[derive(Debug, Clone)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    /// Loads `<prefix>.conv` (`channels → channels`).
    pub fn load(vb: VarBuilder, channels: usize) -> Result<Self> {
        Ok(Upsample2D {
            conv: Conv2d::load(vb.pp("conv"), channels, channels, 3, 1, 1)?,
        })
    }

    /// Upsamples to `output_size` (height, width) when given, else by 2.
    pub fn forward(&self, xs: &Tensor, output_size: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, height, width) = xs.dims4()?;
        let (out_h, out_w) = output_size.unwrap_or((2 * height, 2 * width));
        if (out_h, out_w) == (2 * height, 2 * width) {
            return self.conv.forward_upsampled(xs);
        }
        self.conv.forward(&interpolate_nearest(xs, out_h, out_w)?)
    }
}

/// Settings shared by the blocks of one UNet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UNetBlockConfig {
    pub temb_channels: usize,
    pub cross_attention_dim: usize,
    pub attention_heads: usize,
    pub groups: usize,
    pub eps: f64,
}

impl UNetBlockConfig {
    fn resnet(&self, in_channels: usize, out_channels: usize) -> ResnetConfig {
        ResnetConfig {
            in_channels,
            out_channels,
            temb_channels: Some(self.temb_channels),
            groups: self.groups,
            eps: self.eps,
        }
    }

    fn transformer(&self, vb: VarBuilder, channels: usize) -> Result<Transformer2DModel> {
        Transformer2DModel::load(
            vb,
            channels,
            self.cross_attention_dim,
            self.attention_heads,
            self.groups,
        )
    }
}

/// `CrossAttnDownBlock2D` (with `attentions`) or `DownBlock2D` (`attentions` empty).
#[derive(Debug, Clone)]
pub struct CrossAttnDownBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub downsamplers: Option<Downsample2D>,
}

impl CrossAttnDownBlock2D {
    /// Loads `num_layers` resnets (+ transformers when `has_attention`) and a downsampler when `add_downsample`.
    pub fn load(
        vb: VarBuilder,
        config: &UNetBlockConfig,
        (in_channels, out_channels): (usize, usize),
        num_layers: usize,
        has_attention: bool,
        add_downsample: bool,
    ) -> Result<Self> {
        let mut resnets = Vec::with_capacity(num_layers);
        let mut attentions = Vec::new();
        for i in 0..num_layers {
            let resnet_in = if i == 0 { in_channels } else { out_channels };
            let resnet_config = config.resnet(resnet_in, out_channels);
            resnets.push(ResnetBlock2D::load(vb.pp("resnets").pp(i), &resnet_config)?);
            if has_attention {
                attentions.push(config.transformer(vb.pp("attentions").pp(i), out_channels)?);
            }
        }
        let downsamplers = if add_downsample {
            Some(Downsample2D::load(
                vb.pp("downsamplers").pp("0"),
                out_channels,
                1,
            )?)
        } else {
            None
        };
        Ok(CrossAttnDownBlock2D {
            resnets,
            attentions,
            downsamplers,
        })
    }

    /// Returns the block output and the states it hands to the up path (one per layer, plus the downsampled one).
    pub fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut hidden = xs.clone();
        let mut output_states = Vec::with_capacity(self.resnets.len() + 1);
        for (i, resnet) in self.resnets.iter().enumerate() {
            hidden = resnet.forward(&hidden, Some(temb))?;
            if let Some(attention) = self.attentions.get(i) {
                hidden = attention.forward(&hidden, context)?;
            }
            output_states.push(hidden.clone());
        }
        if let Some(downsampler) = &self.downsamplers {
            hidden = downsampler.forward(&hidden)?;
            output_states.push(hidden.clone());
        }
        Ok((hidden, output_states))
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) pairs.
#[derive(Debug, Clone)]
pub struct UNetMidBlock2DCrossAttn {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
}

impl UNetMidBlock2DCrossAttn {
    /// Loads two resnets and one transformer of width `channels`.
    pub fn load(vb: VarBuilder, config: &UNetBlockConfig, channels: usize) -> Result<Self> {
        let resnet_config = config.resnet(channels, channels);
        Ok(UNetMidBlock2DCrossAttn {
            resnets: vec![
                ResnetBlock2D::load(vb.pp("resnets").pp("0"), &resnet_config)?,
                ResnetBlock2D::load(vb.pp("resnets").pp("1"), &resnet_config)?,
            ],
            attentions: vec![config.transformer(vb.pp("attentions").pp("0"), channels)?],
        })
    }

    pub fn forward(&self, xs: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let mut hidden = self.resnets[0].forward(xs, Some(temb))?;
        for (attention, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            hidden = attention.forward(&hidden, context)?;
            hidden = resnet.forward(&hidden, Some(temb))?;
        }
        Ok(hidden)
    }
}

/// Channel counts of one up block, as diffusers computes them in `UNet2DConditionModel.__init__`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpBlockChannels {
    /// Channels of the deepest skip this block consumes (`input_channel` in diffusers).
    pub in_channels: usize,
    /// Channels coming from the previous up block (or the mid block).
    pub prev_output_channels: usize,
    pub out_channels: usize,
}

/// `CrossAttnUpBlock2D` (with `attentions`) or `UpBlock2D` (`attentions` empty).
#[derive(Debug, Clone)]
pub struct CrossAttnUpBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub upsamplers: Option<Upsample2D>,
}

impl CrossAttnUpBlock2D {
    /// Loads `num_layers` resnets taking the concatenated skip (+ transformers) and an upsampler when
    /// `add_upsample`.
    pub fn load(
        vb: VarBuilder,
        config: &UNetBlockConfig,
        channels: UpBlockChannels,
        num_layers: usize,
        has_attention: bool,
        add_upsample: bool,
    ) -> Result<Self> {
        let out_channels = channels.out_channels;
        let mut resnets = Vec::with_capacity(num_layers);
        let mut attentions = Vec::new();
        for i in 0..num_layers {
            let skip_channels = if i == num_layers - 1 {
                channels.in_channels
            } else {
                out_channels
            };
            let resnet_in = if i == 0 {
                channels.prev_output_channels
            } else {
                out_channels
            };
            let resnet_config = config.resnet(resnet_in + skip_channels, out_channels);
            resnets.push(ResnetBlock2D::load(vb.pp("resnets").pp(i), &resnet_config)?);
            if has_attention {
                attentions.push(config.transformer(vb.pp("attentions").pp(i), out_channels)?);
            }
        }
        let upsamplers = if add_upsample {
            Some(Upsample2D::load(vb.pp("upsamplers").pp("0"), out_channels)?)
        } else {
            None
        };
        Ok(CrossAttnUpBlock2D {
            resnets,
            attentions,
            upsamplers,
        })
    }

    /// `skips`: this block's skip states in down-path order (the last one is consumed first);
    /// `upsample_size`: the size of the next block's skips, to upsample odd sizes the way diffusers does.
    pub fn forward(
        &self,
        xs: &Tensor,
        skips: &[Tensor],
        temb: &Tensor,
        context: &Tensor,
        upsample_size: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        if skips.len() != self.resnets.len() {
            candle_core::bail!(
                "up block needs {} skip states, got {}",
                self.resnets.len(),
                skips.len()
            );
        }
        let mut hidden = xs.clone();
        for (i, (resnet, skip)) in self.resnets.iter().zip(skips.iter().rev()).enumerate() {
            hidden = Tensor::cat(&[&hidden, skip], 1)?;
            hidden = resnet.forward(&hidden, Some(temb))?;
            if let Some(attention) = self.attentions.get(i) {
                hidden = attention.forward(&hidden, context)?;
            }
        }
        match &self.upsamplers {
            Some(upsampler) => upsampler.forward(&hidden, upsample_size),
            None => Ok(hidden),
        }
    }
}

/// Resnets and transformers interleaved as the forward pass runs them.
fn collect_resnets_and_attentions<'a>(
    resnets: &'a mut [ResnetBlock2D],
    attentions: &'a mut [Transformer2DModel],
    out: &mut Vec<LayerMut<'a>>,
) {
    for resnet in resnets {
        resnet.collect_layers(out);
    }
    for attention in attentions {
        attention.collect_layers(out);
    }
}

impl AdaptableLayers for CrossAttnDownBlock2D {
    fn collect_layers<'a>(&'a mut self, out: &mut Vec<LayerMut<'a>>) {
        collect_resnets_and_attentions(&mut self.resnets, &mut self.attentions, out);
        if let Some(down) = &mut self.downsamplers {
            out.push(LayerMut::Conv2d(&mut down.conv));
        }
    }
}

impl AdaptableLayers for UNetMidBlock2DCrossAttn {
    fn collect_layers<'a>(&'a mut self, out: &mut Vec<LayerMut<'a>>) {
        collect_resnets_and_attentions(&mut self.resnets, &mut self.attentions, out);
    }
}

impl AdaptableLayers for CrossAttnUpBlock2D {
    fn collect_layers<'a>(&'a mut self, out: &mut Vec<LayerMut<'a>>) {
        collect_resnets_and_attentions(&mut self.resnets, &mut self.attentions, out);
        if let Some(up) = &mut self.upsamplers {
            out.push(LayerMut::Conv2d(&mut up.conv));
        }
    }
}
