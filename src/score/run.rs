//! Scoring a run folder as it is on disk: the cells `grid.json` plans (an image counts when its file exists,
//! whoever rendered it), grouped into one row per (X, Y) position over seeds and Z values, plus the control
//! images rendered without the LoRA; reference photos from the given folders. Writes `scores.json` and
//! `scores/cache.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::metrics::{
    baselines, score_cell, CellMeta, ImageInput, ReferenceInput, ReferenceModel, ScoreSettings,
};
use super::records::{ImageRecord, RecordCache};
use super::table::{ScoreTable, SCORES_VERSION};
use super::{write_file_atomic, ScoreError};
use crate::face::pipeline::{FaceModels, PipelineOptions};
use crate::face::reference::{describe_inputs, find_images, skip_reason, ReferenceError};
use crate::face::FaceError;
use crate::grid::manifest::{CellEntry, LoraEntry, Manifest};

/// `scores.json` in a run folder.
pub fn scores_path(run: &Path) -> PathBuf {
    run.join("scores.json")
}

/// Reads a run folder's `grid.json`, with an error that says what is wrong.
pub fn read_run_manifest(run: &Path) -> Result<Manifest, ScoreError> {
    let path = run.join("grid.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ScoreError::NoManifest {
                run: run.to_path_buf(),
            })
        }
        Err(e) => {
            return Err(ScoreError::BadFile {
                path,
                reason: e.to_string(),
            })
        }
    };
    serde_json::from_str(&text).map_err(|e| ScoreError::BadFile {
        path,
        reason: format!("not a loraeval grid.json: {e}"),
    })
}

/// Reads an earlier `scores.json` (None when absent).
pub fn read_scores(run: &Path) -> Result<Option<ScoreTable>, ScoreError> {
    let path = scores_path(run);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ScoreError::BadFile {
            path,
            reason: format!("not a loraeval scores.json ({e}); delete it and score again"),
        })
}

/// The images a scoring pass needs: the run's cells and controls, and the reference photos.
#[derive(Debug)]
pub struct ScoreJob {
    pub run: PathBuf,
    pub manifest: Manifest,
    /// The `--reference` paths as given.
    pub reference_inputs: Vec<PathBuf>,
    pub reference_paths: Vec<PathBuf>,
    groups: Vec<CellGroup>,
    controls: Vec<PlannedImage>,
}

#[derive(Debug)]
struct CellGroup {
    meta: CellMeta,
    images: Vec<PlannedImage>,
}

#[derive(Debug, Clone)]
struct PlannedImage {
    /// Relative to the run folder.
    image: String,
    seed: u64,
    z_index: usize,
    prompt: String,
    /// Key of the control image of the same seed and prompt.
    control: Option<String>,
}

impl ScoreJob {
    /// Plans a scoring pass over `run` with the reference photos under `reference` (folders are searched
    /// recursively; kohya's `image/NN_name/` works as it is).
    pub fn new(run: &Path, reference: &[PathBuf]) -> Result<ScoreJob, ScoreError> {
        let manifest = read_run_manifest(run)?;
        let reference_paths = find_images(reference)?;
        if reference_paths.is_empty() {
            return Err(ReferenceError::NoImages {
                inputs: describe_inputs(reference),
            }
            .into());
        }
        let groups = cell_groups(run, &manifest);
        let controls = control_images(run, &manifest);
        Ok(ScoreJob {
            run: run.to_path_buf(),
            manifest,
            reference_inputs: reference.to_vec(),
            reference_paths,
            groups,
            controls,
        })
    }

    /// Every image file the pass reads (reference photos first), for progress bars.
    pub fn image_count(&self) -> usize {
        self.reference_paths.len() + self.planned_paths().len()
    }

    fn planned_paths(&self) -> Vec<PathBuf> {
        let cells = self.groups.iter().flat_map(|g| &g.images);
        cells
            .chain(&self.controls)
            .map(|i| self.run.join(&i.image))
            .collect()
    }

    /// Analyses what the cache lacks, computes the table and writes `scores.json` and the cache. `progress`
    /// is called once per image file.
    pub fn run(
        &self,
        models: &FaceModels,
        options: PipelineOptions,
        settings: &ScoreSettings,
        progress: &(dyn Fn() + Sync),
    ) -> Result<ScoreTable, ScoreError> {
        let mut cache = RecordCache::open(&self.run.join("scores").join("cache.json"));
        let reference_records = cache.records(&self.reference_paths, models, options, progress);
        let planned = self.planned_paths();
        let records: BTreeMap<PathBuf, Result<ImageRecord, FaceError>> = cache
            .records(&planned, models, options, progress)
            .into_iter()
            .collect();
        cache.save()?;
        let table = self.table(reference_records, &records, settings)?;
        let text = serde_json::to_string_pretty(&table).map_err(|e| ScoreError::Write {
            path: scores_path(&self.run),
            reason: e.to_string(),
        })?;
        write_file_atomic(&scores_path(&self.run), (text + "\n").as_bytes())?;
        Ok(table)
    }

    fn table(
        &self,
        reference_records: Vec<(PathBuf, Result<ImageRecord, FaceError>)>,
        records: &BTreeMap<PathBuf, Result<ImageRecord, FaceError>>,
        settings: &ScoreSettings,
    ) -> Result<ScoreTable, ScoreError> {
        let reference_inputs: Vec<ReferenceInput> = reference_records
            .into_iter()
            .map(|(path, record)| ReferenceInput {
                path: path.display().to_string(),
                record: record.map_err(|e| skip_reason(&e)),
            })
            .collect();
        let inputs = self
            .reference_inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let Some(reference) = ReferenceModel::new(inputs, &reference_inputs, settings) else {
            let unreadable = reference_inputs
                .iter()
                .filter(|p| p.record.is_err())
                .count();
            return Err(ReferenceError::NoUsableFace {
                inputs: describe_inputs(&self.reference_inputs),
                photos: reference_inputs.len(),
                no_face: reference_inputs.len() - unreadable,
                unreadable,
            }
            .into());
        };
        let trigger = settings.trigger.clone().or_else(|| self.folder_trigger());
        let inputs_of = |images: &[PlannedImage], trigger: Option<&str>| -> Vec<ImageInput> {
            images
                .iter()
                .map(|i| self.image_input(i, records, trigger))
                .collect()
        };
        let control_inputs = inputs_of(&self.controls, None);
        let baselines = baselines(&reference, &control_inputs, settings);
        let control = (!control_inputs.is_empty()).then(|| {
            let meta = CellMeta {
                label: "None".to_string(),
                planned: control_inputs.len(),
                ..CellMeta::default()
            };
            score_cell(meta, &control_inputs, &reference, &baselines)
        });
        let cells = self
            .groups
            .iter()
            .map(|g| {
                score_cell(
                    g.meta.clone(),
                    &inputs_of(&g.images, trigger.as_deref()),
                    &reference,
                    &baselines,
                )
            })
            .collect();
        let axes = &self.manifest.axes;
        Ok(ScoreTable {
            version: SCORES_VERSION,
            reference: reference.report.clone(),
            baselines,
            control,
            cells,
            x_axis: axes.x.label.clone(),
            y_axis: axes.y.as_ref().map(|y| y.label.clone()),
            trigger,
        })
    }

    /// The name of kohya's `NN_name` folder holding the reference photos (its first word), when some cell prompt
    /// uses it: then prompts without it are the side-effect test.
    fn folder_trigger(&self) -> Option<String> {
        let name = self.reference_paths.iter().find_map(|path| {
            let folder = path.parent()?.file_name()?.to_str()?;
            let (repeats, name) = folder.split_once('_')?;
            let word = name.split_whitespace().next()?;
            repeats
                .chars()
                .all(|c| c.is_ascii_digit())
                .then(|| word.to_string())
        })?;
        let used = self
            .manifest
            .cells
            .iter()
            .any(|c| names_person(&c.params.prompt, Some(&name)));
        used.then_some(name)
    }

    fn image_input(
        &self,
        image: &PlannedImage,
        records: &BTreeMap<PathBuf, Result<ImageRecord, FaceError>>,
        trigger: Option<&str>,
    ) -> ImageInput {
        let record = match records.get(&self.run.join(&image.image)) {
            Some(Ok(record)) => Ok(record.clone()),
            Some(Err(error)) => Err(skip_reason(error)),
            None => Err("not analysed".to_string()),
        };
        ImageInput {
            image: image.image.clone(),
            seed: image.seed,
            z_index: image.z_index,
            prompt: image.prompt.clone(),
            asks_for_person: names_person(&image.prompt, trigger),
            control_thumbnail: image.control.as_ref().and_then(|key| {
                let path = self.run.join(format!("cells/{key}.png"));
                records
                    .get(&path)?
                    .as_ref()
                    .ok()
                    .map(|r| r.thumbnail_levels())
            }),
            record,
        }
    }
}

/// The prompt (without its `<lora:…>` tags) holds `trigger` as a word, case-insensitively; always true without
/// a trigger.
pub fn names_person(prompt: &str, trigger: Option<&str>) -> bool {
    let Some(trigger) = trigger else {
        return true;
    };
    let text = crate::grid::plan::control_prompt(prompt).to_lowercase();
    let trigger = trigger.to_lowercase();
    text.split(|c: char| !c.is_alphanumeric() && c != '_')
        .any(|word| word == trigger)
}

/// The cell's image path relative to the run folder (`cells/<key>.png`).
fn image_of(cell: &CellEntry) -> String {
    format!("cells/{}.png", cell.key)
}

/// One group per (x, y) position, in plan order; an image counts when its file exists.
fn cell_groups(run: &Path, manifest: &Manifest) -> Vec<CellGroup> {
    let subject = subject_lora_index(manifest);
    let mut groups: Vec<CellGroup> = Vec::new();
    for cell in &manifest.cells {
        let position = groups
            .iter()
            .position(|g| (g.meta.x_index, g.meta.y_index) == (cell.x_index, cell.y_index));
        let index = position.unwrap_or_else(|| {
            groups.push(CellGroup {
                meta: cell_meta(manifest, cell, subject),
                images: Vec::new(),
            });
            groups.len() - 1
        });
        let group = &mut groups[index];
        group.meta.planned += 1;
        let image = image_of(cell);
        if run.join(&image).is_file() {
            group.images.push(planned(cell, image));
        } else if cell.status == "failed" {
            group.meta.failed += 1;
        } else {
            group.meta.missing += 1;
        }
    }
    groups
}

/// The images rendered without any LoRA that share seeds and prompts with the LoRA cells: the run's controls
/// and cells of a "None" axis value (each key once, only files that exist).
fn control_images(run: &Path, manifest: &Manifest) -> Vec<PlannedImage> {
    let has_lora = manifest.cells.iter().any(|c| !c.params.loras.is_empty());
    if !has_lora {
        return Vec::new();
    }
    let controls = manifest
        .controls
        .iter()
        .map(|c| (c.key.as_str(), &c.params, c.z_index));
    let plain = manifest
        .cells
        .iter()
        .filter(|c| c.params.loras.is_empty())
        .map(|c| (c.key.as_str(), &c.params, c.z_index));
    let mut seen = std::collections::HashSet::new();
    controls
        .chain(plain)
        .filter(|(key, _, _)| seen.insert(key.to_string()))
        .map(|(key, params, z_index)| PlannedImage {
            image: format!("cells/{key}.png"),
            seed: params.seed,
            z_index,
            prompt: params.prompt.clone(),
            control: None,
        })
        .filter(|i| run.join(&i.image).is_file())
        .collect()
}

fn planned(cell: &CellEntry, image: String) -> PlannedImage {
    PlannedImage {
        image,
        seed: cell.params.seed,
        z_index: cell.z_index,
        prompt: cell.params.prompt.clone(),
        control: cell.control.clone(),
    }
}

/// Index of the LoRA tag whose (file, weight) varies across the cells (the one the grid evaluates), else 0.
fn subject_lora_index(manifest: &Manifest) -> usize {
    let most = manifest
        .cells
        .iter()
        .map(|c| c.params.loras.len())
        .max()
        .unwrap_or(0);
    (0..most)
        .find(|&k| {
            let mut values = manifest.cells.iter().map(|c| {
                c.params
                    .loras
                    .get(k)
                    .map(|l| (l.file.clone(), l.weight.to_bits()))
            });
            let first = values.next();
            values.any(|v| Some(v) != first)
        })
        .unwrap_or(0)
}

fn cell_meta(manifest: &Manifest, cell: &CellEntry, subject: usize) -> CellMeta {
    let lora: Option<&LoraEntry> = cell.params.loras.get(subject);
    let axis_label = |labels: Option<&Vec<String>>, i: usize| {
        labels.and_then(|l| l.get(i)).cloned().unwrap_or_default()
    };
    let label = match lora {
        Some(l) => {
            let name = l.file.as_deref().map_or(l.name.as_str(), |f| {
                f.strip_suffix(".safetensors").unwrap_or(f)
            });
            format!("{name} @ {}", l.weight)
        }
        None => {
            let x = axis_label(Some(&manifest.axes.x.labels), cell.x_index);
            let y = axis_label(manifest.axes.y.as_ref().map(|a| &a.labels), cell.y_index);
            [x, y]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" / ")
        }
    };
    CellMeta {
        label,
        file: lora.and_then(|l| l.file.clone().or(Some(l.name.clone()))),
        epoch: lora.and_then(|l| l.epoch),
        weight: lora.map(|l| l.weight),
        x_index: cell.x_index,
        y_index: cell.y_index,
        ..CellMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_words_are_matched_as_words_outside_lora_tags() {
        assert!(names_person("photo of sks woman", None));
        assert!(names_person("photo of SKS, smiling", Some("sks")));
        assert!(!names_person(
            "photo of a woman <lora:sks-000002:0.8>",
            Some("sks")
        ));
        assert!(!names_person("photo of sksx woman", Some("sks")));
        assert!(names_person("(sks:1.2) portrait", Some("sks")));
    }
}
