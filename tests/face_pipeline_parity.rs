//! End-to-end parity of the face pipeline (detect → landmarks → chip → descriptor) with dlib's Python
//! bindings on the committed example photos (reference numbers: tests/fixtures/faces/reference.json, made by
//! scripts/make_face_fixtures.py with dlib-bin 20.0.1): boxes IoU ≥ 0.9, landmarks within 1.5 px,
//! descriptors within L2 0.02.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use loraeval::face::image_io::load_rgb_image;
use loraeval::face::pipeline::{FaceDescription, FaceModels, PipelineOptions};
use loraeval::face::reference::euclidean;
use loraeval::face::Rect;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faces")
}

fn models() -> &'static FaceModels {
    static MODELS: OnceLock<FaceModels> = OnceLock::new();
    MODELS.get_or_init(|| FaceModels::load_embedded().expect("embedded models"))
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("valid json")
}

fn rect(v: &Value) -> Rect {
    let n: Vec<i64> = v
        .as_array()
        .expect("rect")
        .iter()
        .map(|x| x.as_i64().expect("int"))
        .collect();
    Rect::new(n[0], n[1], n[2], n[3])
}

fn descriptor(v: &Value) -> [f32; 128] {
    let values: Vec<f32> = v
        .as_array()
        .expect("descriptor")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect();
    values.try_into().expect("128 values")
}

/// Checks our faces of one photo against dlib's list `expected` (same count, each matched by IoU).
fn check_photo(name: &str, ours: &[FaceDescription], expected: &[Value]) -> Vec<String> {
    let mut report = Vec::new();
    assert_eq!(
        ours.len(),
        expected.len(),
        "{name}: {} faces, dlib found {}",
        ours.len(),
        expected.len()
    );
    for (i, face) in expected.iter().enumerate() {
        let want = rect(&face["rect"]);
        let (iou, got) = ours
            .iter()
            .map(|f| (f.rect.iou(&want), f))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .expect("a face");
        assert!(
            iou >= 0.9,
            "{name} face {i}: box {:?} vs dlib {want:?}",
            got.rect
        );
        let mut worst_px = 0.0f64;
        for (p, q) in got
            .landmarks
            .iter()
            .zip(face["landmarks"].as_array().unwrap())
        {
            let (qx, qy) = (q[0].as_f64().unwrap(), q[1].as_f64().unwrap());
            worst_px = worst_px.max((p.x as f64 - qx).hypot(p.y as f64 - qy));
        }
        assert!(
            worst_px <= 1.5,
            "{name} face {i}: landmarks {:?} vs dlib {}",
            got.landmarks,
            face["landmarks"]
        );
        let distance = euclidean(&got.descriptor, &descriptor(&face["descriptor"]));
        assert!(
            distance <= 0.02,
            "{name} face {i}: descriptor L2 {distance} from dlib's"
        );
        report.push(format!(
            "{name} face {i}: IoU {iou:.3}, landmarks ≤ {worst_px:.2} px, descriptor L2 {distance:.1e}"
        ));
    }
    report
}

fn check_upsample(upsample: u32) {
    let json = reference();
    let key = format!("cnn_upsample{upsample}");
    for photo in json["images"].as_array().expect("images") {
        let Some(name) = photo["png"].as_str() else {
            continue;
        };
        let image = load_rgb_image(&fixtures().join(name)).expect("photo");
        let options = PipelineOptions {
            upsample,
            num_jitters: 0,
        };
        let ours = models().describe_all(&image, options).expect("pipeline");
        let expected = photo[key.as_str()].as_array().expect("faces");
        for line in check_photo(name, &ours, expected) {
            eprintln!("upsample {upsample}: {line}");
        }
    }
}

#[test]
fn pipeline_matches_dlib_at_upsample_0() {
    check_upsample(0);
}

#[test]
fn pipeline_matches_dlib_at_upsample_1() {
    check_upsample(1);
}

#[test]
fn dogs_have_no_face() {
    let image = load_rgb_image(&fixtures().join("dogs.jpg")).expect("photo");
    let largest = models()
        .describe_largest(&image, PipelineOptions::default())
        .expect("pipeline");
    assert_eq!((largest.n_faces, largest.face), (0, None));
}

#[test]
fn jittered_descriptor_matches_dlib() {
    let json = reference();
    let jitter = &json["jitter"];
    let name = jitter["photo"].as_str().unwrap().replace(".jpg", ".png");
    let image = load_rgb_image(&fixtures().join(&name)).expect("photo");
    let landmarks: Vec<loraeval::face::Point> = jitter["landmarks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| loraeval::face::Point {
            x: p[0].as_i64().unwrap(),
            y: p[1].as_i64().unwrap(),
        })
        .collect();
    let chip = loraeval::face::align::face_chip(&image, &landmarks).expect("chip");
    let ours = models().chip_descriptor(&chip, 4).expect("descriptor");
    let distance = euclidean(&ours, &descriptor(&jitter["descriptor_jitter4"]));
    eprintln!("4 jitters: L2 {distance:.1e} from dlib's");
    assert!(distance <= 0.02, "jittered descriptor L2 {distance}");
    let plain = models().chip_descriptor(&chip, 1).expect("descriptor");
    assert!(
        euclidean(&plain, &ours) > 1e-4,
        "jitters must change the descriptor"
    );
}
