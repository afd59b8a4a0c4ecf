//! `grid::run::execute` with a fake renderer: the module only sees the render callback, records failures, resumes.

use image::{Rgb, RgbImage};
use loraeval::grid::axes::{Axis, AxisSpec};
use loraeval::grid::plan::{GridPlan, ModelInfo, PlanInput, Settings};
use loraeval::grid::run::{execute, RunFolder, RunOptions};
use loraeval::sampling::samplers::SamplerName;

fn plan() -> GridPlan {
    let axis = |t: &str| Axis::resolve(&AxisSpec::parse(t).unwrap(), None).unwrap();
    let input = PlanInput {
        base: Settings {
            prompt: "a red hat".into(),
            negative: String::new(),
            seed: 1,
            steps: 3,
            cfg: 7.0,
            sampler: SamplerName::Euler,
            width: 32,
            height: 48,
            clip_skip: 1,
        },
        x: axis("prompt-sr:red,blue,green"),
        y: Some(axis("seed:1,2")),
        z: None,
        seeds: vec![1],
        lora_target: None,
        library: None,
        model: ModelInfo {
            path: "model.safetensors".into(),
            sha256: "00".repeat(32),
            short_hash: "0000000000".into(),
            name: "model".into(),
        },
    };
    GridPlan::build(input, &mut |_| Ok(String::new())).unwrap()
}

#[test]
fn failures_are_recorded_and_only_missing_cells_are_rendered_again() {
    let folder = tempfile::tempdir().unwrap();
    let run = RunFolder::create(folder.path()).unwrap();
    let plan = plan();
    let mut calls = Vec::new();
    let render = |cell: &loraeval::grid::plan::CellRequest| -> Result<RgbImage, String> {
        calls.push(cell.settings.prompt.clone());
        if cell.settings.prompt.contains("green") && cell.settings.seed == 2 {
            return Err("NaN in LoRA weights".into());
        }
        Ok(RgbImage::from_pixel(
            32,
            48,
            Rgb([cell.settings.seed as u8 * 100, 0, 0]),
        ))
    };
    let summary = execute(&plan, &run, &RunOptions::default(), render, |_| {}).unwrap();
    assert_eq!(
        (summary.rendered, summary.failed.len(), summary.missing),
        (5, 1, 1)
    );
    assert_eq!(calls.len(), 6);
    assert_eq!(calls[2], "a green hat");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.path().join("grid.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["cells"][5]["status"], "failed");
    assert_eq!(manifest["cells"][5]["reason"], "NaN in LoRA weights");
    assert_eq!(manifest["summary"]["ok"], 5);
    // Second run: only the failed cell is tried again; now it succeeds and its failure record goes away.
    let mut again = Vec::new();
    let render_ok = |cell: &loraeval::grid::plan::CellRequest| -> Result<RgbImage, String> {
        again.push(cell.key.clone());
        Ok(RgbImage::from_pixel(32, 48, Rgb([0, 0, 255])))
    };
    let summary = execute(&plan, &run, &RunOptions::default(), render_ok, |_| {}).unwrap();
    assert_eq!((summary.rendered, summary.missing), (1, 0));
    assert_eq!(again, vec![plan.cells[5].key.clone()]);
    assert!(!folder
        .path()
        .join(format!("cells/{}.failed.json", plan.cells[5].key))
        .exists());
    let cell_text = loraeval::grid::run::cell_infotext(&plan, &plan.cells[4]);
    assert!(
        cell_text.starts_with("a blue hat\nSteps: 3, Sampler: Euler"),
        "{cell_text}"
    );
    assert!(cell_text.contains("Seed: 2"), "{cell_text}");
}

/// A write error in the middle of a run (as a full disk gives): the run stops with an error naming the file, the
/// reason and how to resume; the cells written before are kept, no temporary file is left, and the next run
/// renders only the rest.
#[test]
fn a_write_error_stops_the_run_and_keeps_what_was_rendered() {
    let folder = tempfile::tempdir().unwrap();
    let run = RunFolder::create(folder.path()).unwrap();
    let plan = plan();
    let cells = folder.path().join("cells");
    let moved = folder.path().join("cells-kept");
    let mut calls = 0;
    let render = |_: &loraeval::grid::plan::CellRequest| -> Result<RgbImage, String> {
        calls += 1;
        if calls == 3 {
            // The folder the third image goes to is no longer writable: `cells` becomes a plain file.
            std::fs::rename(&cells, &moved).unwrap();
            std::fs::write(&cells, b"").unwrap();
        }
        Ok(RgbImage::from_pixel(32, 48, Rgb([9, 9, 9])))
    };
    let error = execute(&plan, &run, &RunOptions::default(), render, |_| {}).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(&plan.cells[2].key) && text.contains("cannot write"),
        "{text}"
    );
    assert!(
        text.contains("the 2 cells it rendered") && text.contains("run the same command again"),
        "{text}"
    );
    std::fs::remove_file(&cells).unwrap();
    std::fs::rename(&moved, &cells).unwrap();
    let mut kept: Vec<String> = std::fs::read_dir(&cells)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    let mut expected: Vec<String> = plan.cells[..2]
        .iter()
        .map(|c| format!("{}.png", c.key))
        .collect();
    expected.sort();
    assert_eq!(kept, expected);
    let mut again = 0;
    let render_rest = |_: &loraeval::grid::plan::CellRequest| -> Result<RgbImage, String> {
        again += 1;
        Ok(RgbImage::from_pixel(32, 48, Rgb([9, 9, 9])))
    };
    let summary = execute(&plan, &run, &RunOptions::default(), render_rest, |_| {}).unwrap();
    assert_eq!((again, summary.rendered, summary.missing), (4, 4, 0));
}
