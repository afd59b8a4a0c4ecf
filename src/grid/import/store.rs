//! The run folder of an import: the earlier import read back (its `grid.json` and the images in `cells/`), the
//! images put into `cells/<key>.png` (copied, or hard-linked / symbolically linked with `--link`; a JPEG or WebP
//! is decoded and stored as PNG with its infotext, since a run folder holds PNGs), and `grid.json` written.
//! Originals are only read.

use std::fs;
use std::path::{Path, PathBuf};

use super::build::image_path;
use super::layout::Candidate;
use super::read::{decode_rgb, read_image, Format};
use super::{settings_of, ImportError};
use crate::grid::manifest::Manifest;
use crate::grid::run::write_atomic;
use crate::grid::GridError;
use crate::sampling::png_info::encode_png;

/// How the images get into the run folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    Copy,
    Link,
}

/// How one image got into the run folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Copied,
    HardLinked,
    SymLinked,
    /// A JPEG or WebP decoded and written as PNG.
    Converted,
    /// Already there (same key, same bytes).
    Present,
}

/// The earlier import of `run`: its cells and controls as candidates (those whose image is gone are reported
/// in the notes). None when the folder has no `grid.json`.
pub fn earlier_import(
    run: &Path,
    notes: &mut Vec<String>,
) -> Result<Option<Vec<Candidate>>, ImportError> {
    let path = run.join("grid.json");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ImportError::Io { path, source }),
    };
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| ImportError::BadRun {
        path: path.clone(),
        reason: format!("not a loraeval grid.json: {e}"),
    })?;
    if manifest.source.is_none() {
        return Err(ImportError::NotImported {
            run: run.to_path_buf(),
        });
    }
    let entries = manifest
        .cells
        .iter()
        .map(|c| (&c.key, &c.original))
        .chain(manifest.controls.iter().map(|c| (&c.key, &c.original)));
    let mut candidates = Vec::new();
    for (key, original) in entries {
        let original = original.clone().unwrap_or_else(|| image_path(key));
        match earlier_candidate(run, key, &original) {
            Ok(candidate) => candidates.push(candidate),
            Err(reason) => notes.push(format!(
                "{}: the earlier import's image of {original} {reason}; it is left out",
                run.join(image_path(key)).display()
            )),
        }
    }
    Ok(Some(candidates))
}

fn earlier_candidate(run: &Path, key: &str, original: &str) -> Result<Candidate, String> {
    let path = run.join(image_path(key));
    if !path.is_file() {
        return Err("is gone".to_string());
    }
    let file = read_image(&path).map_err(|e| format!("cannot be read ({e})"))?;
    let (settings, comfy, infotext) =
        settings_of(&file.metadata).map_err(|e| format!("cannot be read ({e})"))?;
    Ok(Candidate {
        key: key.to_string(),
        original: original.to_string(),
        path,
        format: file.format,
        comfy,
        stored: true,
        settings,
        infotext,
    })
}

/// Puts `candidate` into `run/cells/<key>.png`.
pub fn store(run: &Path, candidate: &Candidate, transfer: Transfer) -> Result<Stored, ImportError> {
    let target = run.join(image_path(&candidate.key));
    if candidate.stored || target.exists() {
        return Ok(Stored::Present);
    }
    if candidate.format != Format::Png {
        return convert(candidate, &target);
    }
    if transfer == Transfer::Link {
        create_folder(&run.join("cells"))?;
        if fs::hard_link(&candidate.path, &target).is_ok() {
            return Ok(Stored::HardLinked);
        }
        if symlink(&candidate.path, &target).is_ok() {
            return Ok(Stored::SymLinked);
        }
    }
    let bytes = fs::read(&candidate.path).map_err(|source| ImportError::Io {
        path: candidate.path.clone(),
        source,
    })?;
    write(&target, &bytes)?;
    Ok(Stored::Copied)
}

/// A JPEG or WebP as PNG: the decoded pixels and the infotext in a `parameters` chunk.
fn convert(candidate: &Candidate, target: &Path) -> Result<Stored, ImportError> {
    let image = decode_rgb(&candidate.path).map_err(|e| ImportError::BadRun {
        path: candidate.path.clone(),
        reason: e.to_string(),
    })?;
    let infotext = candidate.infotext.as_deref().unwrap_or_default();
    let bytes = encode_png(&image, infotext).map_err(|e| ImportError::Write {
        path: target.to_path_buf(),
        reason: e.to_string(),
    })?;
    write(target, &bytes)?;
    Ok(Stored::Converted)
}

#[cfg(unix)]
fn symlink(original: &Path, target: &Path) -> std::io::Result<()> {
    let absolute = std::path::absolute(original)?;
    std::os::unix::fs::symlink(absolute, target)
}

#[cfg(not(unix))]
fn symlink(_original: &Path, _target: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "symbolic links are not supported here",
    ))
}

fn create_folder(folder: &Path) -> Result<(), ImportError> {
    fs::create_dir_all(folder).map_err(|e| ImportError::Write {
        path: folder.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes `bytes` to `path` through a temporary file (its folder created).
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), ImportError> {
    create_folder(&path.parent().map(PathBuf::from).unwrap_or_default())?;
    write_atomic(path, bytes).map_err(|e| ImportError::Write {
        path: path.to_path_buf(),
        reason: match e {
            GridError::Write { reason, .. } => reason,
            other => other.to_string(),
        },
    })
}

/// Writes `run/grid.json`.
pub fn write_manifest(run: &Path, manifest: &Manifest) -> Result<(), ImportError> {
    let path = run.join("grid.json");
    let text = serde_json::to_string_pretty(manifest).map_err(|e| ImportError::Write {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    write(&path, (text + "\n").as_bytes())
}
