//! Micro-benchmark of the face descriptor and the CNN detector (ignored by default; run with
//! `cargo test --release --test face_dnn_bench -- --ignored --nocapture`). It prints wall and CPU times
//! and checks that the timed calls still give the expected results.

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

/// CPU seconds used by this process so far (user + system, from /proc/self/stat; 0 where unavailable).
/// Less sensitive than wall time to other jobs on a shared machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `f` `runs` times; returns (wall seconds, CPU seconds) per run.
fn timed(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..runs {
        f();
    }
    (
        wall.elapsed().as_secs_f64() / runs as f64,
        (cpu_seconds() - cpu) / runs as f64,
    )
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn bench_embed_and_detect() {
    let (wall, _) = timed(3, || drop(FaceEmbedder::load_embedded().expect("model")));
    let (wall_det, _) = timed(3, || drop(FaceDetector::load_embedded().expect("model")));
    eprintln!(
        "load: embedder {:.0} ms, detector {:.1} ms",
        wall * 1e3,
        wall_det * 1e3
    );
    let embedder = FaceEmbedder::load_embedded().expect("model");
    let chip = fixture("chip_2008_002506_0.png");
    let first = embedder.embed(&chip).expect("embed");
    let (wall, cpu) = timed(20, || {
        assert_eq!(embedder.embed(&chip).expect("embed"), first)
    });
    eprintln!(
        "embed one chip: {:.1} ms wall, {:.1} ms CPU",
        wall * 1e3,
        cpu * 1e3
    );
    let batch = vec![chip.clone(); 8];
    let (wall, cpu) = timed(3, || {
        let out = embedder.embed_batch(&batch).expect("batch");
        assert!(out.iter().all(|d| *d == first));
    });
    eprintln!(
        "embed_batch of 8: {:.1} ms wall, {:.1} ms CPU per chip",
        wall * 1e3 / 8.0,
        cpu * 1e3 / 8.0
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
    for upsample in [0, 1] {
        let (wall, cpu) = timed(3, || {
            assert!(detector.detect(&photo, upsample).len() >= faces.len())
        });
        eprintln!(
            "detect 512x512 upsample {upsample}: {:.0} ms wall, {:.0} ms CPU",
            wall * 1e3,
            cpu * 1e3
        );
    }
}
