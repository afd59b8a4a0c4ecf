//! Fast CPU kernels (f32, NCHW) for the hot operations of SD1.5: 3×3/1×1 convolution and fused attention.
//!
//! Everything runs on rayon's global pool, the same pool candle's matmul and the `gemm` crate use: a kernel either
//! splits its work into rayon tasks that each call `gemm` with `Parallelism::None`, or (when there are too few
//! independent tasks) calls `gemm` once with `Parallelism::Rayon(threads)`. Never both, so two cores never carry
//! more than two busy threads. Tensors on other devices fall back to candle's own ops.

pub mod attention;
mod attention_avx2;
pub mod conv;
mod direct;
pub mod linear;
pub mod pointwise;
mod sgemm;
mod simd;
mod storage;
mod timing;
mod winograd;

pub use timing::take_kernel_times;

pub use storage::KernelError;
