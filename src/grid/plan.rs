//! The grid plan: every cell (x, y, z, seed index) with the full settings `generate` would get, the LoRA files its
//! prompt names, and a cache key made of everything that determines its pixels; plus `--shard i/n` shares.
//!
//! Cells are ordered as A1111 loops over them (Z outer, then Y, X fastest), seeds innermost. Axis values are
//! applied in A1111's order X, Y, Z to a copy of the base settings (a prompt-set axis first, since it replaces the
//! whole prompt), so a Y Prompt S/R sees the prompt after X's replacement.
//!
//! Every cell with LoRAs also has a control: the same settings with its `<lora:…>` tags removed, rendered by the
//! base model alone (A1111's "None"). Cells that differ only in LoRA files or weights share one control. Controls
//! are keyed and cached like cells and come after the cells in plan positions (shards), but are not drawn.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::axes::{apply, Axis, AxisKind};
use super::epochs::LoraLibrary;
use super::lora_tag::{set_lora_tag, LoraTarget};
use super::GridError;
use crate::lora::library::is_lora_kind;
use crate::sampling::rng::RngSource;
use crate::sampling::samplers::SamplerName;
use crate::sampling::txt2img::Txt2ImgRequest;
use crate::text::extra_networks::{
    extract_extra_networks, lora_multipliers, remove_extra_networks,
};

/// Bumped when the renderer's output for the same settings changes, so that cached cells are not reused.
pub const CELL_KEY_VERSION: u32 = 1;

/// The settings of one image: what `generate` takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub prompt: String,
    pub negative: String,
    pub seed: u64,
    pub steps: usize,
    pub cfg: f64,
    pub sampler: SamplerName,
    pub width: usize,
    pub height: usize,
    pub clip_skip: usize,
    /// A1111's RNG source.
    pub rng: RngSource,
    /// A1111's eta noise seed delta (0 = off).
    pub ensd: u64,
}

impl Settings {
    /// The engine request for one image with these settings.
    pub fn to_txt2img(&self) -> Txt2ImgRequest {
        Txt2ImgRequest {
            prompt: self.prompt.clone(),
            negative: self.negative.clone(),
            seed: self.seed,
            steps: self.steps,
            cfg: self.cfg,
            sampler: self.sampler,
            width: self.width,
            height: self.height,
            clip_skip: self.clip_skip,
            batch: 1,
            rng: self.rng,
            ensd: self.ensd,
        }
    }
}

/// A `<lora:…>` tag of a cell's prompt and the file it names.
#[derive(Clone, Debug, PartialEq)]
pub struct CellLora {
    /// The tag's name (a file stem or alias).
    pub name: String,
    /// The file in `--lora-dir` (None when the name is not found there or there is no folder).
    pub path: Option<PathBuf>,
    pub te_weight: f64,
    pub unet_weight: f64,
    pub epoch: Option<u32>,
    /// SHA-256 of the whole file.
    pub sha256: Option<String>,
    /// A1111's 12-digit `Lora hashes` value (`sshs_model_hash`, else the SHA-256 of the tensor data).
    pub short_hash: Option<String>,
}

/// One cell of the plot: its position, settings, LoRAs and cache key.
#[derive(Clone, Debug, PartialEq)]
pub struct CellRequest {
    pub x_index: usize,
    pub y_index: usize,
    pub z_index: usize,
    pub seed_index: usize,
    pub settings: Settings,
    pub loras: Vec<CellLora>,
    /// Hex digest of everything that determines the cell's pixels; the image is `cells/<key>.png`.
    pub key: String,
    /// The key of this cell's control (the same settings without LoRAs), when it has LoRAs and controls are on.
    pub control: Option<String>,
}

impl CellRequest {
    /// The cell image's path relative to the run folder.
    pub fn image_name(&self) -> String {
        format!("cells/{}.png", self.key)
    }
}

/// The model the cells are rendered with.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// Content hash (SHA-256 of the file; of all weight files for a diffusers folder).
    pub sha256: String,
    /// A1111's 10-hex-digit `Model hash`.
    pub short_hash: String,
    /// A1111's `Model` name (file stem).
    pub name: String,
}

/// What the plan is built from.
pub struct PlanInput<'a> {
    pub base: Settings,
    pub x: Axis,
    pub y: Option<Axis>,
    pub z: Option<Axis>,
    /// The seeds of each cell (`--seeds`); one entry = the same seed everywhere.
    pub seeds: Vec<u64>,
    /// The tag epoch and weight axes rewrite; appended to prompts without it.
    pub lora_target: Option<LoraTarget>,
    pub library: Option<&'a LoraLibrary>,
    pub model: ModelInfo,
    /// Whether cells with LoRAs get a control (the same settings without LoRAs).
    pub control: bool,
}

/// Every cell of the plot, in A1111's order.
#[derive(Clone, Debug)]
pub struct GridPlan {
    pub base: Settings,
    pub x: Axis,
    pub y: Option<Axis>,
    pub z: Option<Axis>,
    pub seeds: Vec<u64>,
    pub model: ModelInfo,
    pub cells: Vec<CellRequest>,
    /// One image per distinct control key, in order of the first cell naming it; x and y indices are 0, z and
    /// seed indices those of that first cell.
    pub controls: Vec<CellRequest>,
}

impl GridPlan {
    /// Builds every cell; fails before anything is rendered on a bad axis combination, a missing Prompt S/R term
    /// or invalid settings. `hash_file` gives the SHA-256 of a LoRA file (called once per file).
    pub fn build(
        input: PlanInput<'_>,
        hash_file: &mut dyn FnMut(&Path) -> Result<String, GridError>,
    ) -> Result<GridPlan, GridError> {
        check_axes(&input)?;
        let dims = [input.x.len(), axis_len(&input.y), axis_len(&input.z)];
        let mut hashes: BTreeMap<PathBuf, (String, String)> = BTreeMap::new();
        let mut cells = Vec::new();
        for z_index in 0..dims[2] {
            for y_index in 0..dims[1] {
                for x_index in 0..dims[0] {
                    for (seed_index, seed) in input.seeds.iter().enumerate() {
                        let position = [x_index, y_index, z_index];
                        let settings = cell_settings(&input, position, *seed)?;
                        let loras =
                            cell_loras(&settings.prompt, input.library, &mut hashes, hash_file)?;
                        let key = cell_key(&input.model, &settings, &loras);
                        cells.push(CellRequest {
                            x_index,
                            y_index,
                            z_index,
                            seed_index,
                            settings,
                            loras,
                            key,
                            control: None,
                        });
                    }
                }
            }
        }
        let controls = match input.control {
            true => attach_controls(&input.model, &mut cells),
            false => Vec::new(),
        };
        Ok(GridPlan {
            base: input.base,
            x: input.x,
            y: input.y,
            z: input.z,
            seeds: input.seeds,
            model: input.model,
            cells,
            controls,
        })
    }

    /// (columns, rows, grids per seed) = (X, Y, Z) lengths.
    pub fn dims(&self) -> (usize, usize, usize) {
        (self.x.len(), axis_len(&self.y), axis_len(&self.z))
    }

    /// Total sampling steps of all cells and controls (for time estimates).
    pub fn total_steps(&self) -> usize {
        self.images().map(|(_, c)| c.settings.steps).sum()
    }

    /// Every image of the plan with its plan position: the cells, then the controls.
    pub fn images(&self) -> impl Iterator<Item = (usize, &CellRequest)> {
        self.cells.iter().chain(&self.controls).enumerate()
    }

    /// Whether `cell` is a control and not also a cell of the grid (a control whose key a cell has is that cell).
    pub fn is_control(&self, cell: &CellRequest) -> bool {
        self.controls.iter().any(|c| c.key == cell.key)
            && !self.cells.iter().any(|c| c.key == cell.key)
    }

    /// The cell at a position.
    pub fn cell(&self, x: usize, y: usize, z: usize, seed: usize) -> Option<&CellRequest> {
        let (nx, ny, _) = self.dims();
        let index = ((z * ny + y) * nx + x) * self.seeds.len() + seed;
        self.cells.get(index)
    }

    /// The axes in X, Y, Z order with their letter.
    pub fn axes(&self) -> Vec<(&'static str, &Axis)> {
        let mut axes = vec![("X", &self.x)];
        axes.extend(self.y.iter().map(|a| ("Y", a)));
        axes.extend(self.z.iter().map(|a| ("Z", a)));
        axes
    }
}

/// The controls of `cells` (deduplicated by key, in order of first use), naming each in its cells' `control`.
fn attach_controls(model: &ModelInfo, cells: &mut [CellRequest]) -> Vec<CellRequest> {
    let mut controls: Vec<CellRequest> = Vec::new();
    for cell in cells.iter_mut().filter(|c| !c.loras.is_empty()) {
        let settings = Settings {
            prompt: control_prompt(&cell.settings.prompt),
            ..cell.settings.clone()
        };
        let key = cell_key(model, &settings, &[]);
        if !controls.iter().any(|c| c.key == key) {
            controls.push(CellRequest {
                x_index: 0,
                y_index: 0,
                z_index: cell.z_index,
                seed_index: cell.seed_index,
                settings,
                loras: Vec::new(),
                key: key.clone(),
                control: None,
            });
        }
        cell.control = Some(key);
    }
    controls
}

/// The prompt of a cell's control: every LoRA tag (`<lora:…>`, `<lyco:…>`) replaced by nothing, the rest of the
/// text as written, so the base model reads the same text the cell's model reads.
pub fn control_prompt(prompt: &str) -> String {
    remove_extra_networks(prompt, |tag| is_lora_kind(&tag.kind))
}

fn axis_len(axis: &Option<Axis>) -> usize {
    axis.as_ref().map_or(1, Axis::len)
}

fn check_axes(input: &PlanInput<'_>) -> Result<(), GridError> {
    let axes: Vec<&Axis> = std::iter::once(&input.x)
        .chain(&input.y)
        .chain(&input.z)
        .collect();
    for (i, a) in axes.iter().enumerate() {
        let repeated = axes[..i]
            .iter()
            .any(|b| b.kind == a.kind && a.kind != AxisKind::PromptSr);
        if repeated {
            return Err(GridError::DuplicateAxis {
                axis: a.kind.a1111_label().to_string(),
            });
        }
    }
    if input.seeds.is_empty() {
        return Err(GridError::InvalidSetting("no seeds to render".into()));
    }
    if input.seeds.len() > 1 && axes.iter().any(|a| a.kind == AxisKind::Seed) {
        return Err(GridError::InvalidSetting(
            "--seeds renders several seeds per cell and cannot be combined with a seed axis".into(),
        ));
    }
    Ok(())
}

/// The settings of the cell at `position`: base settings, the seed, then the prompt axis, then X, Y, Z.
fn cell_settings(
    input: &PlanInput<'_>,
    position: [usize; 3],
    seed: u64,
) -> Result<Settings, GridError> {
    let mut settings = input.base.clone();
    settings.seed = seed;
    let axes: Vec<(&Axis, usize)> = [Some(&input.x), input.y.as_ref(), input.z.as_ref()]
        .into_iter()
        .zip(position)
        .filter_map(|(axis, index)| axis.map(|a| (a, index)))
        .collect();
    let target = input.lora_target.as_ref();
    for (axis, index) in axes.iter().filter(|(a, _)| a.kind == AxisKind::Prompt) {
        apply(&axis.values[*index], axis, &mut settings, target)?;
    }
    if let Some(target) = target {
        if !has_target_tag(&settings.prompt, target) {
            settings.prompt = set_lora_tag(&settings.prompt, target, None, None);
        }
    }
    for (axis, index) in axes.iter().filter(|(a, _)| a.kind != AxisKind::Prompt) {
        apply(&axis.values[*index], axis, &mut settings, target)?;
    }
    settings.to_txt2img().validate().map_err(|e| {
        GridError::InvalidSetting(format!(
            "{e} (cell x={}, y={}, z={})",
            position[0], position[1], position[2]
        ))
    })?;
    Ok(settings)
}

fn has_target_tag(prompt: &str, target: &LoraTarget) -> bool {
    super::lora_tag::lora_tag_names(prompt)
        .iter()
        .any(|name| target.names.contains(name))
}

/// The `<lora:…>` tags of a prompt, resolved in the LoRA folder and hashed.
fn cell_loras(
    prompt: &str,
    library: Option<&LoraLibrary>,
    hashes: &mut BTreeMap<PathBuf, (String, String)>,
    hash_file: &mut dyn FnMut(&Path) -> Result<String, GridError>,
) -> Result<Vec<CellLora>, GridError> {
    let (_, tags) = extract_extra_networks(prompt);
    let mut loras = Vec::new();
    for tag in tags.iter().filter(|t| is_lora_kind(&t.kind)) {
        let (te, unet) =
            lora_multipliers(tag).map_err(|e| GridError::InvalidSetting(e.to_string()))?;
        let file = library.and_then(|l| l.resolve(&tag.name));
        let file_hashes = match file {
            Some(f) => Some(match hashes.get(&f.path) {
                Some(known) => known.clone(),
                None => {
                    let known = (hash_file(&f.path)?, lora_short_hash(&f.path)?);
                    hashes.insert(f.path.clone(), known.clone());
                    known
                }
            }),
            None => None,
        };
        let (sha256, short_hash) = file_hashes.unzip();
        loras.push(CellLora {
            name: tag.name.clone(),
            path: file.map(|f| f.path.clone()),
            te_weight: f64::from(te),
            unet_weight: f64::from(unet),
            epoch: file.and_then(|f| f.epoch),
            sha256,
            short_hash,
        });
    }
    Ok(loras)
}

/// A1111's short LoRA hash of a file, as `generate` writes it (see `lora::hash`).
fn lora_short_hash(path: &Path) -> Result<String, GridError> {
    let metadata = super::epochs::read_metadata(path).map_err(|reason| GridError::LoraFolder {
        path: path.to_path_buf(),
        reason,
    })?;
    let full = match metadata.get("sshs_model_hash") {
        Some(hash) => hash.clone(),
        None => crate::lora::hash::addnet_hash(path).map_err(|e| GridError::LoraFolder {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?,
    };
    Ok(full.chars().take(12).collect())
}

/// SHA-256 (first 20 hex digits) of a canonical JSON of everything that determines the cell's pixels.
pub fn cell_key(model: &ModelInfo, settings: &Settings, loras: &[CellLora]) -> String {
    let loras: Vec<serde_json::Value> = loras
        .iter()
        .map(|l| serde_json::json!({"name": l.name, "sha256": l.sha256}))
        .collect();
    let canonical = serde_json::json!({
        "version": CELL_KEY_VERSION,
        "model": model.sha256,
        "prompt": settings.prompt,
        "negative": settings.negative,
        "seed": settings.seed,
        "steps": settings.steps,
        "cfg": format!("{:?}", settings.cfg),
        "sampler": settings.sampler.name(),
        "width": settings.width,
        "height": settings.height,
        "clip_skip": settings.clip_skip,
        "rng": settings.rng.name(),
        "ensd": settings.ensd,
        "loras": loras,
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().take(10).map(|b| format!("{b:02x}")).collect()
}

/// `--shard i/n`: the i-th (1-based) of n deterministic shares (images whose plan position ≡ i-1 mod n; see
/// [`GridPlan::images`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn parse(text: &str) -> Result<Shard, GridError> {
        let bad = |reason: &str| GridError::BadShard {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| bad("write i/n, e.g. 1/4"))?;
        let index: usize = index.trim().parse().map_err(|_| bad("i is not a number"))?;
        let count: usize = count.trim().parse().map_err(|_| bad("n is not a number"))?;
        if count == 0 || index == 0 || index > count {
            return Err(bad("need 1 <= i <= n"));
        }
        Ok(Shard { index, count })
    }

    /// Whether the cell at plan position `position` belongs to this shard.
    pub fn contains(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::axes::AxisSpec;

    pub(crate) fn base() -> Settings {
        Settings {
            prompt: "photo of sks woman".into(),
            negative: "blurry".into(),
            seed: 42,
            steps: 4,
            cfg: 7.0,
            sampler: SamplerName::Euler,
            width: 64,
            height: 64,
            clip_skip: 1,
            rng: RngSource::Gpu,
            ensd: 0,
        }
    }

    fn model() -> ModelInfo {
        ModelInfo {
            path: "m.safetensors".into(),
            sha256: "ab".repeat(32),
            short_hash: "abababab".into(),
            name: "m".into(),
        }
    }

    fn axis(text: &str) -> Axis {
        Axis::resolve(&AxisSpec::parse(text).unwrap(), None).unwrap()
    }

    fn plan(x: &str, y: Option<&str>, seeds: Vec<u64>) -> Result<GridPlan, GridError> {
        let input = PlanInput {
            base: base(),
            x: axis(x),
            y: y.map(axis),
            z: None,
            seeds,
            lora_target: None,
            library: None,
            model: model(),
            control: true,
        };
        GridPlan::build(input, &mut |_| Ok("00".into()))
    }

    #[test]
    fn cells_follow_a1111_order_and_apply_every_axis() {
        let plan = plan("steps:2,3", Some("cfg:5,7"), vec![42]).unwrap();
        let order: Vec<(usize, usize)> =
            plan.cells.iter().map(|c| (c.x_index, c.y_index)).collect();
        assert_eq!(order, vec![(0, 0), (1, 0), (0, 1), (1, 1)]);
        let last = &plan.cells[3].settings;
        assert_eq!((last.steps, last.cfg, last.seed), (3, 7.0, 42));
        assert_eq!(plan.cell(1, 1, 0, 0), Some(&plan.cells[3]));
        assert_eq!(plan.total_steps(), 2 + 3 + 2 + 3);
    }

    #[test]
    fn keys_are_stable_and_depend_on_every_setting() {
        let a = plan("steps:2,3", None, vec![1, 2]).unwrap();
        let b = plan("steps:2,3", None, vec![1, 2]).unwrap();
        let keys: Vec<&str> = a.cells.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            b.cells.iter().map(|c| c.key.as_str()).collect::<Vec<_>>()
        );
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 4);
        // Extending an axis keeps the keys of existing cells.
        let extended = plan("steps:2,3,4", None, vec![1, 2]).unwrap();
        assert!(keys
            .iter()
            .all(|k| extended.cells.iter().any(|c| c.key == *k)));
        let mut other_model = model();
        other_model.sha256 = "cd".repeat(32);
        let cell = &a.cells[0];
        assert_ne!(
            cell_key(&other_model, &cell.settings, &cell.loras),
            cell.key
        );
        // The RNG source and the eta noise seed delta are part of the key.
        let keys_of = |change: &dyn Fn(&mut Settings)| {
            let mut settings = cell.settings.clone();
            change(&mut settings);
            cell_key(&model(), &settings, &cell.loras)
        };
        let cpu = keys_of(&|s| s.rng = RngSource::Cpu);
        let nv = keys_of(&|s| s.rng = RngSource::Nv);
        let ensd = keys_of(&|s| s.ensd = 31337);
        assert_eq!(keys_of(&|_| {}), cell.key);
        let mut all = vec![cell.key.clone(), cpu, nv, ensd];
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn an_rng_axis_gives_each_cell_its_source() {
        let plan = plan("rng:gpu,cpu,nv", None, vec![3]).unwrap();
        let sources: Vec<RngSource> = plan.cells.iter().map(|c| c.settings.rng).collect();
        assert_eq!(sources, vec![RngSource::Gpu, RngSource::Cpu, RngSource::Nv]);
        assert_eq!(plan.cells[1].settings.to_txt2img().rng, RngSource::Cpu);
    }

    #[test]
    fn cells_with_a_lora_share_one_control_per_seed_and_settings() {
        let input = |control: bool| PlanInput {
            base: base(),
            x: axis("0.4,1.0"),
            y: Some(axis("steps:2,3")),
            z: None,
            seeds: vec![1, 2],
            lora_target: Some(LoraTarget::single("face")),
            library: None,
            model: model(),
            control,
        };
        let plan = GridPlan::build(input(true), &mut |_| Ok("00".into())).unwrap();
        assert_eq!(plan.cells.len(), 8);
        // One control per (steps, seed): the two weights share it.
        assert_eq!(plan.controls.len(), 4);
        for cell in &plan.cells {
            let control = plan
                .controls
                .iter()
                .find(|c| Some(&c.key) == cell.control.as_ref())
                .expect("every LoRA cell names a planned control");
            assert_eq!(control.settings.prompt, "photo of sks woman ");
            assert_eq!(
                (control.settings.seed, control.settings.steps),
                (cell.settings.seed, cell.settings.steps)
            );
            assert_eq!(
                (control.x_index, control.y_index, control.seed_index),
                (0, 0, cell.seed_index)
            );
            assert!(control.loras.is_empty() && control.control.is_none());
            assert_eq!(control.key, cell_key(&model(), &control.settings, &[]));
            assert!(plan.is_control(control) && !plan.is_control(cell));
        }
        assert_eq!(plan.images().count(), 12);
        let off = GridPlan::build(input(false), &mut |_| Ok("00".into())).unwrap();
        assert!(off.controls.is_empty());
        assert!(off.cells.iter().all(|c| c.control.is_none()));
        let keys = |p: &GridPlan| p.cells.iter().map(|c| c.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&off), keys(&plan));
    }

    #[test]
    fn plans_without_loras_have_no_controls() {
        let plan = plan("steps:2,3", None, vec![1]).unwrap();
        assert!(plan.controls.is_empty());
        assert!(plan.cells.iter().all(|c| c.control.is_none()));
    }

    #[test]
    fn control_prompts_drop_only_lora_tags() {
        assert_eq!(
            control_prompt("<lora:a:1> photo, <lyco:b:0.5>, smiling <hypernet:h>"),
            " photo, , smiling <hypernet:h>"
        );
        assert_eq!(control_prompt("photo"), "photo");
    }

    #[test]
    fn invalid_combinations_fail_before_rendering() {
        assert!(matches!(
            plan("steps:2", Some("steps:3"), vec![1]),
            Err(GridError::DuplicateAxis { .. })
        ));
        assert!(plan("seed:1,2", None, vec![1, 2]).is_err());
        let err = plan("width:60", None, vec![1]).unwrap_err().to_string();
        assert!(err.contains("multiple of 8"), "{err}");
        let sr = plan("prompt-sr:cat,dog", None, vec![1]).unwrap_err();
        assert!(matches!(sr, GridError::SearchTermMissing { .. }));
    }

    #[test]
    fn shards_partition_the_cells() {
        let shards: Vec<Shard> = (1..=3)
            .map(|i| Shard::parse(&format!("{i}/3")).unwrap())
            .collect();
        for position in 0..10 {
            assert_eq!(shards.iter().filter(|s| s.contains(position)).count(), 1);
        }
        assert!(Shard::parse("0/2").is_err());
        assert!(Shard::parse("3/2").is_err());
        assert!(Shard::parse("1-2").is_err());
    }
}
