//! The decision half shared by `grid --reference`, `score RUN`, `pick` and `report`: score a run folder (cached),
//! recommend, and write `scores.json`, `recommendation.json` and `report.html`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::faces::{batch_bar, load_models, FaceOptionArgs};
use crate::grid::manifest::Manifest;
use crate::recommend::{recommend, Recommendation, Thresholds};
use crate::report::{write_report, ReportInput};
use crate::score::metrics::ScoreSettings;
use crate::score::run::{read_run_manifest, read_scores, ScoreJob};
use crate::score::table::ScoreTable;
use crate::score::{write_file_atomic, ScoreError};

/// Thresholds of the scores and the recommendation (docs/scoring.md).
#[derive(Debug, Args, Clone)]
pub struct DecisionArgs {
    /// Least share of a cell's images showing the person (dlib distance under 0.6; no face = miss).
    #[arg(long, default_value_t = 0.5)]
    min_hit_rate: f32,
    /// Largest share of a cell's images that are near-copies of a training photo.
    #[arg(long, default_value_t = 0.25)]
    max_copy_rate: f32,
    /// Least flexibility: variety across seeds and prompts relative to the base model (1 = as varied).
    #[arg(long, default_value_t = 0.5)]
    min_flexibility: f32,
    /// Largest increase of the share of clipped pixels over the base model's (0.10 = 10 points).
    #[arg(long, default_value_t = 0.10)]
    max_clipped_increase: f32,
    /// Largest mean saturation relative to the base model's.
    #[arg(long, default_value_t = 1.5)]
    max_saturation_ratio: f32,
    /// Largest high-frequency energy relative to the base model's.
    #[arg(long, default_value_t = 2.0)]
    max_noise_ratio: f32,
    /// Epochs whose best likeness is under this are called under-trained.
    #[arg(long, default_value_t = 0.5)]
    under_trained_likeness: f32,
    /// A face is a near-copy when it is closer to one training photo than this share of the training photos'
    /// median nearest-neighbour distance.
    #[arg(long, default_value_t = 0.5)]
    copy_factor: f32,
    /// Thumbnail correlation from which an image is a pixel near-copy of a training photo.
    #[arg(long, default_value_t = 0.92)]
    copy_correlation: f32,
    /// Likeness 0 when the run has no control faces: the distance between two different people.
    #[arg(long, default_value_t = 0.8)]
    stranger_distance: f32,
    /// The word that makes a prompt ask for the person; prompts without it test the LoRA's side effect.
    /// Default: the name of kohya's NN_name reference folder, when the cell prompts use it.
    #[arg(long)]
    trigger: Option<String>,
}

impl DecisionArgs {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            min_hit_rate: self.min_hit_rate,
            max_copy_rate: self.max_copy_rate,
            min_flexibility: self.min_flexibility,
            max_clipped_increase: self.max_clipped_increase,
            max_saturation_ratio: self.max_saturation_ratio,
            max_noise_ratio: self.max_noise_ratio,
            under_trained_likeness: self.under_trained_likeness,
        }
    }

    pub fn settings(&self) -> ScoreSettings {
        ScoreSettings {
            copy_factor: self.copy_factor,
            copy_correlation: self.copy_correlation,
            default_stranger_distance: self.stranger_distance,
            trigger: self.trigger.clone(),
            ..ScoreSettings::default()
        }
    }
}

/// A scored and decided run folder.
pub struct Decision {
    pub table: ScoreTable,
    pub recommendation: Recommendation,
    pub report: PathBuf,
}

/// Scores `run` against `reference` (or the reference photos of its last scoring), recommends, and writes
/// `scores.json`, `recommendation.json` and `report.html`.
pub fn decide(
    run: &Path,
    reference: &[PathBuf],
    face: &FaceOptionArgs,
    decision: &DecisionArgs,
) -> Result<Decision> {
    let options = face.pipeline_options()?;
    let reference = reference_inputs(run, reference)?;
    let job = ScoreJob::new(run, &reference)?;
    let models = load_models()?;
    let bar = batch_bar(job.image_count(), "scoring");
    let table = job.run(&models, options, &decision.settings(), &|| bar.inc(1))?;
    bar.finish_and_clear();
    let recommendation = recommend(&table, &decision.thresholds());
    write_recommendation(run, &recommendation)?;
    let report = report(run, &job.manifest, Some(&table), Some(&recommendation))?;
    Ok(Decision {
        table,
        recommendation,
        report,
    })
}

/// `reference` when given, else the reference inputs recorded in the run's `scores.json`.
fn reference_inputs(run: &Path, reference: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if !reference.is_empty() {
        return Ok(reference.to_vec());
    }
    let earlier = read_scores(run)?
        .map(|t| t.reference.inputs)
        .unwrap_or_default();
    if earlier.is_empty() {
        return Err(ScoreError::NoReference {
            run: run.to_path_buf(),
        }
        .into());
    }
    Ok(earlier.into_iter().map(PathBuf::from).collect())
}

/// `recommendation.json` in a run folder.
pub fn recommendation_path(run: &Path) -> PathBuf {
    run.join("recommendation.json")
}

fn write_recommendation(run: &Path, recommendation: &Recommendation) -> Result<()> {
    let text = serde_json::to_string_pretty(recommendation)? + "\n";
    write_file_atomic(&recommendation_path(run), text.as_bytes())?;
    Ok(())
}

/// Reads `recommendation.json` (None when absent).
pub fn read_recommendation(run: &Path) -> Result<Option<Recommendation>> {
    let path = recommendation_path(run);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let recommendation = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a loraeval recommendation; delete it and run `loraeval pick`",
            path.display()
        )
    })?;
    Ok(Some(recommendation))
}

/// Writes `report.html` from what the run folder holds.
pub fn report(
    run: &Path,
    manifest: &Manifest,
    table: Option<&ScoreTable>,
    recommendation: Option<&Recommendation>,
) -> Result<PathBuf> {
    let info = crate::grid::run_info::RunInfo::read(run);
    let metadata = lora_metadata(manifest, info.as_ref().and_then(|i| i.lora_dir.as_deref()));
    let input = ReportInput {
        run,
        manifest,
        scores: table,
        recommendation,
        lora_metadata: &metadata,
        command: info.as_ref().map(|i| i.command.as_str()),
    };
    Ok(write_report(&input)?)
}

/// `loraeval report RUN`: rewrites report.html from the run folder's files, computing nothing.
pub fn report_only(run: &Path) -> Result<PathBuf> {
    let manifest = read_run_manifest(run)?;
    let table = read_scores(run)?;
    let recommendation = match &table {
        Some(_) => read_recommendation(run)?,
        None => None,
    };
    report(run, &manifest, table.as_ref(), recommendation.as_ref())
}

/// The `ss_*` metadata of every LoRA file the cells name that is in `lora_dir`.
fn lora_metadata(
    manifest: &Manifest,
    lora_dir: Option<&Path>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let Some(dir) = lora_dir else {
        return BTreeMap::new();
    };
    let files: std::collections::BTreeSet<String> = manifest
        .cells
        .iter()
        .flat_map(|c| c.params.loras.iter().filter_map(|l| l.file.clone()))
        .collect();
    files
        .into_iter()
        .filter_map(|file| {
            let metadata = crate::grid::epochs::read_metadata(&dir.join(&file)).ok()?;
            let training: BTreeMap<String, String> = metadata
                .into_iter()
                .filter(|(k, _)| k.starts_with("ss_") || k.starts_with("sshs_"))
                .collect();
            Some((file, training))
        })
        .collect()
}
