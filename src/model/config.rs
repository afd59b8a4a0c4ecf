//! Architecture hyper-parameters of the three SD1.5 models, as inferred from tensor shapes by `weights`.

/// CLIP text transformer (SD1.5 uses CLIP ViT-L/14's text tower: hidden 768, 12 layers, 12 heads).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
}

/// SD1.5 UNet2DConditionModel (real model: channels 320/640/1280/1280, cross-attention dim 768, 8 heads).
#[derive(Debug, Clone, PartialEq)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    /// Per down level: whether it has cross-attention transformers (SD1.5: true, true, true, false).
    pub down_block_has_attention: Vec<bool>,
    pub layers_per_block: usize,
    pub cross_attention_dim: usize,
    pub attention_heads: usize,
    pub norm_num_groups: usize,
    pub norm_eps: f64,
}

/// SD1.5 AutoencoderKL (real model: channels 128/256/512/512, 4 latent channels).
#[derive(Debug, Clone, PartialEq)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub scaling_factor: f64,
}

impl ClipConfig {
    /// The text encoder of real SD1.5.
    pub fn sd15() -> Self {
        ClipConfig {
            vocab_size: 49408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
        }
    }
}

impl UNetConfig {
    /// The UNet of real SD1.5.
    pub fn sd15() -> Self {
        UNetConfig {
            in_channels: 4,
            out_channels: 4,
            block_out_channels: vec![320, 640, 1280, 1280],
            down_block_has_attention: vec![true, true, true, false],
            layers_per_block: 2,
            cross_attention_dim: 768,
            attention_heads: 8,
            norm_num_groups: 32,
            norm_eps: 1e-5,
        }
    }
}

impl VaeConfig {
    /// The VAE of real SD1.5.
    pub fn sd15() -> Self {
        VaeConfig {
            in_channels: 3,
            out_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
        }
    }
}
