//! Unmerged weight adapters carried by `Linear` / `Conv2d` layers: `y = base(x) + Σ_k m_k[b] · Δ_k(x)`.
//!
//! An adapter is either low-rank (`up(mid?(down(x)))`, kohya LoRA/LoCon with the target's stride and padding on
//! the first convolution that has a kernel) or dense (`x ΔWᵀ` / `conv2d(x, ΔW)` for LoHa, LoKr and DoRA, whose
//! updates do not factor). Its multiplier is one number for the whole batch or one per image; a per-image vector
//! of length n applied to a batch of k·n rows is tiled (rows `i`, `n + i`, … get image `i`'s value), which is how
//! CFG batches `[cond × n, uncond × n]` see it. Rows whose multiplier is 0 are not computed.
//!
//! The model code knows nothing about file formats; `lora` builds these from files.

use candle_core::{DType, Result, Tensor};

use super::kernels::conv::{conv2d, PackedConvWeight};
use super::layers::{Conv2d, Linear};

/// How much of an adapter's update each batch row gets (already including the file's `alpha / rank` scale).
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterMultiplier {
    /// The same factor for every row.
    Uniform(f32),
    /// One factor per image, tiled over the batch.
    PerImage(Vec<f32>),
}

/// The update itself, in the compute form of the layer it is attached to.
#[derive(Debug, Clone)]
pub enum AdapterWeights {
    /// `down`: `[r, in]` (Linear) or `[r, in, kh, kw]` (conv); `mid`: optional `[r, r, kh, kw]` (Tucker/CP core,
    /// then `down` is 1×1); `up`: `[out, r]` or `[out, r, 1, 1]`.
    LowRank {
        down: Tensor,
        mid: Option<Tensor>,
        up: Tensor,
    },
    /// A full weight update with the layer's weight shape.
    Dense { delta: Tensor },
}

/// One adapter on one layer.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// Who put it there (the LoRA file's name), for debugging and removal.
    pub source: String,
    pub weights: AdapterWeights,
    pub multiplier: AdapterMultiplier,
}

/// Geometry of the layer an adapter runs inside.
#[derive(Debug, Clone, Copy)]
enum LayerKind {
    Linear,
    Conv { stride: usize, padding: usize },
}

impl AdapterMultiplier {
    /// Factor of every batch row for a batch of `batch` rows.
    fn per_row(&self, batch: usize) -> Result<Vec<f32>> {
        match self {
            AdapterMultiplier::Uniform(m) => Ok(vec![*m; batch]),
            AdapterMultiplier::PerImage(values) => {
                if values.is_empty() || !batch.is_multiple_of(values.len()) {
                    candle_core::bail!(
                        "adapter has {} per-image multipliers, the batch has {batch} rows",
                        values.len()
                    )
                }
                Ok((0..batch).map(|row| values[row % values.len()]).collect())
            }
        }
    }
}

/// Adds every adapter's contribution for input `xs` to the base output `ys`.
fn add_adapters(adapters: &[Adapter], kind: LayerKind, xs: &Tensor, ys: Tensor) -> Result<Tensor> {
    let mut ys = ys;
    for adapter in adapters {
        ys = add_one_adapter(adapter, kind, xs, ys)?;
    }
    Ok(ys)
}

/// `ys + m[row] · Δ(xs)`, computing Δ only on rows with a non-zero multiplier.
fn add_one_adapter(adapter: &Adapter, kind: LayerKind, xs: &Tensor, ys: Tensor) -> Result<Tensor> {
    if let AdapterMultiplier::Uniform(m) = adapter.multiplier {
        if m == 0.0 {
            return Ok(ys);
        }
        let delta = adapter_delta(&adapter.weights, kind, xs)?;
        return ys + delta.affine(m as f64, 0.0)?;
    }
    let batch = xs.dim(0)?;
    let rows = adapter.multiplier.per_row(batch)?;
    let active: Vec<u32> = (0..batch as u32)
        .filter(|&r| rows[r as usize] != 0.0)
        .collect();
    if active.is_empty() {
        return Ok(ys);
    }
    let factor_shape: Vec<usize> = std::iter::once(active.len())
        .chain(std::iter::repeat_n(1, ys.rank() - 1))
        .collect();
    let factors: Vec<f32> = active.iter().map(|&r| rows[r as usize]).collect();
    let factors = Tensor::from_vec(factors, factor_shape, xs.device())?.to_dtype(ys.dtype())?;
    if active.len() == batch {
        let delta = adapter_delta(&adapter.weights, kind, xs)?;
        return ys + delta.broadcast_mul(&factors)?;
    }
    let index = Tensor::from_vec(active.clone(), active.len(), xs.device())?;
    let selected = xs.index_select(&index, 0)?;
    let delta = adapter_delta(&adapter.weights, kind, &selected)?.broadcast_mul(&factors)?;
    ys.contiguous()?.index_add(&index, &delta.contiguous()?, 0)
}

/// `conv2d(xs, weight)` through the f32 kernel of `kernels::conv` (candle's own for other dtypes).
fn convolve(xs: &Tensor, weight: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    let weight = weight.to_dtype(xs.dtype())?;
    if xs.dtype() != DType::F32 {
        return xs.conv2d(&weight, padding, stride, 1, 1);
    }
    conv2d(xs, &PackedConvWeight::new(&weight)?, None, stride, padding)
}

/// Δ(xs) without the multiplier.
fn adapter_delta(weights: &AdapterWeights, kind: LayerKind, xs: &Tensor) -> Result<Tensor> {
    match (weights, kind) {
        (AdapterWeights::Dense { delta }, LayerKind::Linear) => {
            let delta = delta.to_dtype(xs.dtype())?;
            xs.broadcast_matmul(&delta.t()?)
        }
        (AdapterWeights::Dense { delta }, LayerKind::Conv { stride, padding }) => {
            convolve(xs, delta, padding, stride)
        }
        (AdapterWeights::LowRank { down, mid, up }, LayerKind::Linear) => {
            let down = down.flatten_from(1)?.to_dtype(xs.dtype())?;
            let up = up.flatten_from(1)?.to_dtype(xs.dtype())?;
            let mut hidden = xs.broadcast_matmul(&down.t()?)?;
            if let Some(mid) = mid {
                let mid = mid.flatten_from(1)?.to_dtype(xs.dtype())?;
                hidden = hidden.broadcast_matmul(&mid.t()?)?;
            }
            hidden.broadcast_matmul(&up.t()?)
        }
        (AdapterWeights::LowRank { down, mid, up }, LayerKind::Conv { stride, padding }) => {
            let hidden = match mid {
                Some(mid) => convolve(&convolve(xs, down, 0, 1)?, mid, padding, stride)?,
                None => convolve(xs, down, padding, stride)?,
            };
            convolve(&hidden, up, 0, 1)
        }
    }
}

impl Linear {
    /// `base(xs)` plus every adapter's contribution.
    pub fn forward_with_adapters(&self, xs: &Tensor, ys: Tensor) -> Result<Tensor> {
        if self.adapters.is_empty() {
            return Ok(ys);
        }
        add_adapters(&self.adapters, LayerKind::Linear, xs, ys)
    }
}

impl Conv2d {
    /// `base(xs)` plus every adapter's contribution.
    pub fn forward_with_adapters(&self, xs: &Tensor, ys: Tensor) -> Result<Tensor> {
        if self.adapters.is_empty() {
            return Ok(ys);
        }
        let kind = LayerKind::Conv {
            stride: self.stride,
            padding: self.padding,
        };
        add_adapters(&self.adapters, kind, xs, ys)
    }
}

/// A mutable handle on one adaptable layer of a model, found by its diffusers / transformers name.
#[derive(Debug)]
pub enum LayerMut<'a> {
    Linear(&'a mut Linear),
    Conv2d(&'a mut Conv2d),
}

impl LayerMut<'_> {
    /// Module name (the weight's name without `.weight`), e.g. `down_blocks.0.attentions.0.proj_in`.
    pub fn name(&self) -> &str {
        match self {
            LayerMut::Linear(l) => &l.name,
            LayerMut::Conv2d(c) => &c.name,
        }
    }

    /// The base weight (`[out, in]` or `[out, in, kh, kw]`).
    pub fn weight(&self) -> &Tensor {
        match self {
            LayerMut::Linear(l) => &l.weight,
            LayerMut::Conv2d(c) => &c.weight,
        }
    }

    /// Replaces the weight (merged application); the shape must stay the same.
    pub fn set_weight(&mut self, weight: Tensor) -> Result<()> {
        let current = self.weight().dims().to_vec();
        if weight.dims() != current.as_slice() {
            candle_core::bail!(
                "{}: new weight shape {:?} differs from {:?}",
                self.name(),
                weight.dims(),
                current
            )
        }
        match self {
            LayerMut::Linear(l) => l.weight = weight,
            LayerMut::Conv2d(c) => c.weight = weight,
        }
        Ok(())
    }

    /// The adapters evaluated in this layer's forward pass.
    pub fn adapters_mut(&mut self) -> &mut Vec<Adapter> {
        match self {
            LayerMut::Linear(l) => &mut l.adapters,
            LayerMut::Conv2d(c) => &mut c.adapters,
        }
    }

    /// Whether this is a convolution.
    pub fn is_conv(&self) -> bool {
        matches!(self, LayerMut::Conv2d(_))
    }
}

/// Models and blocks that expose their adaptable layers.
pub trait AdaptableLayers {
    /// Appends a handle for every `Linear` and `Conv2d`, in module order.
    fn collect_layers<'a>(&'a mut self, out: &mut Vec<LayerMut<'a>>);

    /// Every adaptable layer, in module order.
    fn layers_mut(&mut self) -> Vec<LayerMut<'_>> {
        let mut out = Vec::new();
        self.collect_layers(&mut out);
        out
    }
}

/// Dtype adapters are stored in (f32: weights of LoRA files are small).
pub const ADAPTER_DTYPE: DType = DType::F32;

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};

    fn linear(weight: Tensor) -> Linear {
        Linear {
            name: "l".into(),
            weight,
            bias: None,
            adapters: Vec::new(),
        }
    }

    #[test]
    fn low_rank_linear_adapter_equals_merged_weight() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (5, 3), &dev).unwrap();
        let down = Tensor::randn(0f32, 1.0, (2, 3), &dev).unwrap();
        let up = Tensor::randn(0f32, 1.0, (5, 2), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 4, 3), &dev).unwrap();
        let mut layer = linear(w.clone());
        layer.adapters.push(Adapter {
            source: "t".into(),
            weights: AdapterWeights::LowRank {
                down: down.clone(),
                mid: None,
                up: up.clone(),
            },
            multiplier: AdapterMultiplier::PerImage(vec![0.5, 0.0]),
        });
        let ys = layer.forward(&x).unwrap();
        let merged = linear((&w + (up.matmul(&down).unwrap() * 0.5).unwrap()).unwrap());
        let expected0 = merged.forward(&x.narrow(0, 0, 1).unwrap()).unwrap();
        let expected1 = linear(w).forward(&x.narrow(0, 1, 1).unwrap()).unwrap();
        let expected = Tensor::cat(&[expected0, expected1], 0).unwrap();
        let diff = (ys - expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn per_image_multipliers_must_divide_the_batch() {
        let m = AdapterMultiplier::PerImage(vec![1.0, 2.0]);
        assert_eq!(m.per_row(4).unwrap(), vec![1.0, 2.0, 1.0, 2.0]);
        assert!(m.per_row(3).is_err());
    }
}
