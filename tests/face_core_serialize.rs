//! The headers of the vendored dlib model files parse with the dlib primitives (face.md §2.4, §2.5, §4.2).

use std::path::{Path, PathBuf};

use loraeval::face::serialize::{read_model_file, Reader};
use loraeval::face::FaceError;

fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/face")
        .join(name)
}

#[test]
fn face_recognition_model_header() {
    let path = asset("dlib_face_recognition_resnet_model_v1.dat");
    let bytes = read_model_file(&path).unwrap();
    assert_eq!(bytes.len(), 22_466_066);
    let mut r = Reader::new(&bytes, &path);
    assert_eq!(r.read_version(&[1], "add_loss_layer").unwrap(), 1);
    assert_eq!(r.read_tag(&["loss_metric_2"]).unwrap(), "loss_metric_2");
    assert_eq!(r.read_f32().unwrap(), 0.04f32);
    assert_eq!(r.read_f32().unwrap(), 0.6f32);
    assert_eq!(r.pos(), 29);
    // 130 wrapper versions, then the input layer record at 289
    let versions: Vec<i64> = (0..130).map(|_| r.read_i64().unwrap()).collect();
    assert_eq!(versions.iter().filter(|&&v| v == 2).count(), 107);
    assert_eq!(versions.iter().filter(|&&v| v == 1).count(), 22);
    assert_eq!(*versions.last().unwrap(), 3);
    assert_eq!(r.pos(), 289);
    assert_eq!(r.read_string().unwrap(), "input_rgb_image_sized");
    let avg: Vec<f32> = (0..3).map(|_| r.read_f32().unwrap()).collect();
    assert!(
        (avg[0] - 122.782).abs() < 1e-4
            && (avg[1] - 117.001).abs() < 1e-4
            && (avg[2] - 104.298).abs() < 1e-4
    );
    assert_eq!((r.read_u64().unwrap(), r.read_u64().unwrap()), (150, 150));
    assert_eq!(r.pos(), 334);
    assert_eq!(r.read_tag(&["con_4", "con_5"]).unwrap(), "con_4");
    let params = r.read_tensor().unwrap();
    assert_eq!(params.dims(), [4736, 1, 1, 1]);
    assert!(
        (params.data[0] - -0.029330).abs() < 1e-6,
        "{}",
        params.data[0]
    );
}

#[test]
fn detector_header() {
    let path = asset("mmod_human_face_detector.dat");
    let bytes = read_model_file(&path).unwrap();
    let mut r = Reader::new(&bytes, &path);
    r.read_version(&[1], "add_loss_layer").unwrap();
    r.read_tag(&["loss_mmod_"]).unwrap();
    assert_eq!(r.pos(), 14);
    assert_eq!(r.read_version(&[1, 2, 3, 4], "mmod_options").unwrap(), 1);
    assert_eq!((r.read_u64().unwrap(), r.read_u64().unwrap()), (80, 80));
    assert_eq!(r.read_f64().unwrap(), 1.0);
    assert_eq!(r.read_f64().unwrap(), 1.0);
    assert_eq!(r.read_f64().unwrap(), 0.5);
    let nms_iou = r.read_f64().unwrap();
    assert!((nms_iou - 0.3382761351).abs() < 1e-9, "{nms_iou}");
}

#[test]
fn shape_predictor_header() {
    let path = asset("shape_predictor_5_face_landmarks.dat");
    let bytes = read_model_file(&path).unwrap();
    let mut r = Reader::new(&bytes, &path);
    assert_eq!(r.read_version(&[1], "shape_predictor").unwrap(), 1);
    let initial = r.read_matrix_f32().unwrap();
    assert_eq!((initial.rows, initial.cols), (10, 1));
    assert!((initial.data[0] - 0.776252).abs() < 1e-6 && (initial.data[9] - 0.657607).abs() < 1e-6);
    assert_eq!(r.pos(), 66);
}

#[test]
fn truncated_model_names_file_and_offset() {
    let path = asset("dlib_face_recognition_resnet_model_v1.dat");
    let bytes = read_model_file(&path).unwrap();
    let mut r = Reader::new(&bytes[..400], "cut.dat");
    r.read_bytes(334).unwrap();
    r.read_string().unwrap();
    let err = r.read_tensor().unwrap_err();
    match &err {
        FaceError::ModelParse { file, offset, what } => {
            assert_eq!(file, Path::new("cut.dat"));
            assert_eq!(*offset, 341);
            assert!(what.contains("4736x1x1x1"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("cut.dat"));
}

#[test]
fn missing_model_file_is_named() {
    let err = read_model_file(Path::new("/nonexistent/model.dat")).unwrap_err();
    assert!(matches!(err, FaceError::ModelIo { .. }));
    assert!(err.to_string().contains("/nonexistent/model.dat"));
}

#[test]
fn corrupt_shape_predictor_names_file_and_offset() {
    use loraeval::face::shape_predictor::ShapePredictor;
    let path = asset("shape_predictor_5_face_landmarks.dat");
    let bytes = read_model_file(&path).unwrap();
    let sp = ShapePredictor::from_bytes(&bytes, &path).unwrap();
    assert_eq!(sp.num_parts(), 5);
    // cut in the middle of the forests
    let err = ShapePredictor::from_bytes(&bytes[..5_000_000], Path::new("cut.dat")).unwrap_err();
    match &err {
        FaceError::ModelParse { file, offset, .. } => {
            assert_eq!(file, Path::new("cut.dat"));
            assert!((4_999_000..=5_000_000).contains(offset), "{err}");
        }
        other => panic!("{other:?}"),
    }
    // the forests' count (offset 66) made invalid
    let mut broken = bytes.clone();
    broken[66] = 0x00;
    let message = ShapePredictor::from_bytes(&broken, Path::new("broken.dat"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("broken.dat") && message.contains("offset 66"),
        "{message}"
    );
}
