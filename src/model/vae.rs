//! SD1.5 `AutoencoderKL` (diffusers names): latent → image decoding and image → (mean, logvar) encoding.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::VaeAttention;
use super::config::VaeConfig;
use super::layers::{Conv2d, GroupNorm};
use super::resnet::{ResnetBlock2D, ResnetConfig};
use super::unet_blocks::{Downsample2D, Upsample2D};

/// GroupNorm epsilon used everywhere in the VAE.
const VAE_EPS: f64 = 1e-6;

fn vae_resnet(
    vb: VarBuilder,
    in_channels: usize,
    out_channels: usize,
    groups: usize,
) -> Result<ResnetBlock2D> {
    let config = ResnetConfig {
        in_channels,
        out_channels,
        temb_channels: None,
        groups,
        eps: VAE_EPS,
    };
    ResnetBlock2D::load(vb, &config)
}

/// diffusers `UNetMidBlock2D` of the VAE: resnet, single-head self-attention, resnet.
#[derive(Debug, Clone)]
pub struct UNetMidBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<VaeAttention>,
}

impl UNetMidBlock2D {
    /// Loads `<prefix>.resnets.{0,1}` and `<prefix>.attentions.0`.
    pub fn load(vb: VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        Ok(UNetMidBlock2D {
            resnets: vec![
                vae_resnet(vb.pp("resnets").pp("0"), channels, channels, groups)?,
                vae_resnet(vb.pp("resnets").pp("1"), channels, channels, groups)?,
            ],
            attentions: vec![VaeAttention::load(
                vb.pp("attentions").pp("0"),
                channels,
                groups,
            )?],
        })
    }
}

impl Module for UNetMidBlock2D {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut hidden = self.resnets[0].forward(xs, None)?;
        for (attention, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            hidden = attention.forward(&hidden)?;
            hidden = resnet.forward(&hidden, None)?;
        }
        Ok(hidden)
    }
}

/// diffusers `DownEncoderBlock2D`: resnets, then a right/bottom-padded stride-2 downsampler.
#[derive(Debug, Clone)]
pub struct DownEncoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsamplers: Option<Downsample2D>,
}

impl Module for DownEncoderBlock2D {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut hidden = xs.clone();
        for resnet in &self.resnets {
            hidden = resnet.forward(&hidden, None)?;
        }
        match &self.downsamplers {
            Some(downsampler) => downsampler.forward(&hidden),
            None => Ok(hidden),
        }
    }
}

/// diffusers `UpDecoderBlock2D`: resnets, then a nearest ×2 upsampler with a convolution.
#[derive(Debug, Clone)]
pub struct UpDecoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub upsamplers: Option<Upsample2D>,
}

impl Module for UpDecoderBlock2D {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut hidden = xs.clone();
        for resnet in &self.resnets {
            hidden = resnet.forward(&hidden, None)?;
        }
        match &self.upsamplers {
            Some(upsampler) => upsampler.forward(&hidden, None),
            None => Ok(hidden),
        }
    }
}

/// Loads `count` resnets `<prefix>.resnets.{i}`, the first taking `in_channels`.
fn load_resnets(
    vb: &VarBuilder,
    count: usize,
    (in_channels, out_channels): (usize, usize),
    groups: usize,
) -> Result<Vec<ResnetBlock2D>> {
    (0..count)
        .map(|j| {
            let resnet_in = if j == 0 { in_channels } else { out_channels };
            vae_resnet(vb.pp("resnets").pp(j), resnet_in, out_channels, groups)
        })
        .collect()
}

/// diffusers `Encoder`: image `[B, 3, H, W]` → `[B, 2·latent, H/8, W/8]` (mean ‖ logvar before `quant_conv`).
#[derive(Debug, Clone)]
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<DownEncoderBlock2D>,
    pub mid_block: UNetMidBlock2D,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Encoder {
    /// Loads `<prefix>.{conv_in, down_blocks, mid_block, conv_norm_out, conv_out}`.
    pub fn load(vb: VarBuilder, config: &VaeConfig) -> Result<Self> {
        let channels = &config.block_out_channels;
        let groups = config.norm_num_groups;
        let (first, last) = channel_ends(channels)?;
        let mut down_blocks = Vec::with_capacity(channels.len());
        let mut output_channel = first;
        for (i, &block_channels) in channels.iter().enumerate() {
            let input_channel = output_channel;
            output_channel = block_channels;
            let vb_block = vb.pp("down_blocks").pp(i);
            let resnets = load_resnets(
                &vb_block,
                config.layers_per_block,
                (input_channel, output_channel),
                groups,
            )?;
            let downsamplers = if i + 1 < channels.len() {
                Some(Downsample2D::load(
                    vb_block.pp("downsamplers").pp("0"),
                    output_channel,
                    0,
                )?)
            } else {
                None
            };
            down_blocks.push(DownEncoderBlock2D {
                resnets,
                downsamplers,
            });
        }
        Ok(Encoder {
            conv_in: Conv2d::load(vb.pp("conv_in"), config.in_channels, first, 3, 1, 1)?,
            down_blocks,
            mid_block: UNetMidBlock2D::load(vb.pp("mid_block"), last, groups)?,
            conv_norm_out: GroupNorm::load(vb.pp("conv_norm_out"), groups, last, VAE_EPS)?,
            conv_out: Conv2d::load(vb.pp("conv_out"), last, 2 * config.latent_channels, 3, 1, 1)?,
        })
    }
}

impl Module for Encoder {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut hidden = self.conv_in.forward(xs)?;
        for block in &self.down_blocks {
            hidden = block.forward(&hidden)?;
        }
        let hidden = self.mid_block.forward(&hidden)?;
        self.conv_out
            .forward(&self.conv_norm_out.forward_silu(&hidden)?)
    }
}

/// diffusers `Decoder`: latent `[B, latent, h, w]` → image `[B, 3, 8h, 8w]`.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: UNetMidBlock2D,
    pub up_blocks: Vec<UpDecoderBlock2D>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Decoder {
    /// Loads `<prefix>.{conv_in, mid_block, up_blocks, conv_norm_out, conv_out}`.
    pub fn load(vb: VarBuilder, config: &VaeConfig) -> Result<Self> {
        let channels = &config.block_out_channels;
        let groups = config.norm_num_groups;
        let (first, last) = channel_ends(channels)?;
        let reversed: Vec<usize> = channels.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(reversed.len());
        let mut output_channel = reversed[0];
        for (i, &block_channels) in reversed.iter().enumerate() {
            let prev_output_channel = output_channel;
            output_channel = block_channels;
            let vb_block = vb.pp("up_blocks").pp(i);
            let resnets = load_resnets(
                &vb_block,
                config.layers_per_block + 1,
                (prev_output_channel, output_channel),
                groups,
            )?;
            let upsamplers = if i + 1 < reversed.len() {
                Some(Upsample2D::load(
                    vb_block.pp("upsamplers").pp("0"),
                    output_channel,
                )?)
            } else {
                None
            };
            up_blocks.push(UpDecoderBlock2D {
                resnets,
                upsamplers,
            });
        }
        Ok(Decoder {
            conv_in: Conv2d::load(vb.pp("conv_in"), config.latent_channels, last, 3, 1, 1)?,
            mid_block: UNetMidBlock2D::load(vb.pp("mid_block"), last, groups)?,
            up_blocks,
            conv_norm_out: GroupNorm::load(vb.pp("conv_norm_out"), groups, first, VAE_EPS)?,
            conv_out: Conv2d::load(vb.pp("conv_out"), first, config.out_channels, 3, 1, 1)?,
        })
    }
}

impl Module for Decoder {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut hidden = self.conv_in.forward(xs)?;
        hidden = self.mid_block.forward(&hidden)?;
        for block in &self.up_blocks {
            hidden = block.forward(&hidden)?;
        }
        // `hidden` is the last block's fresh output, held only here: normalised in place.
        let hidden = self.conv_norm_out.forward_in_place(hidden, true)?;
        self.conv_out.forward(&hidden)
    }
}

/// First and last entries of `block_out_channels`, or an error when it is empty.
fn channel_ends(channels: &[usize]) -> Result<(usize, usize)> {
    match (channels.first(), channels.last()) {
        (Some(&first), Some(&last)) => Ok((first, last)),
        _ => candle_core::bail!("VAE config has no block_out_channels"),
    }
}

/// The KL autoencoder: `encoder` + `quant_conv`, `post_quant_conv` + `decoder`.
#[derive(Debug, Clone)]
pub struct AutoEncoderKL {
    pub encoder: Encoder,
    pub quant_conv: Conv2d,
    pub post_quant_conv: Conv2d,
    pub decoder: Decoder,
    pub config: VaeConfig,
}

impl AutoEncoderKL {
    /// Loads every tensor of the VAE described by `config` from `vb` (diffusers names, root prefix).
    pub fn load(vb: VarBuilder, config: &VaeConfig) -> Result<Self> {
        let latent = config.latent_channels;
        Ok(AutoEncoderKL {
            encoder: Encoder::load(vb.pp("encoder"), config)?,
            quant_conv: Conv2d::load(vb.pp("quant_conv"), 2 * latent, 2 * latent, 1, 1, 0)?,
            post_quant_conv: Conv2d::load(vb.pp("post_quant_conv"), latent, latent, 1, 1, 0)?,
            decoder: Decoder::load(vb.pp("decoder"), config)?,
            config: config.clone(),
        })
    }

    /// Decodes latents already divided by the scaling factor: `[B, latent, h, w]` → `[B, 3, 8h, 8w]`, roughly in
    /// `[-1, 1]` (not clamped).
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.decoder
            .forward(&self.post_quant_conv.forward(latents)?)
    }

    /// Encodes an image in `[-1, 1]` (`[B, 3, H, W]`) to the posterior's `(mean, logvar)`, each
    /// `[B, latent, H/8, W/8]`, with logvar clamped to `[-30, 20]` as diffusers does. Not scaled.
    pub fn encode(&self, image: &Tensor) -> Result<(Tensor, Tensor)> {
        let moments = self.quant_conv.forward(&self.encoder.forward(image)?)?;
        let latent = self.config.latent_channels;
        let mean = moments.narrow(1, 0, latent)?;
        let logvar = moments.narrow(1, latent, latent)?.clamp(-30f32, 20f32)?;
        Ok((mean, logvar))
    }
}
