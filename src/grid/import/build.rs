//! `grid.json` of an imported run: the same manifest a rendered run has (X = epochs, Y = LoRA weights, Z = the
//! varying settings when there are several levels, seeds, cells, controls), with `source` and each image's
//! original file.

use serde_json::{json, Value};

use super::layout::{Candidate, Layout, Placed};
use super::settings::{tidy_prompt, ImageSettings, TagLora};
use crate::grid::manifest::{
    AxesEntry, AxisEntry, CellEntry, ControlEntry, LoraEntry, Manifest, ModelEntry, ParamsEntry,
    SummaryEntry, MANIFEST_VERSION,
};
use crate::grid::values::float_label;

/// The manifest of `layout`.
pub fn manifest(layout: &Layout, candidates: &[Candidate], source: &str) -> Manifest {
    let cells: Vec<CellEntry> = layout
        .cells
        .iter()
        .map(|p| cell_entry(layout, &candidates[p.index], p))
        .collect();
    let controls = layout
        .controls
        .iter()
        .map(|p| control_entry(layout, &candidates[p.index], p))
        .collect();
    let first = layout.cells.first().map(|p| &candidates[p.index].settings);
    let n = cells.len();
    Manifest {
        version: MANIFEST_VERSION,
        model: first.map_or_else(empty_model, model_entry),
        axes: AxesEntry {
            x: x_axis(layout),
            y: Some(y_axis(layout)),
            z: z_axis(layout),
        },
        seeds: layout.seeds.clone(),
        base: first.map_or_else(empty_params, base_params),
        grids: Vec::new(),
        cells,
        controls,
        summary: SummaryEntry {
            cells: n,
            ok: n,
            failed: 0,
            missing: 0,
        },
        source: Some(source.to_string()),
    }
}

fn cell_entry(layout: &Layout, candidate: &Candidate, placed: &Placed) -> CellEntry {
    CellEntry {
        x_index: placed.x,
        y_index: placed.y,
        z_index: placed.z,
        seed_index: placed.seed,
        key: candidate.key.clone(),
        image: image_path(&candidate.key),
        status: "ok".to_string(),
        reason: None,
        params: params(layout, &candidate.settings, Some(placed.x)),
        control: placed.control.clone(),
        original: Some(candidate.original.clone()),
    }
}

fn control_entry(layout: &Layout, candidate: &Candidate, placed: &Placed) -> ControlEntry {
    ControlEntry {
        key: candidate.key.clone(),
        image: image_path(&candidate.key),
        status: "ok".to_string(),
        reason: None,
        z_index: placed.z,
        seed_index: placed.seed,
        params: params(layout, &candidate.settings, None),
        original: Some(candidate.original.clone()),
    }
}

/// `cells/<key>.png`, where scoring looks for a cell's image.
pub fn image_path(key: &str) -> String {
    format!("cells/{key}.png")
}

/// The image's settings; the run's LoRA first (with its epoch file when `x` is given), then the others.
fn params(layout: &Layout, s: &ImageSettings, x: Option<usize>) -> ParamsEntry {
    let epoch = x.and_then(|x| layout.x.get(x));
    let (subject, others): (Vec<&TagLora>, Vec<&TagLora>) = s
        .loras
        .iter()
        .partition(|l| epoch.is_some_and(|e| e.name == l.name));
    let loras = subject
        .into_iter()
        .map(|l| LoraEntry {
            name: l.name.clone(),
            file: epoch.and_then(|e| e.file_name()),
            weight: l.te,
            unet_weight: l.unet,
            epoch: epoch.and_then(|e| e.epoch),
            sha256: None,
        })
        .chain(others.into_iter().map(|l| LoraEntry {
            name: l.name.clone(),
            file: None,
            weight: l.te,
            unet_weight: l.unet,
            epoch: None,
            sha256: None,
        }))
        .collect();
    ParamsEntry {
        prompt: s.prompt.clone(),
        negative: s.negative.clone(),
        seed: s.seed,
        steps: s.steps,
        cfg: s.cfg,
        sampler: s.sampler.clone(),
        width: s.width as usize,
        height: s.height as usize,
        clip_skip: s.clip_skip as usize,
        loras,
    }
}

fn base_params(s: &ImageSettings) -> ParamsEntry {
    ParamsEntry {
        prompt: tidy_prompt(&s.prompt),
        negative: s.negative.clone(),
        seed: s.seed,
        steps: s.steps,
        cfg: s.cfg,
        sampler: s.sampler.clone(),
        width: s.width as usize,
        height: s.height as usize,
        clip_skip: s.clip_skip as usize,
        loras: Vec::new(),
    }
}

fn empty_params() -> ParamsEntry {
    ParamsEntry {
        prompt: String::new(),
        negative: String::new(),
        seed: 0,
        steps: 0,
        cfg: 0.0,
        sampler: String::new(),
        width: 0,
        height: 0,
        clip_skip: 1,
        loras: Vec::new(),
    }
}

fn model_entry(s: &ImageSettings) -> ModelEntry {
    let name = s.model_name.clone().unwrap_or_default();
    ModelEntry {
        file: name.clone(),
        sha256: String::new(),
        hash: s.model_hash.clone().unwrap_or_default(),
        name,
    }
}

fn empty_model() -> ModelEntry {
    ModelEntry {
        file: String::new(),
        sha256: String::new(),
        hash: String::new(),
        name: String::new(),
    }
}

fn x_axis(layout: &Layout) -> AxisEntry {
    let x = &layout.x;
    let files: Vec<Option<String>> = x.iter().map(|v| v.file_name()).collect();
    AxisEntry {
        kind: "epochs".to_string(),
        label: "Epoch".to_string(),
        raw: layout.subject.clone(),
        values: x
            .iter()
            .map(|v| v.epoch.map_or_else(|| json!(v.name), |e| json!(e)))
            .collect(),
        labels: x.iter().map(|v| v.label.clone()).collect(),
        files: files
            .iter()
            .all(Option::is_some)
            .then(|| files.into_iter().flatten().collect()),
    }
}

fn y_axis(layout: &Layout) -> AxisEntry {
    let label = |(te, unet): (f64, f64)| match te.to_bits() == unet.to_bits() {
        true => float_label(te),
        false => format!("{}:{}", float_label(te), float_label(unet)),
    };
    let labels: Vec<String> = layout.y.iter().map(|w| label(*w)).collect();
    AxisEntry {
        kind: "weight".to_string(),
        label: "LoRA weight".to_string(),
        raw: labels.join(","),
        values: layout.y.iter().map(|(te, _)| json!(te)).collect(),
        labels: labels.iter().map(|l| format!("LoRA weight: {l}")).collect(),
        files: None,
    }
}

/// Z: one level per distinct combination of the varying settings; named after the one setting that varies, or
/// "settings" when several do.
fn z_axis(layout: &Layout) -> Option<AxisEntry> {
    if layout.levels.len() < 2 {
        return None;
    }
    let varying = varying_fields(&layout.levels);
    let value = |level: &[(String, String)], name: &str| {
        level
            .iter()
            .find(|(n, _)| n == name)
            .map_or(String::new(), |(_, v)| v.clone())
    };
    let labels: Vec<String> = layout
        .levels
        .iter()
        .map(|level| {
            varying
                .iter()
                .map(|name| match name.as_str() {
                    "Prompt" => value(level, name),
                    _ => format!("{name}: {}", value(level, name)),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    let values: Vec<Value> = layout
        .levels
        .iter()
        .map(|level| match varying.as_slice() {
            [one] if matches!(one.as_str(), "Steps" | "CFG scale" | "Clip skip") => {
                number_or_text(&value(level, one))
            }
            [one] => json!(value(level, one)),
            _ => Value::Object(
                varying
                    .iter()
                    .map(|name| (name.clone(), json!(value(level, name))))
                    .collect(),
            ),
        })
        .collect();
    let (kind, label) = match varying.as_slice() {
        [one] => z_kind(one),
        _ => ("settings".to_string(), varying.join(" / ")),
    };
    Some(AxisEntry {
        kind,
        label,
        raw: labels.join(" | "),
        values,
        labels,
        files: None,
    })
}

/// The setting names whose values differ between levels, in order.
fn varying_fields(levels: &[Vec<(String, String)>]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in levels.iter().flatten() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let value = |level: &Vec<(String, String)>, name: &str| {
        level
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    names
        .into_iter()
        .filter(|name| {
            let first = value(&levels[0], name);
            levels.iter().any(|l| value(l, name) != first)
        })
        .collect()
}

/// The axis type and A1111 label of one varying setting.
fn z_kind(name: &str) -> (String, String) {
    let (kind, label) = match name {
        "Prompt" => ("prompt", "Prompt"),
        "Steps" => ("steps", "Steps"),
        "CFG scale" => ("cfg", "CFG Scale"),
        "Sampler" => ("sampler", "Sampler"),
        "Clip skip" => ("clip-skip", "Clip skip"),
        other => ("setting", other),
    };
    (kind.to_string(), label.to_string())
}

fn number_or_text(text: &str) -> Value {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map_or_else(|| json!(text), |v| json!(v))
}
