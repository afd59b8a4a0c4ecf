//! End-to-end parity with dlib: CNN detector → 5-point shape predictor → 150×150 chip → descriptor on a
//! committed photo (reference from scripts/make_face_dnn_fixtures.py, `pipeline` part). Uses face-core's
//! shape predictor and chip extraction with this branch's detector and ResNet.

use std::path::{Path, PathBuf};

use loraeval::face::align::face_chip;
use loraeval::face::mmod::FaceDetector;
use loraeval::face::resnet::{descriptor_distance, FaceEmbedder, DESCRIPTOR_LEN};
use loraeval::face::shape_predictor::ShapePredictor;
use loraeval::face::Rect;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn detect_landmarks_chip_descriptor_match_dlib() {
    let text = std::fs::read_to_string(repo("tests/fixtures/faces_dnn/pipeline.json"))
        .expect("pipeline.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let image_name = json["image"].as_str().expect("image");
    let img = image::open(repo("tests/fixtures/faces_dnn").join(image_name))
        .expect("png")
        .to_rgb8();
    let detector = FaceDetector::load_embedded().expect("detector");
    let predictor = ShapePredictor::load(&repo("assets/face/shape_predictor_5_face_landmarks.dat"))
        .expect("sp");
    let embedder = FaceEmbedder::load_embedded().expect("embedder");

    let dets = detector.detect(&img, 0);
    let faces = json["faces"].as_array().expect("faces");
    assert_eq!(dets.len(), faces.len());
    let int = |v: &serde_json::Value| v.as_i64().expect("int");
    for face in faces {
        let r: Vec<i64> = face["rect"]
            .as_array()
            .expect("rect")
            .iter()
            .map(int)
            .collect();
        let want_rect = Rect::new(r[0], r[1], r[2], r[3]);
        let det = dets
            .iter()
            .find(|d| d.rect == want_rect)
            .unwrap_or_else(|| panic!("no box {want_rect:?} in {dets:?}"));
        let landmarks = predictor.predict_rgb(&img, det.rect);
        let got: Vec<[i64; 2]> = landmarks.iter().map(|p| [p.x, p.y]).collect();
        let want: Vec<[i64; 2]> = face["landmarks"]
            .as_array()
            .expect("lm")
            .iter()
            .map(|p| [int(&p[0]), int(&p[1])])
            .collect();
        assert_eq!(got, want, "landmarks for {want_rect:?}");
        let chip = face_chip(&img, &landmarks).expect("chip");
        let descriptor = embedder.embed(&chip).expect("embed");
        let mut reference = [0.0f32; DESCRIPTOR_LEN];
        for (dst, v) in reference
            .iter_mut()
            .zip(face["descriptor"].as_array().expect("descriptor"))
        {
            *dst = v.as_f64().expect("number") as f32;
        }
        let d = descriptor_distance(&descriptor, &reference);
        eprintln!("{want_rect:?}: descriptor L2 to dlib {d:.2e}");
        assert!(d <= 1e-3, "descriptor L2 {d} for {want_rect:?}");
    }
}
