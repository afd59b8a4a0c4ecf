//! An optimizer's state for resuming: named scalars and named f32/u8 buffers, stored as a safetensors file whose
//! `__metadata__` holds the optimizer's name and the scalars (JSON strings in Rust's shortest round-trip form, so
//! that they read back bit for bit).

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::OptimError;

/// One saved buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum StateBuffer {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

/// The state of an optimizer: its kohya name, scalars (step counts, D estimates) and per-parameter buffers keyed
/// `g{group}.p{param}.{buffer}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerState {
    pub kind: String,
    pub scalars: BTreeMap<String, f64>,
    pub buffers: BTreeMap<String, StateBuffer>,
}

impl OptimizerState {
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_string(),
            ..Self::default()
        }
    }

    /// Checks that the state belongs to the optimizer `expected`.
    pub fn expect_kind(&self, expected: &str) -> Result<(), OptimError> {
        if self.kind == expected {
            Ok(())
        } else {
            Err(OptimError::Kind {
                found: self.kind.clone(),
                expected: expected.to_string(),
            })
        }
    }

    pub fn set_scalar(&mut self, name: &str, value: f64) {
        self.scalars.insert(name.to_string(), value);
    }

    pub fn scalar(&self, name: &str) -> Result<f64, OptimError> {
        self.scalars
            .get(name)
            .copied()
            .ok_or_else(|| OptimError::State(format!("no scalar {name:?}")))
    }

    pub fn set_f32(&mut self, name: String, values: &[f32]) {
        self.buffers.insert(name, StateBuffer::F32(values.to_vec()));
    }

    pub fn set_u8(&mut self, name: String, values: &[u8]) {
        self.buffers.insert(name, StateBuffer::U8(values.to_vec()));
    }

    pub fn f32(&self, name: &str) -> Result<Vec<f32>, OptimError> {
        match self.buffers.get(name) {
            Some(StateBuffer::F32(v)) => Ok(v.clone()),
            Some(StateBuffer::U8(_)) => Err(OptimError::State(format!(
                "buffer {name:?} is u8, expected f32"
            ))),
            None => Err(OptimError::State(format!("no buffer {name:?}"))),
        }
    }

    pub fn u8(&self, name: &str) -> Result<Vec<u8>, OptimError> {
        match self.buffers.get(name) {
            Some(StateBuffer::U8(v)) => Ok(v.clone()),
            Some(StateBuffer::F32(_)) => Err(OptimError::State(format!(
                "buffer {name:?} is f32, expected u8"
            ))),
            None => Err(OptimError::State(format!("no buffer {name:?}"))),
        }
    }

    /// Whether a buffer of that name exists.
    pub fn has(&self, name: &str) -> bool {
        self.buffers.contains_key(name)
    }

    /// The state as a safetensors file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, OptimError> {
        let raw: Vec<(String, Dtype, Vec<u8>)> = self
            .buffers
            .iter()
            .map(|(name, b)| match b {
                StateBuffer::F32(v) => (
                    name.clone(),
                    Dtype::F32,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                StateBuffer::U8(v) => (name.clone(), Dtype::U8, v.clone()),
            })
            .collect();
        let views = raw
            .iter()
            .map(|(name, dtype, bytes)| {
                let n = bytes.len() / if *dtype == Dtype::F32 { 4 } else { 1 };
                TensorView::new(*dtype, vec![n], bytes).map(|v| (name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| OptimError::State(e.to_string()))?;
        let exact: BTreeMap<&String, String> = self
            .scalars
            .iter()
            .map(|(k, v)| (k, format!("{v:?}")))
            .collect();
        let scalars =
            serde_json::to_string(&exact).map_err(|e| OptimError::State(e.to_string()))?;
        let meta = HashMap::from([
            ("optimizer".to_string(), self.kind.clone()),
            ("scalars".to_string(), scalars),
        ]);
        safetensors::tensor::serialize(views, Some(meta))
            .map_err(|e| OptimError::State(e.to_string()))
    }

    /// Reads a state written by [`OptimizerState::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OptimError> {
        let bad = |e: &dyn std::fmt::Display| OptimError::State(e.to_string());
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(&e))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let kind = meta
            .get("optimizer")
            .ok_or_else(|| OptimError::State("no \"optimizer\" in the metadata".into()))?
            .clone();
        let scalars_json = meta
            .get("scalars")
            .ok_or_else(|| OptimError::State("no \"scalars\" in the metadata".into()))?;
        let text: BTreeMap<String, String> =
            serde_json::from_str(scalars_json).map_err(|e| bad(&e))?;
        let scalars = text
            .into_iter()
            .map(|(k, v)| v.parse().map(|x| (k, x)).map_err(|e| bad(&e)))
            .collect::<Result<_, _>>()?;
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| bad(&e))?;
        let mut buffers = BTreeMap::new();
        for (name, view) in tensors.tensors() {
            buffers.insert(name.clone(), read_buffer(&name, &view)?);
        }
        Ok(Self {
            kind,
            scalars,
            buffers,
        })
    }
}

fn read_buffer(name: &str, view: &TensorView<'_>) -> Result<StateBuffer, OptimError> {
    match view.dtype() {
        Dtype::F32 => Ok(StateBuffer::F32(
            view.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )),
        Dtype::U8 => Ok(StateBuffer::U8(view.data().to_vec())),
        other => Err(OptimError::State(format!(
            "buffer {name:?} has dtype {other:?}, expected F32 or U8"
        ))),
    }
}
