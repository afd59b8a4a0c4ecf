//! Scoring and picking on real photos: a run folder whose cells are photographs (tests/fixtures/people): the
//! person's held-out photos play the good epoch, other people the under-trained one, the training photos
//! themselves the copying one, and a saturated, noisy version of the held-out photos the fried one; the control
//! is other people (what a base model draws). `pick` must choose the good epoch and give the others' reasons.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{Rgb, RgbImage};
use serde_json::{json, Value};

const PEOPLE: &str = "tests/fixtures/people";

fn photos(folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(PEOPLE).join(folder))
        .unwrap_or_else(|e| panic!("{PEOPLE}/{folder}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    files
}

/// Saturation ×2.5 around the grey level and ±48 levels of deterministic noise: a "fried" render.
fn fry(path: &Path) -> RgbImage {
    let mut image = image::open(path).unwrap().to_rgb8();
    let mut state = 0x2545_f491_u32;
    for pixel in image.pixels_mut() {
        let [r, g, b] = pixel.0.map(f32::from);
        let grey = 0.299 * r + 0.587 * g + 0.114 * b;
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = ((state >> 24) as f32 / 255.0 - 0.5) * 96.0;
        let fried = [r, g, b].map(|c| (grey + 2.5 * (c - grey) + noise).clamp(0.0, 255.0) as u8);
        *pixel = Rgb(fried);
    }
    image
}

fn params(prompt: &str, lora: Option<(u32, f64)>, seed: u64) -> Value {
    let loras: Vec<Value> = lora
        .into_iter()
        .map(|(epoch, weight)| {
            json!({"name": format!("sks-{epoch:06}"), "file": format!("sks-{epoch:06}.safetensors"),
                   "weight": weight, "unet_weight": weight, "epoch": epoch, "sha256": null})
        })
        .collect();
    json!({"prompt": prompt, "negative": "", "seed": seed, "steps": 20, "cfg": 7.0,
           "sampler": "dpmpp_2m_karras", "width": 512, "height": 512, "clip_skip": 1, "loras": loras})
}

/// The images of one prompt (Z value): `cells[x]` are the images of epoch x+1, one per seed; `control` the base
/// model's images of the same seeds.
struct Level<'a> {
    prompt: &'a str,
    cells: Vec<Vec<RgbImage>>,
    control: Vec<RgbImage>,
}

/// Writes a run folder: X = the epochs, Y = one weight, Z = the levels' prompts, one cell image per seed.
fn write_run(root: &Path, levels: &[Level]) {
    std::fs::create_dir_all(root.join("cells")).unwrap();
    let (epochs, seeds) = (levels[0].cells.len(), levels[0].cells[0].len());
    let mut entries = Vec::new();
    let mut controls = Vec::new();
    for (z, level) in levels.iter().enumerate() {
        for (x, images) in level.cells.iter().enumerate() {
            for (s, image) in images.iter().enumerate() {
                let key = format!("z{z}e{}s{s}", x + 1);
                image.save(root.join(format!("cells/{key}.png"))).unwrap();
                let prompt = format!("{} <lora:sks-{:06}:1>", level.prompt, x + 1);
                let control = (!level.control.is_empty()).then(|| format!("z{z}c{s}"));
                entries.push(
                    json!({"x_index": x, "y_index": 0, "z_index": z, "seed_index": s, "key": key,
                    "image": format!("cells/{key}.png"), "status": "ok", "control": control,
                    "params": params(&prompt, Some((x as u32 + 1, 1.0)), s as u64)}),
                );
            }
        }
        for (s, image) in level.control.iter().enumerate() {
            let key = format!("z{z}c{s}");
            image.save(root.join(format!("cells/{key}.png"))).unwrap();
            controls.push(
                json!({"key": key, "image": format!("cells/{key}.png"), "status": "ok",
                "z_index": z, "seed_index": s, "params": params(level.prompt, None, s as u64)}),
            );
        }
    }
    let labels: Vec<String> = (1..=epochs).map(|e| format!("sks-{e:06}")).collect();
    let prompts: Vec<&str> = levels.iter().map(|l| l.prompt).collect();
    let z = (levels.len() > 1).then(|| {
        json!({"type": "prompt", "label": "Prompt", "raw": "", "values": prompts, "labels": prompts})
    });
    let count = entries.len();
    let manifest = json!({
        "version": 1,
        "model": {"file": "base.safetensors", "sha256": "0", "hash": "0", "name": "base"},
        "axes": {"x": {"type": "epochs", "label": "Epoch", "raw": "epochs", "values": labels, "labels": labels},
                 "y": {"type": "weight", "label": "LoRA weight", "raw": "1", "values": [1.0], "labels": ["1"]},
                 "z": z},
        "seeds": (0..seeds as u64).collect::<Vec<_>>(),
        "base": params(levels[0].prompt, None, 0),
        "grids": [],
        "cells": entries,
        "controls": controls,
        "summary": {"cells": count, "ok": count, "failed": 0, "missing": 0},
    });
    std::fs::write(
        root.join("grid.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

fn load(paths: &[PathBuf]) -> Vec<RgbImage> {
    paths
        .iter()
        .map(|p| image::open(p).unwrap().to_rgb8())
        .collect()
}

fn pick(run: &Path, extra: &[&str]) -> (i32, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .arg("pick")
        .arg(run)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (output.status.code().unwrap_or(-1), json, stderr)
}

fn take(images: &[RgbImage], n: usize) -> Vec<RgbImage> {
    images.iter().cycle().take(n).cloned().collect()
}

#[test]
fn pick_chooses_the_held_out_epoch_and_names_the_others_reasons() {
    let reference = photos("reference/10_jolie");
    let heldout = load(&photos("heldout"));
    let strangers = load(&photos("strangers"));
    assert!(reference.len() >= 4 && heldout.len() >= 3 && strangers.len() >= 3);
    let n = heldout.len();
    let fried: Vec<RgbImage> = photos("heldout").iter().map(|p| fry(p)).collect();
    let cells = vec![
        take(&strangers, n),
        heldout.clone(),
        take(&load(&reference), n),
        fried,
    ];
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let level = Level {
        prompt: "photo of sks woman",
        cells,
        control: take(&strangers, n),
    };
    write_run(&run, &[level]);
    let reference_dir = Path::new(PEOPLE).join("reference");
    let (code, json, stderr) = pick(&run, &["--reference", reference_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    assert_eq!(json["pick"]["file"], "sks-000002.safetensors", "{json:#}");
    assert_eq!(json["pick"]["epoch"], 2);
    assert_eq!(json["pick"]["weight"], 1.0);
    let reasons: Vec<String> = json["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let line = |epoch: u32| {
        let prefix = format!("epoch {epoch}: ");
        reasons
            .iter()
            .find(|r| r.starts_with(&prefix))
            .cloned()
            .unwrap_or_default()
    };
    assert!(line(1).contains("under-trained"), "{reasons:#?}");
    assert!(line(2).contains("best at weight 1"), "{reasons:#?}");
    assert!(line(3).contains("near-copies of"), "{reasons:#?}");
    assert!(line(4).contains("fried"), "{reasons:#?}");
    let ranking = json["ranking"].as_array().unwrap();
    assert_eq!(ranking.len(), 4);
    for row in ranking {
        for key in ["file", "epoch", "weight", "score", "passed", "reasons"] {
            assert!(row.get(key).is_some(), "ranking row lacks {key}: {row}");
        }
    }
    for file in [
        "scores.json",
        "recommendation.json",
        "report.html",
        "scores/cache.json",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let scores: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("scores.json")).unwrap()).unwrap();
    assert_eq!(scores["baselines"]["stranger_source"], "control");
    let good = &scores["cells"][1];
    assert!(good["likeness"].as_f64().unwrap() > 0.5, "{good:#}");
    assert_eq!(good["hit_rate"], 1.0);

    // --copy-to copies the chosen file from the LoRA folder, and never over an existing file without --force.
    let loras = dir.path().join("loras");
    std::fs::create_dir_all(&loras).unwrap();
    for epoch in 1..=4 {
        std::fs::write(
            loras.join(format!("sks-{epoch:06}.safetensors")),
            [epoch as u8; 8],
        )
        .unwrap();
    }
    let chosen = dir.path().join("chosen");
    let copy = [
        "--copy-to",
        chosen.to_str().unwrap(),
        "--lora-dir",
        loras.to_str().unwrap(),
    ];
    let (code, _, _) = pick(&run, &copy);
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read(chosen.join("sks-000002.safetensors")).unwrap(),
        [2u8; 8]
    );
    std::fs::write(chosen.join("sks-000002.safetensors"), b"mine").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .args(["pick", run.to_str().unwrap()])
        .args(copy)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists; pass --force"));
    assert_eq!(
        std::fs::read(chosen.join("sks-000002.safetensors")).unwrap(),
        b"mine"
    );
    let (code, _, _) = pick(&run, &[&copy[..], &["--force"]].concat());
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read(chosen.join("sks-000002.safetensors")).unwrap(),
        [2u8; 8]
    );

    // The second pick reads every image from the cache, and a hand-replaced cell is judged on its new content.
    let (code, again, _) = pick(&run, &[]);
    assert_eq!((code, &again["pick"]), (0, &json["pick"]));
    let stranger = &strangers[0];
    for s in 0..n {
        stranger
            .save(run.join(format!("cells/z0e2s{s}.png")))
            .unwrap();
    }
    let (code, replaced, _) = pick(&run, &[]);
    assert_ne!(replaced["pick"]["epoch"], 2, "{replaced:#}");
    assert!(code == 0 || code == 3);
}

#[test]
fn no_cell_passing_exits_3_with_the_reasons() {
    let strangers = load(&photos("strangers"));
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let level = Level {
        prompt: "photo of sks woman",
        cells: vec![strangers.clone(); 4],
        control: Vec::new(),
    };
    write_run(&run, &[level]);
    let reference_dir = Path::new(PEOPLE).join("reference");
    let (code, json, _) = pick(&run, &["--reference", reference_dir.to_str().unwrap()]);
    assert_eq!(code, 3, "{json:#}");
    assert!(json["pick"].is_null());
    let first = json["reasons"][0].as_str().unwrap();
    assert!(
        first.starts_with("no pick: no cell passes every gate; failed hit rate in 4 of 4 cells"),
        "{first}"
    );
}

#[test]
fn prompts_without_the_trigger_measure_the_side_effect_and_leave_identity_alone() {
    let heldout = load(&photos("heldout"));
    let strangers = load(&photos("strangers"));
    let n = heldout.len();
    let control = take(&strangers, n);
    // Epoch 1 leaves prompts without the trigger alone (its images equal the control); epoch 2 draws the person
    // whatever the prompt (leaks).
    let asking = Level {
        prompt: "photo of sks woman",
        cells: vec![heldout.clone(), heldout.clone()],
        control: control.clone(),
    };
    let other = Level {
        prompt: "photo of a woman in a park",
        cells: vec![control.clone(), heldout.clone()],
        control: control.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    write_run(&run, &[asking, other]);
    let reference_dir = Path::new(PEOPLE).join("reference");
    let (code, json, stderr) = pick(
        &run,
        &[
            "--reference",
            reference_dir.to_str().unwrap(),
            "--trigger",
            "sks",
        ],
    );
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    let scores: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("scores.json")).unwrap()).unwrap();
    assert_eq!(scores["trigger"], "sks");
    let (clean, leaky) = (&scores["cells"][0], &scores["cells"][1]);
    for cell in [clean, leaky] {
        assert_eq!(
            cell["hit_rate"], 1.0,
            "only prompts with the trigger count: {cell:#}"
        );
        assert_eq!(cell["images"].as_array().unwrap().len(), 2 * n);
    }
    assert_eq!(clean["leak_rate"], 0.0);
    assert!(clean["side_effect"].as_f64().unwrap() < 1e-6, "{clean:#}");
    assert_eq!(leaky["leak_rate"], 1.0);
    assert!(leaky["side_effect"].as_f64().unwrap() > 0.3, "{leaky:#}");
}
