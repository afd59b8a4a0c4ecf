//! SD1.5 `UNet2DConditionModel` (diffusers names): ε prediction from a noisy latent, a timestep and text features.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::adapter::{AdaptableLayers, LayerMut};
use super::config::UNetConfig;
use super::embeddings::{timestep_embedding, TimestepEmbedding};
use super::layers::{Conv2d, GroupNorm};
use super::unet_blocks::{
    CrossAttnDownBlock2D, CrossAttnUpBlock2D, UNetBlockConfig, UNetMidBlock2DCrossAttn,
    UpBlockChannels,
};

/// The conditional UNet: `conv_in`, `time_proj` + `time_embedding`, `down_blocks`, `mid_block`, `up_blocks`,
/// `conv_norm_out`, SiLU, `conv_out`.
#[derive(Debug, Clone)]
pub struct UNet2DConditionModel {
    pub conv_in: Conv2d,
    /// Width of the sinusoidal `time_proj` features (`block_out_channels[0]`).
    pub time_proj_dim: usize,
    pub time_embedding: TimestepEmbedding,
    pub down_blocks: Vec<CrossAttnDownBlock2D>,
    pub mid_block: UNetMidBlock2DCrossAttn,
    pub up_blocks: Vec<CrossAttnUpBlock2D>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    pub config: UNetConfig,
}

impl UNet2DConditionModel {
    /// Loads every tensor of the UNet described by `config` from `vb` (diffusers names, root prefix).
    pub fn load(vb: VarBuilder, config: &UNetConfig) -> Result<Self> {
        let channels = &config.block_out_channels;
        let levels = channels.len();
        if levels == 0 || config.down_block_has_attention.len() != levels {
            candle_core::bail!(
                "UNet config needs one attention flag per level: {} levels, {} flags",
                levels,
                config.down_block_has_attention.len()
            );
        }
        let time_proj_dim = channels[0];
        let temb_channels = 4 * channels[0];
        let blocks = UNetBlockConfig {
            temb_channels,
            cross_attention_dim: config.cross_attention_dim,
            attention_heads: config.attention_heads,
            groups: config.norm_num_groups,
            eps: config.norm_eps,
        };
        let down_blocks = Self::load_down_blocks(vb.pp("down_blocks"), config, &blocks)?;
        let mid_block =
            UNetMidBlock2DCrossAttn::load(vb.pp("mid_block"), &blocks, channels[levels - 1])?;
        let up_blocks = Self::load_up_blocks(vb.pp("up_blocks"), config, &blocks)?;
        Ok(UNet2DConditionModel {
            conv_in: Conv2d::load(vb.pp("conv_in"), config.in_channels, channels[0], 3, 1, 1)?,
            time_proj_dim,
            time_embedding: TimestepEmbedding::load(
                vb.pp("time_embedding"),
                time_proj_dim,
                temb_channels,
            )?,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::load(
                vb.pp("conv_norm_out"),
                config.norm_num_groups,
                channels[0],
                config.norm_eps,
            )?,
            conv_out: Conv2d::load(vb.pp("conv_out"), channels[0], config.out_channels, 3, 1, 1)?,
            config: config.clone(),
        })
    }

    fn load_down_blocks(
        vb: VarBuilder,
        config: &UNetConfig,
        blocks: &UNetBlockConfig,
    ) -> Result<Vec<CrossAttnDownBlock2D>> {
        let channels = &config.block_out_channels;
        let mut down_blocks = Vec::with_capacity(channels.len());
        let mut output_channel = channels[0];
        for (i, &block_channels) in channels.iter().enumerate() {
            let input_channel = output_channel;
            output_channel = block_channels;
            let is_final_block = i == channels.len() - 1;
            down_blocks.push(CrossAttnDownBlock2D::load(
                vb.pp(i),
                blocks,
                (input_channel, output_channel),
                config.layers_per_block,
                config.down_block_has_attention[i],
                !is_final_block,
            )?);
        }
        Ok(down_blocks)
    }

    fn load_up_blocks(
        vb: VarBuilder,
        config: &UNetConfig,
        blocks: &UNetBlockConfig,
    ) -> Result<Vec<CrossAttnUpBlock2D>> {
        let reversed: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
        let reversed_attention: Vec<bool> = config
            .down_block_has_attention
            .iter()
            .rev()
            .copied()
            .collect();
        let mut up_blocks = Vec::with_capacity(reversed.len());
        let mut output_channel = reversed[0];
        for i in 0..reversed.len() {
            let prev_output_channels = output_channel;
            output_channel = reversed[i];
            let in_channels = reversed[(i + 1).min(reversed.len() - 1)];
            let is_final_block = i == reversed.len() - 1;
            let channels = UpBlockChannels {
                in_channels,
                prev_output_channels,
                out_channels: output_channel,
            };
            up_blocks.push(CrossAttnUpBlock2D::load(
                vb.pp(i),
                blocks,
                channels,
                config.layers_per_block + 1,
                reversed_attention[i],
                !is_final_block,
            )?);
        }
        Ok(up_blocks)
    }

    /// Predicts the noise: `sample [B, in_channels, h, w]`, one (possibly fractional) `timestep` for the whole
    /// batch, `encoder_hidden_states [B, L, cross_attention_dim]`. Returns `[B, out_channels, h, w]`.
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        encoder_hidden_states: &Tensor,
    ) -> Result<Tensor> {
        let batch = sample.dim(0)?;
        let t_emb = timestep_embedding(
            timestep,
            batch,
            self.time_proj_dim,
            true,
            0.0,
            sample.device(),
        )?
        .to_dtype(sample.dtype())?;
        let emb = self.time_embedding.forward(&t_emb)?;

        let mut hidden = self.conv_in.forward(sample)?;
        let mut skips = vec![hidden.clone()];
        for block in &self.down_blocks {
            let (out, states) = block.forward(&hidden, &emb, encoder_hidden_states)?;
            hidden = out;
            skips.extend(states);
        }
        hidden = self
            .mid_block
            .forward(&hidden, &emb, encoder_hidden_states)?;
        for block in &self.up_blocks {
            let taken = block.resnets.len().min(skips.len());
            let block_skips = skips.split_off(skips.len() - taken);
            let upsample_size = match skips.last() {
                Some(next_skip) => {
                    let (_, _, h, w) = next_skip.dims4()?;
                    Some((h, w))
                }
                None => None,
            };
            hidden = block.forward(
                &hidden,
                &block_skips,
                &emb,
                encoder_hidden_states,
                upsample_size,
            )?;
        }
        self.conv_out
            .forward(&self.conv_norm_out.forward_silu(&hidden)?)
    }
}

impl AdaptableLayers for UNet2DConditionModel {
    /// Every Linear and Conv2d of the UNet (`conv_in`, `time_embedding.linear_{1,2}`, blocks, `conv_out`).
    fn collect_layers<'a>(&'a mut self, out: &mut Vec<LayerMut<'a>>) {
        out.push(LayerMut::Conv2d(&mut self.conv_in));
        out.push(LayerMut::Linear(&mut self.time_embedding.linear_1));
        out.push(LayerMut::Linear(&mut self.time_embedding.linear_2));
        for block in &mut self.down_blocks {
            block.collect_layers(out);
        }
        self.mid_block.collect_layers(out);
        for block in &mut self.up_blocks {
            block.collect_layers(out);
        }
        out.push(LayerMut::Conv2d(&mut self.conv_out));
    }
}
