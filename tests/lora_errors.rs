//! Bad LoRA input: one clear message each (the file, the tensor or key, the shapes, the family it looks made for),
//! through the library and through `loraeval generate` / `inspect` (non-zero exit, no panic).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use loraeval::lora::{LoraError, LoraFile};
use loraeval::sampling::txt2img::StableDiffusion;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// Writes an f32 safetensors file of (key, shape, values).
fn write_f32(
    path: &Path,
    tensors: &[(&str, Vec<usize>, Vec<f32>)],
    metadata: Option<HashMap<String, String>>,
) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((k, s, _), b)| {
            (
                k.to_string(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let data = safetensors::serialize(views, metadata).expect("serialize");
    std::fs::write(path, data).expect("write");
}

fn lora_tensors(
    module: &str,
    down: Vec<usize>,
    up: Vec<usize>,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let n = |s: &[usize]| s.iter().product::<usize>();
    vec![
        (
            format!("{module}.lora_down.weight"),
            down.clone(),
            vec![0.01; n(&down)],
        ),
        (
            format!("{module}.lora_up.weight"),
            up.clone(),
            vec![0.01; n(&up)],
        ),
        (format!("{module}.alpha"), vec![], vec![1.0]),
    ]
}

fn write_modules(path: &Path, modules: Vec<(String, Vec<usize>, Vec<f32>)>) {
    let refs: Vec<(&str, Vec<usize>, Vec<f32>)> = modules
        .iter()
        .map(|(k, s, v)| (k.as_str(), s.clone(), v.clone()))
        .collect();
    write_f32(path, &refs, None);
}

fn open_error(path: &Path) -> String {
    LoraFile::open(path).expect_err("must fail").to_string()
}

fn resolve_error(path: &Path) -> LoraError {
    let model = StableDiffusion::load(&fixture("tiny/diffusers")).expect("model");
    let file = LoraFile::open(path).expect("file opens");
    model
        .lora_layers()
        .resolve(&file)
        .expect_err("must not resolve")
}

#[test]
fn truncated_file_is_named_as_broken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.safetensors");
    let bytes = std::fs::read(fixture("lora/kohya_f16.safetensors")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let message = open_error(&path);
    assert!(message.contains("cut.safetensors"), "{message}");
    assert!(
        message.contains("outside the") && message.contains("data section"),
        "{message}"
    );
    std::fs::write(&path, &bytes[..5]).unwrap();
    assert!(open_error(&path).contains("too short"));
    std::fs::write(&path, b"\xff\xff\xff\xff\x00\x00\x00\x00garbage").unwrap();
    assert!(open_error(&path).contains("truncated or not a safetensors file"));
}

#[test]
fn nan_and_inf_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("diverged-000007.safetensors");
    let module = "lora_unet_down_blocks_0_attentions_0_proj_in";
    let mut tensors = lora_tensors(module, vec![4, 32, 1, 1], vec![32, 4, 1, 1]);
    tensors[1].2[3] = f32::NAN;
    tensors[1].2[5] = f32::INFINITY;
    write_modules(&path, tensors);
    let message = open_error(&path);
    assert!(message.contains("diverged-000007.safetensors"), "{message}");
    assert!(
        message.contains(&format!("`{module}.lora_up.weight`")),
        "{message}"
    );
    assert!(message.contains("1 NaN and 1 infinite"), "{message}");
}

#[test]
fn sd2_shapes_are_a_shape_mismatch_that_names_the_family() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sd2.safetensors");
    let module = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";
    write_modules(&path, lora_tensors(module, vec![4, 1024], vec![32, 4]));
    let error = resolve_error(&path);
    let message = error.to_string();
    assert!(
        matches!(error, LoraError::ShapeMismatch { .. }),
        "{message}"
    );
    assert!(message.contains(module), "{message}");
    assert!(
        message.contains("[32, 1024]") && message.contains("[32, 24]"),
        "{message}"
    );
    assert!(message.contains("SD2.x"), "{message}");
}

#[test]
fn sdxl_files_are_refused_as_sdxl() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xl.safetensors");
    let mut tensors = lora_tensors(
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
        vec![4, 768],
        vec![768, 4],
    );
    tensors.extend(lora_tensors(
        "lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k",
        vec![4, 2048],
        vec![640, 4],
    ));
    write_modules(&path, tensors);
    let message = resolve_error(&path).to_string();
    assert!(message.contains("looks made for SDXL"), "{message}");

    let path = dir.path().join("xl_unet_only.safetensors");
    let mut tensors = Vec::new();
    for block in 0..3 {
        tensors.extend(lora_tensors(
            &format!(
                "lora_unet_input_blocks_4_1_transformer_blocks_{}_attn2_to_k",
                block + 1
            ),
            vec![4, 2048],
            vec![640, 4],
        ));
    }
    write_modules(&path, tensors);
    let error = resolve_error(&path);
    let message = error.to_string();
    assert!(
        matches!(error, LoraError::WrongBaseModel { .. }),
        "{message}"
    );
    assert!(
        message.contains("SDXL") && message.contains("0 of 3 modules match"),
        "{message}"
    );
}

#[test]
fn checkpoint_and_incomplete_modules_are_not_loras() {
    let message = open_error(&fixture("tiny/tiny-sd15.safetensors"));
    assert!(
        message.contains("not a LoRA file") && message.contains("--model"),
        "{message}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.safetensors");
    let mut tensors = lora_tensors("lora_unet_x", vec![4, 32], vec![32, 4]);
    tensors.remove(1);
    write_modules(&path, tensors);
    let message = open_error(&path);
    assert!(
        message.contains("`lora_unet_x`") && message.contains("only one of"),
        "{message}"
    );
}

fn loraeval(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .args(args)
        .output()
        .expect("run loraeval");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn cli_reports_unknown_tags_and_broken_files_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.png");
    let model = fixture("tiny/diffusers");
    let common = [
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--steps",
        "1",
        "--width",
        "64",
        "--height",
        "64",
        "--out",
        out.to_str().unwrap(),
    ];
    let lora_dir = fixture("lora");
    let mut args = common.to_vec();
    args.extend([
        "--prompt",
        "a <lora:kohya_loocn:0.5>",
        "--lora-dir",
        lora_dir.to_str().unwrap(),
    ]);
    let (code, _, stderr) = loraeval(&args);
    assert_eq!(code, 1);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("`kohya_loocn` not found") && stderr.contains("kohya_locon"),
        "{stderr}"
    );

    let mut args = common.to_vec();
    args.extend(["--prompt", "a <lora:kohya_locon:0.5>"]);
    let (code, _, stderr) = loraeval(&args);
    assert_eq!(code, 1);
    assert!(stderr.contains("no --lora-dir"), "{stderr}");

    let broken = dir.path().join("broken.safetensors");
    let bytes = std::fs::read(fixture("lora/peft.safetensors")).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() - 100]).unwrap();
    let spec = format!("{}:0.7", broken.display());
    let mut args = common.to_vec();
    args.extend(["--prompt", "a", "--lora", spec.as_str()]);
    let (code, _, stderr) = loraeval(&args);
    assert_eq!(code, 1);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("broken.safetensors") && stderr.contains("data section"),
        "{stderr}"
    );
    assert!(!out.exists());

    let (code, _, stderr) = loraeval(&["inspect", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("error: LoRA file") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
