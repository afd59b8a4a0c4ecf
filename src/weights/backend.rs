//! Name table of one model component (diffusers name → stored tensor) and the `candle_nn` backend serving it.
//!
//! The backend converts every tensor to the requested dtype (F32 by default) on the requested device, squeezes LDM
//! 1×1-conv VAE attention weights to the Linear shape diffusers uses, and checks shapes, so a model built from it
//! fails with the diffusers name, the stored key and the file instead of a panic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use super::safetensors_file::SafetensorsFile;
use super::WeightsError;

/// Where a diffusers-named tensor is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Index into the checkpoint's file list.
    pub file: usize,
    /// Key inside that file.
    pub key: String,
    /// Stored as `[out, in, 1, 1]`, served as `[out, in]`.
    pub squeeze_1x1: bool,
}

/// All tensors of one component (UNet, VAE or text encoder) under their diffusers names.
#[derive(Debug)]
pub struct ComponentTable {
    pub component: &'static str,
    pub files: Arc<Vec<SafetensorsFile>>,
    pub names: BTreeMap<String, Source>,
    /// File named in "missing tensor" errors (the single file, or this component's file in a diffusers folder).
    pub origin: PathBuf,
}

impl ComponentTable {
    /// Shape as served (after the 1×1 squeeze), or `None` if the name is unknown.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let source = self.names.get(name)?;
        let info = self.files.get(source.file)?.tensors.get(&source.key)?;
        Some(served_shape(&info.shape, source.squeeze_1x1))
    }

    /// Shape of a tensor the architecture inference needs; missing → error naming it.
    pub fn require_shape(&self, name: &str) -> Result<Vec<usize>, WeightsError> {
        self.shape(name).ok_or_else(|| self.missing(name))
    }

    /// The error for a name this component does not have.
    pub fn missing(&self, name: &str) -> WeightsError {
        WeightsError::MissingTensor {
            path: self.origin.clone(),
            key: name.to_string(),
            component: self.component,
        }
    }

    /// Reads a tensor as f32 values with its served shape.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), WeightsError> {
        let source = self.names.get(name).ok_or_else(|| self.missing(name))?;
        let file = self
            .files
            .get(source.file)
            .ok_or_else(|| self.missing(name))?;
        let (values, shape) = file.read_f32(&source.key)?;
        Ok((values, served_shape(&shape, source.squeeze_1x1)))
    }

    /// Reads a tensor onto `device` in `dtype`, checking it has `expected` shape when given.
    pub fn tensor(
        &self,
        name: &str,
        expected: Option<&[usize]>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, WeightsError> {
        let (values, shape) = self.read_f32(name)?;
        if let Some(expected) = expected {
            if expected != shape.as_slice() {
                return Err(self.shape_mismatch(name, expected, shape));
            }
        }
        let candle_error = |source| WeightsError::Candle {
            path: self.origin.clone(),
            source,
        };
        let tensor = Tensor::from_vec(values, shape, device).map_err(candle_error)?;
        if dtype == DType::F32 {
            Ok(tensor)
        } else {
            tensor.to_dtype(dtype).map_err(candle_error)
        }
    }

    /// Names the diffusers name, the stored key and the file holding it.
    fn shape_mismatch(&self, name: &str, expected: &[usize], found: Vec<usize>) -> WeightsError {
        let stored_key = self.names.get(name).map_or(name, |s| s.key.as_str());
        let path = self
            .names
            .get(name)
            .and_then(|s| self.files.get(s.file))
            .map(|f| f.path.clone())
            .unwrap_or_else(|| self.origin.clone());
        WeightsError::ShapeMismatch {
            path,
            key: name.to_string(),
            stored_key: stored_key.to_string(),
            component: self.component,
            expected: expected.into(),
            found: found.into(),
        }
    }
}

/// `[o, i, 1, 1]` → `[o, i]` when squeezing; anything else unchanged.
fn served_shape(stored: &[usize], squeeze_1x1: bool) -> Vec<usize> {
    match stored {
        [o, i, 1, 1] if squeeze_1x1 => vec![*o, *i],
        _ => stored.to_vec(),
    }
}

/// `SimpleBackend` over a component table; errors keep their `WeightsError` message.
pub struct TableBackend(pub Arc<ComponentTable>);

impl SimpleBackend for TableBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
            .tensor(name, Some(s.dims()), dtype, dev)
            .map_err(candle_core::Error::wrap)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0
            .tensor(name, None, dtype, dev)
            .map_err(candle_core::Error::wrap)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.names.contains_key(name)
    }
}
