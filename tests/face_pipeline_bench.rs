//! Where the time of one 512×512 portrait goes: detection, landmarks, chip, descriptor, and start-up (model
//! parsing). Ignored by default; run with
//! `cargo test --release --test face_pipeline_bench -- --ignored --nocapture` (RAYON_NUM_THREADS=2 for 2 cores).

use std::path::Path;
use std::time::Instant;

use image::imageops::{self, FilterType};
use loraeval::face::align::face_chip;
use loraeval::face::pipeline::{largest_detection, FaceModels, PipelineOptions};

/// Median wall seconds of `runs` calls after one warm-up.
fn median_seconds<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut out = f();
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        out = f();
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[runs / 2], out)
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn bench_portrait_stages() {
    let start = Instant::now();
    let models = FaceModels::load_embedded().expect("models");
    eprintln!("load models: {:.3} s", start.elapsed().as_secs_f64());
    let photo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/faces/Tom_Cruise_avp_2014_4.png");
    let photo = image::open(photo).expect("photo").to_rgb8();
    let square = imageops::crop_imm(&photo, 0, 120, 565, 565).to_image();
    let portrait = imageops::resize(&square, 512, 512, FilterType::CatmullRom);
    let runs = 5;
    let (detect_s, dets) = median_seconds(runs, || models.detect(&portrait, 0));
    let det = largest_detection(&dets).expect("a face");
    let (landmarks_s, landmarks) =
        median_seconds(runs, || models.landmarks.predict_rgb(&portrait, det.rect));
    let (chip_s, chip) = median_seconds(runs, || face_chip(&portrait, &landmarks).expect("chip"));
    let (embed_s, _) = median_seconds(runs, || models.embedder.embed(&chip).expect("embed"));
    let (total_s, largest) = median_seconds(runs, || {
        models
            .describe_largest(&portrait, PipelineOptions::default())
            .expect("pipeline")
    });
    assert_eq!(largest.face.expect("face").rect, det.rect);
    eprintln!(
        "512x512 portrait, {} threads: detect {:.3} s, landmarks {:.4} s, chip {:.4} s, descriptor {:.3} s, \
         whole pipeline {:.3} s",
        rayon::current_num_threads(),
        detect_s,
        landmarks_s,
        chip_s,
        embed_s,
        total_s
    );
}
