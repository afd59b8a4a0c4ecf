//! `grid.json`, the run folder's manifest that later steps (scores, recommendation, report) and scripts read:
//! axes with values and labels, seeds, base settings, the grid images, every cell with its image path,
//! settings, LoRA files, status and control, and every control (the cells' settings without LoRAs, rendered by the
//! base model). A `grid.json` written before controls existed reads with no controls. A run made by `loraeval
//! import` from images the webui rendered says so in `source` and names each image's original file.

use serde::{Deserialize, Serialize};

use super::axes::{Axis, AxisValue};
use super::plan::{CellRequest, GridPlan, Settings};

/// The manifest format version.
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub model: ModelEntry,
    pub axes: AxesEntry,
    pub seeds: Vec<u64>,
    /// The settings every cell starts from (before its axis values).
    pub base: ParamsEntry,
    pub grids: Vec<GridEntry>,
    pub cells: Vec<CellEntry>,
    /// The controls of the cells with LoRAs (empty when no cell has a LoRA or controls are off).
    #[serde(default)]
    pub controls: Vec<ControlEntry>,
    pub summary: SummaryEntry,
    /// Who rendered the images: absent for loraeval's own renders, `"a1111"` (or `"comfyui"`) for a run
    /// `loraeval import` made from the webui's output images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub file: String,
    pub sha256: String,
    /// A1111 `Model hash`.
    pub hash: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AxesEntry {
    pub x: AxisEntry,
    pub y: Option<AxisEntry>,
    pub z: Option<AxisEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AxisEntry {
    /// `epochs`, `weight`, `prompt-sr`, `seed`, `steps`, `cfg`, `sampler`, `clip-skip`, `width`, `height`, `prompt`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A1111's axis label (`X Type` of the infotext).
    pub label: String,
    /// The values as written (`X Values`).
    pub raw: String,
    pub values: Vec<serde_json::Value>,
    pub labels: Vec<String>,
    /// Epoch axes: the full file name of each value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamsEntry {
    pub prompt: String,
    pub negative: String,
    pub seed: u64,
    pub steps: usize,
    pub cfg: f64,
    pub sampler: String,
    pub width: usize,
    pub height: usize,
    pub clip_skip: usize,
    pub loras: Vec<LoraEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraEntry {
    /// The name in the prompt tag.
    pub name: String,
    /// Full file name in the LoRA folder (null when not found there).
    pub file: Option<String>,
    pub weight: f64,
    pub unet_weight: f64,
    pub epoch: Option<u32>,
    pub sha256: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridEntry {
    /// Path relative to the run folder.
    pub file: String,
    pub z_index: usize,
    pub seed_index: usize,
    /// Cells drawn as placeholders.
    pub missing: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellEntry {
    pub x_index: usize,
    pub y_index: usize,
    pub z_index: usize,
    pub seed_index: usize,
    pub key: String,
    /// Path relative to the run folder (present only when `status` is `ok`).
    pub image: String,
    /// `ok`, `failed` or `missing` (not rendered yet, e.g. another shard's).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub params: ParamsEntry,
    /// The key of this cell's control in [`Manifest::controls`] (cells with LoRAs, when controls are on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// Imported runs: the image file the cell was imported from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
}

/// A control: a cell's settings with its LoRA tags removed, rendered by the base model alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlEntry {
    pub key: String,
    /// Path relative to the run folder (`cells/<key>.png`; present only when `status` is `ok`).
    pub image: String,
    /// `ok`, `failed` or `missing`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Z and seed indices of the first cell it serves.
    pub z_index: usize,
    pub seed_index: usize,
    /// Its settings (prompt without LoRA tags, no LoRAs).
    pub params: ParamsEntry,
    /// Imported runs: the image file the control was imported from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryEntry {
    pub cells: usize,
    pub ok: usize,
    pub failed: usize,
    pub missing: usize,
}

/// The state of one cell in the run folder.
#[derive(Clone, Debug, PartialEq)]
pub enum CellStatus {
    Ok,
    Failed(String),
    Missing,
}

impl CellStatus {
    fn name(&self) -> &'static str {
        match self {
            CellStatus::Ok => "ok",
            CellStatus::Failed(_) => "failed",
            CellStatus::Missing => "missing",
        }
    }

    fn reason(&self) -> Option<String> {
        match self {
            CellStatus::Failed(reason) => Some(reason.clone()),
            _ => None,
        }
    }
}

impl Manifest {
    /// The manifest of `plan` with each cell's status (same order as `plan.cells`), each control's (same order as
    /// `plan.controls`) and the grids drawn.
    pub fn new(
        plan: &GridPlan,
        statuses: &[CellStatus],
        control_statuses: &[CellStatus],
        grids: Vec<GridEntry>,
    ) -> Manifest {
        let cells: Vec<CellEntry> = plan
            .cells
            .iter()
            .zip(statuses)
            .map(|(cell, status)| cell_entry(cell, status))
            .collect();
        let count = |name: &str| cells.iter().filter(|c| c.status == name).count();
        let summary = SummaryEntry {
            cells: cells.len(),
            ok: count("ok"),
            failed: count("failed"),
            missing: count("missing"),
        };
        Manifest {
            version: MANIFEST_VERSION,
            model: ModelEntry {
                file: plan.model.path.display().to_string(),
                sha256: plan.model.sha256.clone(),
                hash: plan.model.short_hash.clone(),
                name: plan.model.name.clone(),
            },
            axes: AxesEntry {
                x: axis_entry(&plan.x),
                y: plan.y.as_ref().map(axis_entry),
                z: plan.z.as_ref().map(axis_entry),
            },
            seeds: plan.seeds.clone(),
            base: params(&plan.base, &[]),
            grids,
            cells,
            controls: plan
                .controls
                .iter()
                .zip(control_statuses)
                .map(|(control, status)| control_entry(control, status))
                .collect(),
            summary,
            source: None,
        }
    }
}

fn axis_entry(axis: &Axis) -> AxisEntry {
    let files: Vec<String> = axis
        .values
        .iter()
        .filter_map(|v| match v {
            AxisValue::Epoch(file) => Some(file.file_name.clone()),
            _ => None,
        })
        .collect();
    AxisEntry {
        kind: axis.kind.id().to_string(),
        label: axis.kind.a1111_label().to_string(),
        raw: axis.raw.clone(),
        values: (0..axis.len()).map(|i| axis.json_value(i)).collect(),
        labels: axis.labels.clone(),
        files: (!files.is_empty()).then_some(files),
    }
}

fn cell_entry(cell: &CellRequest, status: &CellStatus) -> CellEntry {
    CellEntry {
        x_index: cell.x_index,
        y_index: cell.y_index,
        z_index: cell.z_index,
        seed_index: cell.seed_index,
        key: cell.key.clone(),
        image: cell.image_name(),
        status: status.name().to_string(),
        reason: status.reason(),
        params: params(&cell.settings, &cell.loras),
        control: cell.control.clone(),
        original: None,
    }
}

fn control_entry(control: &CellRequest, status: &CellStatus) -> ControlEntry {
    ControlEntry {
        key: control.key.clone(),
        image: control.image_name(),
        status: status.name().to_string(),
        reason: status.reason(),
        z_index: control.z_index,
        seed_index: control.seed_index,
        params: params(&control.settings, &control.loras),
        original: None,
    }
}

fn params(settings: &Settings, loras: &[super::plan::CellLora]) -> ParamsEntry {
    ParamsEntry {
        prompt: settings.prompt.clone(),
        negative: settings.negative.clone(),
        seed: settings.seed,
        steps: settings.steps,
        cfg: settings.cfg,
        sampler: settings.sampler.name().to_string(),
        width: settings.width,
        height: settings.height,
        clip_skip: settings.clip_skip,
        loras: loras
            .iter()
            .map(|l| LoraEntry {
                name: l.name.clone(),
                file: l
                    .path
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned()),
                weight: l.te_weight,
                unet_weight: l.unet_weight,
                epoch: l.epoch,
                sha256: l.sha256.clone(),
            })
            .collect(),
    }
}
