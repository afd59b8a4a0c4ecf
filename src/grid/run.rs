//! Executing a plan into a run folder: `cells/<key>.png` (each with its A1111 infotext), `cells/<key>.failed.json`
//! for cells whose render failed, `grid.json`, and one `grid*.png` per Z value and seed.
//!
//! Resume is by file presence: a cell whose image exists is never rendered again, so running the same command
//! again renders nothing, extending an axis renders only the new cells, and shards (`--shard i/n`) fill one shared
//! folder. Every file is written to a temporary name and renamed, so an interrupted run loses at most the cell in
//! progress. A render error marks that cell failed and the run goes on; I/O errors (a full disk) stop the run with
//! [`GridError::RunStopped`], keeping every cell written before.
//!
//! Controls (the cells' settings without LoRAs, [`GridPlan::controls`]) are rendered, resumed, split between
//! shards and recorded in `grid.json` like cells, through the same render callback, but are not drawn.

use std::fmt::Display;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use image::RgbImage;

use super::draw::{draw_grid, DrawOptions, GridCell, GridLabels};
use super::manifest::{CellStatus, GridEntry, Manifest};
use super::plan::{CellRequest, GridPlan, Shard};
use super::GridError;
use crate::sampling::png_info::{encode_png, write_png_atomic, GenerationParams};
use crate::sampling::schedule::ScheduleType;
use crate::sampling::SamplingError;

/// A run folder (`--out DIR`).
#[derive(Clone, Debug)]
pub struct RunFolder {
    pub root: PathBuf,
}

impl RunFolder {
    /// Creates `root/cells` and checks that files can be written there.
    pub fn create(root: &Path) -> Result<RunFolder, GridError> {
        let cells = root.join("cells");
        let write_error = |path: &Path, e: std::io::Error| GridError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        fs::create_dir_all(&cells).map_err(|e| write_error(&cells, e))?;
        let probe = temp_path(&cells.join("probe"));
        fs::write(&probe, b"").map_err(|e| write_error(&cells, e))?;
        fs::remove_file(&probe).map_err(|e| write_error(&probe, e))?;
        Ok(RunFolder {
            root: root.to_path_buf(),
        })
    }

    /// The manifest path, `grid.json`.
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("grid.json")
    }

    fn failure_path(&self, cell: &CellRequest) -> PathBuf {
        self.root
            .join("cells")
            .join(format!("{}.failed.json", cell.key))
    }

    /// A cell's state from the files present.
    pub fn status(&self, cell: &CellRequest) -> CellStatus {
        if self.root.join(cell.image_name()).is_file() {
            return CellStatus::Ok;
        }
        match fs::read_to_string(self.failure_path(cell)) {
            Ok(text) => CellStatus::Failed(
                serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["reason"].as_str().map(str::to_string))
                    .unwrap_or(text),
            ),
            Err(_) => CellStatus::Missing,
        }
    }

    /// Cells and controls of `shard` (all when None) without an image yet, in plan order (cells, then controls),
    /// each key once. A control whose key a cell has is left to that cell's shard.
    pub fn pending<'p>(&self, plan: &'p GridPlan, shard: Option<Shard>) -> Vec<&'p CellRequest> {
        let mut seen = std::collections::HashSet::new();
        let cells = plan.cells.len();
        plan.images()
            .filter(|(position, _)| shard.is_none_or(|s| s.contains(*position)))
            .filter(|(position, cell)| *position < cells || plan.is_control(cell))
            .map(|(_, cell)| cell)
            .filter(|cell| seen.insert(cell.key.clone()))
            .filter(|cell| self.status(cell) != CellStatus::Ok)
            .collect()
    }
}

/// What happens during a run, for progress display.
#[derive(Debug)]
pub enum RunEvent<'a> {
    CellStarted {
        done: usize,
        total: usize,
        cell: &'a CellRequest,
    },
    CellFinished {
        done: usize,
        total: usize,
        cell: &'a CellRequest,
        elapsed: Duration,
        error: Option<String>,
    },
    Drawing,
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Cells rendered in this run (controls not included).
    pub rendered: usize,
    /// Controls rendered in this run.
    pub controls_rendered: usize,
    /// (key, reason) of cells and controls that failed in this run.
    pub failed: Vec<(String, String)>,
    /// Cells of the whole plan still without an image (failed ones included).
    pub missing: usize,
    /// Controls of the whole plan still without an image (failed ones included).
    pub controls_missing: usize,
    pub grids: Vec<PathBuf>,
    pub manifest: PathBuf,
}

/// Options of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    pub shard: Option<Shard>,
    pub draw: DrawOptions,
}

/// Renders the pending cells and controls of the shard through `render` (in [`render_order`]), then writes
/// `grid.json` and the grid images from all cells present.
pub fn execute<E: Display>(
    plan: &GridPlan,
    folder: &RunFolder,
    options: &RunOptions,
    mut render: impl FnMut(&CellRequest) -> Result<RgbImage, E>,
    mut events: impl FnMut(RunEvent<'_>),
) -> Result<RunSummary, GridError> {
    let pending = render_order(folder.pending(plan, options.shard));
    write_manifest(plan, folder, Vec::new())?;
    let mut summary = RunSummary::default();
    let total = pending.len();
    for (done, cell) in pending.into_iter().enumerate() {
        events(RunEvent::CellStarted { done, total, cell });
        let started = Instant::now();
        let rendered = summary.rendered + summary.controls_rendered;
        let error = match render(cell) {
            Ok(image) => {
                save_cell(plan, folder, cell, &image).map_err(|e| stopped(e, folder, rendered))?;
                match plan.is_control(cell) {
                    true => summary.controls_rendered += 1,
                    false => summary.rendered += 1,
                }
                None
            }
            Err(error) => {
                let reason = error.to_string();
                save_failure(folder, cell, &reason).map_err(|e| stopped(e, folder, rendered))?;
                summary.failed.push((cell.key.clone(), reason.clone()));
                Some(reason)
            }
        };
        let elapsed = started.elapsed();
        events(RunEvent::CellFinished {
            done: done + 1,
            total,
            cell,
            elapsed,
            error,
        });
    }
    events(RunEvent::Drawing);
    let grids = draw_grids(plan, folder, &options.draw)?;
    summary.grids = grids.iter().map(|g| folder.root.join(&g.file)).collect();
    let manifest = write_manifest(plan, folder, grids)?;
    summary.missing = manifest.summary.failed + manifest.summary.missing;
    summary.controls_missing = manifest
        .controls
        .iter()
        .filter(|c| c.status != "ok")
        .count();
    summary.manifest = folder.manifest_path();
    Ok(summary)
}

/// A write error during rendering (disk full, folder made unwritable) as the error that stops the run.
fn stopped(error: GridError, folder: &RunFolder, rendered: usize) -> GridError {
    match error {
        GridError::Write { path, reason } => GridError::RunStopped {
            path,
            reason,
            rendered,
            folder: folder.root.clone(),
        },
        other => other,
    }
}

/// The cells grouped by LoRA state (files and multipliers), groups in order of first appearance and plan order
/// within a group, so that a renderer applying LoRAs switches as rarely as the plan allows. Cell identity (key,
/// position, file) does not depend on the order.
pub fn render_order(cells: Vec<&CellRequest>) -> Vec<&CellRequest> {
    let mut groups: Vec<(LoraState, Vec<&CellRequest>)> = Vec::new();
    for cell in cells {
        let state = lora_state(cell);
        match groups.iter_mut().find(|(s, _)| *s == state) {
            Some((_, members)) => members.push(cell),
            None => groups.push((state, vec![cell])),
        }
    }
    groups.into_iter().flat_map(|(_, cells)| cells).collect()
}

/// (file or tag name, TE multiplier, UNet multiplier) of each LoRA of a cell.
type LoraState = Vec<(String, u64, u64)>;

fn lora_state(cell: &CellRequest) -> LoraState {
    cell.loras
        .iter()
        .map(|l| {
            let file = l
                .path
                .as_ref()
                .map_or_else(|| l.name.clone(), |p| p.display().to_string());
            (file, l.te_weight.to_bits(), l.unet_weight.to_bits())
        })
        .collect()
}

/// The A1111 infotext of a cell, as `generate` writes it for the same settings.
pub fn cell_infotext(plan: &GridPlan, cell: &CellRequest) -> String {
    generation_params(plan, cell).to_infotext()
}

fn generation_params(plan: &GridPlan, cell: &CellRequest) -> GenerationParams {
    let s = &cell.settings;
    GenerationParams {
        prompt: s.prompt.clone(),
        negative: s.negative.clone(),
        steps: s.steps,
        sampler: s.sampler.infotext_sampler().to_string(),
        schedule_type: s
            .sampler
            .infotext_schedule(ScheduleType::Automatic)
            .to_string(),
        cfg: s.cfg,
        seed: s.seed,
        width: s.width as u32,
        height: s.height as u32,
        model_hash: Some(plan.model.short_hash.clone()),
        model_name: Some(plan.model.name.clone()),
        clip_skip: s.clip_skip as u32,
        ensd: s.sampler.infotext_ensd(s.ensd),
        rng: s.rng.infotext_value().map(str::to_string),
        lora_hashes: cell
            .loras
            .iter()
            .filter_map(|l| Some((l.name.clone(), l.short_hash.clone()?)))
            .collect(),
        extra: Vec::new(),
        version: None,
    }
}

/// The grid image's infotext: its first cell's, plus A1111's X/Y/Z plot fields.
pub fn grid_infotext(plan: &GridPlan, first: &CellRequest) -> String {
    let mut params = generation_params(plan, first);
    params.extra.push(("Script".into(), "X/Y/Z plot".into()));
    for (letter, axis) in plan.axes() {
        params
            .extra
            .push((format!("{letter} Type"), axis.kind.a1111_label().into()));
        let raw = if axis.raw.trim().is_empty() {
            axis.labels.join(", ")
        } else {
            axis.raw.clone()
        };
        params.extra.push((format!("{letter} Values"), raw));
        if axis.kind == super::axes::AxisKind::Seed {
            let fixed: Vec<String> = (0..axis.len())
                .map(|i| axis.json_value(i).to_string())
                .collect();
            params
                .extra
                .push((format!("Fixed {letter} Values"), fixed.join(", ")));
        }
    }
    params.to_infotext()
}

fn sampling_error(error: SamplingError) -> GridError {
    match error {
        SamplingError::Io { path, source } => GridError::Write {
            path,
            reason: source.to_string(),
        },
        other => GridError::Write {
            path: PathBuf::new(),
            reason: other.to_string(),
        },
    }
}

fn save_cell(
    plan: &GridPlan,
    folder: &RunFolder,
    cell: &CellRequest,
    image: &RgbImage,
) -> Result<(), GridError> {
    let path = folder.root.join(cell.image_name());
    match write_png_atomic(&path, image, &cell_infotext(plan, cell), false) {
        Ok(()) | Err(SamplingError::FileExists { .. }) => {}
        Err(SamplingError::Io { source, .. }) => {
            return Err(GridError::Write {
                path,
                reason: source.to_string(),
            })
        }
        Err(error) => return Err(sampling_error(error)),
    }
    let failure = folder.failure_path(cell);
    if failure.exists() {
        fs::remove_file(&failure).map_err(GridError::io(&failure))?;
    }
    Ok(())
}

fn save_failure(folder: &RunFolder, cell: &CellRequest, reason: &str) -> Result<(), GridError> {
    let record = serde_json::json!({"key": cell.key, "reason": reason});
    let text = serde_json::to_string_pretty(&record).unwrap_or_default();
    write_atomic(&folder.failure_path(cell), text.as_bytes())
}

fn write_manifest(
    plan: &GridPlan,
    folder: &RunFolder,
    grids: Vec<GridEntry>,
) -> Result<Manifest, GridError> {
    let statuses: Vec<CellStatus> = plan.cells.iter().map(|c| folder.status(c)).collect();
    let control_statuses: Vec<CellStatus> =
        plan.controls.iter().map(|c| folder.status(c)).collect();
    let manifest = Manifest::new(plan, &statuses, &control_statuses, grids);
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| GridError::Write {
        path: folder.manifest_path(),
        reason: e.to_string(),
    })?;
    write_atomic(&folder.manifest_path(), text.as_bytes())?;
    Ok(manifest)
}

/// Reads an existing `grid.json` (None when absent or unreadable).
pub fn read_manifest(root: &Path) -> Option<Manifest> {
    let text = fs::read_to_string(root.join("grid.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// `grid.png`, or `grid-z2.png`, `grid-seed3.png`, `grid-z2-seed3.png` when there are several Z values or seeds.
pub fn grid_file_name(plan: &GridPlan, z_index: usize, seed_index: usize) -> String {
    let mut name = "grid".to_string();
    if plan.dims().2 > 1 {
        name.push_str(&format!("-z{}", z_index + 1));
    }
    if plan.seeds.len() > 1 {
        name.push_str(&format!("-seed{}", seed_index + 1));
    }
    name + ".png"
}

fn draw_grids(
    plan: &GridPlan,
    folder: &RunFolder,
    options: &DrawOptions,
) -> Result<Vec<GridEntry>, GridError> {
    let (_, _, nz) = plan.dims();
    let mut entries = Vec::new();
    for z in 0..nz {
        for seed in 0..plan.seeds.len() {
            entries.push(draw_one_grid(plan, folder, options, z, seed)?);
        }
    }
    Ok(entries)
}

fn draw_one_grid(
    plan: &GridPlan,
    folder: &RunFolder,
    options: &DrawOptions,
    z: usize,
    seed: usize,
) -> Result<GridEntry, GridError> {
    let (nx, ny, _) = plan.dims();
    let mut missing = 0;
    let mut rows = Vec::new();
    for y in 0..ny {
        let mut row = Vec::new();
        for x in 0..nx {
            let cell = plan
                .cell(x, y, z, seed)
                .ok_or_else(|| GridError::InvalidSetting("plan has no such cell".into()))?;
            let grid_cell = load_cell(folder, cell)?;
            missing += usize::from(matches!(grid_cell, GridCell::Placeholder { .. }));
            row.push(grid_cell);
        }
        rows.push(row);
    }
    let labels = GridLabels {
        columns: plan.x.labels.clone(),
        rows: plan
            .y
            .as_ref()
            .map_or_else(|| vec![String::new()], |a| a.labels.clone()),
        title: plan.z.as_ref().map(|a| a.labels[z].clone()),
    };
    let image = draw_grid(&rows, &labels, options)?;
    let file = grid_file_name(plan, z, seed);
    let first = plan
        .cell(0, 0, z, seed)
        .ok_or_else(|| GridError::InvalidSetting("empty plan".into()))?;
    let bytes = encode_png(&image, &grid_infotext(plan, first)).map_err(|e| GridError::Write {
        path: folder.root.join(&file),
        reason: e.to_string(),
    })?;
    write_atomic(&folder.root.join(&file), &bytes)?;
    Ok(GridEntry {
        file,
        z_index: z,
        seed_index: seed,
        missing,
    })
}

fn load_cell(folder: &RunFolder, cell: &CellRequest) -> Result<GridCell, GridError> {
    let placeholder = |reason: &str| GridCell::Placeholder {
        width: cell.settings.width as u32,
        height: cell.settings.height as u32,
        reason: reason.to_string(),
    };
    Ok(match folder.status(cell) {
        CellStatus::Ok => {
            let path = folder.root.join(cell.image_name());
            match image::open(&path) {
                Ok(image) => GridCell::Image(image.to_rgb8()),
                Err(e) => {
                    tracing::warn!("{}: unreadable cell image: {e}", path.display());
                    placeholder("unreadable")
                }
            }
        }
        CellStatus::Failed(_) => placeholder("failed"),
        CellStatus::Missing => placeholder("missing"),
    })
}

fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{unique}.tmp", std::process::id()))
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), GridError> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&temp);
        GridError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })
}
