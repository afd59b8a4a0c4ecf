//! Grid specs (`grids/*.yaml`: axes, sampling settings, seeds, prompt or prompt set) and prompt sets
//! (`prompts/*.yaml`: named prompts with negatives). Unknown keys are errors. YAML is read in one place,
//! [`from_yaml`].

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::axes::PromptEntry;
use super::GridError;

/// A grid spec file. Every field is optional; command-line flags override it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSpec {
    /// A sentence shown in the file list (not used otherwise).
    pub description: Option<String>,
    /// Base model (relative to this spec's folder).
    pub model: Option<PathBuf>,
    /// Folder of a training run's LoRA files (relative to this spec's folder).
    pub lora_dir: Option<PathBuf>,
    pub lora_name: Option<String>,
    /// Axes as on the command line: `epochs`, `0.4,0.6,0.8,1.0`, `steps:10-30 (+10)`, …
    pub x: Option<String>,
    pub y: Option<String>,
    pub z: Option<String>,
    pub prompt: Option<String>,
    pub negative: Option<String>,
    /// A prompt set file (relative to this spec's folder): one grid per prompt.
    pub prompts: Option<PathBuf>,
    pub seed: Option<i64>,
    pub seeds: Option<SeedsSpec>,
    pub steps: Option<usize>,
    pub cfg: Option<f64>,
    pub sampler: Option<String>,
    pub width: Option<usize>,
    pub height: Option<usize>,
    pub clip_skip: Option<usize>,
    /// RNG source: `gpu` (A1111's default), `cpu` or `nv`.
    pub rng: Option<String>,
    /// Eta noise seed delta (A1111's ENSD; 0 = off).
    pub ensd: Option<u64>,
    pub margin: Option<u32>,
    /// `false` skips the controls (each LoRA cell's settings rendered without LoRAs); `--no-control` does too.
    pub control: Option<bool>,
    /// Reference (training) photos, folders or files (relative to this spec's folder): after rendering, every
    /// cell is scored against them, a checkpoint recommended and report.html written. `--reference` replaces it.
    pub reference: Option<Vec<PathBuf>>,
}

/// `seeds: 3` (three consecutive seeds from `seed`) or `seeds: [1, 2, 3]` / `seeds: "1-3"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SeedsSpec {
    Count(u64),
    List(Vec<u64>),
    Text(String),
}

/// A prompt set file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSet {
    pub description: Option<String>,
    pub prompts: Vec<PromptEntry>,
}

/// Parses YAML text into `T`; errors name the file, the line and the unknown or malformed key.
pub fn from_yaml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, GridError> {
    serde_norway::from_str(text).map_err(|e| GridError::Spec {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn read_text(path: &Path) -> Result<String, GridError> {
    std::fs::read_to_string(path).map_err(GridError::io(path))
}

impl GridSpec {
    /// Reads a spec file; relative `prompts`, `model`, `lora_dir` and `reference` paths are made relative to the
    /// spec's folder.
    pub fn read(path: &Path) -> Result<GridSpec, GridError> {
        let mut spec: GridSpec = from_yaml(&read_text(path)?, path)?;
        if let Some(folder) = path.parent() {
            for entry in [&mut spec.prompts, &mut spec.model, &mut spec.lora_dir] {
                if let Some(relative) = entry.as_ref().filter(|p| p.is_relative()) {
                    *entry = Some(folder.join(relative));
                }
            }
            for reference in spec.reference.iter_mut().flatten() {
                if reference.is_relative() {
                    *reference = folder.join(&*reference);
                }
            }
        }
        Ok(spec)
    }
}

impl PromptSet {
    /// Reads a prompt set; it must hold at least one prompt, with distinct names.
    pub fn read(path: &Path) -> Result<PromptSet, GridError> {
        let set: PromptSet = from_yaml(&read_text(path)?, path)?;
        let invalid = |reason: String| GridError::Spec {
            path: path.to_path_buf(),
            reason,
        };
        if set.prompts.is_empty() {
            return Err(invalid("the prompt set has no prompts".into()));
        }
        for (i, entry) in set.prompts.iter().enumerate() {
            if set.prompts[..i].iter().any(|e| e.name == entry.name) {
                return Err(invalid(format!("two prompts are named {:?}", entry.name)));
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_spec_with_every_seed_form() {
        let spec: GridSpec = from_yaml(
            "x: epochs\ny: 0.4,0.6,0.8,1.0\nseeds: 3\nsteps: 20\ncfg: 7\n",
            Path::new("a.yaml"),
        )
        .unwrap();
        assert_eq!(spec.x.as_deref(), Some("epochs"));
        assert_eq!(spec.seeds, Some(SeedsSpec::Count(3)));
        let list: GridSpec = from_yaml("seeds: [1, 5]", Path::new("a.yaml")).unwrap();
        assert_eq!(list.seeds, Some(SeedsSpec::List(vec![1, 5])));
        let text: GridSpec = from_yaml("seeds: \"1-3\"", Path::new("a.yaml")).unwrap();
        assert_eq!(text.seeds, Some(SeedsSpec::Text("1-3".into())));
        assert_eq!(spec.control, None);
        let off: GridSpec = from_yaml("control: false", Path::new("a.yaml")).unwrap();
        assert_eq!(off.control, Some(false));
        let noise: GridSpec = from_yaml("rng: cpu\nensd: 31337\n", Path::new("a.yaml")).unwrap();
        assert_eq!(
            (noise.rng.as_deref(), noise.ensd),
            (Some("cpu"), Some(31337))
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err =
            from_yaml::<GridSpec>("x: epochs\nstpes: 20\n", Path::new("grids/a.yaml")).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("grids/a.yaml: "), "{message}");
        assert!(message.contains("unknown field `stpes`"), "{message}");
        let prompt = "prompts:\n  - name: a\n    prompt: b\n    negtive: c\n";
        let err = from_yaml::<PromptSet>(prompt, Path::new("p.yaml")).unwrap_err();
        assert!(err.to_string().contains("unknown field `negtive`"), "{err}");
    }
}
