//! `run.json` of a run folder: how the run was made (the command line, the LoRA folder, the model), so that
//! later steps (`pick --copy-to`, the report's metadata and "reproduce" command) find what the cells name.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::run::write_atomic;
use super::GridError;

/// What `grid` records about a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The command that (re)makes the run, shell-quoted.
    pub command: String,
    /// The LoRA folder, absolute.
    pub lora_dir: Option<PathBuf>,
    /// The model, absolute.
    pub model: Option<PathBuf>,
}

impl RunInfo {
    /// The record of a command run from the current directory (paths made absolute).
    pub fn new(args: &[String], lora_dir: Option<&Path>, model: Option<&Path>) -> RunInfo {
        RunInfo {
            command: args
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
            lora_dir: lora_dir.map(absolute),
            model: model.map(absolute),
        }
    }

    /// `run.json` of a run folder.
    pub fn path(run: &Path) -> PathBuf {
        run.join("run.json")
    }

    /// Reads `run.json` (None when absent or unreadable: it is informative only).
    pub fn read(run: &Path) -> Option<RunInfo> {
        let text = std::fs::read_to_string(Self::path(run)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes `run.json` (temporary file + rename).
    pub fn write(&self, run: &Path) -> Result<(), GridError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| GridError::Write {
            path: Self::path(run),
            reason: e.to_string(),
        })?;
        write_atomic(&Self::path(run), (text + "\n").as_bytes())
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// POSIX shell quoting: words of safe characters as they are, others in single quotes.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("--y"), "--y");
        assert_eq!(shell_quote("0.4,0.6"), "0.4,0.6");
        assert_eq!(shell_quote("photo of sks"), "'photo of sks'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn run_info_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let args = vec!["loraeval".to_string(), "grid".into(), "a b".into()];
        let info = RunInfo::new(&args, Some(Path::new("models")), None);
        assert_eq!(info.command, "loraeval grid 'a b'");
        assert!(info.lora_dir.as_ref().unwrap().is_absolute());
        info.write(dir.path()).unwrap();
        assert_eq!(RunInfo::read(dir.path()), Some(info));
        assert_eq!(RunInfo::read(&dir.path().join("absent")), None);
    }
}
