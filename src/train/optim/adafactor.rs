//! `transformers.optimization.Adafactor`: second moments factored into row and column means for tensors of two
//! or more dimensions (over the last two axes), full for vectors; updates clipped to RMS `clip_threshold`; the
//! step size is the group's lr, or with `relative_step` `min(1e-2, 1/√t)` (`1e-6·t` instead of `1e-2` with
//! `warmup_init`), times `max(eps2, RMS(p))` with `scale_parameter`.
//!
//! kohya's usual face settings are `scale_parameter=False relative_step=False warmup_init=False` with an lr and a
//! schedule; in relative-step mode the group lrs and the schedule factor are not used (kohya's `adafactor`
//! scheduler only reports the optimizer's own rate).

use rayon::prelude::*;

use super::reduce::{mean, rms};
use super::{
    check_fit, check_layout, init_states, load_per_param, save_layout, state_key, OptimError,
    Optimizer, OptimizerState, Param, ParamGroup, StepReport,
};

/// Adafactor's settings (transformers' defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdafactorConfig {
    /// Regularisation of the squared gradient and the minimum parameter scale.
    pub eps: (f64, f64),
    pub clip_threshold: f64,
    pub decay_rate: f64,
    /// First-moment decay; `None` keeps no first moment.
    pub beta1: Option<f64>,
    pub weight_decay: f64,
    pub scale_parameter: bool,
    pub relative_step: bool,
    pub warmup_init: bool,
}

impl Default for AdafactorConfig {
    fn default() -> Self {
        Self {
            eps: (1e-30, 1e-3),
            clip_threshold: 1.0,
            decay_rate: -0.8,
            beta1: None,
            weight_decay: 0.0,
            scale_parameter: true,
            relative_step: true,
            warmup_init: false,
        }
    }
}

/// The second-moment estimate of one tensor and its optional first moment.
#[derive(Debug, Clone)]
struct Moments {
    /// Factored: `rows` means over the last axis (one per row of each matrix), `cols` over the second-last.
    /// Unfactored: `rows` holds the full estimate and `cols` is empty.
    rows: Vec<f32>,
    cols: Vec<f32>,
    exp_avg: Vec<f32>,
    len: usize,
}

/// A tensor seen as `batch` matrices of `r × c` (a vector is 1 × 1 × n, unfactored).
#[derive(Debug, Clone, Copy)]
struct Dims {
    factored: bool,
    batch: usize,
    r: usize,
    c: usize,
}

impl Dims {
    fn of(p: &Param) -> Self {
        let n = p.value.len();
        match p.shape.len() {
            0 | 1 => Self {
                factored: false,
                batch: 1,
                r: 1,
                c: n,
            },
            d => {
                let (r, c) = (p.shape[d - 2], p.shape[d - 1]);
                Self {
                    factored: true,
                    batch: p.shape[..d - 2].iter().product(),
                    r,
                    c,
                }
            }
        }
    }
}

impl Moments {
    /// Whether this state has the sizes `p`'s shape asks for (a loaded state may not).
    fn fits(&self, p: &Param, first_moment: bool) -> bool {
        let fresh = Self::new(p, first_moment);
        (self.rows.len(), self.cols.len(), self.exp_avg.len())
            == (fresh.rows.len(), fresh.cols.len(), fresh.exp_avg.len())
    }

    fn new(p: &Param, first_moment: bool) -> Self {
        let d = Dims::of(p);
        let n = p.value.len();
        let (rows, cols) = if d.factored {
            (vec![0.0; d.batch * d.r], vec![0.0; d.batch * d.c])
        } else {
            (vec![0.0; n], Vec::new())
        };
        Self {
            rows,
            cols,
            exp_avg: if first_moment {
                vec![0.0; n]
            } else {
                Vec::new()
            },
            len: n,
        }
    }
}

/// `transformers.optimization.Adafactor`.
#[derive(Debug, Clone)]
pub struct Adafactor {
    config: AdafactorConfig,
    step: u64,
    states: Vec<Vec<Moments>>,
}

impl Adafactor {
    /// Refuses what transformers refuses: `warmup_init` without `relative_step`.
    pub fn new(config: AdafactorConfig) -> Result<Self, OptimError> {
        if config.warmup_init && !config.relative_step {
            return Err(OptimError::Conflict(
                "Adafactor: warmup_init requires relative_step=True".into(),
            ));
        }
        Ok(Self {
            config,
            step: 0,
            states: Vec::new(),
        })
    }

    /// The step size of a tensor whose RMS is `rms` (transformers' `_get_lr`); an f32 product when the parameter
    /// scale makes it a tensor.
    fn lr(&self, group_lr: f64, rms: f32) -> f64 {
        let c = &self.config;
        let t = self.step as f64;
        let mut rel = group_lr;
        if c.relative_step {
            let min_step = if c.warmup_init { 1e-6 * t } else { 1e-2 };
            rel = min_step.min(1.0 / t.sqrt());
        }
        if !c.scale_parameter {
            return rel;
        }
        if rms > c.eps.1 as f32 {
            f64::from(rms * rel as f32)
        } else {
            c.eps.1 * rel
        }
    }

    fn update(&self, p: &mut Param, s: &mut Moments, group_lr: f64, wd: f64) -> f64 {
        let c = &self.config;
        let lr = self.lr(group_lr, rms(&p.value));
        let beta2t = 1.0 - (self.step as f64).powf(c.decay_rate);
        let d = Dims::of(p);
        let mut u = if d.factored {
            factored_update(&p.grad, s, d, beta2t, c.eps.0 as f32)
        } else {
            full_update(&p.grad, &mut s.rows, beta2t, c.eps.0 as f32)
        };
        let clip = (rms(&u) / c.clip_threshold as f32).max(1.0);
        let lr32 = lr as f32;
        u.iter_mut().for_each(|x| *x = *x / clip * lr32);
        if let Some(beta1) = c.beta1 {
            let (b1, w) = (beta1 as f32, (1.0 - beta1) as f32);
            for (m, x) in s.exp_avg.iter_mut().zip(u.iter_mut()) {
                *m = *m * b1 + w * *x;
                *x = *m;
            }
        }
        if wd != 0.0 {
            let a = (-wd * lr) as f32;
            p.value.iter_mut().for_each(|x| *x += a * *x);
        }
        p.value.iter_mut().zip(&u).for_each(|(x, u)| *x += -u);
        lr
    }
}

/// `grad² + eps1`.
fn squared(g: f32, eps1: f32) -> f32 {
    g * g + eps1
}

/// Unfactored: `v ← β₂ₜ·v + (1 − β₂ₜ)(g² + eps1)`, update `g / √v`.
fn full_update(g: &[f32], v: &mut [f32], beta2t: f64, eps1: f32) -> Vec<f32> {
    let (b, w) = (beta2t as f32, (1.0 - beta2t) as f32);
    g.iter()
        .zip(v.iter_mut())
        .map(|(&g, v)| {
            *v = *v * b + w * squared(g, eps1);
            (1.0 / v.sqrt()) * g
        })
        .collect()
}

/// Factored: row and column means of `g² + eps1` update their averages; the update is
/// `g · rsqrt(row / mean(row)) · rsqrt(col)` per matrix.
fn factored_update(g: &[f32], s: &mut Moments, d: Dims, beta2t: f64, eps1: f32) -> Vec<f32> {
    let (b, w) = (beta2t as f32, (1.0 - beta2t) as f32);
    let mut u = vec![0.0f32; g.len()];
    for k in 0..d.batch {
        let gm = &g[k * d.r * d.c..(k + 1) * d.r * d.c];
        let rows = &mut s.rows[k * d.r..(k + 1) * d.r];
        let cols = &mut s.cols[k * d.c..(k + 1) * d.c];
        for (i, row) in rows.iter_mut().enumerate() {
            let m = mean(
                gm[i * d.c..(i + 1) * d.c].iter().map(|&x| squared(x, eps1)),
                d.c,
            );
            *row = *row * b + w * m;
        }
        for (j, col) in cols.iter_mut().enumerate() {
            let m = mean((0..d.r).map(|i| squared(gm[i * d.c + j], eps1)), d.r);
            *col = *col * b + w * m;
        }
        let row_mean = mean(rows.iter().copied(), d.r);
        let um = &mut u[k * d.r * d.c..(k + 1) * d.r * d.c];
        for i in 0..d.r {
            let rf = 1.0 / (rows[i] / row_mean).sqrt();
            for j in 0..d.c {
                let cf = 1.0 / cols[j].sqrt();
                um[i * d.c + j] = rf * cf * gm[i * d.c + j];
            }
        }
    }
    u
}

impl Optimizer for Adafactor {
    fn name(&self) -> &'static str {
        "Adafactor"
    }

    fn step(
        &mut self,
        groups: &mut [ParamGroup],
        lr_factor: f64,
    ) -> Result<StepReport, OptimError> {
        check_layout(groups, &self.states, |s| s.len)?;
        let first = self.config.beta1.is_some();
        init_states(groups, &mut self.states, |p| Moments::new(p, first));
        check_fit(groups, &self.states, |p, s| s.fits(p, first))?;
        self.step += 1;
        let mut states = std::mem::take(&mut self.states);
        let mut lrs = Vec::with_capacity(groups.len());
        for (group, st) in groups.iter_mut().zip(&mut states) {
            let lr = group.lr * lr_factor;
            let wd = group.weight_decay.unwrap_or(self.config.weight_decay);
            let this = &*self;
            let used: Vec<f64> = group
                .params
                .par_iter_mut()
                .zip(st.par_iter_mut())
                .map(|(p, s)| this.update(p, s, lr, wd))
                .collect();
            lrs.push(used.first().copied().unwrap_or(lr));
        }
        self.states = states;
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
                st.set_f32(state_key(gi, pi, "exp_avg_sq_row"), &s.rows);
                st.set_f32(state_key(gi, pi, "exp_avg_sq_col"), &s.cols);
                st.set_f32(state_key(gi, pi, "exp_avg"), &s.exp_avg);
                st.set_scalar(&state_key(gi, pi, "numel"), s.len as f64);
            }
        }
        st
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        state.expect_kind(self.name())?;
        let step = state.scalar("step")? as u64;
        self.states = load_per_param(state, |gi, pi| {
            Ok(Moments {
                rows: state.f32(&state_key(gi, pi, "exp_avg_sq_row"))?,
                cols: state.f32(&state_key(gi, pi, "exp_avg_sq_col"))?,
                exp_avg: state.f32(&state_key(gi, pi, "exp_avg"))?,
                len: state.scalar(&state_key(gi, pi, "numel"))? as usize,
            })
        })?;
        self.step = step;
        Ok(())
    }
}
