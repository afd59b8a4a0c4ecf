//! Parity of `PhiloxRng` and of `ImageRng` (all three sources, with and without ENSD) with A1111's own code
//! (fixtures from scripts/make_nv_rng_fixtures.py: `modules/rng_philox.py` and `modules/rng.py` `ImageRNG`).

use loraeval::sampling::png_info::parse_infotext;
use loraeval::sampling::rng::{ImageRng, NoiseGenerator, PhiloxRng, RngSource, TorchCpuRng};
use loraeval::sampling::SamplingError;
use serde_json::Value;

fn fixture() -> Value {
    let path = format!(
        "{}/tests/fixtures/sampling/nv-randn.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture readable")).expect("JSON")
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

fn seed(value: &Value) -> u64 {
    value
        .as_str()
        .expect("seed string")
        .parse()
        .expect("u64 seed")
}

fn usizes(value: &Value) -> Vec<usize> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_u64().expect("integer") as usize)
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
fn docstring_example_is_a1111s_nv_output_and_close_to_cuda() {
    let fixture = fixture();
    let docstring = &fixture["docstring"];
    let got = PhiloxRng::new(0).randn(12);
    assert_eq!(
        first_bit_mismatch(&got, &floats(&docstring["values"])),
        None
    );
    assert_eq!(got[0], -0.924_662_4);
    // The docstring prints what torch.randn gives on an NVIDIA GPU (fast __sincosf): the same numbers up to
    // the last float32 digits.
    let cuda = floats(&docstring["cuda_docstring"]);
    for (ours, theirs) in got.iter().zip(&cuda) {
        assert!((ours - theirs).abs() < 5e-7, "{ours} vs CUDA {theirs}");
    }
}

#[test]
fn call_sequences_are_bit_exact_with_a1111_rng_philox() {
    let fixture = fixture();
    let sequences = fixture["sequences"].as_array().unwrap();
    assert_eq!(sequences.len(), 7);
    for sequence in sequences {
        let seed = seed(&sequence["seed"]);
        let mut generator = PhiloxRng::new(seed);
        for call in sequence["calls"].as_array().unwrap() {
            let n: usize = usizes(&call["shape"]).iter().product();
            assert_eq!(
                u64::from(generator.offset()),
                call["offset"].as_u64().unwrap()
            );
            let got = generator.randn(n);
            assert_eq!(
                first_bit_mismatch(&got, &floats(&call["values"])),
                None,
                "seed {seed}, offset {}",
                call["offset"]
            );
        }
    }
}

#[test]
fn a_latent_sized_draw_matches_at_every_sampled_index() {
    let fixture = fixture();
    let large = &fixture["large"];
    let n: usize = usizes(&large["shape"]).iter().product();
    let indices = usizes(&large["indices"]);
    assert_eq!(*indices.last().unwrap(), n - 1);
    for case in large["cases"].as_array().unwrap() {
        let seed = seed(&case["seed"]);
        let offset = case["offset"].as_u64().unwrap() as u32;
        let mut generator = PhiloxRng::new(seed);
        for _ in 0..offset.min(1) {
            generator.randn(3);
        }
        if offset > 1 {
            generator = PhiloxRng::with_offset(seed, offset);
        }
        let values = generator.randn(n);
        let got: Vec<f32> = indices.iter().map(|&i| values[i]).collect();
        assert_eq!(
            first_bit_mismatch(&got, &floats(&case["values"])),
            None,
            "seed {seed} offset {offset}"
        );
    }
}

#[test]
fn image_rng_matches_a1111_image_rng_with_and_without_ensd() {
    let fixture = fixture();
    let runs = fixture["image_rng"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for run in runs {
        let a1111_source = run["source"].as_str().unwrap();
        let ensd = run["ensd"].as_u64().unwrap();
        let seeds: Vec<u64> = run["seeds"].as_array().unwrap().iter().map(seed).collect();
        let shape = usizes(&run["shape"]);
        let shape = [shape[0], shape[1], shape[2]];
        let sources = match a1111_source {
            "NV" => vec![RngSource::Nv, RngSource::Gpu],
            "CPU" => vec![RngSource::Cpu],
            other => panic!("unexpected source {other}"),
        };
        for source in sources {
            let mut rng = ImageRng::with_source(source, &seeds, shape, ensd).unwrap();
            assert_eq!(rng.source(), source);
            for (index, draw) in run["draws"].as_array().unwrap().iter().enumerate() {
                let got = rng.next_noise_vec();
                assert_eq!(
                    first_bit_mismatch(&got, &floats(draw)),
                    None,
                    "{source:?} ENSD {ensd} draw {index}"
                );
            }
        }
    }
}

#[test]
fn ensd_reseeds_every_image_after_the_first_draw() {
    let shape = [4, 2, 3];
    let per_image = 24;
    let mut rng = ImageRng::with_source(RngSource::Nv, &[10, 11], shape, 5).unwrap();
    let first = rng.next_noise_vec();
    let second = rng.next_noise_vec();
    let third = rng.next_noise_vec();
    let mut plain = PhiloxRng::new(11);
    assert_eq!(first[per_image..], plain.randn(per_image)[..]);
    // After the first draw image i draws from a fresh generator seeded seed_i + ENSD, from its offset 0.
    let mut reseeded = PhiloxRng::new(15);
    assert_eq!(second[..per_image], reseeded.randn(per_image)[..]);
    assert_eq!(third[..per_image], reseeded.randn(per_image)[..]);
    let mut cpu = ImageRng::with_source(RngSource::Cpu, &[10], shape, 5).unwrap();
    cpu.next_noise_vec();
    assert_eq!(cpu.next_noise_vec(), TorchCpuRng::new(15).randn(per_image));
    // Without ENSD the generators go on.
    let mut off = ImageRng::with_source(RngSource::Nv, &[10], shape, 0).unwrap();
    off.next_noise_vec();
    assert_eq!(
        off.next_noise_vec(),
        PhiloxRng::with_offset(10, 1).randn(per_image)
    );
    // ImageRng::new is the CPU source without ENSD.
    let mut legacy = ImageRng::new(&[10], shape).unwrap();
    let mut generator = NoiseGenerator::new(RngSource::Cpu, 10);
    assert_eq!(legacy.next_noise_vec(), generator.randn(per_image));
}

#[test]
fn sources_parse_name_their_infotext_field_and_read_back() {
    assert_eq!(RngSource::default(), RngSource::Gpu);
    for (text, source) in [
        ("gpu", RngSource::Gpu),
        ("GPU", RngSource::Gpu),
        ("cpu", RngSource::Cpu),
        (" NV ", RngSource::Nv),
    ] {
        assert_eq!(RngSource::parse(text).unwrap(), source);
    }
    let error = RngSource::parse("cuda").unwrap_err();
    assert!(matches!(error, SamplingError::UnknownRngSource { .. }));
    assert_eq!(
        error.to_string(),
        "unknown RNG source \"cuda\"; valid sources: gpu, cpu, nv"
    );
    assert_eq!(RngSource::Gpu.infotext_value(), None);
    assert_eq!(RngSource::Cpu.infotext_value(), Some("CPU"));
    assert_eq!(RngSource::Nv.infotext_value(), Some("NV"));
    let line = "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512";
    let gpu = parse_infotext(&format!("a cat\n{line}")).unwrap();
    assert_eq!(gpu.rng_source().unwrap(), RngSource::Gpu);
    assert_eq!(gpu.eta_noise_seed_delta(), 0);
    let nv = parse_infotext(&format!("a cat\n{line}, ENSD: 31337, RNG: NV")).unwrap();
    assert_eq!(nv.rng_source().unwrap(), RngSource::Nv);
    assert_eq!(nv.eta_noise_seed_delta(), 31337);
    assert!(nv.extra.is_empty(), "{:?}", nv.extra);
    let cpu = parse_infotext(&format!("a cat\n{line}, RNG: CPU")).unwrap();
    assert_eq!(cpu.rng_source().unwrap(), RngSource::Cpu);
}
