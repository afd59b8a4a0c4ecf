//! SD1.5 discrete noise schedule and the sigma schedules A1111 1.10 builds from it (k-diffusion semantics).
//!
//! Numbers follow torch's dtypes: the betas are float64 (LDM `make_beta_schedule`), `alphas_cumprod` is stored as
//! float32, and sigmas, `sigma_to_t` and `t_to_sigma` are float32 tensor arithmetic (k-diffusion
//! `external.DiscreteSchedule`). Transcendental functions are evaluated correctly rounded (via f64); torch's CPU
//! kernels (MKL/Sleef) are not always correctly rounded, so single values may differ by an ulp or two.

use super::SamplingError;

/// Number of training timesteps of SD1.5.
pub const SD15_TIMESTEPS: usize = 1000;
const SD15_LINEAR_START: f64 = 0.00085;
const SD15_LINEAR_END: f64 = 0.012;

/// `torch.linspace(start, end, n)` in float32 (CPU and CUDA kernels: `start + step * i` for the first half,
/// `end - step * (n - 1 - i)` for the second, both contracted to FMA).
pub fn linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let halfway = n / 2;
    (0..n)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((n - 1 - i) as f32, end)
            }
        })
        .collect()
}

/// `torch.linspace(start, end, n, dtype=torch.float64)`.
pub fn linspace_f64(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    let halfway = n / 2;
    (0..n)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f64, start)
            } else {
                (-step).mul_add((n - 1 - i) as f64, end)
            }
        })
        .collect()
}

/// LDM `register_schedule` for SD1.5: `betas = linspace(sqrt(0.00085), sqrt(0.012), 1000, f64)^2`,
/// `alphas_cumprod = cumprod(1 - betas)` in f64, stored as f32.
pub fn sd15_alphas_cumprod() -> Vec<f32> {
    let roots = linspace_f64(
        SD15_LINEAR_START.powf(0.5),
        SD15_LINEAR_END.powf(0.5),
        SD15_TIMESTEPS,
    );
    let mut product = 1.0f64;
    roots
        .iter()
        .map(|root| {
            product *= 1.0 - root * root;
            product as f32
        })
        .collect()
}

fn ln_f32(x: f32) -> f32 {
    (x as f64).ln() as f32
}

fn exp_f32(x: f32) -> f32 {
    (x as f64).exp() as f32
}

/// A discrete-time eps-prediction schedule (k-diffusion `CompVisDenoiser` / `DiscreteSchedule`, not quantized).
#[derive(Clone, Debug)]
pub struct DiscreteSchedule {
    alphas_cumprod: Vec<f32>,
    sigmas: Vec<f32>,
    log_sigmas: Vec<f32>,
}

impl DiscreteSchedule {
    /// The SD1.5 schedule computed from its formula (equal to the `alphas_cumprod` buffer of fp32 checkpoints).
    pub fn sd15() -> Self {
        Self::build(sd15_alphas_cumprod())
    }

    /// A schedule from a model's own `alphas_cumprod` buffer (must be at least 2 values, each in (0, 1]).
    pub fn from_alphas_cumprod(alphas_cumprod: Vec<f32>) -> Result<Self, SamplingError> {
        if alphas_cumprod.len() < 2 {
            return Err(SamplingError::BadSchedule {
                reason: format!(
                    "alphas_cumprod needs at least 2 values, got {}",
                    alphas_cumprod.len()
                ),
            });
        }
        if let Some((index, value)) = alphas_cumprod
            .iter()
            .enumerate()
            .find(|(_, a)| !(**a > 0.0 && **a <= 1.0))
        {
            return Err(SamplingError::BadSchedule {
                reason: format!("alphas_cumprod[{index}] = {value} is outside (0, 1]"),
            });
        }
        Ok(Self::build(alphas_cumprod))
    }

    fn build(alphas_cumprod: Vec<f32>) -> Self {
        let sigmas: Vec<f32> = alphas_cumprod
            .iter()
            .map(|a| ((1.0 - a) / a).sqrt())
            .collect();
        let log_sigmas = sigmas.iter().map(|s| ln_f32(*s)).collect();
        DiscreteSchedule {
            alphas_cumprod,
            sigmas,
            log_sigmas,
        }
    }

    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// `sqrt((1 - a) / a)` per timestep, increasing with t.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// `sigmas[0]` (0.0291675 for SD1.5).
    pub fn sigma_min(&self) -> f32 {
        self.sigmas[0]
    }

    /// `sigmas[last]` (14.614642 for SD1.5).
    pub fn sigma_max(&self) -> f32 {
        self.sigmas[self.sigmas.len() - 1]
    }

    /// k-diffusion `DiscreteSchedule.sigma_to_t` (non-quantized): linear interpolation of log-sigma between the two
    /// neighbouring integer timesteps, in f32. The fractional t is what the UNet receives.
    pub fn sigma_to_t(&self, sigma: f64) -> f64 {
        let log_sigma = ln_f32(sigma as f32);
        let last_pair = self.log_sigmas.len() - 2;
        let low_index = self
            .log_sigmas
            .iter()
            .rposition(|l| log_sigma - l >= 0.0)
            .unwrap_or(0)
            .min(last_pair);
        let high_index = low_index + 1;
        let low = self.log_sigmas[low_index];
        let high = self.log_sigmas[high_index];
        let w = ((low - log_sigma) / (low - high)).clamp(0.0, 1.0);
        let t = (1.0 - w) * low_index as f32 + w * high_index as f32;
        t as f64
    }

    /// k-diffusion `DiscreteSchedule.t_to_sigma`: `exp((1 - w) log_sigma[floor t] + w log_sigma[ceil t])`, in f32.
    /// `t` is clamped to `[0, len - 1]`.
    pub fn t_to_sigma(&self, t: f64) -> f64 {
        self.t_to_sigma_f32(t as f32) as f64
    }

    fn t_to_sigma_f32(&self, t: f32) -> f32 {
        let t = t.clamp(0.0, (self.log_sigmas.len() - 1) as f32);
        let low_index = t.floor() as usize;
        let high_index = t.ceil() as usize;
        let w = t.fract();
        let log_sigma = (1.0 - w) * self.log_sigmas[low_index] + w * self.log_sigmas[high_index];
        exp_f32(log_sigma)
    }

    /// k-diffusion `get_sigmas(n)` (A1111 "Uniform", and "Automatic" for Euler / Euler a):
    /// `t = linspace(len - 1, 0, n)`, `sigma(t)`, then a final 0. Returns `n + 1` values.
    pub fn discrete_sigmas(&self, n: usize) -> Result<Vec<f32>, SamplingError> {
        check_steps(n)?;
        let t_max = (self.sigmas.len() - 1) as f64;
        let mut sigmas: Vec<f32> = linspace_f32(t_max, 0.0, n)
            .into_iter()
            .map(|t| self.t_to_sigma_f32(t))
            .collect();
        sigmas.push(0.0);
        Ok(sigmas)
    }

    /// The sigmas A1111 1.10 `KDiffusionSampler.get_sigmas` builds for a resolved schedule type, with
    /// sigma_min / sigma_max = this model's `sigmas[0]` / `sigmas[-1]` (option defaults: no overrides, rho 0).
    pub fn sigmas_for(
        &self,
        schedule: ScheduleType,
        steps: usize,
    ) -> Result<Vec<f32>, SamplingError> {
        let sigma_min = self.sigma_min() as f64;
        let sigma_max = self.sigma_max() as f64;
        match schedule {
            ScheduleType::Automatic | ScheduleType::Uniform => self.discrete_sigmas(steps),
            ScheduleType::Karras => karras_sigmas(steps, sigma_min, sigma_max, 7.0),
            ScheduleType::Exponential => exponential_sigmas(steps, sigma_min, sigma_max),
            ScheduleType::Polyexponential => {
                polyexponential_sigmas(steps, sigma_min, sigma_max, 1.0)
            }
        }
    }
}

fn check_steps(n: usize) -> Result<(), SamplingError> {
    if n == 0 {
        return Err(SamplingError::BadSteps { steps: n });
    }
    Ok(())
}

/// k-diffusion `get_sigmas_karras(n, sigma_min, sigma_max, rho)`: `ramp = linspace(0, 1, n)` (f32),
/// `(max^(1/rho) + ramp (min^(1/rho) - max^(1/rho)))^rho`, then a final 0. Returns `n + 1` values.
pub fn karras_sigmas(
    n: usize,
    sigma_min: f64,
    sigma_max: f64,
    rho: f64,
) -> Result<Vec<f32>, SamplingError> {
    check_steps(n)?;
    let min_inv_rho = sigma_min.powf(1.0 / rho);
    let max_inv_rho = sigma_max.powf(1.0 / rho);
    let span = (min_inv_rho - max_inv_rho) as f32;
    let start = max_inv_rho as f32;
    let mut sigmas: Vec<f32> = linspace_f32(0.0, 1.0, n)
        .into_iter()
        .map(|ramp| ((start + ramp * span) as f64).powf(rho) as f32)
        .collect();
    sigmas.push(0.0);
    Ok(sigmas)
}

/// k-diffusion `get_sigmas_exponential`: `exp(linspace(ln max, ln min, n))`, then a final 0.
pub fn exponential_sigmas(
    n: usize,
    sigma_min: f64,
    sigma_max: f64,
) -> Result<Vec<f32>, SamplingError> {
    check_steps(n)?;
    let mut sigmas: Vec<f32> = linspace_f32(sigma_max.ln(), sigma_min.ln(), n)
        .into_iter()
        .map(exp_f32)
        .collect();
    sigmas.push(0.0);
    Ok(sigmas)
}

/// k-diffusion `get_sigmas_polyexponential`: `exp(linspace(1, 0, n)^rho (ln max - ln min) + ln min)`, then 0.
pub fn polyexponential_sigmas(
    n: usize,
    sigma_min: f64,
    sigma_max: f64,
    rho: f64,
) -> Result<Vec<f32>, SamplingError> {
    check_steps(n)?;
    let span = (sigma_max.ln() - sigma_min.ln()) as f32;
    let offset = sigma_min.ln() as f32;
    let mut sigmas: Vec<f32> = linspace_f32(1.0, 0.0, n)
        .into_iter()
        .map(|ramp| {
            let ramp = (ramp as f64).powf(rho) as f32;
            exp_f32(ramp * span + offset)
        })
        .collect();
    sigmas.push(0.0);
    Ok(sigmas)
}

/// A1111 1.10 "Schedule type" (`modules/sd_schedulers.py`); the ones this engine implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScheduleType {
    /// The sampler's own default (DPM++ 2M: Karras; Euler, Euler a: k-diffusion `get_sigmas`).
    Automatic,
    Uniform,
    Karras,
    Exponential,
    Polyexponential,
}

/// (name, label) of every A1111 1.10 schedule type, in UI order.
const A1111_SCHEDULES: [(&str, &str); 12] = [
    ("automatic", "Automatic"),
    ("uniform", "Uniform"),
    ("karras", "Karras"),
    ("exponential", "Exponential"),
    ("polyexponential", "Polyexponential"),
    ("sgm_uniform", "SGM Uniform"),
    ("kl_optimal", "KL Optimal"),
    ("align_your_steps", "Align Your Steps"),
    ("simple", "Simple"),
    ("normal", "Normal"),
    ("ddim", "DDIM"),
    ("beta", "Beta"),
];

impl ScheduleType {
    pub const ALL: [ScheduleType; 5] = [
        ScheduleType::Automatic,
        ScheduleType::Uniform,
        ScheduleType::Karras,
        ScheduleType::Exponential,
        ScheduleType::Polyexponential,
    ];

    /// Accepts A1111 labels ("Karras", "SGM Uniform") and names ("karras", "sgm_uniform"), case-insensitively.
    /// Known A1111 schedules this engine lacks give `UnsupportedSchedule`; anything else `UnknownSchedule`.
    pub fn parse(text: &str) -> Result<Self, SamplingError> {
        let wanted = text.trim().to_lowercase();
        if let Some(found) = Self::ALL
            .iter()
            .find(|s| s.name() == wanted || s.label().to_lowercase() == wanted)
        {
            return Ok(*found);
        }
        let known = A1111_SCHEDULES
            .iter()
            .any(|(name, label)| *name == wanted || label.to_lowercase() == wanted)
            || wanted == "sgmuniform";
        let supported = Self::ALL.map(|s| s.label()).join(", ");
        if known {
            return Err(SamplingError::UnsupportedSchedule {
                name: text.to_string(),
                supported,
            });
        }
        Err(SamplingError::UnknownSchedule {
            name: text.to_string(),
            valid: supported,
        })
    }

    /// A1111's display label, as written in the infotext ("Schedule type: Karras").
    pub fn label(self) -> &'static str {
        match self {
            ScheduleType::Automatic => "Automatic",
            ScheduleType::Uniform => "Uniform",
            ScheduleType::Karras => "Karras",
            ScheduleType::Exponential => "Exponential",
            ScheduleType::Polyexponential => "Polyexponential",
        }
    }

    /// A1111's internal name ("karras").
    pub fn name(self) -> &'static str {
        match self {
            ScheduleType::Automatic => "automatic",
            ScheduleType::Uniform => "uniform",
            ScheduleType::Karras => "karras",
            ScheduleType::Exponential => "exponential",
            ScheduleType::Polyexponential => "polyexponential",
        }
    }
}
