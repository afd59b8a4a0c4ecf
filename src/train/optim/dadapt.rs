//! `dadaptation.DAdaptAdam` (dadaptation 3.2): Adam whose step size `d·lr` adapts D from the weighted sum of
//! `⟨g, s/(√v + eps)⟩` over the L1 norm of `s`, an EMA of `dlr·g`. The moments carry `dlr`, so the parameter step
//! is `p ← p − m/(√v + eps)`. Every group must have the largest lr or 0 (frozen: its moments stay, its
//! parameters still move by them).

use rayon::prelude::*;

use super::reduce::{dot, sum_abs};
use super::{
    check_layout, check_lens, check_range, init_states, load_per_param, save_layout, state_key,
    OptimError, Optimizer, OptimizerState, ParamGroup, StepReport,
};

/// DAdaptAdam's settings (the package's defaults; kohya users often add `decouple=True weight_decay=0.01`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DAdaptAdamConfig {
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW-style weight decay instead of adding `wd·p` to the gradient.
    pub decouple: bool,
    pub use_bias_correction: bool,
    pub d0: f64,
    pub growth_rate: f64,
}

impl Default for DAdaptAdamConfig {
    fn default() -> Self {
        Self {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decouple: false,
            use_bias_correction: false,
            d0: 1e-6,
            growth_rate: f64::INFINITY,
        }
    }
}

/// Per-tensor state.
#[derive(Debug, Clone)]
struct Moments {
    s: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// `dadaptation.DAdaptAdam`.
#[derive(Debug, Clone)]
pub struct DAdaptAdam {
    config: DAdaptAdamConfig,
    d: f64,
    k: u64,
    numerator_weighted: f64,
    states: Vec<Vec<Moments>>,
}

/// The f32 scalars of the first pass.
#[derive(Debug, Clone, Copy)]
struct Pass1 {
    wd: f32,
    coupled: bool,
    active: bool,
    eps: f32,
    b1: f32,
    m_alpha: f32,
    b2: f32,
    one_minus_b2: f32,
    sqrt_b2: f32,
    s_alpha: f32,
}

impl DAdaptAdam {
    pub fn new(config: DAdaptAdamConfig) -> Result<Self, OptimError> {
        check_range("d0", config.d0, f64::MIN_POSITIVE, f64::INFINITY)?;
        check_range("eps", config.eps, f64::MIN_POSITIVE, f64::INFINITY)?;
        check_range("beta1", config.betas.0, 0.0, 1.0)?;
        check_range("beta2", config.betas.1, 0.0, 1.0)?;
        Ok(Self {
            config,
            d: config.d0,
            k: 0,
            numerator_weighted: 0.0,
            states: Vec::new(),
        })
    }

    /// The current D estimate.
    pub fn d(&self) -> f64 {
        self.d
    }
}

/// Gradient decay, the numerator term, moment and `s` updates of one tensor; returns (numerator term, Σ|s|).
fn pass1(p: &[f32], g: &mut [f32], st: &mut Moments, k: &Pass1) -> (f64, f64) {
    if k.coupled {
        g.iter_mut().zip(p).for_each(|(g, p)| *g += k.wd * *p);
    }
    if !k.active {
        return (0.0, 0.0);
    }
    let ratio: Vec<f32> =
        st.s.iter()
            .zip(&st.v)
            .map(|(s, v)| s / (v.sqrt() + k.eps))
            .collect();
    let num = dot(g, &ratio);
    let moments = st.m.iter_mut().zip(st.v.iter_mut()).zip(st.s.iter_mut());
    for (((m, v), s), &g) in moments.zip(g.iter()) {
        *m = *m * k.b1 + k.m_alpha * g;
        *v = *v * k.b2 + k.one_minus_b2 * g * g;
        *s = *s * k.sqrt_b2 + k.s_alpha * g;
    }
    (num, sum_abs(&st.s))
}

/// The parameter step: optional decoupled decay, then `p ← p − m/(√v + eps)`.
fn pass2(p: &mut [f32], st: &Moments, eps: f32, decay_alpha: Option<f32>) {
    for ((p, m), v) in p.iter_mut().zip(&st.m).zip(&st.v) {
        let denom = v.sqrt() + eps;
        if let Some(a) = decay_alpha {
            *p += a * *p;
        }
        *p += -(m / denom);
    }
}

/// The largest group lr, after checking that every group has it or 0.
pub(crate) fn common_lr(
    optimizer: &'static str,
    groups: &[ParamGroup],
    factor: f64,
) -> Result<f64, OptimError> {
    let max = groups
        .iter()
        .map(|g| g.lr * factor)
        .fold(f64::NEG_INFINITY, f64::max);
    for g in groups {
        let lr = g.lr * factor;
        if lr != max && lr != 0.0 {
            return Err(OptimError::MixedLr {
                optimizer,
                group: g.name.clone(),
                lr,
                max,
            });
        }
    }
    Ok(max)
}

/// Adam's bias correction of the step size when `use_bias_correction` is on, else 1.
fn bias_correction(c: &DAdaptAdamConfig, k: u64) -> f64 {
    let (b1, b2) = c.betas;
    let kp1 = (k + 1) as f64;
    if c.use_bias_correction {
        (1.0 - b2.powf(kp1)).sqrt() / (1.0 - b1.powf(kp1))
    } else {
        1.0
    }
}

impl DAdaptAdam {
    /// The first pass over every group; returns (Σ dlr·⟨g, s/(√v + eps)⟩, Σ|s|).
    fn gather(
        &self,
        groups: &mut [ParamGroup],
        states: &mut [Vec<Moments>],
        lr_factor: f64,
        dlr: f64,
    ) -> (f64, f64) {
        let (mut numerator, mut sk_l1) = (0.0, 0.0);
        for (group, st) in groups.iter_mut().zip(states) {
            let k = self.pass1_scalars(group, group.lr * lr_factor, dlr);
            let parts: Vec<(f64, f64)> = group
                .params
                .par_iter_mut()
                .zip(st.par_iter_mut())
                .map(|(p, s)| pass1(&p.value, &mut p.grad, s, &k))
                .collect();
            for (num, l1) in parts {
                numerator += dlr * num;
                sk_l1 += l1;
            }
        }
        (numerator, sk_l1)
    }

    /// The parameter step of every group (decoupled decay with this step's `dlr`).
    fn apply(&self, groups: &mut [ParamGroup], states: &[Vec<Moments>], dlr: f64) {
        let c = &self.config;
        for (group, st) in groups.iter_mut().zip(states) {
            let wd = group.weight_decay.unwrap_or(c.weight_decay);
            let decay = (wd != 0.0 && c.decouple).then_some((-wd * dlr) as f32);
            let eps = c.eps as f32;
            group
                .params
                .par_iter_mut()
                .zip(st.par_iter())
                .for_each(|(p, s)| pass2(&mut p.value, s, eps, decay));
        }
    }

    /// Each group's `d·lr`, as kohya logs it.
    fn report(&self, groups: &[ParamGroup], lr_factor: f64) -> StepReport {
        StepReport {
            lrs: groups.iter().map(|g| self.d * g.lr * lr_factor).collect(),
        }
    }

    fn pass1_scalars(&self, group: &ParamGroup, lr: f64, dlr: f64) -> Pass1 {
        let c = &self.config;
        let (b1, b2) = c.betas;
        let sqrt_b2 = b2.sqrt();
        let wd = group.weight_decay.unwrap_or(c.weight_decay);
        Pass1 {
            wd: wd as f32,
            coupled: wd != 0.0 && !c.decouple,
            active: lr > 0.0,
            eps: c.eps as f32,
            b1: b1 as f32,
            m_alpha: (dlr * (1.0 - b1)) as f32,
            b2: b2 as f32,
            one_minus_b2: (1.0 - b2) as f32,
            sqrt_b2: sqrt_b2 as f32,
            s_alpha: (dlr * (1.0 - sqrt_b2)) as f32,
        }
    }
}

impl Optimizer for DAdaptAdam {
    fn name(&self) -> &'static str {
        "DAdaptAdam"
    }

    fn step(
        &mut self,
        groups: &mut [ParamGroup],
        lr_factor: f64,
    ) -> Result<StepReport, OptimError> {
        check_layout(groups, &self.states, |s| s.m.len())?;
        let lr = common_lr(self.name(), groups, lr_factor)?;
        init_states(groups, &mut self.states, |p| Moments {
            s: vec![0.0; p.value.len()],
            m: vec![0.0; p.value.len()],
            v: vec![0.0; p.value.len()],
        });
        let c = self.config;
        let dlr = self.d * lr * bias_correction(&c, self.k);
        let sqrt_b2 = c.betas.1.sqrt();
        let mut states = std::mem::take(&mut self.states);
        let (numerator, sk_l1) = self.gather(groups, &mut states, lr_factor, dlr);
        let numerator_weighted = sqrt_b2 * self.numerator_weighted + (1.0 - sqrt_b2) * numerator;
        if sk_l1 == 0.0 {
            self.states = states;
            return Ok(self.report(groups, lr_factor));
        }
        if lr > 0.0 {
            let d_hat = numerator_weighted / ((1.0 - sqrt_b2) * sk_l1);
            self.d = self.d.max(d_hat.min(self.d * c.growth_rate));
        }
        self.numerator_weighted = numerator_weighted;
        self.apply(groups, &states, dlr);
        self.states = states;
        self.k += 1;
        Ok(self.report(groups, lr_factor))
    }

    fn steps(&self) -> u64 {
        self.k
    }

    fn state(&self) -> OptimizerState {
        let mut st = OptimizerState::new(self.name());
        st.set_scalar("d", self.d);
        st.set_scalar("k", self.k as f64);
        st.set_scalar("numerator_weighted", self.numerator_weighted);
        save_layout(&mut st, &self.states);
        for (gi, states) in self.states.iter().enumerate() {
            for (pi, s) in states.iter().enumerate() {
                st.set_f32(state_key(gi, pi, "s"), &s.s);
                st.set_f32(state_key(gi, pi, "exp_avg"), &s.m);
                st.set_f32(state_key(gi, pi, "exp_avg_sq"), &s.v);
            }
        }
        st
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        state.expect_kind(self.name())?;
        let (d, k, nw) = (
            state.scalar("d")?,
            state.scalar("k")?,
            state.scalar("numerator_weighted")?,
        );
        self.states = load_per_param(state, |gi, pi| {
            let st = Moments {
                s: state.f32(&state_key(gi, pi, "s"))?,
                m: state.f32(&state_key(gi, pi, "exp_avg"))?,
                v: state.f32(&state_key(gi, pi, "exp_avg_sq"))?,
            };
            let lens = [
                ("s", st.s.len()),
                ("exp_avg", st.m.len()),
                ("exp_avg_sq", st.v.len()),
            ];
            check_lens(gi, pi, &lens)?;
            Ok(st)
        })?;
        (self.d, self.k, self.numerator_weighted) = (d, k as u64, nw);
        Ok(())
    }
}
