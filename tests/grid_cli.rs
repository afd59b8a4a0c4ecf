//! `loraeval grid` end to end on the tiny vendored model: cells equal `generate`'s images, resume renders nothing,
//! extending an axis renders only the new cells, shards fill one folder, failures are recorded, bad input is refused;
//! a LoRA grid also renders its control (the prompt without the LoRA tag, base model), which `--no-control` skips.

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

/// A LoRA folder holding the fixture LoRA as `face.safetensors`.
fn lora_dir(parent: &Path) -> PathBuf {
    let dir = parent.join("loras");
    std::fs::create_dir_all(&dir).unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora/kohya_locon.safetensors");
    std::fs::copy(fixture, dir.join("face.safetensors")).unwrap();
    dir
}

#[test]
fn a_lora_grid_renders_its_control_without_the_lora() {
    let folder = tempfile::tempdir().unwrap();
    let loras = lora_dir(folder.path());
    let out = folder.path().join("run");
    let flags = [
        "--lora-dir",
        loras.to_str().unwrap(),
        "--x",
        "0.5,1.0",
        "--steps",
        "2",
    ];
    let output = grid(&out, &flags);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("1 control images (no LoRA)"),
        "{}",
        stderr(&output)
    );
    // stdout names the grid and grid.json only.
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        printed,
        vec![
            out.join("grid.png").to_str().unwrap(),
            out.join("grid.json").to_str().unwrap()
        ]
    );
    let manifest = manifest(&out);
    let controls = manifest["controls"].as_array().unwrap();
    assert_eq!(controls.len(), 1);
    let control = &controls[0];
    assert_eq!(control["status"], "ok");
    for cell in manifest["cells"].as_array().unwrap() {
        assert_eq!(cell["control"], control["key"]);
        let text = png_text(&out.join(cell["image"].as_str().unwrap()));
        assert!(text.contains("Lora hashes: \"face: "), "{text}");
    }
    let prompt = control["params"]["prompt"].as_str().unwrap();
    assert_eq!(prompt, "a photo of sks woman ");
    let image = out.join(control["image"].as_str().unwrap());
    let text = png_text(&image);
    assert!(!text.contains("Lora hashes"), "{text}");
    assert!(!text.contains("<lora"), "{text}");

    // The control is the image `generate` makes with its prompt and no LoRA.
    let single = folder.path().join("single.png");
    let generated = Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .arg("generate")
        .arg("--model")
        .arg(tiny_model())
        .args([
            "--prompt",
            prompt,
            "--negative",
            "blurry",
            "--seed",
            "7",
            "--steps",
            "2",
        ])
        .args([
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
    let from_grid = image::open(&image).unwrap().to_rgb8();
    assert!(from_grid == image::open(&single).unwrap().to_rgb8());
    assert_eq!(text, png_text(&single));
    // The LoRA changes the image.
    let cell = out.join(manifest["cells"][1]["image"].as_str().unwrap());
    assert!(image::open(cell).unwrap().to_rgb8() != from_grid);

    let again = grid(&out, &flags);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("3 already rendered; 0 to render"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn no_control_skips_the_control() {
    let folder = tempfile::tempdir().unwrap();
    let loras = lora_dir(folder.path());
    let out = folder.path().join("run");
    let flags = [
        "--lora-dir",
        loras.to_str().unwrap(),
        "--x",
        "0.5,1.0",
        "--steps",
        "1",
    ];
    let output = grid(&out, &[&flags[..], &["--no-control"]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("control"), "{}", stderr(&output));
    let manifest = manifest(&out);
    assert!(manifest["controls"].as_array().unwrap().is_empty());
    assert!(manifest["cells"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c.get("control").is_none()));
    assert_eq!(std::fs::read_dir(out.join("cells")).unwrap().count(), 2);
    // `control: false` in a spec does the same; the dry run plans no control image.
    let spec = folder.path().join("spec.yaml");
    std::fs::write(&spec, "control: false\n").unwrap();
    let dry = grid(
        &out,
        &[&flags[..], &["--spec", spec.to_str().unwrap(), "--dry-run"]].concat(),
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(!stderr(&dry).contains("control"), "{}", stderr(&dry));
    assert!(
        stderr(&dry).contains("2 already rendered; 0 to render"),
        "{}",
        stderr(&dry)
    );
    let with = grid(&out, &[&flags[..], &["--dry-run"]].concat());
    assert!(
        stderr(&with).contains("1 control images (no LoRA)"),
        "{}",
        stderr(&with)
    );
    assert!(
        stderr(&with).contains("2 already rendered; 1 to render"),
        "{}",
        stderr(&with)
    );
}

/// (RNG source label, cell image path) of every cell of a run with an RNG source axis on X.
fn rng_cells(out: &Path) -> Vec<(String, PathBuf)> {
    let manifest = manifest(out);
    let labels = manifest["axes"]["x"]["labels"].as_array().unwrap().clone();
    manifest["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let x = c["x_index"].as_u64().unwrap() as usize;
            (
                labels[x].as_str().unwrap().to_string(),
                out.join(c["image"].as_str().unwrap()),
            )
        })
        .collect()
}

#[test]
fn rng_source_axis_and_settings_reach_every_cell() {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("run");
    let output = grid(
        &out,
        &[
            "--x",
            "rng:gpu,cpu,nv",
            "--sampler",
            "euler_a",
            "--steps",
            "2",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest = manifest(&out);
    assert_eq!(manifest["axes"]["x"]["type"], "rng");
    assert_eq!(manifest["axes"]["x"]["label"], "RNG source");
    assert_eq!(
        manifest["axes"]["x"]["values"],
        serde_json::json!(["gpu", "cpu", "nv"])
    );
    let cells = rng_cells(&out);
    let labels: Vec<&str> = cells.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        vec!["RNG source: GPU", "RNG source: CPU", "RNG source: NV"]
    );
    let image = |i: usize| image::open(&cells[i].1).unwrap().to_rgb8();
    let text = |i: usize| png_text(&cells[i].1);
    // GPU and NV draw the same numbers but are separate cells; CPU draws others.
    assert_ne!(cells[0].1, cells[2].1);
    assert!(image(0) == image(2), "GPU and NV cells differ");
    assert!(image(0) != image(1), "GPU and CPU cells are equal");
    assert!(!text(0).contains("RNG"), "{}", text(0));
    assert!(text(1).ends_with("RNG: CPU"), "{}", text(1));
    assert!(text(2).ends_with("RNG: NV"), "{}", text(2));
    let grid_text = png_text(&out.join("grid.png"));
    assert!(
        grid_text.contains("X Type: RNG source") && grid_text.contains("X Values: \"gpu,cpu,nv\""),
        "{grid_text}"
    );

    // `rng:` and `ensd:` in a spec; a cell equals generate's image with the same flags, infotext included.
    let spec = folder.path().join("noise.yaml");
    std::fs::write(&spec, "x: steps:2\nrng: cpu\nensd: 31337\n").unwrap();
    let spec_out = folder.path().join("spec-run");
    let output = grid(
        &spec_out,
        &["--spec", spec.to_str().unwrap(), "--sampler", "euler_a"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let cell = spec_out.join(manifest_cell_image(&spec_out));
    assert!(
        png_text(&cell).ends_with("ENSD: 31337, RNG: CPU"),
        "{}",
        png_text(&cell)
    );
    let single = folder.path().join("single.png");
    let generated = Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .arg("generate")
        .arg("--model")
        .arg(tiny_model())
        .args(["--prompt", "a photo of sks woman", "--negative", "blurry"])
        .args(["--seed", "7", "--steps", "2", "--sampler", "euler_a"])
        .args([
            "--width", "64", "--height", "64", "--rng", "cpu", "--ensd", "31337",
        ])
        .arg("--out")
        .arg(&single)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", stderr(&generated));
    assert!(image::open(&cell).unwrap().to_rgb8() == image::open(&single).unwrap().to_rgb8());
    assert_eq!(png_text(&cell), png_text(&single));

    let bad = folder.path().join("bad-rng.yaml");
    std::fs::write(&bad, "x: steps:2\nrng: cuda\n").unwrap();
    let output = grid(
        &folder.path().join("bad"),
        &["--spec", bad.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("gpu, cpu, nv"),
        "{}",
        stderr(&output)
    );
}

fn manifest_cell_image(out: &Path) -> String {
    manifest(out)["cells"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}
