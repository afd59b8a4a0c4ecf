//! SD1.5 schedule and sigma schedules vs k-diffusion / torch (fixtures from scripts/make_sampling_fixtures.py).

use loraeval::sampling::samplers::ddim_timesteps;
use loraeval::sampling::schedule::{
    exponential_sigmas, karras_sigmas, linspace_f32, linspace_f64, polyexponential_sigmas,
    sd15_alphas_cumprod, DiscreteSchedule, ScheduleType,
};
use loraeval::sampling::SamplingError;
use serde_json::Value;

fn schedules() -> Value {
    let path = format!(
        "{}/tests/fixtures/sampling/schedules.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect()
}

/// Distance in units in the last place between two f32 values of the same sign.
fn ulps(a: f32, b: f32) -> u32 {
    if a == b {
        return 0;
    }
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
}

/// (largest ulp distance, number of values not bit-equal).
fn compare_f32(got: &[f32], want: &[f64]) -> (u32, usize) {
    assert_eq!(got.len(), want.len(), "length");
    let distances: Vec<u32> = got
        .iter()
        .zip(want)
        .map(|(g, w)| ulps(*g, *w as f32))
        .collect();
    (
        distances.iter().copied().max().unwrap_or(0),
        distances.iter().filter(|d| **d > 0).count(),
    )
}

#[test]
fn alphas_cumprod_is_bit_exact() {
    let want = floats(&schedules()["alphas_cumprod"]);
    let got = sd15_alphas_cumprod();
    assert_eq!(compare_f32(&got, &want), (0, 0));
}

#[test]
fn linspace_matches_torch_bit_for_bit() {
    let data = schedules();
    for (key, want) in data["linspace_f32"].as_object().unwrap() {
        let parts: Vec<f64> = key.split('_').map(|p| p.parse().unwrap()).collect();
        let got = linspace_f32(parts[0], parts[1], parts[2] as usize);
        assert_eq!(compare_f32(&got, &floats(want)), (0, 0), "linspace {key}");
    }
    for (key, want) in data["linspace_f64"].as_object().unwrap() {
        let parts: Vec<f64> = key.split('_').map(|p| p.parse().unwrap()).collect();
        let got = linspace_f64(parts[0], parts[1], parts[2] as usize);
        let want: Vec<f64> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().parse().unwrap())
            .collect();
        let differing: Vec<(usize, f64, f64)> = (0..got.len())
            .filter(|i| got[*i] != want[*i])
            .map(|i| (i, got[i], want[i]))
            .collect();
        assert!(differing.is_empty(), "linspace f64 {key}: {differing:?}");
    }
}

#[test]
fn model_sigmas_within_one_ulp_of_torch() {
    // torch's CPU sqrt goes through MKL and is not always correctly rounded; ours is.
    let data = schedules();
    let schedule = DiscreteSchedule::sd15();
    let (max_ulps, differing) = compare_f32(schedule.sigmas(), &floats(&data["sigmas"]));
    assert!(
        max_ulps <= 1 && differing <= 20,
        "{max_ulps} ulp, {differing} differ"
    );
    let want_min = data["sigma_min"].as_f64().unwrap() as f32;
    let want_max = data["sigma_max"].as_f64().unwrap() as f32;
    assert!(ulps(schedule.sigma_min(), want_min) <= 1);
    assert_eq!(schedule.sigma_max(), want_max);
}

fn check_family(
    family: &str,
    make: &dyn Fn(usize) -> Result<Vec<f32>, SamplingError>,
    max_allowed_ulps: u32,
) {
    let data = schedules();
    for (n, want) in data[family].as_object().unwrap() {
        let got = make(n.parse().unwrap()).unwrap();
        let (max_ulps, differing) = compare_f32(&got, &floats(want));
        eprintln!("{family} n={n}: {differing} values differ, max {max_ulps} ulp");
        assert!(
            max_ulps <= max_allowed_ulps,
            "{family} n={n}: {max_ulps} ulp"
        );
    }
}

#[test]
fn uniform_sigmas_match_k_diffusion_get_sigmas() {
    let schedule = DiscreteSchedule::sd15();
    check_family("get_sigmas", &|n| schedule.discrete_sigmas(n), 2);
}

#[test]
fn karras_sigmas_match_k_diffusion() {
    let s = DiscreteSchedule::sd15();
    let (min, max) = (s.sigma_min() as f64, s.sigma_max() as f64);
    check_family("karras", &|n| karras_sigmas(n, min, max, 7.0), 2);
    check_family("karras", &|n| s.sigmas_for(ScheduleType::Karras, n), 2);
}

#[test]
fn exponential_sigmas_match_k_diffusion() {
    let s = DiscreteSchedule::sd15();
    let (min, max) = (s.sigma_min() as f64, s.sigma_max() as f64);
    check_family("exponential", &|n| exponential_sigmas(n, min, max), 2);
    check_family(
        "polyexponential",
        &|n| polyexponential_sigmas(n, min, max, 1.0),
        2,
    );
}

#[test]
fn sigma_to_t_and_back_match_k_diffusion() {
    let data = schedules();
    let schedule = DiscreteSchedule::sd15();
    let probe = &data["sigma_to_t"];
    let mut worst = 0.0f64;
    for (sigma, want) in floats(&probe["sigma"]).iter().zip(floats(&probe["t"])) {
        let got = schedule.sigma_to_t(*sigma);
        worst = worst.max((got - want).abs());
        assert_eq!(got as f32, want as f32, "sigma_to_t({sigma})");
    }
    eprintln!("sigma_to_t: largest |t - t_torch| = {worst:e}");
    let probe = &data["t_to_sigma"];
    for (t, want) in floats(&probe["t"]).iter().zip(floats(&probe["sigma"])) {
        let got = schedule.t_to_sigma(*t);
        assert!(
            ulps(got as f32, want as f32) <= 2,
            "t_to_sigma({t}) = {got}, want {want}"
        );
    }
}

#[test]
fn ddim_timesteps_match_a1111() {
    let data = schedules();
    for (n, want) in data["ddim_timesteps"].as_object().unwrap() {
        let want: Vec<usize> = floats(want).iter().map(|t| *t as usize).collect();
        assert_eq!(
            ddim_timesteps(n.parse().unwrap(), 1000).unwrap(),
            want,
            "{n}"
        );
    }
    let twenty = ddim_timesteps(20, 1000).unwrap();
    assert_eq!((twenty[0], twenty[1], twenty[19]), (1, 51, 951));
}

#[test]
fn zero_steps_and_bad_alphas_are_errors() {
    let schedule = DiscreteSchedule::sd15();
    assert!(matches!(
        schedule.discrete_sigmas(0),
        Err(SamplingError::BadSteps { steps: 0 })
    ));
    assert!(karras_sigmas(0, 0.03, 14.6, 7.0).is_err());
    assert!(ddim_timesteps(0, 1000).is_err());
    let error = DiscreteSchedule::from_alphas_cumprod(vec![0.9, 0.0, 0.5]).unwrap_err();
    assert!(error.to_string().contains("alphas_cumprod[1]"), "{error}");
    let own = DiscreteSchedule::from_alphas_cumprod(sd15_alphas_cumprod()).unwrap();
    assert_eq!(own.sigmas(), schedule.sigmas());
}

#[test]
fn schedule_type_names_follow_a1111() {
    assert_eq!(ScheduleType::parse("Karras").unwrap(), ScheduleType::Karras);
    assert_eq!(ScheduleType::parse("karras").unwrap(), ScheduleType::Karras);
    assert_eq!(
        ScheduleType::parse(" AUTOMATIC ").unwrap(),
        ScheduleType::Automatic
    );
    assert_eq!(
        ScheduleType::parse("Exponential").unwrap(),
        ScheduleType::Exponential
    );
    let unsupported = ScheduleType::parse("SGM Uniform").unwrap_err();
    assert!(matches!(
        unsupported,
        SamplingError::UnsupportedSchedule { .. }
    ));
    assert!(unsupported.to_string().contains("Karras"), "{unsupported}");
    assert!(ScheduleType::parse("Align Your Steps").is_err());
    let unknown = ScheduleType::parse("zigzag").unwrap_err();
    assert!(matches!(unknown, SamplingError::UnknownSchedule { .. }));
    assert!(
        unknown.to_string().contains("Automatic, Uniform, Karras"),
        "{unknown}"
    );
}
