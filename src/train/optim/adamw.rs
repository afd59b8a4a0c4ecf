//! `torch.optim.AdamW` (single-tensor path): decoupled weight decay `p ← p·(1 − lr·wd)`, moments by `lerp` and
//! `addcmul`, bias corrections in f64, `p ← p − lr/bc1 · m / (√v/√bc2 + eps)`.

use rayon::prelude::*;

use super::{
    check_layout, check_lens, check_range, init_states, load_per_param, save_layout, state_key,
    OptimError, Optimizer, OptimizerState, ParamGroup, StepReport,
};

/// AdamW's settings (torch's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

impl AdamWConfig {
    pub(crate) fn validate(&self) -> Result<(), OptimError> {
        check_range("beta1", self.betas.0, 0.0, 1.0)?;
        check_range("beta2", self.betas.1, 0.0, 1.0)?;
        check_range("eps", self.eps, 0.0, f64::INFINITY)?;
        check_range("weight_decay", self.weight_decay, 0.0, f64::INFINITY)
    }
}

/// First and second moments of one parameter.
#[derive(Debug, Clone)]
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

/// `torch.optim.AdamW`.
#[derive(Debug, Clone)]
pub struct AdamW {
    config: AdamWConfig,
    step: u64,
    states: Vec<Vec<Moments>>,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Result<Self, OptimError> {
        config.validate()?;
        Ok(Self {
            config,
            step: 0,
            states: Vec::new(),
        })
    }
}

/// The per-step scalars of one group, cast as torch casts them.
#[derive(Debug, Clone, Copy)]
struct Scalars {
    decay: f32,
    w1: f32,
    b2: f32,
    one_minus_b2: f32,
    bc2_sqrt: f32,
    eps: f32,
    neg_step_size: f32,
}

impl Scalars {
    fn new(c: &AdamWConfig, lr: f64, wd: f64, step: u64) -> Self {
        let (b1, b2) = c.betas;
        let t = step as f64;
        let bc1 = 1.0 - b1.powf(t);
        let bc2 = 1.0 - b2.powf(t);
        Self {
            decay: (1.0 - lr * wd) as f32,
            w1: (1.0 - b1) as f32,
            b2: b2 as f32,
            one_minus_b2: (1.0 - b2) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            eps: c.eps as f32,
            neg_step_size: (-(lr / bc1)) as f32,
        }
    }
}

/// torch's `lerp(a, b, w)` on f32.
pub(crate) fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        a + w * (b - a)
    } else {
        b - (b - a) * (1.0 - w)
    }
}

fn update(p: &mut [f32], g: &[f32], s: &mut Moments, k: Scalars, decay: bool) {
    for i in 0..p.len() {
        if decay {
            p[i] *= k.decay;
        }
        s.m[i] = lerp(s.m[i], g[i], k.w1);
        s.v[i] = s.v[i] * k.b2 + k.one_minus_b2 * g[i] * g[i];
        let denom = s.v[i].sqrt() / k.bc2_sqrt + k.eps;
        p[i] += k.neg_step_size * (s.m[i] / denom);
    }
}

impl Optimizer for AdamW {
    fn name(&self) -> &'static str {
        "AdamW"
    }

    fn step(
        &mut self,
        groups: &mut [ParamGroup],
        lr_factor: f64,
    ) -> Result<StepReport, OptimError> {
        check_layout(groups, &self.states, |s| s.m.len())?;
        init_states(groups, &mut self.states, |p| Moments {
            m: vec![0.0; p.value.len()],
            v: vec![0.0; p.value.len()],
        });
        self.step += 1;
        let mut lrs = Vec::with_capacity(groups.len());
        for (group, states) in groups.iter_mut().zip(&mut self.states) {
            let lr = group.lr * lr_factor;
            let wd = group.weight_decay.unwrap_or(self.config.weight_decay);
            let k = Scalars::new(&self.config, lr, wd, self.step);
            group
                .params
                .par_iter_mut()
                .zip(states.par_iter_mut())
                .for_each(|(p, s)| update(&mut p.value, &p.grad, s, k, wd != 0.0));
            lrs.push(lr);
        }
        Ok(StepReport { lrs })
    }

    fn steps(&self) -> u64 {
        self.step
    }

    fn state(&self) -> OptimizerState {
        let mut st = OptimizerState::new(self.name());
        st.set_scalar("step", self.step as f64);
        save_layout(&mut st, &self.states);
        for (gi, states) in self.states.iter().enumerate() {
            for (pi, s) in states.iter().enumerate() {
                st.set_f32(state_key(gi, pi, "exp_avg"), &s.m);
                st.set_f32(state_key(gi, pi, "exp_avg_sq"), &s.v);
            }
        }
        st
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        state.expect_kind(self.name())?;
        self.step = state.scalar("step")? as u64;
        self.states = load_per_param(state, |gi, pi| {
            let m = state.f32(&state_key(gi, pi, "exp_avg"))?;
            let v = state.f32(&state_key(gi, pi, "exp_avg_sq"))?;
            check_lens(gi, pi, &[("exp_avg", m.len()), ("exp_avg_sq", v.len())])?;
            Ok(Moments { m, v })
        })?;
        Ok(())
    }
}
