//! Basic layers shared by the three models: Linear, Conv2d, GroupNorm, LayerNorm.
//!
//! Every layer keeps the diffusers name of its weight (`name`), so adapters (LoRA, issue 3) can find the module
//! they target, and forward passes go through one place that the fast kernels (issue 6) can take over.
//! `Linear` and `Conv2d` compute `forward_base` (the plain matmul / convolution) and then add their unmerged
//! adapters (see `adapter.rs`); the two parts are kept apart on purpose.

use super::kernels::conv::{
    conv2d_add, conv2d_norm_add, conv2d_upsample2x_add, ConvAdd, ConvAlgorithm, InputNorm,
    PackedConvWeight,
};
use super::kernels::{linear, pointwise};
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::adapter::Adapter;

/// Whether the fast kernels (f32, CPU) apply to all of `tensors`.
fn fast_path(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.dtype() == DType::F32 && t.device().is_cpu())
}

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
    /// `x Wᵀ + b` without adapters (f32 on the CPU: one `gemm` into a bias-filled output, `kernels::linear`).
    pub fn forward_base(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_base_add(xs, None)
    }

    /// `x Wᵀ + b (+ residual)` without adapters; on the fast path the residual is written into the output
    /// before the matmul accumulates onto it.
    fn forward_base_add(&self, xs: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        if fast_path(&[xs, &self.weight]) && residual.is_none_or(|r| fast_path(&[r])) {
            return linear::linear(xs, &self.weight, self.bias.as_ref(), residual);
        }
        let ys = candle_nn::Linear::new(self.weight.clone(), self.bias.clone()).forward(xs)?;
        match residual {
            Some(residual) => ys + residual,
            None => Ok(ys),
        }
    }

    /// `forward(xs) + residual` (`residual` shaped like the output), the addition fused into the matmul.
    pub fn forward_add(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let ys = self.forward_base_add(xs, Some(residual))?;
        self.forward_with_adapters(xs, ys)
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
    /// The convolution plus bias, without adapters (f32 on the CPU: `kernels::conv`).
    pub fn forward_base(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_base_add(xs, None, None)
    }

    /// `conv(x) + b + channel_shift + residual`: `channel_shift` `[N, out]` (one value per image and channel),
    /// `residual` shaped like the output; both written into the output before the convolution accumulates.
    /// Unmerged adapters are added on top.
    pub fn forward_add(
        &self,
        xs: &Tensor,
        channel_shift: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let ys = self.forward_base_add(xs, channel_shift, residual)?;
        self.forward_with_adapters(xs, ys)
    }

    /// [`Conv2d::forward_add`] without adapters.
    fn forward_base_add(
        &self,
        xs: &Tensor,
        channel_shift: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        if xs.dtype() != DType::F32 || self.weight.dtype() != DType::F32 {
            let mut ys = xs.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
            if let Some(bias) = &self.bias {
                ys = ys.broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
            }
            if let Some(shift) = channel_shift {
                ys = ys.broadcast_add(&shift.unsqueeze(2)?.unsqueeze(3)?)?;
            }
            return match residual {
                Some(residual) => ys + residual,
                None => Ok(ys),
            };
        }
        let weight = PackedConvWeight::new(&self.weight)?;
        let add = ConvAdd {
            bias: self.bias.as_ref(),
            channel_shift,
            residual,
        };
        conv2d_add(
            xs,
            &weight,
            self.stride,
            self.padding,
            add,
            ConvAlgorithm::Auto,
        )
    }
}

impl Conv2d {
    /// A 1×1 convolution of NCHW `xs` returned token-major, `[B, H·W, out]` (the layout transformer blocks read).
    /// Unmerged adapters are added in NCHW and the sum transposed back (a copy, only when they are present).
    pub fn forward_to_tokens(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, _, height, width) = xs.dims4()?;
        let to_tokens = |ys: Tensor| -> Result<Tensor> {
            let channels = ys.dim(1)?;
            ys.reshape((batch, channels, height * width))?
                .transpose(1, 2)?
                .contiguous()
        };
        if !(fast_path(&[xs, &self.weight]) && self.is_pointwise()) {
            return to_tokens(self.forward(xs)?);
        }
        let tokens = linear::pointwise_conv_to_tokens(xs, &self.weight, self.bias.as_ref())?;
        if self.adapters.is_empty() {
            return Ok(tokens);
        }
        let channels = tokens.dim(2)?;
        let ys = tokens
            .transpose(1, 2)?
            .reshape((batch, channels, height, width))?;
        to_tokens(self.forward_with_adapters(xs, ys)?)
    }

    /// A 1×1 convolution of token-major `tokens` (`[B, H·W, in]`) returned as NCHW `[B, out, H, W]`, plus
    /// `residual` (shaped like the output) fused into the output. Unmerged adapters read the tokens transposed
    /// to NCHW (a copy, only when they are present).
    pub fn forward_from_tokens(
        &self,
        tokens: &Tensor,
        (height, width): (usize, usize),
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (batch, _, channels) = tokens.dims3()?;
        let nchw = || {
            tokens
                .transpose(1, 2)?
                .reshape((batch, channels, height, width))
        };
        let fast = fast_path(&[tokens, &self.weight]) && residual.is_none_or(|r| fast_path(&[r]));
        if !(fast && self.is_pointwise()) {
            return self.forward_add(&nchw()?, None, residual);
        }
        let ys = linear::pointwise_conv_from_tokens(
            tokens,
            (height, width),
            &self.weight,
            self.bias.as_ref(),
            residual,
        )?;
        if self.adapters.is_empty() {
            return Ok(ys);
        }
        self.forward_with_adapters(&nchw()?, ys)
    }

    /// `forward_add(silu(norm(xs)), channel_shift, residual)`: a resnet's pre-activation and convolution. On the
    /// fast path the normalised tensor is never stored (the direct kernel normalises its input rows as it reads
    /// them); the result is the same as normalising first.
    pub fn forward_normed(
        &self,
        xs: &Tensor,
        norm: &GroupNorm,
        channel_shift: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let fast = fast_path(&[xs, &self.weight]) && residual.is_none_or(|r| fast_path(&[r]));
        if !fast || !self.adapters.is_empty() {
            return self.forward_add(&norm.forward_silu(xs)?, channel_shift, residual);
        }
        let weight = PackedConvWeight::new(&self.weight)?;
        let add = ConvAdd {
            bias: self.bias.as_ref(),
            channel_shift,
            residual,
        };
        let norm = InputNorm {
            params: norm.params(),
            silu: true,
        };
        conv2d_norm_add(
            xs,
            Some(norm),
            &weight,
            self.stride,
            self.padding,
            add,
            ConvAlgorithm::Auto,
        )
    }

    /// `forward(upsample_nearest_2x(xs))` (diffusers `Upsample2D`); on the fast path the upsampled tensor is never
    /// built (the direct convolution reads each input pixel twice per row).
    pub fn forward_upsampled(&self, xs: &Tensor) -> Result<Tensor> {
        if fast_path(&[xs, &self.weight]) && self.stride == 1 && self.adapters.is_empty() {
            let weight = PackedConvWeight::new(&self.weight)?;
            let add = ConvAdd {
                bias: self.bias.as_ref(),
                ..ConvAdd::default()
            };
            return conv2d_upsample2x_add(xs, &weight, self.padding, add);
        }
        let (_, _, height, width) = xs.dims4()?;
        self.forward(&xs.upsample_nearest2d(2 * height, 2 * width)?)
    }

    fn is_pointwise(&self) -> bool {
        let dims = self.weight.dims();
        dims.len() == 4 && dims[2] == 1 && dims[3] == 1 && self.stride == 1 && self.padding == 0
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
    pub weight: Tensor,
    pub bias: Tensor,
    pub groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    /// Loads `<prefix>.weight` and `<prefix>.bias` for `channels` channels in `groups` groups.
    pub fn load(vb: VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            candle_core::bail!("GroupNorm: {groups} groups do not divide {channels} channels");
        }
        Ok(GroupNorm {
            weight: vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.))?,
            bias: vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.))?,
            groups,
            eps,
        })
    }

    fn params(&self) -> pointwise::GroupNormParams<'_> {
        pointwise::GroupNormParams {
            groups: self.groups,
            eps: self.eps,
            weight: &self.weight,
            bias: &self.bias,
        }
    }

    fn candle(&self) -> Result<candle_nn::GroupNorm> {
        let channels = self.weight.elem_count();
        candle_nn::GroupNorm::new(
            self.weight.clone(),
            self.bias.clone(),
            channels,
            self.groups,
            self.eps,
        )
    }

    /// `silu(group_norm(x))` in one fused pass (the pre-activation of every resnet convolution).
    pub fn forward_silu(&self, xs: &Tensor) -> Result<Tensor> {
        if fast_path(&[xs]) {
            return pointwise::group_norm(xs, self.params(), true);
        }
        self.candle()?.forward(xs)?.silu()
    }

    /// Normalises `xs` in place (then applies SiLU when `silu`) and returns it. `xs` must be a tensor the caller
    /// has just created and holds the only handle to; other tensors go through the copying path.
    pub fn forward_in_place(&self, xs: Tensor, silu: bool) -> Result<Tensor> {
        if fast_path(&[&xs]) && xs.is_contiguous() {
            pointwise::group_norm_in_place(&xs, self.params(), silu)?;
            return Ok(xs);
        }
        let ys = self.candle()?.forward(&xs)?;
        if silu {
            ys.silu()
        } else {
            Ok(ys)
        }
    }
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if fast_path(&[xs]) {
            return pointwise::group_norm(xs, self.params(), false);
        }
        self.candle()?.forward(xs)
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
