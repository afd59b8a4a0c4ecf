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

    /// Wraps the start of a buffer known only by pointer.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn new_for(start: *mut f32) -> Self {
        SharedMut(start)
    }

    /// The buffer's start (a method, so closures capture the whole `Send + Sync` wrapper).
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// Whether two CPU tensors use one storage (one is a clone or a view of the other, or they are the same tensor).
/// Each storage lock is taken and released in turn, never both at once.
pub(crate) fn same_storage(a: &Tensor, b: &Tensor) -> bool {
    let start = |t: &Tensor| -> Option<usize> {
        let (storage, _) = t.storage_and_layout();
        match &*storage {
            Storage::Cpu(cpu) => cpu
                .as_slice::<f32>()
                .ok()
                .map(|data| data.as_ptr() as usize),
            _ => None,
        }
    };
    match (start(a), start(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Runs `body` on the f32 data of a contiguous CPU tensor, **in place**: every tensor sharing the storage sees
/// the change, so callers use it only on tensors they have just created and hold the only handle to. `body` runs
/// under the storage's write lock: it must not read any tensor sharing that storage.
pub(crate) fn with_f32_slice_mut(
    tensor: &Tensor,
    op: &'static str,
    body: impl FnOnce(&mut [f32]) -> candle_core::Result<()> + Send,
) -> candle_core::Result<()> {
    check_f32(op, tensor)?;
    if !tensor.device().is_cpu() || !tensor.is_contiguous() {
        return Err(KernelError::Shape {
            op,
            detail: format!(
                "in-place update needs a contiguous CPU tensor, got {:?} on {:?}",
                tensor.dims(),
                tensor.device()
            ),
        }
        .into_candle());
    }
    let in_place = InPlace {
        op,
        body: std::sync::Mutex::new(Some(body)),
    };
    tensor.inplace_op1(&in_place)
}

/// Adapter from a one-shot closure to candle's `InplaceOp1`.
struct InPlace<F> {
    op: &'static str,
    body: std::sync::Mutex<Option<F>>,
}

impl<F: FnOnce(&mut [f32]) -> candle_core::Result<()> + Send> candle_core::InplaceOp1
    for InPlace<F>
{
    fn name(&self) -> &'static str {
        self.op
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let candle_core::CpuStorage::F32(data) = storage else {
            return Err(candle_core::Error::Msg(format!(
                "{}: in-place update of a non-f32 storage",
                self.op
            )));
        };
        let start = layout.start_offset();
        let len = layout.shape().elem_count();
        let body = self
            .body
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{}: poisoned lock", self.op)))?
            .take();
        match body {
            Some(body) => body(&mut data[start..start + len]),
            None => Ok(()),
        }
    }
}

/// Runs `body(values, batch_stride, row_stride)` on a 3-D CPU tensor `[B, L, W]` whose last dimension is contiguous
/// (a column slice of a wider tensor qualifies): `values` starts at element `[0, 0, 0]` and runs to the last
/// element. Other layouts are copied to contiguous first.
pub(crate) fn with_f32_rows<R>(
    tensor: &Tensor,
    body: impl FnOnce(&[f32], usize, usize) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let [batch, rows, width] = dims::<3>("rows", tensor)?;
    let strided_ok = {
        let stride = tensor.stride();
        stride[2] == 1 || width <= 1
    };
    let tensor = if strided_ok {
        tensor.clone()
    } else {
        tensor.contiguous()?
    };
    let (storage, layout) = tensor.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(candle_core::Error::Msg(
            "kernels: expected a CPU tensor".to_string(),
        ));
    };
    let all = cpu.as_slice::<f32>()?;
    let stride = layout.stride();
    let (batch_stride, row_stride) = (stride[0], stride[1]);
    let start = layout.start_offset();
    let span = if batch * rows * width == 0 {
        0
    } else {
        (batch - 1) * batch_stride + (rows - 1) * row_stride + width
    };
    body(&all[start..start + span], batch_stride, row_stride)
}
