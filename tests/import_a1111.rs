//! `loraeval import` end to end on an output folder written the way A1111 1.10 writes an X/Y/Z plot (X: the
//! "None" column and two epochs of a kohya run, Y: two weights, batch count 3), with real photos as pixels:
//! epoch 2 at weight 1 shows held-out photos of the person, every other cell and the "None" column strangers.
//! The import must rebuild that grid from the infotexts alone, skip the grid image and an image of another base
//! model, read a JPEG's EXIF infotext, leave the originals untouched, and `pick` must choose epoch 2 at weight 1.
//! Importing again adds a new image and keeps the rest.

mod import_support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use import_support::*;

const DAY: &str = "outputs/txt2img-images/2024-11-02";
const SEEDS: [u64; 3] = [1001, 1002, 1003];
const WEIGHTS: [&str; 2] = ["0.8", "1"];

/// The cell pixels: (x = 0 for "None", 1, 2 for the epochs; y; seed index). The None column is the same
/// render on every row (same prompt, same seed), so the same file bytes.
fn pixels(
    x: usize,
    y: usize,
    s: usize,
    heldout: &[image::RgbImage],
    strangers: &[image::RgbImage],
) -> image::RgbImage {
    match (x, y) {
        (2, 1) => heldout[s].clone(),
        (0, _) => strangers[s].clone(),
        _ => strangers[(s + x + y) % strangers.len()].clone(),
    }
}

fn prompt(x: usize, weight: &str) -> String {
    match x {
        0 => "photo of sks woman, ".to_string(),
        x => format!("photo of sks woman, <lora:sks-{x:06}:{weight}>"),
    }
}

fn hashes(x: usize) -> Vec<(String, String)> {
    match x {
        0 => Vec::new(),
        x => vec![(format!("sks-{x:06}"), lora_hash(x as u32)[..12].to_string())],
    }
}

/// Writes the XYZ plot's images (numbered as A1111 numbers them), its grid, one image of another model and a
/// params.txt; the epoch-1 image at weight 0.8 and the last seed is a JPEG. Returns the next image number.
fn render_xyz(root: &Path) -> usize {
    let heldout = photos("heldout");
    let strangers = photos("strangers");
    let mut number = 0;
    for (y, weight) in WEIGHTS.iter().enumerate() {
        for x in 0..3 {
            for (s, seed) in SEEDS.iter().enumerate() {
                let hashes = hashes(x);
                let refs: Vec<(&str, &str)> = hashes
                    .iter()
                    .map(|(a, h)| (a.as_str(), h.as_str()))
                    .collect();
                let info = params(&prompt(x, weight), *seed, &refs);
                let image = pixels(x, y, s, &heldout, &strangers);
                let stem = root.join(DAY).join(format!("{number:05}-{seed}"));
                match (x, y, s) {
                    (1, 0, 2) => write_jpeg(&stem.with_extension("jpg"), &image, &info),
                    _ => write_png(&stem.with_extension("png"), &image, &info),
                }
                number += 1;
            }
        }
    }
    let first = params(&prompt(0, "0.8"), SEEDS[0], &[]);
    write_png(
        &root.join("outputs/txt2img-grids/2024-11-02/grid-0000.png"),
        &image::RgbImage::new(960, 640),
        &first,
    );
    let mut other = params(
        &prompt(2, "1"),
        SEEDS[0],
        &[("sks-000002", &lora_hash(2)[..12])],
    );
    other.model_hash = Some("e6bb9ea85b".to_string());
    write_png(
        &root.join(DAY).join(format!("{number:05}-1001.png")),
        &heldout[0],
        &other,
    );
    std::fs::write(root.join("outputs/params.txt"), "last parameters").unwrap();
    number + 1
}

fn write_loras(models: &Path) {
    for epoch in [1, 2] {
        write_lora(
            &models.join(format!("sks-{epoch:06}.safetensors")),
            epoch,
            &lora_hash(epoch),
        );
    }
}

fn originals(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![root.join("outputs")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            match path.is_dir() {
                true => stack.push(path),
                false => files.push((path.clone(), std::fs::read(&path).unwrap())),
            }
        }
    }
    files.sort();
    files
}

fn check_manifest(grid: &serde_json::Value, root: &Path) {
    assert_eq!(grid["source"], "a1111");
    let cells = grid["cells"].as_array().unwrap();
    let controls = grid["controls"].as_array().unwrap();
    assert_eq!(cells.len(), 12, "2 epochs x 2 weights x 3 seeds");
    assert_eq!(controls.len(), 3, "the None column, one per seed");
    assert_eq!(
        grid["axes"]["x"]["files"],
        serde_json::json!(["sks-000001.safetensors", "sks-000002.safetensors"])
    );
    assert_eq!(grid["axes"]["y"]["values"], serde_json::json!([0.8, 1.0]));
    assert!(grid["axes"]["z"].is_null(), "{}", grid["axes"]["z"]);
    assert_eq!(grid["seeds"], serde_json::json!(SEEDS));
    assert_eq!(grid["model"]["hash"], MODEL_HASH);
    for entry in cells.iter().chain(controls) {
        let original = entry["original"].as_str().unwrap();
        assert!(
            Path::new(original).is_file() && original.contains("txt2img-images"),
            "{original}"
        );
        assert!(
            Path::new(original).starts_with(std::path::absolute(root).unwrap()),
            "{original}"
        );
    }
    for cell in cells {
        assert!(
            cell["control"].is_string(),
            "every cell has the None image of its seed: {cell}"
        );
        let file = cell["params"]["loras"][0]["file"].as_str().unwrap();
        assert_eq!(
            cell["params"]["loras"][0]["epoch"],
            if file.contains("000001") { 1 } else { 2 }
        );
    }
    let keys: HashSet<&str> = cells.iter().map(|c| c["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), cells.len());
}

#[test]
fn import_then_pick_chooses_the_held_out_epoch_at_its_weight() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let next = render_xyz(root);
    write_loras(&root.join("models"));
    let before = originals(root);
    let run = root.join("run");
    let arg = |p: &Path| p.to_str().unwrap().to_string();
    let (code, stdout, stderr) = loraeval(&[
        "import",
        &arg(&root.join("outputs")),
        "--out",
        &arg(&run),
        "--lora-dir",
        &arg(&root.join("models")),
    ]);
    eprintln!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("2 epochs x 2 weights x 1 level x 3 seeds = 12 cells, 3 controls"),
        "{stdout}"
    );
    assert!(
        stdout.contains("X Epoch: epoch 1 (100 steps) | epoch 2 (200 steps)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("grid-0000.png: an A1111 grid image"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Model hash e6bb9ea85b, not 6ce0161689"),
        "{stderr}"
    );
    assert!(
        stderr.contains("15 new (14 copied, 1 JPEG/WebP stored as PNG)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped 2: 1 grid image, 1 other Model hash")
            || stderr.contains("skipped 2: 1 other Model hash, 1 grid image"),
        "{stderr}"
    );
    assert!(stderr.contains("1 other files ignored"), "{stderr}");
    assert_eq!(originals(root), before, "the originals are never changed");
    let grid = grid_json(&run);
    check_manifest(&grid, root);
    let jpeg = grid["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["original"].as_str().unwrap().ends_with(".jpg"));
    let jpeg = jpeg.expect("the JPEG image is a cell");
    let stored = std::fs::read(run.join(jpeg["image"].as_str().unwrap())).unwrap();
    assert!(stored.starts_with(b"\x89PNG"), "stored as PNG");
    assert_eq!(jpeg["params"]["seed"], 1003);

    let reference = Path::new(PEOPLE).join("reference");
    let (code, stdout, stderr) = loraeval(&[
        "pick",
        &arg(&run),
        "--json",
        "--reference",
        &arg(&reference),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let pick: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(pick["pick"]["file"], "sks-000002.safetensors", "{pick:#}");
    assert_eq!(pick["pick"]["epoch"], 2);
    assert_eq!(pick["pick"]["weight"], 1.0);
    let (code, _, stderr) = loraeval(&["report", &arg(&run)]);
    assert_eq!(code, 0, "{stderr}");

    reimport_adds_without_duplicating(root, &run, next);
}

/// A fourth seed of epoch 2 at weight 1 rendered later: imported again, only it is new.
fn reimport_adds_without_duplicating(root: &Path, run: &Path, number: usize) {
    let heldout = photos("heldout");
    let info = params(
        &prompt(2, "1"),
        1004,
        &[("sks-000002", &lora_hash(2)[..12])],
    );
    write_png(
        &root
            .join("outputs/txt2img-images/2024-11-03")
            .join(format!("{number:05}-1004.png")),
        &heldout[1],
        &info,
    );
    let arg = |p: &Path| p.to_str().unwrap().to_string();
    let (code, stdout, stderr) = loraeval(&[
        "import",
        &arg(&root.join("outputs")),
        "--out",
        &arg(run),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["new"], 1, "{summary:#}");
    assert_eq!(summary["kept"], 15, "{summary:#}");
    assert_eq!(
        summary["already"], 18,
        "the 15 earlier images and the 3 None images repeated on the second row: {summary:#}"
    );
    assert_eq!(
        summary["seeds"],
        serde_json::json!([1001, 1002, 1003, 1004])
    );
    let grid = grid_json(run);
    let cells = grid["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 13);
    let keys: HashSet<&str> = cells.iter().map(|c| c["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 13);
    assert_eq!(
        grid["axes"]["x"]["files"][1], "sks-000002.safetensors",
        "the LoRA folder of run.json is used again"
    );
    let reasons: Vec<&str> = summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
}
