//! The txt2img pipeline: prompt conditioning, CFG denoiser, sampler loop and VAE decode, as AUTOMATIC1111 runs it.

use crate::model::clip::ClipTextModel;
use crate::model::unet::UNet2DConditionModel;
use crate::model::vae::AutoEncoderKL;
use crate::sampling::png_info::{latents_to_rgb8, GenerationParams};
use crate::sampling::rng::ImageRng;
use crate::sampling::samplers::{sample, Denoiser, EpsPredictor, SamplerName, SamplerSettings};
use crate::sampling::schedule::{DiscreteSchedule, ScheduleType};
use crate::sampling::SamplingError;
use crate::text::chunks::{tokenize_prompt, PromptChunk};
use crate::text::extra_networks::extract_extra_networks;
use crate::text::tokenizer::ClipTokenizer;
use crate::text::TextError;
use crate::weights::{Checkpoint, WeightsError};
use candle_core::{Device, Tensor};
use image::RgbImage;
use std::path::Path;

/// Everything that can go wrong while loading a model or rendering.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Weights(Box<WeightsError>),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    #[error("the prompt has extra-network tags ({0}) but LoRA loading is not implemented yet")]
    UnsupportedExtraNetwork(String),
    #[error("model computation failed: {0}")]
    Compute(#[from] candle_core::Error),
}

impl From<WeightsError> for PipelineError {
    fn from(error: WeightsError) -> Self {
        PipelineError::Weights(Box::new(error))
    }
}

/// One txt2img job: A1111's main settings.
#[derive(Debug, Clone)]
pub struct Txt2ImgRequest {
    pub prompt: String,
    pub negative: String,
    pub seed: u64,
    pub steps: usize,
    pub cfg: f64,
    pub sampler: SamplerName,
    pub width: usize,
    pub height: usize,
    pub clip_skip: usize,
    pub batch: usize,
}

/// One rendered image and the seed it was rendered with.
#[derive(Debug, Clone)]
pub struct RenderedImage {
    pub seed: u64,
    pub pixels: RgbImage,
}

impl Txt2ImgRequest {
    /// Checks the settings before any work is done.
    pub fn validate(&self) -> Result<(), PipelineError> {
        let invalid = |message: String| Err(PipelineError::InvalidSetting(message));
        if self.width == 0 || !self.width.is_multiple_of(8) {
            return invalid(format!(
                "width {} must be a positive multiple of 8",
                self.width
            ));
        }
        if self.height == 0 || !self.height.is_multiple_of(8) {
            return invalid(format!(
                "height {} must be a positive multiple of 8",
                self.height
            ));
        }
        if self.steps == 0 {
            return invalid("steps must be at least 1 (got 0)".into());
        }
        if !self.cfg.is_finite() {
            return invalid(format!("CFG scale {} is not a finite number", self.cfg));
        }
        if self.batch == 0 {
            return invalid("batch must be at least 1 (got 0)".into());
        }
        if self.clip_skip == 0 {
            return invalid("clip skip must be at least 1 (got 0)".into());
        }
        Ok(())
    }
}

/// A loaded SD1.5 model (text encoder, UNet, VAE) ready to render.
pub struct StableDiffusion {
    tokenizer: &'static ClipTokenizer,
    text_encoder: ClipTextModel,
    text_encoder_layers: usize,
    unet: UNet2DConditionModel,
    vae: AutoEncoderKL,
    vae_scaling: f64,
    schedule: DiscreteSchedule,
    model_hash: String,
    model_name: String,
    device: Device,
}

impl StableDiffusion {
    /// Opens a checkpoint (single file or diffusers folder), checks it is SD1.5 and builds the three models.
    pub fn load(path: &Path) -> Result<Self, PipelineError> {
        let checkpoint = Checkpoint::open(path)?;
        let device = Device::Cpu;
        let clip_config = checkpoint.clip_config();
        let vae_config = checkpoint.vae_config();
        Ok(StableDiffusion {
            tokenizer: ClipTokenizer::shared()?,
            text_encoder: ClipTextModel::load(checkpoint.text_encoder_vb(&device), &clip_config)?,
            text_encoder_layers: clip_config.num_hidden_layers,
            unet: UNet2DConditionModel::load(
                checkpoint.unet_vb(&device),
                &checkpoint.unet_config(),
            )?,
            vae: AutoEncoderKL::load(checkpoint.vae_vb(&device), &vae_config)?,
            vae_scaling: vae_config.scaling_factor,
            schedule: DiscreteSchedule::sd15(),
            model_hash: checkpoint.model_hash()?,
            model_name: checkpoint.name(),
            device,
        })
    }

    /// A1111's conditioning of one prompt (tags already removed): `[1, 77·chunks, hidden]`.
    ///
    /// Every 77-token chunk is encoded on its own, emphasis multiplies each token's vector and the chunk is
    /// rescaled to its original mean (emphasis mode "Original"), and the chunks are concatenated.
    pub fn encode_prompt(&self, prompt: &str, clip_skip: usize) -> Result<Tensor, PipelineError> {
        if clip_skip > self.text_encoder_layers {
            return Err(PipelineError::InvalidSetting(format!(
                "clip skip {clip_skip} is more than the text encoder's {} layers",
                self.text_encoder_layers
            )));
        }
        let chunks = tokenize_prompt(self.tokenizer, prompt)?;
        let encoded = chunks
            .iter()
            .map(|chunk| self.encode_chunk(chunk, clip_skip))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::cat(&encoded, 1)?)
    }

    fn encode_chunk(&self, chunk: &PromptChunk, clip_skip: usize) -> Result<Tensor, PipelineError> {
        let ids = Tensor::from_vec(chunk.tokens.to_vec(), (1, chunk.tokens.len()), &self.device)?;
        let z = self.text_encoder.forward(&ids, clip_skip)?;
        let original_mean = z.mean_all()?;
        let multipliers = Tensor::from_vec(
            chunk.multipliers.to_vec(),
            (1, chunk.multipliers.len(), 1),
            &self.device,
        )?;
        let z = z.broadcast_mul(&multipliers)?;
        let new_mean = z.mean_all()?;
        Ok(z.broadcast_mul(&(original_mean / new_mean)?)?)
    }

    /// Renders `request.batch` images (seeds `seed..seed+batch`) and decodes them to 8-bit RGB.
    pub fn txt2img(
        &self,
        request: &Txt2ImgRequest,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<RenderedImage>, PipelineError> {
        request.validate()?;
        let (prompt, tags) = extract_extra_networks(&request.prompt);
        let (negative, negative_tags) = extract_extra_networks(&request.negative);
        if let Some(tag) = tags.iter().chain(&negative_tags).next() {
            return Err(PipelineError::UnsupportedExtraNetwork(tag.to_tag_text()));
        }
        let cond = self.encode_prompt(&prompt, request.clip_skip)?;
        let uncond = self.encode_prompt(&negative, request.clip_skip)?;
        let latent = self.sample(request, &cond, &uncond, progress)?;
        let decoded = self
            .vae
            .decode(&latent.affine(1.0 / self.vae_scaling, 0.0)?)?;
        let seeds = ImageRng::batch_seeds(request.seed, request.batch);
        let pixels = latents_to_rgb8(&decoded)?;
        Ok(seeds
            .into_iter()
            .zip(pixels)
            .map(|(seed, pixels)| RenderedImage { seed, pixels })
            .collect())
    }

    fn sample(
        &self,
        request: &Txt2ImgRequest,
        cond: &Tensor,
        uncond: &Tensor,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor, PipelineError> {
        let seeds = ImageRng::batch_seeds(request.seed, request.batch);
        let mut rng = ImageRng::new(&seeds, [4, request.height / 8, request.width / 8])?;
        let mut model = GuidedUNet::new(self, cond, uncond, request)?;
        let settings = SamplerSettings::new(
            request.sampler,
            request.sampler.default_schedule(),
            request.steps,
        );
        Ok(sample(
            &mut model,
            &self.schedule,
            &settings,
            &mut rng,
            &self.device,
            progress,
        )?)
    }

    /// The A1111 infotext of image `index` of `request`.
    pub fn infotext(&self, request: &Txt2ImgRequest, index: usize) -> String {
        let params = GenerationParams {
            prompt: request.prompt.clone(),
            negative: request.negative.clone(),
            steps: request.steps,
            sampler: request.sampler.infotext_sampler().to_string(),
            schedule_type: request
                .sampler
                .infotext_schedule(ScheduleType::Automatic)
                .to_string(),
            cfg: request.cfg,
            seed: request.seed + index as u64,
            width: request.width as u32,
            height: request.height as u32,
            model_hash: Some(self.model_hash.clone()),
            model_name: Some(self.model_name.clone()),
            clip_skip: request.clip_skip as u32,
            rng: Some("CPU".to_string()),
            lora_hashes: Vec::new(),
            extra: Vec::new(),
            version: None,
        };
        params.to_infotext()
    }
}

/// The UNet with classifier-free guidance, in k-diffusion's (`Denoiser`) and A1111 DDIM's (`EpsPredictor`) forms.
struct GuidedUNet<'a> {
    model: &'a StableDiffusion,
    cond: Tensor,
    uncond: Tensor,
    cfg: f64,
}

impl<'a> GuidedUNet<'a> {
    fn new(
        model: &'a StableDiffusion,
        cond: &Tensor,
        uncond: &Tensor,
        request: &Txt2ImgRequest,
    ) -> Result<Self, PipelineError> {
        let batch = request.batch;
        Ok(GuidedUNet {
            model,
            cond: cond.repeat((batch, 1, 1))?,
            uncond: uncond.repeat((batch, 1, 1))?,
            cfg: request.cfg,
        })
    }

    /// `(eps_cond, eps_uncond)` for model input `x_in` at timestep `t`: one UNet call when the two conditionings
    /// have the same length, two calls otherwise (A1111's default, `pad_cond_uncond` off).
    fn eps_pair(&self, x_in: &Tensor, t: f64) -> candle_core::Result<(Tensor, Tensor)> {
        let unet = &self.model.unet;
        if self.cond.dim(1)? != self.uncond.dim(1)? {
            return Ok((
                unet.forward(x_in, t, &self.cond)?,
                unet.forward(x_in, t, &self.uncond)?,
            ));
        }
        let batch = x_in.dim(0)?;
        let x_both = Tensor::cat(&[x_in, x_in], 0)?;
        let context = Tensor::cat(&[&self.cond, &self.uncond], 0)?;
        let eps = unet.forward(&x_both, t, &context)?;
        Ok((eps.narrow(0, 0, batch)?, eps.narrow(0, batch, batch)?))
    }

    fn guide(&self, cond: &Tensor, uncond: &Tensor) -> candle_core::Result<Tensor> {
        uncond + ((cond - uncond)? * self.cfg)?
    }
}

impl Denoiser for GuidedUNet<'_> {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor, SamplingError> {
        let sigma32 = sigma as f32;
        let c_in = 1.0f32 / (sigma32 * sigma32 + 1.0).sqrt();
        let t = self.model.schedule.sigma_to_t(sigma);
        let (eps_cond, eps_uncond) = self.eps_pair(&x.affine(c_in as f64, 0.0)?, t)?;
        let denoised_cond = (x - eps_cond.affine(sigma32 as f64, 0.0)?)?;
        let denoised_uncond = (x - eps_uncond.affine(sigma32 as f64, 0.0)?)?;
        Ok(self.guide(&denoised_cond, &denoised_uncond)?)
    }
}

impl EpsPredictor for GuidedUNet<'_> {
    fn predict_eps(&mut self, x: &Tensor, timestep: f64) -> Result<Tensor, SamplingError> {
        let (eps_cond, eps_uncond) = self.eps_pair(x, timestep)?;
        Ok(self.guide(&eps_cond, &eps_uncond)?)
    }
}
