//! Bad input to `score RUN`, `pick` and `report`: clear messages and exit codes, never a crash.

use std::path::Path;
use std::process::{Command, Output};

use image::{Rgb, RgbImage};
use serde_json::json;

fn loraeval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A run folder in the format of an older loraeval (no controls): one cell per key given, no LoRA axis.
fn write_old_run(root: &Path, keys: &[&str]) {
    std::fs::create_dir_all(root.join("cells")).unwrap();
    let params = json!({"prompt": "photo", "negative": "", "seed": 1, "steps": 20, "cfg": 7.0,
        "sampler": "euler", "width": 64, "height": 64, "clip_skip": 1, "loras": []});
    let cells: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            json!({"x_index": i, "y_index": 0, "z_index": 0, "seed_index": 0, "key": key,
                   "image": format!("cells/{key}.png"), "status": "ok", "params": params})
        })
        .collect();
    let labels: Vec<String> = (0..keys.len()).map(|i| format!("{}", 5 + i)).collect();
    let manifest = json!({"version": 1,
        "model": {"file": "m.safetensors", "sha256": "0", "hash": "0", "name": "m"},
        "axes": {"x": {"type": "cfg", "label": "CFG Scale", "raw": "5,6", "values": labels, "labels": labels},
                 "y": null, "z": null},
        "seeds": [1], "base": params, "grids": [], "cells": cells,
        "summary": {"cells": keys.len(), "ok": keys.len(), "failed": 0, "missing": 0}});
    std::fs::write(root.join("grid.json"), manifest.to_string()).unwrap();
}

fn grey(path: &Path) {
    RgbImage::from_pixel(64, 64, Rgb([120, 120, 120]))
        .save(path)
        .unwrap();
}

#[test]
fn a_folder_without_grid_json_is_not_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = loraeval(&["pick", dir.path().to_str().unwrap(), "--reference", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a run folder: it has no grid.json"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_broken_grid_json_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("grid.json"), "{\"version\": 1").unwrap();
    let out = loraeval(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("grid.json: not a loraeval grid.json"), "{err}");
}

#[test]
fn an_unscored_run_needs_reference_photos() {
    let dir = tempfile::tempdir().unwrap();
    write_old_run(dir.path(), &["a"]);
    grey(&dir.path().join("cells/a.png"));
    let out = loraeval(&["pick", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has not been scored yet: give --reference"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn reference_photos_without_faces_are_refused_with_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    write_old_run(&run, &["a"]);
    grey(&run.join("cells/a.png"));
    let reference = dir.path().join("train/10_sks");
    std::fs::create_dir_all(&reference).unwrap();
    grey(&reference.join("1.png"));
    std::fs::write(reference.join("2.png"), b"not a png").unwrap();
    let out = loraeval(&[
        "pick",
        run.to_str().unwrap(),
        "--reference",
        reference.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "no usable face in the reference photos (2 photos: 1 without a face, 1 unreadable)"
        ),
        "{err}"
    );
}

#[test]
fn cells_without_faces_missing_or_unreadable_are_misses_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    write_old_run(&run, &["a", "b", "c"]);
    grey(&run.join("cells/a.png"));
    std::fs::write(run.join("cells/b.png"), b"truncated").unwrap();
    let reference = Path::new("tests/fixtures/people/reference");
    let out = loraeval(&[
        "pick",
        run.to_str().unwrap(),
        "--json",
        "--reference",
        reference.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["pick"].is_null());
    let reasons: Vec<String> = json["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reasons"][0].as_str().unwrap().to_string())
        .collect();
    assert!(
        reasons.contains(&"the person in 0/1 images (needs 50%), 1 without a face".to_string()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"no image to score (1 missing, 0 failed)".to_string()),
        "{reasons:?}"
    );
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("scores.json")).unwrap()).unwrap();
    let unreadable = &scores["cells"][1]["images"][0];
    assert!(
        unreadable["error"]
            .as_str()
            .unwrap()
            .contains("not a PNG or JPEG"),
        "{unreadable}"
    );
    // The report is rewritten from the files, without the face models.
    let out = loraeval(&["report", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(run.join("report.html").is_file());
}
