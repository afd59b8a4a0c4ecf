//! `loraeval score`: identity scores of images against a reference set of photos of the person, or of a whole
//! run folder (`score RUN`): per-cell scores, the recommendation and the report.

use super::decide::{decide, DecisionArgs};
use super::faces::{batch_bar, load_models, report_skipped, write_stdout, FaceOptionArgs};
use crate::face::pipeline::process_files;
use crate::face::reference::{
    describe_inputs, expand_folders, find_images, skip_reason, ReferenceSet,
};
use crate::face::score::{build_reference_set, score_image, ImageScore};
use crate::recommend::Recommendation;
use crate::score::table::ScoreTable;
use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Options of `loraeval score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Reference photos of the person: a folder (searched recursively for .jpg/.jpeg/.png/.webp/.bmp, so a
    /// kohya `image/NN_name/` folder works as it is) or a file. Repeat the option for several. For a run folder
    /// the default is the photos of its last scoring.
    #[arg(long)]
    reference: Vec<PathBuf>,
    /// A run folder (made by `loraeval grid`): scores every cell, recommends and writes scores.json,
    /// recommendation.json and report.html. Otherwise images to score: files, or folders searched recursively.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    face: FaceOptionArgs,
    #[command(flatten)]
    decision: DecisionArgs,
    /// Print JSON: {"reference": {"images", "faces", "outliers", ...}, "images": [{"image", "face_found",
    /// "n_faces", "similarity", "distance", "nearest": {"image", "similarity", "distance"}, ...}], "skipped"}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct ScoreReport {
    reference: ReferenceSummary,
    images: Vec<ImageEntry>,
    skipped: Vec<SkippedEntry>,
}

#[derive(Debug, Serialize)]
struct ReferenceSummary {
    /// Image files found.
    images: usize,
    /// Photos whose (largest) face is used.
    faces: usize,
    /// Same-person threshold on the Euclidean distance (dlib: 0.6).
    threshold: f32,
    outliers: Vec<OutlierEntry>,
    no_face: Vec<String>,
    several_faces: Vec<SeveralFacesEntry>,
    unreadable: Vec<SkippedEntry>,
}

#[derive(Debug, Serialize)]
struct OutlierEntry {
    image: String,
    distance_to_others: Option<f32>,
}

#[derive(Debug, Serialize)]
struct SeveralFacesEntry {
    image: String,
    n_faces: usize,
}

#[derive(Debug, Serialize)]
struct SkippedEntry {
    image: String,
    error: String,
}

#[derive(Debug, Serialize)]
struct ImageEntry {
    image: String,
    face_found: bool,
    n_faces: usize,
    similarity: Option<f32>,
    distance: Option<f32>,
    nearest: Option<NearestEntry>,
    #[serde(rename = "box")]
    rect: Option<[i64; 4]>,
    face_size: Option<u32>,
    confidence: Option<f32>,
}

#[derive(Debug, Serialize)]
struct NearestEntry {
    image: String,
    similarity: f32,
    distance: f32,
}

/// Runs `score`: a run folder (one path holding grid.json) or loose images.
pub fn run(args: ScoreArgs) -> Result<()> {
    match args.images.as_slice() {
        [run] if run.join("grid.json").is_file() => score_run_folder(&args, run),
        _ => score_images(args),
    }
}

/// Scores a run folder, recommends, writes the report; prints the cell table (or scores.json with --json).
fn score_run_folder(args: &ScoreArgs, run: &Path) -> Result<()> {
    let decision = decide(run, &args.reference, &args.face, &args.decision)?;
    if args.json {
        write_stdout(&(serde_json::to_string_pretty(&decision.table)? + "\n"))?;
    } else {
        write_stdout(&cell_table(&decision.table, &decision.recommendation))?;
    }
    eprintln!("report: {}", decision.report.display());
    Ok(())
}

/// One line per cell: likeness, hit rate, copies, flexibility, health, and whether it passes.
fn cell_table(table: &ScoreTable, recommendation: &Recommendation) -> String {
    let b = &table.baselines;
    let mut out = format!(
        "reference: {} photos used; likeness 1 at distance {:.3} (reference photos), 0 at {:.3} ({})\n",
        table.reference.used, b.reference_distance, b.stranger_distance, b.stranger_source
    );
    for photo in table
        .reference
        .photos
        .iter()
        .filter(|p| !p.flags.is_empty())
    {
        out += &format!("  {}: {}\n", photo.path, photo.flags.join("; "));
    }
    let width = table
        .cells
        .iter()
        .map(|c| c.label.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    out += &format!(
        "{:<width$}  {:>6}  {:>8}  {:>8}  {:>6}  {:>5}  {:>7}  verdict\n",
        "cell", "images", "likeness", "distance", "hits", "copy", "flex"
    );
    let number = |v: Option<f32>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    let rows = table.control.iter().chain(&table.cells);
    for cell in rows {
        let ranked = recommendation
            .ranking
            .iter()
            .find(|r| r.label == cell.label);
        let verdict = ranked.map_or("control".to_string(), |r| match r.passed {
            true => "ok".to_string(),
            false => r.reasons.join("; "),
        });
        out += &format!(
            "{:<width$}  {:>6}  {:>8}  {:>8}  {:>5.0}%  {:>4.0}%  {:>7}  {verdict}\n",
            cell.label,
            cell.images.len(),
            number(cell.likeness),
            number(cell.distance),
            cell.hit_rate * 100.0,
            cell.copy_rate * 100.0,
            number(cell.flexibility),
        );
    }
    for reason in &recommendation.reasons {
        out += &format!("{reason}\n");
    }
    out
}

/// Builds the reference set, scores every image, prints a table or JSON.
fn score_images(args: ScoreArgs) -> Result<()> {
    if args.reference.is_empty() {
        bail!(
            "give --reference with photos of the person (or score a run folder holding grid.json)"
        );
    }
    let options = args.face.pipeline_options()?;
    let reference_paths = find_images(&args.reference)?;
    let image_paths = expand_folders(&args.images)?;
    if image_paths.is_empty() {
        bail!("no images to score in {}", describe_inputs(&args.images));
    }
    let models = load_models()?;
    let bar = batch_bar(reference_paths.len(), "reference");
    let reference =
        build_reference_set(&models, &reference_paths, &args.reference, options, &|| {
            bar.inc(1)
        })?;
    bar.finish_and_clear();
    for photo in &reference.unreadable {
        let path = photo.path.display();
        eprintln!("warning: reference photo skipped: {path}: {}", photo.reason);
    }
    let bar = batch_bar(image_paths.len(), "scoring");
    let results = process_files(
        &image_paths,
        |image| score_image(&models, &reference, image, options),
        &|| bar.inc(1),
    );
    bar.finish_and_clear();
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    for (path, result) in results {
        match result {
            Ok(score) => images.push(image_entry(&path, &score)),
            Err(error) => skipped.push((path, error)),
        }
    }
    report_skipped(&skipped, image_paths.len())?;
    let report = ScoreReport {
        reference: summarize(&reference, reference_paths.len()),
        images,
        skipped: skipped
            .iter()
            .map(|(path, error)| SkippedEntry {
                image: path.display().to_string(),
                error: skip_reason(error),
            })
            .collect(),
    };
    if args.json {
        write_stdout(&(serde_json::to_string_pretty(&report)? + "\n"))
    } else {
        write_stdout(&(reference_text(&report.reference) + &score_table(&report.images)))
    }
}

fn summarize(reference: &ReferenceSet, found: usize) -> ReferenceSummary {
    let name = |path: &Path| path.display().to_string();
    ReferenceSummary {
        images: found,
        faces: reference.used().count(),
        threshold: reference.threshold,
        outliers: reference
            .outliers()
            .map(|p| OutlierEntry {
                image: name(&p.path),
                distance_to_others: p.distance_to_others,
            })
            .collect(),
        no_face: reference.without_face().map(|p| name(&p.path)).collect(),
        several_faces: reference
            .with_several_faces()
            .map(|p| SeveralFacesEntry {
                image: name(&p.path),
                n_faces: p.n_faces,
            })
            .collect(),
        unreadable: reference
            .unreadable
            .iter()
            .map(|s| SkippedEntry {
                image: name(&s.path),
                error: s.reason.clone(),
            })
            .collect(),
    }
}

fn image_entry(path: &Path, score: &ImageScore) -> ImageEntry {
    let face = score.face.as_ref();
    ImageEntry {
        image: path.display().to_string(),
        face_found: face.is_some(),
        n_faces: score.n_faces,
        similarity: face.map(|f| f.similarity),
        distance: face.map(|f| f.distance),
        nearest: face.and_then(|f| f.nearest.as_ref()).map(|n| NearestEntry {
            image: n.path.display().to_string(),
            similarity: n.similarity,
            distance: n.distance,
        }),
        rect: face.map(|f| [f.rect.left, f.rect.top, f.rect.right, f.rect.bottom]),
        face_size: face.map(|f| f.face_size),
        confidence: face.map(|f| f.confidence),
    }
}

fn reference_text(summary: &ReferenceSummary) -> String {
    let mut out = format!(
        "reference: {} photos, {} faces used (same person below distance {})\n",
        summary.images, summary.faces, summary.threshold
    );
    if !summary.no_face.is_empty() {
        out += &format!("  no face: {}\n", summary.no_face.join(", "));
    }
    for entry in &summary.several_faces {
        out += &format!(
            "  several faces: {} ({} faces, the largest is used)\n",
            entry.image, entry.n_faces
        );
    }
    for entry in &summary.outliers {
        let distance = entry.distance_to_others.unwrap_or(f32::NAN);
        out += &format!(
            "  outlier: {} ({distance:.3} from the mean of the other photos)\n",
            entry.image
        );
    }
    for entry in &summary.unreadable {
        out += &format!("  unreadable: {} ({})\n", entry.image, entry.error);
    }
    out
}

fn score_table(images: &[ImageEntry]) -> String {
    let width = images
        .iter()
        .map(|e| e.image.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = format!(
        "{:<width$}  {:>5}  {:>10}  {:>8}  {:>7}  nearest reference (similarity)\n",
        "image", "faces", "similarity", "distance", "face px"
    );
    for entry in images {
        let number = |v: Option<f32>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        let nearest = entry.nearest.as_ref().map_or_else(
            || "-".to_string(),
            |n| format!("{} ({:.3})", n.image, n.similarity),
        );
        let size = entry
            .face_size
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        out += &format!(
            "{:<width$}  {:>5}  {:>10}  {:>8}  {:>7}  {nearest}\n",
            entry.image,
            entry.n_faces,
            number(entry.similarity),
            number(entry.distance),
            size
        );
    }
    out
}
