//! k-diffusion samplers (Euler, Euler a, DPM++ 2M) and A1111's own DDIM, as A1111 1.10 calls them.
//!
//! The model is reached through two small traits that the pipeline's model wrapper implements:
//! * [`Denoiser`] for the k-diffusion samplers: `denoise(x, sigma)` returns the CFG-combined *denoised* x0
//!   prediction (the wrapper applies `c_in = 1/sqrt(sigma^2+1)`, `t = sigma_to_t(sigma)`, CFG, `x - sigma * eps`).
//! * [`EpsPredictor`] for DDIM, which A1111 runs in timestep space: `predict_eps(x, t)` returns the CFG-combined
//!   eps of the UNet evaluated on `x` *unscaled* at the integer timestep `t` (A1111 `CFGDenoiserTimesteps`).
//!
//! Scalar coefficients are computed in f32 like the 0-dim torch tensors of the reference; latents are f32 tensors.
//! [`sample`] wraps everything A1111's `KDiffusionSampler` / `CompVisSampler` do around a sampler call: schedule
//! choice, initial noise scaling, per-image RNG of the chosen source.

use candle_core::Tensor;

use super::rng::ImageRng;
use super::schedule::{DiscreteSchedule, ScheduleType};
use super::SamplingError;

/// The k-diffusion model interface: the denoised prediction `D(x, sigma)` for a whole batch.
pub trait Denoiser {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor, SamplingError>;
}

/// The timestep-space model interface of A1111's DDIM: eps predicted by the UNet at (integer) timestep `t`.
pub trait EpsPredictor {
    fn predict_eps(&mut self, x: &Tensor, timestep: f64) -> Result<Tensor, SamplingError>;
}

/// Per-step progress: called after each model step with `(steps_done, total_steps)`.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// The samplers this engine offers; `parse` accepts our names and A1111's display names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SamplerName {
    Euler,
    EulerA,
    Dpmpp2m,
    Dpmpp2mKarras,
    Ddim,
}

impl SamplerName {
    pub const ALL: [SamplerName; 5] = [
        SamplerName::Euler,
        SamplerName::EulerA,
        SamplerName::Dpmpp2m,
        SamplerName::Dpmpp2mKarras,
        SamplerName::Ddim,
    ];

    /// Case-insensitive; accepts "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim" and A1111's
    /// "Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM" (plus A1111 aliases "k_euler", "k_euler_a",
    /// "k_dpmpp_2m"). Unknown names give an error listing the valid ones.
    ///
    /// A1111 1.10 renders "DPM++ 2M" with its default schedule, Karras, so that display name (and `k_dpmpp_2m`)
    /// parse to [`SamplerName::Dpmpp2mKarras`]; our own `dpmpp_2m` is DPM++ 2M on the uniform (discrete) schedule.
    pub fn parse(text: &str) -> Result<Self, SamplingError> {
        let wanted = text.trim().to_lowercase();
        if wanted == "dpm++ 2m" || wanted == "k_dpmpp_2m" {
            return Ok(SamplerName::Dpmpp2mKarras);
        }
        let found = Self::ALL.into_iter().find(|s| {
            s.name() == wanted
                || s.display_name().to_lowercase() == wanted
                || s.a1111_aliases().contains(&wanted.as_str())
        });
        found.ok_or_else(|| SamplingError::UnknownSampler {
            name: text.to_string(),
            valid: Self::ALL
                .map(|s| format!("{} ({})", s.name(), s.display_name()))
                .join(", "),
        })
    }

    /// Our short name.
    pub fn name(self) -> &'static str {
        match self {
            SamplerName::Euler => "euler",
            SamplerName::EulerA => "euler_a",
            SamplerName::Dpmpp2m => "dpmpp_2m",
            SamplerName::Dpmpp2mKarras => "dpmpp_2m_karras",
            SamplerName::Ddim => "ddim",
        }
    }

    /// A1111's pre-1.9 display name (still accepted by A1111 1.10).
    pub fn display_name(self) -> &'static str {
        match self {
            SamplerName::Euler => "Euler",
            SamplerName::EulerA => "Euler a",
            SamplerName::Dpmpp2m => "DPM++ 2M",
            SamplerName::Dpmpp2mKarras => "DPM++ 2M Karras",
            SamplerName::Ddim => "DDIM",
        }
    }

    fn a1111_aliases(self) -> &'static [&'static str] {
        match self {
            SamplerName::Euler => &["k_euler"],
            SamplerName::EulerA => &["k_euler_a", "k_euler_ancestral"],
            SamplerName::Dpmpp2m => &["k_dpmpp_2m"],
            SamplerName::Dpmpp2mKarras => &["k_dpmpp_2m_ka"],
            SamplerName::Ddim => &[],
        }
    }

    /// The "Sampler:" value A1111 1.10 writes: the schedule suffix is split off ("DPM++ 2M Karras" -> "DPM++ 2M").
    pub fn infotext_sampler(self) -> &'static str {
        match self {
            SamplerName::Dpmpp2mKarras => "DPM++ 2M",
            other => other.display_name(),
        }
    }

    /// Whether A1111 1.10 writes `ENSD` for this sampler (`is_sampler_using_eta_noise_seed_delta`): its config
    /// has `uses_ensd` (of ours only "Euler a") and its eta is not 0 (`eta_ancestral` is 1 here).
    pub fn uses_ensd(self) -> bool {
        self == SamplerName::EulerA
    }

    /// The infotext's `ENSD` value for eta noise seed delta `ensd`: written when it is not 0 and the sampler uses
    /// it (A1111 1.10 `create_infotext`).
    pub fn infotext_ensd(self, ensd: u64) -> Option<u64> {
        (ensd != 0 && self.uses_ensd()).then_some(ensd)
    }

    /// The schedule A1111 1.10 actually uses (`get_sampler_and_scheduler` + `get_sigmas`): a name suffix wins,
    /// "Automatic" becomes the sampler's `scheduler` option (DPM++ 2M: Karras) or k-diffusion's `get_sigmas`.
    pub fn resolve_schedule(self, requested: ScheduleType) -> ScheduleType {
        match (self, requested) {
            (SamplerName::Dpmpp2mKarras, _) => ScheduleType::Karras,
            (SamplerName::Dpmpp2m, ScheduleType::Automatic) => ScheduleType::Karras,
            (_, ScheduleType::Automatic) => ScheduleType::Uniform,
            (_, other) => other,
        }
    }

    /// The schedule this sampler name stands for in loraeval: `dpmpp_2m` is the uniform (discrete) schedule,
    /// everything else A1111's "Automatic".
    pub fn default_schedule(self) -> ScheduleType {
        match self {
            SamplerName::Dpmpp2m => ScheduleType::Uniform,
            _ => ScheduleType::Automatic,
        }
    }

    /// The "Schedule type:" value A1111 1.10 writes for this sampler and requested schedule: the resolved label
    /// when `get_sigmas` resolved one, else the request as given (Euler/Euler a/DDIM with Automatic: "Automatic").
    pub fn infotext_schedule(self, requested: ScheduleType) -> &'static str {
        match (self, requested) {
            (SamplerName::Dpmpp2mKarras, _) => ScheduleType::Karras.label(),
            (SamplerName::Dpmpp2m, ScheduleType::Automatic) => ScheduleType::Karras.label(),
            (_, requested) => requested.label(),
        }
    }
}

/// Settings of one sampling run (A1111 defaults: `eta_ancestral` 1, `eta_ddim` 0, `s_noise` 1).
#[derive(Clone, Copy, Debug)]
pub struct SamplerSettings {
    pub sampler: SamplerName,
    pub schedule: ScheduleType,
    pub steps: usize,
    pub eta_ancestral: f32,
    pub eta_ddim: f64,
    pub s_noise: f32,
}

impl SamplerSettings {
    pub fn new(sampler: SamplerName, schedule: ScheduleType, steps: usize) -> Self {
        SamplerSettings {
            sampler,
            schedule,
            steps,
            eta_ancestral: 1.0,
            eta_ddim: 0.0,
            s_noise: 1.0,
        }
    }
}

/// A whole txt2img sampling run as A1111 1.10 does it: draw the initial noise (one `randn` per image from its own
/// generator), scale it by `sigmas[0]` for k-diffusion samplers (DDIM takes it unscaled), run the sampler.
/// Returns the final latent `[batch, 4, h, w]` (before the VAE's 1/0.18215 scaling).
pub fn sample<M: Denoiser + EpsPredictor>(
    model: &mut M,
    schedule: &DiscreteSchedule,
    settings: &SamplerSettings,
    rng: &mut ImageRng,
    device: &candle_core::Device,
    progress: Progress,
) -> Result<Tensor, SamplingError> {
    check_steps(settings.steps)?;
    let noise = rng.next_noise(device)?;
    let steps = settings.steps;
    let sigma_schedule = |sampler: SamplerName| {
        schedule.sigmas_for(sampler.resolve_schedule(settings.schedule), steps)
    };
    match settings.sampler {
        SamplerName::Ddim => {
            let timesteps = ddim_timesteps(steps, schedule.alphas_cumprod().len())?;
            let alphas_cumprod = schedule.alphas_cumprod();
            let eta = settings.eta_ddim;
            sample_ddim(model, noise, &timesteps, alphas_cumprod, eta, rng, progress)
        }
        SamplerName::Euler => {
            let sigmas = sigma_schedule(SamplerName::Euler)?;
            sample_euler(model, scale_noise(&noise, &sigmas)?, &sigmas, progress)
        }
        SamplerName::EulerA => {
            let sigmas = sigma_schedule(SamplerName::EulerA)?;
            let x = scale_noise(&noise, &sigmas)?;
            let (eta, s_noise) = (settings.eta_ancestral, settings.s_noise);
            sample_euler_ancestral(model, x, &sigmas, eta, s_noise, rng, progress)
        }
        sampler @ (SamplerName::Dpmpp2m | SamplerName::Dpmpp2mKarras) => {
            let sigmas = sigma_schedule(sampler)?;
            sample_dpmpp_2m(model, scale_noise(&noise, &sigmas)?, &sigmas, progress)
        }
    }
}

/// A1111 `KDiffusionSampler.sample`: `x = noise * sigmas[0]`.
fn scale_noise(noise: &Tensor, sigmas: &[f32]) -> Result<Tensor, SamplingError> {
    Ok(noise.affine(sigmas[0] as f64, 0.0)?)
}

fn check_steps(steps: usize) -> Result<(), SamplingError> {
    if steps == 0 {
        return Err(SamplingError::BadSteps { steps });
    }
    Ok(())
}

fn check_sigmas(sigmas: &[f32]) -> Result<(), SamplingError> {
    if sigmas.len() < 2 {
        return Err(SamplingError::BadSteps {
            steps: sigmas.len().saturating_sub(1),
        });
    }
    Ok(())
}

/// `(x - denoised) / sigma` (k-diffusion `to_d`).
fn derivative(x: &Tensor, denoised: &Tensor, sigma: f32) -> Result<Tensor, SamplingError> {
    Ok((x - denoised)?.affine(1.0 / sigma as f64, 0.0)?)
}

/// k-diffusion `sample_euler` with `s_churn = 0`: `x += (x - D(x, s_i)) / s_i * (s_{i+1} - s_i)`.
/// (The reference draws an unused `randn_like` each step; skipping it changes nothing in the result.)
pub fn sample_euler<D: Denoiser + ?Sized>(
    model: &mut D,
    mut x: Tensor,
    sigmas: &[f32],
    progress: Progress,
) -> Result<Tensor, SamplingError> {
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    for i in 0..total {
        let denoised = model.denoise(&x, sigmas[i] as f64)?;
        let d = derivative(&x, &denoised, sigmas[i])?;
        let dt = sigmas[i + 1] - sigmas[i];
        x = (x + d.affine(dt as f64, 0.0)?)?;
        progress(i + 1, total);
    }
    Ok(x)
}

/// k-diffusion `get_ancestral_step` in f32: `(sigma_down, sigma_up)`.
pub fn ancestral_step(sigma_from: f32, sigma_to: f32, eta: f32) -> (f32, f32) {
    if eta == 0.0 {
        return (sigma_to, 0.0);
    }
    let from2 = sigma_from * sigma_from;
    let to2 = sigma_to * sigma_to;
    let sigma_up = sigma_to.min(eta * (to2 * (from2 - to2) / from2).sqrt());
    let sigma_down = (to2 - sigma_up * sigma_up).sqrt();
    (sigma_down, sigma_up)
}

/// k-diffusion `sample_euler_ancestral`; the fresh noise of each step except the last is the next draw of `rng`
/// (A1111 routes k-diffusion's `randn_like` to its per-image generators, which the eta noise seed delta re-seeded
/// after the initial noise).
pub fn sample_euler_ancestral<D: Denoiser + ?Sized>(
    model: &mut D,
    mut x: Tensor,
    sigmas: &[f32],
    eta: f32,
    s_noise: f32,
    rng: &mut ImageRng,
    progress: Progress,
) -> Result<Tensor, SamplingError> {
    check_sigmas(sigmas)?;
    check_batch(&x, rng)?;
    let total = sigmas.len() - 1;
    for i in 0..total {
        let denoised = model.denoise(&x, sigmas[i] as f64)?;
        let (sigma_down, sigma_up) = ancestral_step(sigmas[i], sigmas[i + 1], eta);
        let d = derivative(&x, &denoised, sigmas[i])?;
        let dt = sigma_down - sigmas[i];
        x = (x + d.affine(dt as f64, 0.0)?)?;
        if sigmas[i + 1] > 0.0 {
            let noise = rng.next_noise(x.device())?;
            let noise = noise
                .affine(s_noise as f64, 0.0)?
                .affine(sigma_up as f64, 0.0)?;
            x = (x + noise)?;
        }
        progress(i + 1, total);
    }
    Ok(x)
}

fn check_batch(x: &Tensor, rng: &ImageRng) -> Result<(), SamplingError> {
    if x.dims() != rng.batch_shape() {
        return Err(SamplingError::BadLatentShape {
            shape: x.dims().to_vec(),
            reason: format!("the noise generators draw {:?}", rng.batch_shape()),
        });
    }
    Ok(())
}

/// k-diffusion `sample_dpmpp_2m` (multistep DPM-Solver++(2M)); deterministic.
pub fn sample_dpmpp_2m<D: Denoiser + ?Sized>(
    model: &mut D,
    mut x: Tensor,
    sigmas: &[f32],
    progress: Progress,
) -> Result<Tensor, SamplingError> {
    check_sigmas(sigmas)?;
    let total = sigmas.len() - 1;
    let t_of = |sigma: f32| -((sigma as f64).ln() as f32);
    let sigma_of = |t: f32| ((-t) as f64).exp() as f32;
    let mut old_denoised: Option<Tensor> = None;
    for i in 0..total {
        let denoised = model.denoise(&x, sigmas[i] as f64)?;
        if sigmas[i + 1] == 0.0 {
            // sigma_fn(inf) = 0 and expm1(-inf) = -1: the update is exactly x = denoised.
            x = denoised.clone();
        } else {
            let t = t_of(sigmas[i]);
            let t_next = t_of(sigmas[i + 1]);
            let h = t_next - t;
            let ratio = sigma_of(t_next) / sigma_of(t);
            let minus_expm1 = -((-h as f64).exp_m1() as f32);
            let target = match &old_denoised {
                None => denoised.clone(),
                Some(old) => {
                    let h_last = t - t_of(sigmas[i - 1]);
                    let r = h_last / h;
                    let inv_2r = 1.0 / (2.0 * r);
                    let current = denoised.affine((1.0 + inv_2r) as f64, 0.0)?;
                    (current - old.affine(inv_2r as f64, 0.0)?)?
                }
            };
            x = (x.affine(ratio as f64, 0.0)? + target.affine(minus_expm1 as f64, 0.0)?)?;
        }
        old_denoised = Some(denoised);
        progress(i + 1, total);
    }
    Ok(x)
}

/// A1111 `CompVisSampler.get_timesteps`: `clip(range(0, T, T // steps) + 1, 0, T - 1)` (T = 1000 for SD1.5).
/// For 20 steps: 1, 51, ..., 951. The list can be one longer than `steps` when `T % steps` is large.
pub fn ddim_timesteps(steps: usize, train_timesteps: usize) -> Result<Vec<usize>, SamplingError> {
    check_steps(steps)?;
    if train_timesteps < 2 {
        return Err(SamplingError::BadSchedule {
            reason: format!("{train_timesteps} training timesteps"),
        });
    }
    let stride = (train_timesteps / steps).max(1);
    Ok((0..train_timesteps)
        .step_by(stride)
        .map(|t| (t + 1).min(train_timesteps - 1))
        .collect())
}

/// A1111 1.10 `sd_samplers_timesteps_impl.ddim`: walks `timesteps` from the last index down to 1 (so
/// `timesteps.len() - 1` model calls; the result sits at `alphas_cumprod[timesteps[0]]`, never evaluated there).
/// Per step: `x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t)`, `x = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s z`
/// with `a_prev = alphas_cumprod[timesteps[index - 1]]` (index 0 pads with timestep 0) and
/// `s = eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev))`. Like A1111 it draws `z` from `rng` every step,
/// even when eta = 0. `x` is the raw initial noise (no sigma scaling).
pub fn sample_ddim<E: EpsPredictor + ?Sized>(
    model: &mut E,
    mut x: Tensor,
    timesteps: &[usize],
    alphas_cumprod: &[f32],
    eta: f64,
    rng: &mut ImageRng,
    progress: Progress,
) -> Result<Tensor, SamplingError> {
    if timesteps.len() < 2 {
        return Err(SamplingError::BadSteps {
            steps: timesteps.len().saturating_sub(1),
        });
    }
    if let Some(bad) = timesteps.iter().find(|t| **t >= alphas_cumprod.len()) {
        return Err(SamplingError::BadSchedule {
            reason: format!(
                "DDIM timestep {bad} is outside the {} alphas",
                alphas_cumprod.len()
            ),
        });
    }
    check_batch(&x, rng)?;
    let total = timesteps.len() - 1;
    for i in 0..total {
        let index = total - i;
        let eps = model.predict_eps(&x, timesteps[index] as f64)?;
        let a_t = alphas_cumprod[timesteps[index]];
        let a_prev = alphas_cumprod[timesteps[index - 1]];
        let sigma_t = ddim_sigma(a_t, a_prev, eta) as f32;
        let sqrt_one_minus_at = (1.0 - a_t).sqrt();
        let pred_x0 = (x - eps.affine(sqrt_one_minus_at as f64, 0.0)?)?
            .affine(1.0 / a_t.sqrt() as f64, 0.0)?;
        let dir_coefficient = (1.0 - a_prev - sigma_t * sigma_t).sqrt();
        let dir_xt = eps.affine(dir_coefficient as f64, 0.0)?;
        let noise = rng
            .next_noise(pred_x0.device())?
            .affine(sigma_t as f64, 0.0)?;
        x = ((pred_x0.affine(a_prev.sqrt() as f64, 0.0)? + dir_xt)? + noise)?;
        progress(i + 1, total);
    }
    Ok(x)
}

/// The DDIM noise level, computed in f64 as A1111 does (numpy on the f32 alphas).
fn ddim_sigma(a_t: f32, a_prev: f32, eta: f64) -> f64 {
    let (a_t, a_prev) = (a_t as f64, a_prev as f64);
    eta * ((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)).sqrt()
}
