//! Renders every case of tests/fixtures/tiny/cases.json through both checkpoint layouts and compares the pixels
//! with the reference renders (diffusers modules + k-diffusion samplers + torch CPU RNG, A1111 semantics).

use loraeval::sampling::samplers::SamplerName;
use loraeval::sampling::txt2img::{StableDiffusion, Txt2ImgRequest};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    prompt: String,
    negative: String,
    seed: u64,
    steps: usize,
    cfg: f64,
    sampler: String,
    width: usize,
    height: usize,
    batch: usize,
    clip_skip: usize,
    images: Vec<String>,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixture_dir().join("cases.json")).expect("cases.json");
    serde_json::from_str(&text).expect("cases.json parses")
}

fn request(case: &Case) -> Txt2ImgRequest {
    Txt2ImgRequest {
        prompt: case.prompt.clone(),
        negative: case.negative.clone(),
        seed: case.seed,
        steps: case.steps,
        cfg: case.cfg,
        sampler: SamplerName::parse(&case.sampler).expect("sampler name"),
        width: case.width,
        height: case.height,
        clip_skip: case.clip_skip,
        batch: case.batch,
    }
}

/// (mean absolute difference, fraction of channel values within 4 levels, max difference).
fn compare(ours: &image::RgbImage, reference: &image::RgbImage) -> (f64, f64, u8) {
    assert_eq!(ours.dimensions(), reference.dimensions());
    let diffs: Vec<u8> = ours
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
    let within = diffs.iter().filter(|&&d| d <= 4).count() as f64 / diffs.len() as f64;
    (mean, within, diffs.iter().copied().max().unwrap_or(0))
}

fn check_all_cases(model_path: &Path) {
    let model = StableDiffusion::load(model_path).expect("tiny model loads");
    let mut failures = Vec::new();
    for case in cases() {
        let images = model
            .txt2img(&request(&case), &mut |_, _| {})
            .expect("render");
        assert_eq!(
            images.len(),
            case.images.len(),
            "{}: image count",
            case.name
        );
        for (index, (image, file)) in images.iter().zip(&case.images).enumerate() {
            assert_eq!(image.seed, case.seed + index as u64);
            let reference = image::open(fixture_dir().join(file))
                .expect("reference png")
                .to_rgb8();
            let (mean, within, max) = compare(&image.pixels, &reference);
            eprintln!(
                "{} [{}]: mean {mean:.4}, within 4: {:.4}%, max {max}",
                case.name,
                index,
                within * 100.0
            );
            if mean > 0.5 || within < 0.999 {
                failures.push(format!(
                    "{} image {index}: mean {mean:.3}, within 4 levels {within:.4}",
                    case.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "cases out of tolerance: {failures:#?}");
}

#[test]
fn single_file_checkpoint_matches_reference_renders() {
    check_all_cases(&fixture_dir().join("tiny-sd15.safetensors"));
}

#[test]
fn diffusers_folder_matches_reference_renders() {
    check_all_cases(&fixture_dir().join("diffusers"));
}

/// The public fixture of the project's shared folder (`sd15-tiny/`, its own cases.json with `w`/`h`/`lora`),
/// checked when `LORAEVAL_SHARED_FIXTURES` points at it; LoRA cases are left to the LoRA tests.
#[test]
fn shared_fixture_matches_when_available() {
    let Some(folder) = std::env::var_os("LORAEVAL_SHARED_FIXTURES").map(PathBuf::from) else {
        eprintln!("skipped: set LORAEVAL_SHARED_FIXTURES=<shared>/fixtures/sd15-tiny to check the shared renders");
        return;
    };
    let text = std::fs::read_to_string(folder.join("cases.json")).expect("shared cases.json");
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&text).expect("shared cases.json parses");
    for layout in ["tiny-sd15.safetensors", "diffusers"] {
        let model = StableDiffusion::load(&folder.join(layout)).expect("shared model loads");
        for case in cases.iter().filter(|case| case["lora"].is_null()) {
            let request = Txt2ImgRequest {
                prompt: case["prompt"].as_str().unwrap().to_string(),
                negative: case["negative"].as_str().unwrap().to_string(),
                seed: case["seed"].as_u64().unwrap(),
                steps: case["steps"].as_u64().unwrap() as usize,
                cfg: case["cfg"].as_f64().unwrap(),
                sampler: SamplerName::parse(case["sampler"].as_str().unwrap()).unwrap(),
                width: case["w"].as_u64().unwrap() as usize,
                height: case["h"].as_u64().unwrap() as usize,
                clip_skip: 1,
                batch: 1,
            };
            let image = &model.txt2img(&request, &mut |_, _| {}).expect("render")[0];
            let reference = image::open(folder.join(case["image"].as_str().unwrap()))
                .unwrap()
                .to_rgb8();
            let (mean, within, max) = compare(&image.pixels, &reference);
            eprintln!(
                "shared {layout} {}: mean {mean:.4}, within 4: {:.4}%, max {max}",
                case["name"],
                within * 100.0
            );
            assert!(
                mean <= 0.5 && within >= 0.999,
                "shared case {} out of tolerance",
                case["name"]
            );
        }
    }
}
