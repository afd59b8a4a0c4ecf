//! Fully connected layer `y = x Wᵀ + b (+ residual)` over f32 CPU tensors with one matrix multiply
//! (`sgemm::matmul`: this crate's AVX2 kernel on the AVX2 path, the `gemm` crate on the others), plus the GEGLU and
//! 1×1-convolution variants.
//!
//! The output buffer is first filled with `residual + b` (or `b`), then the product is accumulated onto it, so the
//! bias and a residual connection cost no extra pass over memory and no extra tensor (candle's `Linear` plus
//! `+ residual` makes three passes and two temporaries). The weight is read in place as `[out, in]`.

use candle_core::Tensor;
use rayon::prelude::*;

use super::isa::Cpu;
use super::pointwise::geglu_row;
use super::sgemm::{self, Operand, PackedB};
use super::storage::{check_f32, tensor_from_vec, threads, with_f32_slice, KernelError};
use super::timing::timed;

const OP: &str = "linear";

/// Products smaller than this many multiply-adds run on one thread (threading costs more than it saves).
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// `x Wᵀ + bias + residual` for `x: [..., in]`, `weight: [out, in]`, `bias: [out]`, `residual: [..., out]`.
pub fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let cpu = Cpu::current();
    timed("linear", cpu, || {
        linear_untimed(cpu, x, weight, bias, residual)
    })
}

fn linear_untimed(
    cpu: Cpu,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    check_f32(OP, x)?;
    check_f32(OP, weight)?;
    let (out_dim, in_dim) = weight.dims2()?;
    let shape = x.dims();
    if shape.last() != Some(&in_dim) {
        return Err(shape_error(format!(
            "input {shape:?}, weight {:?}",
            weight.dims()
        )));
    }
    let rows = x.elem_count() / in_dim.max(1);
    let mut out_shape = shape.to_vec();
    if let Some(last) = out_shape.last_mut() {
        *last = out_dim;
    }
    let mut out = initial_output(rows, out_dim, bias, residual, &out_shape)?;
    let has_init = bias.is_some() || residual.is_some();
    with_f32_slice(x, |x| {
        with_f32_slice(weight, |w| {
            let parallel = rows * out_dim * in_dim >= PARALLEL_MIN_MACS;
            // SAFETY: the slices hold rows×in, out×in and rows×out values.
            unsafe {
                x_times_weight_t(
                    cpu,
                    (rows, out_dim, in_dim),
                    x,
                    w,
                    &mut out,
                    has_init,
                    parallel,
                )
            };
            Ok(())
        })
    })?;
    tensor_from_vec(out, &out_shape)
}

/// `out (+)= x Wᵀ` for `x: rows × in`, `w: out × in`, `out: rows × out` (all row-major).
///
/// # Safety
/// The slices must hold at least the values named above.
unsafe fn x_times_weight_t(
    cpu: Cpu,
    (rows, out_dim, in_dim): (usize, usize, usize),
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    accumulate: bool,
    parallel: bool,
) {
    sgemm::matmul(
        cpu,
        (rows, out_dim, in_dim),
        Operand::rows(x, in_dim),
        Operand::transposed(w, in_dim),
        out.as_mut_ptr(),
        out_dim,
        accumulate,
        parallel,
    );
}

/// Rows per task of [`linear_geglu`]: the projected block (`rows × 2·inner` floats, 10 MiB for 2560 projected
/// features) stays in L3 until the gate is applied, and `gemm`'s packing of the weight is shared by 1024 rows.
const GEGLU_ROWS: usize = 1024;

thread_local! {
    /// Per-thread projected block of [`linear_geglu`], reused across calls (no page faults after the first).
    static GEGLU_BLOCK: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// diffusers GEGLU: `h · gelu(gate)` with `[h, gate] = x Wᵀ + bias` for `x: [..., in]`, `weight: [2·inner, in]`;
/// returns `[..., inner]`. Equal to [`linear`] then `pointwise::geglu`, but computed in blocks of rows, so the
/// projected tensor (twice the output) is never stored whole: no 84 MB allocation, page faults and memory round
/// trip per 512×512 feed-forward layer.
pub fn linear_geglu(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let cpu = Cpu::current();
    timed("linear+geglu", cpu, || {
        linear_geglu_untimed(cpu, x, weight, bias)
    })
}

fn linear_geglu_untimed(
    cpu: Cpu,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    check_f32(OP, x)?;
    check_f32(OP, weight)?;
    let (projected, in_dim) = weight.dims2()?;
    let shape = x.dims();
    if shape.last() != Some(&in_dim) || !projected.is_multiple_of(2) {
        return Err(shape_error(format!(
            "GEGLU input {shape:?}, weight {:?}",
            weight.dims()
        )));
    }
    let inner = projected / 2;
    let rows = x.elem_count() / in_dim.max(1);
    let init = initial_output(1, projected, bias, None, &[1, projected])?;
    let rows_per_task = GEGLU_ROWS.min(rows.div_ceil(threads()).max(1));
    let mut out = vec![0f32; rows * inner];
    with_f32_slice(x, |x| {
        with_f32_slice(weight, |w| {
            // The weight packed once for all row blocks where this crate's GEMM runs.
            // SAFETY: w is projected×in.
            let packed = sgemm::preferred(cpu).then(|| unsafe {
                PackedB::new(cpu, Operand::transposed(w, in_dim), in_dim, projected, true)
            });
            out.par_chunks_mut((rows_per_task * inner).max(1))
                .enumerate()
                .for_each(|(task, dst)| {
                    let block_rows = dst.len() / inner.max(1);
                    let xs = &x[task * rows_per_task * in_dim..][..block_rows * in_dim];
                    GEGLU_BLOCK.with(|block| {
                        let mut block = block.borrow_mut();
                        fill_rows(&mut block, &init, block_rows);
                        let (a, c) = (Operand::rows(xs, in_dim), block.as_mut_ptr());
                        // SAFETY: xs is block_rows×in, w projected×in, block block_rows×projected.
                        unsafe {
                            match &packed {
                                Some(packed) => sgemm::sgemm_packed(
                                    block_rows, a, packed, c, projected, true, false,
                                ),
                                None => sgemm::matmul(
                                    cpu,
                                    (block_rows, projected, in_dim),
                                    a,
                                    Operand::transposed(w, in_dim),
                                    c,
                                    projected,
                                    true,
                                    false,
                                ),
                            }
                        }
                        gate_rows(cpu, &block, dst, inner);
                    });
                });
            Ok(())
        })
    })?;
    tensor_from_vec(out, &out_shape(shape, inner))
}

/// `shape` with its last dimension replaced by `last`.
fn out_shape(shape: &[usize], last: usize) -> Vec<usize> {
    let mut out = shape.to_vec();
    if let Some(l) = out.last_mut() {
        *l = last;
    }
    out
}

/// `block` = `rows` copies of `init`.
fn fill_rows(block: &mut Vec<f32>, init: &[f32], rows: usize) {
    block.clear();
    for _ in 0..rows {
        block.extend_from_slice(init);
    }
}

/// `dst` row by row = `h · gelu(gate)` of the projected rows `[h, gate]` in `block`.
fn gate_rows(cpu: Cpu, block: &[f32], dst: &mut [f32], inner: usize) {
    for (row, out) in block.chunks(2 * inner).zip(dst.chunks_mut(inner)) {
        geglu_row(cpu, &row[..inner], &row[inner..], out);
    }
}

/// The values of a `[out]` bias as f32, checked against `out_dim`.
fn bias_values(bias: Option<&Tensor>, out_dim: usize) -> candle_core::Result<Option<Vec<f32>>> {
    let Some(b) = bias else {
        return Ok(None);
    };
    let values = b
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if values.len() != out_dim {
        return Err(shape_error(format!(
            "bias {:?} for {out_dim} outputs",
            b.dims()
        )));
    }
    Ok(Some(values))
}

fn shape_error(detail: String) -> candle_core::Error {
    KernelError::Shape { op: OP, detail }.into_candle()
}

/// `rows × out` values: `residual + bias`, `residual`, `bias` repeated, or zeros.
fn initial_output(
    rows: usize,
    out_dim: usize,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    out_shape: &[usize],
) -> candle_core::Result<Vec<f32>> {
    let bias = bias_values(bias, out_dim)?;
    let Some(residual) = residual else {
        let mut out = vec![0f32; rows * out_dim];
        if let Some(bias) = &bias {
            out.par_chunks_mut(out_dim.max(1))
                .with_min_len(64)
                .for_each(|row| row.copy_from_slice(bias));
        }
        return Ok(out);
    };
    check_f32(OP, residual)?;
    if residual.dims() != out_shape {
        return Err(shape_error(format!(
            "residual {:?} for output {out_shape:?}",
            residual.dims()
        )));
    }
    with_f32_slice(residual, |res| {
        let mut out = vec![0f32; rows * out_dim];
        out.par_chunks_mut(out_dim.max(1))
            .zip(res.par_chunks(out_dim.max(1)))
            .with_min_len(64)
            .for_each(|(row, res)| match &bias {
                Some(bias) => {
                    for ((o, &r), &b) in row.iter_mut().zip(res).zip(bias) {
                        *o = r + b;
                    }
                }
                None => row.copy_from_slice(res),
            });
        Ok(out)
    })
}

/// A 1×1 convolution from NCHW `x: [B, in, H, W]` straight to token-major `[B, H·W, out]` (what a transformer
/// block reads): `y[b, p, o] = Σ_i w[o, i]·x[b, i, p] + bias[o]`, with `gemm` reading `x` transposed in place.
pub fn pointwise_conv_to_tokens(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let cpu = Cpu::current();
    timed("conv 1x1 to tokens", cpu, || {
        pointwise_conv_to_tokens_untimed(cpu, x, weight, bias)
    })
}

fn pointwise_conv_to_tokens_untimed(
    cpu: Cpu,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    check_f32(OP, x)?;
    let (batch, in_dim, h, w) = x.dims4()?;
    let weight = weight.flatten_from(1)?;
    let (out_dim, weight_in) = weight.dims2()?;
    if weight_in != in_dim {
        return Err(shape_error(format!(
            "input {:?}, 1x1 weight {:?}",
            x.dims(),
            weight.dims()
        )));
    }
    let pixels = h * w;
    let out_shape = [batch, pixels, out_dim];
    let mut out = initial_output(batch * pixels, out_dim, bias, None, &out_shape)?;
    with_f32_slice(x, |x| {
        with_f32_slice(&weight, |wt| {
            for b in 0..batch {
                // SAFETY: image b of x is in×pixels (read transposed), the weight out×in, output rows b·pixels..
                // are pixels×out.
                unsafe {
                    sgemm::matmul(
                        cpu,
                        (pixels, out_dim, in_dim),
                        Operand::transposed(&x[b * in_dim * pixels..], pixels),
                        Operand::transposed(wt, in_dim),
                        out.as_mut_ptr().add(b * pixels * out_dim),
                        out_dim,
                        true,
                        pixels * out_dim * in_dim >= PARALLEL_MIN_MACS,
                    );
                }
            }
            Ok(())
        })
    })?;
    tensor_from_vec(out, &out_shape)
}

/// A 1×1 convolution from token-major `tokens: [B, H·W, in]` back to NCHW `[B, out, H, W]`, plus `bias` and a
/// `residual` of the output's shape (both written first, so they cost no extra pass).
pub fn pointwise_conv_from_tokens(
    tokens: &Tensor,
    (h, w): (usize, usize),
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let cpu = Cpu::current();
    timed("conv 1x1 from tokens", cpu, || {
        pointwise_conv_from_tokens_untimed(cpu, tokens, (h, w), weight, bias, residual)
    })
}

fn pointwise_conv_from_tokens_untimed(
    cpu: Cpu,
    tokens: &Tensor,
    (h, w): (usize, usize),
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    check_f32(OP, tokens)?;
    let (batch, pixels, in_dim) = tokens.dims3()?;
    let weight = weight.flatten_from(1)?;
    let (out_dim, weight_in) = weight.dims2()?;
    if weight_in != in_dim || pixels != h * w {
        return Err(shape_error(format!(
            "tokens {:?} as {h}x{w}, 1x1 weight {:?}",
            tokens.dims(),
            weight.dims()
        )));
    }
    let out_shape = [batch, out_dim, h, w];
    // Initial value: per channel row `bias[o]` (+ residual), i.e. `initial_output` over `batch·out` rows of
    // `pixels`, with the bias expanded per row.
    let row_bias = bias_values(bias, out_dim)?;
    let mut out = match residual {
        Some(r) => {
            check_f32(OP, r)?;
            if r.dims() != out_shape {
                return Err(shape_error(format!(
                    "residual {:?} for {out_shape:?}",
                    r.dims()
                )));
            }
            with_f32_slice(r, |r| Ok(r.to_vec()))?
        }
        None => vec![0f32; batch * out_dim * pixels],
    };
    if let Some(row_bias) = &row_bias {
        out.par_chunks_mut(pixels.max(1))
            .enumerate()
            .with_min_len(16)
            .for_each(|(row, values)| {
                let b = row_bias[row % out_dim];
                values.iter_mut().for_each(|v| *v += b);
            });
    }
    with_f32_slice(tokens, |t| {
        with_f32_slice(&weight, |wt| {
            for b in 0..batch {
                // SAFETY: tokens of image b are pixels×in (read transposed), the weight out×in, output image b is
                // out×pixels.
                unsafe {
                    sgemm::matmul(
                        cpu,
                        (out_dim, pixels, in_dim),
                        Operand::rows(wt, in_dim),
                        Operand::transposed(&t[b * pixels * in_dim..], in_dim),
                        out.as_mut_ptr().add(b * out_dim * pixels),
                        pixels,
                        true,
                        pixels * out_dim * in_dim >= PARALLEL_MIN_MACS,
                    );
                }
            }
            Ok(())
        })
    })?;
    tensor_from_vec(out, &out_shape)
}
