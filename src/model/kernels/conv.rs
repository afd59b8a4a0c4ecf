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

#[cfg(target_arch = "x86_64")]
use super::direct::{self, DirectIo, DirectShape};
use super::isa::Cpu;
use super::pointwise::{self, GroupNormParams};
use super::storage::{
    check_f32, dims, tensor_from_vec, threads, with_f32_slice, KernelError, SharedMut,
};
use super::timing::timed;
#[cfg(target_arch = "x86_64")]
use super::winograd;

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
    let add = ConvAdd {
        bias,
        ..ConvAdd::default()
    };
    conv2d_add(input, weight, stride, padding, add, ConvAlgorithm::Auto)
}

/// What is added to a convolution's output. Each term is written into the output before `gemm` accumulates the
/// convolution onto it, so none costs a pass of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConvAdd<'a> {
    /// `[out]`: one value per output channel.
    pub bias: Option<&'a Tensor>,
    /// `[n, out]`: one value per image and output channel (a resnet's projected time embedding).
    pub channel_shift: Option<&'a Tensor>,
    /// `[n, out, oh, ow]`: a tensor of the output's shape (a residual connection).
    pub residual: Option<&'a Tensor>,
}

/// Which implementation [`conv2d_add`] uses. The kernels named here run only on the paths that have them
/// (`isa.rs`): on the others the call falls back as described, which `isa::traced` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvAlgorithm {
    /// Stride-1 convolutions other than 1×1: the Winograd kernel (`winograd.rs`, AVX2 and AVX-512 paths) for 3×3,
    /// padding 1 with output rows of at least [`WINOGRAD_MIN_WIDTH`] pixels, else the direct kernel (`direct.rs`,
    /// AVX-512 path) with output rows of at least [`DIRECT_MIN_WIDTH`] pixels; tiled im2col + `gemm` otherwise.
    Auto,
    /// Tiled im2col + `gemm` with tiles of this many output pixels.
    Im2col(usize),
    /// The direct kernel for every stride-1 convolution (any width) on the AVX-512 path; for tests.
    Direct,
    /// The Winograd kernel for every 3×3, stride-1, padding-1 convolution (any width) on the AVX2 and AVX-512
    /// paths; the direct kernel for other stride-1 convolutions on the AVX-512 path; for tests.
    Winograd,
}

/// Narrowest output rows the direct kernel takes in [`ConvAlgorithm::Auto`]: it computes `kw − 1` discarded
/// positions per row, and at 16-pixel rows it measured slower than im2col + `gemm` (30 vs 22 ms for 640 channels,
/// batch 2; docs/perf.md, "Issue 6 work log"), at 32 and wider faster.
pub const DIRECT_MIN_WIDTH: usize = 32;

/// Narrowest output rows the Winograd kernel takes in [`ConvAlgorithm::Auto`].
pub const WINOGRAD_MIN_WIDTH: usize = 16;

/// [`conv2d`] with the additions of `add`: `conv(input) + bias + channel_shift + residual`, computed by
/// `algorithm`.
pub fn conv2d_add(
    input: &Tensor,
    weight: &PackedConvWeight,
    stride: usize,
    padding: usize,
    add: ConvAdd,
    algorithm: ConvAlgorithm,
) -> candle_core::Result<Tensor> {
    conv2d_norm_add(input, None, weight, stride, padding, add, algorithm)
}

/// A GroupNorm (optionally followed by SiLU) applied to a convolution's input.
#[derive(Debug, Clone, Copy)]
pub struct InputNorm<'a> {
    pub params: GroupNormParams<'a>,
    pub silu: bool,
}

/// `conv(silu(group_norm(input))) + add` (SiLU when `norm.silu`): the pre-activation of every resnet
/// convolution. With the direct kernel the normalisation is applied while each task copies its input rows (only the
/// statistics take a pass of their own, and the normalised tensor is never stored); otherwise the input is
/// normalised first.
pub fn conv2d_norm_add(
    input: &Tensor,
    norm: Option<InputNorm>,
    weight: &PackedConvWeight,
    stride: usize,
    padding: usize,
    add: ConvAdd,
    algorithm: ConvAlgorithm,
) -> candle_core::Result<Tensor> {
    if !input.device().is_cpu() {
        let normed = match norm {
            Some(n) => Some(pointwise::group_norm(input, n.params, n.silu)?),
            None => None,
        };
        return candle_fallback(
            normed.as_ref().unwrap_or(input),
            weight,
            stride,
            padding,
            add,
        );
    }
    check_f32(OP, input)?;
    let cpu = Cpu::current();
    let geometry = geometry(input, weight, stride, padding)?;
    let direct = use_direct(&geometry, algorithm, cpu);
    if let (Some(n), None) = (norm, &direct) {
        let normed = pointwise::group_norm(input, n.params, n.silu)?;
        return conv2d_norm_add(&normed, None, weight, stride, padding, add, algorithm);
    }
    #[cfg(target_arch = "x86_64")]
    let transform = match norm {
        Some(n) => Some((pointwise::group_norm_affines(input, n.params)?, n.silu)),
        None => None,
    };
    let bias = image_channel_bias(&geometry, add)?;
    let out_dims = [geometry.batch, geometry.c_out, geometry.oh, geometry.ow];
    let mut out = vec![0f32; geometry.batch * geometry.c_out * geometry.out_pixels()];
    let residual = match add.residual {
        Some(residual) => {
            check_f32(OP, residual)?;
            if residual.dims() != out_dims {
                return Err(KernelError::Shape {
                    op: OP,
                    detail: format!("residual {:?} for output {out_dims:?}", residual.dims()),
                }
                .into_candle());
            }
            Some(residual.contiguous()?)
        }
        None => None,
    };
    let with_residual =
        |body: &mut dyn FnMut(Option<&[f32]>) -> candle_core::Result<()>| match &residual {
            Some(residual) => with_f32_slice(residual, |r| body(Some(r))),
            None => body(None),
        };
    let tile_cols = match algorithm {
        ConvAlgorithm::Im2col(tile) => tile.max(1),
        _ => DEFAULT_TILE_COLS,
    };
    with_residual(&mut |residual| {
        with_f32_slice(input, |input| {
            with_f32_slice(&weight.weight, |weight| {
                #[cfg(target_arch = "x86_64")]
                if let Some((shape, kernel)) = direct {
                    let io = DirectIo {
                        input,
                        weight,
                        bias: &bias,
                        residual,
                        transform: transform.as_ref().map(|(a, silu)| (a.as_slice(), *silu)),
                    };
                    run_in_place(cpu, &shape, kernel, io, &mut out);
                    return Ok(());
                }
                let init = OutputInit {
                    bias: &bias,
                    residual,
                };
                run(cpu, &geometry, input, weight, init, &mut out, tile_cols);
                Ok(())
            })
        })
    })?;
    tensor_from_vec(out, &out_dims)
}

/// The stride-1 kernels that work on the image in place (no im2col matrix; x86-64 only).
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InPlaceKernel {
    /// `direct.rs` (AVX-512 path): any kernel size.
    Direct,
    /// `winograd.rs` (AVX2 and AVX-512 paths): 3×3, padding 1, 4× fewer multiplies (F(4×4)).
    Winograd,
}

/// The in-place kernel's shape and choice when `algorithm` and the path `cpu` allow one for this convolution.
#[cfg(target_arch = "x86_64")]
fn use_direct(
    g: &Geometry,
    algorithm: ConvAlgorithm,
    cpu: Cpu,
) -> Option<(DirectShape, InPlaceKernel)> {
    if g.stride != 1 {
        return None;
    }
    let shape = DirectShape {
        batch: g.batch,
        c_in: g.c_in,
        h: g.h,
        w: g.w,
        c_out: g.c_out,
        kh: g.kh,
        kw: g.kw,
        pad: g.pad,
        upsample: false,
    };
    let auto_allows = g.ow >= DIRECT_MIN_WIDTH && !g.is_pointwise();
    choose_kernel(&shape, algorithm, auto_allows, cpu).map(|kernel| (shape, kernel))
}

/// No in-place kernel off x86-64.
#[cfg(not(target_arch = "x86_64"))]
fn use_direct(_: &Geometry, _: ConvAlgorithm, _: Cpu) -> Option<std::convert::Infallible> {
    None
}

/// Which in-place kernel runs `shape` (stride 1) under `algorithm` on path `cpu`; `auto_allows`: whether
/// [`ConvAlgorithm::Auto`] may use one at all (wide enough rows, not 1×1).
#[cfg(target_arch = "x86_64")]
fn choose_kernel(
    shape: &DirectShape,
    algorithm: ConvAlgorithm,
    auto_allows: bool,
    cpu: Cpu,
) -> Option<InPlaceKernel> {
    let winograd = (winograd::supports(shape) && cpu.avx2()).then_some(InPlaceKernel::Winograd);
    let direct = cpu.avx512().then_some(InPlaceKernel::Direct);
    match algorithm {
        ConvAlgorithm::Im2col(_) => None,
        ConvAlgorithm::Direct => direct,
        ConvAlgorithm::Winograd => winograd.or(direct),
        ConvAlgorithm::Auto if shape.ow() >= WINOGRAD_MIN_WIDTH => {
            winograd.or(direct.filter(|_| auto_allows))
        }
        ConvAlgorithm::Auto => direct.filter(|_| auto_allows),
    }
}

/// Runs a convolution with the in-place kernel chosen by [`choose_kernel`] for path `cpu`.
#[cfg(target_arch = "x86_64")]
fn run_in_place(
    cpu: Cpu,
    shape: &DirectShape,
    kernel: InPlaceKernel,
    io: DirectIo,
    out: &mut [f32],
) {
    match kernel {
        InPlaceKernel::Winograd => timed("conv winograd", cpu, || {
            winograd::conv2d_winograd(cpu, shape, io, out)
        }),
        InPlaceKernel::Direct => timed("conv direct", cpu, || {
            direct::conv2d_direct(cpu, shape, io, out)
        }),
    }
}

/// `conv(upsample_nearest_2x(input)) + add`: diffusers `Upsample2D` (nearest ×2, then a stride-1 convolution)
/// without the 4×-sized upsampled tensor when the direct kernel applies (it reads each input pixel twice per row
/// while filling its input band); otherwise upsamples and calls [`conv2d_add`].
pub fn conv2d_upsample2x_add(
    input: &Tensor,
    weight: &PackedConvWeight,
    padding: usize,
    add: ConvAdd,
) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = input.dims4()?;
    #[cfg(target_arch = "x86_64")]
    if let Some(out) = upsample2x_in_place(input, weight, padding, add)? {
        return Ok(out);
    }
    let upsampled = input.upsample_nearest2d(2 * h, 2 * w)?;
    conv2d_add(&upsampled, weight, 1, padding, add, ConvAlgorithm::Auto)
}

/// [`conv2d_upsample2x_add`] by an in-place kernel reading the input upsampled; `None` when none applies.
#[cfg(target_arch = "x86_64")]
fn upsample2x_in_place(
    input: &Tensor,
    weight: &PackedConvWeight,
    padding: usize,
    add: ConvAdd,
) -> candle_core::Result<Option<Tensor>> {
    if !input.device().is_cpu()
        || input.dtype() != candle_core::DType::F32
        || add.residual.is_some()
    {
        return Ok(None);
    }
    let [batch, c_in, h, w] = dims::<4>(OP, input)?;
    let cpu = Cpu::current();
    let shape = DirectShape {
        batch,
        c_in,
        h: 2 * h,
        w: 2 * w,
        c_out: weight.out_channels,
        kh: weight.kernel_h,
        kw: weight.kernel_w,
        pad: padding,
        upsample: true,
    };
    let fits = c_in == weight.in_channels
        && 2 * h + 2 * padding >= shape.kh
        && 2 * w + 2 * padding >= shape.kw;
    let kernel = choose_kernel(
        &shape,
        ConvAlgorithm::Auto,
        shape.ow() >= DIRECT_MIN_WIDTH,
        cpu,
    );
    let Some(kernel) = kernel.filter(|_| fits) else {
        return Ok(None);
    };
    let g = Geometry {
        batch,
        c_in,
        h: 2 * h,
        w: 2 * w,
        c_out: shape.c_out,
        kh: shape.kh,
        kw: shape.kw,
        stride: 1,
        pad: padding,
        oh: shape.oh(),
        ow: shape.ow(),
    };
    let bias = image_channel_bias(&g, add)?;
    let mut out = vec![0f32; batch * g.c_out * g.out_pixels()];
    with_f32_slice(input, |input| {
        with_f32_slice(&weight.weight, |weight| {
            let io = DirectIo {
                input,
                weight,
                bias: &bias,
                residual: None,
                transform: None,
            };
            run_in_place(cpu, &shape, kernel, io, &mut out);
            Ok(())
        })
    })?;
    tensor_from_vec(out, &[batch, g.c_out, g.oh, g.ow]).map(Some)
}

/// Initial value of the output: `bias[image·c_out + co] (+ residual[image, co, pixel])`.
#[derive(Clone, Copy)]
struct OutputInit<'a> {
    bias: &'a [f32],
    residual: Option<&'a [f32]>,
}

/// Output pixels per im2col tile. Measured (1 thread, AVX-512, docs/perf.md, "CPU kernels"): 192–384 is best for every
/// SD1.5 shape (K = 1152…11520); smaller tiles repack the weights too often, larger ones spill the tile from L2.
pub const DEFAULT_TILE_COLS: usize = 256;

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
    let add = ConvAdd {
        bias,
        ..ConvAdd::default()
    };
    conv2d_add(
        input,
        weight,
        stride,
        padding,
        add,
        ConvAlgorithm::Im2col(tile_cols),
    )
}

fn candle_fallback(
    input: &Tensor,
    weight: &PackedConvWeight,
    stride: usize,
    padding: usize,
    add: ConvAdd,
) -> candle_core::Result<Tensor> {
    let weight = weight.weight.to_device(input.device())?;
    let mut ys = input.conv2d(&weight, padding, stride, 1, 1)?;
    if let Some(bias) = add.bias {
        ys = ys.broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
    }
    if let Some(shift) = add.channel_shift {
        ys = ys.broadcast_add(&shift.unsqueeze(2)?.unsqueeze(3)?)?;
    }
    match add.residual {
        Some(residual) => ys + residual,
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

/// `bias[co] + channel_shift[b, co]` for every image `b` and output channel `co` (`[batch · c_out]`).
fn image_channel_bias(g: &Geometry, add: ConvAdd) -> candle_core::Result<Vec<f32>> {
    let values = |t: &Tensor, expected: usize, what: &str| -> candle_core::Result<Vec<f32>> {
        let v = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if v.len() != expected {
            return Err(KernelError::Shape {
                op: OP,
                detail: format!(
                    "{what} {:?} for {} images × {} output channels",
                    t.dims(),
                    g.batch,
                    g.c_out
                ),
            }
            .into_candle());
        }
        Ok(v)
    };
    let bias = match add.bias {
        Some(b) => values(b, g.c_out, "bias")?,
        None => vec![0f32; g.c_out],
    };
    let mut per_image: Vec<f32> = (0..g.batch).flat_map(|_| bias.iter().copied()).collect();
    if let Some(shift) = add.channel_shift {
        for (v, s) in per_image
            .iter_mut()
            .zip(values(shift, g.batch * g.c_out, "channel shift")?)
        {
            *v += s;
        }
    }
    Ok(per_image)
}

/// Cuts the output columns into tiles and runs them, in parallel over tiles or inside `gemm` (the same code on
/// every path `cpu`).
fn run(
    cpu: Cpu,
    g: &Geometry,
    input: &[f32],
    weight: &[f32],
    init: OutputInit,
    out: &mut [f32],
    tile_cols: usize,
) {
    timed("conv im2col", cpu, || {
        run_tiles(g, input, weight, init, out, tile_cols)
    })
}

fn run_tiles(
    g: &Geometry,
    input: &[f32],
    weight: &[f32],
    init: OutputInit,
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
            unsafe { run_tile(g, input, weight, init, out, tile, col, Parallelism::None) };
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
                    init,
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
    init: OutputInit,
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
        fill_init(dst, g, seg, init);
        let (rhs, rhs_rs) = if g.is_pointwise() {
            (input.as_ptr().add(seg.image * image_in + seg.pixel), pixels)
        } else {
            im2col_tile(
                g,
                input,
                tile,
                ncols,
                col,
                !matches!(parallelism, Parallelism::None),
            );
            (col.as_ptr(), ncols)
        };
        matmul(g, weight, rhs, rhs_rs, seg.len, dst, pixels, parallelism);
        return;
    }
    let rhs = if g.is_pointwise() {
        gather_pointwise(g, input, tile, ncols, col);
        col.as_ptr()
    } else {
        im2col_tile(
            g,
            input,
            tile,
            ncols,
            col,
            !matches!(parallelism, Parallelism::None),
        );
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
        let dst = out.ptr().add(seg.image * image_out + seg.pixel);
        fill_init(dst, g, seg, init);
        for co in 0..g.c_out {
            let src = &scratch[co * ncols + seg.col..co * ncols + seg.col + seg.len];
            let dst = std::slice::from_raw_parts_mut(dst.add(co * pixels), seg.len);
            for (d, s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
    }
}

/// Writes the initial output of segment `seg` (`bias (+ residual)`) into each output row `co` of its image,
/// rows `oh·ow` apart starting at `dst`.
unsafe fn fill_init(dst: *mut f32, g: &Geometry, seg: &Segment, init: OutputInit) {
    let pixels = g.out_pixels();
    let bias = &init.bias[seg.image * g.c_out..][..g.c_out];
    for (co, &b) in bias.iter().enumerate() {
        let row = std::slice::from_raw_parts_mut(dst.add(co * pixels), seg.len);
        match init.residual {
            Some(residual) => {
                let src = &residual[(seg.image * g.c_out + co) * pixels + seg.pixel..][..seg.len];
                for (d, &r) in row.iter_mut().zip(src) {
                    *d = r + b;
                }
            }
            None => row.fill(b),
        }
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

/// Writes the im2col rows `(ci, ky, kx)` × tile columns into `col` (`[c_in·kh·kw, ncols]`, zero where padded);
/// input channels in parallel when `parallel` (the tile runs alone, with `gemm` threaded inside).
fn im2col_tile(
    g: &Geometry,
    input: &[f32],
    tile: &[Segment],
    ncols: usize,
    col: &mut Vec<f32>,
    parallel: bool,
) {
    col.resize(g.k() * ncols, 0.0);
    let per_channel = g.kh * g.kw * ncols;
    let fill = |(ci, rows): (usize, &mut [f32])| {
        for seg in tile {
            let mut pixel = seg.pixel;
            let end = seg.pixel + seg.len;
            while pixel < end {
                let oy = pixel / g.ow;
                let ox0 = pixel % g.ow;
                let ox1 = g.ow.min(ox0 + end - pixel);
                let run = RowRun {
                    image: seg.image,
                    ci,
                    oy,
                    ox0,
                    ox1,
                    dst_col: seg.col + pixel - seg.pixel,
                };
                im2col_row_run(g, input, &run, rows, ncols);
                pixel += ox1 - ox0;
            }
        }
    };
    if parallel {
        col.par_chunks_mut(per_channel).enumerate().for_each(fill);
    } else {
        col.chunks_mut(per_channel).enumerate().for_each(fill);
    }
}

/// Output row `oy`, columns `ox0..ox1` of input channel `ci` of one image, written at column `dst_col`.
struct RowRun {
    image: usize,
    ci: usize,
    oy: usize,
    ox0: usize,
    ox1: usize,
    dst_col: usize,
}

/// im2col of one [`RowRun`] into `rows` (the `kh·kw` rows of channel `ci`, `ncols` apart).
fn im2col_row_run(g: &Geometry, input: &[f32], run: &RowRun, rows: &mut [f32], ncols: usize) {
    let len = run.ox1 - run.ox0;
    let plane = &input[(run.image * g.c_in + run.ci) * g.h * g.w..][..g.h * g.w];
    for ky in 0..g.kh {
        let iy = (run.oy * g.stride + ky) as isize - g.pad as isize;
        for kx in 0..g.kw {
            let dst = &mut rows[(ky * g.kw + kx) * ncols + run.dst_col..][..len];
            if iy < 0 || iy >= g.h as isize {
                dst.fill(0.0);
                continue;
            }
            let src = &plane[iy as usize * g.w..][..g.w];
            copy_shifted(src, dst, run.ox0, kx, g.stride, g.pad);
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
