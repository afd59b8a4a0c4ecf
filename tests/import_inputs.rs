//! `loraeval import` on awkward folders: files without infotext, broken files, JPEG and WebP with A1111's EXIF,
//! ComfyUI graphs, `Lora hashes` that disagree, settings that vary (Z levels), `--link`, a folder without LoRA
//! tags, and a run folder loraeval rendered. Every skipped file is named with its reason and counted.

mod import_support;

use std::path::Path;

use import_support::*;
use serde_json::{json, Value};

fn arg(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn face() -> image::RgbImage {
    photos("heldout").remove(0)
}

/// `loraeval import INPUT --out RUN --json [extra]`: (code, JSON or Null, stderr).
fn import(input: &Path, run: &Path, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec![
        "import".to_string(),
        arg(input),
        "--out".into(),
        arg(run),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = loraeval(&refs);
    (
        code,
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr,
    )
}

fn reasons(summary: &Value) -> Vec<(String, String)> {
    summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let file = Path::new(s["file"].as_str().unwrap()).file_name().unwrap();
            (
                file.to_string_lossy().into_owned(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Two epochs and the None image of one seed, as PNGs.
fn write_small_grid(dir: &Path) {
    let image = face();
    write_png(
        &dir.join("00000-7.png"),
        &image,
        &params("photo of sks", 7, &[]),
    );
    for epoch in [1, 2] {
        let prompt = format!("photo of sks <lora:sks-{epoch:06}:1>");
        write_png(
            &dir.join(format!("0000{epoch}-7.png")),
            &image,
            &params(&prompt, 7, &[]),
        );
    }
}

/// What piexif.insert writes into a WebP: the VP8L image in an extended (VP8X) file with an EXIF chunk of the
/// TIFF data (piexif strips the `Exif\0\0` header for WebP).
fn write_webp(path: &Path, image: &image::RgbImage, infotext: &str) {
    let mut simple = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut simple)
        .encode(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    let vp8l = &simple[12..];
    let chunk = |name: &[u8], data: &[u8]| {
        let mut c = name.to_vec();
        c.extend((data.len() as u32).to_le_bytes());
        c.extend(data);
        if data.len() % 2 == 1 {
            c.push(0);
        }
        c
    };
    let mut vp8x = vec![0x08, 0, 0, 0];
    vp8x.extend(&(image.width() - 1).to_le_bytes()[..3]);
    vp8x.extend(&(image.height() - 1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    body.extend(chunk(b"VP8X", &vp8x));
    body.extend(vp8l);
    body.extend(chunk(b"EXIF", &piexif_dump(infotext)[6..]));
    let mut file = b"RIFF".to_vec();
    file.extend((body.len() as u32).to_le_bytes());
    file.extend(body);
    std::fs::write(path, file).unwrap();
}

#[test]
fn bad_files_are_named_and_counted_and_the_rest_imported() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("outputs");
    write_small_grid(&outputs);
    let image = face();
    std::fs::write(
        outputs.join("00003-7.png"),
        loraeval::sampling::png_info::encode_png(&image, "").unwrap(),
    )
    .unwrap();
    let whole = std::fs::read(outputs.join("00001-7.png")).unwrap();
    std::fs::write(outputs.join("00004-7.png"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(outputs.join("00005-7.jpg"), "not a jpeg").unwrap();
    image::DynamicImage::ImageRgb8(image.clone())
        .save(outputs.join("00006-7.jpg"))
        .unwrap();
    let caption =
        loraeval::sampling::png_info::encode_png(&image, "a caption, not parameters").unwrap();
    std::fs::write(outputs.join("00007-7.png"), caption).unwrap();
    let info = params("photo of sks <lora:sks-000003:1>", 7, &[]);
    write_webp(&outputs.join("00008-7.webp"), &image, &info.to_infotext());
    let run = dir.path().join("run");
    let (code, summary, stderr) = import(&outputs, &run, &[]);
    assert_eq!(code, 0, "{stderr}");
    let mut found = reasons(&summary);
    found.sort();
    let want = [
        ("00003-7.png", "no infotext"),
        ("00004-7.png", "unreadable"),
        ("00005-7.jpg", "unreadable"),
        ("00006-7.jpg", "no infotext"),
        ("00007-7.png", "not A1111 infotext"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(found, want, "{stderr}");
    assert_eq!(
        (summary["cells"].as_u64(), summary["controls"].as_u64()),
        (Some(3), Some(1)),
        "{summary:#}"
    );
    assert!(
        stderr.contains("00006-7.jpg: no generation parameters: no EXIF UserComment"),
        "{stderr}"
    );
    assert!(
        stderr.contains("00003-7.png: no generation parameters: the PNG has no `parameters`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped 5: 2 no infotext, 2 unreadable, 1 not A1111 infotext"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 JPEG/WebP stored as PNG"),
        "the WebP's EXIF infotext is read: {stderr}"
    );
    assert_eq!(summary["x"], json!(["epoch 1", "epoch 2", "epoch 3"]));
}

#[test]
fn folders_without_lora_tags_or_images_are_refused_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("outputs");
    let image = face();
    for seed in [1, 2] {
        write_png(
            &outputs.join(format!("0000{seed}-{seed}.png")),
            &image,
            &params("photo", seed, &[]),
        );
    }
    std::fs::write(outputs.join("00003-3.png"), "junk").unwrap();
    let (code, _, stderr) = import(&outputs, &dir.path().join("run"), &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("none of the 2 images with generation parameters names a LoRA in its prompt (<lora:NAME:WEIGHT>)"), "{stderr}");
    assert!(stderr.contains("skipped 1: 1 unreadable"), "{stderr}");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, stderr) = import(&empty, &dir.path().join("run"), &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no PNG, JPEG or WebP images in"),
        "{stderr}"
    );
    let (code, _, stderr) = import(&dir.path().join("absent"), &dir.path().join("run"), &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("absent: no such file or folder"),
        "{stderr}"
    );
}

fn comfy_graph(lora: Value, seed: u64) -> Value {
    json!({
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 20, "cfg": 7, "sampler_name": "euler",
              "scheduler": "normal", "denoise": 1, "model": ["10", 0], "positive": ["6", 0],
              "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 320, "height": 320, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "photo of sks woman", "clip": ["10", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["10", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
        "10": lora,
    })
}

/// A PNG as ComfyUI's SaveImage writes it: `prompt` and `workflow` text chunks.
fn write_comfy(path: &Path, image: &image::RgbImage, graph: &Value) {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, image.width(), image.height());
    encoder.set_color(png::ColorType::Rgb);
    encoder
        .add_text_chunk("prompt".into(), graph.to_string())
        .unwrap();
    encoder
        .add_text_chunk("workflow".into(), "{\"nodes\": []}".into())
        .unwrap();
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(image.as_raw()).unwrap();
    writer.finish().unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn comfyui_lora_loader_graphs_are_imported_and_unreadable_ones_named() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("ComfyUI/output");
    std::fs::create_dir_all(&outputs).unwrap();
    let image = face();
    let mut n = 1;
    for epoch in [1, 2] {
        for strength in [0.8, 1.0] {
            let lora = json!({"class_type": "LoraLoader", "inputs": {"lora_name": format!("sks-{epoch:06}.safetensors"),
                "strength_model": strength, "strength_clip": strength, "model": ["4", 0], "clip": ["4", 1]}});
            write_comfy(
                &outputs.join(format!("ComfyUI_{n:05}_.png")),
                &image,
                &comfy_graph(lora, 5),
            );
            n += 1;
        }
    }
    let linked = json!({"class_type": "LoraLoader", "inputs": {"lora_name": ["12", 0],
        "strength_model": 1, "strength_clip": 1, "model": ["4", 0], "clip": ["4", 1]}});
    write_comfy(
        &outputs.join("ComfyUI_00009_.png"),
        &image,
        &comfy_graph(linked, 5),
    );
    let run = dir.path().join("run");
    let (code, summary, stderr) = import(&outputs, &run, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["source"], "comfyui");
    assert_eq!(summary["cells"], 4);
    assert_eq!(summary["x"], json!(["epoch 1", "epoch 2"]));
    assert_eq!(
        summary["y"],
        json!(["LoRA weight: 0.8", "LoRA weight: 1.0"])
    );
    assert!(stderr.contains("ComfyUI_00009_.png: a ComfyUI image whose graph could not be read: the lora_name of node 10 (LoraLoader) is not a literal text"), "{stderr}");
    let grid = grid_json(&run);
    assert_eq!(grid["cells"][0]["params"]["sampler"], "euler normal");
    assert_eq!(grid["model"]["name"], "v1-5-pruned-emaonly.safetensors");
}

#[test]
fn lora_hashes_other_models_and_several_tags_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("outputs");
    let image = face();
    let good = &lora_hash(2)[..12];
    for seed in [1, 2, 3] {
        let prompt = "photo of sks <lora:sks-000002:1>";
        write_png(
            &outputs.join(format!("0000{seed}-{seed}.png")),
            &image,
            &params(prompt, seed, &[("sks-000002", good)]),
        );
    }
    let prompt = "photo of sks <lora:sks-000002:0.5>";
    write_png(
        &outputs.join("00004-4.png"),
        &image,
        &params(prompt, 4, &[("sks-000002", "0123456789ab")]),
    );
    let two = "photo of sks <lora:sks-000001:1> <lora:sks-000002:1>";
    write_png(&outputs.join("00005-5.png"), &image, &params(two, 5, &[]));
    let mut size = params("photo of sks <lora:sks-000002:0.5>", 6, &[]);
    size.width = 512;
    write_png(&outputs.join("00006-6.png"), &image, &size);
    let run = dir.path().join("run");
    let (code, summary, stderr) = import(&outputs, &run, &[]);
    assert_eq!(code, 0, "{stderr}");
    let mut found = reasons(&summary);
    found.sort();
    assert_eq!(
        found,
        vec![
            (
                "00004-4.png".to_string(),
                "Lora hashes mismatch".to_string()
            ),
            (
                "00005-5.png".to_string(),
                "several epochs in one prompt".to_string()
            ),
            ("00006-6.png".to_string(), "other Size".to_string()),
        ],
        "{stderr}"
    );
    assert!(stderr.contains("Size 512x320, not 320x320"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "gives sks-000002 as 0123456789ab, the other images of sks-000002 say {good}"
        )),
        "{stderr}"
    );
    let models = dir.path().join("models");
    write_lora(&models.join("sks-000002.safetensors"), 2, &"f".repeat(64));
    let (code, summary, stderr) = import(
        &outputs,
        &dir.path().join("run2"),
        &["--lora-dir", &arg(&models)],
    );
    assert_eq!(
        code, 1,
        "every image's hash differs from the file's: {summary:#} {stderr}"
    );
    assert!(
        stderr.contains("sks-000002.safetensors hashes to ffffffffffff"),
        "{stderr}"
    );
}

#[test]
fn varying_settings_become_z_levels_and_link_links() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("outputs");
    let image = face();
    let mut n = 0;
    for (prompt, cfg) in [
        ("photo of sks", 7.0),
        ("photo of sks", 5.0),
        ("sks at the beach", 7.0),
    ] {
        for tag in ["", " <lora:sks-000001:1>", " <lora:sks-000002:1>"] {
            let mut info = params(&format!("{prompt}{tag}"), 42, &[]);
            info.cfg = cfg;
            write_png(&outputs.join(format!("{n:05}-42.png")), &image, &info);
            n += 1;
        }
    }
    let run = dir.path().join("run");
    let (code, summary, stderr) = import(&outputs, &run, &["--link"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        summary["z"],
        json!([
            "photo of sks, CFG scale: 7",
            "photo of sks, CFG scale: 5",
            "sks at the beach, CFG scale: 7"
        ])
    );
    let grid = grid_json(&run);
    assert_eq!(grid["axes"]["z"]["type"], "settings");
    assert_eq!(grid["axes"]["z"]["label"], "Prompt / CFG scale");
    assert_eq!(grid["controls"].as_array().unwrap().len(), 3);
    for control in grid["controls"].as_array().unwrap() {
        let z = control["z_index"].as_u64().unwrap() as usize;
        let level_prompt = &grid["axes"]["z"]["values"][z]["Prompt"];
        assert_eq!(&control["params"]["prompt"], level_prompt, "{control}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let cell = &grid["cells"][0];
        let stored = std::fs::metadata(run.join(cell["image"].as_str().unwrap())).unwrap();
        let original = std::fs::metadata(cell["original"].as_str().unwrap()).unwrap();
        assert_eq!(stored.ino(), original.ino(), "--link hard-links");
    }
}

#[test]
fn a_rendered_run_folder_is_not_imported_into() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("outputs");
    write_small_grid(&outputs);
    let run = dir.path().join("run");
    let (code, _, stderr) = import(&outputs, &run, &[]);
    assert_eq!(code, 0, "{stderr}");
    let mut grid = grid_json(&run);
    grid.as_object_mut().unwrap().remove("source");
    std::fs::write(run.join("grid.json"), grid.to_string()).unwrap();
    let (code, _, stderr) = import(&outputs, &run, &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("holds a grid loraeval rendered, not an import"),
        "{stderr}"
    );
}
