//! Fused element-wise kernels over f32 CPU tensors: GroupNorm with an optional SiLU (one pass for the
//! statistics, one to normalise, apply the affine transform and the activation), GEGLU, SiLU and in-place adds.
//!
//! Each replaces a chain of candle ops that would each allocate a tensor and make a full pass over memory (candle
//! 0.11.1's GroupNorm alone is 7 passes). Work is split over rayon's global pool; the inner loops are plain
//! element-wise code compiled for AVX-512 / AVX2+FMA, the copy chosen by the call's path (`simd::dispatch!`).
//!
//! The in-place functions write into the storage of the tensor they are given, under candle's storage lock:
//! every tensor sharing that storage (clones, views) sees the result, as with candle's own `slice_set`. An
//! operand that shares the written storage is copied first, so no call waits on its own lock.

use candle_core::Tensor;
use rayon::prelude::*;

use super::isa::Cpu;
use super::simd::{dispatch, exp2_nonpositive};
use super::storage::{
    check_f32, same_storage, tensor_from_vec, with_f32_slice, with_f32_slice_mut, KernelError,
};
use super::timing::timed;

/// Elements per rayon task for the purely element-wise kernels (small enough to balance 2 threads, large enough
/// to amortise the task).
const ELEMENTS_PER_TASK: usize = 1 << 15;

/// The affine GroupNorm parameters of one layer.
#[derive(Debug, Clone, Copy)]
pub struct GroupNormParams<'a> {
    pub groups: usize,
    pub eps: f64,
    /// `[C]` scale (γ).
    pub weight: &'a Tensor,
    /// `[C]` shift (β).
    pub bias: &'a Tensor,
}

/// `group_norm(x) · γ + β` (then `silu` when asked) of `x: [N, C, …]`, as `torch.nn.GroupNorm` computes it
/// (biased variance, statistics in double precision over f32 partial sums).
pub fn group_norm(x: &Tensor, params: GroupNormParams, silu: bool) -> candle_core::Result<Tensor> {
    let cpu = Cpu::current();
    timed("group norm", cpu, || {
        group_norm_untimed(cpu, x, params, silu)
    })
}

fn group_norm_untimed(
    cpu: Cpu,
    x: &Tensor,
    params: GroupNormParams,
    silu: bool,
) -> candle_core::Result<Tensor> {
    const OP: &str = "group_norm";
    check_f32(OP, x)?;
    let shape = GroupShape::of(OP, x, &params)?;
    let (gamma, beta) = (vector_values(params.weight)?, vector_values(params.bias)?);
    let mut out = vec![0f32; x.elem_count()];
    with_f32_slice(x, |src| {
        out.par_chunks_mut(shape.block_len())
            .enumerate()
            .for_each(|(block, dst)| {
                let src = &src[block * shape.block_len()..][..shape.block_len()];
                let stats = block_stats(cpu, src, params.eps);
                shape.normalize(block, stats, &gamma, &beta, |range, a| {
                    affine(cpu, &src[range.clone()], &mut dst[range], a, silu)
                });
            });
        Ok(())
    })?;
    tensor_from_vec(out, x.dims())
}

/// [`group_norm`] written over `x` itself, a contiguous CPU tensor: every tensor sharing its storage sees the
/// change, so callers use it on tensors they have just created and hold the only handle to. The parameters are
/// read before `x` is written, so they may share its storage.
pub fn group_norm_in_place(
    x: &Tensor,
    params: GroupNormParams,
    silu: bool,
) -> candle_core::Result<()> {
    const OP: &str = "group_norm_in_place";
    let cpu = Cpu::current();
    let shape = GroupShape::of(OP, x, &params)?;
    let (gamma, beta) = (vector_values(params.weight)?, vector_values(params.bias)?);
    timed("group norm in place", cpu, || {
        with_f32_slice_mut(x, OP, |data| {
            data.par_chunks_mut(shape.block_len())
                .enumerate()
                .for_each(|(block, data)| {
                    let stats = block_stats(cpu, data, params.eps);
                    shape.normalize(block, stats, &gamma, &beta, |range, a| {
                        affine_in_place(cpu, &mut data[range], a, silu)
                    });
                });
            Ok(())
        })
    })
}

/// `(x − mean) · scale + shift` for one channel: a GroupNorm with its affine transform, resolved per channel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Affine {
    pub mean: f32,
    pub scale: f32,
    pub shift: f32,
}

impl Affine {
    /// `dst = f(src)` with `f = (x − mean) · scale + shift`, then SiLU when `silu` (vectorised for `cpu`).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn apply(&self, cpu: Cpu, src: &[f32], dst: &mut [f32], silu: bool) {
        affine(cpu, src, dst, *self, silu)
    }
}

/// The GroupNorm of `x: [N, C, …]` resolved to one [`Affine`] per (image, channel), `[N·C]`: the statistics pass
/// of [`group_norm`] without writing the normalised tensor, for kernels that apply it while reading `x`.
pub fn group_norm_affines(x: &Tensor, params: GroupNormParams) -> candle_core::Result<Vec<Affine>> {
    let cpu = Cpu::current();
    timed("group norm statistics", cpu, || {
        group_norm_affines_untimed(cpu, x, params)
    })
}

fn group_norm_affines_untimed(
    cpu: Cpu,
    x: &Tensor,
    params: GroupNormParams,
) -> candle_core::Result<Vec<Affine>> {
    const OP: &str = "group_norm_affines";
    check_f32(OP, x)?;
    let shape = GroupShape::of(OP, x, &params)?;
    let (gamma, beta) = (vector_values(params.weight)?, vector_values(params.bias)?);
    let cpg = shape.channels_per_group();
    let mut affines = vec![Affine::default(); x.dim(0)? * shape.channels];
    with_f32_slice(x, |src| {
        affines
            .par_chunks_mut(cpg.max(1))
            .enumerate()
            .for_each(|(block, out)| {
                let values = &src[block * shape.block_len()..][..shape.block_len()];
                let stats = block_stats(cpu, values, params.eps);
                let mut i = 0;
                shape.normalize(block, stats, &gamma, &beta, |_, a| {
                    out[i] = a;
                    i += 1;
                });
            });
        Ok(())
    })?;
    Ok(affines)
}

/// Layout of a GroupNorm input: `batch × groups` contiguous blocks of `channels_per_group × pixels` values.
#[derive(Debug, Clone, Copy)]
struct GroupShape {
    channels: usize,
    groups: usize,
    pixels: usize,
}

impl GroupShape {
    fn of(op: &'static str, x: &Tensor, params: &GroupNormParams) -> candle_core::Result<Self> {
        let shape = x.dims();
        if shape.len() < 3 {
            return Err(KernelError::Rank {
                op,
                expected: 3,
                shape: shape.to_vec(),
            }
            .into_candle());
        }
        let channels = shape[1];
        let fits = params.groups > 0
            && channels.is_multiple_of(params.groups)
            && params.weight.elem_count() == channels
            && params.bias.elem_count() == channels;
        if !fits {
            return Err(KernelError::Shape {
                op,
                detail: format!(
                    "input {shape:?}, {} groups, weight {:?}, bias {:?}",
                    params.groups,
                    params.weight.dims(),
                    params.bias.dims()
                ),
            }
            .into_candle());
        }
        Ok(GroupShape {
            channels,
            groups: params.groups,
            pixels: shape[2..].iter().product(),
        })
    }

    fn channels_per_group(&self) -> usize {
        self.channels / self.groups
    }

    fn block_len(&self) -> usize {
        (self.channels_per_group() * self.pixels).max(1)
    }

    /// Calls `apply(range within the block, affine)` for every channel of block `block`.
    fn normalize(
        &self,
        block: usize,
        (mean, rstd): (f32, f32),
        gamma: &[f32],
        beta: &[f32],
        mut apply: impl FnMut(std::ops::Range<usize>, Affine),
    ) {
        let group = block % self.groups;
        for local in 0..self.channels_per_group() {
            let c = group * self.channels_per_group() + local;
            let affine = Affine {
                mean,
                scale: rstd * gamma[c],
                shift: beta[c],
            };
            apply(local * self.pixels..(local + 1) * self.pixels, affine);
        }
    }
}

/// Mean and `1/sqrt(var + eps)` of one group (two passes; the second reads the block from cache).
fn block_stats(cpu: Cpu, block: &[f32], eps: f64) -> (f32, f32) {
    let n = block.len().max(1) as f64;
    let mean = sum(cpu, block) / n;
    let var = centered_sum_of_squares(cpu, block, mean as f32) / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

/// Values of a 1-D parameter as f32.
fn vector_values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()
}

fn affine(cpu: Cpu, src: &[f32], dst: &mut [f32], a: Affine, silu: bool) {
    if silu {
        affine_silu_copy(cpu, src, dst, a.mean, a.scale, a.shift)
    } else {
        affine_copy(cpu, src, dst, a.mean, a.scale, a.shift)
    }
}

fn affine_in_place(cpu: Cpu, data: &mut [f32], a: Affine, silu: bool) {
    if silu {
        affine_silu_inplace(cpu, data, a.mean, a.scale, a.shift)
    } else {
        affine_inplace(cpu, data, a.mean, a.scale, a.shift)
    }
}

/// Values summed per block of 1024 in f32 lanes, blocks summed in f64 (error ≈ f32 rounding, not `n·ε`).
const SUM_BLOCK: usize = 1024;
const LANES: usize = 32;

#[inline(always)]
fn sum_generic(x: &[f32]) -> f64 {
    let mut total = 0f64;
    for block in x.chunks(SUM_BLOCK) {
        let mut acc = [0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(chunk) {
                *a += v;
            }
        }
        let tail: f32 = chunks.remainder().iter().sum();
        total += acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64;
    }
    total
}

#[inline(always)]
fn centered_sum_of_squares_generic(x: &[f32], mean: f32) -> f64 {
    let mut total = 0f64;
    for block in x.chunks(SUM_BLOCK) {
        let mut acc = [0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(chunk) {
                let d = v - mean;
                *a += d * d;
            }
        }
        let tail: f32 = chunks
            .remainder()
            .iter()
            .map(|&v| (v - mean) * (v - mean))
            .sum();
        total += acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64;
    }
    total
}

/// `x · sigmoid(x)`, with `exp` evaluated only on non-positive arguments (no overflow).
#[inline(always)]
fn silu_scalar(x: f32) -> f32 {
    let e = exp2_nonpositive(-x.abs() * std::f32::consts::LOG2_E);
    let r = 1.0 / (1.0 + e);
    let sigmoid = if x >= 0.0 { r } else { e * r };
    x * sigmoid
}

/// `0.5 · x · (1 + erf(x / √2))` with PyTorch's vectorised `erf` (Abramowitz–Stegun 7.1.26, |error| ≤ 1.5e-7).
#[inline(always)]
fn gelu_erf_scalar(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let az = z.abs();
    let t = 1.0 / (1.0 + P * az);
    let poly = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    let e = exp2_nonpositive(-(az * az) * std::f32::consts::LOG2_E);
    let erf = (1.0 - poly * e).copysign(z);
    0.5 * x * (1.0 + erf)
}

#[inline(always)]
fn affine_copy_generic(src: &[f32], dst: &mut [f32], mean: f32, scale: f32, shift: f32) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = (s - mean) * scale + shift;
    }
}

#[inline(always)]
fn affine_silu_copy_generic(src: &[f32], dst: &mut [f32], mean: f32, scale: f32, shift: f32) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = silu_scalar((s - mean) * scale + shift);
    }
}

#[inline(always)]
fn affine_inplace_generic(data: &mut [f32], mean: f32, scale: f32, shift: f32) {
    for v in data.iter_mut() {
        *v = (*v - mean) * scale + shift;
    }
}

#[inline(always)]
fn affine_silu_inplace_generic(data: &mut [f32], mean: f32, scale: f32, shift: f32) {
    for v in data.iter_mut() {
        *v = silu_scalar((*v - mean) * scale + shift);
    }
}

#[inline(always)]
fn silu_inplace_generic(data: &mut [f32]) {
    for v in data.iter_mut() {
        *v = silu_scalar(*v);
    }
}

#[inline(always)]
fn geglu_row_generic(hidden: &[f32], gate: &[f32], dst: &mut [f32]) {
    for ((d, &h), &g) in dst.iter_mut().zip(hidden).zip(gate) {
        *d = h * gelu_erf_scalar(g);
    }
}

#[inline(always)]
fn add_inplace_generic(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

dispatch!(sum, sum_generic, (x: &[f32]) -> f64);
dispatch!(
    centered_sum_of_squares,
    centered_sum_of_squares_generic,
    (x: &[f32], mean: f32) -> f64
);
dispatch!(
    affine_copy, affine_copy_generic,
    (src: &[f32], dst: &mut [f32], mean: f32, scale: f32, shift: f32) -> ()
);
dispatch!(
    affine_silu_copy, affine_silu_copy_generic,
    (src: &[f32], dst: &mut [f32], mean: f32, scale: f32, shift: f32) -> ()
);
dispatch!(
    affine_inplace, affine_inplace_generic,
    (data: &mut [f32], mean: f32, scale: f32, shift: f32) -> ()
);
dispatch!(
    affine_silu_inplace, affine_silu_inplace_generic,
    (data: &mut [f32], mean: f32, scale: f32, shift: f32) -> ()
);
dispatch!(silu_inplace, silu_inplace_generic, (data: &mut [f32]) -> ());
dispatch!(
    geglu_row, geglu_row_generic,
    (hidden: &[f32], gate: &[f32], dst: &mut [f32]) -> ()
);
dispatch!(add_inplace, add_inplace_generic, (dst: &mut [f32], src: &[f32]) -> ());

/// `silu(x)` written over `x` (same ownership rule as [`group_norm_in_place`]).
pub fn silu_in_place(x: &Tensor) -> candle_core::Result<()> {
    let cpu = Cpu::current();
    timed("silu", cpu, || silu_in_place_untimed(cpu, x))
}

fn silu_in_place_untimed(cpu: Cpu, x: &Tensor) -> candle_core::Result<()> {
    with_f32_slice_mut(x, "silu_in_place", |data| {
        data.par_chunks_mut(ELEMENTS_PER_TASK)
            .for_each(|chunk| silu_inplace(cpu, chunk));
        Ok(())
    })
}

/// `x · sigmoid(x)` into a new tensor.
pub fn silu(x: &Tensor) -> candle_core::Result<Tensor> {
    check_f32("silu", x)?;
    let cpu = Cpu::current();
    timed("silu", cpu, || {
        let out = with_f32_slice(x, |src| Ok(src.to_vec()))?;
        let out = tensor_from_vec(out, x.dims())?;
        silu_in_place_untimed(cpu, &out)?;
        Ok(out)
    })
}

/// diffusers GEGLU on `projected: [..., 2·inner]`: `hidden · gelu(gate)` with `[hidden, gate]` the two halves of
/// the last dimension; returns `[..., inner]`.
pub fn geglu(projected: &Tensor) -> candle_core::Result<Tensor> {
    let cpu = Cpu::current();
    timed("geglu", cpu, || geglu_untimed(cpu, projected))
}

fn geglu_untimed(cpu: Cpu, projected: &Tensor) -> candle_core::Result<Tensor> {
    const OP: &str = "geglu";
    check_f32(OP, projected)?;
    let shape = projected.dims();
    let width = *shape.last().unwrap_or(&0);
    if !width.is_multiple_of(2) || shape.is_empty() {
        return Err(KernelError::Shape {
            op: OP,
            detail: format!("last dimension of {shape:?} is not even"),
        }
        .into_candle());
    }
    let inner = width / 2;
    let rows = projected.elem_count() / width.max(1);
    let mut out = vec![0f32; rows * inner];
    with_f32_slice(projected, |src| {
        let rows_per_task = (ELEMENTS_PER_TASK / width.max(1)).max(1);
        out.par_chunks_mut(rows_per_task * inner.max(1))
            .enumerate()
            .for_each(|(task, dst)| {
                for (i, dst_row) in dst.chunks_mut(inner.max(1)).enumerate() {
                    let row = &src[(task * rows_per_task + i) * width..][..width];
                    geglu_row(cpu, &row[..inner], &row[inner..], dst_row);
                }
            });
        Ok(())
    })?;
    let mut out_shape = shape.to_vec();
    *out_shape.last_mut().unwrap_or(&mut 0) = inner;
    tensor_from_vec(out, &out_shape)
}

/// `dst += src` (same shapes), written into `dst`'s storage: every tensor sharing it (clones and views of `dst`)
/// sees the sum. `src` may share that storage, or be `dst` itself: it is then copied first, so
/// `add_in_place(&t, &t)` doubles `t`.
pub fn add_in_place(dst: &Tensor, src: &Tensor) -> candle_core::Result<()> {
    const OP: &str = "add_in_place";
    if dst.dims() != src.dims() {
        return Err(KernelError::Shape {
            op: OP,
            detail: format!("{:?} += {:?}", dst.dims(), src.dims()),
        }
        .into_candle());
    }
    check_f32(OP, src)?;
    check_f32(OP, dst)?;
    // Reading `src` holds its storage's read lock while `dst`'s write lock is taken: the same lock when they share
    // a storage, which would wait forever.
    let src = if same_storage(dst, src) {
        src.copy()?
    } else {
        src.clone()
    };
    let cpu = Cpu::current();
    timed("add in place", cpu, || {
        with_f32_slice(&src, |src| {
            with_f32_slice_mut(dst, OP, |data| {
                data.par_chunks_mut(ELEMENTS_PER_TASK)
                    .zip(src.par_chunks(ELEMENTS_PER_TASK))
                    .for_each(|(d, s)| add_inplace(cpu, d, s));
                Ok(())
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_and_gelu_match_std() {
        let mut worst_silu = 0f32;
        let mut worst_gelu = 0f32;
        for i in -4000..=4000 {
            let x = i as f32 * 0.01;
            let silu_want = x / (1.0 + (-x).exp());
            worst_silu = worst_silu.max((silu_scalar(x) - silu_want).abs() / (1.0 + x.abs()));
            let gelu_want = 0.5 * x as f64 * (1.0 + erf64(x as f64 / std::f64::consts::SQRT_2));
            worst_gelu = worst_gelu.max((gelu_erf_scalar(x) as f64 - gelu_want).abs() as f32);
        }
        assert!(worst_silu < 2e-7, "silu {worst_silu}");
        assert!(worst_gelu < 1e-6, "gelu {worst_gelu}");
        assert_eq!(silu_scalar(-200.0), -0.0);
        assert_eq!(silu_scalar(200.0), 200.0);
    }

    /// erf to ≈1e-12 by its Taylor series (|x| ≤ 3) or the continued fraction of erfc.
    fn erf64(x: f64) -> f64 {
        if x.abs() > 3.0 {
            let ax = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (ax + f);
            }
            let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f);
            return (1.0 - erfc).copysign(x);
        }
        let (mut term, mut total) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            total += term / (2 * n + 1) as f64;
        }
        total * 2.0 / std::f64::consts::PI.sqrt()
    }
}
