//! Sampling stage: A1111-exact noise, SD1.5 noise schedules, A1111/k-diffusion samplers, PNG infotext output.
//!
//! The model-independent pieces the txt2img pipeline calls:
//! * [`rng`]: A1111's three RNG sources (`RngSource`): `TorchCpuRng` (bit-exact `torch.randn` on a CPU generator,
//!   "CPU"), `PhiloxRng` (A1111's NV generator, the numbers an NVIDIA GPU draws: "GPU" and "NV"), and `ImageRng`
//!   (one generator per image, re-seeded with the eta noise seed delta after the first draw, as A1111's
//!   `ImageRNG`).
//! * [`schedule`]: the SD1.5 discrete schedule (alphas_cumprod, sigmas, sigma <-> t) and the sigma schedules
//!   (Uniform, Karras, Exponential) with A1111's "Schedule type" names.
//! * [`samplers`]: Euler, Euler a, DPM++ 2M (k-diffusion) and A1111's own DDIM, generic over the model wrappers.
//! * [`png_info`]: A1111 infotext (`parameters`), pixel conversion and atomic PNG writing.

pub mod png_info;
pub mod rng;
pub mod samplers;
pub mod schedule;

use std::path::PathBuf;

/// Everything that can go wrong in the sampling stage.
#[derive(Debug, thiserror::Error)]
pub enum SamplingError {
    #[error("steps must be at least 1 (got {steps})")]
    BadSteps { steps: usize },
    #[error("unknown sampler {name:?}; valid names: {valid}")]
    UnknownSampler { name: String, valid: String },
    #[error("unknown RNG source {name:?}; valid sources: {valid}")]
    UnknownRngSource { name: String, valid: String },
    #[error("unknown schedule type {name:?}; valid names: {valid}")]
    UnknownSchedule { name: String, valid: String },
    #[error("schedule type {name:?} is an A1111 schedule this engine does not implement; supported: {supported}")]
    UnsupportedSchedule { name: String, supported: String },
    #[error("invalid noise schedule: {reason}")]
    BadSchedule { reason: String },
    #[error("latent shape {shape:?} does not fit the sampler: {reason}")]
    BadLatentShape { shape: Vec<usize>, reason: String },
    #[error("no seeds given: the noise generator needs one seed per image")]
    NoSeeds,
    #[error("bad image tensor shape {shape:?}: expected [batch, 3, height, width]")]
    BadImageShape { shape: Vec<usize> },
    #[error("cannot parse infotext: {reason}")]
    BadInfotext { reason: String },
    #[error("{path}: file exists (pass overwrite to replace it)")]
    FileExists { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: PNG encoding failed: {source}")]
    PngEncode {
        path: PathBuf,
        #[source]
        source: png::EncodingError,
    },
    #[error("model evaluation failed: {0}")]
    Model(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
pub mod txt2img;
