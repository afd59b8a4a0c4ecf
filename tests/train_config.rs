//! kohya TOML config files: sections folded, keys type-checked, kohya keys loraeval ignores reported, unknown keys
//! refused, flags over the file, kohya's defaults.

use std::path::{Path, PathBuf};

use loraeval::train::config::{ConfigError, TrainConfig, WarmupSteps};

/// Shaped like the `config_lora-*.toml` the kohya GUI writes (sorted flat keys) plus a sectioned part as
/// people write by hand.
const GUI_STYLE: &str = r#"
bucket_no_upscale = true
bucket_reso_steps = 64
cache_latents = true
cache_latents_to_disk = true
caption_extension = ".txt"
clip_skip = 1
color_aug = true
dynamo_backend = "no"
enable_bucket = true
epoch = 10
gradient_accumulation_steps = 1
huber_c = 0.1
learning_rate = 0.0001
lr_scheduler = "cosine"
lr_scheduler_num_cycles = 10
lr_warmup_steps = 0.05
max_bucket_reso = 2048
max_data_loader_n_workers = 0
max_train_epochs = 10
min_bucket_reso = 256
mixed_precision = "fp16"
network_alpha = 16
network_args = ["conv_dim=8", "conv_alpha=4"]
network_dim = 32
network_module = "networks.lora"
noise_offset_type = "Original"
optimizer_type = "AdamW8bit"
output_dir = "/runs/out"
output_name = "sks"
pretrained_model_name_or_path = "/models/v1-5-pruned-emaonly.safetensors"
resolution = "512,512"
sample_prompts = "/runs/out/prompt.txt"
save_every_n_epochs = 1
save_model_as = "safetensors"
save_precision = "fp16"
seed = 1234
text_encoder_lr = [5e-5]
train_batch_size = 2
train_data_dir = "/data/image"
unet_lr = 0.0001
xformers = true

[dataset_arguments]
shuffle_caption = true
keep_tokens = 1
"#;

fn parse(text: &str) -> Result<(TrainConfig, Vec<String>), ConfigError> {
    TrainConfig::from_toml_str(text, Path::new("train.toml")).map(|(c, r)| (c, r.ignored))
}

#[test]
fn gui_style_file_reads_every_key_loraeval_uses() {
    let (config, ignored) = parse(GUI_STYLE).unwrap();
    assert_eq!(config.train_data_dir, Some(PathBuf::from("/data/image")));
    assert_eq!(config.resolution, Some((512, 512)));
    assert_eq!(config.network_dim, Some(32));
    assert_eq!(config.network_alpha, Some(16.0));
    assert_eq!(config.text_encoder_lr, Some(5e-5));
    assert_eq!(config.lr_warmup_steps, Some(WarmupSteps::Ratio(0.05)));
    assert_eq!(config.train_batch_size, Some(2));
    // Folded from [dataset_arguments].
    assert_eq!(config.shuffle_caption, Some(true));
    assert_eq!(config.keep_tokens, Some(1));
    // color_aug and sample_prompts do something in kohya that loraeval does not do: reported. huber_c (kohya
    // key, value given) too. xformers, workers, dynamo, the GUI's epoch: silent.
    let keys: Vec<&str> = ignored
        .iter()
        .map(|i| i.split(" = ").next().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["color_aug", "huber_c", "sample_prompts"],
        "{ignored:?}"
    );
    let settings = config.resolve().unwrap();
    assert_eq!(settings.network.conv_dim(), Some(8));
    assert_eq!(settings.network.conv_alpha(), Some(4.0));
    assert!(settings.plan.buckets.enable && settings.plan.buckets.no_upscale);
    assert_eq!(settings.plan.max_train_epochs, Some(10));
}

#[test]
fn unknown_key_is_an_error_naming_key_file_and_the_near_miss() {
    let error = parse("network_dimm = 16\n").unwrap_err().to_string();
    assert!(error.contains("train.toml"), "{error}");
    assert!(error.contains("`network_dimm`"), "{error}");
    assert!(error.contains("did you mean `network_dim`"), "{error}");
    let error = parse("[section]\ncompletely_made_up = 1\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`completely_made_up`") && !error.contains("did you mean"),
        "{error}"
    );
}

#[test]
fn wrong_types_are_errors_naming_the_key() {
    let error = parse("train_batch_size = \"two\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("train.toml") && error.contains("`train_batch_size` must be a whole number"),
        "{error}"
    );
    let error = parse("resolution = \"512x512\"\n").unwrap_err().to_string();
    assert!(error.contains("`resolution`"), "{error}");
    let error = parse("max_train_steps = -5\n").unwrap_err().to_string();
    assert!(error.contains("`max_train_steps`"), "{error}");
    assert!(matches!(parse("a = [\n"), Err(ConfigError::Parse { .. })));
}

#[test]
fn flags_override_the_file() {
    let (file, _) = parse("train_batch_size = 4\nresolution = 768\nseed = 1\n").unwrap();
    let flags = TrainConfig {
        train_batch_size: Some(1),
        ..TrainConfig::default()
    };
    let merged = file.overridden_by(flags);
    assert_eq!(merged.train_batch_size, Some(1));
    assert_eq!(merged.resolution, Some((768, 768)));
    assert_eq!(merged.seed, Some(1));
}

#[test]
fn defaults_are_kohyas() {
    let (config, _) = parse("train_data_dir = \"img\"\n").unwrap();
    let s = config.resolve().unwrap();
    assert_eq!(s.plan.max_train_steps, 1600);
    assert_eq!(s.plan.train_batch_size, 1);
    assert_eq!(s.optimizer.learning_rate, 2e-6);
    assert_eq!(s.optimizer.lr_scheduler, "constant");
    assert_eq!(s.optimizer.kohya_name(), "torch.optim.adamw.AdamW");
    assert_eq!(s.network.dim, None);
    assert_eq!(s.network.effective_dim(), 4);
    assert_eq!(s.network.alpha, 1.0);
    assert_eq!(s.scan.caption_extension, ".txt");
    assert_eq!(s.resolution, (512, 512));
    assert!(!s.plan.buckets.enable);
}

#[test]
fn what_loraeval_cannot_train_is_refused_at_resolve() {
    for (text, key) in [
        ("network_module = \"lycoris.kohya\"", "network_module"),
        ("v2 = true", "v2"),
        ("save_model_as = \"ckpt\"", "save_model_as"),
        ("dataset_config = \"d.toml\"", "dataset_config"),
        ("mixed_precision = \"fp8\"", "mixed_precision"),
    ] {
        let (config, _) = parse(&format!("train_data_dir = \"x\"\n{text}\n")).unwrap();
        let error = config.resolve().unwrap_err().to_string();
        assert!(error.contains(key), "{text}: {error}");
    }
    let error = TrainConfig::default().resolve().unwrap_err().to_string();
    assert!(error.contains("train_data_dir"), "{error}");
}

#[test]
fn file_name_gets_toml_appended_as_kohya_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("run.toml"), "seed = 7\n").unwrap();
    let (config, _) = TrainConfig::from_toml_file(&dir.path().join("run")).unwrap();
    assert_eq!(config.seed, Some(7));
    let error = TrainConfig::from_toml_file(&dir.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("missing.toml"), "{error}");
}
