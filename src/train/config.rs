//! kohya's TOML config file (`--config_file`, as the kohya GUI writes it for `train_network.py`) and the
//! resolved training settings.
//!
//! kohya reads the file with `toml.load`, folds every table one level deep into the top level (sections such as
//! `[model_arguments]` are only grouping) and uses the keys as argparse names; flags given on the command line
//! win over the file. Here the same, with checks kohya does not make:
//! * a key loraeval uses is type-checked (an error names the key, the file and what was expected);
//! * a kohya key loraeval does not use is reported in one warning, when its value does something (not `false`,
//!   `0`, `""` or `[]`); performance and logging keys (xformers, workers, log folders, …) are accepted silently;
//! * a key kohya does not know is an error naming it and the file (a typo would otherwise be ignored).
//!
//! Defaults are kohya's `train_network.py` argparse defaults, except `caption_extension` (`.txt`, as the kohya
//! GUI sets it; kohya's own default is `.caption`) and `resolution` (512, which kohya requires to be given).

use std::path::{Path, PathBuf};

/// Every option of kohya's training scripts (`add_argument("--…")` in `*train*.py` and `library/*.py` of
/// sd-scripts) and the keys the kohya GUI adds to the files it writes (`epoch`, `noise_offset_type`, …).
const KOHYA_KEYS: &str = "
adaptive_noise_scale ae alpha_mask apply_lg_attn_mask apply_t5_attn_mask async_upload attn_mode
base_weights base_weights_multiplier block_lr blocks_to_swap blockwise_fused_optimizers
bucket_no_upscale bucket_reso_steps byt5 cache_info cache_latents cache_latents_to_disk
cache_text_encoder_outputs cache_text_encoder_outputs_to_disk caption_dropout_every_n_epochs
caption_dropout_rate caption_extension caption_extention caption_prefix caption_separator
caption_suffix caption_tag_dropout_rate ckpt clip_g clip_g_dropout_rate clip_l clip_l_dropout_rate
clip_skip color_aug compile compile_backend cond_emb_dim conditioning_data_dir config_file
console_log_file console_log_level console_log_simple control_net_lr controlnet_model_name_or_path
cpu_offload_checkpointing cross_attn_lr dataset_class dataset_config dataset_repeats
ddp_gradient_as_bucket_view ddp_static_graph ddp_timeout debiased_estimation_loss debug_dataset
deepspeed diffusers_xformers dim_from_weights disable_mmap_load_safetensors discrete_flow_shift
double_blocks_to_swap dynamo_backend enable_bucket enable_scaled_pos_embed enable_wildcard epoch
face_crop_aug_range flip_aug flux1_checkbox fp16_master_weights_and_gradients fp8_base fp8_base_unet
fp8_scaled fp8_vl full_bf16 full_fp16 fused_backward_pass fused_optimizer_groups gemma2
gemma2_max_token_length gradient_accumulation_steps gradient_checkpointing guidance_scale highvram
huber_c huber_scale huber_schedule huggingface_path_in_repo huggingface_repo_id
huggingface_repo_type huggingface_repo_visibility huggingface_token in_json init_word initial_epoch
initial_step input_image_dir ip_noise_gamma ip_noise_gamma_random_strength keep_tokens
keep_tokens_separator learning_rate learning_rate_te learning_rate_te1 learning_rate_te2
learning_rate_te3 llm_adapter_lr llm_adapter_path log_config log_prefix log_tracker_config
log_tracker_name log_with logging_dir logit_mean logit_std loraplus_lr_ratio
loraplus_text_encoder_lr_ratio loraplus_unet_lr_ratio loss_type lowram lowvram lr_decay_steps
lr_scheduler lr_scheduler_args lr_scheduler_min_lr_ratio lr_scheduler_num_cycles lr_scheduler_power
lr_scheduler_timescale lr_scheduler_type lr_warmup_steps masked_loss max_bucket_reso
max_data_loader_n_workers max_grad_norm max_timestep max_token_length max_train_epochs
max_train_steps max_validation_steps mem_eff_attn mem_eff_save metadata_author metadata_description
metadata_is_negative_embedding metadata_license metadata_merged_from metadata_preprocessor
metadata_tags metadata_thumbnail metadata_title metadata_trigger_phrase metadata_usage_hint
min_bucket_reso min_snr_gamma min_timestep mixed_precision mlp_lr mod_lr mode_scale
model_prediction_type model_type multires_noise_discount multires_noise_iterations network_alpha
network_args network_dim network_dropout network_module network_train_text_encoder_only
network_train_unet_only network_weights no_half_vae no_metadata no_token_padding noise_offset
noise_offset_random_strength noise_offset_type num_last_block_to_freeze num_vectors_per_token
offload_optimizer_device offload_optimizer_nvme_path offload_param_device offload_param_nvme_path
optimizer_args optimizer_type output_config output_dir output_image_dir output_name
persistent_data_loader_workers pos_emb_random_crop_rate pretrained_model_name_or_path
prior_loss_weight qwen3 qwen3_max_token_length random_crop reg_data_dir resize_interpolation
resolution resume resume_from_huggingface sample_at_first sample_batch_size sample_every_n_epochs
sample_every_n_steps sample_prompts sample_sampler save_clip save_every_n_epochs save_every_n_steps
save_last_n_epochs save_last_n_epochs_state save_last_n_steps save_last_n_steps_state save_model_as
save_n_epoch_ratio save_precision save_state save_state_on_train_end save_state_to_huggingface
save_t5xxl scale_v_pred_loss_like_noise_pred scale_weight_norms sd3_checkbox sdpa sdxl
secondary_separator seed self_attn_lr shuffle_caption sigmoid_scale single_blocks_to_swap
skip_cache_check skip_latents_validity_check skip_until_initial_step split_attn split_mode
stop_text_encoder_training support_controlnet support_dreambooth support_dropout support_finetuning
system_prompt t5_dropout_rate t5_max_token_length t5_tokenizer_path t5xxl t5xxl_device t5xxl_dtype
t5xxl_max_token_length text_encoder text_encoder_batch_size text_encoder_cpu text_encoder_lr
timestep_sampling token_string token_warmup_min token_warmup_step tokenizer_cache_dir torch_compile
train_batch_size train_data_dir train_t5xxl train_text_encoder training_comment training_shift
unet_lr unsloth_offload_checkpointing use_8bit_adam use_flash_attn use_lion_optimizer
use_object_template use_safetensors use_sage_attn use_style_template use_t5xxl_cache_only v2
v_parameterization v_pred_like_loss vae vae_batch_size vae_chunk_size vae_disable_cache
validate_every_n_epochs validate_every_n_steps validation_seed validation_split wandb_api_key
wandb_run_name weighted_captions weighting_scheme weights xformers zero3_init_flag
zero3_save_16bit_model zero_stage zero_terminal_snr";

/// kohya keys that change nothing in loraeval's results (speed, memory, logging, the GUI's own bookkeeping):
/// accepted without a word. loraeval computes in f32 on its own kernels, so precision switches are here too.
const NO_EFFECT_KEYS: &str = "
xformers sdpa mem_eff_attn max_data_loader_n_workers persistent_data_loader_workers logging_dir log_with
log_prefix log_tracker_name log_tracker_config log_config wandb_api_key wandb_run_name dynamo_backend lowram
lowvram highvram cache_latents_to_disk cache_text_encoder_outputs cache_text_encoder_outputs_to_disk
vae_batch_size text_encoder_batch_size console_log_level console_log_file console_log_simple skip_cache_check
cache_info full_fp16 full_bf16 fp8_base fp8_base_unet no_half_vae ddp_timeout ddp_gradient_as_bucket_view
ddp_static_graph deepspeed zero_stage offload_optimizer_device offload_optimizer_nvme_path offload_param_device
offload_param_nvme_path zero3_init_flag zero3_save_16bit_model fp16_master_weights_and_gradients config_file
output_config torch_compile compile compile_backend disable_mmap_load_safetensors async_upload
noise_offset_type epoch sdxl sd3_checkbox flux1_checkbox";

/// Errors of config reading and settings resolution; each names the key and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: unknown key `{key}` (not an option of kohya's train_network.py){hint}")]
    UnknownKey {
        origin: String,
        key: String,
        hint: String,
    },
    #[error("{origin}: `{key}` must be {expected}, not {found}")]
    BadValue {
        origin: String,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("`{key}` is required: {why}")]
    Missing {
        key: &'static str,
        why: &'static str,
    },
    #[error("`{key}` = {value} is not supported: {why}")]
    Unsupported {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

/// `lr_warmup_steps`: a step count, or (a float below 1) a ratio of the total steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WarmupSteps {
    Steps(u64),
    Ratio(f64),
}

/// Settings as given (file or flags): `None` = not given. Field names are kohya's keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainConfig {
    pub pretrained_model_name_or_path: Option<String>,
    pub train_data_dir: Option<PathBuf>,
    pub reg_data_dir: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    pub output_name: Option<String>,
    pub dataset_config: Option<String>,
    pub max_train_epochs: Option<u64>,
    pub max_train_steps: Option<u64>,
    pub resolution: Option<(u32, u32)>,
    pub train_batch_size: Option<u32>,
    pub gradient_accumulation_steps: Option<u32>,
    pub network_module: Option<String>,
    pub network_dim: Option<u32>,
    pub network_alpha: Option<f64>,
    pub network_dropout: Option<f64>,
    pub network_args: Option<Vec<String>>,
    pub conv_dim: Option<u32>,
    pub conv_alpha: Option<f64>,
    pub network_train_unet_only: Option<bool>,
    pub network_train_text_encoder_only: Option<bool>,
    pub learning_rate: Option<f64>,
    pub unet_lr: Option<f64>,
    pub text_encoder_lr: Option<f64>,
    pub optimizer_type: Option<String>,
    pub optimizer_args: Option<Vec<String>>,
    pub lr_scheduler: Option<String>,
    pub lr_scheduler_num_cycles: Option<u32>,
    pub lr_scheduler_power: Option<f64>,
    pub lr_scheduler_args: Option<Vec<String>>,
    pub lr_warmup_steps: Option<WarmupSteps>,
    pub max_grad_norm: Option<f64>,
    pub save_every_n_epochs: Option<u64>,
    pub save_n_epoch_ratio: Option<u64>,
    pub save_precision: Option<String>,
    pub save_model_as: Option<String>,
    pub seed: Option<u64>,
    pub caption_extension: Option<String>,
    pub enable_wildcard: Option<bool>,
    pub shuffle_caption: Option<bool>,
    pub keep_tokens: Option<u32>,
    pub keep_tokens_separator: Option<String>,
    pub caption_separator: Option<String>,
    pub secondary_separator: Option<String>,
    pub caption_prefix: Option<String>,
    pub caption_suffix: Option<String>,
    pub caption_dropout_rate: Option<f64>,
    pub caption_dropout_every_n_epochs: Option<u32>,
    pub caption_tag_dropout_rate: Option<f64>,
    pub flip_aug: Option<bool>,
    pub enable_bucket: Option<bool>,
    pub min_bucket_reso: Option<u32>,
    pub max_bucket_reso: Option<u32>,
    pub bucket_reso_steps: Option<u32>,
    pub bucket_no_upscale: Option<bool>,
    pub noise_offset: Option<f64>,
    pub min_snr_gamma: Option<f64>,
    pub clip_skip: Option<u32>,
    pub mixed_precision: Option<String>,
    pub prior_loss_weight: Option<f64>,
    pub max_token_length: Option<u32>,
    pub training_comment: Option<String>,
    pub no_metadata: Option<bool>,
    pub gradient_checkpointing: Option<bool>,
    pub cache_latents: Option<bool>,
    pub v2: Option<bool>,
    pub v_parameterization: Option<bool>,
    pub metadata_title: Option<String>,
    pub metadata_author: Option<String>,
    pub metadata_description: Option<String>,
    pub metadata_license: Option<String>,
    pub metadata_tags: Option<String>,
}

/// What reading a file found besides the settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigReport {
    /// kohya keys with an active value that loraeval does not use (`key = value`).
    pub ignored: Vec<String>,
}

impl TrainConfig {
    /// Reads a kohya TOML config file (`.toml` is appended when the name lacks it, as kohya does).
    pub fn from_toml_file(path: &Path) -> Result<(TrainConfig, ConfigReport), ConfigError> {
        let path = if path.extension().is_some_and(|e| e == "toml") {
            path.to_path_buf()
        } else {
            PathBuf::from(format!("{}.toml", path.display()))
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        TrainConfig::from_toml_str(&text, &path)
    }

    /// Parses config text; `path` names it in messages.
    pub fn from_toml_str(
        text: &str,
        path: &Path,
    ) -> Result<(TrainConfig, ConfigReport), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let origin = path.display().to_string();
        let mut config = TrainConfig::default();
        let mut report = ConfigReport::default();
        for (key, value) in flatten_sections(table) {
            if config.set(&key, &value, &origin)? {
                continue;
            }
            if word_list(NO_EFFECT_KEYS).any(|k| k == key) {
                continue;
            }
            if word_list(KOHYA_KEYS).any(|k| k == key) {
                if is_active(&value) {
                    report.ignored.push(format!("{key} = {value}"));
                }
                continue;
            }
            return Err(unknown_key(&origin, &key));
        }
        Ok((config, report))
    }

    /// This config with every field `other` gives replaced (flags over the file).
    pub fn overridden_by(self, other: TrainConfig) -> TrainConfig {
        macro_rules! pick {
            ($($field:ident),* $(,)?) => {
                TrainConfig { $($field: other.$field.or(self.$field)),* }
            };
        }
        pick!(
            pretrained_model_name_or_path,
            train_data_dir,
            reg_data_dir,
            output_dir,
            output_name,
            dataset_config,
            max_train_epochs,
            max_train_steps,
            resolution,
            train_batch_size,
            gradient_accumulation_steps,
            network_module,
            network_dim,
            network_alpha,
            network_dropout,
            network_args,
            conv_dim,
            conv_alpha,
            network_train_unet_only,
            network_train_text_encoder_only,
            learning_rate,
            unet_lr,
            text_encoder_lr,
            optimizer_type,
            optimizer_args,
            lr_scheduler,
            lr_scheduler_num_cycles,
            lr_scheduler_power,
            lr_scheduler_args,
            lr_warmup_steps,
            max_grad_norm,
            save_every_n_epochs,
            save_n_epoch_ratio,
            save_precision,
            save_model_as,
            seed,
            caption_extension,
            enable_wildcard,
            shuffle_caption,
            keep_tokens,
            keep_tokens_separator,
            caption_separator,
            secondary_separator,
            caption_prefix,
            caption_suffix,
            caption_dropout_rate,
            caption_dropout_every_n_epochs,
            caption_tag_dropout_rate,
            flip_aug,
            enable_bucket,
            min_bucket_reso,
            max_bucket_reso,
            bucket_reso_steps,
            bucket_no_upscale,
            noise_offset,
            min_snr_gamma,
            clip_skip,
            mixed_precision,
            prior_loss_weight,
            max_token_length,
            training_comment,
            no_metadata,
            gradient_checkpointing,
            cache_latents,
            v2,
            v_parameterization,
            metadata_title,
            metadata_author,
            metadata_description,
            metadata_license,
            metadata_tags,
        )
    }

    /// Sets the field of `key` from a TOML value: `Ok(false)` when loraeval has no such field.
    fn set(&mut self, key: &str, v: &toml::Value, origin: &str) -> Result<bool, ConfigError> {
        let c = Convert { key, v, origin };
        match key {
            "pretrained_model_name_or_path" => {
                self.pretrained_model_name_or_path = Some(c.string()?)
            }
            "train_data_dir" => self.train_data_dir = Some(c.path()?),
            "reg_data_dir" => self.reg_data_dir = c.optional_path()?,
            "output_dir" => self.output_dir = Some(c.path()?),
            "output_name" => self.output_name = Some(c.string()?),
            "dataset_config" => self.dataset_config = Some(c.string()?).filter(|s| !s.is_empty()),
            "max_train_epochs" => self.max_train_epochs = Some(c.uint()?),
            "max_train_steps" => self.max_train_steps = Some(c.uint()?),
            "resolution" => self.resolution = Some(c.resolution()?),
            "train_batch_size" => self.train_batch_size = Some(c.u32()?),
            "gradient_accumulation_steps" => self.gradient_accumulation_steps = Some(c.u32()?),
            "network_module" => self.network_module = Some(c.string()?),
            "network_dim" => self.network_dim = Some(c.u32()?),
            "network_alpha" => self.network_alpha = Some(c.float()?),
            "network_dropout" => self.network_dropout = Some(c.float()?),
            "network_args" => self.network_args = Some(c.strings()?),
            "conv_dim" => self.conv_dim = Some(c.u32()?),
            "conv_alpha" => self.conv_alpha = Some(c.float()?),
            "network_train_unet_only" => self.network_train_unet_only = Some(c.bool()?),
            "network_train_text_encoder_only" => {
                self.network_train_text_encoder_only = Some(c.bool()?)
            }
            "learning_rate" => self.learning_rate = Some(c.float()?),
            "unet_lr" => self.unet_lr = Some(c.float()?),
            "text_encoder_lr" => self.text_encoder_lr = c.first_float()?,
            "optimizer_type" => self.optimizer_type = Some(c.string()?),
            "optimizer_args" => self.optimizer_args = Some(c.strings()?),
            "lr_scheduler" => self.lr_scheduler = Some(c.string()?),
            "lr_scheduler_num_cycles" => self.lr_scheduler_num_cycles = Some(c.u32()?),
            "lr_scheduler_power" => self.lr_scheduler_power = Some(c.float()?),
            "lr_scheduler_args" => self.lr_scheduler_args = Some(c.strings()?),
            "lr_warmup_steps" => self.lr_warmup_steps = Some(c.warmup()?),
            "max_grad_norm" => self.max_grad_norm = Some(c.float()?),
            "save_every_n_epochs" => self.save_every_n_epochs = Some(c.uint()?),
            "save_n_epoch_ratio" => self.save_n_epoch_ratio = Some(c.uint()?),
            "save_precision" => self.save_precision = Some(c.string()?),
            "save_model_as" => self.save_model_as = Some(c.string()?),
            "seed" => self.seed = Some(c.uint()?),
            "caption_extension" | "caption_extention" => self.caption_extension = Some(c.string()?),
            "enable_wildcard" => self.enable_wildcard = Some(c.bool()?),
            "shuffle_caption" => self.shuffle_caption = Some(c.bool()?),
            "keep_tokens" => self.keep_tokens = Some(c.u32()?),
            "keep_tokens_separator" => self.keep_tokens_separator = Some(c.string()?),
            "caption_separator" => self.caption_separator = Some(c.string()?),
            "secondary_separator" => self.secondary_separator = Some(c.string()?),
            "caption_prefix" => self.caption_prefix = Some(c.string()?),
            "caption_suffix" => self.caption_suffix = Some(c.string()?),
            "caption_dropout_rate" => self.caption_dropout_rate = Some(c.float()?),
            "caption_dropout_every_n_epochs" => {
                self.caption_dropout_every_n_epochs = Some(c.u32()?)
            }
            "caption_tag_dropout_rate" => self.caption_tag_dropout_rate = Some(c.float()?),
            "flip_aug" => self.flip_aug = Some(c.bool()?),
            "enable_bucket" => self.enable_bucket = Some(c.bool()?),
            "min_bucket_reso" => self.min_bucket_reso = Some(c.u32()?),
            "max_bucket_reso" => self.max_bucket_reso = Some(c.u32()?),
            "bucket_reso_steps" => self.bucket_reso_steps = Some(c.u32()?),
            "bucket_no_upscale" => self.bucket_no_upscale = Some(c.bool()?),
            "noise_offset" => self.noise_offset = Some(c.float()?),
            "min_snr_gamma" => self.min_snr_gamma = Some(c.float()?),
            "clip_skip" => self.clip_skip = Some(c.u32()?),
            "mixed_precision" => self.mixed_precision = Some(c.string()?),
            "prior_loss_weight" => self.prior_loss_weight = Some(c.float()?),
            "max_token_length" => self.max_token_length = Some(c.u32()?),
            "training_comment" => self.training_comment = Some(c.string()?),
            "no_metadata" => self.no_metadata = Some(c.bool()?),
            "gradient_checkpointing" => self.gradient_checkpointing = Some(c.bool()?),
            "cache_latents" => self.cache_latents = Some(c.bool()?),
            "v2" => self.v2 = Some(c.bool()?),
            "v_parameterization" => self.v_parameterization = Some(c.bool()?),
            "metadata_title" => self.metadata_title = Some(c.string()?),
            "metadata_author" => self.metadata_author = Some(c.string()?),
            "metadata_description" => self.metadata_description = Some(c.string()?),
            "metadata_license" => self.metadata_license = Some(c.string()?),
            "metadata_tags" => self.metadata_tags = Some(c.string()?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn word_list(words: &'static str) -> impl Iterator<Item = &'static str> {
    words.split_whitespace()
}

/// kohya's folding: a table's keys move to the top level (one level deep); other values stay.
fn flatten_sections(table: toml::Table) -> Vec<(String, toml::Value)> {
    let mut flat = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(section) => flat.extend(section),
            value => flat.push((key, value)),
        }
    }
    flat
}

/// A value that does something: not `false`, `0`, `""`, `[]` or an empty table.
fn is_active(value: &toml::Value) -> bool {
    match value {
        toml::Value::Boolean(b) => *b,
        toml::Value::Integer(i) => *i != 0,
        toml::Value::Float(f) => *f != 0.0,
        toml::Value::String(s) => !s.is_empty(),
        toml::Value::Array(a) => !a.is_empty(),
        toml::Value::Table(t) => !t.is_empty(),
        toml::Value::Datetime(_) => true,
    }
}

fn unknown_key(origin: &str, key: &str) -> ConfigError {
    let nearest = word_list(KOHYA_KEYS)
        .chain(word_list(NO_EFFECT_KEYS))
        .chain(["conv_dim", "conv_alpha"])
        .map(|k| (edit_distance(k, key), k))
        .min();
    let hint = match nearest {
        Some((d, k)) if d <= 3 => format!("; did you mean `{k}`?"),
        _ => String::new(),
    };
    ConfigError::UnknownKey {
        origin: origin.to_string(),
        key: key.to_string(),
        hint,
    }
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// Typed reading of one value, with errors naming the key.
struct Convert<'a> {
    key: &'a str,
    v: &'a toml::Value,
    origin: &'a str,
}

impl Convert<'_> {
    fn bad(&self, expected: &'static str) -> ConfigError {
        ConfigError::BadValue {
            origin: self.origin.to_string(),
            key: self.key.to_string(),
            expected,
            found: self.v.to_string(),
        }
    }

    fn string(&self) -> Result<String, ConfigError> {
        self.v
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.bad("a string"))
    }

    fn path(&self) -> Result<PathBuf, ConfigError> {
        self.string().map(PathBuf::from)
    }

    fn optional_path(&self) -> Result<Option<PathBuf>, ConfigError> {
        Ok(Some(self.string()?)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from))
    }

    fn bool(&self) -> Result<bool, ConfigError> {
        self.v.as_bool().ok_or_else(|| self.bad("true or false"))
    }

    fn uint(&self) -> Result<u64, ConfigError> {
        self.v
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| self.bad("a whole number, 0 or more"))
    }

    fn u32(&self) -> Result<u32, ConfigError> {
        u32::try_from(self.uint()?).map_err(|_| self.bad("a whole number below 2^32"))
    }

    fn float(&self) -> Result<f64, ConfigError> {
        match self.v {
            toml::Value::Float(f) => Ok(*f),
            toml::Value::Integer(i) => Ok(*i as f64),
            _ => Err(self.bad("a number")),
        }
    }

    /// A number, or a list of numbers of which the first counts (kohya's `text_encoder_lr` list).
    fn first_float(&self) -> Result<Option<f64>, ConfigError> {
        match self.v {
            toml::Value::Array(items) => items
                .first()
                .map(|first| Convert { v: first, ..*self }.float())
                .transpose(),
            _ => self.float().map(Some),
        }
    }

    /// A list of strings, or one string of space-separated items.
    fn strings(&self) -> Result<Vec<String>, ConfigError> {
        match self.v {
            toml::Value::String(s) => Ok(s.split_whitespace().map(str::to_string).collect()),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.bad("a list of strings"))
                })
                .collect(),
            _ => Err(self.bad("a list of strings")),
        }
    }

    fn resolution(&self) -> Result<(u32, u32), ConfigError> {
        let text = match self.v {
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::String(s) => s.clone(),
            _ => return Err(self.bad("\"W,H\" or \"SIZE\"")),
        };
        parse_resolution(&text)
            .ok_or_else(|| self.bad("\"W,H\" or \"SIZE\" (positive whole numbers)"))
    }

    fn warmup(&self) -> Result<WarmupSteps, ConfigError> {
        match self.v {
            toml::Value::Integer(_) => self.uint().map(WarmupSteps::Steps),
            toml::Value::Float(f) if (0.0..1.0).contains(f) => Ok(WarmupSteps::Ratio(*f)),
            _ => Err(self.bad("a step count, or a ratio of the total steps below 1")),
        }
    }
}

/// kohya's resolution text: `"W,H"` or `"SIZE"` (both sides SIZE).
pub fn parse_resolution(text: &str) -> Option<(u32, u32)> {
    let parts: Vec<u32> = text
        .split(',')
        .map(|p| p.trim().parse::<u32>().ok().filter(|v| *v > 0))
        .collect::<Option<_>>()?;
    match parts[..] {
        [size] => Some((size, size)),
        [w, h] => Some((w, h)),
        _ => None,
    }
}
