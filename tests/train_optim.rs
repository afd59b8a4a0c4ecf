//! Optimizers and LR schedules against their reference implementations, on the step sequences that
//! scripts/make_optim_fixtures.py recorded (tests/fixtures/optim/): torch AdamW, bitsandbytes AdamW8bit (its CUDA
//! kernels transcribed, plus the real CPU package as a loose check), transformers' Adafactor, dadaptation's
//! DAdaptAdam, prodigyopt's Prodigy, transformers' schedules under torch's LambdaLR, and torch's
//! clip_grad_norm_. Every step's parameters are compared, in kohya's order: clip, step, schedule.

use std::path::PathBuf;

use loraeval::train::optim::{
    clip_grad_norm, dynamic_map, LrSchedule, OptimizerConfig, OptimizerState, Param, ParamGroup,
    StateBuffer,
};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/optim")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Standard base64 (with padding) to bytes.
fn unbase64(s: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("bad base64 byte {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v = chunk.iter().enumerate().fold(0u32, |acc, (i, &c)| {
            acc | u32::from(digit(c)) << (18 - 6 * i)
        });
        out.extend_from_slice(&v.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn f32s(v: &Value) -> Vec<f32> {
    unbase64(v.as_str().unwrap())
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The fixture script's `mix`.
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The fixture script's `hash_values`: k/1000 · scale, k in −1000..=1000.
fn hash_values(salt: u32, step: u32, tensor: u32, n: usize, scale: f32) -> Vec<f32> {
    let base = salt
        .wrapping_mul(0x9e37_79b1)
        .wrapping_add(step.wrapping_mul(0x85eb_ca77))
        .wrapping_add(tensor.wrapping_mul(0xc2b2_ae3d));
    (0..n as u32)
        .map(|i| {
            let k = (mix(base.wrapping_add(i)) % 2001) as i32 - 1000;
            k as f32 / 1000.0 * scale
        })
        .collect()
}

fn grad_scale(base: f64, step: u32) -> f32 {
    base as f32 * (0.4 + 0.15 * f64::from(step % 7)) as f32
}

fn groups_of(case: &Value) -> Vec<ParamGroup> {
    let mut tensor = 0;
    let mut groups = Vec::new();
    for g in case["groups"].as_array().unwrap() {
        let mut params = Vec::new();
        for p in g["params"].as_array().unwrap() {
            let shape: Vec<usize> = p["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let n = shape.iter().product();
            let init = hash_values(1, 0, tensor, n, p["init_scale"].as_f64().unwrap() as f32);
            params.push(Param::new(p["name"].as_str().unwrap(), shape, init));
            tensor += 1;
        }
        groups.push(ParamGroup::new(
            g["name"].as_str().unwrap(),
            g["lr"].as_f64().unwrap_or(0.0),
            params,
        ));
    }
    groups
}

/// The fixture script's `step_grads`: (noise + a fixed direction per tensor) · the step's scale.
fn set_grads(case: &Value, groups: &mut [ParamGroup], step: u32) {
    let scale = grad_scale(case["grad_scale"].as_f64().unwrap(), step);
    let bias = case["grad_bias"].as_f64().unwrap() as f32;
    for (t, p) in groups
        .iter_mut()
        .flat_map(|g| g.params.iter_mut())
        .enumerate()
    {
        let noise = hash_values(2, step, t as u32, p.value.len(), 1.0);
        let direction = hash_values(3, 0, t as u32, p.value.len(), bias);
        p.grad = noise
            .iter()
            .zip(&direction)
            .map(|(u, c)| (u + c) * scale)
            .collect();
    }
}

fn schedule_of(case: &Value) -> Option<LrSchedule> {
    let s = case.get("schedule").filter(|s| !s.is_null())?;
    Some(
        LrSchedule::from_kohya(
            s["name"].as_str().unwrap(),
            s["warmup"].as_u64().unwrap(),
            s["total"].as_u64().unwrap(),
            s.get("num_cycles").and_then(Value::as_u64).unwrap_or(1) as u32,
            s.get("power").and_then(Value::as_f64).unwrap_or(1.0),
            case["learning_rate"].as_f64().unwrap_or(0.0),
        )
        .unwrap(),
    )
}

fn args_of(case: &Value) -> Vec<String> {
    case["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// max |a − b| / max |b| of one tensor.
fn rel_diff(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference
        .iter()
        .fold(0.0f64, |m, &x| m.max(f64::from(x).abs()))
        .max(1e-30);
    let diff = ours
        .iter()
        .zip(reference)
        .fold(0.0f64, |m, (&a, &b)| m.max(f64::from(a - b).abs()));
    diff / scale
}

/// Runs a fixture case step by step; returns the worst relative parameter difference over all steps.
fn run_case(
    name: &str,
    steps_key: &str,
    tol: f64,
) -> (
    Vec<ParamGroup>,
    Box<dyn loraeval::train::optim::Optimizer>,
    f64,
) {
    let case = fixture(name);
    let mut groups = groups_of(&case);
    let mut opt = OptimizerConfig::from_kohya(case["optimizer"].as_str().unwrap(), &args_of(&case))
        .unwrap()
        .build()
        .unwrap();
    let schedule = schedule_of(&case);
    let max_norm = case["max_grad_norm"].as_f64().unwrap() as f32;
    let mut worst = 0.0f64;
    for (s, step) in case[steps_key].as_array().unwrap().iter().enumerate() {
        set_grads(&case, &mut groups, s as u32);
        let norm = clip_grad_norm(&mut groups, max_norm);
        let ref_norm = step["total_norm"].as_f64().unwrap();
        assert!(
            (f64::from(norm) - ref_norm).abs() <= 1e-6 * ref_norm,
            "{name} step {s}: norm {norm} vs {ref_norm}"
        );
        let factor = schedule.map_or(1.0, |sc| sc.factor(s as u64));
        for (g, lr) in groups.iter().zip(step["lrs"].as_array().unwrap()) {
            if let Some(lr) = lr.as_f64() {
                assert!(
                    (g.lr * factor - lr).abs() <= 1e-12 * lr.abs().max(1e-12),
                    "{name} step {s}: lr {} vs {lr}",
                    g.lr * factor
                );
            }
        }
        let report = opt.step(&mut groups, factor).unwrap();
        assert_eq!(report.lrs.len(), groups.len());
        if let Some(d) = step.get("d").and_then(Value::as_f64) {
            let ours = report.lrs[0] / (groups[0].lr * factor).max(f64::MIN_POSITIVE);
            if groups[0].lr * factor > 0.0 {
                assert!(
                    (ours - d).abs() <= 1e-5 * d,
                    "{name} step {s}: d {ours} vs {d}"
                );
            }
        }
        let params = groups.iter().flat_map(|g| g.params.iter());
        for (p, reference) in params.zip(step["params"].as_array().unwrap()) {
            let r = rel_diff(&p.value, &f32s(reference));
            assert!(
                r <= tol,
                "{name} step {s} {}: max|diff|/max|p| = {r:e} > {tol:e}",
                p.name
            );
            worst = worst.max(r);
        }
    }
    println!(
        "{name}: {} steps, worst max|diff|/max|p| = {worst:e}",
        case[steps_key].as_array().unwrap().len()
    );
    (groups, opt, worst)
}

#[test]
fn adamw_matches_torch() {
    run_case("adamw.json", "steps", 1e-6);
    run_case("adamw_wd.json", "steps", 1e-6);
}

#[test]
fn adamw8bit_matches_bitsandbytes_kernels() {
    let (groups, opt, _) = run_case("adamw8bit.json", "steps", 1e-6);
    let case = fixture("adamw8bit.json");
    let state = opt.state();
    for (key, value) in case["final_state"].as_object().unwrap() {
        let expected = unbase64(value.as_str().unwrap());
        match &state.buffers[key] {
            StateBuffer::U8(codes) => {
                let differing = codes.iter().zip(&expected).filter(|(a, b)| a != b).count();
                assert_eq!(
                    differing,
                    0,
                    "{key}: {differing} of {} codes differ",
                    codes.len()
                );
            }
            StateBuffer::F32(v) => {
                let reference = f32s(value);
                assert!(rel_diff(v, &reference) <= 1e-6, "{key}");
            }
        }
    }
    // Small tensors keep f32 moments, the 4113-element one 8-bit codes.
    assert!(matches!(
        state.buffers["g0.p0.exp_avg"],
        StateBuffer::F32(_)
    ));
    assert!(matches!(state.buffers["g0.p1.state1"], StateBuffer::U8(_)));
    // The real bitsandbytes CPU backend (lookup-table quantiser, decay before the step) lands close by.
    let cpu = &case["bnb_cpu"];
    let recorded = cpu["max_rel_diff_to_reference"].as_f64().unwrap();
    let params = groups.iter().flat_map(|g| g.params.iter());
    for (p, reference) in params.zip(cpu["params"].as_array().unwrap()) {
        let r = rel_diff(&p.value, &f32s(reference));
        assert!(
            r <= 1e-2,
            "{}: {r:e} from bitsandbytes' CPU backend",
            p.name
        );
        assert!(
            r <= recorded * 1.01 + 1e-6,
            "{}: {r:e}, the transcription was {recorded:e} away",
            p.name
        );
    }
}

#[test]
fn dynamic_maps_are_bitsandbytes() {
    let case = fixture("adamw8bit.json");
    for (signed, key) in [(true, "signed"), (false, "unsigned")] {
        let ours = dynamic_map(signed);
        let reference = f32s(&case["maps"][key]);
        assert_eq!(
            ours.map(f32::to_bits).to_vec(),
            reference.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert!(ours.windows(2).all(|w| w[0] <= w[1]), "{key} map sorted");
    }
}

#[test]
fn adafactor_matches_transformers() {
    for name in [
        "adafactor.json",
        "adafactor_beta1_wd.json",
        "adafactor_relative.json",
        "adafactor_warmup_init.json",
    ] {
        run_case(name, "steps", 1e-6);
    }
}

#[test]
fn dadapt_adam_matches_dadaptation() {
    run_case("dadapt_adam.json", "steps", 1e-6);
    run_case("dadapt_adam_coupled.json", "steps", 1e-6);
}

#[test]
fn prodigy_matches_prodigyopt() {
    run_case("prodigy.json", "steps", 1e-6);
    run_case("prodigy_variants.json", "steps", 1e-6);
}

#[test]
fn schedules_match_transformers() {
    let doc = fixture("schedules.json");
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let sched = LrSchedule::from_kohya(
            name,
            case["warmup"].as_u64().unwrap(),
            case["total"].as_u64().unwrap(),
            case["num_cycles"].as_u64().unwrap() as u32,
            case["power"].as_f64().unwrap(),
            case["learning_rate"].as_f64().unwrap(),
        )
        .unwrap();
        let bases: Vec<f64> = case["group_lrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let rows = case["rows"].as_array().unwrap();
        for row in rows {
            let row: Vec<f64> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let step = row[0] as u64;
            for (base, lr) in bases.iter().zip(&row[1..]) {
                let ours = base * sched.factor(step);
                assert!(
                    (ours - lr).abs() <= 1e-7 * base,
                    "{name} {case}: step {step}: {ours} vs {lr}"
                );
            }
        }
        println!(
            "{name} warmup {} total {}: {} steps checked",
            case["warmup"],
            case["total"],
            rows.len()
        );
    }
}

/// Resuming from the saved bytes continues exactly as the uninterrupted run, for every optimizer.
#[test]
fn state_round_trip_resumes_identically() {
    for name in [
        "adamw.json",
        "adamw8bit.json",
        "adafactor_beta1_wd.json",
        "adafactor_relative.json",
        "dadapt_adam.json",
        "prodigy_variants.json",
    ] {
        let case = fixture(name);
        let config =
            OptimizerConfig::from_kohya(case["optimizer"].as_str().unwrap(), &args_of(&case))
                .unwrap();
        let schedule = schedule_of(&case);
        let factor = |s: u32| schedule.map_or(1.0, |sc| sc.factor(u64::from(s)));
        let run = |groups: &mut Vec<ParamGroup>,
                   opt: &mut Box<dyn loraeval::train::optim::Optimizer>,
                   steps: std::ops::Range<u32>| {
            for s in steps {
                set_grads(&case, groups, s);
                clip_grad_norm(groups, 1.0);
                opt.step(groups, factor(s)).unwrap();
            }
        };
        let mut straight = groups_of(&case);
        let mut opt = config.build().unwrap();
        run(&mut straight, &mut opt, 0..10);

        let mut resumed = groups_of(&case);
        let mut first = config.build().unwrap();
        run(&mut resumed, &mut first, 0..6);
        let bytes = first.state().to_bytes().unwrap();
        let mut second = config.build().unwrap();
        second
            .load_state(&OptimizerState::from_bytes(&bytes).unwrap())
            .unwrap();
        assert_eq!(second.steps(), first.steps(), "{name}");
        assert_eq!(
            second.state(),
            first.state(),
            "{name}: state changed by the round trip"
        );
        drop(first);
        run(&mut resumed, &mut second, 6..10);
        assert_eq!(straight, resumed, "{name}: resumed run differs");
        assert_eq!(opt.state(), second.state(), "{name}: states differ");
    }
}
