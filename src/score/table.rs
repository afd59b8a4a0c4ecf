//! The score table of a run folder (`scores.json`): the reference set with its dataset check, the baselines the
//! calibration uses, the control (base model) and one row per grid cell (a LoRA file at a weight, over its seeds
//! and prompts) with the per-image details. Formulas: docs/scoring.md.

use serde::{Deserialize, Serialize};

use super::pixels::PixelStats;

/// The `scores.json` format version.
pub const SCORES_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreTable {
    pub version: u32,
    pub reference: ReferenceReport,
    pub baselines: Baselines,
    /// The images rendered without the LoRA (None when the run has none).
    pub control: Option<CellScore>,
    pub cells: Vec<CellScore>,
    /// A1111 axis labels of the run's X and Y axes (`X Type`), for placing cells.
    pub x_axis: String,
    pub y_axis: Option<String>,
    /// The word that makes a prompt ask for the person (`--trigger`, or the name of kohya's `NN_name` reference
    /// folder when cell prompts use it); None: every prompt asks for the person.
    #[serde(default)]
    pub trigger: Option<String>,
}

fn yes() -> bool {
    true
}

/// The reference (training) photos and what the dataset check found in them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceReport {
    /// The `--reference` paths as given.
    pub inputs: Vec<String>,
    pub photos: Vec<ReferencePhotoEntry>,
    /// Photos whose face is used.
    pub used: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferencePhotoEntry {
    pub path: String,
    pub n_faces: usize,
    /// Its face is part of the reference identity.
    pub used: bool,
    /// Distance to the mean of the other photos (leave-one-out).
    pub distance_to_others: Option<f32>,
    /// The nearest other photo and its distance.
    pub nearest_other: Option<String>,
    pub nearest_other_distance: Option<f32>,
    /// Dataset-check findings: no face, several faces, outlier, duplicate, unreadable.
    pub flags: Vec<String>,
}

/// The numbers calibration and gates are measured against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// dlib's same-person distance (0.6).
    pub threshold: f32,
    /// Median leave-one-out distance of the reference photos: likeness 1.
    pub reference_distance: f32,
    /// Distance of "not this person": the control's median face distance, or the default. Likeness 0.
    pub stranger_distance: f32,
    /// `control` or `default`.
    pub stranger_source: String,
    /// A face closer than this to one reference photo is a near-copy of it.
    pub copy_distance: f32,
    /// Thumbnails correlating at least this much with a reference photo are a pixel near-copy.
    pub copy_correlation: f32,
    /// Mean pixel statistics of the healthy images: the control's, else the reference photos'.
    pub health: PixelStats,
    /// `control` or `reference`.
    pub health_source: String,
    /// Diversity and pose spread the flexibility is relative to (control's, else reference photos').
    pub diversity: Option<f32>,
    pub pose_spread: Option<f32>,
    pub flexibility_source: String,
}

/// One grid cell (or the control) over its seeds and prompts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellScore {
    /// "name-000006 @ 0.8", or "None" for the control.
    pub label: String,
    /// The LoRA file (file name in the LoRA folder), its epoch and weight.
    pub file: Option<String>,
    pub epoch: Option<u32>,
    pub weight: Option<f64>,
    pub x_index: usize,
    pub y_index: usize,
    /// Images the grid plans for this cell.
    pub planned: usize,
    /// Not rendered yet / failed to render.
    pub missing: usize,
    pub failed: usize,
    pub images: Vec<ImageScoreEntry>,
    /// Images with a face.
    pub faces: usize,
    /// Mean distance of the faces to the reference mean.
    pub distance: Option<f32>,
    /// Mean calibrated likeness of the faces (0 stranger/base model, 1 as close as the reference photos).
    pub likeness: Option<f32>,
    /// Share of scored images with a face within the same-person threshold (faceless images are misses).
    pub hit_rate: f32,
    /// Share of scored images that are near-copies of a reference photo.
    pub copy_rate: f32,
    /// Diversity and pose spread relative to the baseline (None under two images).
    pub flexibility: Option<f32>,
    pub diversity: Option<f32>,
    pub pose_spread: Option<f32>,
    /// Mean pixel statistics.
    pub health: PixelStats,
    /// Images whose prompt lacks the trigger word: how much the LoRA changed them (mean 1 − thumbnail
    /// correlation with the control image of the same seed and prompt), and the share showing the person.
    /// None when the cell has no such image. Identity, hit rate, copies and flexibility use the other images.
    #[serde(default)]
    pub side_effect: Option<f32>,
    #[serde(default)]
    pub leak_rate: Option<f32>,
}

/// One image of a cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageScoreEntry {
    /// Path relative to the run folder.
    pub image: String,
    pub seed: u64,
    pub z_index: usize,
    pub prompt: String,
    /// The prompt names the person (holds the trigger word, or no trigger is known).
    #[serde(default = "yes")]
    pub asks_for_person: bool,
    /// 1 − thumbnail correlation with the control image of the same seed and prompt.
    #[serde(default)]
    pub control_change: Option<f32>,
    /// Faces detected (0: counted as a miss).
    pub n_faces: usize,
    pub distance: Option<f32>,
    pub likeness: Option<f32>,
    /// A face within the same-person threshold.
    pub hit: bool,
    pub nearest_reference: Option<String>,
    pub nearest_distance: Option<f32>,
    pub copy: Option<CopyEntry>,
    pub stats: PixelStats,
    /// Why the image could not be scored (unreadable); it then counts as a miss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A near-copy of a reference photo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CopyEntry {
    pub reference: String,
    /// `identity` (face descriptor closer than `copy_distance`) or `pixels` (thumbnail correlation).
    pub kind: String,
    /// The distance or the correlation.
    pub value: f32,
}
