//! `prodigyopt.Prodigy` (prodigyopt 1.1.2): Adam with the D-adapted step `d·lr`, D estimated from
//! `⟨g, p₀ − p⟩` (weighted by `d/d0·dlr`) over the L1 norm of `s`, taken on every `slice_p`-th element. The
//! moments carry `d`, the denominator is `√v + d·eps`, the step `p ← p − dlr·m/denom`. Every group must have the
//! largest lr or 0.

use rayon::prelude::*;

use super::dadapt::common_lr;
use super::reduce::sum_abs;
use super::{
    check_fit, check_layout, check_range, load_per_param, save_layout, state_key, OptimError,
    Optimizer, OptimizerState, Param, ParamGroup, StepReport,
};

/// Prodigy's settings (the package's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProdigyConfig {
    pub betas: (f64, f64),
    /// Decay of the D estimate's sums; `None` is `√beta2`.
    pub beta3: Option<f64>,
    pub eps: f64,
    pub weight_decay: f64,
    pub decouple: bool,
    pub use_bias_correction: bool,
    pub safeguard_warmup: bool,
    pub d0: f64,
    pub d_coef: f64,
    pub growth_rate: f64,
    pub slice_p: usize,
}

impl Default for ProdigyConfig {
    fn default() -> Self {
        Self {
            betas: (0.9, 0.999),
            beta3: None,
            eps: 1e-8,
            weight_decay: 0.0,
            decouple: true,
            use_bias_correction: false,
            safeguard_warmup: false,
            d0: 1e-6,
            d_coef: 1.0,
            growth_rate: f64::INFINITY,
            slice_p: 1,
        }
    }
}

/// Per-tensor state: `s` and `p0` hold every `slice_p`-th element; `m` is empty when `beta1` is 0.
#[derive(Debug, Clone)]
struct Moments {
    s: Vec<f32>,
    p0: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// `prodigyopt.Prodigy`.
#[derive(Debug, Clone)]
pub struct Prodigy {
    config: ProdigyConfig,
    d: f64,
    d_max: f64,
    d_numerator: f64,
    k: u64,
    states: Vec<Vec<Moments>>,
}

/// The scalars of the first pass.
#[derive(Debug, Clone, Copy)]
struct Pass1 {
    wd: f32,
    coupled: bool,
    active: bool,
    slice: usize,
    b1: f32,
    m_alpha: f32,
    b2: f32,
    v_value: f32,
    b3: f32,
    s_alpha: f32,
}

impl Prodigy {
    pub fn new(config: ProdigyConfig) -> Result<Self, OptimError> {
        check_range("d0", config.d0, f64::MIN_POSITIVE, f64::INFINITY)?;
        check_range("eps", config.eps, f64::MIN_POSITIVE, f64::INFINITY)?;
        check_range("beta1", config.betas.0, 0.0, 1.0)?;
        check_range("beta2", config.betas.1, 0.0, 1.0)?;
        check_range("slice_p", config.slice_p as f64, 1.0, f64::INFINITY)?;
        Ok(Self {
            config,
            d: config.d0,
            d_max: config.d0,
            d_numerator: 0.0,
            k: 0,
            states: Vec::new(),
        })
    }

    /// The current D estimate.
    pub fn d(&self) -> f64 {
        self.d
    }

    fn beta3(&self) -> f64 {
        self.config.beta3.unwrap_or(self.config.betas.1.sqrt())
    }

    /// Whether a (loaded) state has the sizes this parameter and `slice_p` ask for.
    fn fits(&self, p: &Param, s: &Moments) -> bool {
        let fresh = self.new_state(p);
        (s.s.len(), s.p0.len(), s.m.len()) == (fresh.s.len(), fresh.p0.len(), fresh.m.len())
    }

    fn new_state(&self, p: &Param) -> Moments {
        let sliced: Vec<f32> = p
            .value
            .iter()
            .step_by(self.config.slice_p)
            .copied()
            .collect();
        Moments {
            s: vec![0.0; sliced.len()],
            p0: sliced,
            m: if self.config.betas.0 > 0.0 {
                vec![0.0; p.value.len()]
            } else {
                Vec::new()
            },
            v: vec![0.0; p.value.len()],
        }
    }

    fn pass1_scalars(&self, group: &ParamGroup, lr: f64, dlr: f64) -> Pass1 {
        let c = &self.config;
        let (b1, b2) = c.betas;
        let d = self.d;
        let wd = group.weight_decay.unwrap_or(c.weight_decay);
        let s_alpha = if c.safeguard_warmup {
            (d / c.d0) * d
        } else {
            (d / c.d0) * dlr
        };
        Pass1 {
            wd: wd as f32,
            coupled: wd != 0.0 && !c.decouple,
            active: lr > 0.0,
            slice: c.slice_p,
            b1: b1 as f32,
            m_alpha: (d * (1.0 - b1)) as f32,
            b2: b2 as f32,
            v_value: (d * d * (1.0 - b2)) as f32,
            b3: self.beta3() as f32,
            s_alpha: s_alpha as f32,
        }
    }
}

/// Gradient decay, the numerator's dot product, moment and `s` updates; returns (⟨g, p0 − p⟩, Σ|s|).
fn pass1(p: &[f32], g: &mut [f32], st: &mut Moments, k: &Pass1) -> (f64, f64) {
    if k.coupled {
        g.iter_mut().zip(p).for_each(|(g, p)| *g += k.wd * *p);
    }
    if !k.active {
        return (0.0, 0.0);
    }
    let num: f64 = g
        .iter()
        .step_by(k.slice)
        .zip(p.iter().step_by(k.slice))
        .zip(&st.p0)
        .map(|((&g, &p), &p0)| f64::from(g) * f64::from(p0 - p))
        .sum();
    for (m, &g) in st.m.iter_mut().zip(g.iter()) {
        *m = *m * k.b1 + k.m_alpha * g;
    }
    for (v, &g) in st.v.iter_mut().zip(g.iter()) {
        *v = *v * k.b2 + k.v_value * g * g;
    }
    for (s, &g) in st.s.iter_mut().zip(g.iter().step_by(k.slice)) {
        *s = *s * k.b3 + k.s_alpha * g;
    }
    (num, sum_abs(&st.s))
}

/// The parameter step with denominator `√v + d·eps`.
fn pass2(p: &mut [f32], g: &[f32], st: &Moments, d_eps: f32, step: f32, decay_alpha: Option<f32>) {
    let num = if st.m.is_empty() { g } else { &st.m };
    for ((p, v), num) in p.iter_mut().zip(&st.v).zip(num) {
        let denom = v.sqrt() + d_eps;
        if let Some(a) = decay_alpha {
            *p += a * *p;
        }
        *p += step * (num / denom);
    }
}

impl Optimizer for Prodigy {
    fn name(&self) -> &'static str {
        "Prodigy"
    }

    fn step(
        &mut self,
        groups: &mut [ParamGroup],
        lr_factor: f64,
    ) -> Result<StepReport, OptimError> {
        check_layout(groups, &self.states, |s| s.v.len())?;
        let lr = common_lr(self.name(), groups, lr_factor)?;
        check_fit(groups, &self.states, |p, s| self.fits(p, s))?;
        if self.states.is_empty() {
            let fresh = groups
                .iter()
                .map(|g| g.params.iter().map(|p| self.new_state(p)).collect())
                .collect();
            self.states = fresh;
        }
        let dlr = self.d * lr * bias_correction(&self.config, self.k);
        let d_numerator = self.d_numerator * self.beta3();
        let mut states = std::mem::take(&mut self.states);
        let (delta, d_denom) = self.gather(groups, &mut states, lr_factor, dlr);
        if d_denom == 0.0 {
            self.states = states;
            return Ok(self.report(groups, lr_factor));
        }
        self.update_d(lr, d_numerator, delta, d_denom);
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
        st.set_scalar("d_max", self.d_max);
        st.set_scalar("d_numerator", self.d_numerator);
        st.set_scalar("k", self.k as f64);
        save_layout(&mut st, &self.states);
        for (gi, states) in self.states.iter().enumerate() {
            for (pi, s) in states.iter().enumerate() {
                st.set_f32(state_key(gi, pi, "s"), &s.s);
                st.set_f32(state_key(gi, pi, "p0"), &s.p0);
                st.set_f32(state_key(gi, pi, "exp_avg"), &s.m);
                st.set_f32(state_key(gi, pi, "exp_avg_sq"), &s.v);
            }
        }
        st
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        state.expect_kind(self.name())?;
        let scalars = [
            state.scalar("d")?,
            state.scalar("d_max")?,
            state.scalar("d_numerator")?,
            state.scalar("k")?,
        ];
        self.states = load_per_param(state, |gi, pi| {
            Ok(Moments {
                s: state.f32(&state_key(gi, pi, "s"))?,
                p0: state.f32(&state_key(gi, pi, "p0"))?,
                m: state.f32(&state_key(gi, pi, "exp_avg"))?,
                v: state.f32(&state_key(gi, pi, "exp_avg_sq"))?,
            })
        })?;
        let [d, d_max, d_numerator, k] = scalars;
        (self.d, self.d_max, self.d_numerator, self.k) = (d, d_max, d_numerator, k as u64);
        Ok(())
    }
}

/// Adam's bias correction of the step size when `use_bias_correction` is on, else 1.
fn bias_correction(c: &ProdigyConfig, k: u64) -> f64 {
    let (b1, b2) = c.betas;
    let kp1 = (k + 1) as f64;
    if c.use_bias_correction {
        (1.0 - b2.powf(kp1)).sqrt() / (1.0 - b1.powf(kp1))
    } else {
        1.0
    }
}

impl Prodigy {
    /// The first pass over every group; returns (Σ d/d0·dlr·⟨g, p0 − p⟩, Σ|s|).
    fn gather(
        &self,
        groups: &mut [ParamGroup],
        states: &mut [Vec<Moments>],
        lr_factor: f64,
        dlr: f64,
    ) -> (f64, f64) {
        let (mut delta, mut d_denom) = (0.0, 0.0);
        for (group, st) in groups.iter_mut().zip(states) {
            let k = self.pass1_scalars(group, group.lr * lr_factor, dlr);
            let parts: Vec<(f64, f64)> = group
                .params
                .par_iter_mut()
                .zip(st.par_iter_mut())
                .map(|(p, s)| pass1(&p.value, &mut p.grad, s, &k))
                .collect();
            for (num, l1) in parts {
                delta += (self.d / self.config.d0) * dlr * num;
                d_denom += l1;
            }
        }
        (delta, d_denom)
    }

    /// The new D estimate from the decayed numerator, this step's part of it and the denominator.
    fn update_d(&mut self, lr: f64, d_numerator: f64, delta: f64, d_denom: f64) {
        let c = &self.config;
        self.d_numerator = d_numerator;
        if lr > 0.0 {
            self.d_numerator = d_numerator + delta;
            let d_hat = c.d_coef * self.d_numerator / d_denom;
            if self.d == c.d0 {
                self.d = self.d.max(d_hat);
            }
            self.d_max = self.d_max.max(d_hat);
            self.d = self.d_max.min(self.d * c.growth_rate);
        }
    }

    /// The parameter step of every group with the step size `dlr` of this step.
    fn apply(&self, groups: &mut [ParamGroup], states: &[Vec<Moments>], dlr: f64) {
        let c = &self.config;
        let d_eps = (self.d * c.eps) as f32;
        let step = if c.betas.0 > 0.0 { -dlr } else { -dlr * self.d } as f32;
        for (group, st) in groups.iter_mut().zip(states) {
            let wd = group.weight_decay.unwrap_or(c.weight_decay);
            let decay = (wd != 0.0 && c.decouple).then_some((-wd * dlr) as f32);
            group
                .params
                .par_iter_mut()
                .zip(st.par_iter())
                .for_each(|(p, s)| pass2(&mut p.value, &p.grad, s, d_eps, step, decay));
        }
    }

    /// Each group's `d·lr`, as kohya logs it.
    fn report(&self, groups: &[ParamGroup], lr_factor: f64) -> StepReport {
        StepReport {
            lrs: groups.iter().map(|g| self.d * g.lr * lr_factor).collect(),
        }
    }
}
