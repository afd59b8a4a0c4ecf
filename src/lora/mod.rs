//! LoRA adapter files: reading every SD1.5 format users have, mapping them onto the model, applying them.
//!
//! * [`file`]: [`LoraFile::open`] reads kohya LoRA/LoCon (`lora_down`/`lora_up`/`alpha`, optional Tucker
//!   `lora_mid`), LyCORIS LoHa (`hada_*`) and LoKr (`lokr_*`), DoRA (`dora_scale`), diffusers/PEFT
//!   (`lora_A`/`lora_B`, `unet.`/`text_encoder.` prefixes, old `lora.down`/`to_q_lora` spellings); f32/f16/bf16.
//!   NaN/Inf tensors and truncated files are refused; `ss_*` metadata and `sshs_*` hashes are kept.
//! * [`keys`]: tensor key → (module name, role).
//! * [`names`]: the lookup table from every name a file may use for a layer (kohya diffusers-style and LDM-style,
//!   PEFT dotted) to the model's own layer names.
//! * [`delta`]: ΔW of one module (formats.md section 3).
//! * [`apply`]: resolution against a model (unmatched keys, shape checks, "looks made for SDXL"), the merged path
//!   (`W += m·scale·ΔW`) and the unmerged path (adapters evaluated in forward, per-image multipliers).
//! * [`library`]: `--lora-dir` name lookup (A1111's rule) and `--lora FILE:W` specs.
//! * [`hash`]: A1111's `Lora hashes` short hash.
//! * [`inspect`]: a readable summary of a file (format, ranks, targets, training metadata).

pub mod apply;
pub mod delta;
pub mod file;
pub mod hash;
pub mod inspect;
pub mod keys;
pub mod library;
pub mod names;

use std::path::PathBuf;

pub use apply::{LoraMode, LoraUse, ModelLayers, Part};
pub use file::{LoraFile, LoraModule, ModuleWeights};
pub use library::{parse_lora_spec, LoraLibrary, LoraSpec};

use crate::weights::WeightsError;

/// Everything that can go wrong with a LoRA file; every variant names the file (or folder) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("LoRA file {0}")]
    File(Box<WeightsError>),
    #[error("{path}: refusing to load a pickle file (`.pt`/`.ckpt` can execute code when loaded); convert it to .safetensors first")]
    Pickle { path: PathBuf },
    #[error("{path}: tensor `{key}` holds {nan} NaN and {inf} infinite values out of {count} (a diverged training run writes these); this LoRA file is broken")]
    NonFinite {
        path: PathBuf,
        key: String,
        nan: usize,
        inf: usize,
        count: usize,
    },
    #[error(
        "{path}: tensor `{key}` has dtype {dtype}; LoRA tensors must be F32, F16, BF16 or F64"
    )]
    BadDtype {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    #[error("{path}: not a LoRA file: {detail}")]
    NotALora { path: PathBuf, detail: String },
    #[error("{path}: module `{module}` is incomplete or inconsistent: {detail}")]
    BadModule {
        path: PathBuf,
        module: String,
        detail: String,
    },
    #[error("{path}: {detail}")]
    ShapeMismatch {
        path: PathBuf,
        detail: Box<ShapeMismatch>,
    },
    #[error("{path}: {detail}")]
    WrongBaseModel {
        path: PathBuf,
        detail: Box<WrongBaseModel>,
    },
    #[error("LoRA `{name}` not found in {dir}; closest names: {closest}")]
    UnknownName {
        name: String,
        dir: PathBuf,
        closest: String,
    },
    #[error("prompt has the tag <lora:{name}:…> but no --lora-dir to look it up in")]
    NoLoraDir { name: String },
    #[error("invalid LoRA spec `{spec}`: {reason}")]
    BadSpec { spec: String, reason: String },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Compute {
        context: String,
        #[source]
        source: candle_core::Error,
    },
}

/// A module whose update does not fit the layer its name points at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{key}` does not fit the model: its update has shape {lora_shape:?}, the model's `{layer}.weight` has shape {model_shape:?} ({tensors}){hint}")]
pub struct ShapeMismatch {
    pub key: String,
    pub layer: String,
    pub lora_shape: Vec<usize>,
    pub model_shape: Vec<usize>,
    pub tensors: String,
    /// "; the file looks made for SD2.x (…)" when the base model can be told.
    pub hint: String,
}

/// A file made for another model family.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("looks made for {looks_like}, not this SD1.5 model ({evidence}); {matched} of {total} modules match, unmatched e.g. {examples}")]
pub struct WrongBaseModel {
    pub looks_like: String,
    pub evidence: String,
    pub matched: usize,
    pub total: usize,
    pub examples: String,
}

impl From<WeightsError> for LoraError {
    fn from(error: WeightsError) -> Self {
        LoraError::File(Box::new(error))
    }
}

/// Wraps a candle error with what was being computed.
pub(crate) fn compute_error(
    context: impl Into<String>,
) -> impl FnOnce(candle_core::Error) -> LoraError {
    let context = context.into();
    move |source| LoraError::Compute { context, source }
}
