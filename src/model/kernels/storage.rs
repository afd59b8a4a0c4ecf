//! Access to the f32 buffers behind candle CPU tensors, and the errors of the kernels.

use candle_core::{DType, Device, Storage, Tensor};

/// What can go wrong when a kernel is handed tensors it cannot work on.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{op}: expected a {expected}-d tensor, got shape {shape:?}")]
    Rank {
        op: &'static str,
        expected: usize,
        shape: Vec<usize>,
    },
    #[error("{op}: shapes do not fit: {detail}")]
    Shape { op: &'static str, detail: String },
    #[error("{op}: expected f32, got {dtype:?}")]
    DType { op: &'static str, dtype: DType },
}

impl KernelError {
    pub(crate) fn into_candle(self) -> candle_core::Error {
        candle_core::Error::wrap(self)
    }
}

/// The dims of `tensor`, checked to be of rank `N`.
pub(crate) fn dims<const N: usize>(
    op: &'static str,
    tensor: &Tensor,
) -> candle_core::Result<[usize; N]> {
    let shape = tensor.dims();
    <[usize; N]>::try_from(shape).map_err(|_| {
        KernelError::Rank {
            op,
            expected: N,
            shape: shape.to_vec(),
        }
        .into_candle()
    })
}

/// Fails unless `tensor` holds f32.
pub(crate) fn check_f32(op: &'static str, tensor: &Tensor) -> candle_core::Result<()> {
    if tensor.dtype() == DType::F32 {
        Ok(())
    } else {
        Err(KernelError::DType {
            op,
            dtype: tensor.dtype(),
        }
        .into_candle())
    }
}

/// Runs `body` on the contiguous f32 data of a CPU tensor (copied to contiguous first if needed).
pub(crate) fn with_f32_slice<R>(
    tensor: &Tensor,
    body: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let tensor = tensor.contiguous()?;
    let (storage, layout) = tensor.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(candle_core::Error::Msg(
            "kernels: expected a CPU tensor".to_string(),
        ));
    };
    let all = cpu.as_slice::<f32>()?;
    let start = layout.start_offset();
    body(&all[start..start + layout.shape().elem_count()])
}

/// A CPU f32 tensor of `shape` made from `data`.
pub(crate) fn tensor_from_vec(data: Vec<f32>, shape: &[usize]) -> candle_core::Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
}

/// Number of worker threads of the pool the kernels (and candle's matmul) run on.
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// A raw pointer that may be shared between rayon tasks writing disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(*mut f32);
// SAFETY: every user writes only to index ranges no other task touches (documented at each use).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    pub(crate) fn new(buffer: &mut [f32]) -> Self {
        SharedMut(buffer.as_mut_ptr())
    }

    /// The buffer's start (a method, so closures capture the whole `Send + Sync` wrapper).
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}
