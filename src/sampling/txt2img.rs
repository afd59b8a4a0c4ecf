//! The txt2img pipeline: prompt conditioning, CFG denoiser, sampler loop and VAE decode, as AUTOMATIC1111 runs it.
//!
//! LoRAs: [`StableDiffusion::with_loras`] returns a copy of the model with LoRAs merged into (or attached to) the
//! weights; untouched tensors stay shared with the original, so dropping the copy removes them.
//! [`StableDiffusion::with_per_image_loras`] gives every image of a batch its own LoRAs and multipliers (unmerged
//! adapters). `<lora:name:…>` tags in the prompt must name LoRAs applied this way with the same multipliers (the
//! caller resolves them, see `lora::library::resolve_prompt_tags`); the infotext records them as A1111's
//! `Lora hashes`.

use crate::lora::apply::apply;
use crate::lora::library::{resolve_prompt_tags, LoraCache};
use crate::lora::LoraLibrary;
use crate::lora::{LoraError, LoraMode, LoraUse, ModelLayers, Part};
use crate::model::clip::ClipTextModel;
use crate::model::unet::UNet2DConditionModel;
use crate::model::vae::AutoEncoderKL;
use crate::sampling::png_info::{latents_to_rgb8, GenerationParams};
use crate::sampling::rng::{ImageRng, RngSource};
use crate::sampling::samplers::{sample, Denoiser, EpsPredictor, SamplerName, SamplerSettings};
use crate::sampling::schedule::{DiscreteSchedule, ScheduleType};
use crate::sampling::SamplingError;
use crate::text::chunks::{tokenize_prompt, PromptChunk};
use crate::text::extra_networks::{extract_extra_networks, lora_multipliers, ExtraNetworkTag};
use crate::text::tokenizer::ClipTokenizer;
use crate::text::TextError;
use crate::weights::{Checkpoint, WeightsError};
use candle_core::{Device, Tensor};
use image::RgbImage;
use std::path::Path;
use std::sync::Arc;

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
    #[error("the prompt has the extra-network tag {0}; only <lora:…> tags are supported, and not in the negative prompt")]
    UnsupportedExtraNetwork(String),
    #[error("prompt tag {tag} does not match any LoRA applied to the model ({applied}); resolve prompt tags with --lora-dir")]
    UnappliedLoraTag { tag: String, applied: String },
    #[error("{0}")]
    PerImageLoras(String),
    #[error(transparent)]
    Lora(Box<LoraError>),
    #[error("model computation failed: {0}")]
    Compute(#[from] candle_core::Error),
}

impl From<LoraError> for PipelineError {
    fn from(error: LoraError) -> Self {
        PipelineError::Lora(Box::new(error))
    }
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
    /// A1111's "Random number generator source" (default "GPU").
    pub rng: RngSource,
    /// A1111's eta noise seed delta ("ENSD"; 0 = off): after the initial noise, image i's generator is re-seeded
    /// with `seed + i + ensd`.
    pub ensd: u64,
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

/// A LoRA applied to a [`StableDiffusion`], as the infotext records it.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedLora {
    /// Name as mentioned in the prompt tag.
    pub name: String,
    pub te: f32,
    pub unet: f32,
    /// A1111's 12-digit short hash.
    pub short_hash: String,
}

/// A loaded SD1.5 model (text encoder, UNet, VAE) ready to render.
#[derive(Clone)]
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
    lora_layers: Arc<ModelLayers>,
    applied_loras: Vec<AppliedLora>,
    /// Set by [`StableDiffusion::with_per_image_loras`]: image i's LoRAs (the UNet carries them as adapters; the
    /// text encoder gets them per image while encoding).
    per_image_loras: Option<Vec<Vec<LoraUse>>>,
}

impl StableDiffusion {
    /// Opens a checkpoint (single file or diffusers folder), checks it is SD1.5 and builds the three models.
    pub fn load(path: &Path) -> Result<Self, PipelineError> {
        let checkpoint = Checkpoint::open(path)?;
        let device = Device::Cpu;
        let clip_config = checkpoint.clip_config();
        let vae_config = checkpoint.vae_config();
        let mut text_encoder =
            ClipTextModel::load(checkpoint.text_encoder_vb(&device), &clip_config)?;
        let mut unet =
            UNet2DConditionModel::load(checkpoint.unet_vb(&device), &checkpoint.unet_config())?;
        let lora_layers = Arc::new(ModelLayers::new(&mut unet, &mut text_encoder));
        Ok(StableDiffusion {
            tokenizer: ClipTokenizer::shared()?,
            text_encoder,
            text_encoder_layers: clip_config.num_hidden_layers,
            unet,
            vae: AutoEncoderKL::load(checkpoint.vae_vb(&device), &vae_config)?,
            vae_scaling: vae_config.scaling_factor,
            schedule: DiscreteSchedule::sd15(),
            model_hash: checkpoint.model_hash()?,
            model_name: checkpoint.name(),
            device,
            lora_layers,
            applied_loras: Vec::new(),
            per_image_loras: None,
        })
    }

    /// A copy of this model with `loras` applied on top of what is already applied (merged into the weights, or as
    /// unmerged adapters). Tensors no LoRA touches are shared with `self`.
    pub fn with_loras(&self, loras: &[LoraUse], mode: LoraMode) -> Result<Self, PipelineError> {
        let mut model = self.clone();
        let layers = &self.lora_layers;
        apply(
            &mut model.text_encoder,
            Part::TextEncoder,
            layers,
            loras,
            mode,
        )?;
        apply(&mut model.unet, Part::Unet, layers, loras, mode)?;
        for lora in loras {
            model.applied_loras.push(AppliedLora {
                name: lora.name.clone(),
                te: lora.te,
                unet: lora.unet,
                short_hash: lora.file.short_hash()?,
            });
        }
        Ok(model)
    }

    /// A copy of this model with the `<lora:NAME:…>` tags of `prompt` resolved in `library` (A1111's rule) and
    /// applied; files come from `cache`. Render the copy with the same prompt.
    pub fn with_prompt_loras(
        &self,
        prompt: &str,
        library: Option<&LoraLibrary>,
        cache: &LoraCache,
        mode: LoraMode,
    ) -> Result<Self, PipelineError> {
        let uses = resolve_prompt_tags(prompt, library)?
            .into_iter()
            .map(|tag| {
                Ok(LoraUse {
                    file: cache.open(&tag.path)?,
                    name: tag.name,
                    te: tag.te,
                    unet: tag.unet,
                })
            })
            .collect::<Result<Vec<_>, LoraError>>()?;
        if uses.is_empty() {
            return Ok(self.clone());
        }
        self.with_loras(&uses, mode)
    }

    /// A copy of this model where image `i` of a batch gets the LoRAs `per_image[i]` (unmerged adapters on shared
    /// base weights); render it with `batch == per_image.len()` and a prompt without `<lora:…>` tags.
    pub fn with_per_image_loras(
        &self,
        per_image: Vec<Vec<LoraUse>>,
    ) -> Result<Self, PipelineError> {
        if per_image.is_empty() {
            return Err(PipelineError::PerImageLoras(
                "per-image LoRAs need at least one image".into(),
            ));
        }
        let mut model = self.clone();
        crate::lora::apply::attach_per_image(
            &mut model.unet,
            Part::Unet,
            &self.lora_layers,
            &per_image,
        )?;
        model.per_image_loras = Some(per_image);
        Ok(model)
    }

    /// LoRAs applied with [`StableDiffusion::with_loras`], in order.
    pub fn applied_loras(&self) -> &[AppliedLora] {
        &self.applied_loras
    }

    /// The model's adaptable layers (for resolving LoRA files against it).
    pub fn lora_layers(&self) -> &ModelLayers {
        &self.lora_layers
    }

    /// Every `<lora:…>` tag must match an applied LoRA (name and multipliers); other tags are refused.
    fn check_prompt_tags(&self, tags: &[ExtraNetworkTag]) -> Result<(), PipelineError> {
        for tag in tags {
            if !crate::lora::library::is_lora_kind(&tag.kind) {
                return Err(PipelineError::UnsupportedExtraNetwork(tag.to_tag_text()));
            }
            let (te, unet) = lora_multipliers(tag)?;
            let applied = self
                .applied_loras
                .iter()
                .any(|a| a.name == tag.name && a.te == te && a.unet == unet);
            if !applied || self.per_image_loras.is_some() {
                let applied: Vec<String> = self
                    .applied_loras
                    .iter()
                    .map(|a| format!("{} te {} unet {}", a.name, a.te, a.unet))
                    .collect();
                return Err(PipelineError::UnappliedLoraTag {
                    tag: tag.to_tag_text(),
                    applied: if applied.is_empty() {
                        "none applied".to_string()
                    } else {
                        format!("applied: {}", applied.join(", "))
                    },
                });
            }
        }
        Ok(())
    }

    /// A1111's conditioning of one prompt (tags already removed): `[1, 77·chunks, hidden]`.
    ///
    /// Every 77-token chunk is encoded on its own, emphasis multiplies each token's vector and the chunk is
    /// rescaled to its original mean (emphasis mode "Original"), and the chunks are concatenated.
    pub fn encode_prompt(&self, prompt: &str, clip_skip: usize) -> Result<Tensor, PipelineError> {
        self.encode_prompt_with(&self.text_encoder, prompt, clip_skip)
    }

    fn encode_prompt_with(
        &self,
        text_encoder: &ClipTextModel,
        prompt: &str,
        clip_skip: usize,
    ) -> Result<Tensor, PipelineError> {
        if clip_skip > self.text_encoder_layers {
            return Err(PipelineError::InvalidSetting(format!(
                "clip skip {clip_skip} is more than the text encoder's {} layers",
                self.text_encoder_layers
            )));
        }
        let chunks = tokenize_prompt(self.tokenizer, prompt)?;
        let encoded = chunks
            .iter()
            .map(|chunk| self.encode_chunk(text_encoder, chunk, clip_skip))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::cat(&encoded, 1)?)
    }

    fn encode_chunk(
        &self,
        text_encoder: &ClipTextModel,
        chunk: &PromptChunk,
        clip_skip: usize,
    ) -> Result<Tensor, PipelineError> {
        let ids = Tensor::from_vec(chunk.tokens.to_vec(), (1, chunk.tokens.len()), &self.device)?;
        let z = text_encoder.forward(&ids, clip_skip)?;
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
        let (cond, uncond) = self.prompt_conditioning(request)?;
        self.txt2img_conditioned(request, &cond, &uncond, progress)
    }

    /// `(cond, uncond)` of `request`'s prompt and negative prompt, after checking their tags against the applied
    /// LoRAs: what [`StableDiffusion::txt2img`] computes first. Callers rendering many images with the same
    /// prompts and text-encoder LoRAs (a grid) compute it once and use [`StableDiffusion::txt2img_conditioned`].
    pub fn prompt_conditioning(
        &self,
        request: &Txt2ImgRequest,
    ) -> Result<(Tensor, Tensor), PipelineError> {
        request.validate()?;
        let (prompt, tags) = extract_extra_networks(&request.prompt);
        let (negative, negative_tags) = extract_extra_networks(&request.negative);
        if let Some(tag) = negative_tags.first() {
            return Err(PipelineError::UnsupportedExtraNetwork(tag.to_tag_text()));
        }
        self.check_prompt_tags(&tags)?;
        self.conditioning(request, &prompt, &negative)
    }

    /// [`StableDiffusion::txt2img`] with conditioning from [`StableDiffusion::prompt_conditioning`] (of a model
    /// whose text encoder carries the same LoRAs; the prompt's tags are not checked again).
    pub fn txt2img_conditioned(
        &self,
        request: &Txt2ImgRequest,
        cond: &Tensor,
        uncond: &Tensor,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<RenderedImage>, PipelineError> {
        request.validate()?;
        let latent = self.sample(request, cond, uncond, progress)?;
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

    /// `(cond, uncond)`: `[1, L, hidden]` each, or `[batch, L, hidden]` with per-image LoRAs.
    fn conditioning(
        &self,
        request: &Txt2ImgRequest,
        prompt: &str,
        negative: &str,
    ) -> Result<(Tensor, Tensor), PipelineError> {
        let Some(per_image) = &self.per_image_loras else {
            return Ok((
                self.encode_prompt(prompt, request.clip_skip)?,
                self.encode_prompt(negative, request.clip_skip)?,
            ));
        };
        if per_image.len() != request.batch {
            return Err(PipelineError::PerImageLoras(format!(
                "the model carries LoRAs for {} images but the batch is {}",
                per_image.len(),
                request.batch
            )));
        }
        let mut conds = Vec::with_capacity(per_image.len());
        let mut unconds = Vec::with_capacity(per_image.len());
        for uses in per_image {
            let mut text_encoder = self.text_encoder.clone();
            apply(
                &mut text_encoder,
                Part::TextEncoder,
                &self.lora_layers,
                uses,
                LoraMode::Unmerged,
            )?;
            conds.push(self.encode_prompt_with(&text_encoder, prompt, request.clip_skip)?);
            unconds.push(self.encode_prompt_with(&text_encoder, negative, request.clip_skip)?);
        }
        Ok((Tensor::cat(&conds, 0)?, Tensor::cat(&unconds, 0)?))
    }

    fn sample(
        &self,
        request: &Txt2ImgRequest,
        cond: &Tensor,
        uncond: &Tensor,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor, PipelineError> {
        let seeds = ImageRng::batch_seeds(request.seed, request.batch);
        let mut rng = ImageRng::with_source(
            request.rng,
            &seeds,
            [4, request.height / 8, request.width / 8],
            request.ensd,
        )?;
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
            ensd: request.sampler.infotext_ensd(request.ensd),
            rng: request.rng.infotext_value().map(str::to_string),
            lora_hashes: self.infotext_lora_hashes(index),
            extra: Vec::new(),
            version: None,
        };
        params.to_infotext()
    }
}

impl StableDiffusion {
    /// `(name, short hash)` pairs for the infotext of image `index`.
    fn infotext_lora_hashes(&self, index: usize) -> Vec<(String, String)> {
        match &self.per_image_loras {
            Some(per_image) => per_image
                .get(index)
                .map(|uses| {
                    uses.iter()
                        .filter_map(|u| Some((u.name.clone(), u.file.short_hash().ok()?)))
                        .collect()
                })
                .unwrap_or_default(),
            None => self
                .applied_loras
                .iter()
                .map(|a| (a.name.clone(), a.short_hash.clone()))
                .collect(),
        }
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
        let repeat = |t: &Tensor| -> candle_core::Result<Tensor> {
            if t.dim(0)? == batch {
                Ok(t.clone())
            } else {
                t.repeat((batch, 1, 1))
            }
        };
        Ok(GuidedUNet {
            model,
            cond: repeat(cond)?,
            uncond: repeat(uncond)?,
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
