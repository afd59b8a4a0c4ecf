//! kohya's side of the optimizers: `--optimizer_type`/`--optimizer_args` parsing, the errors on settings the
//! references refuse, the seed guide's face settings (rank 128, alpha 64, AdamW8bit, cosine with 3-5 restarts over
//! 3000-5000 steps), gradient clipping and the 8-bit code search.

use loraeval::train::optim::{
    clip_grad_norm, dynamic_map, quantize_code, AdafactorConfig, LrSchedule, OptimError,
    OptimizerConfig, OptimizerState, Param, ParamGroup, ScheduleKind, StateBuffer,
};

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A small deterministic sequence in [-1, 1).
fn wave(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 * 0.618 + seed as f32 * 0.37).sin() * 0.999)
        .collect()
}

fn group(name: &str, lr: f64, shapes: &[Vec<usize>]) -> ParamGroup {
    let params = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = s.iter().product();
            let mut p = Param::new(format!("{name}.{i}"), s.clone(), wave(n, i as u32));
            p.grad = wave(n, 100 + i as u32);
            p
        })
        .collect();
    ParamGroup::new(name, lr, params)
}

#[test]
fn kohya_optimizer_args_parse() {
    let c = OptimizerConfig::from_kohya(
        "AdamW8bit",
        &args(&["weight_decay=0.1", "betas=0.9,0.99", "eps=1e-6"]),
    )
    .unwrap();
    let OptimizerConfig::AdamW8bit(c) = c else {
        panic!("{c:?}")
    };
    assert_eq!(
        (c.weight_decay, c.betas, c.eps, c.block_size),
        (0.1, (0.9, 0.99), 1e-6, 256)
    );

    let c = OptimizerConfig::from_kohya("adamw", &[]).unwrap();
    assert_eq!(c, OptimizerConfig::AdamW(Default::default()));
    assert_eq!(
        OptimizerConfig::from_kohya("", &[]).unwrap().name(),
        "AdamW"
    );

    let kohya_face = args(&[
        "scale_parameter=False",
        "relative_step=False",
        "warmup_init=False",
    ]);
    let OptimizerConfig::Adafactor(a) =
        OptimizerConfig::from_kohya("Adafactor", &kohya_face).unwrap()
    else {
        panic!()
    };
    assert!(!a.scale_parameter && !a.relative_step && !a.warmup_init && a.beta1.is_none());
    // kohya turns relative_step on when warmup_init asks for it.
    let c = OptimizerConfig::from_kohya(
        "Adafactor",
        &args(&["relative_step=False", "warmup_init=True"]),
    )
    .unwrap();
    assert!(matches!(
        c,
        OptimizerConfig::Adafactor(AdafactorConfig {
            relative_step: true,
            ..
        })
    ));

    let c =
        OptimizerConfig::from_kohya("DAdaptAdam", &args(&["decouple=True", "weight_decay=0.01"]))
            .unwrap();
    let OptimizerConfig::DAdaptAdam(d) = c else {
        panic!()
    };
    assert!(d.decouple && d.weight_decay == 0.01);

    let p = args(&[
        "d_coef=2",
        "safeguard_warmup=True",
        "beta3=None",
        "slice_p=11",
        "growth_rate=float('inf')",
    ]);
    let OptimizerConfig::Prodigy(p) = OptimizerConfig::from_kohya("prodigy", &p).unwrap() else {
        panic!()
    };
    assert_eq!(
        (p.d_coef, p.safeguard_warmup, p.beta3, p.slice_p),
        (2.0, true, None, 11)
    );
    assert!(p.growth_rate.is_infinite());
}

#[test]
fn kohya_optimizer_args_errors_name_the_value() {
    let err = OptimizerConfig::from_kohya("Lion8bit", &[]).unwrap_err();
    assert!(
        matches!(&err, OptimError::UnknownOptimizer(n) if n == "Lion8bit"),
        "{err}"
    );
    for bad in [
        "weight_decay",
        "weight_decay=abc",
        "relative_step=1.5e",
        "momentum=0.9",
        "betas=0.9",
    ] {
        let err = OptimizerConfig::from_kohya("AdamW", &args(&[bad])).unwrap_err();
        assert!(
            matches!(&err, OptimError::BadArg { arg, .. } if arg == bad),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains(bad), "{err}");
    }
    let err = OptimizerConfig::from_kohya("Adafactor", &args(&["relative_step=0.5"])).unwrap_err();
    assert!(err.to_string().contains("True or False"), "{err}");
}

#[test]
fn references_refusals_are_errors() {
    let warm = AdafactorConfig {
        relative_step: false,
        warmup_init: true,
        ..Default::default()
    };
    assert!(matches!(
        OptimizerConfig::Adafactor(warm).build(),
        Err(OptimError::Conflict(_))
    ));

    // DAdaptAdam and Prodigy: one lr for all groups, or 0 for a frozen group.
    for name in ["DAdaptAdam", "Prodigy"] {
        let mut opt = OptimizerConfig::from_kohya(name, &[])
            .unwrap()
            .build()
            .unwrap();
        let mut groups = vec![
            group("unet", 1.0, &[vec![4, 3]]),
            group("te", 0.5, &[vec![5]]),
        ];
        let err = opt.step(&mut groups, 1.0).unwrap_err();
        assert!(
            matches!(&err, OptimError::MixedLr { group, lr, .. } if group == "te" && *lr == 0.5),
            "{err}"
        );
        groups[1].lr = 0.0;
        opt.step(&mut groups, 1.0).unwrap();
    }

    let mut opt = OptimizerConfig::from_kohya("AdamW", &[])
        .unwrap()
        .build()
        .unwrap();
    let mut groups = vec![group("unet", 1e-3, &[vec![4, 3]])];
    groups[0].params[0].grad.pop();
    let err = opt.step(&mut groups, 1.0).unwrap_err();
    assert!(
        matches!(
            err,
            OptimError::Length {
                got: 11,
                expected: 12,
                ..
            }
        ),
        "{err}"
    );
    groups[0].params[0].grad.push(0.0);
    opt.step(&mut groups, 1.0).unwrap();
    groups.push(group("te", 1e-3, &[vec![2]]));
    assert!(matches!(
        opt.step(&mut groups, 1.0),
        Err(OptimError::Layout(_))
    ));

    let other = OptimizerState::new("Prodigy");
    let err = opt.load_state(&other).unwrap_err();
    assert!(
        matches!(&err, OptimError::Kind { found, expected } if found == "Prodigy" && expected == "AdamW")
    );
    assert!(OptimizerState::from_bytes(b"not a state").is_err());
}

#[test]
fn schedule_refusals_and_restarts() {
    assert!(matches!(
        LrSchedule::from_kohya("constant", 10, 100, 1, 1.0, 1e-4),
        Err(OptimError::Conflict(_))
    ));
    assert!(matches!(
        LrSchedule::from_kohya("cosine_annealing", 0, 100, 1, 1.0, 1e-4),
        Err(OptimError::UnknownScheduler(_))
    ));
    assert!(matches!(
        LrSchedule::from_kohya("polynomial", 0, 100, 1, 1.0, 1e-8),
        Err(OptimError::Conflict(_))
    ));

    // The face settings: 3-5 restarts over 3000-5000 steps; each cycle starts at 1 and falls to near 0.
    for (steps, cycles, warmup) in [(3000u64, 3u32, 0u64), (4000, 4, 100), (5000, 5, 250)] {
        let s = LrSchedule::from_kohya("cosine_with_restarts", warmup, steps, cycles, 1.0, 1e-4)
            .unwrap();
        assert_eq!(
            s.kind,
            ScheduleKind::CosineWithRestarts { num_cycles: cycles }
        );
        let len = (steps - warmup) / u64::from(cycles);
        for c in 0..u64::from(cycles) {
            let start = warmup + c * len;
            assert!(
                (s.factor(start) - 1.0).abs() < 1e-12,
                "cycle {c} starts at 1"
            );
            assert!(
                s.factor(start + len - 1) < 1e-4,
                "cycle {c} ends near 0: {}",
                s.factor(start + len - 1)
            );
        }
        assert_eq!(s.factor(steps), 0.0);
        assert!((0..steps).all(|t| (0.0..=1.0).contains(&s.factor(t))));
    }
}

#[test]
fn clipping_scales_to_max_norm() {
    let mut groups = vec![
        group("unet", 1e-4, &[vec![8, 4], vec![9]]),
        group("te", 5e-5, &[vec![3, 3]]),
    ];
    let before: Vec<Vec<f32>> = groups
        .iter()
        .flat_map(|g| g.params.iter().map(|p| p.grad.clone()))
        .collect();
    let norm = clip_grad_norm(&mut groups, 1.0);
    let expect = before
        .iter()
        .flatten()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    assert!((f64::from(norm) - expect).abs() < 1e-5 * expect);
    let after = groups
        .iter()
        .flat_map(|g| g.params.iter())
        .flat_map(|p| p.grad.iter());
    let new_norm = after
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    assert!((new_norm - 1.0).abs() < 1e-5, "{new_norm}");
    // Under the limit the gradients stay as they are.
    let kept: Vec<f32> = groups[0].params[0].grad.clone();
    assert!(clip_grad_norm(&mut groups, 10.0) < 10.0);
    assert_eq!(groups[0].params[0].grad, kept);
}

#[test]
fn code_search_finds_the_nearest_code() {
    for signed in [true, false] {
        let map = dynamic_map(signed);
        let lo = if signed { map[0] } else { 0.0 };
        for i in 0..20_001 {
            let x = lo + (1.0 - lo) * i as f32 / 20_000.0;
            let code = quantize_code(&map, signed, x);
            let best = map
                .iter()
                .map(|m| (m - x).abs())
                .fold(f32::INFINITY, f32::min);
            // Ties (x on a midpoint) may go either way by a rounding of the midpoint.
            let slack = 2.0 * f32::EPSILON * x.abs();
            assert!(
                (map[code as usize] - x).abs() <= best + slack,
                "x {x}: code {code}"
            );
        }
    }
}

/// The seed guide's face settings run: a rank-128 LoRA's shapes (UNet attention and text encoder, alpha is not
/// trained), AdamW8bit with 8-bit states for every LoRA matrix, two lrs, clipping 1.0, cosine with 4 restarts.
#[test]
fn face_settings_adamw8bit_rank_128() {
    let unet = [
        vec![128, 320],
        vec![320, 128],
        vec![128, 768],
        vec![640, 128],
    ];
    let te = [vec![128, 768], vec![768, 128]];
    let mut groups = vec![group("unet", 1e-4, &unet), group("text_encoder", 5e-5, &te)];
    let targets: Vec<Vec<f32>> = groups
        .iter()
        .flat_map(|g| g.params.iter())
        .map(|p| p.value.iter().map(|v| v * 0.5).collect())
        .collect();
    let config =
        OptimizerConfig::from_kohya("AdamW8bit", &args(&["weight_decay=0.1", "betas=0.9,0.99"]))
            .unwrap();
    let mut opt = config.build().unwrap();
    let schedule = LrSchedule::from_kohya("cosine_with_restarts", 0, 4000, 4, 1.0, 1e-4).unwrap();
    let loss = |groups: &[ParamGroup]| -> f64 {
        let values = groups
            .iter()
            .flat_map(|g| g.params.iter())
            .map(|p| &p.value);
        values
            .zip(&targets)
            .map(|(v, t)| {
                v.iter()
                    .zip(t)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
            })
            .sum()
    };
    let start = loss(&groups);
    for step in 0..40 {
        for (p, t) in groups
            .iter_mut()
            .flat_map(|g| g.params.iter_mut())
            .zip(&targets)
        {
            p.grad = p.value.iter().zip(t).map(|(v, t)| 2.0 * (v - t)).collect();
        }
        clip_grad_norm(&mut groups, 1.0);
        let report = opt.step(&mut groups, schedule.factor(step)).unwrap();
        assert_eq!(
            report.lrs,
            vec![1e-4 * schedule.factor(step), 5e-5 * schedule.factor(step)]
        );
    }
    let end = loss(&groups);
    assert!(end < start * 0.99, "loss {start} -> {end}");
    assert!(groups
        .iter()
        .flat_map(|g| g.params.iter())
        .all(|p| p.value.iter().all(|v| v.is_finite())));
    let state = opt.state();
    for (key, buffer) in &state.buffers {
        if key.ends_with("state1") || key.ends_with("state2") {
            assert!(matches!(buffer, StateBuffer::U8(_)), "{key}");
        }
    }
    assert_eq!(
        state
            .buffers
            .keys()
            .filter(|k| k.ends_with("state1"))
            .count(),
        unet.len() + te.len()
    );
}

/// A saved state that does not fit the parameters (another shape of the same size, another `slice_p`, a
/// damaged absmax) is refused instead of misread.
#[test]
fn mismatched_states_are_refused() {
    let mut groups = vec![group("unet", 1e-3, &[vec![4, 3]])];
    let mut opt = OptimizerConfig::from_kohya("Adafactor", &args(&["relative_step=False"]))
        .unwrap()
        .build()
        .unwrap();
    opt.step(&mut groups, 1.0).unwrap();
    let saved = opt.state();
    let mut other = OptimizerConfig::from_kohya("Adafactor", &args(&["relative_step=False"]))
        .unwrap()
        .build()
        .unwrap();
    other.load_state(&saved).unwrap();
    let mut transposed = vec![group("unet", 1e-3, &[vec![3, 4]])];
    assert!(matches!(
        other.step(&mut transposed, 1.0),
        Err(OptimError::Layout(_))
    ));

    let mut groups = vec![group("unet", 1.0, &[vec![10]])];
    let mut opt = OptimizerConfig::from_kohya("Prodigy", &args(&["slice_p=3"]))
        .unwrap()
        .build()
        .unwrap();
    opt.step(&mut groups, 1.0).unwrap();
    let mut other = OptimizerConfig::from_kohya("Prodigy", &[])
        .unwrap()
        .build()
        .unwrap();
    other.load_state(&opt.state()).unwrap();
    assert!(matches!(
        other.step(&mut groups, 1.0),
        Err(OptimError::Layout(_))
    ));

    let mut groups = vec![group("unet", 1e-3, &[vec![64, 80]])];
    let mut opt = OptimizerConfig::from_kohya("AdamW8bit", &[])
        .unwrap()
        .build()
        .unwrap();
    opt.step(&mut groups, 1.0).unwrap();
    let mut state = opt.state();
    assert!(matches!(&state.buffers["g0.p0.absmax1"], StateBuffer::F32(a) if a.len() == 20));
    state
        .buffers
        .insert("g0.p0.absmax1".into(), StateBuffer::F32(vec![0.0; 19]));
    let err = opt.load_state(&state).unwrap_err();
    assert!(
        matches!(&err, OptimError::State(m) if m.contains("absmax1")),
        "{err}"
    );
}

/// `quantize_2D<SIGNED>` of bitsandbytes' `csrc/kernels.cu`, line by line (the quadrant lookups are the map's
/// entries 63, 127 and 191).
fn quantize_2d_literal(map: &[f32; 256], signed: bool, x: f32) -> u8 {
    let (mut pivot, mut upper_pivot, mut lower_pivot) = (127i32, 255i32, 0i32);
    let (mut lower, mut upper) = (if signed { -1.0f32 } else { 0.0 }, 1.0f32);
    let mut val = map[127];
    let mut i = 64;
    while i > 0 {
        if x > val {
            lower_pivot = pivot;
            lower = val;
            pivot += i;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= i;
        }
        val = map[pivot as usize];
        i >>= 1;
    }
    let code = if x > val {
        if x > (upper + val) * 0.5 {
            upper_pivot
        } else {
            pivot
        }
    } else if x < (lower + val) * 0.5 {
        lower_pivot
    } else {
        pivot
    };
    code as u8
}

#[test]
fn code_search_is_the_kernels_search() {
    for signed in [true, false] {
        let map = dynamic_map(signed);
        let mut xs: Vec<f32> = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1.0,
            -1.0,
            2.0,
            -2.0,
        ];
        // Every entry, its neighbours in f32 and the midpoints between entries.
        for w in map.windows(2) {
            let mid = (w[0] + w[1]) * 0.5;
            for v in [w[0], mid] {
                xs.extend([
                    v,
                    f32::from_bits(v.to_bits() + 1),
                    f32::from_bits(v.to_bits().saturating_sub(1)),
                ]);
            }
        }
        xs.extend((0..200_000).map(|i| (i as f32 * 0.000_01 - 1.0) * 1.001));
        for x in xs {
            assert_eq!(
                quantize_code(&map, signed, x),
                quantize_2d_literal(&map, signed, x),
                "x {x:e} signed {signed}"
            );
        }
    }
}
