//! Basic layers shared by the three models: Linear, Conv2d, GroupNorm, LayerNorm.
//!
//! Every layer keeps the diffusers name of its weight (`name`), so adapters (LoRA, issue 3) can find the module
//! they target, and forward passes go through one place that the fast kernels (issue 6) can take over.
//! `Linear` and `Conv2d` compute `forward_base` (the plain matmul / convolution) and then add their unmerged
//! adapters (see `adapter.rs`); the two parts are kept apart on purpose.

use super::kernels::conv::{conv2d, PackedConvWeight};
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::adapter::Adapter;

/// A fully connected layer `y = x Wᵀ + b` with the weight stored as `[out, in]` (PyTorch layout).
#[derive(Debug, Clone)]
pub struct Linear {
    pub name: String,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// Unmerged adapters added to the output (empty for a plain model).
    pub adapters: Vec<Adapter>,
}

impl Linear {
    /// Loads `<prefix>.weight` (`[out, in]`) and, when `with_bias`, `<prefix>.bias`.
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize, with_bias: bool) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if with_bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Linear {
            name: vb.prefix(),
            weight,
            bias,
            adapters: Vec::new(),
        })
    }
}

impl Linear {
    /// Like [`Linear::load`], but also accepts a weight stored as a 1×1 convolution `[out, in, 1, 1]` (the LDM
    /// layout of the VAE attention projections) and keeps it as `[out, in]`.
    pub fn load_from_linear_or_1x1_conv(
        vb: VarBuilder,
        in_dim: usize,
        out_dim: usize,
        with_bias: bool,
    ) -> Result<Self> {
        match Self::load(vb.clone(), in_dim, out_dim, with_bias) {
            Ok(linear) => Ok(linear),
            Err(linear_err) => {
                let Ok(conv_weight) = vb.get((out_dim, in_dim, 1, 1), "weight") else {
                    return Err(linear_err);
                };
                let bias = if with_bias {
                    Some(vb.get(out_dim, "bias")?)
                } else {
                    None
                };
                Ok(Linear {
                    name: vb.prefix(),
                    weight: conv_weight.reshape((out_dim, in_dim))?,
                    bias,
                    adapters: Vec::new(),
                })
            }
        }
    }
}

impl Linear {
    /// `x Wᵀ + b` without adapters.
    pub fn forward_base(&self, xs: &Tensor) -> Result<Tensor> {
        let inner = candle_nn::Linear::new(self.weight.clone(), self.bias.clone());
        inner.forward(xs)
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = self.forward_base(xs)?;
        self.forward_with_adapters(xs, ys)
    }
}

/// A 2-D convolution over NCHW tensors, weight `[out, in, k, k]`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub name: String,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
    /// Unmerged adapters added to the output (empty for a plain model).
    pub adapters: Vec<Adapter>,
}

impl Conv2d {
    /// Loads `<prefix>.weight` and `<prefix>.bias` of a square `kernel`×`kernel` convolution.
    pub fn load(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let weight = vb.get((out_channels, in_channels, kernel, kernel), "weight")?;
        let bias = Some(vb.get(out_channels, "bias")?);
        Ok(Conv2d {
            name: vb.prefix(),
            weight,
            bias,
            stride,
            padding,
            adapters: Vec::new(),
        })
    }
}

impl Conv2d {
    /// The convolution plus bias, without adapters (f32: the packed kernel of `kernels::conv`).
    pub fn forward_base(&self, xs: &Tensor) -> Result<Tensor> {
        if xs.dtype() != DType::F32 || self.weight.dtype() != DType::F32 {
            let ys = xs.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
            return match &self.bias {
                Some(bias) => ys.broadcast_add(&bias.reshape((1, (), 1, 1))?),
                None => Ok(ys),
            };
        }
        let weight = PackedConvWeight::new(&self.weight)?;
        conv2d(xs, &weight, self.bias.as_ref(), self.stride, self.padding)
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = self.forward_base(xs)?;
        self.forward_with_adapters(xs, ys)
    }
}

/// GroupNorm over NCHW (or N,C,…) tensors with an affine transform, computed in f32.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    pub inner: candle_nn::GroupNorm,
}

impl GroupNorm {
    /// Loads `<prefix>.weight` and `<prefix>.bias` for `channels` channels in `groups` groups.
    pub fn load(vb: VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<Self> {
        Ok(GroupNorm {
            inner: candle_nn::group_norm(groups, channels, eps, vb)?,
        })
    }
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.inner.forward(xs)
    }
}

/// LayerNorm over the last dimension with weight and bias.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub inner: candle_nn::LayerNorm,
}

impl LayerNorm {
    /// Loads `<prefix>.weight` and `<prefix>.bias` of size `dim`.
    pub fn load(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            inner: candle_nn::layer_norm(dim, eps, vb)?,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.inner.forward(xs)
    }
}
