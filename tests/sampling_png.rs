//! A1111 infotext formatting/parsing (fixtures from scripts/make_sampling_fixtures.py), pixel conversion and
//! atomic PNG writing with a `parameters` text chunk.

use candle_core::{Device, Tensor};
use loraeval::sampling::png_info::{
    latents_to_rgb8, parse_infotext, write_png_atomic, GenerationParams,
};
use loraeval::sampling::SamplingError;
use serde_json::Value;

fn cases() -> Vec<Value> {
    let path = format!(
        "{}/tests/fixtures/sampling/infotext.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn opt_string(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

fn pairs(value: &Value) -> Vec<(String, String)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p = p.as_array().unwrap();
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn params_from(c: &Value) -> GenerationParams {
    GenerationParams {
        prompt: c["prompt"].as_str().unwrap().to_string(),
        negative: c["negative"].as_str().unwrap().to_string(),
        steps: c["steps"].as_u64().unwrap() as usize,
        sampler: c["sampler"].as_str().unwrap().to_string(),
        schedule_type: c["schedule_type"].as_str().unwrap().to_string(),
        cfg: c["cfg"].as_f64().unwrap(),
        seed: c["seed"].as_u64().unwrap(),
        width: c["width"].as_u64().unwrap() as u32,
        height: c["height"].as_u64().unwrap() as u32,
        model_hash: opt_string(&c["model_hash"]),
        model_name: opt_string(&c["model_name"]),
        clip_skip: c["clip_skip"].as_u64().unwrap() as u32,
        ensd: c["ensd"].as_u64(),
        rng: opt_string(&c["rng"]),
        lora_hashes: pairs(&c["lora_hashes"]),
        extra: pairs(&c["extra"]),
        version: opt_string(&c["version"]),
    }
}

#[test]
fn infotext_matches_a1111_create_infotext() {
    let all = cases();
    assert_eq!(all.len(), 4);
    for case in &all {
        let params = params_from(&case["params"]);
        assert_eq!(params.to_infotext(), case["infotext"].as_str().unwrap());
    }
}

#[test]
fn parse_finds_the_same_pairs_as_a1111_and_round_trips() {
    for (index, case) in cases().iter().enumerate() {
        let text = case["infotext"].as_str().unwrap();
        let parsed = parse_infotext(text).unwrap();
        let original = params_from(&case["params"]);
        let mut found: Vec<(String, String)> = vec![
            ("Steps".into(), parsed.steps.to_string()),
            ("Sampler".into(), parsed.sampler.clone()),
        ];
        found.extend(parsed.extra.iter().cloned());
        for (key, value) in pairs(&case["parsed_pairs"]) {
            let standard = [
                "Steps",
                "Sampler",
                "Schedule type",
                "CFG scale",
                "Seed",
                "Size",
                "Model hash",
                "Model",
                "Clip skip",
                "RNG",
                "Lora hashes",
                "Version",
            ];
            if !standard.contains(&key.as_str()) {
                assert!(
                    found.contains(&(key.clone(), value.clone())),
                    "{key}: {value}"
                );
            }
        }
        assert_eq!(parsed.prompt, original.prompt);
        assert_eq!(parsed.negative, original.negative);
        assert_eq!(parsed.model_name, original.model_name);
        assert_eq!(parsed.cfg, original.cfg);
        if index != 1 {
            // case 1 has a LoRA alias with ':' / ',' (sanitised) and a key == value extra ("Tiling")
            assert_eq!(parsed, original, "case {index}");
        } else {
            assert_eq!(parsed.lora_hashes[1].0, "othername v2");
            assert_eq!(parsed.extra.len(), 2);
        }
    }
}

#[test]
fn parse_reads_a1111_docstring_example_and_rejects_garbage() {
    let text = "girl with an artist's beret, determined\nNegative prompt: ugly, fat\n\
                Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b";
    let parsed = parse_infotext(text).unwrap();
    assert_eq!(parsed.prompt, "girl with an artist's beret, determined");
    assert_eq!(parsed.negative, "ugly, fat");
    assert_eq!(
        (parsed.steps, parsed.seed, parsed.width, parsed.height),
        (20, 965400086, 512, 512)
    );
    assert_eq!(parsed.clip_skip, 1);
    assert_eq!(parsed.schedule_type, "");
    assert_eq!(parsed.model_hash.as_deref(), Some("45dee52b"));
    let error = parse_infotext("just a prompt").unwrap_err();
    assert!(
        matches!(error, SamplingError::BadInfotext { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("Steps"), "{error}");
}

#[test]
fn pixels_use_a1111_truncation() {
    // x -> trunc(255 * clamp((x + 1) / 2, 0, 1)); channel-major input, one 1x2 image and a second image.
    let values: Vec<f32> = vec![
        -1.0, 1.0, // R
        0.0, 2.0, // G
        -3.0, 0.999, // B
        0.5, -0.5, // image 2 R
        0.003, 0.004, // G: 255 * 0.5015 = 127.88 -> 127; 255 * 0.502 = 128.01 -> 128
        -0.0, 0.9, // B
    ];
    let tensor = Tensor::from_vec(values, (2, 3, 1, 2), &Device::Cpu).unwrap();
    let images = latents_to_rgb8(&tensor).unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(images[0].as_raw(), &vec![0, 127, 0, 255, 255, 254]);
    assert_eq!(images[1].as_raw(), &vec![191, 127, 127, 63, 128, 242]);
    let wrong = Tensor::zeros((1, 4, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        latents_to_rgb8(&wrong),
        Err(SamplingError::BadImageShape { .. })
    ));
}

/// (pixels, parameters text, size, whether the text was a Latin-1 tEXt chunk).
fn read_png(path: &std::path::Path) -> (Vec<u8>, String, (u32, u32), bool) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    pixels.truncate(frame.buffer_size());
    let info = reader.info();
    let latin1 = info
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == "parameters");
    let text = match latin1 {
        Some(chunk) => chunk.text.clone(),
        None => {
            let chunk = info
                .utf8_text
                .iter()
                .find(|t| t.keyword == "parameters")
                .unwrap();
            chunk.get_text().unwrap()
        }
    };
    (pixels, text, (info.width, info.height), latin1.is_some())
}

#[test]
fn png_round_trips_pixels_and_parameters_and_refuses_to_clobber() {
    let dir = tempfile::tempdir().unwrap();
    let image = image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 80, 7]));
    let path = dir.path().join("out.png");
    let latin1 = "a photo, café\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 5x3";
    write_png_atomic(&path, &image, latin1, false).unwrap();
    let (pixels, text, size, is_text_chunk) = read_png(&path);
    assert_eq!(
        (pixels, text.as_str(), size),
        (image.as_raw().clone(), latin1, (5, 3))
    );
    assert!(
        is_text_chunk,
        "Latin-1 infotext goes in a tEXt chunk, like PIL"
    );

    let error = write_png_atomic(&path, &image, "other", false).unwrap_err();
    assert!(matches!(error, SamplingError::FileExists { .. }), "{error}");
    assert!(error.to_string().contains("out.png"), "{error}");
    assert_eq!(read_png(&path).1, latin1);

    let unicode = "女性 😀\nSteps: 1, Sampler: DDIM, CFG scale: 7, Seed: 2, Size: 5x3";
    write_png_atomic(&path, &image, unicode, true).unwrap();
    let (_, text, _, is_text_chunk) = read_png(&path);
    assert_eq!((text.as_str(), is_text_chunk), (unicode, false));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temporary files left behind");

    let missing_dir = dir.path().join("no/such/dir/x.png");
    let error = write_png_atomic(&missing_dir, &image, "t", false).unwrap_err();
    assert!(matches!(error, SamplingError::Io { .. }), "{error}");
    assert!(error.to_string().contains("no/such/dir"), "{error}");
}
