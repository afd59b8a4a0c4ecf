//! `loraeval import`: a run folder from the images the webui already rendered (A1111, or ComfyUI graphs with a
//! LoRA loader), so that `score`, `pick` and `report` judge them as they judge a run loraeval rendered.
//!
//! Which image is which cell comes from its generation text alone (PNG `parameters`, A1111's EXIF
//! `UserComment` in JPEG/WebP, or ComfyUI's `prompt` graph):
//!
//! * The run judged is the LoRA whose tags vary most across the images (`--lora-name` picks another); an image
//!   names it by one `<lora:NAME:WEIGHT>` tag (or LoRA loader).
//! * X = its epoch file: with `--lora-dir`, the file A1111 loads for the name and its `ss_epoch`; else kohya's
//!   `-NNNNNN` suffix (the last file, without suffix, comes last). `Lora hashes`, when written, must match the
//!   file (or, without the folder, the other images of that name).
//! * Y = the tag's weight (text encoder, UNet).
//! * Z = one level per distinct combination of every other setting that differs between images: the prompt
//!   without LoRA tags (spaces and empty comma parts tidied), negative prompt, steps, sampler and schedule, CFG,
//!   clip skip, other LoRAs and any other infotext field (RNG, ENSD, hires fix, …); levels in file order.
//! * The seed gives the seed index (all seeds sorted).
//! * Base model, size and VAE must be the same everywhere: those of the earlier import, else of most LoRA images;
//!   other images are reported and left out.
//! * An image without the run's tag whose other settings are those of a level is a control (A1111's "None"
//!   column): the base-model baseline of its level and seed.
//! * Two images at one place (same epoch, weight, level, seed): the first (earlier import, then path order) is
//!   kept. A1111's grid images (`grid-*.png`, files under `txt2img-grids/`, `img2img-grids/`) are skipped: their
//!   cells are the individual images.
//!
//! A cell's key is the hash of its original file's bytes, so importing again adds only new images and keeps
//! what the run folder holds; `grid.json` says `"source": "a1111"` and names each image's original file.

mod build;
mod comfy;
mod epochs;
mod exif;
mod layout;
mod read;
mod settings;
mod store;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use self::epochs::LoraFiles;
use self::layout::{Candidate, Layout};
use self::read::{read_image, Format, ImageFile, Metadata};
use self::settings::ImageSettings;
pub use self::store::{Stored, Transfer};
use super::epochs::LoraLibrary;
use super::manifest::Manifest;
use super::GridError;

/// What went wrong with an import as a whole (single images are [`SkipReason`]s).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: no such file or folder")]
    NoInput { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    BadRun { path: PathBuf, reason: String },
    #[error("{run}: this run folder holds a grid loraeval rendered, not an import; import into another folder")]
    NotImported { run: PathBuf },
    #[error("no PNG, JPEG or WebP images in {inputs}")]
    NoImages { inputs: String },
    #[error("none of the {images} images with generation parameters names a LoRA in its prompt (<lora:NAME:WEIGHT>) or a ComfyUI LoRA loader, so there is no epoch x weight grid to judge{skipped}")]
    NoLoraTags { images: usize, skipped: String },
    #[error("--lora-name {name}: no image uses that LoRA; the images name {found}")]
    NoSuchLora { name: String, found: String },
    #[error("no image could be placed in the grid{skipped}")]
    NothingPlaced { skipped: String },
    #[error(transparent)]
    Grid(#[from] GridError),
}

/// Why one file was left out.
#[derive(Clone, Debug, PartialEq)]
pub enum SkipReason {
    GridImage,
    Unreadable(String),
    NoInfotext(Format),
    BadInfotext(String),
    Comfy(String),
    SeveralTags(Vec<String>),
    Fixed {
        field: String,
        found: String,
        expected: String,
        others: usize,
    },
    LoraHash {
        name: String,
        found: String,
        expected: String,
        file: Option<PathBuf>,
    },
    NoMatchingLevel,
    OtherLora {
        names: Vec<String>,
        subject: String,
    },
    Duplicate {
        of: String,
    },
}

impl SkipReason {
    /// A short name for counts ("other Model hash", "duplicate", …).
    pub fn category(&self) -> String {
        match self {
            SkipReason::GridImage => "grid image".into(),
            SkipReason::Unreadable(_) => "unreadable".into(),
            SkipReason::NoInfotext(_) => "no infotext".into(),
            SkipReason::BadInfotext(_) => "not A1111 infotext".into(),
            SkipReason::Comfy(_) => "unreadable ComfyUI graph".into(),
            SkipReason::SeveralTags(_) => "several epochs in one prompt".into(),
            SkipReason::Fixed { field, .. } => format!("other {field}"),
            SkipReason::LoraHash { .. } => "Lora hashes mismatch".into(),
            SkipReason::NoMatchingLevel => "no matching LoRA images".into(),
            SkipReason::OtherLora { .. } => "other LoRA".into(),
            SkipReason::Duplicate { .. } => "duplicate".into(),
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::GridImage => write!(f, "an A1111 grid image; its cells are the individual images"),
            SkipReason::Unreadable(e) => write!(f, "cannot read it: {e}"),
            SkipReason::NoInfotext(Format::Png) => write!(f, "no generation parameters: the PNG has no `parameters` text (A1111) or `prompt` graph (ComfyUI); was it saved with \"Save text information about generation parameters as chunks to png files\" off, or edited?"),
            SkipReason::NoInfotext(_) => write!(f, "no generation parameters: no EXIF UserComment, where A1111 writes them in JPEG and WebP files"),
            SkipReason::BadInfotext(e) => write!(f, "its parameters text is not A1111's infotext: {e}"),
            SkipReason::Comfy(e) => write!(f, "a ComfyUI image whose graph could not be read: {e}"),
            SkipReason::SeveralTags(names) => write!(f, "its prompt names several files of the run ({}); an image must use one", names.join(", ")),
            SkipReason::Fixed { field, found, expected, others } => write!(f, "{field} {found}, not {expected} like the other {others} images: images of another base model, size or VAE are not comparable"),
            SkipReason::LoraHash { name, found, expected, file: Some(file) } => write!(f, "its Lora hashes gives {name} as {found}, but {} hashes to {expected}: it was made with another file of that name", file.display()),
            SkipReason::LoraHash { name, found, expected, file: None } => write!(f, "its Lora hashes gives {name} as {found}, the other images of {name} say {expected}: another file of that name"),
            SkipReason::NoMatchingLevel => write!(f, "no LoRA tag, and no LoRA image has its settings (prompt, negative prompt, steps, sampler, CFG, …), so it is no control of this grid"),
            SkipReason::OtherLora { names, subject } => write!(f, "uses {} and not the run judged, {subject} (--lora-name picks another)", names.join(", ")),
            SkipReason::Duplicate { of } => write!(f, "same epoch, weight, settings and seed as {of}, which is kept"),
        }
    }
}

/// What to import and where.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Output folders of the webui (searched recursively) or image files.
    pub inputs: Vec<PathBuf>,
    /// The run folder.
    pub out: PathBuf,
    pub lora_dir: Option<PathBuf>,
    pub lora_name: Option<String>,
    pub transfer: Transfer,
}

/// A file left out, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub path: String,
    pub reason: SkipReason,
}

/// What an import did.
#[derive(Debug)]
pub struct ImportSummary {
    pub manifest: Manifest,
    /// Image files found (PNG, JPEG, WebP by name).
    pub found: usize,
    /// Other files under the input folders, ignored.
    pub other_files: usize,
    /// Images of earlier imports kept.
    pub kept: usize,
    /// Images found again that the run already holds.
    pub already: usize,
    /// How each new image got into the run folder.
    pub stored: Vec<Stored>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<String>,
}

/// Progress of an import, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The number of image files found (before any is read).
    Found(usize),
    /// One more file read.
    Read,
}

/// Imports the images under `options.inputs` into the run folder `options.out` (created, or extended when it
/// holds an earlier import).
pub fn import_images(
    options: &ImportOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<ImportSummary, ImportError> {
    let (paths, other_files) = find_images(&options.inputs, &options.out)?;
    progress(Progress::Found(paths.len()));
    let mut notes = Vec::new();
    let earlier = store::earlier_import(&options.out, &mut notes)?.unwrap_or_default();
    let library = options
        .lora_dir
        .as_deref()
        .map(LoraLibrary::scan)
        .transpose()?;
    let read: Vec<(PathBuf, Result<ImageFile, SkipReason>)> = paths
        .par_iter()
        .map(|path| {
            let result = read_file(path);
            progress(Progress::Read);
            (path.clone(), result)
        })
        .collect();
    let mut skipped = Vec::new();
    let (candidates, kept, already) = candidates(earlier, read, &mut skipped);
    if !candidates.iter().any(|c| !c.settings.loras.is_empty()) {
        return Err(ImportError::NoLoraTags {
            images: candidates.len(),
            skipped: skip_summary(&skipped),
        });
    }
    let files = LoraFiles::new(library);
    let layout = layout::plan(&candidates, &files, options.lora_name.as_deref())?;
    notes.extend(layout.notes.iter().cloned());
    skipped.extend(layout.skipped.iter().map(|(i, reason)| Skipped {
        path: candidates[*i].original.clone(),
        reason: reason.clone(),
    }));
    if layout.cells.is_empty() {
        return Err(ImportError::NothingPlaced {
            skipped: skip_summary(&skipped),
        });
    }
    let stored = store_placed(options, &layout, &candidates)?;
    let manifest = build::manifest(&layout, &candidates, source_name(&layout, &candidates));
    store::write_manifest(&options.out, &manifest)?;
    Ok(ImportSummary {
        manifest,
        found: paths.len(),
        other_files,
        kept,
        already,
        stored,
        skipped,
        notes,
    })
}

/// "a1111", or "comfyui" when every placed image came from ComfyUI.
fn source_name(layout: &Layout, candidates: &[Candidate]) -> &'static str {
    let all_comfy = layout
        .cells
        .iter()
        .chain(&layout.controls)
        .all(|p| candidates[p.index].comfy);
    match all_comfy {
        true => "comfyui",
        false => "a1111",
    }
}

/// Stores the new images that were placed.
fn store_placed(
    options: &ImportOptions,
    layout: &Layout,
    candidates: &[Candidate],
) -> Result<Vec<Stored>, ImportError> {
    layout
        .cells
        .iter()
        .chain(&layout.controls)
        .map(|p| &candidates[p.index])
        .filter(|c| !c.stored)
        .map(|c| store::store(&options.out, c, options.transfer))
        .collect()
}

/// Earlier images first, then the new ones by path; a key already present is counted, not added again.
fn candidates(
    earlier: Vec<Candidate>,
    read: Vec<(PathBuf, Result<ImageFile, SkipReason>)>,
    skipped: &mut Vec<Skipped>,
) -> (Vec<Candidate>, usize, usize) {
    let kept = earlier.len();
    let mut keys: HashSet<String> = earlier.iter().map(|c| c.key.clone()).collect();
    let mut all = earlier;
    let mut already = 0;
    for (path, result) in read {
        let original = std::path::absolute(&path)
            .unwrap_or(path.clone())
            .display()
            .to_string();
        let candidate = result.and_then(|file| new_candidate(file, original.clone()));
        match candidate {
            Ok(c) if keys.contains(&c.key) => already += 1,
            Ok(c) => {
                keys.insert(c.key.clone());
                all.push(c);
            }
            Err(reason) => skipped.push(Skipped {
                path: original,
                reason,
            }),
        }
    }
    (all, kept, already)
}

fn new_candidate(file: ImageFile, original: String) -> Result<Candidate, SkipReason> {
    let (settings, comfy, infotext) = settings_of(&file.metadata)?;
    Ok(Candidate {
        key: file.key,
        original,
        path: file.path,
        format: file.format,
        comfy,
        stored: false,
        settings,
        infotext,
    })
}

/// The settings an image's metadata gives, whether they came from ComfyUI, and the A1111 infotext.
fn settings_of(metadata: &Metadata) -> Result<(ImageSettings, bool, Option<String>), SkipReason> {
    match metadata {
        Metadata::A1111(text) => ImageSettings::from_infotext(text)
            .map(|s| (s, false, Some(text.clone())))
            .map_err(SkipReason::BadInfotext),
        Metadata::Comfy(json) => comfy::from_comfy_prompt(json)
            .map(|s| (s, true, None))
            .map_err(SkipReason::Comfy),
    }
}

/// A grid file is skipped by its name; anything else is read.
fn read_file(path: &Path) -> Result<ImageFile, SkipReason> {
    if is_grid_file(path) {
        return Err(SkipReason::GridImage);
    }
    read_image(path)
}

/// A1111 saves grids as `grid-NNNN….png`, in `txt2img-grids` / `img2img-grids` (`outdir_*_grids`).
fn is_grid_file(path: &Path) -> bool {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default()
    };
    let in_grids = path
        .ancestors()
        .skip(1)
        .take(3)
        .any(|a| matches!(name(a).as_str(), "txt2img-grids" | "img2img-grids"));
    name(path).starts_with("grid-") || in_grids
}

const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// The image files under `inputs` (folders recursively, hidden entries and the run folder `out` left out),
/// sorted, and the number of other files.
fn find_images(inputs: &[PathBuf], out: &Path) -> Result<(Vec<PathBuf>, usize), ImportError> {
    let out = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let mut images = Vec::new();
    let mut others = 0;
    for input in inputs {
        if input.is_file() {
            images.push(input.clone());
        } else if input.is_dir() {
            walk(input, &out, &mut images, &mut others)?;
        } else {
            return Err(ImportError::NoInput {
                path: input.clone(),
            });
        }
    }
    images.sort();
    images.dedup();
    if images.is_empty() {
        let inputs = inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ImportError::NoImages { inputs });
    }
    Ok((images, others))
}

fn walk(
    dir: &Path,
    out: &Path,
    images: &mut Vec<PathBuf>,
    others: &mut usize,
) -> Result<(), ImportError> {
    if std::path::absolute(dir).is_ok_and(|d| d == out) {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ImportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, out, images, others)?;
        } else if is_image_name(&path) {
            images.push(path);
        } else {
            *others += 1;
        }
    }
    Ok(())
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// "; skipped 3: 2 no infotext, 1 unreadable; e.g. FILE: why" (an example of the most frequent reason; empty
/// without skips).
pub fn skip_summary(skipped: &[Skipped]) -> String {
    let counts = category_counts(skipped);
    let Some((top, _)) = counts.first() else {
        return String::new();
    };
    let example = skipped.iter().find(|s| s.reason.category() == *top);
    let example = example.map_or(String::new(), |s| {
        format!("; e.g. {}: {}", s.path, s.reason)
    });
    format!(
        "; skipped {}: {}{example}",
        skipped.len(),
        count_categories(skipped)
    )
}

/// (category, count), most frequent first.
fn category_counts(skipped: &[Skipped]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for s in skipped {
        let category = s.reason.category();
        match counts.iter_mut().find(|(c, _)| *c == category) {
            Some(entry) => entry.1 += 1,
            None => counts.push((category, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
}

/// "2 no infotext, 1 unreadable", most frequent first.
pub fn count_categories(skipped: &[Skipped]) -> String {
    category_counts(skipped)
        .iter()
        .map(|(c, n)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
