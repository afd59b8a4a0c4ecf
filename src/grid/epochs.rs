//! The LoRA files of a kohya training run in `--lora-dir`, read from their safetensors `__metadata__`
//! (`ss_epoch`, `ss_steps`, `ss_session_id`, `ss_output_name`) and ordered by epoch, never by file name.
//!
//! kohya writes `name-000001.safetensors` … for intermediate epochs and the last epoch as plain `name.safetensors`
//! (`ss_epoch` = the number of epochs); step saves are `name-step00000500.safetensors` and carry a 0-based epoch, so
//! they are not epochs. Files of different runs (`ss_session_id`, else `ss_output_name`, else the stem without the
//! suffix) are never mixed. Name lookup follows A1111's Lora extension: file stem first, then a unique alias.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;

use super::lora_tag::{lora_tag_names, LoraTarget};
use super::GridError;

/// One LoRA file with what its metadata (or, lacking it, its name) says.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochFile {
    pub path: PathBuf,
    /// File name without `.safetensors`: the name `<lora:…>` tags use.
    pub stem: String,
    pub file_name: String,
    /// `ss_epoch`, else the `-NNNNNN` suffix of the name.
    pub epoch: Option<u32>,
    /// `ss_steps` (global optimisation steps at save).
    pub steps: Option<u64>,
    /// `ss_output_name` (A1111's alias).
    pub output_name: Option<String>,
    pub session_id: Option<String>,
    /// Which run the file belongs to (session id, else output name, else stem base).
    pub run_id: String,
    /// A kohya step save (`-stepNNNNNNNN`).
    pub is_step_save: bool,
}

impl EpochFile {
    /// Grid label: "epoch 3 (600 steps)", "epoch 3", or the stem when the epoch is unknown.
    pub fn label(&self) -> String {
        match (self.epoch, self.steps) {
            (Some(epoch), Some(steps)) => format!("epoch {epoch} ({steps} steps)"),
            (Some(epoch), None) => format!("epoch {epoch}"),
            _ => self.stem.clone(),
        }
    }
}

/// The epoch files of one run, ordered by epoch (files without a known epoch last, by name).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraRun {
    pub id: String,
    /// `ss_output_name`, else the stem base.
    pub name: String,
    pub files: Vec<EpochFile>,
}

impl LoraRun {
    /// "1, 2, 3" (for messages).
    pub fn epoch_list(&self) -> String {
        self.files
            .iter()
            .map(|f| f.epoch.map_or_else(|| f.stem.clone(), |e| e.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The tag the epoch and weight axes rewrite: any stem of the run or its alias; appended as the last file.
    pub fn target(&self) -> LoraTarget {
        let mut names: Vec<String> = self.files.iter().map(|f| f.stem.clone()).collect();
        names.push(self.name.clone());
        let default_name = self
            .files
            .last()
            .map_or_else(|| self.name.clone(), |f| f.stem.clone());
        LoraTarget {
            names,
            default_name,
        }
    }
}

/// All `.safetensors` files of a folder with their metadata.
#[derive(Clone, Debug)]
pub struct LoraLibrary {
    pub dir: PathBuf,
    pub files: Vec<EpochFile>,
    /// Files that could not be read as safetensors, with the reason (they are left out).
    pub skipped: Vec<(PathBuf, String)>,
}

fn folder_error(dir: &Path, reason: impl Into<String>) -> GridError {
    GridError::LoraFolder {
        path: dir.to_path_buf(),
        reason: reason.into(),
    }
}

impl LoraLibrary {
    /// Reads the header of every `*.safetensors` file in `dir` (not recursive).
    pub fn scan(dir: &Path) -> Result<LoraLibrary, GridError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| folder_error(dir, format!("cannot list the LoRA folder: {e}")))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("safetensors"))
            })
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        let mut library = LoraLibrary {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            skipped: Vec::new(),
        };
        for path in paths {
            match read_metadata(&path) {
                Ok(metadata) => library.files.push(epoch_file(&path, &metadata)),
                Err(reason) => library.skipped.push((path, reason)),
            }
        }
        Ok(library)
    }

    /// A1111's lookup of a tag name: the file whose stem is `name`, else the only file whose alias is `name`.
    pub fn resolve(&self, name: &str) -> Option<&EpochFile> {
        if let Some(file) = self.files.iter().find(|f| f.stem == name) {
            return Some(file);
        }
        let mut aliased = self
            .files
            .iter()
            .filter(|f| f.output_name.as_deref() == Some(name));
        match (aliased.next(), aliased.next()) {
            (Some(file), None) => Some(file),
            _ => None,
        }
    }

    /// The runs in the folder, each ordered by epoch (step saves left out).
    pub fn runs(&self) -> Vec<LoraRun> {
        let mut grouped: BTreeMap<String, Vec<EpochFile>> = BTreeMap::new();
        for file in self.files.iter().filter(|f| !f.is_step_save) {
            grouped
                .entry(file.run_id.clone())
                .or_default()
                .push(file.clone());
        }
        grouped
            .into_iter()
            .map(|(id, mut files)| {
                files.sort_by(|a, b| {
                    (a.epoch.is_none(), a.epoch, &a.stem).cmp(&(
                        b.epoch.is_none(),
                        b.epoch,
                        &b.stem,
                    ))
                });
                let name = files
                    .iter()
                    .find_map(|f| f.output_name.clone())
                    .unwrap_or_else(|| stem_base(&files[0].stem).to_string());
                LoraRun { id, name, files }
            })
            .collect()
    }

    /// The run to plot: named by `lora_name` (run name or any stem), else by a `<lora:…>` tag of the prompt, else
    /// the only run of the folder. A run whose epochs repeat is refused.
    pub fn select_run(&self, lora_name: Option<&str>, prompt: &str) -> Result<LoraRun, GridError> {
        let runs = self.runs();
        if runs.is_empty() {
            return Err(folder_error(&self.dir, self.empty_reason()));
        }
        let matches = |name: &str| -> Vec<&LoraRun> {
            runs.iter()
                .filter(|r| r.name == name || r.files.iter().any(|f| f.stem == name))
                .collect()
        };
        let chosen: Vec<&LoraRun> = match lora_name {
            Some(name) => matches(name),
            None if runs.len() == 1 => runs.iter().collect(),
            None => {
                let mut found: Vec<&LoraRun> = lora_tag_names(prompt)
                    .iter()
                    .flat_map(|n| matches(n))
                    .collect();
                found.dedup_by(|a, b| a.id == b.id);
                found
            }
        };
        match chosen.as_slice() {
            [run] => check_epochs(&self.dir, run).map(|_| (*run).clone()),
            [] => Err(folder_error(
                &self.dir,
                self.choose_reason(&runs, lora_name),
            )),
            _ => Err(folder_error(
                &self.dir,
                format!(
                    "{} runs match ({}); name one with --lora-name",
                    chosen.len(),
                    describe_runs(&chosen)
                ),
            )),
        }
    }

    fn empty_reason(&self) -> String {
        let mut reason = "no LoRA files (*.safetensors) in this folder".to_string();
        for (path, why) in &self.skipped {
            reason.push_str(&format!("; skipped {}: {why}", path.display()));
        }
        reason
    }

    fn choose_reason(&self, runs: &[LoraRun], lora_name: Option<&str>) -> String {
        let listed = describe_runs(&runs.iter().collect::<Vec<_>>());
        match lora_name {
            Some(name) => format!("no run named {name:?}; runs here: {listed}"),
            None => format!(
                "the folder holds {} training runs ({listed}); pick one with --lora-name or a <lora:NAME:W> tag in the prompt",
                runs.len()
            ),
        }
    }
}

fn describe_runs(runs: &[&LoraRun]) -> String {
    runs.iter()
        .map(|r| format!("{} [{} files]", r.name, r.files.len()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_epochs(dir: &Path, run: &LoraRun) -> Result<(), GridError> {
    for pair in run.files.windows(2) {
        if pair[0].epoch.is_some() && pair[0].epoch == pair[1].epoch {
            return Err(folder_error(
                dir,
                format!(
                    "{} and {} both claim epoch {} of run {}; move one of them out",
                    pair[0].file_name,
                    pair[1].file_name,
                    pair[0].epoch.unwrap_or_default(),
                    run.name
                ),
            ));
        }
    }
    Ok(())
}

fn suffix_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^(.*)-(?:(\d{6})|step(\d{8}))$")
            .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    })
}

/// The stem without kohya's `-NNNNNN` / `-stepNNNNNNNN` suffix.
fn stem_base(stem: &str) -> &str {
    suffix_regex()
        .captures(stem)
        .and_then(|c| c.get(1))
        .map_or(stem, |m| m.as_str())
}

fn epoch_file(path: &Path, metadata: &BTreeMap<String, String>) -> EpochFile {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = suffix_regex().captures(&stem);
    let is_step_save = suffix.as_ref().is_some_and(|c| c.get(3).is_some());
    let name_epoch = suffix
        .as_ref()
        .and_then(|c| c.get(2))
        .and_then(|m| m.as_str().parse().ok());
    let meta = |key: &str| {
        metadata
            .get(key)
            .filter(|v| !v.is_empty() && v.as_str() != "None")
            .cloned()
    };
    let output_name = meta("ss_output_name");
    let session_id = meta("ss_session_id");
    let run_id = session_id
        .clone()
        .or_else(|| output_name.clone())
        .unwrap_or_else(|| stem_base(&stem).to_string());
    EpochFile {
        path: path.to_path_buf(),
        epoch: meta("ss_epoch")
            .and_then(|e| e.trim().parse().ok())
            .or(name_epoch),
        steps: meta("ss_steps").and_then(|s| s.trim().parse().ok()),
        stem,
        file_name,
        output_name,
        session_id,
        run_id,
        is_step_save,
    }
}

const MAX_HEADER_BYTES: u64 = 100 << 20;

/// The `__metadata__` of a safetensors file, reading only its header.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .map_err(|_| "too short for a safetensors header".to_string())?;
    let header_len = u64::from_le_bytes(length);
    if header_len > MAX_HEADER_BYTES || header_len + 8 > file_len {
        return Err(format!(
            "header length {header_len} does not fit the {file_len}-byte file"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let json: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| format!("bad safetensors header: {e}"))?;
    let Some(object) = json.as_object() else {
        return Err("bad safetensors header: not a JSON object".into());
    };
    Ok(object
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_suffixes_follow_kohya_names() {
        assert_eq!(stem_base("face-000004"), "face");
        assert_eq!(stem_base("face-step00000500"), "face");
        assert_eq!(stem_base("face"), "face");
        assert_eq!(stem_base("my-face-v2"), "my-face-v2");
    }

    #[test]
    fn labels_show_epoch_and_steps() {
        let mut file = epoch_file(Path::new("/x/face-000003.safetensors"), &BTreeMap::new());
        assert_eq!(file.epoch, Some(3));
        assert_eq!(file.label(), "epoch 3");
        file.steps = Some(600);
        assert_eq!(file.label(), "epoch 3 (600 steps)");
        let last = epoch_file(Path::new("/x/face.safetensors"), &BTreeMap::new());
        assert_eq!((last.epoch, last.label()), (None, "face".to_string()));
    }
}
