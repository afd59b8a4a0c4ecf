//! Fast CPU kernels (f32, NCHW) for the hot operations of SD1.5: 3×3/1×1 convolution and fused attention.
//!
//! Everything runs on rayon's global pool, the same pool candle's matmul and the `gemm` crate use: a kernel either
//! splits its work into rayon tasks that each call `gemm` with `Parallelism::None`, or (when there are too few
//! independent tasks) calls `gemm` once with `Parallelism::Rayon(threads)`. Never both, so two cores never carry
//! more than two busy threads. Tensors on other devices fall back to candle's own ops.
//!
//! Which instruction set the kernels use (portable, AVX2, AVX-512) is chosen per call by [`isa`]: the best the CPU
//! runs, `LORAEVAL_KERNELS`, or a test's [`isa::with_isa`]; [`isa::traced`] tells which kernels ran on which path.

pub mod attention;
mod attention_avx2;
pub mod conv;
#[cfg(target_arch = "x86_64")]
mod direct;
pub mod isa;
pub mod linear;
pub mod pointwise;
mod settings;
mod sgemm;
mod simd;
mod storage;
mod timing;
#[cfg(target_arch = "x86_64")]
mod winograd;

pub use timing::take_kernel_times;

pub use storage::KernelError;
