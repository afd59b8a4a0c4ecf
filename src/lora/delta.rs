//! ΔW of one module, as A1111's Lora extension computes it (`network_lora.py`, `network_hada.py`,
//! `network_lokr.py`, `lyco_helpers.py`, `network.py` `calc_scale` / `apply_weight_decompose`), in f32.
//!
//! * LoRA/LoCon: `ΔW = up.reshape(out, r) @ down.reshape(r, −1)` reshaped to W (a 3×3 down gives the LoCon
//!   kernel); Tucker `mid`: `ΔW[i,j,k,l] = Σ mid[n,m,k,l]·up[i,n]·down[m,j]`.
//! * LoHa: `(w1_a @ w1_b) ⊙ (w2_a @ w2_b)`; Tucker `W[p,q,k,l] = Σ t[a,b,k,l]·w_a[a,p]·w_b[b,q]`.
//! * LoKr: `kron(w1, w2)` (w1 unsqueezed to 4-D for conv).
//! * scale: explicit `.scale`, else `alpha / rank` (rank: LoRA `down.shape[0]`, LoHa `w1_b.shape[0]`, LoKr
//!   `w2_b.shape[0]` else `w1_b.shape[0]`, none when both LoKr factors are full), else 1.
//! * DoRA: `W_c = W + scale·ΔW`, `W_dora = W_c · dora_scale / ‖W_c‖` with the norm taken per input channel when
//!   `dora_scale` is `[1, in, …]` (A1111/ComfyUI files) and per output row when it is `[out, 1, …]` or `[out]`
//!   (newer LyCORIS, PEFT); the module's update is `W_dora − W`.

use candle_core::{Result, Tensor};

use super::file::{KronFactor, LoraModule, ModuleWeights};

impl LoraModule {
    /// The rank `alpha` is divided by, if the algorithm has one.
    pub fn rank(&self) -> Option<usize> {
        match &self.weights {
            ModuleWeights::Lora { down, .. } => down.dims().first().copied(),
            ModuleWeights::Loha { w1_b, .. } => w1_b.dims().first().copied(),
            ModuleWeights::Lokr { w1, w2 } => factor_rank(w2).or_else(|| factor_rank(w1)),
        }
    }

    /// A1111 `calc_scale`: explicit scale, else alpha / rank, else 1.
    pub fn scale(&self) -> f32 {
        if let Some(scale) = self.explicit_scale {
            return scale;
        }
        match (self.alpha, self.rank()) {
            (Some(alpha), Some(rank)) if rank > 0 => alpha / rank as f32,
            _ => 1.0,
        }
    }

    /// Whether the module is a LoCon-style convolution update (kernel larger than 1×1).
    pub fn kernel(&self) -> Option<(usize, usize)> {
        let dims = match &self.weights {
            ModuleWeights::Lora { down, mid, .. } => mid.as_ref().unwrap_or(down).dims().to_vec(),
            ModuleWeights::Loha { w1_b, t1, .. } => t1.as_ref().unwrap_or(w1_b).dims().to_vec(),
            ModuleWeights::Lokr { w2, .. } => match w2 {
                KronFactor::Full(t) => t.dims().to_vec(),
                KronFactor::Product { b, .. } => b.dims().to_vec(),
                KronFactor::Tucker { t, .. } => t.dims().to_vec(),
            },
        };
        match dims.as_slice() {
            [_, _, kh, kw] => Some((*kh, *kw)),
            _ => None,
        }
    }

    /// The shape of the update before it is reshaped to the target: `[out, in(, kh, kw)]` as far as it can be
    /// read from the tensors without computing them (used for shape checks).
    pub fn update_shape(&self) -> Vec<usize> {
        let dims = |t: &Tensor| t.dims().to_vec();
        match &self.weights {
            ModuleWeights::Lora { down, up, mid } => {
                let mut shape = vec![dims(up)[0], dims(down).get(1).copied().unwrap_or(0)];
                let kernel_source = mid.as_ref().unwrap_or(down);
                shape.extend(dims(kernel_source).iter().skip(2));
                shape
            }
            ModuleWeights::Loha { w1_a, w1_b, t1, .. } => match t1 {
                Some(t1) => {
                    let mut shape = vec![dims(w1_a)[1], dims(w1_b)[1]];
                    shape.extend(dims(t1).iter().skip(2));
                    shape
                }
                None => {
                    let mut shape = vec![dims(w1_a)[0], dims(w1_b).get(1).copied().unwrap_or(0)];
                    shape.extend(dims(w1_b).iter().skip(2));
                    shape
                }
            },
            ModuleWeights::Lokr { w1, w2 } => {
                let (a, b) = factor_out_in(w1);
                let (c, d) = factor_out_in(w2);
                let mut shape = vec![a * c, b * d];
                shape.extend(factor_kernel(w2));
                shape
            }
        }
    }

    /// ΔW (without scale or multiplier) reshaped to `target` (the layer's weight shape).
    pub fn delta_weight(&self, target: &[usize]) -> Result<Tensor> {
        let delta = match &self.weights {
            ModuleWeights::Lora { down, up, mid } => lora_delta(down, up, mid.as_ref())?,
            ModuleWeights::Loha {
                w1_a,
                w1_b,
                w2_a,
                w2_b,
                t1,
                t2,
            } => {
                let first = loha_factor(w1_a, w1_b, t1.as_ref())?;
                let second = loha_factor(w2_a, w2_b, t2.as_ref())?;
                let second = second.reshape(first.dims())?;
                (first * second)?
            }
            ModuleWeights::Lokr { w1, w2 } => kron(&factor_matrix(w1)?, &factor_matrix(w2)?)?,
        };
        delta.reshape(target)
    }

    /// The module's full update for the base weight `base`: `scale·ΔW`, or for DoRA `W_dora − W`.
    /// The multiplier is applied by the caller.
    pub fn scaled_update(&self, base: &Tensor) -> Result<Tensor> {
        let delta = (self.delta_weight(base.dims())? * self.scale() as f64)?;
        match &self.dora_scale {
            None => Ok(delta),
            Some(dora_scale) => dora_update(base, &delta, dora_scale),
        }
    }
}

fn factor_rank(factor: &KronFactor) -> Option<usize> {
    match factor {
        KronFactor::Full(_) => None,
        KronFactor::Product { b, .. } | KronFactor::Tucker { b, .. } => b.dims().first().copied(),
    }
}

/// (rows, cols) of a LoKr factor once rebuilt.
fn factor_out_in(factor: &KronFactor) -> (usize, usize) {
    let d = |t: &Tensor, i: usize| t.dims().get(i).copied().unwrap_or(0);
    match factor {
        KronFactor::Full(t) => (d(t, 0), d(t, 1)),
        KronFactor::Product { a, b } => (d(a, 0), d(b, 1)),
        KronFactor::Tucker { a, b, .. } => (d(a, 1), d(b, 1)),
    }
}

fn factor_kernel(factor: &KronFactor) -> Vec<usize> {
    let tail = |t: &Tensor| t.dims().iter().skip(2).copied().collect();
    match factor {
        KronFactor::Full(t) => tail(t),
        KronFactor::Product { b, .. } => tail(b),
        KronFactor::Tucker { t, .. } => tail(t),
    }
}

/// `up @ down` or the Tucker rebuild with `mid`.
fn lora_delta(down: &Tensor, up: &Tensor, mid: Option<&Tensor>) -> Result<Tensor> {
    let up2 = up.flatten_from(1)?;
    let down2 = down.flatten_from(1)?;
    match mid {
        None => up2.matmul(&down2),
        Some(mid) => {
            let (out, _rank) = up2.dims2()?;
            let (mid_out, mid_in, kh, kw) = mid.dims4()?;
            let inputs = down2.dim(1)?;
            // Σ_n up[i,n] mid[n,m,k,l] → [out, m, kh, kw]; then Σ_m … down[m,j] → [out, kh, kw, in].
            let first = up2.matmul(&mid.reshape((mid_out, mid_in * kh * kw))?)?;
            let first = first
                .reshape((out, mid_in, kh * kw))?
                .transpose(1, 2)?
                .reshape((out * kh * kw, mid_in))?;
            let full = first.matmul(&down2)?;
            full.reshape((out, kh, kw, inputs))?
                .permute((0, 3, 1, 2))?
                .contiguous()
        }
    }
}

/// `W[p,q,k,l] = Σ_{a,b} t[a,b,k,l]·w_a[a,p]·w_b[b,q]` (A1111 `make_weight_cp`).
fn tucker(t: &Tensor, wa: &Tensor, wb: &Tensor) -> Result<Tensor> {
    let (ra, rb, kh, kw) = t.dims4()?;
    let (_, out) = wa.dims2()?;
    let (_, inputs) = wb.dims2()?;
    // [ra, rb, k] → [ra, k, rb] @ wb [rb, in] → [ra, k, in]
    let t_k = t
        .reshape((ra, rb, kh * kw))?
        .transpose(1, 2)?
        .contiguous()?;
    let step = t_k.reshape((ra * kh * kw, rb))?.matmul(wb)?;
    // waᵀ [out, ra] @ [ra, k·in] → [out, k, in] → [out, in, kh, kw]
    let full = wa.t()?.matmul(&step.reshape((ra, kh * kw * inputs))?)?;
    full.reshape((out, kh, kw, inputs))?
        .permute((0, 3, 1, 2))?
        .contiguous()
}

fn loha_factor(a: &Tensor, b: &Tensor, t: Option<&Tensor>) -> Result<Tensor> {
    match t {
        Some(t) => tucker(t, a, b),
        None => a.matmul(&b.flatten_from(1)?),
    }
}

fn factor_matrix(factor: &KronFactor) -> Result<Tensor> {
    match factor {
        KronFactor::Full(t) => Ok(t.clone()),
        KronFactor::Product { a, b } => {
            let product = a.matmul(&b.flatten_from(1)?)?;
            let mut shape = vec![a.dim(0)?];
            shape.extend(b.dims().iter().skip(1));
            product.reshape(shape)
        }
        KronFactor::Tucker { t, a, b } => tucker(t, a, b),
    }
}

/// `torch.kron(w1, w2)` for 2-D `w1` and 2-D or 4-D `w2` (w1 gets 1×1 kernel dims).
fn kron(w1: &Tensor, w2: &Tensor) -> Result<Tensor> {
    let (a, b) = w1.dims2()?;
    let w2_dims = w2.dims().to_vec();
    let (c, d) = (w2_dims[0], w2_dims[1]);
    let kernel: Vec<usize> = w2_dims[2..].to_vec();
    let mut left_shape = vec![a, 1, b, 1];
    left_shape.extend(kernel.iter().map(|_| 1));
    let mut right_shape = vec![1, c, 1, d];
    right_shape.extend(kernel.iter().copied());
    let product = w1
        .reshape(left_shape)?
        .broadcast_mul(&w2.reshape(right_shape)?)?;
    let mut out_shape = vec![a * c, b * d];
    out_shape.extend(kernel);
    product.reshape(out_shape)
}

/// `W_dora − W` for `W_c = W + delta`.
fn dora_update(base: &Tensor, delta: &Tensor, dora_scale: &Tensor) -> Result<Tensor> {
    let merged = (base + delta)?;
    let out = base.dim(0)?;
    let numel = base.elem_count();
    let per_output = dora_scale.dims().first() == Some(&out) && dora_scale.elem_count() == out;
    let norm = if per_output && out > 1 {
        merged
            .reshape((out, numel / out))?
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
    } else {
        let inputs = base.dim(1)?;
        // norm over every dim except 1: move dim 1 first.
        merged
            .transpose(0, 1)?
            .contiguous()?
            .reshape((inputs, numel / inputs))?
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .reshape((1, inputs))?
    };
    let rank = base.rank();
    let norm_shape: Vec<usize> = if per_output && out > 1 {
        std::iter::once(out)
            .chain(std::iter::repeat_n(1, rank - 1))
            .collect()
    } else {
        let mut s = vec![1, base.dim(1)?];
        s.extend(std::iter::repeat_n(1, rank - 2));
        s
    };
    let norm = norm.reshape(norm_shape.clone())?;
    let scale = dora_scale.reshape(norm_shape)?;
    let dora = merged.broadcast_mul(&scale.broadcast_div(&norm)?)?;
    dora - base
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(values: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn kron_matches_its_definition() {
        let w1 = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let w2 = t(&[0.0, 5.0, 6.0, 7.0], &[2, 2]);
        let k = kron(&w1, &w2).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(k[0], vec![0.0, 5.0, 0.0, 10.0]);
        assert_eq!(k[1], vec![6.0, 7.0, 12.0, 14.0]);
        assert_eq!(k[3], vec![18.0, 21.0, 24.0, 28.0]);
    }

    /// `ΔW[i,j,k,l] = Σ_{n,m} mid[n,m,k,l]·up[i,n]·down[m,j]` (A1111 `rebuild_cp_decomposition`), by loops.
    #[test]
    fn lora_mid_rebuild_matches_the_einsum() {
        let (out, inp, r, k) = (3, 2, 2, 2);
        let values = |n: usize, offset: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 + offset) * 0.37).sin()).collect()
        };
        let up = values(out * r, 0.0);
        let down = values(r * inp, 1.0);
        let mid = values(r * r * k * k, 2.0);
        let got = lora_delta(
            &t(&down, &[r, inp, 1, 1]),
            &t(&up, &[out, r, 1, 1]),
            Some(&t(&mid, &[r, r, k, k])),
        )
        .unwrap();
        assert_eq!(got.dims(), &[out, inp, k, k]);
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for i in 0..out {
            for j in 0..inp {
                for kk in 0..k * k {
                    let mut expected = 0.0;
                    for n in 0..r {
                        for m in 0..r {
                            expected +=
                                mid[(n * r + m) * k * k + kk] * up[i * r + n] * down[m * inp + j];
                        }
                    }
                    let value = got[(i * inp + j) * k * k + kk];
                    assert!(
                        (value - expected).abs() < 1e-5,
                        "{i} {j} {kk}: {value} vs {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn tucker_rebuild_matches_einsum() {
        // t [2,1,1,2], wa [2,1], wb [1,2]: W[p,q,k,l] = Σ_a t[a,0,k,l]·wa[a,p]·wb[0,q]
        let tt = t(&[1.0, 2.0, 3.0, 4.0], &[2, 1, 1, 2]);
        let wa = t(&[1.0, 10.0], &[2, 1]);
        let wb = t(&[1.0, -1.0], &[1, 2]);
        let w = tucker(&tt, &wa, &wb).unwrap();
        assert_eq!(w.dims(), &[1, 2, 1, 2]);
        let v = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // kernel (0,0): 1·1 + 3·10 = 31; (0,1): 2 + 40 = 42; q=1 negates.
        assert_eq!(v, vec![31.0, 42.0, -31.0, -42.0]);
    }
}
