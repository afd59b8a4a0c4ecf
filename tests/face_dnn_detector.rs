//! Parity of the Rust MMOD CNN face detector with dlib's `cnn_face_detection_model_v1` on committed
//! photos at upsample 0 and 1 (reference boxes from scripts/make_face_dnn_fixtures.py).

use std::path::{Path, PathBuf};

use loraeval::face::dnn::{parse_dnn, InputRecord, LossRecord};
use loraeval::face::mmod::{pyramid_up, resize_bilinear_f32, Detection, FaceDetector};
use loraeval::face::{FaceError, Rect};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/faces_dnn")
        .join(name)
}

fn model_bytes() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/face/mmod_human_face_detector.dat");
    std::fs::read(path).expect("vendored model")
}

struct Case {
    image: String,
    upsample: u32,
    detections: Vec<(Rect, f32)>,
}

fn reference_cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixture("detections.json")).expect("detections.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid json");
    let int = |v: &serde_json::Value| v.as_i64().expect("integer");
    json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            image: c["image"].as_str().expect("image").to_string(),
            upsample: int(&c["upsample"]) as u32,
            detections: c["detections"]
                .as_array()
                .expect("detections")
                .iter()
                .map(|d| {
                    let rect = Rect::new(int(&d["l"]), int(&d["t"]), int(&d["r"]), int(&d["b"]));
                    (rect, d["confidence"].as_f64().expect("confidence") as f32)
                })
                .collect(),
        })
        .collect()
}

#[test]
fn detector_file_parses_to_the_documented_layout() {
    let bytes = model_bytes();
    let dnn = parse_dnn(&bytes, Path::new("mmod.dat")).expect("parses");
    assert_eq!(dnn.wrapper_versions.len(), 19);
    assert_eq!(dnn.layers.len(), 19);
    let LossRecord::Mmod(options) = &dnn.loss else {
        panic!("not mmod")
    };
    assert_eq!(
        (
            options.detector_windows[0].width,
            options.detector_windows[0].height
        ),
        (80, 80)
    );
    assert!((options.overlaps_nms.iou_thresh - 0.3382761351).abs() < 1e-9);
    assert!(matches!(
        dnn.input,
        InputRecord::RgbImagePyramid {
            pyramid_padding: 10,
            pyramid_outer_padding: 11,
            ..
        }
    ));
    assert_eq!(dnn.layers[0].offset, 135);
    assert_eq!(dnn.layers.last().map(|l| l.offset), Some(715255));
    assert_eq!(dnn.layers.iter().filter(|l| l.tag == "bn_con2").count(), 6);
}

#[test]
fn corrupt_detector_error_names_file_and_offset() {
    let mut bytes = model_bytes();
    bytes[135 + 2] = b'X'; // first layer tag "con_4" -> "Xon_4"
    let err = FaceDetector::from_bytes(&bytes, Path::new("bad.dat")).expect_err("must fail");
    let FaceError::ModelParse { offset, .. } = &err else {
        panic!("wrong error {err:?}")
    };
    assert_eq!(*offset, 135);
    assert!(err.to_string().contains("bad.dat"), "{err}");
}

#[test]
fn empty_image_has_no_faces() {
    let detector = FaceDetector::load_embedded().expect("model");
    assert!(detector.detect(&image::RgbImage::new(0, 0), 0).is_empty());
    assert!(detector.detect(&image::RgbImage::new(3, 2), 1).is_empty());
}

/// Pairs every reference box with the best-overlapping unused detection of ours.
fn best_match<'a>(want: &Rect, ours: &'a [Detection], used: &mut [bool]) -> Option<&'a Detection> {
    let (i, iou) = ours
        .iter()
        .enumerate()
        .filter(|(i, _)| !used[*i])
        .map(|(i, d)| (i, d.rect.iou(want)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    if iou <= 0.0 {
        return None;
    }
    used[i] = true;
    Some(&ours[i])
}

#[test]
fn detections_match_dlib_at_upsample_0_and_1() {
    let detector = FaceDetector::load_embedded().expect("model");
    let cases = reference_cases();
    assert!(cases.iter().any(|c| c.upsample == 1) && cases.iter().any(|c| c.detections.is_empty()));
    for case in &cases {
        let img = image::open(fixture(&case.image)).expect("png").to_rgb8();
        let ours = detector.detect(&img, case.upsample);
        let label = format!("{} upsample {}", case.image, case.upsample);
        assert_eq!(ours.len(), case.detections.len(), "{label}: ours {ours:?}");
        let mut used = vec![false; ours.len()];
        for (want, want_conf) in &case.detections {
            let got = best_match(want, &ours, &mut used)
                .unwrap_or_else(|| panic!("{label}: no match for {want:?}"));
            let iou = got.rect.iou(want);
            let dconf = (got.confidence - want_conf).abs();
            eprintln!("{label}: {want:?} IoU {iou:.4} confidence diff {dconf:.2e}");
            assert!(
                iou >= 0.9,
                "{label}: IoU {iou} for {want:?} vs {:?}",
                got.rect
            );
            assert!(
                dconf <= 1e-3,
                "{label}: confidence {} vs {want_conf}",
                got.confidence
            );
        }
    }
}

#[test]
fn pyramid_up_matches_dlib_resize_exactly() {
    let input = image::open(fixture("resize_rgb_in.png"))
        .expect("png")
        .to_rgb8();
    let want = image::open(fixture("resize_rgb_up.png"))
        .expect("png")
        .to_rgb8();
    let got = pyramid_up(&input);
    assert_eq!((got.width(), got.height()), (want.width(), want.height()));
    let differing = got
        .pixels()
        .zip(want.pixels())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 0, "{differing} pixels differ from dlib");
}

#[test]
fn float_bilinear_resize_matches_dlib() {
    let bytes = std::fs::read(fixture("resize_f32.bin")).expect("bin");
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let (src, rest) = floats.split_at(23 * 31);
    let (down, up) = rest.split_at(19 * 25);
    for (want, nr, nc) in [(down, 19, 25), (up, 40, 50)] {
        let mut got = vec![0.0f32; nr * nc];
        resize_bilinear_f32(src, 23, 31, &mut got, nr, nc);
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-6, "{nr}x{nc}: max abs diff {worst}");
    }
}
