//! Learning-rate multipliers of `transformers.get_scheduler` (diffusers' `get_scheduler` has the same formulas),
//! as kohya's `get_scheduler_fix` builds them: the learning rate of step `s` (0-based, the optimizer step it is
//! used for) is `base_lr · factor(s)`, as torch's `LambdaLR` sets it.

use std::f64::consts::PI;

use super::OptimError;

/// Which schedule, with its own parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScheduleKind {
    /// Factor 1 throughout (no warmup allowed, as kohya).
    Constant,
    /// Linear warmup, then 1.
    ConstantWithWarmup,
    /// Linear warmup, then linear decay to 0 at the last step.
    Linear,
    /// Linear warmup, then `num_cycles` cosine waves (transformers' default 0.5: one half wave down to 0).
    Cosine { num_cycles: f64 },
    /// Linear warmup, then `num_cycles` half-cosine decays, each restarting at 1 (kohya's
    /// `--lr_scheduler_num_cycles`).
    CosineWithRestarts { num_cycles: u32 },
    /// Linear warmup, then `(lr_init − lr_end)·(1 − progress)^power + lr_end`, relative to `lr_init` (the
    /// optimizer's default lr: kohya's `--learning_rate`); `lr_end` is transformers' 1e-7.
    Polynomial {
        power: f64,
        lr_end: f64,
        lr_init: f64,
    },
}

/// A schedule over a run of `training_steps` optimizer steps, `warmup_steps` of them warming up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub kind: ScheduleKind,
    pub warmup_steps: u64,
    pub training_steps: u64,
}

impl LrSchedule {
    /// A schedule; refuses what transformers refuses (polynomial with `lr_end ≥ lr_init`) and what kohya refuses
    /// (warmup on `constant`).
    pub fn new(
        kind: ScheduleKind,
        warmup_steps: u64,
        training_steps: u64,
    ) -> Result<Self, OptimError> {
        if kind == ScheduleKind::Constant && warmup_steps != 0 {
            return Err(OptimError::Conflict(format!(
                "constant does not take warmup steps (got {warmup_steps}); use constant_with_warmup"
            )));
        }
        if let ScheduleKind::Polynomial {
            lr_end, lr_init, ..
        } = kind
        {
            if lr_init <= lr_end {
                return Err(OptimError::Conflict(format!(
                    "polynomial: lr_end ({lr_end}) must be smaller than the initial lr ({lr_init})"
                )));
            }
        }
        Ok(Self {
            kind,
            warmup_steps,
            training_steps,
        })
    }

    /// kohya's `--lr_scheduler NAME` with `--lr_scheduler_num_cycles`, `--lr_scheduler_power` and
    /// `--learning_rate` (the polynomial's initial lr).
    pub fn from_kohya(
        name: &str,
        warmup_steps: u64,
        training_steps: u64,
        num_cycles: u32,
        power: f64,
        learning_rate: f64,
    ) -> Result<Self, OptimError> {
        let kind = match name {
            "constant" => ScheduleKind::Constant,
            "constant_with_warmup" => ScheduleKind::ConstantWithWarmup,
            "linear" => ScheduleKind::Linear,
            "cosine" => ScheduleKind::Cosine { num_cycles: 0.5 },
            "cosine_with_restarts" => ScheduleKind::CosineWithRestarts { num_cycles },
            "polynomial" => ScheduleKind::Polynomial {
                power,
                lr_end: 1e-7,
                lr_init: learning_rate,
            },
            other => return Err(OptimError::UnknownScheduler(other.to_string())),
        };
        Self::new(kind, warmup_steps, training_steps)
    }

    /// The multiplier of the base learning rates at optimizer step `step` (0-based).
    pub fn factor(&self, step: u64) -> f64 {
        if self.kind == ScheduleKind::Constant {
            return 1.0;
        }
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        match self.kind {
            ScheduleKind::Constant | ScheduleKind::ConstantWithWarmup => 1.0,
            ScheduleKind::Linear => {
                let left = self.training_steps as f64 - step as f64;
                (left / self.decay_steps()).max(0.0)
            }
            ScheduleKind::Cosine { num_cycles } => {
                let progress = self.progress(step);
                (0.5 * (1.0 + (PI * num_cycles * 2.0 * progress).cos())).max(0.0)
            }
            ScheduleKind::CosineWithRestarts { num_cycles } => {
                let progress = self.progress(step);
                if progress >= 1.0 {
                    return 0.0;
                }
                let phase = (f64::from(num_cycles) * progress).rem_euclid(1.0);
                (0.5 * (1.0 + (PI * phase).cos())).max(0.0)
            }
            ScheduleKind::Polynomial {
                power,
                lr_end,
                lr_init,
            } => self.polynomial(step, power, lr_end, lr_init),
        }
    }

    /// `max(1, training − warmup)` as f64.
    fn decay_steps(&self) -> f64 {
        (self.training_steps as f64 - self.warmup_steps as f64).max(1.0)
    }

    /// Fraction of the decay phase done at `step`.
    fn progress(&self, step: u64) -> f64 {
        (step - self.warmup_steps) as f64 / self.decay_steps()
    }

    fn polynomial(&self, step: u64, power: f64, lr_end: f64, lr_init: f64) -> f64 {
        if step > self.training_steps {
            return lr_end / lr_init;
        }
        let decay_steps = self.training_steps as f64 - self.warmup_steps as f64;
        let pct_remaining = 1.0 - (step - self.warmup_steps) as f64 / decay_steps;
        ((lr_init - lr_end) * pct_remaining.powf(power) + lr_end) / lr_init
    }
}
