//! `loraeval grid`: AUTOMATIC1111's X/Y/Z plot (epochs × LoRA weights and the other axes) into a resumable,
//! shardable run folder. Settings resolve as flags > `--spec` YAML > defaults.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::decide::{decide, DecisionArgs};
use super::faces::FaceOptionArgs;
use super::progress::step_bar;
use crate::grid::axes::{Axis, AxisKind, AxisSpec};
use crate::grid::draw::DrawOptions;
use crate::grid::epochs::{LoraLibrary, LoraRun};
use crate::grid::lora_tag::{lora_tag_names, LoraTarget};
use crate::grid::plan::{CellRequest, GridPlan, ModelInfo, PlanInput, Settings, Shard};
use crate::grid::run::{
    execute, read_manifest, write_atomic, RunEvent, RunFolder, RunOptions, RunSummary,
};
use crate::grid::run_info::RunInfo;
use crate::grid::spec::{GridSpec, PromptSet, SeedsSpec};
use crate::grid::values::parse_int_values;
use crate::grid::GridError;
use crate::lora::library::{resolve_prompt_tags, LoraCache};
use crate::lora::LoraMode;
use crate::sampling::rng::RngSource;
use crate::sampling::samplers::SamplerName;
use crate::sampling::txt2img::{PipelineError, StableDiffusion, Txt2ImgRequest};
use crate::text::extra_networks::extract_extra_networks;
use candle_core::Tensor;

/// Options of `loraeval grid` (sampling defaults as `generate`).
#[derive(Debug, Args)]
pub struct GridArgs {
    /// Grid spec YAML (e.g. grids/epochs-weights.yaml); flags override its values.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// SD1.5 checkpoint: a single `.safetensors` file or a diffusers folder.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Folder with the LoRA files of a training run (kohya: name-000001.safetensors … name.safetensors).
    #[arg(long)]
    lora_dir: Option<PathBuf>,
    /// Which run of --lora-dir (its output name or any file stem), when the folder holds several.
    #[arg(long)]
    lora_name: Option<String>,
    /// X axis: `epochs`, a LoRA weight list `0.4,0.6,0.8,1.0`, or <type>:<values> with type weight, prompt-sr,
    /// seed, steps, cfg, sampler, clip-skip, width, height, rng (A1111 syntax: `1-5`, `1-5 (+2)`, `1-10 [5]`,
    /// quotes).
    #[arg(long, allow_hyphen_values = true)]
    x: Option<String>,
    /// Y axis (same syntax as --x).
    #[arg(long, allow_hyphen_values = true)]
    y: Option<String>,
    /// Z axis: one grid image per value (same syntax as --x).
    #[arg(long, allow_hyphen_values = true)]
    z: Option<String>,
    /// Prompt, in AUTOMATIC1111 syntax; a <lora:NAME:W> tag is appended for epoch/weight axes when missing.
    #[arg(long)]
    prompt: Option<String>,
    /// Prompt set YAML (e.g. prompts/face-identity.yaml): one grid per prompt (uses the Z axis).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Negative prompt.
    #[arg(long)]
    negative: Option<String>,
    /// Seed of every cell; -1 or absent picks a random one (kept in grid.json, reused when resuming).
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<i64>,
    /// Several seeds per cell: a count (3 = seed, seed+1, seed+2) or a list (`1,5,9`, `10-12`).
    #[arg(long)]
    seeds: Option<String>,
    /// Sampling steps [default: 20].
    #[arg(long)]
    steps: Option<usize>,
    /// Classifier-free guidance scale [default: 7].
    #[arg(long)]
    cfg: Option<f64>,
    /// Sampler [default: dpmpp_2m_karras].
    #[arg(long)]
    sampler: Option<String>,
    /// Width in pixels [default: 512].
    #[arg(long)]
    width: Option<usize>,
    /// Height in pixels [default: 512].
    #[arg(long)]
    height: Option<usize>,
    /// CLIP skip [default: 1].
    #[arg(long)]
    clip_skip: Option<usize>,
    /// RNG source: gpu (A1111's default: the numbers an NVIDIA GPU draws), cpu or nv [default: gpu].
    #[arg(long, value_parser = super::generate::parse_rng_source)]
    rng: Option<RngSource>,
    /// Eta noise seed delta (A1111's ENSD setting) [default: 0].
    #[arg(long)]
    ensd: Option<u64>,
    /// Run folder: cells/, grid.json, grid*.png. Running again resumes and extends it.
    #[arg(long)]
    out: PathBuf,
    /// Render only share i of n (e.g. 2/4), for Slurm arrays or Kubernetes indexed Jobs on one shared folder.
    #[arg(long)]
    shard: Option<String>,
    /// Render grids with more images than --max-images.
    #[arg(long)]
    yes: bool,
    /// Images above which --yes is required.
    #[arg(long, default_value_t = 500)]
    max_images: usize,
    /// Pixels between grid cells [default: 0].
    #[arg(long)]
    margin: Option<u32>,
    /// Print the plan and stop.
    #[arg(long)]
    dry_run: bool,
    /// Skip the controls: each LoRA cell's seed and settings rendered without the LoRA by the base model.
    #[arg(long)]
    no_control: bool,
    /// Reference (training) photos of the person: a folder (kohya's image/NN_name works as it is) or files;
    /// repeatable. After rendering, every cell is scored, a checkpoint recommended and report.html written.
    #[arg(long)]
    reference: Vec<PathBuf>,
    #[command(flatten)]
    face: FaceOptionArgs,
    #[command(flatten)]
    decision: DecisionArgs,
}

/// Exit code when the grid was written but some cells failed.
const EXIT_CELLS_FAILED: u8 = 2;

/// Runs `grid`: plan, render the missing cells of this shard, write the manifest and grid images.
pub fn run(args: GridArgs) -> Result<ExitCode> {
    let spec = match &args.spec {
        Some(path) => GridSpec::read(path)?,
        None => GridSpec::default(),
    };
    let folder = RunFolder::create(&args.out)?;
    let model_path = args
        .model
        .clone()
        .or(spec.model.clone())
        .context("give --model (or `model:` in the spec)")?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    let plan = build_plan(&args, &spec, &folder, &model_path)?;
    let images = plan.cells.len() + plan.controls.len();
    if images > args.max_images && !args.yes {
        bail!(
            "this grid has {images} images, more than --max-images {}; pass --yes to render it",
            args.max_images
        );
    }
    let pending: Vec<CellRequest> = folder.pending(&plan, shard).into_iter().cloned().collect();
    print_plan(&plan, &pending, shard, &folder, &model_path);
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let model = match pending.is_empty() {
        true => None,
        false => Some(
            StableDiffusion::load(&model_path)
                .with_context(|| format!("loading model {}", model_path.display()))?,
        ),
    };
    let options = RunOptions {
        shard,
        draw: DrawOptions {
            margin: args.margin.or(spec.margin).unwrap_or(0),
            ..DrawOptions::default()
        },
    };
    let lora_dir = args.lora_dir.as_ref().or(spec.lora_dir.as_ref());
    let library = lora_dir
        .map(|dir| crate::lora::LoraLibrary::scan(dir))
        .transpose()?;
    let mut renderer = model
        .as_ref()
        .map(|model| CellRenderer::new(model, library));
    let summary = render(&plan, &folder, &options, renderer.as_mut(), pending.len())?;
    if let Some(renderer) = renderer.as_ref().filter(|r| r.cells > 0) {
        eprintln!(
            "shared work: {} LoRA applications and {} prompt encodings for {} images",
            renderer.applications,
            renderer.encodings.len(),
            renderer.cells
        );
    }
    RunInfo::new(
        &std::env::args().collect::<Vec<_>>(),
        lora_dir.map(PathBuf::as_path),
        Some(&model_path),
    )
    .write(&folder.root)?;
    let code = report(&summary, &folder, plan.controls.len());
    let reference = match args.reference.is_empty() {
        true => spec.reference.clone().unwrap_or_default(),
        false => args.reference.clone(),
    };
    if !reference.is_empty() {
        decide_run(&folder.root, &reference, &args)?;
    }
    Ok(code)
}

/// Scores the rendered run, recommends and writes the report; the report path goes to stdout, the decision to
/// stderr.
fn decide_run(run: &Path, reference: &[PathBuf], args: &GridArgs) -> Result<()> {
    let decision = decide(run, reference, &args.face, &args.decision)?;
    println!("{}", decision.report.display());
    for reason in &decision.recommendation.reasons {
        eprintln!("{reason}");
    }
    Ok(())
}

/// Renders cells and shares the work they have in common: the model with the LoRA state of the previous cell (cells
/// come grouped by LoRA state, see `grid::run::render_order`) and text encodings per (prompt, negative prompt, clip
/// skip, text-encoder LoRA state).
pub struct CellRenderer<'m> {
    base: &'m StableDiffusion,
    library: Option<crate::lora::LoraLibrary>,
    cache: LoraCache,
    /// The last LoRA state and the model with it applied (merged).
    applied: Option<(LoraState, StableDiffusion)>,
    encodings: HashMap<EncodingKey, (Tensor, Tensor)>,
    /// LoRA applications done (for the debug log and tests of the sharing).
    pub applications: usize,
    /// Images rendered (cells and controls).
    pub cells: usize,
}

/// (file, TE multiplier bits, UNet multiplier bits) of each LoRA a prompt's tags resolve to.
type LoraState = Vec<(PathBuf, u32, u32)>;

/// (prompt without tags, negative prompt, clip skip, (file, TE multiplier bits) of LoRAs touching the text encoder).
type EncodingKey = (String, String, usize, Vec<(PathBuf, u32)>);

impl<'m> CellRenderer<'m> {
    pub fn new(base: &'m StableDiffusion, library: Option<crate::lora::LoraLibrary>) -> Self {
        CellRenderer {
            base,
            library,
            cache: LoraCache::default(),
            applied: None,
            encodings: HashMap::new(),
            applications: 0,
            cells: 0,
        }
    }

    /// The image of one cell: the image `generate` makes with the cell's settings.
    pub fn render(&mut self, request: &Txt2ImgRequest) -> Result<image::RgbImage, PipelineError> {
        self.cells += 1;
        let tags = resolve_prompt_tags(&request.prompt, self.library.as_ref())?;
        let state: LoraState = tags
            .iter()
            .map(|t| (t.path.clone(), t.te.to_bits(), t.unet.to_bits()))
            .collect();
        self.apply_state(state, request)?;
        let model = match &self.applied {
            Some((_, model)) if !tags.is_empty() => model,
            _ => self.base,
        };
        let (prompt, _) = extract_extra_networks(&request.prompt);
        let te_state = tags
            .iter()
            .filter(|t| t.te != 0.0)
            .map(|t| (t.path.clone(), t.te.to_bits()))
            .collect();
        let key = (
            prompt,
            request.negative.clone(),
            request.clip_skip,
            te_state,
        );
        let (cond, uncond) = match self.encodings.get(&key) {
            Some(known) => known.clone(),
            None => {
                let encoded = model.prompt_conditioning(request)?;
                self.encodings.insert(key, encoded.clone());
                encoded
            }
        };
        let mut images = model.txt2img_conditioned(request, &cond, &uncond, &mut |_, _| {})?;
        images
            .pop()
            .map(|i| i.pixels)
            .ok_or_else(|| PipelineError::InvalidSetting("the engine returned no image".into()))
    }

    /// Makes `self.applied` the base model with `state` applied, unless it already is (or `state` is empty).
    fn apply_state(
        &mut self,
        state: LoraState,
        request: &Txt2ImgRequest,
    ) -> Result<(), PipelineError> {
        let current = matches!(&self.applied, Some((applied, _)) if *applied == state);
        if state.is_empty() || current {
            return Ok(());
        }
        self.applied = None;
        let model = self.base.with_prompt_loras(
            &request.prompt,
            self.library.as_ref(),
            &self.cache,
            LoraMode::Merged,
        )?;
        self.applications += 1;
        self.applied = Some((state, model));
        Ok(())
    }
}

fn render(
    plan: &GridPlan,
    folder: &RunFolder,
    options: &RunOptions,
    mut renderer: Option<&mut CellRenderer<'_>>,
    pending: usize,
) -> Result<RunSummary> {
    let bar = step_bar(pending as u64, "cells");
    let mut timing = Timing::read(&folder.root);
    let render_cell = |cell: &CellRequest| -> Result<image::RgbImage, String> {
        let renderer = renderer.as_deref_mut().ok_or("no model loaded")?;
        renderer
            .render(&cell.settings.to_txt2img())
            .map_err(|e| e.to_string())
    };
    let events = |event: RunEvent<'_>| progress(&bar, plan, &mut timing, event);
    let summary = execute(plan, folder, options, render_cell, events)?;
    bar.finish_and_clear();
    timing.write(&folder.root);
    Ok(summary)
}

fn progress(bar: &ProgressBar, plan: &GridPlan, timing: &mut Timing, event: RunEvent<'_>) {
    match event {
        RunEvent::CellStarted { cell, .. } => bar.set_message(cell_label(plan, cell)),
        RunEvent::CellFinished {
            done,
            total,
            cell,
            elapsed,
            error,
        } => {
            bar.set_position(done as u64);
            if error.is_none() {
                timing.add(cell, elapsed);
            }
            if bar.is_hidden() || error.is_some() {
                let outcome = error.map_or_else(|| "ok".to_string(), |e| format!("FAILED: {e}"));
                bar.suspend(|| {
                    eprintln!(
                        "cell {done}/{total} [{}] {:.1}s {outcome}",
                        cell_label(plan, cell),
                        elapsed.as_secs_f64()
                    )
                });
            }
        }
        RunEvent::Drawing => bar.set_message("drawing grids"),
    }
}

fn report(summary: &RunSummary, folder: &RunFolder, controls: usize) -> ExitCode {
    for grid in &summary.grids {
        println!("{}", grid.display());
    }
    println!("{}", summary.manifest.display());
    let control_text = match controls {
        0 => String::new(),
        _ => format!(
            " and {} control images (no LoRA; {} of {controls} still missing or failed)",
            summary.controls_rendered, summary.controls_missing
        ),
    };
    eprintln!(
        "rendered {} cells{control_text}; {} of the grid still missing or failed",
        summary.rendered, summary.missing
    );
    if summary.failed.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "{} cells failed (see {}):",
        summary.failed.len(),
        folder.manifest_path().display()
    );
    for (key, reason) in &summary.failed {
        eprintln!("  {key}: {reason}");
    }
    ExitCode::from(EXIT_CELLS_FAILED)
}

/// "x: epoch 3, y: LoRA weight: 0.8, seed 42"; "control (no LoRA), z: …, seed 42" for a control.
fn cell_label(plan: &GridPlan, cell: &CellRequest) -> String {
    if plan.is_control(cell) {
        let mut parts = vec!["control (no LoRA)".to_string()];
        if let Some(z) = &plan.z {
            parts.push(format!("z: {}", z.labels[cell.z_index]));
        }
        parts.push(format!("seed {}", cell.settings.seed));
        return parts.join(", ");
    }
    let indices = [cell.x_index, cell.y_index, cell.z_index];
    let mut parts: Vec<String> = plan
        .axes()
        .iter()
        .zip(indices)
        .map(|((letter, axis), i)| format!("{}: {}", letter.to_lowercase(), axis.labels[i]))
        .collect();
    parts.push(format!("seed {}", cell.settings.seed));
    parts.join(", ")
}

fn print_plan(
    plan: &GridPlan,
    pending: &[CellRequest],
    shard: Option<Shard>,
    folder: &RunFolder,
    model: &Path,
) {
    let (nx, ny, nz) = plan.dims();
    let cells = plan.cells.len();
    let present = plan
        .images()
        .filter(|(position, c)| *position < cells || plan.is_control(c))
        .filter(|(_, c)| folder.root.join(c.image_name()).is_file())
        .count();
    let plural = if nz > 1 { "s" } else { "" };
    let seeds = plan.seeds.len();
    let per_cell = if seeds > 1 {
        format!("; {seeds} seeds per cell")
    } else {
        String::new()
    };
    eprintln!(
        "X/Y/Z plot: {} images on {nz} {nx}x{ny} grid{plural}{per_cell}",
        plan.cells.len()
    );
    for (letter, axis) in plan.axes() {
        eprintln!(
            "  {letter}: {} = {}",
            axis.kind.a1111_label(),
            axis.labels.join(" | ")
        );
    }
    if !plan.controls.is_empty() {
        eprintln!("  {} control images (no LoRA)", plan.controls.len());
    }
    let shard_text =
        shard.map_or_else(String::new, |s| format!(" (shard {}/{})", s.index, s.count));
    let steps: usize = pending.iter().map(|c| c.settings.steps).sum();
    let estimate = Timing::read(&folder.root).estimate(pending, model);
    eprintln!(
        "{present} already rendered; {} to render{shard_text}, {steps} sampling steps, estimated {}",
        pending.len(),
        format_duration(estimate)
    );
}

fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// Seconds per sampling step and megapixel measured in earlier runs of this folder (`.timing.json`).
#[derive(Default, Serialize, Deserialize)]
struct Timing {
    seconds: f64,
    step_megapixels: f64,
}

impl Timing {
    fn read(root: &Path) -> Timing {
        std::fs::read_to_string(root.join(".timing.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn write(&self, root: &Path) {
        if let Ok(text) = serde_json::to_string(self) {
            let _ = write_atomic(&root.join(".timing.json"), text.as_bytes());
        }
    }

    fn add(&mut self, cell: &CellRequest, elapsed: Duration) {
        self.seconds += elapsed.as_secs_f64();
        self.step_megapixels += step_megapixels(cell);
    }

    /// Measured rate when known; else a rough guess from the model size (PyTorch on 2 cores: 33.8 s per 512x512
    /// step of a 4.27 GB fp32 SD1.5 checkpoint, docs/perf.md).
    fn estimate(&self, cells: &[CellRequest], model: &Path) -> Duration {
        let work: f64 = cells.iter().map(step_megapixels).sum();
        let rate = if self.step_megapixels > 0.0 {
            self.seconds / self.step_megapixels
        } else {
            let bytes = model_bytes(model) as f64;
            33.8 / 0.262_144 * (bytes / 4.27e9)
        };
        Duration::from_secs_f64((work * rate).max(0.0))
    }
}

fn step_megapixels(cell: &CellRequest) -> f64 {
    cell.settings.steps as f64 * (cell.settings.width * cell.settings.height) as f64 / 1e6
}

fn model_bytes(path: &Path) -> u64 {
    model_files(path)
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The weight files of a checkpoint: the file itself, or every `.safetensors` of a diffusers folder (sorted).
fn model_files(path: &Path) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    let mut folders = vec![path.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                folders.push(p);
            } else if p.extension().is_some_and(|e| e == "safetensors") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Content hashes cached in the run folder by (path, size, modification time).
struct HashCache {
    path: PathBuf,
    entries: BTreeMap<String, (u64, u128, String)>,
}

impl HashCache {
    fn open(root: &Path) -> HashCache {
        let path = root.join(".hashes.json");
        let entries = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        HashCache { path, entries }
    }

    fn sha256(&mut self, file: &Path) -> Result<String, GridError> {
        let meta = std::fs::metadata(file).map_err(GridError::io(file))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = std::fs::canonicalize(file)
            .unwrap_or_else(|_| file.to_path_buf())
            .display()
            .to_string();
        if let Some((len, time, hash)) = self.entries.get(&key) {
            if *len == meta.len() && *time == modified {
                return Ok(hash.clone());
            }
        }
        let hash = crate::weights::sha256_hex(file).map_err(|e| GridError::Write {
            path: file.to_path_buf(),
            reason: e.to_string(),
        })?;
        self.entries
            .insert(key, (meta.len(), modified, hash.clone()));
        Ok(hash)
    }

    fn save(&self) {
        if let Ok(text) = serde_json::to_string_pretty(&self.entries) {
            let _ = write_atomic(&self.path, text.as_bytes());
        }
    }
}

fn model_info(path: &Path, hashes: &mut HashCache) -> Result<ModelInfo> {
    if !path.exists() {
        bail!("{}: model not found", path.display());
    }
    let files = model_files(path);
    let sha256 = if path.is_dir() {
        let parts = files
            .iter()
            .map(|f| hashes.sha256(f))
            .collect::<Result<Vec<_>, _>>()?;
        use sha2::{Digest, Sha256};
        Sha256::digest(parts.join(",").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    } else {
        hashes.sha256(path)?
    };
    let short_hash = if path.is_dir() {
        crate::weights::model_hash(path)?
    } else {
        sha256[..10].to_string()
    };
    let name = match path.is_dir() {
        true => path.file_name(),
        false => path.file_stem(),
    };
    Ok(ModelInfo {
        path: path.to_path_buf(),
        sha256,
        short_hash,
        name: name
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    })
}

/// The prompt(s): a prompt set (its own axis) or one prompt; flags before the spec.
enum Prompts {
    Single(String),
    Set(PathBuf, PromptSet),
}

fn prompts(args: &GridArgs, spec: &GridSpec) -> Result<Prompts> {
    let read_set = |path: &PathBuf| -> Result<Prompts> {
        Ok(Prompts::Set(path.clone(), PromptSet::read(path)?))
    };
    match (&args.prompts, &args.prompt, &spec.prompts, &spec.prompt) {
        (Some(path), _, _, _) => read_set(path),
        (None, Some(prompt), _, _) => Ok(Prompts::Single(prompt.clone())),
        (None, None, Some(path), _) => read_set(path),
        (None, None, None, Some(prompt)) => Ok(Prompts::Single(prompt.clone())),
        _ => bail!("give --prompt or --prompts (or `prompt:` / `prompts:` in the spec)"),
    }
}

fn base_seed(args: &GridArgs, spec: &GridSpec, folder: &RunFolder) -> Result<u64> {
    match args.seed.or(spec.seed) {
        Some(seed) if seed >= 0 => Ok(seed as u64),
        Some(-1) | None => {
            Ok(read_manifest(&folder.root).map_or_else(random_seed, |m| m.base.seed))
        }
        Some(seed) => {
            bail!("--seed {seed} is invalid: use a non-negative seed or -1 for a random one")
        }
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() % (1u64 << 32)
}

fn seed_list(args: &GridArgs, spec: &GridSpec, seed: u64) -> Result<Vec<u64>> {
    let spec_seeds = spec.seeds.clone();
    let seeds = match (&args.seeds, spec_seeds) {
        (Some(text), _) => SeedsSpec::Text(text.clone()),
        (None, Some(seeds)) => seeds,
        (None, None) => SeedsSpec::Count(1),
    };
    let list = match seeds {
        SeedsSpec::Count(n) => (0..n.max(1)).map(|i| seed + i).collect(),
        SeedsSpec::List(list) => list,
        SeedsSpec::Text(text) => match text.trim().parse::<u64>() {
            Ok(n) => (0..n.max(1)).map(|i| seed + i).collect(),
            Err(_) => parse_int_values(&text)
                .map_err(|e| anyhow::anyhow!("--seeds value {:?}: {}", e.value, e.reason))?
                .into_iter()
                .map(|s| u64::try_from(s).map_err(|_| anyhow::anyhow!("--seeds: {s} is negative")))
                .collect::<Result<_>>()?,
        },
    };
    if list.is_empty() {
        bail!("--seeds gives no seeds");
    }
    Ok(list)
}

fn base_settings(args: &GridArgs, spec: &GridSpec, prompt: String, seed: u64) -> Result<Settings> {
    let sampler = args
        .sampler
        .clone()
        .or(spec.sampler.clone())
        .unwrap_or_else(|| "dpmpp_2m_karras".into());
    let rng = match (args.rng, &spec.rng) {
        (Some(source), _) => source,
        (None, Some(text)) => RngSource::parse(text).context("`rng:` in the grid spec")?,
        (None, None) => RngSource::default(),
    };
    Ok(Settings {
        prompt,
        negative: args
            .negative
            .clone()
            .or(spec.negative.clone())
            .unwrap_or_default(),
        seed,
        steps: args.steps.or(spec.steps).unwrap_or(20),
        cfg: args.cfg.or(spec.cfg).unwrap_or(7.0),
        sampler: SamplerName::parse(&sampler)?,
        width: args.width.or(spec.width).unwrap_or(512),
        height: args.height.or(spec.height).unwrap_or(512),
        clip_skip: args.clip_skip.or(spec.clip_skip).unwrap_or(1),
        rng,
        ensd: args.ensd.or(spec.ensd).unwrap_or(0),
    })
}

fn build_plan(
    args: &GridArgs,
    spec: &GridSpec,
    folder: &RunFolder,
    model_path: &Path,
) -> Result<GridPlan> {
    let x_text = args
        .x
        .clone()
        .or(spec.x.clone())
        .context("give --x (or `x:` in the spec)")?;
    let y_text = args.y.clone().or(spec.y.clone());
    let mut z_text = args.z.clone().or(spec.z.clone());
    let prompts = prompts(args, spec)?;
    if args.z.is_none() && matches!(prompts, Prompts::Set(..)) {
        z_text = None;
    }
    let specs: Vec<Option<AxisSpec>> = [Some(&x_text), y_text.as_ref(), z_text.as_ref()]
        .into_iter()
        .map(|t| t.map(|t| AxisSpec::parse(t)).transpose())
        .collect::<Result<_, _>>()?;
    let seed = base_seed(args, spec, folder)?;
    let (prompt, tag_text) = match &prompts {
        Prompts::Single(p) => (p.clone(), p.clone()),
        Prompts::Set(_, set) => (
            String::new(),
            set.prompts
                .iter()
                .map(|e| e.prompt.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ),
    };
    let lora_dir = args.lora_dir.clone().or(spec.lora_dir.clone());
    let library = lora_dir.as_deref().map(LoraLibrary::scan).transpose()?;
    if let Some(library) = &library {
        for (path, reason) in &library.skipped {
            eprintln!("warning: skipped {}: {reason}", path.display());
        }
    }
    let lora_name = args.lora_name.clone().or(spec.lora_name.clone());
    let kinds: Vec<AxisKind> = specs.iter().flatten().map(|s| s.kind).collect();
    let run = select_run(library.as_ref(), &kinds, lora_name.as_deref(), &tag_text)?;
    let target = lora_target(run.as_ref(), &kinds, lora_name.as_deref(), &tag_text)?;
    let mut axes = specs
        .iter()
        .map(|s| {
            s.as_ref()
                .map(|s| Axis::resolve(s, run.as_ref()))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Prompts::Set(path, set) = &prompts {
        if axes[2].is_some() {
            bail!("a prompt set draws one grid per prompt on the Z axis; drop --z or use --prompt");
        }
        axes[2] = Some(Axis::prompts(
            set.prompts.clone(),
            &path.display().to_string(),
        ));
    }
    let mut hashes = HashCache::open(&folder.root);
    let model = model_info(model_path, &mut hashes)?;
    let z = axes.pop().flatten();
    let y = axes.pop().flatten();
    let x = axes.pop().flatten().context("no X axis")?;
    let input = PlanInput {
        base: base_settings(args, spec, prompt, seed)?,
        x,
        y,
        z,
        seeds: seed_list(args, spec, seed)?,
        lora_target: target,
        library: library.as_ref(),
        model,
        control: !args.no_control && spec.control.unwrap_or(true),
    };
    let plan = GridPlan::build(input, &mut |path| hashes.sha256(path));
    hashes.save();
    Ok(plan?)
}

fn select_run(
    library: Option<&LoraLibrary>,
    kinds: &[AxisKind],
    lora_name: Option<&str>,
    prompt: &str,
) -> Result<Option<LoraRun>> {
    let uses_lora = kinds
        .iter()
        .any(|k| matches!(k, AxisKind::Epochs | AxisKind::LoraWeight))
        || lora_name.is_some();
    match library {
        Some(library) if uses_lora => Ok(Some(library.select_run(lora_name, prompt)?)),
        None if kinds.contains(&AxisKind::Epochs) => bail!("the epochs axis needs --lora-dir"),
        _ => Ok(None),
    }
}

fn lora_target(
    run: Option<&LoraRun>,
    kinds: &[AxisKind],
    lora_name: Option<&str>,
    prompt: &str,
) -> Result<Option<LoraTarget>> {
    if let Some(run) = run {
        return Ok(Some(run.target()));
    }
    if let Some(name) = lora_name {
        return Ok(Some(LoraTarget::single(name)));
    }
    if !kinds.contains(&AxisKind::LoraWeight) {
        return Ok(None);
    }
    let mut names = lora_tag_names(prompt);
    names.dedup();
    match names.as_slice() {
        [name] => Ok(Some(LoraTarget::single(name))),
        [] => bail!("the LoRA weight axis needs a LoRA: give --lora-dir, --lora-name or a <lora:NAME:W> tag in the prompt"),
        _ => bail!("the prompt has several LoRA tags ({}); say which one the weight axis varies with --lora-name", names.join(", ")),
    }
}
