//! Opens SD1.5 checkpoints (single-file LDM `.safetensors` or a diffusers folder), validates them, infers the
//! architecture from tensor shapes and serves the UNet, VAE and CLIP text-encoder weights under diffusers names.
//!
//! Knows nothing about LoRA or sampling. Pickle files (`.ckpt`, `.pt`, `.pth`, `.bin`) are refused because loading
//! them can execute code.

mod backend;
mod checkpoint;
mod hash;
pub mod ldm_names;
pub mod safetensors_file;

use std::path::PathBuf;

pub use checkpoint::{Checkpoint, Component, Layout};
pub use hash::{model_hash, sha256_hex, sha256_hex_of_reader};

/// Everything that can go wrong while opening or reading a checkpoint; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not found")]
    NotFound { path: PathBuf },
    #[error(
        "{path}: refusing to load a pickle file (`.ckpt`/`.pt`/`.pth`/`.bin` can execute code when loaded); \
         convert it to .safetensors first, e.g. with kohya's or diffusers' conversion scripts or the \
         A1111 \"checkpoint merger\" with safetensors output"
    )]
    PickleRefused { path: PathBuf },
    #[error("{path}: file is only {file_len} bytes, too short for a safetensors header")]
    TooShort { path: PathBuf, file_len: u64 },
    #[error("{path}: safetensors header claims {header_len} bytes but the file has only {file_len} bytes (truncated or not a safetensors file)")]
    HeaderPastEnd {
        path: PathBuf,
        header_len: u64,
        file_len: u64,
    },
    #[error("{path}: bad safetensors header: {message}")]
    BadHeader { path: PathBuf, message: String },
    #[error("{path}: tensor `{key}` has unknown dtype `{dtype}`")]
    UnknownDtype {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    #[error(
        "{path}: tensor `{key}` has dtype {dtype}; only F32, F16, BF16 and F64 weights can be used"
    )]
    UnsupportedDtype {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    #[error("{path}: tensor `{key}` has data offsets [{begin}, {end}] outside the {data_len}-byte data section")]
    BadOffsets {
        path: PathBuf,
        key: String,
        begin: usize,
        end: usize,
        data_len: usize,
    },
    #[error("{path}: tensor `{key}` ({dtype} {shape:?}) needs {expected_bytes:?} bytes but its data offsets span {actual_bytes}")]
    SizeMismatch {
        path: PathBuf,
        key: String,
        dtype: String,
        shape: Vec<usize>,
        expected_bytes: Option<usize>,
        actual_bytes: usize,
    },
    #[error("{path}: {component} tensor `{key}` is missing")]
    MissingTensor {
        path: PathBuf,
        key: String,
        component: &'static str,
    },
    #[error("{path}: {component} tensor `{key}` (stored as `{stored_key}`) has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        key: String,
        stored_key: String,
        component: &'static str,
        expected: Box<[usize]>,
        found: Box<[usize]>,
    },
    #[error("{path}: no {component} weights found ({looked_for})")]
    MissingComponent {
        path: PathBuf,
        component: &'static str,
        looked_for: String,
    },
    #[error("{path}: looks like {looks_like}; loraeval only runs Stable Diffusion 1.x txt2img checkpoints ({evidence})")]
    WrongFamily {
        path: PathBuf,
        looks_like: String,
        evidence: String,
    },
    #[error("{path}: not a Stable Diffusion checkpoint: {looks_like}")]
    NotACheckpoint { path: PathBuf, looks_like: String },
    #[error("{path}: unexpected {component} architecture: {detail}")]
    Architecture {
        path: PathBuf,
        component: &'static str,
        detail: String,
    },
    #[error("{path}: {source}")]
    Candle {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}
