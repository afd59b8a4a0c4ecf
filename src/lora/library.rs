//! `--lora-dir` lookups by A1111's rule and `--lora FILE[:W|:TE:UNET]` specs.
//!
//! A1111 1.10 `extensions-builtin/Lora/networks.py` `list_available_networks` / `load_networks`: every
//! `.safetensors`/`.pt`/`.ckpt` under the folder (recursively) is a network named by its file stem; its alias is
//! `ss_output_name` from the metadata. A tag name resolves by stem first; an alias is used only when no file has
//! that stem and exactly one file carries the alias (A1111 "forbids" aliases that several files share — every
//! epoch file of a kohya run shares `ss_output_name`, so epoch files are referenced by stem).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::file::LoraFile;
use super::LoraError;
use crate::text::extra_networks::{extract_extra_networks, lora_multipliers};
use crate::weights::safetensors_file::SafetensorsFile;

/// Extensions A1111 lists as networks.
const NETWORK_EXTENSIONS: [&str; 3] = ["safetensors", "pt", "ckpt"];
/// Closest names listed when a name is unknown.
const CLOSEST_SHOWN: usize = 5;

/// A parsed `--lora` value.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub path: PathBuf,
    pub te: f32,
    pub unet: f32,
}

/// Parses `FILE`, `FILE:W` or `FILE:TE:UNET` (the numbers are split off the end, so paths may contain ':').
pub fn parse_lora_spec(spec: &str) -> Result<LoraSpec, LoraError> {
    let bad = |reason: &str| LoraError::BadSpec {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let number = |s: &str| s.trim().parse::<f32>().ok().filter(|v| v.is_finite());
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (path, te, unet) = match parts.as_slice() {
        [unet, te, path] if number(te).is_some() && number(unet).is_some() => {
            (path.to_string(), number(te), number(unet))
        }
        [w, ..] if parts.len() >= 2 && number(w).is_some() => {
            let path = &spec[..spec.len() - w.len() - 1];
            (path.to_string(), number(w), number(w))
        }
        _ => (spec.to_string(), Some(1.0), Some(1.0)),
    };
    if path.is_empty() {
        return Err(bad("no file name before the multipliers"));
    }
    let (Some(te), Some(unet)) = (te, unet) else {
        return Err(bad("multipliers must be finite numbers"));
    };
    Ok(LoraSpec {
        path: PathBuf::from(path),
        te,
        unet,
    })
}

/// A `<lora:NAME:…>` tag of a prompt, resolved to a file.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptLora {
    /// The name as written in the tag.
    pub name: String,
    pub path: PathBuf,
    pub te: f32,
    pub unet: f32,
}

/// Whether an extra-network kind is a LoRA (A1111 registers `lora` and the alias `lyco`).
pub fn is_lora_kind(kind: &str) -> bool {
    kind.eq_ignore_ascii_case("lora") || kind.eq_ignore_ascii_case("lyco")
}

/// Resolves the `<lora:…>` tags of a prompt to files of `library` (other tag kinds are left to the pipeline).
pub fn resolve_prompt_tags(
    prompt: &str,
    library: Option<&LoraLibrary>,
) -> Result<Vec<PromptLora>, LoraError> {
    let (_, tags) = extract_extra_networks(prompt);
    let mut resolved = Vec::new();
    for tag in tags.iter().filter(|t| is_lora_kind(&t.kind)) {
        let (te, unet) = lora_multipliers(tag).map_err(|e| LoraError::BadSpec {
            spec: tag.to_tag_text(),
            reason: e.to_string(),
        })?;
        let Some(library) = library else {
            return Err(LoraError::NoLoraDir {
                name: tag.name.clone(),
            });
        };
        resolved.push(PromptLora {
            name: tag.name.clone(),
            path: library.find(&tag.name)?,
            te,
            unet,
        });
    }
    Ok(resolved)
}

/// Opened LoRA files by path, shared between renders (a grid opens each epoch file once).
#[derive(Debug, Default)]
pub struct LoraCache {
    files: Mutex<HashMap<PathBuf, Arc<LoraFile>>>,
}

impl LoraCache {
    /// The file at `path`, opened (and validated) on first use.
    pub fn open(&self, path: &Path) -> Result<Arc<LoraFile>, LoraError> {
        if let Some(file) = self.lock().get(path) {
            return Ok(file.clone());
        }
        let file = Arc::new(LoraFile::open(path)?);
        self.lock().insert(path.to_path_buf(), file.clone());
        Ok(file)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<LoraFile>>> {
        self.files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The networks of a `--lora-dir`.
#[derive(Debug, Clone)]
pub struct LoraLibrary {
    pub dir: PathBuf,
    /// (stem, path), sorted by path.
    pub entries: Vec<(String, PathBuf)>,
}

impl LoraLibrary {
    /// Lists every network file under `dir`.
    pub fn scan(dir: &Path) -> Result<LoraLibrary, LoraError> {
        let mut entries = Vec::new();
        walk(dir, &mut entries)?;
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(LoraLibrary {
            dir: dir.to_path_buf(),
            entries,
        })
    }

    /// The file a `<lora:NAME:…>` tag means.
    pub fn find(&self, name: &str) -> Result<PathBuf, LoraError> {
        if let Some((_, path)) = self.entries.iter().find(|(stem, _)| stem == name) {
            return Ok(path.clone());
        }
        let aliases = self.aliases();
        let with_alias: Vec<&PathBuf> = aliases
            .iter()
            .filter(|(alias, _)| alias == name)
            .map(|(_, path)| path)
            .collect();
        if let [path] = with_alias.as_slice() {
            return Ok((*path).clone());
        }
        let mut candidates: Vec<&str> = self.entries.iter().map(|(s, _)| s.as_str()).collect();
        candidates.extend(aliases.iter().map(|(a, _)| a.as_str()));
        Err(LoraError::UnknownName {
            name: name.to_string(),
            dir: self.dir.clone(),
            closest: closest_names(name, &candidates),
        })
    }

    /// (`ss_output_name`, path) of every readable safetensors file.
    fn aliases(&self) -> Vec<(String, PathBuf)> {
        self.entries
            .iter()
            .filter_map(|(_, path)| {
                let file = SafetensorsFile::open(path).ok()?;
                let alias = file.metadata.get("ss_output_name")?.clone();
                Some((alias, path.clone()))
            })
            .collect()
    }
}

fn walk(dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), LoraError> {
    let io_error = |source| LoraError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        if path.is_dir() {
            walk(&path, out)?;
            continue;
        }
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if NETWORK_EXTENSIONS.contains(&extension.as_str()) {
            if let Some(stem) = path.file_stem() {
                out.push((stem.to_string_lossy().into_owned(), path));
            }
        }
    }
    Ok(())
}

/// Up to five candidates by edit distance (case-insensitive), closest first; "(none)" for an empty folder.
fn closest_names(name: &str, candidates: &[&str]) -> String {
    let target = name.to_lowercase();
    let mut scored: Vec<(usize, &str)> = candidates
        .iter()
        .map(|c| (edit_distance(&target, &c.to_lowercase()), *c))
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    let shown: Vec<&str> = scored.iter().take(CLOSEST_SHOWN).map(|(_, c)| *c).collect();
    if shown.is_empty() {
        "(none: the folder has no .safetensors files)".to_string()
    } else {
        shown.join(", ")
    }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_split_multipliers_off_the_end() {
        let spec = |s: &str| parse_lora_spec(s).unwrap();
        assert_eq!(spec("a.safetensors").te, 1.0);
        let one = spec("dir/a.safetensors:0.6");
        assert_eq!(
            (one.path.to_str().unwrap(), one.te, one.unet),
            ("dir/a.safetensors", 0.6, 0.6)
        );
        let two = spec("a:b.safetensors:0.5:1");
        assert_eq!(
            (two.path.to_str().unwrap(), two.te, two.unet),
            ("a:b.safetensors", 0.5, 1.0)
        );
        assert!(parse_lora_spec(":0.5").is_err());
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("face-000003", "face-000004"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            closest_names("fcae", &["face", "zzzz", "other"]),
            "face, other, zzzz"
        );
    }
}
