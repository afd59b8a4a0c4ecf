//! Grid stage: AUTOMATIC1111's X/Y/Z plot (axes, Prompt S/R, value syntax), the cell plan, resumable and shardable
//! execution into a run folder, and the labelled grid drawing.
//!
//! * [`values`]: A1111 value parsing (csv with quotes, `1-5`, `1-5 (+2)`, `1-10 [5]`, `0.4-1.0 [4]`) and Python
//!   number formatting for labels.
//! * [`axes`]: axis types and their application to a cell's settings (Prompt S/R exactly as A1111).
//! * [`lora_tag`]: epochs and weights act through the prompt's `<lora:NAME:W>` tag.
//! * [`epochs`]: the LoRA files of one kohya run in a folder, ordered by `ss_epoch`.
//! * [`plan`]: the cells with their full settings, cache keys and shards, and their controls (the settings without
//!   the LoRA tags, rendered by the base model, not drawn).
//! * [`draw`]: the labelled grid image as A1111's `draw_grid_annotations` draws it.
//! * [`run`]: the run folder (`cells/`, `grid.json`, `grid.png`), resume, failures.
//! * [`manifest`]: `grid.json`: axes, cells, controls, grids.
//! * [`spec`]: YAML grid specs and prompt sets.
//! * [`import`]: a run folder from images the webui rendered (`loraeval import`).
//!
//! The stage never renders by itself: [`run::execute`] takes a render callback.

pub mod axes;
pub mod draw;
pub mod epochs;
mod font;
pub mod import;
pub mod lora_tag;
pub mod manifest;
pub mod plan;
pub mod run;
pub mod run_info;
pub mod spec;
pub mod values;

use std::path::PathBuf;

/// Everything that can go wrong while planning, running or drawing a grid; each variant names what the user gave.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error("axis `{axis}`: {reason}")]
    BadAxis { axis: String, reason: String },
    #[error("{axis} value {value:?}: {reason}")]
    BadValue {
        axis: String,
        value: String,
        reason: String,
    },
    #[error(
        "Prompt S/R did not find {term:?} in prompt {prompt:?} or negative prompt {negative:?}"
    )]
    SearchTermMissing {
        term: String,
        prompt: String,
        negative: String,
    },
    #[error("{axis} is used on two axes; each setting can vary along one axis only")]
    DuplicateAxis { axis: String },
    #[error("{path}: {reason}")]
    LoraFolder { path: PathBuf, reason: String },
    #[error("{reason}")]
    LoraTarget { reason: String },
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    #[error("--shard {text:?}: {reason}")]
    BadShard { text: String, reason: String },
    #[error("{path}: {reason}")]
    Spec { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{path}: cannot write: {reason}; the run stopped; the {rendered} cells it rendered and those of earlier runs are kept in {folder}; free disk space or fix permissions and run the same command again to resume")]
    RunStopped {
        path: PathBuf,
        reason: String,
        rendered: usize,
        folder: PathBuf,
    },
    #[error("{path}: cannot read image: {reason}")]
    ReadImage { path: PathBuf, reason: String },
    #[error("font: {0}")]
    Font(String),
}

impl GridError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> GridError + '_ {
        move |source| GridError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
