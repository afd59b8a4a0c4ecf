//! Parity of the Rust face-descriptor ResNet with dlib's `compute_face_descriptor` on committed 150×150 chips
//! (reference numbers from scripts/make_face_dnn_fixtures.py), plus model-parsing checks.

use std::path::{Path, PathBuf};

use loraeval::face::dnn::{parse_dnn, InputRecord, Layer, LossRecord};
use loraeval::face::resnet::{descriptor_distance, FaceEmbedder, DESCRIPTOR_LEN};
use loraeval::face::FaceError;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/faces_dnn")
        .join(name)
}

fn model_bytes() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/face/dlib_face_recognition_resnet_model_v1.dat");
    std::fs::read(path).expect("vendored model")
}

/// (chip file, dlib descriptor) pairs.
fn reference_descriptors() -> Vec<(String, Vec<f32>)> {
    let text = std::fs::read_to_string(fixture("descriptors.json")).expect("descriptors.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid json");
    json["chips"]
        .as_array()
        .expect("chips array")
        .iter()
        .map(|c| {
            let name = c["chip"].as_str().expect("chip name").to_string();
            let desc = c["descriptor"]
                .as_array()
                .expect("descriptor")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect();
            (name, desc)
        })
        .collect()
}

#[test]
fn resnet_file_parses_to_the_documented_layout() {
    let bytes = model_bytes();
    let dnn = parse_dnn(&bytes, Path::new("resnet.dat")).expect("parses");
    assert_eq!(dnn.wrapper_versions.len(), 130);
    assert_eq!(dnn.layers.len(), 108);
    match dnn.loss {
        LossRecord::Metric {
            margin,
            dist_thresh,
        } => {
            assert!((margin - 0.04).abs() < 1e-7);
            assert!((dist_thresh - 0.6).abs() < 1e-7);
        }
        other => panic!("unexpected loss {other:?}"),
    }
    assert!(matches!(
        dnn.input,
        InputRecord::RgbImageSized {
            nr: 150,
            nc: 150,
            ..
        }
    ));
    assert_eq!(dnn.layers[0].offset, 334);
    assert_eq!(dnn.layers[1].offset, 19381);
    assert_eq!(dnn.layers.last().map(|l| l.offset), Some(22334900));
    let Layer::Con { conv, .. } = &dnn.layers[0].layer else {
        panic!("first layer is not con_")
    };
    assert_eq!(
        (
            conv.num_filters,
            conv.k_in,
            conv.nr,
            conv.stride_y,
            conv.padding_y
        ),
        (32, 3, 7, 2, 0)
    );
    assert!((conv.filters[0] + 0.029330).abs() < 1e-6);
    let count = |tag: &str| dnn.layers.iter().filter(|l| l.tag == tag).count();
    assert_eq!(
        (
            count("con_4"),
            count("affine_"),
            count("add_prev_"),
            count("avg_pool_2")
        ),
        (29, 29, 14, 5)
    );
}

#[test]
fn truncated_model_error_names_file_and_offset() {
    let bytes = model_bytes();
    let err =
        FaceEmbedder::from_bytes(&bytes[..20000], Path::new("cut.dat")).expect_err("must fail");
    let FaceError::ModelParse { file, offset, .. } = &err else {
        panic!("wrong error {err:?}")
    };
    assert_eq!(file, Path::new("cut.dat"));
    assert!((19381..=20000).contains(offset), "offset {offset}");
    assert!(err.to_string().contains("cut.dat"), "{err}");
}

#[test]
fn wrong_chip_size_is_an_error() {
    let embedder = FaceEmbedder::load_embedded().expect("model");
    let err = embedder
        .embed(&image::RgbImage::new(100, 150))
        .expect_err("must fail");
    assert!(err.to_string().contains("100x150"), "{err}");
}

#[test]
fn descriptors_match_dlib() {
    let embedder = FaceEmbedder::load_embedded().expect("model");
    let refs = reference_descriptors();
    assert!(refs.len() >= 3);
    let chips: Vec<_> = refs
        .iter()
        .map(|(name, _)| image::open(fixture(name)).expect("chip png").to_rgb8())
        .collect();
    let ours = embedder.embed_batch(&chips).expect("embed");
    for ((name, reference), got) in refs.iter().zip(&ours) {
        let mut want = [0.0f32; DESCRIPTOR_LEN];
        want.copy_from_slice(reference);
        let d = descriptor_distance(&want, got);
        eprintln!("{name}: L2 to dlib = {d:.2e}");
        assert!(d <= 1e-4, "{name}: L2 distance to dlib descriptor {d}");
    }
    // Same single-chip path as the batch.
    assert_eq!(embedder.embed(&chips[0]).expect("embed"), ours[0]);
}
