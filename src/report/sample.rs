//! A synthetic scored run (cell images with infotext, reference photos, manifest, scores, recommendation, LoRA
//! metadata) for the report's tests and for previewing the page without rendering or scoring anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

use super::ReportInput;
use crate::grid::manifest::*;
use crate::recommend::{recommend, Recommendation, Thresholds};
use crate::score::pixels::PixelStats;
use crate::score::table::*;

/// The shape of a sample run.
#[derive(Clone, Debug)]
pub struct SampleSpec {
    /// LoRA files (epochs 2, 4, 6, …) along X.
    pub epochs: usize,
    /// Weights 0.4, 0.6, … along Y.
    pub weights: usize,
    /// Images per cell.
    pub seeds: usize,
    /// Side of the cell images in pixels.
    pub side: u32,
    /// The prompt before the LoRA tag.
    pub prompt: String,
    /// The LoRA name (file names are `<lora>-0000NN.safetensors`).
    pub lora: String,
}

impl Default for SampleSpec {
    fn default() -> Self {
        SampleSpec {
            epochs: 4,
            weights: 4,
            seeds: 4,
            side: 512,
            prompt: "photo of sks person, portrait, soft light".to_string(),
            lora: "sks".to_string(),
        }
    }
}

/// A sample run on disk and its decision files in memory.
pub struct SampleRun {
    pub run: PathBuf,
    /// The training photos' folder.
    pub train: PathBuf,
    pub manifest: Manifest,
    pub scores: ScoreTable,
    pub recommendation: Recommendation,
    pub lora_metadata: BTreeMap<String, BTreeMap<String, String>>,
    pub command: String,
}

impl SampleRun {
    /// The report input of the run, scored and decided or not.
    pub fn input(&self, scored: bool) -> ReportInput<'_> {
        ReportInput {
            run: &self.run,
            manifest: &self.manifest,
            scores: scored.then_some(&self.scores),
            recommendation: scored.then_some(&self.recommendation),
            lora_metadata: &self.lora_metadata,
            command: Some(&self.command),
        }
    }
}

const HEALTHY: PixelStats = PixelStats {
    clipped: 0.02,
    saturation: 0.32,
    high_freq: 7.5,
};
const PHOTOS: usize = 6;

/// Writes a sample run under `root` (`root/run`, `root/train/10_<lora>`) and returns it. The last training photo
/// is listed but not written (a missing file).
pub fn sample_run(root: &Path, spec: &SampleSpec) -> std::io::Result<SampleRun> {
    let run = root.join("run");
    let train = root.join("train").join(format!("10_{}", spec.lora));
    std::fs::create_dir_all(run.join("cells"))?;
    std::fs::create_dir_all(&train)?;
    let photos = write_photos(&train)?;
    let manifest = manifest(spec);
    for cell in &manifest.cells {
        write_cell(
            &run,
            spec,
            &cell.image,
            &cell.params,
            (cell.x_index, cell.y_index),
        )?;
    }
    for control in &manifest.controls {
        write_cell(&run, spec, &control.image, &control.params, (usize::MAX, 0))?;
    }
    let scores = scores(spec, &manifest, &photos);
    let recommendation = recommend(&scores, &Thresholds::default());
    Ok(SampleRun {
        run,
        train,
        lora_metadata: metadata(spec),
        command: format!(
            "loraeval grid --model models/sd15.safetensors --lora-dir loras --x 'epochs:{}' --y 'weight:0.4,0.6,0.8,1.0' --seeds 4 --out run",
            spec.lora
        ),
        manifest,
        scores,
        recommendation,
    })
}

fn epoch(x: usize) -> u32 {
    2 * (x as u32 + 1)
}

fn weight(y: usize) -> f64 {
    (4 + 2 * y) as f64 / 10.0
}

fn lora_file(spec: &SampleSpec, x: usize) -> String {
    format!("{}-{:06}.safetensors", spec.lora, epoch(x))
}

/// Likeness rises with epoch and weight; the last epoch overshoots at high weight.
fn likeness(x: usize, y: usize) -> f32 {
    let overshoot = if x >= 3 && y >= 3 { 0.12 } else { 0.0 };
    0.12 + 0.19 * x as f32 + 0.1 * y as f32 - overshoot
}

/// The last epoch at weight 0.8 and above is fried (clipped, saturated, noisy).
fn fried(x: usize, y: usize) -> bool {
    x >= 3 && y >= 2
}

fn manifest(spec: &SampleSpec) -> Manifest {
    let mut cells = Vec::new();
    for y in 0..spec.weights {
        for x in 0..spec.epochs {
            for s in 0..spec.seeds {
                cells.push(cell_entry(spec, x, y, s));
            }
        }
    }
    let controls: Vec<ControlEntry> = (0..spec.seeds).map(|s| control_entry(spec, s)).collect();
    let n = cells.len();
    Manifest {
        version: MANIFEST_VERSION,
        model: ModelEntry {
            file: "models/sd15.safetensors".to_string(),
            sha256: "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa".to_string(),
            hash: "6ce0161689".to_string(),
            name: "v1-5-pruned-emaonly".to_string(),
        },
        axes: axes(spec),
        seeds: (0..spec.seeds as u64).map(|s| 1000 + s).collect(),
        base: params(spec, None, 0),
        grids: vec![GridEntry {
            file: "grid-0-0.png".to_string(),
            z_index: 0,
            seed_index: 0,
            missing: 0,
        }],
        cells,
        controls,
        summary: SummaryEntry {
            cells: n,
            ok: n,
            failed: 0,
            missing: 0,
        },
        source: None,
    }
}

fn axes(spec: &SampleSpec) -> AxesEntry {
    let stems: Vec<String> = (0..spec.epochs)
        .map(|x| format!("{}-{:06}", spec.lora, epoch(x)))
        .collect();
    AxesEntry {
        x: AxisEntry {
            kind: "epochs".to_string(),
            label: "Epoch".to_string(),
            raw: spec.lora.clone(),
            values: (0..spec.epochs).map(|x| epoch(x).into()).collect(),
            labels: stems,
            files: Some((0..spec.epochs).map(|x| lora_file(spec, x)).collect()),
        },
        y: Some(AxisEntry {
            kind: "weight".to_string(),
            label: "LoRA weight".to_string(),
            raw: "0.4,0.6,0.8,1.0".to_string(),
            values: (0..spec.weights).map(|y| weight(y).into()).collect(),
            labels: (0..spec.weights)
                .map(|y| format!("LoRA weight: {}", weight(y)))
                .collect(),
            files: None,
        }),
        z: None,
    }
}

fn params(spec: &SampleSpec, lora: Option<(usize, usize)>, seed: usize) -> ParamsEntry {
    let (prompt, loras) = match lora {
        Some((x, y)) => (
            format!(
                "{} <lora:{}-{:06}:{}>",
                spec.prompt,
                spec.lora,
                epoch(x),
                weight(y)
            ),
            vec![LoraEntry {
                name: format!("{}-{:06}", spec.lora, epoch(x)),
                file: Some(lora_file(spec, x)),
                weight: weight(y),
                unet_weight: weight(y),
                epoch: Some(epoch(x)),
                sha256: None,
            }],
        ),
        None => (spec.prompt.clone(), Vec::new()),
    };
    ParamsEntry {
        prompt,
        negative: "blurry, lowres".to_string(),
        seed: 1000 + seed as u64,
        steps: 20,
        cfg: 7.0,
        sampler: "DPM++ 2M Karras".to_string(),
        width: spec.side as usize,
        height: spec.side as usize,
        clip_skip: 1,
        loras,
    }
}

fn cell_entry(spec: &SampleSpec, x: usize, y: usize, s: usize) -> CellEntry {
    let key = format!("e{x}w{y}s{s}");
    CellEntry {
        x_index: x,
        y_index: y,
        z_index: 0,
        seed_index: s,
        image: format!("cells/{key}.png"),
        key,
        status: "ok".to_string(),
        reason: None,
        params: params(spec, Some((x, y)), s),
        control: Some(format!("control{s}")),
        original: None,
    }
}

fn control_entry(spec: &SampleSpec, s: usize) -> ControlEntry {
    ControlEntry {
        key: format!("control{s}"),
        image: format!("cells/control{s}.png"),
        status: "ok".to_string(),
        reason: None,
        z_index: 0,
        seed_index: s,
        params: params(spec, None, s),
        original: None,
    }
}

fn infotext(p: &ParamsEntry) -> String {
    format!(
        "{}\nNegative prompt: {}\nSteps: {}, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: {}, Size: {}x{}, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, RNG: CPU, Version: loraeval",
        p.prompt, p.negative, p.steps, p.seed, p.width, p.height
    )
}

fn write_cell(
    run: &Path,
    spec: &SampleSpec,
    image: &str,
    params: &ParamsEntry,
    (x, y): (usize, usize),
) -> std::io::Result<()> {
    let look = match x {
        usize::MAX => Look {
            warmth: 0.0,
            boost: 0.0,
            seed: params.seed,
        },
        _ => Look {
            warmth: likeness(x, y),
            boost: if fried(x, y) { 1.0 } else { 0.0 },
            seed: params.seed,
        },
    };
    let pixels = portrait(spec.side, spec.side, &look);
    let bytes = crate::sampling::png_info::encode_png(&pixels, &infotext(params))
        .map_err(std::io::Error::other)?;
    std::fs::write(run.join(image), bytes)
}

/// How a synthetic portrait looks: `warmth` moves the face towards the training photos' colours, `boost`
/// oversaturates it, `seed` moves the background and the head.
struct Look {
    warmth: f32,
    boost: f32,
    seed: u64,
}

/// A synthetic portrait: a background gradient, a head and shoulders, hair, eyes, and grain.
fn portrait(width: u32, height: u32, look: &Look) -> RgbImage {
    let hue = (look.seed % 7) as f32 / 7.0;
    let shift = ((look.seed % 5) as f32 - 2.0) * 0.03;
    let skin = mix(
        [150.0, 150.0, 160.0],
        [225.0, 180.0, 150.0],
        look.warmth.clamp(0.0, 1.0),
    );
    RgbImage::from_fn(width, height, |px, py| {
        let (u, v) = (px as f32 / width as f32, py as f32 / height as f32);
        let head = ((u - 0.5 - shift) / 0.2).powi(2) + ((v - 0.45) / 0.27).powi(2);
        let hair = ((u - 0.5 - shift) / 0.24).powi(2) + ((v - 0.38) / 0.3).powi(2);
        let eye = |cx: f32| ((u - cx - shift) / 0.03).powi(2) + ((v - 0.42) / 0.018).powi(2) < 1.0;
        let colour = if eye(0.42) || eye(0.58) {
            [40.0, 35.0, 30.0]
        } else if head < 1.0 {
            skin
        } else if hair < 1.0 || (v > 0.78 && (u - 0.5 - shift).abs() < 0.32) {
            [70.0 + 60.0 * hue, 50.0, 40.0]
        } else {
            mix(
                [90.0 + 120.0 * hue, 130.0, 200.0 - 90.0 * hue],
                [235.0, 235.0, 240.0],
                v,
            )
        };
        let grain = ((px.wrapping_mul(7919) ^ py.wrapping_mul(104_729)) % 17) as f32 - 8.0;
        Rgb(colour
            .map(|c| saturate(c, look.boost) + grain)
            .map(|c| c.clamp(0.0, 255.0) as u8))
    })
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [0, 1, 2].map(|i| a[i] + (b[i] - a[i]) * t)
}

fn saturate(channel: f32, boost: f32) -> f32 {
    128.0 + (channel - 128.0) * (1.0 + boost)
}

/// Writes the training photos but the last, and returns all their paths.
fn write_photos(train: &Path) -> std::io::Result<Vec<String>> {
    let mut paths = Vec::new();
    for i in 0..PHOTOS {
        let path = train.join(format!("{:03}.jpg", i + 1));
        if i + 1 < PHOTOS {
            let look = Look {
                warmth: 1.0,
                boost: 0.0,
                seed: 40 + i as u64,
            };
            portrait(320, 400, &look)
                .save(&path)
                .map_err(std::io::Error::other)?;
        }
        paths.push(path.display().to_string());
    }
    Ok(paths)
}

fn scores(spec: &SampleSpec, manifest: &Manifest, photos: &[String]) -> ScoreTable {
    let cells = (0..spec.weights)
        .flat_map(|y| (0..spec.epochs).map(move |x| (x, y)))
        .map(|(x, y)| cell_score(spec, manifest, photos, (x, y)))
        .collect();
    ScoreTable {
        version: SCORES_VERSION,
        reference: reference(photos),
        baselines: baselines(),
        control: Some(control_score(manifest)),
        cells,
        x_axis: "Epoch".to_string(),
        y_axis: Some("LoRA weight".to_string()),
        trigger: None,
    }
}

fn reference(photos: &[String]) -> ReferenceReport {
    let entries = photos
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let flags = match i {
                4 => vec!["outlier: far from the other photos (0.58)".to_string()],
                5 => vec!["unreadable".to_string()],
                _ => Vec::new(),
            };
            ReferencePhotoEntry {
                path: path.clone(),
                n_faces: usize::from(i != 5),
                used: i < 4,
                distance_to_others: (i != 5)
                    .then_some(0.3 + 0.02 * i as f32 + 0.2 * f32::from(i == 4)),
                nearest_other: photos.get((i + 1) % 4).cloned(),
                nearest_other_distance: Some(0.31),
                flags,
            }
        })
        .collect();
    ReferenceReport {
        inputs: photos
            .first()
            .map(|p| p.rsplit_once('/').map_or(p.clone(), |(d, _)| d.to_string()))
            .into_iter()
            .collect(),
        photos: entries,
        used: 4,
    }
}

fn baselines() -> Baselines {
    Baselines {
        threshold: 0.6,
        reference_distance: 0.34,
        stranger_distance: 0.74,
        stranger_source: "control".to_string(),
        copy_distance: 0.12,
        copy_correlation: 0.92,
        health: HEALTHY,
        health_source: "control".to_string(),
        diversity: Some(0.42),
        pose_spread: Some(0.1),
        flexibility_source: "control".to_string(),
    }
}

fn cell_score(
    spec: &SampleSpec,
    manifest: &Manifest,
    photos: &[String],
    (x, y): (usize, usize),
) -> CellScore {
    let like = likeness(x, y);
    let health = if fried(x, y) {
        PixelStats {
            clipped: 0.19,
            saturation: 0.55,
            high_freq: 17.0,
        }
    } else {
        HEALTHY
    };
    let images: Vec<ImageScoreEntry> = manifest
        .cells
        .iter()
        .filter(|c| c.x_index == x && c.y_index == y)
        .map(|c| image_score(c, like, photos, x >= 3 && y >= 3))
        .collect();
    let hits = images.iter().filter(|i| i.hit).count();
    let copies = images.iter().filter(|i| i.copy.is_some()).count();
    let n = images.len().max(1) as f32;
    CellScore {
        label: format!("{}-{:06} @ {}", spec.lora, epoch(x), weight(y)),
        file: Some(lora_file(spec, x)),
        epoch: Some(epoch(x)),
        weight: Some(weight(y)),
        x_index: x,
        y_index: y,
        planned: images.len(),
        missing: 0,
        failed: 0,
        faces: images.len(),
        distance: Some(0.74 - 0.4 * like),
        likeness: Some(like),
        hit_rate: hits as f32 / n,
        copy_rate: copies as f32 / n,
        flexibility: Some(1.1 - 0.2 * x as f32),
        diversity: Some(0.4),
        pose_spread: Some(0.1),
        health,
        side_effect: None,
        leak_rate: None,
        images,
    }
}

fn image_score(cell: &CellEntry, like: f32, photos: &[String], copy: bool) -> ImageScoreEntry {
    let s = cell.seed_index;
    let like = like + 0.04 * s as f32 - 0.06;
    let distance = 0.74 - 0.4 * like;
    let nearest = photos[s % 4].clone();
    ImageScoreEntry {
        image: cell.image.clone(),
        seed: cell.params.seed,
        z_index: 0,
        prompt: cell.params.prompt.clone(),
        asks_for_person: true,
        control_change: None,
        n_faces: 1,
        distance: Some(distance),
        likeness: Some(like),
        hit: distance < 0.6,
        nearest_reference: Some(nearest.clone()),
        nearest_distance: Some(distance - 0.05),
        copy: copy.then(|| CopyEntry {
            reference: nearest,
            kind: "identity".to_string(),
            value: 0.08,
        }),
        stats: HEALTHY,
        error: None,
    }
}

fn control_score(manifest: &Manifest) -> CellScore {
    let images: Vec<ImageScoreEntry> = manifest
        .controls
        .iter()
        .map(|c| ImageScoreEntry {
            image: c.image.clone(),
            seed: c.params.seed,
            z_index: 0,
            prompt: c.params.prompt.clone(),
            asks_for_person: true,
            control_change: None,
            n_faces: 1,
            distance: Some(0.74),
            likeness: Some(0.0),
            hit: false,
            nearest_reference: None,
            nearest_distance: None,
            copy: None,
            stats: HEALTHY,
            error: None,
        })
        .collect();
    CellScore {
        label: "None".to_string(),
        file: None,
        epoch: None,
        weight: None,
        x_index: 0,
        y_index: 0,
        planned: images.len(),
        missing: 0,
        failed: 0,
        faces: images.len(),
        distance: Some(0.74),
        likeness: Some(0.0),
        hit_rate: 0.0,
        copy_rate: 0.0,
        flexibility: Some(1.0),
        diversity: Some(0.42),
        pose_spread: Some(0.1),
        health: HEALTHY,
        side_effect: None,
        leak_rate: None,
        images,
    }
}

fn metadata(spec: &SampleSpec) -> BTreeMap<String, BTreeMap<String, String>> {
    (0..spec.epochs)
        .map(|x| {
            let pairs = [
                ("ss_epoch", epoch(x).to_string()),
                ("ss_steps", (epoch(x) * 250).to_string()),
                ("ss_max_train_steps", (2 * spec.epochs as u32 * 250).to_string()),
                ("ss_learning_rate", "0.0001".to_string()),
                ("ss_unet_lr", "0.0001".to_string()),
                ("ss_text_encoder_lr", "5e-05".to_string()),
                ("ss_network_dim", "32".to_string()),
                ("ss_network_alpha", "16".to_string()),
                ("ss_network_module", "networks.lora".to_string()),
                ("ss_resolution", "(512, 512)".to_string()),
                ("ss_num_train_images", "250".to_string()),
                ("ss_optimizer", "torch.optim.adamw.AdamW".to_string()),
                ("ss_dataset_dirs", format!("{{\"10_{}\": {{\"n_repeats\": 10, \"img_count\": 25}}}}", spec.lora)),
                ("ss_tag_frequency", format!("{{\"10_{}\": {{\"sks person\": 25, \"portrait\": 19, \"smiling\": 9, \"outdoors\": 7, \"glasses\": 3}}}}", spec.lora)),
            ];
            let map = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            (lora_file(spec, x), map)
        })
        .collect()
}
