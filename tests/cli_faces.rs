//! `loraeval faces embed` and `loraeval score` as other tools call them: JSON shapes, skipped corrupt images,
//! no-face results and reference-folder errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::imageops;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/faces")
        .join(name)
}

fn loraeval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .args(args)
        .output()
        .expect("run loraeval")
}

fn success_json(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

fn failure_stderr(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "expected failure: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    stderr
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Half-size copy of the Tom Cruise photo (one face, ~200 px), to keep the tests fast.
fn write_small_portrait(path: &Path, mirror: bool) {
    let image = image::open(fixture("Tom_Cruise_avp_2014_4.png"))
        .expect("photo")
        .to_rgb8();
    let mut small = imageops::resize(&image, 282, 400, imageops::FilterType::Triangle);
    if mirror {
        imageops::flip_horizontal_in_place(&mut small);
    }
    small.save(path).expect("write png");
}

fn write_corrupt(path: &Path) {
    let bytes = std::fs::read(fixture("odd/truncated.jpg")).expect("fixture");
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn embed_json_has_one_entry_per_readable_image_and_skips_corrupt_ones() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.jpg");
    write_corrupt(&corrupt);
    let missing = dir.path().join("missing.png");
    let family = fixture("2008_001009.png");
    let dogs = fixture("dogs.jpg");
    let output = loraeval(&[
        "faces",
        "embed",
        path_str(&family),
        path_str(&corrupt),
        path_str(&dogs),
        path_str(&missing),
        "--json",
    ]);
    let json = success_json(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("warning: skipped {}", corrupt.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: skipped {}: cannot read file",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("2 of 4 images skipped"), "{stderr}");
    let entries = json.as_array().expect("array");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["image"], path_str(&family));
    assert_eq!(
        (entries[0]["width"].as_u64(), entries[0]["height"].as_u64()),
        (Some(360), Some(480))
    );
    let faces = entries[0]["faces"].as_array().expect("faces");
    assert_eq!(faces.len(), 2);
    // dlib's first CNN box at upsample 0 (reference.json)
    assert_eq!(faces[0]["box"], serde_json::json!([132, 204, 211, 283]));
    for face in faces {
        assert!(face["confidence"].as_f64().unwrap() > 0.0);
        let landmarks = face["landmarks"].as_array().expect("landmarks");
        assert_eq!(landmarks.len(), 5);
        assert!(landmarks.iter().all(|p| p.as_array().unwrap().len() == 2));
        assert_eq!(face["embedding"].as_array().expect("embedding").len(), 128);
    }
    assert_eq!(entries[1]["image"], path_str(&dogs));
    assert_eq!(entries[1]["faces"], serde_json::json!([]));
}

#[test]
fn embed_of_only_unreadable_images_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.jpg");
    write_corrupt(&corrupt);
    let stderr = failure_stderr(&loraeval(&["faces", "embed", path_str(&corrupt), "--json"]));
    assert!(stderr.contains("no image could be read"), "{stderr}");
    assert!(stderr.contains(path_str(&corrupt)), "{stderr}");
}

#[test]
fn score_json_reports_reference_set_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    // kohya layout: image/10_tom/...
    let reference = dir.path().join("image");
    let person = reference.join("10_tom");
    std::fs::create_dir_all(&person).unwrap();
    let reference_photo = person.join("tom.png");
    write_small_portrait(&reference_photo, false);
    std::fs::copy(fixture("dogs.jpg"), person.join("dogs.JPG")).unwrap();
    write_corrupt(&person.join("broken.jpg"));
    std::fs::write(person.join("caption.txt"), "a photo of tom").unwrap();
    let outputs = dir.path().join("outputs");
    std::fs::create_dir_all(&outputs).unwrap();
    write_small_portrait(&outputs.join("a_mirrored.png"), true);
    std::fs::copy(fixture("dogs.jpg"), outputs.join("b_dogs.jpg")).unwrap();
    write_corrupt(&outputs.join("c_corrupt.jpg"));
    let other = fixture("2009_004587.png");

    let output = loraeval(&[
        "score",
        "--reference",
        path_str(&reference),
        path_str(&outputs),
        path_str(&other),
        "--json",
    ]);
    let json = success_json(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("1 of 4 images skipped"), "{stderr}");
    assert!(stderr.contains("reference photo skipped"), "{stderr}");

    let summary = &json["reference"];
    assert_eq!(summary["images"], 3);
    assert_eq!(summary["faces"], 1);
    assert_eq!(summary["outliers"], serde_json::json!([]));
    assert_eq!(
        summary["no_face"],
        serde_json::json!([path_str(&person.join("dogs.JPG"))])
    );
    assert_eq!(summary["unreadable"].as_array().unwrap().len(), 1);

    let images = json["images"].as_array().expect("images");
    assert_eq!(images.len(), 3);
    let mirrored = &images[0];
    assert_eq!(mirrored["image"], path_str(&outputs.join("a_mirrored.png")));
    assert_eq!(
        (
            mirrored["face_found"].as_bool(),
            mirrored["n_faces"].as_u64()
        ),
        (Some(true), Some(1))
    );
    let distance = mirrored["distance"].as_f64().unwrap();
    let similarity = mirrored["similarity"].as_f64().unwrap();
    assert!(distance < 0.6 && similarity > 0.95, "{mirrored}");
    assert_eq!(mirrored["nearest"]["image"], path_str(&reference_photo));
    // one reference photo: the nearest photo is the centroid's direction
    let nearest = mirrored["nearest"]["similarity"].as_f64().unwrap();
    assert!((nearest - similarity).abs() < 1e-5, "{mirrored}");
    assert!(mirrored["face_size"].as_u64().unwrap() > 100);

    let dogs = &images[1];
    assert_eq!(dogs["face_found"], false);
    assert_eq!(dogs["n_faces"], 0);
    assert!(
        dogs["similarity"].is_null() && dogs["distance"].is_null() && dogs["nearest"].is_null()
    );

    let stranger = &images[2];
    assert_eq!(stranger["image"], path_str(&other));
    assert_eq!(stranger["n_faces"], 2);
    assert!(stranger["distance"].as_f64().unwrap() > 0.6, "{stranger}");
    assert!(stranger["similarity"].as_f64().unwrap() < similarity);

    assert_eq!(
        json["skipped"][0]["image"],
        path_str(&outputs.join("c_corrupt.jpg"))
    );
}

#[test]
fn score_table_lists_images_and_no_face() {
    let dir = tempfile::tempdir().unwrap();
    let reference_photo = dir.path().join("tom.png");
    write_small_portrait(&reference_photo, false);
    let dogs = fixture("dogs.jpg");
    let output = loraeval(&[
        "score",
        "--reference",
        path_str(&reference_photo),
        path_str(&dogs),
    ]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("reference: 1 photos, 1 faces used"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with(path_str(&dogs)))
        .expect("a row for the image");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..], ["0", "-", "-", "-", "-"], "{row}");
}

#[test]
fn empty_reference_folder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let dogs = fixture("dogs.jpg");
    let stderr = failure_stderr(&loraeval(&[
        "score",
        "--reference",
        path_str(&empty),
        path_str(&dogs),
    ]));
    assert!(stderr.contains("no images"), "{stderr}");
    assert!(stderr.contains(path_str(&empty)), "{stderr}");
}

#[test]
fn reference_folder_without_faces_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("dogs.jpg"), dir.path().join("dogs.jpg")).unwrap();
    let dogs = fixture("dogs.jpg");
    let stderr = failure_stderr(&loraeval(&[
        "score",
        "--reference",
        path_str(dir.path()),
        path_str(&dogs),
    ]));
    assert!(
        stderr.contains(
            "no usable face in the reference photos (1 photos: 1 without a face, 0 unreadable)"
        ),
        "{stderr}"
    );
}

#[test]
fn missing_input_is_named() {
    let stderr = failure_stderr(&loraeval(&[
        "score",
        "--reference",
        "/nonexistent/refs",
        path_str(&fixture("dogs.jpg")),
    ]));
    assert!(
        stderr.contains("/nonexistent/refs does not exist"),
        "{stderr}"
    );
}
