//! Face stage: dlib-compatible model parsing, landmarks, aligned chips and images (see `face.md`).
//!
//! Submodules: [`serialize`] (dlib's binary format), [`shape_predictor`] (5-point ERT landmarks),
//! [`align`] (150×150 face chips as dlib cuts them), [`image_io`] (image files → 8-bit RGB).

pub mod align;
pub mod dnn;
pub mod dnn_layers;
pub mod image_io;
pub mod mmod;
pub mod resnet;
pub mod serialize;
pub mod shape_predictor;

use std::path::PathBuf;

/// Everything that can go wrong in the face stage.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// A model file could not be read from disk.
    #[error("cannot read model file {file}: {source}")]
    ModelIo {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model file is not what dlib would write; `offset` is the byte where parsing failed.
    #[error("model file {file} is invalid at byte offset {offset}: {what}")]
    ModelParse {
        file: PathBuf,
        offset: usize,
        what: String,
    },
    /// An image file could not be opened or decoded, or has a layout we do not accept.
    #[error("cannot use image {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    /// An image or argument has dimensions that the operation cannot work with.
    #[error("invalid input: {what}")]
    InvalidInput { what: String },
    /// No face was found in the image.
    #[error("no face found in {path}")]
    NoFace { path: PathBuf },
}

impl FaceError {
    /// Prefixes the `what` of a [`FaceError::ModelParse`] with what was being read (other variants unchanged).
    pub fn context(self, while_reading: &str) -> FaceError {
        match self {
            FaceError::ModelParse { file, offset, what } => FaceError::ModelParse {
                file,
                offset,
                what: format!("{while_reading}: {what}"),
            },
            other => other,
        }
    }
}
