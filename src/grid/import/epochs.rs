//! Which epoch file an imported image's LoRA tag names: with `--lora-dir`, the file A1111 would load (stem, else
//! a unique `ss_output_name` alias) and its `ss_epoch`; without, or for a name the folder lacks, kohya's
//! `-NNNNNN` suffix. A1111's short hash of a file (`sshs_model_hash`, else the SHA-256 of its tensor data; first
//! 12 digits) is computed once, when an image's `Lora hashes` needs it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;

use crate::grid::epochs::{read_metadata, EpochFile, LoraLibrary};

/// Digits of A1111's short LoRA hash.
const SHORT_HASH_DIGITS: usize = 12;

/// One X value: the epoch file a tag names.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochValue {
    /// The tag's name (the file stem A1111 resolves).
    pub name: String,
    /// The file in `--lora-dir` (None without the folder, or when it lacks the name).
    pub file: Option<PathBuf>,
    pub epoch: Option<u32>,
    /// "epoch 3 (600 steps)", "epoch 3", or the name.
    pub label: String,
}

impl EpochValue {
    /// The file name (`sks-000002.safetensors`) when the folder has the file.
    pub fn file_name(&self) -> Option<String> {
        self.file
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    }

    /// Sort key: known epochs in order, then the rest by name (kohya's last file has no suffix).
    pub fn order(&self) -> (bool, Option<u32>, String) {
        (self.epoch.is_none(), self.epoch, self.name.clone())
    }
}

/// The LoRA folder, if any, with the short hashes computed so far.
pub struct LoraFiles {
    library: Option<LoraLibrary>,
    hashes: RefCell<HashMap<PathBuf, Result<String, String>>>,
}

impl LoraFiles {
    pub fn new(library: Option<LoraLibrary>) -> LoraFiles {
        LoraFiles {
            library,
            hashes: RefCell::new(HashMap::new()),
        }
    }

    /// The folder, when given.
    pub fn dir(&self) -> Option<&Path> {
        self.library.as_ref().map(|l| l.dir.as_path())
    }

    fn resolve(&self, name: &str) -> Option<&EpochFile> {
        self.library.as_ref()?.resolve(name)
    }

    /// The epoch file of a tag name.
    pub fn epoch_value(&self, name: &str) -> EpochValue {
        match self.resolve(name) {
            Some(file) => EpochValue {
                name: name.to_string(),
                file: Some(file.path.clone()),
                epoch: file.epoch,
                label: file.label(),
            },
            None => {
                let epoch = kohya_suffix(name).1;
                EpochValue {
                    name: name.to_string(),
                    file: None,
                    epoch,
                    label: epoch.map_or_else(|| name.to_string(), |e| format!("epoch {e}")),
                }
            }
        }
    }

    /// The training run a tag name belongs to: the file's `ss_output_name`, else the name without kohya's suffix.
    pub fn run_of(&self, name: &str) -> String {
        self.resolve(name)
            .and_then(|f| f.output_name.clone())
            .unwrap_or_else(|| kohya_suffix(name).0.to_string())
    }

    /// A1111's short hash of `path` (cached).
    pub fn short_hash(&self, path: &PathBuf) -> Result<String, String> {
        if let Some(known) = self.hashes.borrow().get(path) {
            return known.clone();
        }
        let hash = file_hash(path).map(|h| h.chars().take(SHORT_HASH_DIGITS).collect());
        self.hashes.borrow_mut().insert(path.clone(), hash.clone());
        hash
    }
}

fn file_hash(path: &Path) -> Result<String, String> {
    let metadata = read_metadata(path)?;
    match metadata.get("sshs_model_hash").filter(|h| !h.is_empty()) {
        Some(hash) => Ok(hash.to_lowercase()),
        None => crate::lora::hash::addnet_hash(path).map_err(|e| e.to_string()),
    }
}

/// (name without the suffix, epoch) of kohya's `name-NNNNNN` (a step save `-stepNNNNNNNN` has no epoch).
pub fn kohya_suffix(name: &str) -> (&str, Option<u32>) {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"^(.*)-(?:(\d{6})|step\d{8})$")
            .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    });
    match re.captures(name) {
        Some(c) => (
            c.get(1).map_or(name, |m| m.as_str()),
            c.get(2).and_then(|m| m.as_str().parse().ok()),
        ),
        None => (name, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kohya_names_give_run_and_epoch() {
        assert_eq!(kohya_suffix("sks-000004"), ("sks", Some(4)));
        assert_eq!(kohya_suffix("sks-step00000500"), ("sks", None));
        assert_eq!(kohya_suffix("sks"), ("sks", None));
        let files = LoraFiles::new(None);
        assert_eq!(files.run_of("my-face-000002"), "my-face");
        let value = files.epoch_value("sks-000002");
        assert_eq!((value.epoch, value.label.as_str()), (Some(2), "epoch 2"));
        assert_eq!(files.epoch_value("sks").label, "sks");
    }
}
