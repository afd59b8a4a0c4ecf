//! Parity with dlib's Python bindings (tests/fixtures/faces/reference.json, made by scripts/make_face_fixtures.py):
//! 5-point landmarks for dlib's own detection boxes, and 150×150 face chips for dlib's landmarks.

use std::path::{Path, PathBuf};

use image::GrayImage;
use loraeval::face::align::{face_chip, jitter_image, DlibRand};
use loraeval::face::image_io::load_rgb_image;
use loraeval::face::shape_predictor::ShapePredictor;
use loraeval::face::{Point, Rect};
use serde_json::Value;

const DETECTION_SETS: [&str; 3] = ["hog_upsample1", "cnn_upsample1", "cnn_upsample0"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faces")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn predictor() -> ShapePredictor {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/face/shape_predictor_5_face_landmarks.dat");
    ShapePredictor::load(&path).unwrap()
}

fn rect_of(face: &Value) -> Rect {
    let v: Vec<i64> = face["rect"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    Rect::new(v[0], v[1], v[2], v[3])
}

fn points_of(value: &Value) -> Vec<Point> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Point {
            x: p[0].as_i64().unwrap(),
            y: p[1].as_i64().unwrap(),
        })
        .collect()
}

/// Every (image entry, face) pair of the reference that has a decoded PNG.
fn faces(reference: &Value) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for entry in reference["images"].as_array().unwrap() {
        if entry["png"].is_null() {
            continue;
        }
        for set in DETECTION_SETS {
            for face in entry[set].as_array().unwrap() {
                out.push((entry.clone(), face.clone()));
            }
        }
    }
    out
}

fn max_point_error(a: &[Point], b: &[Point]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(p, q)| (((p.x - q.x).pow(2) + (p.y - q.y).pow(2)) as f64).sqrt())
        .fold(0.0, f64::max)
}

#[test]
fn landmarks_match_dlib() {
    let sp = predictor();
    let reference = reference();
    let (mut worst, mut count, mut exact) = (0.0f64, 0, 0);
    let mut cache: Option<(String, image::RgbImage)> = None;
    for (entry, face) in faces(&reference) {
        let png = entry["png"].as_str().unwrap().to_string();
        if cache.as_ref().map(|c| &c.0) != Some(&png) {
            cache = Some((png.clone(), load_rgb_image(&fixtures().join(&png)).unwrap()));
        }
        let img = &cache.as_ref().unwrap().1;
        let expected = points_of(&face["landmarks"]);
        let got = sp.predict_rgb(img, rect_of(&face));
        let err = max_point_error(&got, &expected);
        assert!(
            err <= 1.5,
            "{png} {:?}: {got:?} vs dlib {expected:?}",
            rect_of(&face)
        );
        worst = worst.max(err);
        count += 1;
        exact += usize::from(err == 0.0);
        if let Some(gray_expected) = face.get("landmarks_gray") {
            let gray = GrayImage::from_fn(img.width(), img.height(), |x, y| {
                let p = img.get_pixel(x, y).0;
                image::Luma([((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as u8])
            });
            let got_gray = sp.predict_gray(&gray, rect_of(&face));
            assert!(max_point_error(&got_gray, &points_of(gray_expected)) <= 1.5);
        }
    }
    assert!(count >= 30, "only {count} faces in the reference");
    eprintln!("landmarks: {count} faces, {exact} exact, max error {worst:.3} px");
}

#[test]
fn chips_match_dlib() {
    let reference = reference();
    let (mut worst, mut count, mut total_diff, mut pixels) = (0u8, 0, 0u64, 0u64);
    for (entry, face) in faces(&reference) {
        let img = load_rgb_image(&fixtures().join(entry["png"].as_str().unwrap())).unwrap();
        let chip_name = face["chip"].as_str().unwrap();
        let expected = load_rgb_image(&fixtures().join("chips").join(chip_name)).unwrap();
        let got = face_chip(&img, &points_of(&face["landmarks"])).unwrap();
        assert_eq!(got.dimensions(), (150, 150));
        let mut max_diff = 0u8;
        for (a, b) in got.as_raw().iter().zip(expected.as_raw()) {
            let d = a.abs_diff(*b);
            max_diff = max_diff.max(d);
            total_diff += u64::from(d);
            pixels += 1;
        }
        assert!(max_diff <= 2, "{chip_name}: max abs diff {max_diff}");
        worst = worst.max(max_diff);
        count += 1;
    }
    let mean_diff = total_diff as f64 / pixels as f64;
    eprintln!("chips: {count} chips, max abs diff {worst}, mean abs diff {mean_diff:.5}");
    // rounding instead of truncating, or a rounded pyramid, gives means of 0.49 / 0.04 with max diff 1
    assert!(mean_diff <= 0.01, "mean abs diff {mean_diff}");
}

#[test]
fn jitter_matches_dlib() {
    let reference = reference();
    let jitter = &reference["jitter"];
    let photo = jitter["photo"].as_str().unwrap().replace(".jpg", ".png");
    let img = load_rgb_image(&fixtures().join(photo)).unwrap();
    let chip = face_chip(&img, &points_of(&jitter["landmarks"])).unwrap();
    let mut rnd = DlibRand::new();
    for name in jitter["crops"].as_array().unwrap() {
        let expected =
            load_rgb_image(&fixtures().join("chips").join(name.as_str().unwrap())).unwrap();
        let got = jitter_image(&chip, &mut rnd).unwrap();
        let diffs: Vec<u8> = got
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let max = diffs.iter().copied().max().unwrap();
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        eprintln!("{name}: max abs diff {max}, mean {mean:.5}");
        assert!(max <= 2 && mean <= 0.01, "{name}: max {max}, mean {mean}");
    }
}
