//! 2-D convolution (NCHW, f32, square stride and padding, no dilation/groups) as tiled im2col feeding `gemm`.
//!
//! The output of image `b` is `out[b] = W · col[b]` with `W` the weight viewed as `[out, in·kh·kw]` (its natural
//! contiguous layout, so "packing" costs nothing and keeps no second copy) and `col` the im2col matrix
//! `[in·kh·kw, oh·ow]`. `col` is never built for a whole image: the output pixels are cut into tiles of
//! `tile_cols` columns, each tile's slice of `col` (about `in·kh·kw·tile_cols` floats, sized to stay in L2) is
//! written by the thread that then multiplies it, straight into the output rows (bias pre-filled, so `gemm`
//! accumulates onto it). 1×1 stride-1 unpadded convolutions skip im2col: the input itself is the right-hand side.
//! When an image has fewer pixels than a tile (UNet 8×8), whole images are grouped into one tile whose product goes
//! to a scratch buffer and is scattered, so the weight matrix is read once for the whole batch.

use candle_core::Tensor;
use gemm::Parallelism;
use rayon::prelude::*;

use super::storage::{
    check_f32, dims, tensor_from_vec, threads, with_f32_slice, KernelError, SharedMut,
};

const OP: &str = "conv2d";

/// A convolution weight `[out, in, kh, kw]` prepared once for [`conv2d`]: f32, contiguous, shape checked.
#[derive(Debug, Clone)]
pub struct PackedConvWeight {
    weight: Tensor,
    out_channels: usize,
    in_channels: usize,
    kernel_h: usize,
    kernel_w: usize,
}

impl PackedConvWeight {
    /// Prepares `weight` (`[out, in, kh, kw]`, any float dtype; converted to contiguous f32).
    pub fn new(weight: &Tensor) -> candle_core::Result<Self> {
        let [out_channels, in_channels, kernel_h, kernel_w] = dims::<4>(OP, weight)?;
        let weight = weight.to_dtype(candle_core::DType::F32)?.contiguous()?;
        Ok(PackedConvWeight {
            weight,
            out_channels,
            in_channels,
            kernel_h,
            kernel_w,
        })
    }

    /// The prepared weight as a tensor `[out, in, kh, kw]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Number of output channels.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }
}

/// Geometry of one convolution call.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }
    fn out_pixels(&self) -> usize {
        self.oh * self.ow
    }
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
}

/// A run of output pixels `pixel..pixel + len` of image `image`, at column `col` of its tile.
#[derive(Debug, Clone, Copy)]
struct Segment {
    image: usize,
    pixel: usize,
    len: usize,
    col: usize,
}

/// NCHW convolution of `input` (`[n, in, h, w]` f32) with `weight`, plus `bias` (`[out]`), same numbers as
/// `input.conv2d(weight, padding, stride, 1, 1)` (+ bias) up to float rounding.
pub fn conv2d(
    input: &Tensor,
    weight: &PackedConvWeight,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    conv2d_with_tile(input, weight, bias, stride, padding, DEFAULT_TILE_COLS)
}

/// Output pixels per im2col tile. Measured (1 thread, AVX-512, docs/perf.md, "CPU kernels"): 192–384 is best for every
/// SD1.5 shape (K = 1152…11520); smaller tiles repack the weights too often, larger ones spill the tile from L2.
const DEFAULT_TILE_COLS: usize = 256;

/// [`conv2d`] with an explicit tile width (output pixels per im2col tile); for tuning and benchmarks.
#[doc(hidden)]
pub fn conv2d_with_tile(
    input: &Tensor,
    weight: &PackedConvWeight,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
    tile_cols: usize,
) -> candle_core::Result<Tensor> {
    if !input.device().is_cpu() {
        return candle_fallback(input, weight, bias, stride, padding);
    }
    check_f32(OP, input)?;
    let geometry = geometry(input, weight, stride, padding)?;
    let bias = bias_values(bias, geometry.c_out)?;
    let mut out = vec![0f32; geometry.batch * geometry.c_out * geometry.out_pixels()];
    with_f32_slice(input, |input| {
        with_f32_slice(&weight.weight, |weight| {
            run(&geometry, input, weight, &bias, &mut out, tile_cols.max(1));
            Ok(())
        })
    })?;
    tensor_from_vec(
        out,
        &[geometry.batch, geometry.c_out, geometry.oh, geometry.ow],
    )
}

fn candle_fallback(
    input: &Tensor,
    weight: &PackedConvWeight,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    let weight = weight.weight.to_device(input.device())?;
    let ys = input.conv2d(&weight, padding, stride, 1, 1)?;
    match bias {
        Some(bias) => ys.broadcast_add(&bias.reshape((1, (), 1, 1))?),
        None => Ok(ys),
    }
}

fn geometry(
    input: &Tensor,
    weight: &PackedConvWeight,
    stride: usize,
    pad: usize,
) -> candle_core::Result<Geometry> {
    let [batch, c_in, h, w] = dims::<4>(OP, input)?;
    let shape_error = |detail: String| KernelError::Shape { op: OP, detail }.into_candle();
    if c_in != weight.in_channels {
        return Err(shape_error(format!(
            "input has {c_in} channels, weight {:?} expects {}",
            weight.weight.dims(),
            weight.in_channels
        )));
    }
    if stride == 0 || h + 2 * pad < weight.kernel_h || w + 2 * pad < weight.kernel_w {
        return Err(shape_error(format!(
            "input {:?} too small for kernel {}x{} with padding {pad}, or stride {stride} is 0",
            input.dims(),
            weight.kernel_h,
            weight.kernel_w
        )));
    }
    Ok(Geometry {
        batch,
        c_in,
        h,
        w,
        c_out: weight.out_channels,
        kh: weight.kernel_h,
        kw: weight.kernel_w,
        stride,
        pad,
        oh: (h + 2 * pad - weight.kernel_h) / stride + 1,
        ow: (w + 2 * pad - weight.kernel_w) / stride + 1,
    })
}

fn bias_values(bias: Option<&Tensor>, c_out: usize) -> candle_core::Result<Vec<f32>> {
    let Some(bias) = bias else {
        return Ok(vec![0f32; c_out]);
    };
    let values = bias
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if values.len() != c_out {
        return Err(KernelError::Shape {
            op: OP,
            detail: format!("bias {:?} for {c_out} output channels", bias.dims()),
        }
        .into_candle());
    }
    Ok(values)
}

/// Cuts the output columns into tiles and runs them, in parallel over tiles or inside `gemm`.
fn run(
    g: &Geometry,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
    tile_cols: usize,
) {
    let pixels = g.out_pixels();
    let tiles = make_tiles(g, tile_cols);
    let out = SharedMut::new(out);
    let threads = threads();
    if tiles.len() >= 2 * threads || threads == 1 {
        tiles.par_iter().for_each_init(Vec::new, |col, tile| {
            // SAFETY: tiles cover disjoint output pixels.
            unsafe { run_tile(g, input, weight, bias, out, tile, col, Parallelism::None) };
        });
    } else {
        let mut col = Vec::new();
        for tile in &tiles {
            // SAFETY: tiles run one after another.
            unsafe {
                run_tile(
                    g,
                    input,
                    weight,
                    bias,
                    out,
                    tile,
                    &mut col,
                    Parallelism::Rayon(threads),
                )
            };
        }
    }
    debug_assert!(
        tiles
            .iter()
            .map(|t| t.iter().map(|s| s.len).sum::<usize>())
            .sum::<usize>()
            == g.batch * pixels
    );
}

/// Tiles as lists of segments: chunks of one image when an image has at least `tile_cols` pixels, else groups of
/// whole images.
fn make_tiles(g: &Geometry, tile_cols: usize) -> Vec<Vec<Segment>> {
    let pixels = g.out_pixels();
    let mut tiles = Vec::new();
    if pixels >= tile_cols {
        let per_image = pixels.div_ceil(tile_cols);
        let cols = pixels.div_ceil(per_image);
        for image in 0..g.batch {
            for pixel in (0..pixels).step_by(cols) {
                let len = cols.min(pixels - pixel);
                tiles.push(vec![Segment {
                    image,
                    pixel,
                    len,
                    col: 0,
                }]);
            }
        }
    } else {
        let group = (tile_cols / pixels).max(1);
        for first in (0..g.batch).step_by(group) {
            let images = first..(first + group).min(g.batch);
            let segments = images
                .enumerate()
                .map(|(i, image)| Segment {
                    image,
                    pixel: 0,
                    len: pixels,
                    col: i * pixels,
                })
                .collect();
            tiles.push(segments);
        }
    }
    tiles
}

/// Computes the output pixels of one tile.
///
/// # Safety
/// `out` must point to the whole output buffer and no other task may write the pixels of `tile` meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn run_tile(
    g: &Geometry,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    out: SharedMut,
    tile: &[Segment],
    col: &mut Vec<f32>,
    parallelism: Parallelism,
) {
    let pixels = g.out_pixels();
    let ncols: usize = tile.iter().map(|s| s.len).sum();
    let image_in = g.c_in * g.h * g.w;
    let image_out = g.c_out * pixels;
    if let [seg] = tile {
        let dst = out.ptr().add(seg.image * image_out + seg.pixel);
        fill_bias(dst, pixels, seg.len, bias);
        let (rhs, rhs_rs) = if g.is_pointwise() {
            (input.as_ptr().add(seg.image * image_in + seg.pixel), pixels)
        } else {
            im2col_tile(g, input, tile, ncols, col);
            (col.as_ptr(), ncols)
        };
        matmul(g, weight, rhs, rhs_rs, seg.len, dst, pixels, parallelism);
        return;
    }
    let rhs = if g.is_pointwise() {
        gather_pointwise(g, input, tile, ncols, col);
        col.as_ptr()
    } else {
        im2col_tile(g, input, tile, ncols, col);
        col.as_ptr()
    };
    let mut scratch = vec![0f32; g.c_out * ncols];
    matmul(
        g,
        weight,
        rhs,
        ncols,
        ncols,
        scratch.as_mut_ptr(),
        ncols,
        parallelism,
    );
    for seg in tile {
        for (co, b) in bias.iter().enumerate() {
            let src = &scratch[co * ncols + seg.col..co * ncols + seg.col + seg.len];
            let dst = std::slice::from_raw_parts_mut(
                out.ptr()
                    .add(seg.image * image_out + co * pixels + seg.pixel),
                seg.len,
            );
            for (d, s) in dst.iter_mut().zip(src) {
                *d = s + b;
            }
        }
    }
}

/// Writes `bias[co]` into `len` entries of each output row `co` (rows `row_stride` apart) starting at `dst`.
unsafe fn fill_bias(dst: *mut f32, row_stride: usize, len: usize, bias: &[f32]) {
    for (co, &b) in bias.iter().enumerate() {
        std::slice::from_raw_parts_mut(dst.add(co * row_stride), len).fill(b);
    }
}

/// `dst[co, j] += Σ_k W[co, k] · rhs[k, j]` for `ncols` columns; rows of `rhs`/`dst` are `*_rs` apart.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    g: &Geometry,
    weight: &[f32],
    rhs: *const f32,
    rhs_rs: usize,
    ncols: usize,
    dst: *mut f32,
    dst_rs: usize,
    parallelism: Parallelism,
) {
    let k = g.k();
    gemm::gemm(
        g.c_out,
        ncols,
        k,
        dst,
        1,
        dst_rs as isize,
        true,
        weight.as_ptr(),
        1,
        k as isize,
        rhs,
        1,
        rhs_rs as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        parallelism,
    );
}

/// Copies the input pixels of a multi-image pointwise tile into `col` (`[c_in, ncols]`).
fn gather_pointwise(
    g: &Geometry,
    input: &[f32],
    tile: &[Segment],
    ncols: usize,
    col: &mut Vec<f32>,
) {
    col.resize(g.c_in * ncols, 0.0);
    let pixels = g.h * g.w;
    for seg in tile {
        for ci in 0..g.c_in {
            let src = (seg.image * g.c_in + ci) * pixels + seg.pixel;
            col[ci * ncols + seg.col..ci * ncols + seg.col + seg.len]
                .copy_from_slice(&input[src..src + seg.len]);
        }
    }
}

/// Writes the im2col rows `(ci, ky, kx)` × tile columns into `col` (`[c_in·kh·kw, ncols]`, zero where padded).
fn im2col_tile(g: &Geometry, input: &[f32], tile: &[Segment], ncols: usize, col: &mut Vec<f32>) {
    col.resize(g.k() * ncols, 0.0);
    for seg in tile {
        let mut pixel = seg.pixel;
        let end = seg.pixel + seg.len;
        while pixel < end {
            let oy = pixel / g.ow;
            let ox0 = pixel % g.ow;
            let ox1 = g.ow.min(ox0 + end - pixel);
            let dst_col = seg.col + pixel - seg.pixel;
            im2col_row_run(g, input, seg.image, oy, ox0, ox1, col, ncols, dst_col);
            pixel += ox1 - ox0;
        }
    }
}

/// im2col of output row `oy`, columns `ox0..ox1` of one image, into `col` at column `dst_col`.
#[allow(clippy::too_many_arguments)]
fn im2col_row_run(
    g: &Geometry,
    input: &[f32],
    image: usize,
    oy: usize,
    ox0: usize,
    ox1: usize,
    col: &mut [f32],
    ncols: usize,
    dst_col: usize,
) {
    let len = ox1 - ox0;
    for ci in 0..g.c_in {
        let plane = &input[(image * g.c_in + ci) * g.h * g.w..][..g.h * g.w];
        for ky in 0..g.kh {
            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
            for kx in 0..g.kw {
                let row = (ci * g.kh + ky) * g.kw + kx;
                let dst = &mut col[row * ncols + dst_col..][..len];
                if iy < 0 || iy >= g.h as isize {
                    dst.fill(0.0);
                    continue;
                }
                let src = &plane[iy as usize * g.w..][..g.w];
                copy_shifted(src, dst, ox0, kx, g.stride, g.pad);
            }
        }
    }
}

/// `dst[i] = src[(ox0 + i)·stride + kx − pad]`, zero where that index falls outside `src`.
fn copy_shifted(src: &[f32], dst: &mut [f32], ox0: usize, kx: usize, stride: usize, pad: usize) {
    let w = src.len() as isize;
    let first = (ox0 * stride + kx) as isize - pad as isize;
    if stride == 1 {
        // Valid i: 0 <= first + i < w.
        let lo = (-first).clamp(0, dst.len() as isize) as usize;
        let hi = (w - first).clamp(lo as isize, dst.len() as isize) as usize;
        dst[..lo].fill(0.0);
        if hi > lo {
            let s = (first + lo as isize) as usize;
            dst[lo..hi].copy_from_slice(&src[s..s + hi - lo]);
        }
        dst[hi..].fill(0.0);
        return;
    }
    for (i, d) in dst.iter_mut().enumerate() {
        let x = first + (i * stride) as isize;
        *d = if x >= 0 && x < w {
            src[x as usize]
        } else {
            0.0
        };
    }
}
