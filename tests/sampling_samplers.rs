//! Sampler parity with k-diffusion and A1111's DDIM on a toy analytic model
//! (fixtures from scripts/make_sampling_fixtures.py), plus sampler-name parsing.

use candle_core::{Device, Tensor};
use loraeval::sampling::rng::ImageRng;
use loraeval::sampling::samplers::{
    sample, sample_dpmpp_2m, Denoiser, EpsPredictor, SamplerName, SamplerSettings,
};
use loraeval::sampling::schedule::{DiscreteSchedule, ScheduleType};
use loraeval::sampling::SamplingError;
use serde_json::Value;

/// The script's toy models: D(x, s) = 0.9 tanh(x / sqrt(s^2 + 1)) + 0.05 sin(s);
/// eps(x, t) = tanh(x) (0.5 + t / 2000) - 0.1 x. Records the sigma / timestep of every call.
#[derive(Default)]
struct ToyModel {
    calls: Vec<f64>,
}

impl Denoiser for ToyModel {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor, SamplingError> {
        self.calls.push(sigma);
        let s = sigma as f32;
        let c_in = 1.0 / (s * s + 1.0).sqrt();
        let bias = 0.05f32 * s.sin();
        Ok(x.affine(c_in as f64, 0.0)?
            .tanh()?
            .affine(0.9, bias as f64)?)
    }
}

impl EpsPredictor for ToyModel {
    fn predict_eps(&mut self, x: &Tensor, timestep: f64) -> Result<Tensor, SamplingError> {
        self.calls.push(timestep);
        let scale = 0.5f32 + timestep as f32 / 2000.0;
        Ok((x.tanh()?.affine(scale as f64, 0.0)? - x.affine(0.1, 0.0)?)?)
    }
}

fn cases() -> Vec<Value> {
    let path = format!(
        "{}/tests/fixtures/sampling/samplers.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    data["cases"].as_array().unwrap().clone()
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// max |got - want| / max |want|.
fn relative_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length");
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let worst = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
    worst / scale
}

#[test]
fn samplers_match_k_diffusion_and_a1111_ddim_on_toy_model() {
    let schedule = DiscreteSchedule::sd15();
    let all = cases();
    assert_eq!(all.len(), 10);
    for case in all {
        let name = case["name"].as_str().unwrap();
        let sampler = SamplerName::parse(case["sampler"].as_str().unwrap()).unwrap();
        let schedule_type = ScheduleType::parse(case["schedule"].as_str().unwrap()).unwrap();
        let steps = case["steps"].as_u64().unwrap() as usize;
        let mut settings = SamplerSettings::new(sampler, schedule_type, steps);
        if sampler == SamplerName::Ddim {
            settings.eta_ddim = case["eta"].as_f64().unwrap();
        }
        let seeds: Vec<u64> = case["seeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().parse().unwrap())
            .collect();
        let shape: Vec<usize> = floats(&case["shape"]).iter().map(|v| *v as usize).collect();
        let mut rng = ImageRng::new(&seeds, [shape[0], shape[1], shape[2]]).unwrap();
        let mut model = ToyModel::default();
        let mut progress_calls = Vec::new();
        let mut progress = |done: usize, total: usize| progress_calls.push((done, total));
        let out = sample(
            &mut model,
            &schedule,
            &settings,
            &mut rng,
            &Device::Cpu,
            &mut progress,
        )
        .unwrap();
        assert_eq!(
            out.dims(),
            &[seeds.len(), shape[0], shape[1], shape[2]],
            "{name}"
        );
        let got: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        let error = relative_error(&got, &floats(&case["output"]));
        eprintln!("{name}: relative error {error:.2e}");
        assert!(error <= 1e-5, "{name}: relative error {error:e}");

        let want_calls = floats(&case["model_calls"]);
        assert_eq!(model.calls.len(), want_calls.len(), "{name}: model calls");
        for (got, want) in model.calls.iter().zip(&want_calls) {
            assert!(
                (got - want).abs() <= 2e-6 * want.abs(),
                "{name}: call {got} vs {want}"
            );
        }
        let total = want_calls.len();
        assert_eq!(
            progress_calls,
            (1..=total).map(|i| (i, total)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn sampler_names_accept_ours_and_a1111_display_names() {
    let pairs = [
        ("euler", SamplerName::Euler),
        ("Euler", SamplerName::Euler),
        ("euler_a", SamplerName::EulerA),
        ("Euler a", SamplerName::EulerA),
        ("EULER A", SamplerName::EulerA),
        ("dpmpp_2m", SamplerName::Dpmpp2m),
        ("DPM++ 2M", SamplerName::Dpmpp2m),
        ("dpmpp_2m_karras", SamplerName::Dpmpp2mKarras),
        ("DPM++ 2M Karras", SamplerName::Dpmpp2mKarras),
        ("ddim", SamplerName::Ddim),
        ("DDIM", SamplerName::Ddim),
        ("k_euler_a", SamplerName::EulerA),
    ];
    for (text, want) in pairs {
        assert_eq!(SamplerName::parse(text).unwrap(), want, "{text}");
    }
    let error = SamplerName::parse("heun").unwrap_err().to_string();
    for valid in [
        "euler",
        "Euler a",
        "dpmpp_2m_karras",
        "DPM++ 2M Karras",
        "DDIM",
    ] {
        assert!(error.contains(valid), "{error}");
    }
    assert!(error.contains("\"heun\""), "{error}");
}

#[test]
fn automatic_schedule_and_infotext_labels_follow_a1111_1_10() {
    use ScheduleType::*;
    assert_eq!(SamplerName::Dpmpp2m.resolve_schedule(Automatic), Karras);
    assert_eq!(
        SamplerName::Dpmpp2mKarras.resolve_schedule(Exponential),
        Karras
    );
    assert_eq!(SamplerName::EulerA.resolve_schedule(Automatic), Uniform);
    assert_eq!(
        SamplerName::Euler.resolve_schedule(Exponential),
        Exponential
    );
    assert_eq!(SamplerName::Dpmpp2m.infotext_schedule(Automatic), "Karras");
    assert_eq!(
        SamplerName::EulerA.infotext_schedule(Automatic),
        "Automatic"
    );
    assert_eq!(SamplerName::Dpmpp2mKarras.infotext_sampler(), "DPM++ 2M");
    assert_eq!(
        SamplerName::Dpmpp2mKarras.infotext_schedule(Automatic),
        "Karras"
    );
    assert_eq!(SamplerName::EulerA.infotext_sampler(), "Euler a");
}

#[test]
fn zero_steps_and_mismatched_batches_are_errors() {
    let schedule = DiscreteSchedule::sd15();
    let mut rng = ImageRng::new(&[1], [4, 2, 2]).unwrap();
    let mut model = ToyModel::default();
    let settings = SamplerSettings::new(SamplerName::Euler, ScheduleType::Automatic, 0);
    let result = sample(
        &mut model,
        &schedule,
        &settings,
        &mut rng,
        &Device::Cpu,
        &mut |_, _| {},
    );
    assert!(matches!(result, Err(SamplingError::BadSteps { steps: 0 })));

    let x = Tensor::zeros((1, 4, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let result = sample_dpmpp_2m(&mut model, x.clone(), &[1.0], &mut |_, _| {});
    assert!(matches!(result, Err(SamplingError::BadSteps { .. })));

    let mut two_images = ImageRng::new(&[1, 2], [4, 2, 2]).unwrap();
    let result = loraeval::sampling::samplers::sample_euler_ancestral(
        &mut model,
        x,
        &[2.0, 1.0, 0.0],
        1.0,
        1.0,
        &mut two_images,
        &mut |_, _| {},
    );
    let error = result.unwrap_err().to_string();
    assert!(
        error.contains("[1, 4, 2, 2]") && error.contains("[2, 4, 2, 2]"),
        "{error}"
    );
}
