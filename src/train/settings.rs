//! Resolved training settings: a [`TrainConfig`] (file and flags) with kohya's defaults filled in and the
//! combinations loraeval cannot train refused.

use std::path::PathBuf;

use super::buckets::BucketSettings;
use super::config::{ConfigError, TrainConfig, WarmupSteps};
use super::dataset::{CaptionOptions, ScanOptions};
use super::plan::PlanSettings;

/// The LoRA network (kohya's `network_*` options).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSettings {
    /// Always `networks.lora`.
    pub module: String,
    /// As given (`ss_network_dim` records `None` when not given; the network then uses 4).
    pub dim: Option<u32>,
    pub alpha: f64,
    pub dropout: Option<f64>,
    /// `network_args` as `key=value` pairs, in order (`conv_dim`, `conv_alpha`, …).
    pub args: Vec<(String, String)>,
    pub train_unet_only: bool,
    pub train_text_encoder_only: bool,
}

impl NetworkSettings {
    /// The rank the network uses (kohya `create_network`: 4 when not given).
    pub fn effective_dim(&self) -> u32 {
        self.dim.unwrap_or(4)
    }

    /// `conv_dim` from the network args (LoCon 3×3 convolutions), if set.
    pub fn conv_dim(&self) -> Option<u32> {
        self.arg("conv_dim").and_then(|v| v.trim().parse().ok())
    }

    /// `conv_alpha` from the network args; 1.0 when `conv_dim` is set without it (kohya).
    pub fn conv_alpha(&self) -> Option<f64> {
        let given = self.arg("conv_alpha").and_then(|v| v.trim().parse().ok());
        self.conv_dim().map(|_| given.unwrap_or(1.0))
    }

    fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Optimizer and learning-rate schedule (kohya's names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerSettings {
    pub learning_rate: f64,
    pub unet_lr: Option<f64>,
    pub text_encoder_lr: Option<f64>,
    /// As given; empty means AdamW.
    pub optimizer_type: String,
    pub optimizer_args: Vec<String>,
    pub lr_scheduler: String,
    pub lr_scheduler_num_cycles: u32,
    pub lr_scheduler_power: f64,
    pub lr_scheduler_args: Vec<String>,
    pub lr_warmup_steps: WarmupSteps,
    pub max_grad_norm: f64,
}

impl OptimizerSettings {
    /// `ss_optimizer` as kohya writes it: the optimizer class's module and name, then `(key=value,…)` when
    /// optimizer args are given. Unknown types are written as given.
    pub fn kohya_name(&self) -> String {
        let class = match self.optimizer_type.to_lowercase().as_str() {
            "" | "adamw" => "torch.optim.adamw.AdamW".to_string(),
            "adamw8bit" => "bitsandbytes.optim.adamw.AdamW8bit".to_string(),
            "lion" => "lion_pytorch.lion_pytorch.Lion".to_string(),
            "sgdnesterov" => "torch.optim.sgd.SGD".to_string(),
            "prodigy" => "prodigyopt.prodigy.Prodigy".to_string(),
            "adafactor" => "transformers.optimization.Adafactor".to_string(),
            "dadaptadam" => "dadaptation.dadapt_adam.DAdaptAdam".to_string(),
            _ => self.optimizer_type.clone(),
        };
        if self.optimizer_args.is_empty() {
            class
        } else {
            format!("{class}({})", self.optimizer_args.join(","))
        }
    }
}

/// ModelSpec texts (kohya's `metadata_*` options).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSpecTexts {
    pub title: Option<String>,
    pub author: Option<String>,
    pub description: Option<String>,
    pub license: Option<String>,
    pub tags: Option<String>,
}

/// Everything a run needs, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSettings {
    pub pretrained_model_name_or_path: Option<String>,
    pub train_data_dir: PathBuf,
    pub reg_data_dir: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    pub output_name: Option<String>,
    pub resolution: (u32, u32),
    pub plan: PlanSettings,
    pub scan: ScanOptions,
    pub caption: CaptionOptions,
    pub flip_aug: bool,
    pub network: NetworkSettings,
    pub optimizer: OptimizerSettings,
    /// kohya draws a random seed when none is given; so does the caller.
    pub seed: Option<u64>,
    pub noise_offset: Option<f64>,
    pub min_snr_gamma: Option<f64>,
    pub clip_skip: Option<u32>,
    pub mixed_precision: String,
    pub save_precision: Option<String>,
    pub prior_loss_weight: f64,
    pub max_token_length: Option<u32>,
    pub training_comment: Option<String>,
    pub no_metadata: bool,
    pub gradient_checkpointing: bool,
    pub cache_latents: bool,
    pub model_spec: ModelSpecTexts,
}

impl TrainConfig {
    /// Fills kohya's defaults and refuses what loraeval cannot train.
    pub fn resolve(&self) -> Result<TrainSettings, ConfigError> {
        self.refuse_unsupported()?;
        let train_data_dir = self.train_data_dir.clone().ok_or(ConfigError::Missing {
            key: "train_data_dir",
            why: "the folder of NN_name image folders (--train-data-dir or train_data_dir in the config)",
        })?;
        let resolution = self.resolution.unwrap_or((512, 512));
        Ok(TrainSettings {
            pretrained_model_name_or_path: self.pretrained_model_name_or_path.clone(),
            train_data_dir,
            reg_data_dir: self.reg_data_dir.clone(),
            output_dir: self.output_dir.clone(),
            output_name: self.output_name.clone(),
            resolution,
            plan: self.plan_settings(resolution),
            scan: ScanOptions {
                caption_extension: self.caption_extension.clone().unwrap_or(".txt".into()),
                enable_wildcard: self.enable_wildcard.unwrap_or(false),
            },
            caption: self.caption_options(),
            flip_aug: self.flip_aug.unwrap_or(false),
            network: self.network_settings()?,
            optimizer: self.optimizer_settings(),
            seed: self.seed,
            noise_offset: self.noise_offset,
            min_snr_gamma: self.min_snr_gamma,
            clip_skip: self.clip_skip,
            mixed_precision: self.mixed_precision.clone().unwrap_or("no".into()),
            save_precision: self.save_precision.clone(),
            prior_loss_weight: self.prior_loss_weight.unwrap_or(1.0),
            max_token_length: self.max_token_length,
            training_comment: self.training_comment.clone(),
            no_metadata: self.no_metadata.unwrap_or(false),
            gradient_checkpointing: self.gradient_checkpointing.unwrap_or(false),
            cache_latents: self.cache_latents.unwrap_or(false),
            model_spec: ModelSpecTexts {
                title: self.metadata_title.clone(),
                author: self.metadata_author.clone(),
                description: self.metadata_description.clone(),
                license: self.metadata_license.clone(),
                tags: self.metadata_tags.clone(),
            },
        })
    }

    fn refuse_unsupported(&self) -> Result<(), ConfigError> {
        let refuse = |key, value: String, why| Err(ConfigError::Unsupported { key, value, why });
        if let Some(path) = &self.dataset_config {
            return refuse(
                "dataset_config",
                path.clone(),
                "use train_data_dir with NN_name folders",
            );
        }
        if self.v2 == Some(true) || self.v_parameterization == Some(true) {
            return refuse(
                "v2/v_parameterization",
                "true".into(),
                "loraeval trains SD1.5 (ε prediction)",
            );
        }
        if let Some(module) = self
            .network_module
            .as_deref()
            .filter(|m| *m != "networks.lora")
        {
            return refuse(
                "network_module",
                module.into(),
                "only networks.lora (LoRA/LoCon) is trained",
            );
        }
        if let Some(format) = self
            .save_model_as
            .as_deref()
            .filter(|f| *f != "safetensors")
        {
            return refuse(
                "save_model_as",
                format.into(),
                "LoRAs are saved as .safetensors",
            );
        }
        let precisions = ["no", "fp16", "bf16"];
        if let Some(p) = self
            .mixed_precision
            .as_deref()
            .filter(|p| !precisions.contains(p))
        {
            return refuse(
                "mixed_precision",
                p.into(),
                "kohya accepts no, fp16 or bf16",
            );
        }
        if let Some(p) = self
            .save_precision
            .as_deref()
            .filter(|p| !["float", "fp16", "bf16"].contains(p))
        {
            return refuse(
                "save_precision",
                p.into(),
                "kohya accepts float, fp16 or bf16",
            );
        }
        if let Some(n) = self
            .max_token_length
            .filter(|n| ![75, 150, 225].contains(n))
        {
            return refuse(
                "max_token_length",
                n.to_string(),
                "kohya accepts 150 or 225 (75 by default)",
            );
        }
        Ok(())
    }

    fn plan_settings(&self, resolution: (u32, u32)) -> PlanSettings {
        let defaults = BucketSettings::new(resolution);
        PlanSettings {
            train_batch_size: self.train_batch_size.unwrap_or(1),
            gradient_accumulation_steps: self.gradient_accumulation_steps.unwrap_or(1),
            max_train_steps: self.max_train_steps.unwrap_or(1600),
            max_train_epochs: self.max_train_epochs,
            save_every_n_epochs: self.save_every_n_epochs,
            save_n_epoch_ratio: self.save_n_epoch_ratio,
            buckets: BucketSettings {
                enable: self.enable_bucket.unwrap_or(false),
                resolution,
                min_reso: self.min_bucket_reso.unwrap_or(defaults.min_reso),
                max_reso: self.max_bucket_reso.unwrap_or(defaults.max_reso),
                reso_steps: self.bucket_reso_steps.unwrap_or(defaults.reso_steps),
                no_upscale: self.bucket_no_upscale.unwrap_or(false),
            },
            output_name: self.output_name.clone(),
        }
    }

    fn caption_options(&self) -> CaptionOptions {
        CaptionOptions {
            shuffle_caption: self.shuffle_caption.unwrap_or(false),
            keep_tokens: self.keep_tokens.unwrap_or(0) as usize,
            keep_tokens_separator: self.keep_tokens_separator.clone().unwrap_or_default(),
            caption_separator: self.caption_separator.clone().unwrap_or(",".into()),
            secondary_separator: self.secondary_separator.clone(),
            caption_prefix: self.caption_prefix.clone(),
            caption_suffix: self.caption_suffix.clone(),
            caption_dropout_rate: self.caption_dropout_rate.unwrap_or(0.0),
            caption_dropout_every_n_epochs: self.caption_dropout_every_n_epochs.unwrap_or(0),
            caption_tag_dropout_rate: self.caption_tag_dropout_rate.unwrap_or(0.0),
        }
    }

    fn network_settings(&self) -> Result<NetworkSettings, ConfigError> {
        let mut args = Vec::new();
        for arg in self.network_args.iter().flatten() {
            let Some((k, v)) = arg.split_once('=') else {
                return Err(ConfigError::BadValue {
                    origin: "network_args".into(),
                    key: "network_args".into(),
                    expected: "key=value items",
                    found: arg.clone(),
                });
            };
            args.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut set_arg = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                args.retain(|(k, _)| k != key);
                args.push((key.to_string(), value));
            }
        };
        set_arg("conv_dim", self.conv_dim.map(|d| d.to_string()));
        set_arg("conv_alpha", self.conv_alpha.map(|a| a.to_string()));
        Ok(NetworkSettings {
            module: "networks.lora".to_string(),
            dim: self.network_dim,
            alpha: self.network_alpha.unwrap_or(1.0),
            dropout: self.network_dropout,
            args,
            train_unet_only: self.network_train_unet_only.unwrap_or(false),
            train_text_encoder_only: self.network_train_text_encoder_only.unwrap_or(false),
        })
    }

    fn optimizer_settings(&self) -> OptimizerSettings {
        OptimizerSettings {
            learning_rate: self.learning_rate.unwrap_or(2e-6),
            unet_lr: self.unet_lr,
            text_encoder_lr: self.text_encoder_lr,
            optimizer_type: self.optimizer_type.clone().unwrap_or_default(),
            optimizer_args: self.optimizer_args.clone().unwrap_or_default(),
            lr_scheduler: self.lr_scheduler.clone().unwrap_or("constant".into()),
            lr_scheduler_num_cycles: self.lr_scheduler_num_cycles.unwrap_or(1),
            lr_scheduler_power: self.lr_scheduler_power.unwrap_or(1.0),
            lr_scheduler_args: self.lr_scheduler_args.clone().unwrap_or_default(),
            lr_warmup_steps: self.lr_warmup_steps.unwrap_or(WarmupSteps::Steps(0)),
            max_grad_norm: self.max_grad_norm.unwrap_or(1.0),
        }
    }
}
