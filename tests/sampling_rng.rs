//! Parity of `TorchCpuRng` / `ImageRng` with torch's CPU generator (fixtures from scripts/make_sampling_fixtures.py).

use candle_core::Device;
use loraeval::sampling::rng::{ImageRng, TorchCpuRng};
use serde_json::Value;

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/sampling/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

/// Index and values of the first element whose bits differ.
fn first_bit_mismatch(got: &[f32], want: &[f32]) -> Option<(usize, f32, f32)> {
    assert_eq!(got.len(), want.len(), "length");
    got.iter()
        .zip(want)
        .enumerate()
        .find(|(_, (g, w))| g.to_bits() != w.to_bits())
        .map(|(i, (g, w))| (i, *g, *w))
}

#[test]
fn randn_call_sequences_are_bit_exact_with_torch_2_12() {
    let meta = read_json("randn.json");
    let calls: Vec<usize> = meta["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let tensors = candle_core::safetensors::load(fixture("randn.safetensors"), &Device::Cpu)
        .expect("randn.safetensors loads");
    let seeds = meta["seeds"].as_array().unwrap();
    assert!(seeds.len() >= 5);
    for seed_text in seeds {
        let seed: u64 = seed_text.as_str().unwrap().parse().unwrap();
        let want = tensors[&format!("seed_{seed}")].to_vec1::<f32>().unwrap();
        let mut generator = TorchCpuRng::new(seed);
        let mut offset = 0;
        for &n in &calls {
            let got = generator.randn(n);
            let mismatch = first_bit_mismatch(&got, &want[offset..offset + n]);
            assert_eq!(
                mismatch, None,
                "seed {seed}, call randn({n}) at offset {offset}"
            );
            offset += n;
        }
        assert_eq!(offset, want.len());
    }
}

#[test]
fn manual_seed_keeps_only_the_low_32_bits() {
    let mut low = TorchCpuRng::new(7);
    let mut high = TorchCpuRng::new((1u64 << 32) + 7);
    assert_eq!(low.randn(40), high.randn(40));
    let mut zero = TorchCpuRng::new(0);
    let mut two_pow_63 = TorchCpuRng::new(1u64 << 63);
    assert_eq!(zero.randn(5), two_pow_63.randn(5));
}

#[test]
fn small_draws_are_not_prefixes_of_vectorised_draws() {
    // torch takes a scalar path below 16 elements and the 16-wide Box-Muller path from 16 on.
    let eight = TorchCpuRng::new(42).randn(8);
    let sixteen = TorchCpuRng::new(42).randn(16);
    assert_ne!(eight[..], sixteen[..8]);
}

#[test]
fn shared_vectors_from_another_torch_build_match() {
    let data = read_json("torch-cpu-randn.json");
    let vectors = data["vectors"].as_object().unwrap();
    let mut checked = 0;
    for (key, v) in vectors {
        let Ok(seed) = key.parse::<u64>() else {
            continue;
        };
        let mut generator = TorchCpuRng::new(seed);
        let first = generator.randn(4 * 8 * 16);
        let second = generator.randn(4 * 8 * 16);
        let then_7 = generator.randn(7);
        let first20 = floats(&v["first_randn_1x4x8x16_first20"]);
        assert_eq!(
            first_bit_mismatch(&first[..20], &first20),
            None,
            "seed {seed}"
        );
        let last5 = floats(&v["first_randn_last5"]);
        assert_eq!(first_bit_mismatch(&first[first.len() - 5..], &last5), None);
        let second10 = floats(&v["second_randn_1x4x8x16_first10"]);
        assert_eq!(first_bit_mismatch(&second[..10], &second10), None);
        assert_eq!(
            first_bit_mismatch(&then_7, &floats(&v["then_randn_7"])),
            None
        );
        checked += 1;
    }
    assert_eq!(checked, 4);
    let full = &vectors["3_full_1x4x64x64"];
    let values = TorchCpuRng::new(3).randn(4 * 64 * 64);
    assert_eq!(
        first_bit_mismatch(&values[..10], &floats(&full["first10"])),
        None
    );
    assert_eq!(
        first_bit_mismatch(&values[values.len() - 10..], &floats(&full["last10"])),
        None
    );
    let sum: f64 = values.iter().map(|v| *v as f64).sum();
    let want_sum = full["sum"].as_f64().unwrap();
    assert!((sum - want_sum).abs() < 1e-3, "sum {sum} vs {want_sum}");
}

#[test]
fn image_rng_gives_each_image_its_own_generator() {
    let seeds = ImageRng::batch_seeds(41, 3);
    assert_eq!(seeds, vec![41, 42, 43]);
    let mut batch = ImageRng::new(&seeds, [4, 2, 3]).unwrap();
    let first = batch.next_noise(&Device::Cpu).unwrap();
    assert_eq!(first.dims(), &[3, 4, 2, 3]);
    let second = batch.next_noise_vec();
    for (i, seed) in seeds.iter().enumerate() {
        let mut alone = TorchCpuRng::new(*seed);
        let image_first: Vec<f32> = first
            .get(i)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(image_first, alone.randn(24));
        assert_eq!(second[i * 24..(i + 1) * 24], alone.randn(24)[..]);
    }
}

#[test]
fn image_rng_rejects_empty_batches_and_shapes() {
    assert!(ImageRng::new(&[], [4, 8, 8]).is_err());
    let error = ImageRng::new(&[1], [4, 0, 8]).unwrap_err();
    assert!(error.to_string().contains("[4, 0, 8]"), "{error}");
}
