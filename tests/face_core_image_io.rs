//! Image loading: unusual layouts become 8-bit RGB as documented, bad files give errors naming the file, and the
//! Rust JPEG decoder stays close to dlib's (fixtures from scripts/make_face_fixtures.py).

use std::path::{Path, PathBuf};

use loraeval::face::align::face_chip;
use loraeval::face::image_io::{decode_rgb_image, load_rgb_image};
use loraeval::face::shape_predictor::ShapePredictor;
use loraeval::face::{FaceError, Rect};
use serde_json::Value;

fn odd(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/faces/odd")
        .join(name)
}

fn image_reason(err: FaceError, name: &str) -> String {
    match err {
        FaceError::Image { path, reason } => {
            assert!(path.ends_with(name), "{path:?}");
            reason
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn unusual_layouts_convert_to_rgb8() {
    let text = std::fs::read_to_string(odd("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    for (name, rgb) in expected["rgb_at_centre"].as_object().unwrap() {
        let img = load_rgb_image(&odd(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let centre = img.get_pixel(img.width() / 2, img.height() / 2).0;
        // JPEG files may differ by a level or two between decoders
        let tolerance = if name.ends_with(".jpg") { 3 } else { 0 };
        for (got, want) in centre.iter().zip(rgb.as_array().unwrap()) {
            let want = want.as_u64().unwrap() as u8;
            assert!(
                got.abs_diff(want) <= tolerance,
                "{name}: {centre:?} vs PIL {rgb}"
            );
        }
    }
}

#[test]
fn bad_files_are_named_errors() {
    for (name, needle) in [
        ("truncated.jpg", "JPEG"),
        ("truncated.png", "PNG"),
        ("not_an_image.jpg", "not a PNG or JPEG"),
        ("huge_header.png", "too large"),
        ("missing.png", "cannot read file"),
    ] {
        let Err(err) = load_rgb_image(&odd(name)) else {
            panic!("{name} loaded without error");
        };
        let message = err.to_string();
        assert!(message.contains(name), "{message}");
        let reason = image_reason(err, name);
        assert!(reason.contains(needle), "{name}: {reason}");
    }
    let reason = image_reason(
        decode_rgb_image(&[], Path::new("empty.png")).unwrap_err(),
        "empty.png",
    );
    assert!(reason.contains("empty"), "{reason}");
}

#[test]
fn tiny_images_do_not_panic_downstream() {
    let img = load_rgb_image(&odd("one_pixel.png")).unwrap();
    assert_eq!(img.dimensions(), (1, 1));
    let sp = predictor();
    let points = sp.predict_rgb(&img, Rect::new(0, 0, 0, 0));
    assert_eq!(points.len(), 5);
    // the chip of a degenerate 1-pixel "face" is either an error or a chip, never a panic
    let _ = face_chip(&img, &points);
}

#[test]
fn rust_jpeg_decoder_is_close_to_dlibs() {
    let ours = load_rgb_image(&odd("2008_001009.jpg")).unwrap();
    let dlib = load_rgb_image(&odd("../2008_001009.png")).unwrap();
    assert_eq!(ours.dimensions(), dlib.dimensions());
    let diffs: Vec<u8> = ours
        .as_raw()
        .iter()
        .zip(dlib.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    let max = diffs.iter().copied().max().unwrap();
    eprintln!("JPEG decode vs dlib: mean abs diff {mean:.4}, max {max}");
    assert!(mean < 1.0, "mean abs diff {mean}");
    // landmarks on our decode stay within 1.5 px of dlib's (computed on dlib's decode)
    let text = std::fs::read_to_string(odd("../reference.json")).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let entry = reference["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source_jpeg"] == "2008_001009.jpg")
        .unwrap();
    let sp = predictor();
    for face in entry["cnn_upsample1"].as_array().unwrap() {
        let r: Vec<i64> = face["rect"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let got = sp.predict_rgb(&ours, Rect::new(r[0], r[1], r[2], r[3]));
        for (p, q) in got.iter().zip(face["landmarks"].as_array().unwrap()) {
            let (dx, dy) = (
                (p.x - q[0].as_i64().unwrap()) as f64,
                (p.y - q[1].as_i64().unwrap()) as f64,
            );
            assert!(dx.hypot(dy) <= 1.5, "{got:?} vs {}", face["landmarks"]);
        }
    }
}

fn predictor() -> ShapePredictor {
    ShapePredictor::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/face/shape_predictor_5_face_landmarks.dat"),
    )
    .unwrap()
}

#[test]
fn webp_and_bmp_photos_load_like_the_png() {
    let folder = tempfile::tempdir().unwrap();
    let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faces/2008_002506.png");
    let original = load_rgb_image(&png).unwrap();
    for extension in ["bmp", "webp"] {
        let path = folder.path().join(format!("photo.{extension}"));
        original.save(&path).unwrap();
        let loaded = load_rgb_image(&path).unwrap_or_else(|e| panic!("{extension}: {e}"));
        assert_eq!(
            loaded.as_raw(),
            original.as_raw(),
            "{extension} (lossless) changed the pixels"
        );
    }
}
