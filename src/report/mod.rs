//! The HTML report of a run folder: one self-contained file (no network) a person reviews in a browser.
//!
//! [`render_report`] joins the manifest, the scores and the recommendation (`layout`), reads every image once
//! into an embedded thumbnail (`thumbs`) and writes the page (`page`): the recommendation, a likeness
//! `heatmap`, likeness and health `curves` against the epoch, the grid with score badges, each cell's detail,
//! the reference photos, the LoRA metadata and the command of the run. Every user string goes through
//! [`html::escape`]. Unreadable images become placeholders; the report never fails because of one.
//! [`sample`] writes a synthetic scored run for the tests and for previewing the page.

mod curves;
mod details;
mod grid_view;
mod heatmap;
pub mod html;
mod layout;
mod metadata;
mod page;
mod reference;
pub mod sample;
mod summary;
mod thumbs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::grid::manifest::Manifest;
use crate::recommend::Recommendation;
use crate::score::table::ScoreTable;

/// The report's file name in the run folder.
pub const REPORT_FILE: &str = "report.html";

/// Everything the report shows.
pub struct ReportInput<'a> {
    /// The run folder; cell images are `<run>/<cell image path>`.
    pub run: &'a Path,
    pub manifest: &'a Manifest,
    /// None: not scored yet (the page says so and shows the grid only).
    pub scores: Option<&'a ScoreTable>,
    pub recommendation: Option<&'a Recommendation>,
    /// `ss_*` metadata by LoRA file name.
    pub lora_metadata: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// The command that reproduces the run.
    pub command: Option<&'a str>,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The run folder is not a readable folder.
    #[error("{path}: not a run folder: {reason}")]
    RunFolder { path: PathBuf, reason: String },
    /// `report.html` could not be written.
    #[error("{path}: cannot write the report: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// The report page of a run.
pub fn render_report(input: &ReportInput<'_>) -> Result<String, ReportError> {
    check_run_folder(input.run)?;
    Ok(page::render(input))
}

/// Writes `<run>/report.html` (temporary file + rename) and returns its path.
pub fn write_report(input: &ReportInput<'_>) -> Result<PathBuf, ReportError> {
    let html = render_report(input)?;
    let path = input.run.join(REPORT_FILE);
    crate::grid::run::write_atomic(&path, html.as_bytes()).map_err(|e| ReportError::Write {
        path: path.clone(),
        reason: match e {
            crate::grid::GridError::Write { reason, .. } => reason,
            other => other.to_string(),
        },
    })?;
    Ok(path)
}

fn check_run_folder(run: &Path) -> Result<(), ReportError> {
    let error = |reason: String| ReportError::RunFolder {
        path: run.to_path_buf(),
        reason,
    };
    let metadata = std::fs::metadata(run).map_err(|e| error(e.to_string()))?;
    if metadata.is_dir() {
        Ok(())
    } else {
        Err(error("it is a file, not a folder".to_string()))
    }
}
