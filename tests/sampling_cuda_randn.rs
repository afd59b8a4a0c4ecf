//! loraeval's `gpu` RNG source against torch.randn drawn on a real NVIDIA GPU (H200, torch 2.11.0+cu130) the way
//! A1111's "GPU" source draws (`manual_seed`, then `randn` on cuda), from scripts/cuda_randn_vectors.py.

use loraeval::sampling::rng::PhiloxRng;
use serde_json::Value;

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

/// Largest difference relative to max(1, |value|): CUDA's Box–Muller uses a fast sine, so values differ from the
/// float64-sine NV generator in the last digits, more for values far from 0.
fn max_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0, f32::max)
}

#[test]
fn gpu_source_draws_what_an_nvidia_gpu_draws() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sampling/cuda-randn.json"
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let sample: Vec<usize> = fixture["sample_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let mut worst = 0.0f32;
    for case in fixture["seeds"].as_array().unwrap() {
        let seed: u64 = case["seed"].as_str().unwrap().parse().unwrap();
        let mut rng = PhiloxRng::new(seed);
        let first = rng.randn(12);
        let latent = rng.randn(4 * 64 * 64);
        let third = rng.randn(12);
        let sampled: Vec<f32> = sample.iter().map(|&i| latent[i]).collect();
        for (got, key) in [
            (first, "first_3x4"),
            (sampled, "latent_4x64x64_sampled"),
            (third, "third_3x4"),
        ] {
            let diff = max_diff(&got, &floats(&case[key]));
            assert!(diff <= 3e-6, "seed {seed} {key}: max relative diff {diff}");
            worst = worst.max(diff);
        }
    }
    println!("max relative |loraeval gpu - CUDA| over all draws: {worst:e}");
}
