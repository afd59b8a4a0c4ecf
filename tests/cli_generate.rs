//! `loraeval generate` as a user runs it: outputs, infotext, and one clear error line for each kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/tiny-sd15.safetensors")
}

/// Runs `generate` on `model` with small default settings; `extra` flags replace the defaults they name.
fn generate(model: &Path, out: &Path, extra: &[&str]) -> Output {
    let defaults = [
        ("--prompt", "a photo of sks woman"),
        ("--steps", "2"),
        ("--width", "64"),
        ("--height", "128"),
    ];
    let mut command = Command::new(env!("CARGO_BIN_EXE_loraeval"));
    command.arg("generate").arg("--model").arg(model);
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

/// Runs a generate that must fail; returns stderr after checking the exit code, the absence of a panic and
/// of an output file.
fn expect_failure(model: &Path, extra: &[&str]) -> String {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("out.png");
    let output = generate(model, &out, extra);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "expected failure, stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(
        !out.exists(),
        "an output file was written despite the error"
    );
    let leftovers: Vec<_> = std::fs::read_dir(folder.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "files left behind: {leftovers:?}");
    stderr
}

#[test]
fn writes_png_with_a1111_infotext_and_prints_path_and_seed() {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("image.png");
    let output = generate(
        &tiny_model(),
        &out,
        &[
            "--seed",
            "77",
            "--negative",
            "blurry",
            "--sampler",
            "Euler a",
            "--rng",
            "cpu",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("image.png") && stdout.contains("seed 77"),
        "stdout: {stdout}"
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert_eq!((info.width, info.height), (64, 128));
    let text = info
        .uncompressed_latin1_text
        .iter()
        .find(|chunk| chunk.keyword == "parameters")
        .unwrap();
    assert_eq!(
        text.text,
        "a photo of sks woman\nNegative prompt: blurry\nSteps: 2, Sampler: Euler a, Schedule type: Automatic, \
         CFG scale: 7, Seed: 77, Size: 64x128, Model hash: c5d917ac6c, Model: tiny-sd15, RNG: CPU"
    );
}

#[test]
fn batch_writes_one_file_per_seed_and_random_seed_is_printed() {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("b.png");
    let output = generate(&tiny_model(), &out, &["--batch", "2"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let seeds: Vec<u64> = stdout
        .lines()
        .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seeds.len(), 2);
    assert_eq!(seeds[1], seeds[0] + 1);
    assert!(folder.path().join("b-0.png").exists() && folder.path().join("b-1.png").exists());
}

#[test]
fn existing_output_is_not_overwritten_without_force() {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("keep.png");
    std::fs::write(&out, b"user data").unwrap();
    let output = generate(&tiny_model(), &out, &["--seed", "1"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&out).unwrap(), b"user data");
    let forced = generate(&tiny_model(), &out, &["--seed", "1", "--force"]);
    assert!(forced.status.success());
    assert_ne!(std::fs::read(&out).unwrap(), b"user data");
}

#[test]
fn bad_settings_are_named() {
    let model = tiny_model();
    assert!(expect_failure(&model, &["--width", "100"]).contains("width 100"));
    assert!(expect_failure(&model, &["--steps", "0"]).contains("steps"));
    let sampler = expect_failure(&model, &["--sampler", "heun"]);
    assert!(
        sampler.contains("heun")
            && sampler.contains("dpmpp_2m_karras")
            && sampler.contains("euler_a")
    );
    assert!(expect_failure(&model, &["--clip-skip", "9"]).contains("clip skip 9"));
}

fn write_file(folder: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = folder.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn bad_model_files_are_named() {
    let folder = tempfile::tempdir().unwrap();
    let missing = folder.path().join("nope.safetensors");
    assert!(expect_failure(&missing, &[]).contains("nope.safetensors"));

    let tiny = std::fs::read(tiny_model()).unwrap();
    let truncated = write_file(
        folder.path(),
        "truncated.safetensors",
        &tiny[..tiny.len() / 2],
    );
    assert!(expect_failure(&truncated, &[]).contains("truncated.safetensors"));

    let mut bad_json = 20u64.to_le_bytes().to_vec();
    bad_json.extend_from_slice(b"{not json at all!!!}");
    let bad_json = write_file(folder.path(), "badjson.safetensors", &bad_json);
    assert!(expect_failure(&bad_json, &[]).contains("badjson.safetensors"));

    let pickle = write_file(folder.path(), "model.ckpt", b"PK\x03\x04 pickle inside");
    let stderr = expect_failure(&pickle, &[]);
    assert!(
        stderr.contains("model.ckpt") && stderr.contains("safetensors"),
        "{stderr}"
    );
}

#[test]
fn other_model_families_are_refused_with_what_they_look_like() {
    let folder = tempfile::tempdir().unwrap();
    let header = br#"{"conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 4]);
    let sdxl = write_file(folder.path(), "sdxl.safetensors", &bytes);
    let stderr = expect_failure(&sdxl, &[]);
    assert!(stderr.contains("SDXL"), "{stderr}");
}

/// The `parameters` text and pixels of a generated PNG.
fn read_png(path: &Path) -> (String, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let text = reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .find(|chunk| chunk.keyword == "parameters")
        .map(|chunk| chunk.text.clone())
        .unwrap();
    (text, image::open(path).unwrap().to_rgb8().into_raw())
}

/// Generates one image with `extra` flags and returns its infotext's parameter line and its pixels.
fn render_with(folder: &Path, name: &str, extra: &[&str]) -> (String, Vec<u8>) {
    let out = folder.join(name);
    let output = generate(&tiny_model(), &out, &[&["--seed", "5"], extra].concat());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (text, pixels) = read_png(&out);
    (text.lines().last().unwrap().to_string(), pixels)
}

#[test]
fn rng_sources_and_ensd_render_and_write_infotext_as_a1111() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let euler_a = ["--sampler", "euler_a"];
    let (gpu_line, gpu) = render_with(dir, "gpu.png", &euler_a);
    let (explicit_line, explicit) =
        render_with(dir, "gpu2.png", &[&euler_a[..], &["--rng", "GPU"]].concat());
    let (nv_line, nv) = render_with(dir, "nv.png", &[&euler_a[..], &["--rng", "nv"]].concat());
    let (cpu_line, cpu) = render_with(dir, "cpu.png", &[&euler_a[..], &["--rng", "cpu"]].concat());
    // The default is A1111's: GPU, no RNG field; NV draws the same numbers and says so.
    assert!(
        !gpu_line.contains("RNG") && !gpu_line.contains("ENSD"),
        "{gpu_line}"
    );
    assert_eq!((explicit_line, explicit), (gpu_line.clone(), gpu.clone()));
    assert_eq!(nv, gpu);
    assert_eq!(nv_line, format!("{gpu_line}, RNG: NV"));
    assert!(cpu_line.ends_with(", RNG: CPU"), "{cpu_line}");
    assert_ne!(cpu, gpu);
    // ENSD changes an ancestral sampler's image and is written before RNG.
    let (ensd_line, ensd) = render_with(
        dir,
        "ensd.png",
        &[&euler_a[..], &["--rng", "nv", "--ensd", "31337"]].concat(),
    );
    assert!(ensd_line.ends_with(", ENSD: 31337, RNG: NV"), "{ensd_line}");
    assert_ne!(ensd, nv);
    // A sampler without ancestral noise: same image, no ENSD field (A1111 writes it only for samplers using it).
    let (euler_line, euler) = render_with(dir, "euler.png", &["--sampler", "euler"]);
    let (euler_ensd_line, euler_ensd) = render_with(
        dir,
        "euler-ensd.png",
        &["--sampler", "euler", "--ensd", "31337"],
    );
    assert_eq!((euler_ensd_line, euler_ensd), (euler_line, euler));
}

#[test]
fn unknown_rng_source_lists_the_three() {
    let stderr = expect_failure(&tiny_model(), &["--rng", "cuda"]);
    assert!(
        stderr.contains("cuda") && stderr.contains("gpu, cpu, nv"),
        "{stderr}"
    );
}
