//! Score stage: per-cell metrics of a run folder's images against the reference (training) photos: calibrated
//! likeness, hit rate, copy risk, flexibility and health, measured against the base-model control; every image
//! analysed once per content (cache in the run folder). Formulas: docs/scoring.md.
//!
//! Submodules: [`pixels`] (health statistics, thumbnails), [`records`] (one image's analysis and the content
//! cache), [`metrics`] (the formulas), [`table`] (`scores.json`), [`run`] (reading a run folder).

pub mod metrics;
pub mod pixels;
pub mod records;
pub mod run;
pub mod table;

use std::path::{Path, PathBuf};

use crate::face::reference::ReferenceError;
use crate::face::FaceError;

/// Everything that can go wrong while scoring a run folder.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The folder has no `grid.json`.
    #[error("{run} is not a run folder: it has no grid.json (make one with `loraeval grid --out {run}`)")]
    NoManifest { run: PathBuf },
    /// `grid.json` or `scores.json` could not be read.
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    /// No `--reference` and no earlier scores naming reference photos.
    #[error("{run} has not been scored yet: give --reference with the training photos (a folder such as kohya's image/NN_name)")]
    NoReference { run: PathBuf },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Face(#[from] FaceError),
    #[error("{path}: cannot write: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Writes `bytes` to a temporary file next to `path` and renames it into place.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), ScoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| ScoreError::Write {
            path: parent.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    crate::grid::run::write_atomic(path, bytes).map_err(|e| match e {
        crate::grid::GridError::Write { path, reason } => ScoreError::Write { path, reason },
        other => ScoreError::Write {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}
