//! `loraeval generate --lora` / `--lora-dir` and `loraeval inspect` as a user runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
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

fn max_diff(a: &Path, b: &Path) -> u8 {
    let a = image::open(a).unwrap().to_rgb8();
    let b = image::open(b).unwrap().to_rgb8();
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn infotext(path: &Path) -> String {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    info.uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == "parameters")
        .map(|t| t.text.clone())
        .or_else(|| {
            info.utf8_text
                .iter()
                .find(|t| t.keyword == "parameters")
                .and_then(|t| t.get_text().ok())
        })
        .expect("parameters text")
}

fn hash12(file: &str) -> String {
    let text = std::fs::read_to_string(fixture("lora/hashes.json")).unwrap();
    let hashes: serde_json::Value = serde_json::from_str(&text).unwrap();
    hashes[file].as_str().unwrap()[..12].to_string()
}

#[test]
fn lora_flag_and_prompt_tag_render_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("tiny/tiny-sd15.safetensors");
    let lora = fixture("lora/kohya_locon.safetensors");
    let reference = fixture("lora/ref-kohya_locon_0.6.png");
    let common = |out: &Path| -> Vec<String> {
        [
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--negative",
            "blurry, lowres",
            "--seed",
            "42",
            "--steps",
            "8",
            "--cfg",
            "7",
            "--sampler",
            "euler",
            "--rng",
            "cpu",
            "--width",
            "128",
            "--height",
            "64",
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let flag_out = dir.path().join("flag.png");
    let mut args = common(&flag_out);
    let spec = format!("{}:0.6", lora.display());
    args.extend([
        "--prompt".into(),
        "a photo of sks woman, smiling, portrait".into(),
        "--lora".into(),
        spec,
    ]);
    let (code, _, stderr) = loraeval(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{stderr}");
    assert!(max_diff(&flag_out, &reference) <= 1);
    let text = infotext(&flag_out);
    assert!(
        text.starts_with("a photo of sks woman, smiling, portrait <lora:kohya_locon:0.6>\n"),
        "{text}"
    );
    let hashes = format!(
        "Lora hashes: \"kohya_locon: {}\"",
        hash12("kohya_locon.safetensors")
    );
    assert!(text.contains(&hashes), "{text}");

    let tag_out = dir.path().join("tag.png");
    let mut args = common(&tag_out);
    args.extend([
        "--prompt".into(),
        "a photo of sks woman, smiling, portrait <lora:kohya_locon:0.6>".into(),
        "--lora-dir".into(),
        fixture("lora").display().to_string(),
        "--lora-mode".into(),
        "unmerged".into(),
    ]);
    let (code, _, stderr) = loraeval(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{stderr}");
    assert!(max_diff(&tag_out, &reference) <= 1);
    assert!(infotext(&tag_out).contains(&hashes));
}

#[test]
fn inspect_describes_a_kohya_file() {
    let path = fixture("lora/kohya_locon.safetensors");
    let (code, stdout, stderr) = loraeval(&["inspect", path.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(summary["formats"], serde_json::json!(["LoRA", "LoCon"]));
    assert_eq!(summary["ranks"]["4"], 288);
    assert_eq!(summary["alphas"]["2"], 288);
    // tiny model: 2 CLIP layers × 6 Linear; UNet LoCon on every resnet / sampler conv.
    assert_eq!(summary["text_encoder"]["linear"], 12);
    // 3×3 convs of the tiny UNet: conv1 + conv2 of 22 resnets (4×2 down, 2 mid, 4×3 up), 3 down- and 3 upsamplers.
    assert_eq!(summary["unet"]["conv_kxk"], 22 * 2 + 3 + 3);
    assert_eq!(summary["base_model"]["family"], "SD1.x");
    assert_eq!(summary["short_hash"], hash12("kohya_locon.safetensors"));
    let training = summary["training"].as_array().unwrap();
    assert!(training
        .iter()
        .any(|row| row == &serde_json::json!(["Epoch", "3"])));
    assert_eq!(summary["top_tags"][0], serde_json::json!(["sks woman", 20]));

    let lokr = fixture("lora/lokr.safetensors");
    let (code, stdout, _) = loraeval(&["inspect", lokr.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("format:      LoKr (kohya keys)"),
        "{stdout}"
    );
}
