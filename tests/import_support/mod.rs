//! Image folders written the way A1111 1.10 writes them, for the import tests: the infotext of
//! `processing.create_infotext` (our `GenerationParams::to_infotext`, with `Schedule type`, `Lora hashes` and
//! `Version`), PNGs with a `parameters` text chunk as PIL's `PngInfo.add_text` writes it, JPEGs with the EXIF
//! `UserComment` `piexif.dump` + `piexif.insert` write (big-endian TIFF, `UNICODE\0` + UTF-16 BE, APP1 in
//! place of the JFIF APP0), numbered `NNNNN-SEED.png` files; and kohya LoRA files (header only matters).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::RgbImage;
use loraeval::sampling::png_info::{encode_png, GenerationParams};

pub const PEOPLE: &str = "tests/fixtures/people";
pub const MODEL_HASH: &str = "6ce0161689";

/// The photos of one fixture folder, sorted.
pub fn photos(folder: &str) -> Vec<RgbImage> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(PEOPLE).join(folder))
        .unwrap_or_else(|e| panic!("{PEOPLE}/{folder}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| image::open(p).unwrap().to_rgb8())
        .collect()
}

/// A1111 1.10's infotext of a txt2img image of `prompt` (DPM++ 2M Karras, 20 steps, CFG 7).
pub fn params(prompt: &str, seed: u64, lora_hashes: &[(&str, &str)]) -> GenerationParams {
    GenerationParams {
        prompt: prompt.to_string(),
        negative: "blurry, lowres".to_string(),
        steps: 20,
        sampler: "DPM++ 2M".to_string(),
        schedule_type: "Karras".to_string(),
        cfg: 7.0,
        seed,
        width: 320,
        height: 320,
        model_hash: Some(MODEL_HASH.to_string()),
        model_name: Some("v1-5-pruned-emaonly".to_string()),
        clip_skip: 1,
        ensd: None,
        rng: None,
        lora_hashes: lora_hashes
            .iter()
            .map(|(a, h)| (a.to_string(), h.to_string()))
            .collect(),
        extra: Vec::new(),
        version: Some("v1.10.1".to_string()),
    }
}

/// Writes `image` as A1111 saves a PNG.
pub fn write_png(path: &Path, image: &RgbImage, params: &GenerationParams) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, encode_png(image, &params.to_infotext()).unwrap()).unwrap();
}

/// `piexif.dump({"Exif": {UserComment: UserComment.dump(text, encoding="unicode")}})`.
pub fn piexif_dump(text: &str) -> Vec<u8> {
    let mut comment = b"UNICODE\0".to_vec();
    comment.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
    let mut out = b"Exif\0\0MM\0*\0\0\0\x08".to_vec();
    out.extend([0, 1, 0x87, 0x69, 0, 4, 0, 0, 0, 1, 0, 0, 0, 26, 0, 0, 0, 0]);
    out.extend([0, 1, 0x92, 0x86, 0, 7]);
    out.extend((comment.len() as u32).to_be_bytes());
    out.extend(44u32.to_be_bytes());
    out.extend([0, 0, 0, 0]);
    out.extend(comment);
    out
}

/// Writes `image` as A1111 saves a JPEG: PIL's JPEG, then `piexif.insert` (the Exif APP1 replaces the JFIF APP0).
pub fn write_jpeg(path: &Path, image: &RgbImage, params: &GenerationParams) {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(image)
        .unwrap();
    let exif = piexif_dump(&params.to_infotext());
    let mut app1 = vec![0xff, 0xe1];
    app1.extend(((exif.len() + 2) as u16).to_be_bytes());
    app1.extend(exif);
    let rest = match jpeg[2..4] == [0xff, 0xe0] {
        true => 4 + u16::from_be_bytes([jpeg[4], jpeg[5]]) as usize,
        false => 2,
    };
    let mut out = jpeg[..2].to_vec();
    out.extend(app1);
    out.extend(&jpeg[rest..]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, out).unwrap();
}

/// A kohya LoRA file: metadata with `ss_epoch`, `ss_output_name`, `sshs_model_hash`, and one tiny tensor.
pub fn write_lora(path: &Path, epoch: u32, hash: &str) {
    let header = serde_json::json!({
        "__metadata__": {"ss_epoch": epoch.to_string(), "ss_output_name": "sks", "sshs_model_hash": hash,
                         "ss_steps": (epoch * 100).to_string()},
        "lora_unet_x.lora_down.weight": {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]},
    })
    .to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 4]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The file hash of epoch `e` (64 hex digits; A1111 writes the first 12).
pub fn lora_hash(epoch: u32) -> String {
    format!("{epoch:x}a1b2c3d4e5f6").repeat(5)[..64].to_string()
}

/// Runs `loraeval` with `args`: (exit code, stdout, stderr).
pub fn loraeval(args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A run folder's grid.json.
pub fn grid_json(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("grid.json")).unwrap()).unwrap()
}
