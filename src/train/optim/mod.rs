//! Optimizers and learning-rate schedules for LoRA training, as kohya's trainer gets them from torch,
//! bitsandbytes, transformers, dadaptation and prodigyopt.
//!
//! * [`AdamW`]: `torch.optim.AdamW` (decoupled weight decay, bias correction, eps outside the root).
//! * [`AdamW8bit`]: `bitsandbytes.optim.AdamW8bit` (block-wise 8-bit states with the dynamic maps; tensors under
//!   `min_8bit_size` elements keep 32-bit states), following bitsandbytes' CUDA kernels.
//! * [`Adafactor`]: `transformers.optimization.Adafactor` (factored second moments, relative step, parameter
//!   scale, warmup init).
//! * [`DAdaptAdam`]: `dadaptation.DAdaptAdam`; [`Prodigy`]: `prodigyopt.Prodigy` (both adapt the step size D;
//!   their lr stays 1).
//! * [`schedule`]: `transformers.get_scheduler`'s multipliers (constant, warmup, linear, cosine, cosine with hard
//!   restarts, polynomial).
//! * [`clip_grad_norm`]: `torch.nn.utils.clip_grad_norm_` over every parameter of every group.
//! * [`OptimizerConfig`]: kohya's `--optimizer_type` and `--optimizer_args`.
//! * [`OptimizerState`]: an optimizer's state as bytes (safetensors) for resuming.
//!
//! Parameters are plain f32 buffers grouped into [`ParamGroup`]s, each with its own base learning rate
//! (`unet_lr`, `text_encoder_lr`); a step multiplies every group's base rate by the schedule's factor, as torch's
//! `LambdaLR` does. Each element's arithmetic follows the reference's f32 operations in the same order; sums over
//! tensors are taken in f64.

mod adafactor;
mod adamw;
mod adamw8bit;
mod config;
mod dadapt;
mod prodigy;
mod quant;
mod reduce;
pub mod schedule;
mod state;

pub use adafactor::{Adafactor, AdafactorConfig};
pub use adamw::{AdamW, AdamWConfig};
pub use adamw8bit::{AdamW8bit, AdamW8bitConfig};
pub use config::OptimizerConfig;
pub use dadapt::{DAdaptAdam, DAdaptAdamConfig};
pub use prodigy::{Prodigy, ProdigyConfig};
pub use quant::{dynamic_map, quantize_code};
pub use schedule::{LrSchedule, ScheduleKind};
pub use state::{OptimizerState, StateBuffer};

/// Errors of the optimizers, schedules and their state files.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A parameter's values, gradient or shape disagree in length.
    #[error("parameter {name:?}: {what} has {got} elements, expected {expected}")]
    Length {
        name: String,
        what: &'static str,
        got: usize,
        expected: usize,
    },
    /// The parameter groups changed between steps (or differ from a loaded state).
    #[error("parameter layout changed: {0}")]
    Layout(String),
    /// DAdaptAdam and Prodigy take one lr for all groups (or 0 for a frozen group).
    #[error("{optimizer} needs every group's lr to be the largest one ({max}) or 0; group {group:?} has {lr}")]
    MixedLr {
        optimizer: &'static str,
        group: String,
        lr: f64,
        max: f64,
    },
    /// A hyperparameter outside its valid range.
    #[error("invalid {what}: {value}")]
    Invalid { what: &'static str, value: f64 },
    /// Settings the reference refuses to combine.
    #[error("{0}")]
    Conflict(String),
    /// An optimizer name kohya does not know (or that is not implemented).
    #[error("unknown optimizer {0:?} (known: AdamW, AdamW8bit, Adafactor, DAdaptAdam, Prodigy)")]
    UnknownOptimizer(String),
    /// An `--optimizer_args` item that does not parse or is not taken by the optimizer.
    #[error("optimizer argument {arg:?}: {reason}")]
    BadArg { arg: String, reason: String },
    /// A scheduler name that is not implemented.
    #[error(
        "unknown lr scheduler {0:?} (known: constant, constant_with_warmup, linear, cosine, cosine_with_restarts, \
         polynomial)"
    )]
    UnknownScheduler(String),
    /// A saved state for another optimizer.
    #[error("optimizer state is for {found}, not {expected}")]
    Kind { found: String, expected: String },
    /// A saved state that lacks an entry or does not parse.
    #[error("optimizer state: {0}")]
    State(String),
}

/// One trainable tensor: its values, its gradient (same length) and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
    pub grad: Vec<f32>,
}

impl Param {
    /// A parameter with a zero gradient.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, value: Vec<f32>) -> Self {
        let grad = vec![0.0; value.len()];
        Self {
            name: name.into(),
            shape,
            value,
            grad,
        }
    }

    /// Checks that value, gradient and shape agree.
    pub fn check(&self) -> Result<(), OptimError> {
        let n = self.value.len();
        let shaped: usize = self.shape.iter().product();
        let mismatch = |what, got| OptimError::Length {
            name: self.name.clone(),
            what,
            got,
            expected: n,
        };
        if shaped != n {
            return Err(mismatch("shape", shaped));
        }
        if self.grad.len() != n {
            return Err(mismatch("gradient", self.grad.len()));
        }
        Ok(())
    }
}

/// Parameters that share a learning rate (kohya: the UNet's and the text encoder's LoRA tensors).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroup {
    pub name: String,
    /// Base learning rate; the step's rate is this times the schedule's factor.
    pub lr: f64,
    /// Weight decay of this group; `None` takes the optimizer's.
    pub weight_decay: Option<f64>,
    pub params: Vec<Param>,
}

impl ParamGroup {
    pub fn new(name: impl Into<String>, lr: f64, params: Vec<Param>) -> Self {
        Self {
            name: name.into(),
            lr,
            weight_decay: None,
            params,
        }
    }
}

/// What a step used, for logging: each group's effective learning rate (D-adapted ones include D).
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub lrs: Vec<f64>,
}

/// An optimizer over parameter groups.
pub trait Optimizer: Send {
    /// kohya's name of the optimizer.
    fn name(&self) -> &'static str;
    /// One update of every parameter from its gradient; group `i` uses `groups[i].lr * lr_factor`.
    fn step(&mut self, groups: &mut [ParamGroup], lr_factor: f64)
        -> Result<StepReport, OptimError>;
    /// Steps taken so far.
    fn steps(&self) -> u64;
    /// Everything needed to continue from here.
    fn state(&self) -> OptimizerState;
    /// Continues from a saved state; the next step checks it against the parameters.
    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError>;
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`, as `torch.nn.utils.clip_grad_norm_`
/// does (coefficient `max_norm / (norm + 1e-6)`, clamped to 1); returns the norm before clipping.
pub fn clip_grad_norm(groups: &mut [ParamGroup], max_norm: f32) -> f32 {
    let norms: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.params.iter())
        .map(|p| reduce::sum_sq(&p.grad).sqrt() as f32 as f64)
        .collect();
    let total = norms.iter().map(|n| n * n).sum::<f64>().sqrt() as f32;
    let coef = (max_norm / (total + 1e-6)).min(1.0);
    for p in groups.iter_mut().flat_map(|g| g.params.iter_mut()) {
        reduce::scale(&mut p.grad, coef);
    }
    total
}

/// Checks every parameter and that the groups have the layout `states` was made for.
pub(crate) fn check_layout<S>(
    groups: &[ParamGroup],
    states: &[Vec<S>],
    len: impl Fn(&S) -> usize,
) -> Result<(), OptimError> {
    for p in groups.iter().flat_map(|g| g.params.iter()) {
        p.check()?;
    }
    if states.is_empty() {
        return Ok(());
    }
    if states.len() != groups.len() {
        return Err(OptimError::Layout(format!(
            "{} parameter groups, the optimizer state has {}",
            groups.len(),
            states.len()
        )));
    }
    for (g, s) in groups.iter().zip(states) {
        if g.params.len() != s.len() {
            return Err(OptimError::Layout(format!(
                "group {:?} has {} parameters, the optimizer state has {}",
                g.name,
                g.params.len(),
                s.len()
            )));
        }
        for (p, st) in g.params.iter().zip(s) {
            if len(st) != p.value.len() {
                return Err(OptimError::Layout(format!(
                    "parameter {:?} has {} elements, its optimizer state {}",
                    p.name,
                    p.value.len(),
                    len(st)
                )));
            }
        }
    }
    Ok(())
}

/// Makes the per-parameter states on the first step.
pub(crate) fn init_states<S>(
    groups: &[ParamGroup],
    states: &mut Vec<Vec<S>>,
    init: impl Fn(&Param) -> S,
) {
    if states.is_empty() {
        *states = groups
            .iter()
            .map(|g| g.params.iter().map(&init).collect())
            .collect();
    }
}

/// The key of a per-parameter buffer in a saved state.
pub(crate) fn state_key(group: usize, param: usize, buffer: &str) -> String {
    format!("g{group}.p{param}.{buffer}")
}

/// Checks that a hyperparameter is finite and inside `[lo, hi)`.
pub(crate) fn check_range(
    what: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
) -> Result<(), OptimError> {
    if value.is_finite() && value >= lo && value < hi {
        Ok(())
    } else {
        Err(OptimError::Invalid { what, value })
    }
}

/// Records how many groups and parameters per group a saved state holds.
pub(crate) fn save_layout<S>(st: &mut OptimizerState, states: &[Vec<S>]) {
    st.set_scalar("groups", states.len() as f64);
    for (gi, s) in states.iter().enumerate() {
        st.set_scalar(&format!("g{gi}.params"), s.len() as f64);
    }
}

/// Reads the per-parameter states of the layout [`save_layout`] recorded.
pub(crate) fn load_per_param<S>(
    state: &OptimizerState,
    read: impl Fn(usize, usize) -> Result<S, OptimError>,
) -> Result<Vec<Vec<S>>, OptimError> {
    let groups = state.scalar("groups")? as usize;
    (0..groups)
        .map(|gi| {
            let n = state.scalar(&format!("g{gi}.params"))? as usize;
            (0..n).map(|pi| read(gi, pi)).collect()
        })
        .collect()
}

/// Checks that the buffers read for one parameter agree in length (`lens[i]` of buffer `names[i]`).
pub(crate) fn check_lens(
    group: usize,
    param: usize,
    lens: &[(&str, usize)],
) -> Result<(), OptimError> {
    match lens.iter().find(|(_, n)| *n != lens[0].1) {
        None => Ok(()),
        Some((name, n)) => Err(OptimError::State(format!(
            "g{group}.p{param}: {name} has {n} values, {} has {}",
            lens[0].0, lens[0].1
        ))),
    }
}

/// Checks every parameter's state with `fits` (sizes that depend on more than the element count).
pub(crate) fn check_fit<S>(
    groups: &[ParamGroup],
    states: &[Vec<S>],
    fits: impl Fn(&Param, &S) -> bool,
) -> Result<(), OptimError> {
    let pairs = groups
        .iter()
        .zip(states)
        .flat_map(|(g, s)| g.params.iter().zip(s));
    match pairs.into_iter().find(|(p, s)| !fits(p, s)) {
        None => Ok(()),
        Some((p, _)) => Err(OptimError::Layout(format!(
            "the optimizer state of {:?} (shape {:?}) was made for another shape or setting",
            p.name, p.shape
        ))),
    }
}
