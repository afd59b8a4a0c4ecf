//! `loraeval faces embed`: detect faces and print boxes, landmarks and 128-D dlib descriptors per image.

use super::progress::step_bar;
use crate::face::pipeline::{process_files, FaceDescription, FaceModels, PipelineOptions};
use crate::face::reference::{describe_inputs, expand_folders, skip_reason};
use crate::face::FaceError;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use serde::Serialize;
use std::path::PathBuf;

/// Subcommands of `loraeval faces`.
#[derive(Debug, Subcommand)]
pub enum FacesCommand {
    /// Detect every face of each image (dlib CNN detector) and compute its 128-D dlib descriptor.
    Embed(EmbedArgs),
}

/// Detection and descriptor settings shared by `faces embed` and `score`.
#[derive(Debug, Clone, Copy, Args)]
pub struct FaceOptionArgs {
    /// Double the image this many times before detection, as dlib's upsample_num_times: 0 finds faces of
    /// about 80 px and larger, 1 about 40 px (4x slower).
    #[arg(long, default_value_t = 0)]
    upsample: u32,
    /// Average the descriptor over this many jittered crops of the face, as dlib's num_jitters (0 or 1: none).
    #[arg(long, default_value_t = 0)]
    jitters: u32,
}

impl FaceOptionArgs {
    pub fn pipeline_options(&self) -> Result<PipelineOptions> {
        if self.upsample > 3 {
            bail!(
                "--upsample {} is too large: each step doubles the image (use 0 to 3)",
                self.upsample
            );
        }
        Ok(PipelineOptions {
            upsample: self.upsample,
            num_jitters: self.jitters,
        })
    }
}

/// Options of `loraeval faces embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Image files (PNG, JPEG), or folders searched recursively.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    face: FaceOptionArgs,
    /// Print a JSON array, one entry per image: {"image", "width", "height", "faces": [{"box": [left, top,
    /// right, bottom], "confidence", "landmarks": [[x, y] x 5], "embedding": [128 numbers]}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct EmbeddedImage {
    image: String,
    width: u32,
    height: u32,
    faces: Vec<EmbeddedFace>,
}

#[derive(Debug, Serialize)]
struct EmbeddedFace {
    #[serde(rename = "box")]
    rect: [i64; 4],
    confidence: f32,
    landmarks: Vec<[i64; 2]>,
    embedding: Vec<f32>,
}

impl EmbeddedFace {
    fn new(face: &FaceDescription) -> EmbeddedFace {
        let r = face.rect;
        EmbeddedFace {
            rect: [r.left, r.top, r.right, r.bottom],
            confidence: face.confidence,
            landmarks: face.landmarks.iter().map(|p| [p.x, p.y]).collect(),
            embedding: face.descriptor.to_vec(),
        }
    }
}

/// Runs `loraeval faces ...`.
pub fn run(command: FacesCommand) -> Result<()> {
    match command {
        FacesCommand::Embed(args) => run_embed(args),
    }
}

fn run_embed(args: EmbedArgs) -> Result<()> {
    let options = args.face.pipeline_options()?;
    let paths = expand_folders(&args.images)?;
    if paths.is_empty() {
        bail!("no images in {}", describe_inputs(&args.images));
    }
    let models = load_models()?;
    let bar = batch_bar(paths.len(), "faces");
    let results = process_files(
        &paths,
        |image| {
            let faces = models.describe_all(image, options)?;
            Ok((image.width(), image.height(), faces))
        },
        &|| bar.inc(1),
    );
    bar.finish_and_clear();
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for (path, result) in results {
        match result {
            Ok((width, height, faces)) => entries.push(EmbeddedImage {
                image: path.display().to_string(),
                width,
                height,
                faces: faces.iter().map(EmbeddedFace::new).collect(),
            }),
            Err(error) => skipped.push((path, error)),
        }
    }
    report_skipped(&skipped, paths.len())?;
    if args.json {
        write_stdout(&(serde_json::to_string(&entries)? + "\n"))
    } else {
        write_stdout(&embed_table(&entries))
    }
}

fn embed_table(entries: &[EmbeddedImage]) -> String {
    let mut out = String::from("image\tsize\tfaces\tbox [left, top, right, bottom]\tconfidence\n");
    for entry in entries {
        let size = format!("{}x{}", entry.width, entry.height);
        if entry.faces.is_empty() {
            out += &format!("{}\t{size}\t0\t-\t-\n", entry.image);
        }
        for face in &entry.faces {
            out += &format!(
                "{}\t{size}\t{}\t{:?}\t{:.3}\n",
                entry.image,
                entry.faces.len(),
                face.rect,
                face.confidence
            );
        }
    }
    out
}

/// Writes command output to stdout; a closed pipe (`| head`) ends the output quietly.
pub fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("writing to stdout"),
    }
}

/// Loads the three dlib models compiled into the binary.
pub fn load_models() -> Result<FaceModels> {
    FaceModels::load_embedded().context("loading the embedded dlib face models")
}

/// A progress bar for a batch of images (stderr, hidden when not a terminal or for one image).
pub fn batch_bar(total: usize, label: &str) -> ProgressBar {
    if total < 2 {
        return ProgressBar::hidden();
    }
    step_bar(total as u64, label)
}

/// Warns about each skipped image and their count on stderr; fails if every image of the batch was skipped.
pub fn report_skipped(skipped: &[(PathBuf, FaceError)], total: usize) -> Result<()> {
    if skipped.is_empty() {
        return Ok(());
    }
    if skipped.len() == total {
        let (path, error) = &skipped[0];
        bail!(
            "no image could be read ({total} of {total} failed); {}: {}",
            path.display(),
            skip_reason(error)
        );
    }
    for (path, error) in skipped {
        eprintln!(
            "warning: skipped {}: {}",
            path.display(),
            skip_reason(error)
        );
    }
    eprintln!(
        "warning: {} of {total} images skipped (unreadable)",
        skipped.len()
    );
    Ok(())
}
