//! `grid::run::execute` with a fake renderer: the module only sees the render callback, records failures, resumes;
//! controls (each LoRA cell's settings without the LoRA) are planned once per seed and prompt, rendered, resumed
//! and sharded like cells, listed in `grid.json`, and not drawn.

use std::collections::BTreeMap;

use image::{Rgb, RgbImage};
use loraeval::grid::axes::{Axis, AxisSpec};
use loraeval::grid::lora_tag::LoraTarget;
use loraeval::grid::manifest::Manifest;
use loraeval::grid::plan::{CellRequest, GridPlan, ModelInfo, PlanInput, Settings, Shard};
use loraeval::grid::run::{execute, read_manifest, RunFolder, RunOptions};
use loraeval::sampling::rng::RngSource;
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
            rng: RngSource::Gpu,
            ensd: 0,
        },
        x: axis("prompt-sr:red,blue,green"),
        y: Some(axis("seed:1,2")),
        z: None,
        seeds: vec![1],
        lora_target: None,
        library: None,
        model: model(),
        control: true,
    };
    GridPlan::build(input, &mut |_| Ok(String::new())).unwrap()
}

fn model() -> ModelInfo {
    ModelInfo {
        path: "model.safetensors".into(),
        sha256: "00".repeat(32),
        short_hash: "0000000000".into(),
        name: "model".into(),
    }
}

fn axis(text: &str) -> Axis {
    Axis::resolve(&AxisSpec::parse(text).unwrap(), None).unwrap()
}

fn settings(prompt: &str) -> Settings {
    Settings {
        prompt: prompt.into(),
        negative: "blurry".into(),
        seed: 1,
        steps: 3,
        cfg: 7.0,
        sampler: SamplerName::Euler,
        width: 32,
        height: 48,
        clip_skip: 1,
        rng: RngSource::Gpu,
        ensd: 0,
    }
}

/// LoRA weights 0.4, 0.7, 1.0 (X) × two prompts (Y) × seeds 1 and 2: 12 cells; the `<lora:face:W>` tag is
/// appended to "a red hat" / "a blue hat".
fn lora_plan(control: bool) -> GridPlan {
    let input = PlanInput {
        base: settings("a red hat"),
        x: axis("0.4,0.7,1.0"),
        y: Some(axis("prompt-sr:red,blue")),
        z: None,
        seeds: vec![1, 2],
        lora_target: Some(LoraTarget::single("face")),
        library: None,
        model: model(),
        control,
    };
    GridPlan::build(input, &mut |_| Ok(String::new())).unwrap()
}

/// A renderer that records the prompt and key of every image it makes; the image's colour comes from the key.
fn recording(
    calls: &mut Vec<(String, String)>,
) -> impl FnMut(&CellRequest) -> Result<RgbImage, String> + '_ {
    |cell| {
        calls.push((cell.key.clone(), cell.settings.prompt.clone()));
        let byte = |i: usize| u8::from_str_radix(&cell.key[2 * i..2 * i + 2], 16).unwrap();
        Ok(RgbImage::from_pixel(
            32,
            48,
            Rgb([byte(0), byte(1), byte(2)]),
        ))
    }
}

fn manifest_json(root: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root.join("grid.json")).unwrap()).unwrap()
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

#[test]
fn controls_are_planned_once_per_seed_and_prompt_not_per_lora_weight() {
    let plan = lora_plan(true);
    assert_eq!(plan.cells.len(), 12);
    // 2 prompts × 2 seeds; the three weights share one control.
    assert_eq!(plan.controls.len(), 4);
    for control in &plan.controls {
        assert!(
            !control.settings.prompt.contains("<lora"),
            "{}",
            control.settings.prompt
        );
        assert!(control.loras.is_empty());
        assert_eq!((control.x_index, control.y_index), (0, 0));
    }
    for cell in &plan.cells {
        assert!(
            cell.settings.prompt.contains("<lora:face:"),
            "{}",
            cell.settings.prompt
        );
        let control = plan
            .controls
            .iter()
            .find(|c| Some(&c.key) == cell.control.as_ref())
            .expect("every LoRA cell names a planned control");
        assert_eq!(control.seed_index, cell.seed_index);
        let mut without_tag = cell.settings.clone();
        without_tag.prompt = control.settings.prompt.clone();
        assert_eq!(control.settings, without_tag);
    }
    // A control's key is the key of a plain cell (no LoRA anywhere) with the same settings: the tag leaves the
    // prompt as A1111 reads it once the tag is removed, "a red hat " with the space before the tag.
    let plain = GridPlan::build(
        PlanInput {
            base: settings("a red hat "),
            x: axis("prompt-sr:red,blue"),
            y: None,
            z: None,
            seeds: vec![1, 2],
            lora_target: None,
            library: None,
            model: model(),
            control: true,
        },
        &mut |_| Ok(String::new()),
    )
    .unwrap();
    assert!(plain.controls.is_empty());
    let mut plain_keys: Vec<&str> = plain.cells.iter().map(|c| c.key.as_str()).collect();
    let mut control_keys: Vec<&str> = plan.controls.iter().map(|c| c.key.as_str()).collect();
    plain_keys.sort();
    control_keys.sort();
    assert_eq!(control_keys, plain_keys);
    let off = lora_plan(false);
    assert!(off.controls.is_empty());
    assert!(off.cells.iter().all(|c| c.control.is_none()));
}

#[test]
fn controls_are_rendered_once_listed_in_grid_json_and_not_drawn() {
    let folder = tempfile::tempdir().unwrap();
    let run = RunFolder::create(folder.path()).unwrap();
    let plan = lora_plan(true);
    let mut calls = Vec::new();
    let mut totals = Vec::new();
    let summary = execute(
        &plan,
        &run,
        &RunOptions::default(),
        recording(&mut calls),
        |event| {
            if let loraeval::grid::run::RunEvent::CellFinished { total, .. } = event {
                totals.push(total);
            }
        },
    )
    .unwrap();
    assert_eq!((summary.rendered, summary.controls_rendered), (12, 4));
    assert_eq!((summary.missing, summary.controls_missing), (0, 0));
    assert_eq!(calls.len(), 16);
    assert!(totals.iter().all(|t| *t == 16), "{totals:?}");
    let control_prompts: Vec<&String> = calls
        .iter()
        .filter(|(key, _)| plan.controls.iter().any(|c| c.key == *key))
        .map(|(_, prompt)| prompt)
        .collect();
    assert_eq!(control_prompts.len(), 4);
    assert!(control_prompts.iter().all(|p| !p.contains("<lora")));
    for control in &plan.controls {
        let path = folder.path().join(control.image_name());
        assert!(path.is_file(), "{}", path.display());
    }

    // grid.json lists the controls, and every LoRA cell names one of them.
    let json = manifest_json(folder.path());
    let controls = json["controls"].as_array().unwrap();
    assert_eq!(controls.len(), 4);
    for control in controls {
        assert_eq!(control["status"], "ok");
        let image = control["image"].as_str().unwrap();
        assert_eq!(
            image,
            format!("cells/{}.png", control["key"].as_str().unwrap())
        );
        assert!(folder.path().join(image).is_file());
        assert!(control["params"]["loras"].as_array().unwrap().is_empty());
        assert!(!control["params"]["prompt"]
            .as_str()
            .unwrap()
            .contains("<lora"));
        assert!(control.get("x_index").is_none());
    }
    let manifest = read_manifest(folder.path()).unwrap();
    for cell in &manifest.cells {
        let key = cell
            .control
            .as_ref()
            .expect("a LoRA cell names its control");
        let control = manifest.controls.iter().find(|c| &c.key == key).unwrap();
        assert_eq!(control.params.seed, cell.params.seed);
        assert_eq!(control.seed_index, cell.seed_index);
    }
    assert_eq!(manifest.summary.cells, 12);

    // The grid images are those of a run without controls.
    let plain_folder = tempfile::tempdir().unwrap();
    let plain_run = RunFolder::create(plain_folder.path()).unwrap();
    let mut plain_calls = Vec::new();
    let plain = lora_plan(false);
    execute(
        &plain,
        &plain_run,
        &RunOptions::default(),
        recording(&mut plain_calls),
        |_| {},
    )
    .unwrap();
    assert_eq!(plain_calls.len(), 12);
    assert!(manifest_json(plain_folder.path())["controls"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(read_manifest(plain_folder.path())
        .unwrap()
        .cells
        .iter()
        .all(|c| c.control.is_none()));
    for grid in &summary.grids {
        let name = grid.file_name().unwrap();
        let with = image::open(grid).unwrap().to_rgb8();
        let without = image::open(plain_folder.path().join(name))
            .unwrap()
            .to_rgb8();
        assert!(with == without, "{} differs", name.to_string_lossy());
    }

    // A second run renders nothing.
    let mut again = Vec::new();
    let summary = execute(
        &plan,
        &run,
        &RunOptions::default(),
        recording(&mut again),
        |_| {},
    )
    .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!((summary.rendered, summary.controls_rendered), (0, 0));
}

#[test]
fn shards_together_render_every_cell_and_control_exactly_once() {
    let folder = tempfile::tempdir().unwrap();
    let run = RunFolder::create(folder.path()).unwrap();
    let plan = lora_plan(true);
    let mut renders: BTreeMap<String, usize> = BTreeMap::new();
    for index in 1..=3 {
        let options = RunOptions {
            shard: Some(Shard { index, count: 3 }),
            ..RunOptions::default()
        };
        let mut calls = Vec::new();
        execute(&plan, &run, &options, recording(&mut calls), |_| {}).unwrap();
        for (key, _) in calls {
            *renders.entry(key).or_default() += 1;
        }
    }
    let expected: BTreeMap<String, usize> = plan
        .cells
        .iter()
        .chain(&plan.controls)
        .map(|c| (c.key.clone(), 1))
        .collect();
    assert_eq!(expected.len(), 16);
    assert_eq!(renders, expected);
    let manifest = read_manifest(folder.path()).unwrap();
    assert!(manifest.controls.iter().all(|c| c.status == "ok"));
}

#[test]
fn a_failed_control_is_recorded_like_a_cell_and_retried() {
    let folder = tempfile::tempdir().unwrap();
    let run = RunFolder::create(folder.path()).unwrap();
    let plan = lora_plan(true);
    let failing = &plan.controls[1];
    let render = |cell: &CellRequest| -> Result<RgbImage, String> {
        if cell.key == failing.key {
            return Err("NaN in the base model".into());
        }
        Ok(RgbImage::from_pixel(32, 48, Rgb([1, 2, 3])))
    };
    let summary = execute(&plan, &run, &RunOptions::default(), render, |_| {}).unwrap();
    assert_eq!(
        summary.failed,
        vec![(failing.key.clone(), "NaN in the base model".to_string())]
    );
    assert_eq!((summary.missing, summary.controls_missing), (0, 1));
    assert!(folder
        .path()
        .join(format!("cells/{}.failed.json", failing.key))
        .is_file());
    let manifest = read_manifest(folder.path()).unwrap();
    let entry = manifest
        .controls
        .iter()
        .find(|c| c.key == failing.key)
        .unwrap();
    assert_eq!(entry.status, "failed");
    assert_eq!(entry.reason.as_deref(), Some("NaN in the base model"));
    let mut again = Vec::new();
    execute(
        &plan,
        &run,
        &RunOptions::default(),
        recording(&mut again),
        |_| {},
    )
    .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0, failing.key);
}

/// A `grid.json` written before controls existed (no `controls`, no cell `control`) still reads.
#[test]
fn an_old_grid_json_without_controls_still_reads() {
    let folder = tempfile::tempdir().unwrap();
    let run = RunFolder::create(folder.path()).unwrap();
    let plan = lora_plan(true);
    execute(
        &plan,
        &run,
        &RunOptions::default(),
        recording(&mut Vec::new()),
        |_| {},
    )
    .unwrap();
    let mut json = manifest_json(folder.path());
    assert!(json["cells"][0]["control"].is_string());
    json.as_object_mut().unwrap().remove("controls");
    for cell in json["cells"].as_array_mut().unwrap() {
        cell.as_object_mut().unwrap().remove("control");
    }
    assert_eq!(json["version"], 1);
    std::fs::write(
        folder.path().join("grid.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    let old: Manifest = read_manifest(folder.path()).expect("an old grid.json still reads");
    assert!(old.controls.is_empty());
    assert!(old.cells.iter().all(|c| c.control.is_none()));
    assert_eq!(old.cells.len(), 12);
}
