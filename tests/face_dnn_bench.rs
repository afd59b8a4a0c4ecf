//! Micro-benchmark of the face descriptor and the CNN detector (ignored by default; run with
//! `cargo test --release --test face_dnn_bench -- --ignored --nocapture`). It prints timings and checks
//! that the timed calls still give the expected results.

use std::path::Path;
use std::time::Instant;

use loraeval::face::mmod::FaceDetector;
use loraeval::face::resnet::FaceEmbedder;

fn fixture(name: &str) -> image::RgbImage {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/faces_dnn")
        .join(name);
    image::open(path).expect("fixture png").to_rgb8()
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn bench_embed_and_detect() {
    let embedder = FaceEmbedder::load_embedded().expect("model");
    let chip = fixture("chip_2008_002506_0.png");
    let first = embedder.embed(&chip).expect("embed");
    let runs = 10;
    let start = Instant::now();
    for _ in 0..runs {
        assert_eq!(embedder.embed(&chip).expect("embed"), first);
    }
    let per_chip = start.elapsed().as_secs_f64() / runs as f64;
    let batch = vec![chip.clone(); 8];
    let start = Instant::now();
    let out = embedder.embed_batch(&batch).expect("batch");
    let per_chip_batched = start.elapsed().as_secs_f64() / batch.len() as f64;
    assert!(out.iter().all(|d| *d == first));
    eprintln!(
        "embed: {:.1} ms/chip single, {:.1} ms/chip in a batch of 8",
        per_chip * 1e3,
        per_chip_batched * 1e3
    );

    let detector = FaceDetector::load_embedded().expect("model");
    let photo = image::imageops::resize(
        &fixture("det_2008_002506.png"),
        512,
        512,
        image::imageops::FilterType::Triangle,
    );
    let faces = detector.detect(&photo, 0);
    assert!(!faces.is_empty(), "the 512x512 photo has faces");
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(detector.detect(&photo, 0), faces);
    }
    eprintln!(
        "detect 512x512 upsample 0: {:.0} ms ({} faces)",
        start.elapsed().as_secs_f64() / 3.0 * 1e3,
        faces.len()
    );
    let start = Instant::now();
    let up = detector.detect(&photo, 1);
    eprintln!(
        "detect 512x512 upsample 1: {:.0} ms ({} faces)",
        start.elapsed().as_secs_f64() * 1e3,
        up.len()
    );
}
