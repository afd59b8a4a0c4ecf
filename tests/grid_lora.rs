//! `loraeval grid --x epochs --y <weights>` on the tiny model with a fake kohya run made from a fixture LoRA: every
//! cell is the image (and infotext, Lora hashes included) `generate --lora-dir` makes for the cell's prompt tag,
//! epochs are ordered by `ss_epoch`, a second run renders nothing, and a LoRA file holding NaN fails only its cells.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::tensor::{serialize, Dtype, TensorView};
use safetensors::SafeTensors;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// Writes `dir/<stem>.safetensors`: the fixture LoRA with every `lora_up` scaled by `scale` (NaN in the first one
/// when `poison`), kohya metadata saying `epoch`, and no `sshs_*` hashes (so the tensor-data hash is used).
fn write_epoch(dir: &Path, stem: &str, epoch: u32, scale: f32, poison: bool) {
    let bytes = std::fs::read(fixture("lora/kohya_locon.safetensors")).unwrap();
    let source = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = source.names().into_iter().map(|n| n.to_string()).collect();
    names.sort();
    let mut poisoned = !poison;
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in names {
        let view = source.tensor(&name).unwrap();
        assert_eq!(view.dtype(), Dtype::F32);
        let mut values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if name.ends_with("lora_up.weight") {
            values.iter_mut().for_each(|v| *v *= scale);
            if !poisoned {
                values[0] = f32::NAN;
                poisoned = true;
            }
        }
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.push((name, view.shape().to_vec(), raw));
    }
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(name, shape, raw)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), raw).unwrap(),
            )
        })
        .collect();
    let metadata: HashMap<String, String> = [
        ("ss_epoch", epoch.to_string()),
        ("ss_output_name", "tinyface".to_string()),
        ("ss_session_id", "4242".to_string()),
        ("ss_network_module", "networks.lora".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let bytes = serialize(views, Some(metadata)).unwrap();
    std::fs::write(dir.join(format!("{stem}.safetensors")), bytes).unwrap();
}

/// A kohya run "tinyface" of three epochs whose files differ (epoch e scales lora_up by e); epoch 2 holds a NaN
/// when `poison_epoch_2`.
fn fake_run(dir: &Path, poison_epoch_2: bool) {
    write_epoch(dir, "tinyface-000001", 1, 1.0, false);
    write_epoch(dir, "tinyface-000002", 2, 2.0, poison_epoch_2);
    write_epoch(dir, "tinyface", 3, 3.0, false);
}

const PROMPT: &str = "a photo of sks woman, smiling";
const SETTINGS: [&str; 12] = [
    "--negative",
    "blurry",
    "--seed",
    "11",
    "--steps",
    "4",
    "--sampler",
    "euler",
    "--width",
    "64",
    "--height",
    "64",
];

fn loraeval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .args(args)
        .output()
        .expect("run loraeval")
}

fn grid(lora_dir: &Path, out: &Path) -> Output {
    let model = fixture("tiny/tiny-sd15.safetensors");
    let mut args = vec![
        "grid",
        "--model",
        model.to_str().unwrap(),
        "--lora-dir",
        lora_dir.to_str().unwrap(),
        "--x",
        "epochs",
        "--y",
        "0.4,1.0",
        "--prompt",
        PROMPT,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(SETTINGS);
    loraeval(&args)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("grid.json")).unwrap()).unwrap()
}

fn infotext(path: &Path) -> String {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == "parameters")
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

fn pixels(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().to_rgb8().into_raw()
}

/// The manifest entry of cell (x, y).
fn cell(manifest: &serde_json::Value, x: u64, y: u64) -> serde_json::Value {
    manifest["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["x_index"] == x && c["y_index"] == y)
        .cloned()
        .unwrap()
}

#[test]
fn epoch_by_weight_cells_are_the_images_generate_makes() {
    let folder = tempfile::tempdir().unwrap();
    let loras = folder.path().join("loras");
    std::fs::create_dir(&loras).unwrap();
    fake_run(&loras, false);
    let out = folder.path().join("run");
    let first = grid(&loras, &out);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("rendered 6 cells"),
        "{}",
        stderr(&first)
    );
    let manifest = manifest(&out);
    let epochs: Vec<u64> = (0..3)
        .map(|x| {
            cell(&manifest, x, 0)["params"]["loras"][0]["epoch"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(epochs, vec![1, 2, 3]);

    // Cell (epoch 2, weight 0.4) against `generate` with the same tag.
    let entry = cell(&manifest, 1, 0);
    let prompt = entry["params"]["prompt"].as_str().unwrap().to_string();
    assert!(prompt.contains("<lora:tinyface-000002:0.4>"), "{prompt}");
    let cell_image = out.join(entry["image"].as_str().unwrap());
    let generated = folder.path().join("generated.png");
    let model = fixture("tiny/tiny-sd15.safetensors");
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--lora-dir",
        loras.to_str().unwrap(),
        "--prompt",
        &prompt,
        "--out",
        generated.to_str().unwrap(),
    ];
    args.extend(SETTINGS);
    let output = loraeval(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(pixels(&cell_image) == pixels(&generated));
    let text = infotext(&cell_image);
    assert_eq!(text, infotext(&generated));
    assert!(text.contains("Lora hashes: \"tinyface-000002: "), "{text}");

    // Epochs and weights change the image.
    let image = |x, y| pixels(&out.join(cell(&manifest, x, y)["image"].as_str().unwrap()));
    assert!(image(0, 1) != image(2, 1));
    assert!(image(2, 0) != image(2, 1));

    let again = grid(&loras, &out);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("rendered 0 cells"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn a_lora_file_with_nan_fails_its_cells_and_the_rest_is_rendered() {
    let folder = tempfile::tempdir().unwrap();
    let loras = folder.path().join("loras");
    std::fs::create_dir(&loras).unwrap();
    fake_run(&loras, true);
    let out = folder.path().join("run");
    let output = grid(&loras, &out);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("rendered 4 cells"), "{text}");
    assert!(text.contains("2 cells failed"), "{text}");
    assert!(
        text.contains("tinyface-000002.safetensors") && text.contains("NaN"),
        "{text}"
    );
    let manifest = manifest(&out);
    for x in 0..3 {
        for y in 0..2 {
            let status = cell(&manifest, x, y)["status"]
                .as_str()
                .unwrap()
                .to_string();
            let expected = if x == 1 { "failed" } else { "ok" };
            assert_eq!(status, expected, "cell ({x}, {y})");
        }
    }
    assert!(out.join("grid.png").is_file());
}

#[test]
fn cells_sharing_a_lora_state_share_its_application_and_encodings() {
    let folder = tempfile::tempdir().unwrap();
    let loras = folder.path().join("loras");
    std::fs::create_dir(&loras).unwrap();
    fake_run(&loras, false);
    let out = folder.path().join("run");
    let model = fixture("tiny/tiny-sd15.safetensors");
    // Plan order alternates the weight (X fastest); rendering groups cells by LoRA state. The 4 controls (one per
    // CFG and seed) use the base model (no LoRA application) and one more encoding, of the prompt without the tag.
    let mut args = vec![
        "grid",
        "--model",
        model.to_str().unwrap(),
        "--lora-dir",
        loras.to_str().unwrap(),
        "--x",
        "0.4,1.0",
        "--y",
        "cfg:5,7",
        "--seeds",
        "2",
        "--prompt",
        PROMPT,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(SETTINGS);
    let output = loraeval(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output)
            .contains("shared work: 2 LoRA applications and 3 prompt encodings for 12 images"),
        "{}",
        stderr(&output)
    );
    let manifest = manifest(&out);
    let prompt = cell(&manifest, 1, 1)["params"]["prompt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(prompt.contains("<lora:tinyface:1.0>"), "{prompt}");
}
