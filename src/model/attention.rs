//! Attention for the UNet and VAE: scaled dot-product attention, diffusers `Attention`, `FeedForward` (GEGLU),
//! `BasicTransformerBlock`, `Transformer2DModel` (SD1.5: 1×1-conv `proj_in`/`proj_out`) and the VAE mid-block
//! self-attention.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::adapter::{AdaptableLayers, LayerMut};
use super::kernels;
use super::layers::{Conv2d, GroupNorm, LayerNorm, Linear};

/// Largest attention-score block (`heads_per_chunk × Lq × Lk` f32 values) computed at once, in bytes.
const ATTENTION_SCORES_BUDGET_BYTES: usize = 256 << 20;

/// `softmax(q kᵀ / sqrt(d)) v` for `q: [B, heads, Lq, d]`, `k, v: [B, heads, Lk, d]`; returns `[B, heads, Lq, d]`.
///
/// f32 inputs go to the fused, tiled kernel (`kernels::attention`, online softmax, memory linear in tokens);
/// other dtypes to [`scaled_dot_product_attention_plain`].
pub fn scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    if q.dtype() == DType::F32 && k.dtype() == DType::F32 && v.dtype() == DType::F32 {
        return super::kernels::attention::scaled_dot_product_attention(q, k, v);
    }
    scaled_dot_product_attention_plain(q, k, v)
}

/// The unfused reference, computed in f32, one batch item and a chunk of heads at a time so that the score
/// matrix stays under `ATTENTION_SCORES_BUDGET_BYTES` (at 512×512 a UNet level-0 self-attention has 4096 tokens:
/// 64 MiB per head).
pub fn scaled_dot_product_attention_plain(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (_, heads, q_len, _) = q.dims4()?;
    let k_len = k.dim(2)?;
    let bytes_per_head = q_len * k_len * std::mem::size_of::<f32>();
    let heads_per_chunk =
        (ATTENTION_SCORES_BUDGET_BYTES / bytes_per_head.max(1)).clamp(1, heads.max(1));
    scaled_dot_product_attention_chunked(q, k, v, heads_per_chunk)
}

/// [`scaled_dot_product_attention`] computing `heads_per_chunk` heads of one batch item at a time.
pub fn scaled_dot_product_attention_chunked(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads_per_chunk: usize,
) -> Result<Tensor> {
    let (batch, heads, _, head_dim) = q.dims4()?;
    let in_dtype = q.dtype();
    let q = q.to_dtype(DType::F32)?.contiguous()?;
    let k = k.to_dtype(DType::F32)?.contiguous()?;
    let v = v.to_dtype(DType::F32)?.contiguous()?;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let heads_per_chunk = heads_per_chunk.max(1);
    let mut per_batch = Vec::with_capacity(batch);
    for b in 0..batch {
        let mut chunks = Vec::with_capacity(heads.div_ceil(heads_per_chunk));
        let mut head_start = 0;
        while head_start < heads {
            let n = heads_per_chunk.min(heads - head_start);
            let slice = |t: &Tensor| t.narrow(0, b, 1)?.narrow(1, head_start, n);
            let (q_s, k_s, v_s) = (slice(&q)?, slice(&k)?, slice(&v)?);
            let scores = (q_s.matmul(&k_s.t()?)? * scale)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            chunks.push(probs.matmul(&v_s)?);
            head_start += n;
        }
        per_batch.push(Tensor::cat(&chunks, 1)?);
    }
    Tensor::cat(&per_batch, 0)?.to_dtype(in_dtype)
}

/// diffusers `Attention` without normalisation: `to_q`, `to_k`, `to_v`, `to_out.0` over `[B, L, C]` tokens.
#[derive(Debug, Clone)]
pub struct Attention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Linear,
    pub heads: usize,
}

impl Attention {
    /// Loads an attention with `heads × dim_head` inner width; keys/values come from `context_dim` features.
    /// `qkv_bias`: whether `to_q/to_k/to_v` carry biases (UNet: no, VAE: yes); `to_out.0` always does.
    pub fn load(
        vb: VarBuilder,
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        dim_head: usize,
        qkv_bias: bool,
    ) -> Result<Self> {
        let inner = heads * dim_head;
        let load = Linear::load_from_linear_or_1x1_conv;
        Ok(Attention {
            to_q: load(vb.pp("to_q"), query_dim, inner, qkv_bias)?,
            to_k: load(vb.pp("to_k"), context_dim, inner, qkv_bias)?,
            to_v: load(vb.pp("to_v"), context_dim, inner, qkv_bias)?,
            to_out: load(vb.pp("to_out").pp("0"), inner, query_dim, true)?,
            heads,
        })
    }

    /// Attends from `xs` (`[B, Lq, C]`) to `context` (`[B, Lk, D]`, or `xs` itself when `None`).
    pub fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        self.to_out.forward(&self.attend(xs, context)?)
    }

    /// [`Attention::forward`] plus `residual` (`[B, Lq, C]`), added inside `to_out`'s matmul.
    pub fn forward_add(
        &self,
        xs: &Tensor,
        context: Option<&Tensor>,
        residual: &Tensor,
    ) -> Result<Tensor> {
        self.to_out
            .forward_add(&self.attend(xs, context)?, residual)
    }

    /// The heads' outputs, token-major `[B, Lq, heads·d]` (before `to_out`).
    fn attend(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let context = context.unwrap_or(xs);
        let q = self.to_q.forward(xs)?;
        let k = self.to_k.forward(context)?;
        let v = self.to_v.forward(context)?;
        if [&q, &k, &v].iter().all(|t| t.dtype() == DType::F32) {
            return kernels::attention::scaled_dot_product_attention_tokens(&q, &k, &v, self.heads);
        }
        let split_heads = |t: &Tensor| -> Result<Tensor> {
            let (batch, len, channels) = t.dims3()?;
            t.reshape((batch, len, self.heads, channels / self.heads))?
                .transpose(1, 2)
        };
        let out =
            scaled_dot_product_attention(&split_heads(&q)?, &split_heads(&k)?, &split_heads(&v)?)?;
        let (batch, heads, len, head_dim) = out.dims4()?;
        out.transpose(1, 2)?.reshape((batch, len, heads * head_dim))
    }
}

/// diffusers `FeedForward` with GEGLU: `net.2(h · gelu(gate))` where `[h, gate] = net.0.proj(x)`.
#[derive(Debug, Clone)]
pub struct FeedForward {
    pub net_0_proj: Linear,
    pub net_2: Linear,
}

impl FeedForward {
    /// Loads `<prefix>.net.0.proj` (`dim → 2·4·dim`) and `<prefix>.net.2` (`4·dim → dim`).
    pub fn load(vb: VarBuilder, dim: usize) -> Result<Self> {
        let inner = 4 * dim;
        Ok(FeedForward {
            net_0_proj: Linear::load(vb.pp("net").pp("0").pp("proj"), dim, 2 * inner, true)?,
            net_2: Linear::load(vb.pp("net").pp("2"), inner, dim, true)?,
        })
    }
}

impl FeedForward {
    /// `hidden · gelu(gate)` (GEGLU, one fused pass on f32).
    fn gated(&self, xs: &Tensor) -> Result<Tensor> {
        let proj = &self.net_0_proj;
        let plain = proj.adapters.is_empty()
            && [xs, &proj.weight]
                .iter()
                .all(|t| t.dtype() == DType::F32 && t.device().is_cpu());
        if plain && proj.bias.as_ref().is_none_or(|b| b.dtype() == DType::F32) {
            return kernels::linear::linear_geglu(xs, &proj.weight, proj.bias.as_ref());
        }
        let projected = proj.forward(xs)?;
        if projected.dtype() == DType::F32 && projected.device().is_cpu() {
            return kernels::pointwise::geglu(&projected);
        }
        let inner = projected.dim(D::Minus1)? / 2;
        let hidden = projected.narrow(D::Minus1, 0, inner)?;
        let gate = projected.narrow(D::Minus1, inner, inner)?;
        hidden * gate.gelu_erf()?
    }

    /// [`Module::forward`] plus `residual`, added inside `net.2`'s matmul.
    pub fn forward_add(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.net_2.forward_add(&self.gated(xs)?, residual)
    }
}

impl Module for FeedForward {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.net_2.forward(&self.gated(xs)?)
    }
}

/// diffusers `BasicTransformerBlock`: self-attention, cross-attention, GEGLU feed-forward, each pre-LayerNorm
/// (eps 1e-5) with a residual connection.
#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: Attention,
    pub norm2: LayerNorm,
    pub attn2: Attention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
}

impl BasicTransformerBlock {
    /// Loads a block of width `dim` with `heads` heads attending to `context_dim` features.
    pub fn load(vb: VarBuilder, dim: usize, context_dim: usize, heads: usize) -> Result<Self> {
        let dim_head = dim / heads;
        Ok(BasicTransformerBlock {
            norm1: LayerNorm::load(vb.pp("norm1"), dim, 1e-5)?,
            attn1: Attention::load(vb.pp("attn1"), dim, dim, heads, dim_head, false)?,
            norm2: LayerNorm::load(vb.pp("norm2"), dim, 1e-5)?,
            attn2: Attention::load(vb.pp("attn2"), dim, context_dim, heads, dim_head, false)?,
            norm3: LayerNorm::load(vb.pp("norm3"), dim, 1e-5)?,
            ff: FeedForward::load(vb.pp("ff"), dim)?,
        })
    }

    /// `xs: [B, L, dim]`, `context: [B, Lk, context_dim]`.
    pub fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = self.attn1.forward_add(&self.norm1.forward(xs)?, None, xs)?;
        let xs = self
            .attn2
            .forward_add(&self.norm2.forward(&xs)?, Some(context), &xs)?;
        self.ff.forward_add(&self.norm3.forward(&xs)?, &xs)
    }
}

/// diffusers `Transformer2DModel` as used by SD1.5: GroupNorm (eps 1e-6), 1×1-conv `proj_in`, transformer blocks
/// over the `H·W` tokens, 1×1-conv `proj_out`, residual.
#[derive(Debug, Clone)]
pub struct Transformer2DModel {
    pub norm: GroupNorm,
    pub proj_in: Conv2d,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Conv2d,
}

impl Transformer2DModel {
    /// Loads a one-block transformer of width `channels`.
    pub fn load(
        vb: VarBuilder,
        channels: usize,
        context_dim: usize,
        heads: usize,
        groups: usize,
    ) -> Result<Self> {
        Ok(Transformer2DModel {
            norm: GroupNorm::load(vb.pp("norm"), groups, channels, 1e-6)?,
            proj_in: Conv2d::load(vb.pp("proj_in"), channels, channels, 1, 1, 0)?,
            transformer_blocks: vec![BasicTransformerBlock::load(
                vb.pp("transformer_blocks").pp("0"),
                channels,
                context_dim,
                heads,
            )?],
            proj_out: Conv2d::load(vb.pp("proj_out"), channels, channels, 1, 1, 0)?,
        })
    }

    /// `xs: [B, C, H, W]`, `context: [B, Lk, context_dim]`.
    pub fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (_, _, height, width) = xs.dims4()?;
        let mut tokens = self.proj_in.forward_to_tokens(&self.norm.forward(xs)?)?;
        for block in &self.transformer_blocks {
            tokens = block.forward(&tokens, context)?;
        }
        self.proj_out
            .forward_from_tokens(&tokens, (height, width), Some(xs))
    }
}

impl AdaptableLayers for Attention {
    fn collect_layers<'a>(&'a mut self, out: &mut Vec<LayerMut<'a>>) {
        out.push(LayerMut::Linear(&mut self.to_q));
        out.push(LayerMut::Linear(&mut self.to_k));
        out.push(LayerMut::Linear(&mut self.to_v));
        out.push(LayerMut::Linear(&mut self.to_out));
    }
}

impl AdaptableLayers for Transformer2DModel {
    /// `proj_in`, then per block `attn1`, `attn2`, `ff.net.0.proj`, `ff.net.2`, then `proj_out`.
    fn collect_layers<'a>(&'a mut self, out: &mut Vec<LayerMut<'a>>) {
        out.push(LayerMut::Conv2d(&mut self.proj_in));
        for block in &mut self.transformer_blocks {
            block.attn1.collect_layers(out);
            block.attn2.collect_layers(out);
            out.push(LayerMut::Linear(&mut block.ff.net_0_proj));
            out.push(LayerMut::Linear(&mut block.ff.net_2));
        }
        out.push(LayerMut::Conv2d(&mut self.proj_out));
    }
}

/// The single-head self-attention of the VAE mid block (diffusers `Attention` with `group_norm`, eps 1e-6,
/// biased `to_q/to_k/to_v` over channels, residual connection).
#[derive(Debug, Clone)]
pub struct VaeAttention {
    pub group_norm: GroupNorm,
    pub attention: Attention,
}

impl VaeAttention {
    /// Loads `<prefix>.group_norm` and `<prefix>.{to_q,to_k,to_v,to_out.0}` (Linear or 1×1-conv weights).
    pub fn load(vb: VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        Ok(VaeAttention {
            group_norm: GroupNorm::load(vb.pp("group_norm"), groups, channels, 1e-6)?,
            attention: Attention::load(vb, channels, channels, 1, channels, true)?,
        })
    }
}

impl Module for VaeAttention {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        let tokens = self
            .group_norm
            .forward(xs)?
            .reshape((batch, channels, height * width))?
            .transpose(1, 2)?
            .contiguous()?;
        let attended = self.attention.forward(&tokens, None)?;
        let attended = attended
            .transpose(1, 2)?
            .reshape((batch, channels, height, width))?;
        attended + xs
    }
}
