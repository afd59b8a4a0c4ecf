//! `loraeval grid` end to end on the tiny vendored model: cells equal `generate`'s images, resume renders nothing,
//! extending an axis renders only the new cells, shards fill one folder, failures are recorded, bad input is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/tiny-sd15.safetensors")
}

/// Runs `grid` with small default settings; `extra` flags replace the defaults they name.
fn grid(out: &Path, extra: &[&str]) -> Output {
    let defaults = [
        ("--prompt", "a photo of sks woman"),
        ("--negative", "blurry"),
        ("--seed", "7"),
        ("--width", "64"),
        ("--height", "64"),
        ("--sampler", "euler"),
    ];
    let mut command = Command::new(env!("CARGO_BIN_EXE_loraeval"));
    command.arg("grid").arg("--model").arg(tiny_model());
    for (flag, value) in defaults.iter().filter(|(flag, _)| !extra.contains(flag)) {
        command.args([flag, value]);
    }
    command
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run loraeval")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("grid.json")).unwrap()).unwrap()
}

/// (cell key -> status) of a run folder.
fn statuses(out: &Path) -> BTreeMap<String, String> {
    manifest(out)["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn png_text(path: &Path) -> String {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    info.uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == "parameters")
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

const STEPS_BY_CFG: [&str; 4] = ["--x", "steps:1,2", "--y", "cfg:5,7"];

#[test]
fn steps_by_cfg_grid_writes_cells_manifest_and_grid() {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("run");
    let output = grid(&out, &STEPS_BY_CFG);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("X/Y/Z plot: 4 images on 1 2x2 grid"),
        "{}",
        stderr(&output)
    );
    let manifest = manifest(&out);
    assert_eq!(manifest["axes"]["x"]["type"], "steps");
    assert_eq!(manifest["axes"]["x"]["values"], serde_json::json!([1, 2]));
    assert_eq!(
        manifest["axes"]["y"]["labels"],
        serde_json::json!(["CFG Scale: 5.0", "CFG Scale: 7.0"])
    );
    assert!(manifest["axes"]["z"].is_null());
    let cells = manifest["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    // X varies fastest, as A1111 loops.
    let positions: Vec<(u64, u64)> = cells
        .iter()
        .map(|c| {
            (
                c["x_index"].as_u64().unwrap(),
                c["y_index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(positions, vec![(0, 0), (1, 0), (0, 1), (1, 1)]);
    for cell in cells {
        assert_eq!(cell["status"], "ok");
        assert!(out.join(cell["image"].as_str().unwrap()).is_file());
    }
    assert_eq!(cells[3]["params"]["steps"], 2);
    assert_eq!(cells[3]["params"]["cfg"], 7.0);
    let grid_text = png_text(&out.join("grid.png"));
    for field in [
        "Script: X/Y/Z plot",
        "X Type: Steps",
        "X Values: \"1,2\"",
        "Y Type: CFG Scale",
        "Seed: 7",
    ] {
        assert!(grid_text.contains(field), "{field} missing in {grid_text}");
    }
    let grid_image = image::open(out.join("grid.png")).unwrap();
    // Left pad 64*3//4 = 48 for the CFG labels plus two 64-pixel columns.
    assert_eq!(grid_image.width(), 48 + 2 * 64);
}

#[test]
fn a_cell_is_the_image_generate_makes() {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("run");
    assert!(grid(&out, &["--x", "steps:2", "--cfg", "6.5"])
        .status
        .success());
    let cell = manifest(&out)["cells"][0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    let single = folder.path().join("single.png");
    let generated = Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .arg("generate")
        .arg("--model")
        .arg(tiny_model())
        .args([
            "--prompt",
            "a photo of sks woman",
            "--negative",
            "blurry",
            "--seed",
            "7",
            "--steps",
            "2",
        ])
        .args([
            "--cfg",
            "6.5",
            "--sampler",
            "euler",
            "--width",
            "64",
            "--height",
            "64",
            "--out",
        ])
        .arg(&single)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", stderr(&generated));
    let from_grid = image::open(out.join(&cell)).unwrap().to_rgb8();
    let from_generate = image::open(&single).unwrap().to_rgb8();
    assert!(
        from_grid == from_generate,
        "grid cell differs from generate's image"
    );
    assert_eq!(png_text(&out.join(&cell)), png_text(&single));
}

#[test]
fn resume_renders_nothing_and_extension_only_new_cells() {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("run");
    assert!(grid(&out, &STEPS_BY_CFG).status.success());
    let before = statuses(&out);
    let modified = |key: &str| {
        std::fs::metadata(out.join(format!("cells/{key}.png")))
            .unwrap()
            .modified()
            .unwrap()
    };
    let times: Vec<_> = before.keys().map(|k| modified(k)).collect();
    let again = grid(&out, &STEPS_BY_CFG);
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("4 already rendered; 0 to render"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        times,
        before.keys().map(|k| modified(k)).collect::<Vec<_>>()
    );
    let extended = grid(&out, &["--x", "steps:1,2,3", "--y", "cfg:5,7"]);
    assert!(extended.status.success(), "{}", stderr(&extended));
    assert!(
        stderr(&extended).contains("4 already rendered; 2 to render"),
        "{}",
        stderr(&extended)
    );
    let after = statuses(&out);
    assert_eq!(after.len(), 6);
    assert!(
        before.keys().all(|k| after.contains_key(k)),
        "old cells kept their keys"
    );
    assert!(after.values().all(|s| s == "ok"));
}

#[test]
fn two_shards_fill_one_folder_like_a_single_run() {
    let folder = tempfile::tempdir().unwrap();
    let sharded = folder.path().join("sharded");
    let first = grid(&sharded, &[&STEPS_BY_CFG[..], &["--shard", "1/2"]].concat());
    assert!(first.status.success(), "{}", stderr(&first));
    let partial = statuses(&sharded);
    assert_eq!(partial.values().filter(|s| *s == "ok").count(), 2);
    assert_eq!(manifest(&sharded)["grids"][0]["missing"], 2);
    assert!(
        grid(&sharded, &[&STEPS_BY_CFG[..], &["--shard", "2/2"]].concat())
            .status
            .success()
    );
    let whole = folder.path().join("whole");
    assert!(grid(&whole, &STEPS_BY_CFG).status.success());
    assert_eq!(statuses(&sharded), statuses(&whole));
    assert!(statuses(&sharded).values().all(|s| s == "ok"));
    for key in statuses(&whole).keys() {
        let a = image::open(sharded.join(format!("cells/{key}.png")))
            .unwrap()
            .to_rgb8();
        let b = image::open(whole.join(format!("cells/{key}.png")))
            .unwrap()
            .to_rgb8();
        assert!(
            a == b,
            "cell {key} differs between the sharded and the single run"
        );
    }
}

#[test]
fn a_failing_cell_is_recorded_and_the_rest_goes_on() {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("run");
    // The tiny text encoder has 2 layers: clip skip 9 fails when that cell is rendered.
    let output = grid(&out, &["--x", "clip-skip:1,9,2", "--steps", "1"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("1 cells failed"),
        "{}",
        stderr(&output)
    );
    let manifest = manifest(&out);
    let cells = manifest["cells"].as_array().unwrap();
    let status: Vec<&str> = cells
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, vec!["ok", "failed", "ok"]);
    assert!(
        cells[1]["reason"].as_str().unwrap().contains("clip skip 9"),
        "{}",
        cells[1]
    );
    assert_eq!(manifest["grids"][0]["missing"], 1);
    assert!(out.join("grid.png").is_file());
}

#[test]
fn bad_input_gets_one_clear_error_and_no_panic() {
    let folder = tempfile::tempdir().unwrap();
    let expect_error = |out: &Path, extra: &[&str], message: &str| {
        let output = grid(out, extra);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(!text.contains("panicked"), "{text}");
        assert!(text.contains(message), "expected {message:?} in {text}");
        assert!(
            !out.join("cells").is_dir()
                || std::fs::read_dir(out.join("cells"))
                    .unwrap()
                    .next()
                    .is_none()
        );
    };
    let out = folder.path().join("run");
    expect_error(
        &out,
        &["--x", "prompt-sr:dog,cat"],
        "Prompt S/R did not find \"dog\"",
    );
    expect_error(&out, &["--x", "steps:1-600"], "pass --yes");
    expect_error(&out, &["--x", "colour:red"], "write <type>:<values>");
    expect_error(&out, &["--x", "epochs"], "--lora-dir");
    let blocker = folder.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    expect_error(&blocker.join("run"), &["--x", "steps:1"], "cannot write");
    let spec = folder.path().join("bad.yaml");
    std::fs::write(&spec, "x: steps:1,2\nstpes: 3\n").unwrap();
    expect_error(
        &out,
        &["--spec", spec.to_str().unwrap()],
        "unknown field `stpes`",
    );
    let empty = folder.path().join("empty-loras");
    std::fs::create_dir(&empty).unwrap();
    expect_error(
        &out,
        &["--x", "epochs", "--lora-dir", empty.to_str().unwrap()],
        "no LoRA files",
    );
}

#[test]
fn spec_file_sets_axes_and_flags_override_it() {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("run");
    let spec = folder.path().join("spec.yaml");
    std::fs::write(&spec, "x: steps:1,2\ny: cfg:5,7\nsteps: 3\nmargin: 2\n").unwrap();
    let output = grid(
        &out,
        &[
            "--spec",
            spec.to_str().unwrap(),
            "--y",
            "cfg:4",
            "--dry-run",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("2 images on 1 2x1 grid"), "{text}");
    assert!(text.contains("CFG Scale: 4.0"), "{text}");
}
