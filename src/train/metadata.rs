//! The `__metadata__` of a LoRA file as kohya's `train_network.py` writes it: the `ss_*` training record (one
//! dict built before training; `ss_training_finished_at`, `ss_steps` and `ss_epoch` set at each save), then the
//! ModelSpec `modelspec.*` keys (`library/sai_model_spec.py` `build_metadata`). Every value is Python's
//! `str()` of kohya's value (`None`, `True`, `1e-05`, `(512, 512)`), JSON where kohya calls `json.dumps`.
//!
//! This is the non-`dataset_config` branch of kohya (train_data_dir folders): `ss_dataset_dirs`,
//! `ss_reg_dataset_dirs`, `ss_tag_frequency` and `ss_bucket_info` as JSON, no `ss_datasets`. Where loraeval has
//! no such option the value is kohya's default (`ss_loss_type` = `l2`, `ss_huber_c` = `0.1`, …).
//! `ss_sd_scripts_commit_hash` names loraeval and its version instead of an sd-scripts commit.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::dataset::Dataset;
use super::plan::{PlannedSave, TrainPlan};
use super::pyfmt::{self, PyValue};
use super::settings::TrainSettings;

/// `(key, value)` pairs in kohya's order.
pub type Metadata = Vec<(String, String)>;

/// kohya's `SS_METADATA_MINIMUM_KEYS`: what `--no_metadata` keeps.
pub const MINIMUM_KEYS: [&str; 6] = [
    "ss_v2",
    "ss_base_model_version",
    "ss_network_module",
    "ss_network_dim",
    "ss_network_alpha",
    "ss_network_args",
];

/// What identifies one training run (the same in every file it writes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunIdentity {
    /// kohya: `random.randint(0, 2**32)`.
    pub session_id: u64,
    /// Unix time in seconds.
    pub training_started_at: f64,
    /// The seed used (kohya draws one when none is given).
    pub seed: u64,
}

/// The base model as kohya records it: the name (file name when it exists), and for a file its legacy hash
/// (first 8 hex of the SHA-256 of 64 KiB at 1 MiB) and full SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseModel {
    pub name: String,
    pub legacy_hash: Option<String>,
    pub sha256: Option<String>,
}

impl BaseModel {
    /// Hashes `path_or_name` when it is a file (kohya `model_hash`, `calculate_sha256`); else keeps the name.
    pub fn describe(path_or_name: &str) -> std::io::Result<BaseModel> {
        let path = Path::new(path_or_name);
        if !path.is_file() {
            return Ok(BaseModel {
                name: path_or_name.to_string(),
                legacy_hash: None,
                sha256: None,
            });
        }
        let mut file = std::fs::File::open(path)?;
        let legacy = legacy_hash_of(&mut file)?;
        file.seek(SeekFrom::Start(0))?;
        let sha256 = crate::weights::sha256_hex_of_reader(file)?;
        Ok(BaseModel {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            legacy_hash: Some(legacy),
            sha256: Some(sha256),
        })
    }
}

/// First 8 hex digits of the SHA-256 of bytes 0x100000..0x110000 (fewer, or none, for shorter files).
fn legacy_hash_of(reader: &mut (impl Read + Seek)) -> std::io::Result<String> {
    let mut block = Vec::with_capacity(0x10000);
    reader.seek(SeekFrom::Start(0x100000))?;
    reader.take(0x10000).read_to_end(&mut block)?;
    let digest = Sha256::digest(&block);
    Ok(digest.iter().take(4).map(|b| format!("{b:02x}")).collect())
}

/// Everything a run knows when training starts.
pub struct MetadataInputs<'a> {
    pub settings: &'a TrainSettings,
    pub plan: &'a TrainPlan,
    pub dataset: &'a Dataset,
    pub run: RunIdentity,
    pub base_model: Option<&'a BaseModel>,
}

/// kohya's `ss_*` dict before the first save (values as `str()`).
pub fn training_metadata(inputs: &MetadataInputs<'_>) -> Metadata {
    let mut m = Metadata::new();
    let mut put = |k: &str, v: String| m.push((k.to_string(), v));
    run_keys(inputs, &mut put);
    network_and_noise_keys(inputs.settings, &mut put);
    caption_and_loss_keys(inputs.settings, &mut put);
    dataset_keys(inputs, &mut put);
    if !inputs.settings.network.args.is_empty() {
        put("ss_network_args", network_args_json(inputs.settings));
    }
    if let Some(base) = inputs.base_model {
        if let (Some(legacy), Some(sha)) = (&base.legacy_hash, &base.sha256) {
            put("ss_sd_model_hash", legacy.clone());
            put("ss_new_sd_model_hash", sha.clone());
        }
        put("ss_sd_model_name", base.name.clone());
    }
    m
}

fn run_keys(inputs: &MetadataInputs<'_>, put: &mut impl FnMut(&str, String)) {
    let s = inputs.settings;
    let p = inputs.plan;
    let f = |x: Option<f64>| pyfmt::opt(x, pyfmt::float);
    put("ss_session_id", inputs.run.session_id.to_string());
    put(
        "ss_training_started_at",
        pyfmt::float(inputs.run.training_started_at),
    );
    put("ss_output_name", pyfmt::opt(s.output_name.clone(), |n| n));
    put("ss_learning_rate", pyfmt::float(s.optimizer.learning_rate));
    put("ss_text_encoder_lr", f(s.optimizer.text_encoder_lr));
    put("ss_unet_lr", f(s.optimizer.unet_lr));
    put("ss_num_train_images", p.num_train_images.to_string());
    put("ss_num_validation_images", "0".into());
    put("ss_num_reg_images", p.num_reg_images.to_string());
    put("ss_num_batches_per_epoch", p.batches_per_epoch.to_string());
    put("ss_num_epochs", p.num_epochs.to_string());
    put(
        "ss_gradient_checkpointing",
        pyfmt::bool(s.gradient_checkpointing),
    );
    put(
        "ss_gradient_accumulation_steps",
        p.gradient_accumulation_steps.to_string(),
    );
    put("ss_max_train_steps", p.max_train_steps.to_string());
    put("ss_lr_warmup_steps", warmup_text(s));
    put("ss_lr_scheduler", s.optimizer.lr_scheduler.clone());
}

fn warmup_text(s: &TrainSettings) -> String {
    match s.optimizer.lr_warmup_steps {
        super::config::WarmupSteps::Steps(n) => n.to_string(),
        super::config::WarmupSteps::Ratio(r) => pyfmt::float(r),
    }
}

fn network_and_noise_keys(s: &TrainSettings, put: &mut impl FnMut(&str, String)) {
    let f = |x: Option<f64>| pyfmt::opt(x, pyfmt::float);
    let none = || "None".to_string();
    let no = || pyfmt::bool(false);
    put("ss_network_module", s.network.module.clone());
    put(
        "ss_network_dim",
        pyfmt::opt(s.network.dim, |d| d.to_string()),
    );
    put("ss_network_alpha", pyfmt::float(s.network.alpha));
    put("ss_network_dropout", f(s.network.dropout));
    put("ss_mixed_precision", s.mixed_precision.clone());
    put("ss_full_fp16", no());
    put("ss_v2", no());
    put("ss_base_model_version", "sd_v1".into());
    put("ss_clip_skip", pyfmt::opt(s.clip_skip, |c| c.to_string()));
    put(
        "ss_max_token_length",
        pyfmt::opt(s.max_token_length, |n| n.to_string()),
    );
    put("ss_cache_latents", pyfmt::bool(s.cache_latents));
    put("ss_seed", s.seed.map_or_else(none, |v| v.to_string()));
    put("ss_lowram", no());
    put("ss_noise_offset", f(s.noise_offset));
    put("ss_multires_noise_iterations", none());
    put("ss_multires_noise_discount", "0.3".into());
    put("ss_adaptive_noise_scale", none());
    put("ss_zero_terminal_snr", no());
    put(
        "ss_training_comment",
        pyfmt::opt(s.training_comment.clone(), |c| c),
    );
    put(
        "ss_sd_scripts_commit_hash",
        format!("loraeval {}", env!("CARGO_PKG_VERSION")),
    );
    put("ss_optimizer", s.optimizer.kohya_name());
    put("ss_max_grad_norm", pyfmt::float(s.optimizer.max_grad_norm));
}

fn caption_and_loss_keys(s: &TrainSettings, put: &mut impl FnMut(&str, String)) {
    let none = || "None".to_string();
    let no = || pyfmt::bool(false);
    let c = &s.caption;
    put(
        "ss_caption_dropout_rate",
        pyfmt::float(c.caption_dropout_rate),
    );
    put(
        "ss_caption_dropout_every_n_epochs",
        c.caption_dropout_every_n_epochs.to_string(),
    );
    put(
        "ss_caption_tag_dropout_rate",
        pyfmt::float(c.caption_tag_dropout_rate),
    );
    put("ss_face_crop_aug_range", none());
    put("ss_prior_loss_weight", pyfmt::float(s.prior_loss_weight));
    put(
        "ss_min_snr_gamma",
        pyfmt::opt(s.min_snr_gamma, pyfmt::float),
    );
    put("ss_scale_weight_norms", none());
    put("ss_ip_noise_gamma", none());
    put("ss_debiased_estimation", no());
    put("ss_noise_offset_random_strength", no());
    put("ss_ip_noise_gamma_random_strength", no());
    put("ss_loss_type", "l2".into());
    put("ss_huber_schedule", "snr".into());
    put("ss_huber_scale", "1.0".into());
    put("ss_huber_c", "0.1".into());
    put("ss_fp8_base", no());
    put("ss_fp8_base_unet", no());
    put("ss_validation_seed", none());
    put("ss_validation_split", "0.0".into());
    put("ss_max_validation_steps", none());
    put("ss_validate_every_n_epochs", none());
    put("ss_validate_every_n_steps", none());
    put("ss_resize_interpolation", none());
}

fn dataset_keys(inputs: &MetadataInputs<'_>, put: &mut impl FnMut(&str, String)) {
    let s = inputs.settings;
    let p = inputs.plan;
    let buckets = &s.plan.buckets;
    let bucket_reso = |v: u32| {
        if buckets.enable {
            v.to_string()
        } else {
            "None".into()
        }
    };
    let (w, h) = s.resolution;
    put("ss_batch_size_per_device", p.train_batch_size.to_string());
    let total = u64::from(p.train_batch_size) * u64::from(p.gradient_accumulation_steps);
    put("ss_total_batch_size", total.to_string());
    put("ss_resolution", format!("({w}, {h})"));
    put("ss_color_aug", pyfmt::bool(false));
    put("ss_flip_aug", pyfmt::bool(s.flip_aug));
    put("ss_random_crop", pyfmt::bool(false));
    put("ss_shuffle_caption", pyfmt::bool(s.caption.shuffle_caption));
    put("ss_enable_bucket", pyfmt::bool(buckets.enable));
    put(
        "ss_bucket_no_upscale",
        pyfmt::bool(buckets.enable && buckets.no_upscale),
    );
    put(
        "ss_min_bucket_reso",
        bucket_reso(buckets.min_reso - buckets.min_reso % buckets.reso_steps.max(1)),
    );
    put(
        "ss_max_bucket_reso",
        bucket_reso(buckets.max_reso.next_multiple_of(buckets.reso_steps.max(1))),
    );
    put("ss_keep_tokens", s.caption.keep_tokens.to_string());
    put("ss_dataset_dirs", inputs.dataset.dataset_dirs_json(false));
    put(
        "ss_reg_dataset_dirs",
        inputs.dataset.dataset_dirs_json(true),
    );
    put("ss_tag_frequency", inputs.dataset.tag_frequency_json());
    put("ss_bucket_info", p.bucket_info_json());
}

/// kohya's `json.dumps(net_kwargs)`: the `network_args` items (string values), then `dropout` (the
/// `network_dropout`) unless an item set it.
fn network_args_json(s: &TrainSettings) -> String {
    let mut entries: Vec<(String, PyValue)> = s
        .network
        .args
        .iter()
        .map(|(k, v)| (k.clone(), PyValue::Str(v.clone())))
        .collect();
    if !entries.iter().any(|(k, _)| k == "dropout") {
        let dropout = s.network.dropout.map_or(PyValue::None, PyValue::Float);
        entries.push(("dropout".to_string(), dropout));
    }
    PyValue::Dict(entries).dumps()
}

/// The metadata of one saved file: the training dict with this save's `ss_training_finished_at`, `ss_steps`
/// and `ss_epoch` (or only [`MINIMUM_KEYS`] with `no_metadata`), then the ModelSpec keys.
pub fn file_metadata(
    training: &Metadata,
    save: &PlannedSave,
    settings: &TrainSettings,
    now: f64,
) -> Metadata {
    let mut m: Metadata = if settings.no_metadata {
        training
            .iter()
            .filter(|(k, _)| MINIMUM_KEYS.contains(&k.as_str()))
            .cloned()
            .collect()
    } else {
        let mut m = training.clone();
        set(&mut m, "ss_training_finished_at", pyfmt::float(now));
        set(&mut m, "ss_steps", save.steps.to_string());
        set(&mut m, "ss_epoch", save.epoch.to_string());
        m
    };
    m.extend(model_spec(settings, now));
    m
}

fn set(m: &mut Metadata, key: &str, value: String) {
    match m.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => m.push((key.to_string(), value)),
    }
}

/// kohya's ModelSpec 1.0.1 keys of an SD1 LoRA (`sai_model_spec.build_metadata` with `lora=True`): title =
/// `metadata_title` or the output name (`LoRA@<timestamp>` without one), date as ISO-8601 (UTC here; kohya
/// writes local time), resolution `WxH`, prediction type `epsilon`, clip skip as the encoder layer.
pub fn model_spec(settings: &TrainSettings, timestamp: f64) -> Metadata {
    let texts = &settings.model_spec;
    let title = texts
        .title
        .clone()
        .or_else(|| settings.output_name.clone())
        .unwrap_or_else(|| format!("LoRA@{}", pyfmt::float(timestamp)));
    let (w, h) = settings.resolution;
    let mut m: Metadata = vec![
        ("modelspec.sai_model_spec".into(), "1.0.1".into()),
        (
            "modelspec.architecture".into(),
            "stable-diffusion-v1/lora".into(),
        ),
        ("modelspec.implementation".into(), "diffusers".into()),
        ("modelspec.title".into(), title),
        ("modelspec.resolution".into(), format!("{w}x{h}")),
    ];
    let optional = [
        ("modelspec.description", texts.description.clone()),
        ("modelspec.author", texts.author.clone()),
        ("modelspec.date", Some(iso_date_utc(timestamp as i64))),
        ("modelspec.license", texts.license.clone()),
        ("modelspec.tags", texts.tags.clone()),
        ("modelspec.prediction_type", Some("epsilon".to_string())),
        (
            "modelspec.encoder_layer",
            settings.clip_skip.map(|c| c.to_string()),
        ),
        (
            "modelspec.implementation_version",
            Some(format!("loraeval/{}", env!("CARGO_PKG_VERSION"))),
        ),
    ];
    m.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v))),
    );
    m
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time, UTC (civil-from-days, Hinnant's algorithm).
pub fn iso_date_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        // python3 -c "import datetime; print(datetime.datetime.utcfromtimestamp(1700000000).isoformat())"
        assert_eq!(iso_date_utc(1_700_000_000), "2023-11-14T22:13:20");
        assert_eq!(iso_date_utc(0), "1970-01-01T00:00:00");
        assert_eq!(iso_date_utc(951_782_400), "2000-02-29T00:00:00");
    }

    #[test]
    fn legacy_hash_of_short_and_long_data() {
        // A file shorter than 1 MiB hashes nothing: sha256("") starts e3b0c442.
        let mut short = std::io::Cursor::new(vec![1u8; 100]);
        assert_eq!(legacy_hash_of(&mut short).unwrap(), "e3b0c442");
        let mut long = std::io::Cursor::new(
            (0..0x120000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<_>>(),
        );
        let expected = Sha256::digest(&long.get_ref()[0x100000..0x110000]);
        let expected: String = expected
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(legacy_hash_of(&mut long).unwrap(), expected);
    }
}
