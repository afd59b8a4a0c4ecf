//! Epoch files of kohya runs: ordered by `ss_epoch` (not by name), runs never mixed, the run chosen by
//! `--lora-name` or the prompt's tag, and the epoch × weight plan acting through the `<lora:…>` tag.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use loraeval::grid::epochs::LoraLibrary;
use safetensors::tensor::{serialize, Dtype, TensorView};

/// Writes a one-tensor LoRA-like safetensors file with `metadata`.
fn write_lora(dir: &Path, stem: &str, metadata: &[(&str, &str)]) {
    let data = vec![0u8; 16];
    let view = TensorView::new(Dtype::F32, vec![2, 2], &data).unwrap();
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let bytes = serialize([("lora_unet_x.lora_down.weight", view)], Some(meta)).unwrap();
    std::fs::write(dir.join(format!("{stem}.safetensors")), bytes).unwrap();
}

/// A kohya run: `face-000001`, `face-000002` and the final `face` (epoch 3), one session id.
fn kohya_run(dir: &Path, name: &str, session: &str) {
    for (stem, epoch) in [
        (format!("{name}-000001"), 1),
        (format!("{name}-000002"), 2),
        (name.to_string(), 3),
    ] {
        let epoch = epoch.to_string();
        let steps = (epoch.parse::<u32>().unwrap() * 150).to_string();
        write_lora(
            dir,
            &stem,
            &[
                ("ss_epoch", &epoch),
                ("ss_steps", &steps),
                ("ss_session_id", session),
                ("ss_output_name", name),
            ],
        );
    }
}

#[test]
fn epochs_are_ordered_by_metadata_and_runs_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    kohya_run(dir.path(), "face", "111");
    kohya_run(dir.path(), "other", "222");
    write_lora(
        dir.path(),
        "face-step00000500",
        &[("ss_epoch", "0"), ("ss_session_id", "111")],
    );
    std::fs::write(
        dir.path().join("broken.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    let library = LoraLibrary::scan(dir.path()).unwrap();
    assert_eq!(library.skipped.len(), 1);
    let ambiguous = library.select_run(None, "photo").unwrap_err().to_string();
    assert!(ambiguous.contains("2 training runs"), "{ambiguous}");
    assert!(ambiguous.contains("--lora-name"), "{ambiguous}");
    let run = library.select_run(Some("face"), "photo").unwrap();
    let stems: Vec<&str> = run.files.iter().map(|f| f.stem.as_str()).collect();
    // By ss_epoch: the plain final file comes last although it sorts first by name; no step saves, no other run.
    assert_eq!(stems, vec!["face-000001", "face-000002", "face"]);
    assert_eq!(run.files[2].label(), "epoch 3 (450 steps)");
    let from_tag = library
        .select_run(None, "photo <lora:other-000002:0.7>")
        .unwrap();
    assert_eq!(from_tag.name, "other");
    // A1111 lookup by file stem.
    assert_eq!(library.resolve("face-000002").unwrap().epoch, Some(2));
}

#[test]
fn a_folder_with_two_runs_claiming_one_epoch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_lora(
        dir.path(),
        "a-000001",
        &[("ss_epoch", "1"), ("ss_session_id", "1")],
    );
    write_lora(
        dir.path(),
        "a-copy",
        &[("ss_epoch", "1"), ("ss_session_id", "1")],
    );
    let err = LoraLibrary::scan(dir.path())
        .unwrap()
        .select_run(None, "")
        .unwrap_err()
        .to_string();
    assert!(err.contains("both claim epoch 1"), "{err}");
}

#[test]
fn epoch_by_weight_plan_rewrites_the_lora_tag() {
    let dir = tempfile::tempdir().unwrap();
    kohya_run(dir.path(), "face", "111");
    let out = dir.path().join("run");
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/tiny-sd15.safetensors");
    let output = Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .arg("grid")
        .arg("--model")
        .arg(&model)
        .arg("--lora-dir")
        .arg(dir.path())
        .args([
            "--x",
            "epochs",
            "--y",
            "0.4-1.0 [4]",
            "--prompt",
            "photo of sks woman",
            "--seed",
            "3",
        ])
        .args(["--width", "64", "--height", "64", "--steps", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("X: Epoch = epoch 1 (150 steps) | epoch 2 (300 steps) | epoch 3 (450 steps)"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("LoRA weight: 0.4 | LoRA weight: 0.6 | LoRA weight: 0.8 | LoRA weight: 1.0"),
        "{stderr}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("grid.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["axes"]["x"]["files"],
        serde_json::json!([
            "face-000001.safetensors",
            "face-000002.safetensors",
            "face.safetensors"
        ])
    );
    let cells = manifest["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 12);
    let last = &cells[11]["params"];
    assert_eq!(last["prompt"], "photo of sks woman <lora:face:1.0>");
    assert_eq!(last["loras"][0]["file"], "face.safetensors");
    assert_eq!(last["loras"][0]["epoch"], 3);
    assert_eq!(
        cells[1]["params"]["prompt"],
        "photo of sks woman <lora:face-000002:0.4>"
    );
    assert!(last["loras"][0]["sha256"].as_str().unwrap().len() == 64);
}
