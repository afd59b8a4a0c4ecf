//! `loraeval plan`, `loraeval train` and `loraeval prepare`: kohya's step arithmetic, the trainer's settings and
//! dataset checks (the training loop itself is not implemented yet), and photo preparation.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::train::config::{parse_resolution, TrainConfig, WarmupSteps};
use crate::train::dataset::Dataset;
use crate::train::plan::{plan, plan_repeats, PlanSubset, TrainPlan};
use crate::train::prepare::{prepare_photos, PrepareOptions, PreparedPhoto};
use crate::train::settings::TrainSettings;

/// Options of `loraeval plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Number of training photos.
    #[arg(long)]
    images: u64,
    /// Epochs to train (kohya's --max_train_epochs).
    #[arg(long)]
    epochs: u64,
    /// Total optimization steps wanted.
    #[arg(long)]
    max_steps: u64,
    /// kohya's --train_batch_size.
    #[arg(long, default_value_t = 1)]
    batch_size: u32,
    /// kohya's --gradient_accumulation_steps.
    #[arg(long, default_value_t = 1)]
    gradient_accumulation_steps: u32,
    /// The name after `NN_` in the folder name (the class tokens, usually the trigger word).
    #[arg(long, default_value = "name")]
    name: String,
}

/// Prints the repeats, the folder name and kohya's numbers for them.
pub fn run_plan(args: PlanArgs) -> Result<()> {
    let r = plan_repeats(
        args.images,
        args.epochs,
        args.max_steps,
        args.batch_size,
        args.gradient_accumulation_steps,
        &args.name,
    )?;
    println!(
        "repeats: {} (= {} steps × batch {} × accumulation {} / ({} images × {} epochs){})",
        r.repeats,
        r.target_steps,
        args.batch_size,
        args.gradient_accumulation_steps,
        r.images,
        r.epochs,
        if r.exact { "" } else { ", rounded down" }
    );
    println!("folder:  image/{}/", r.folder_name);
    if let Some((repeats, steps)) = r.next {
        println!(
            "note:    {} repeats give {} steps, {repeats} give {steps}",
            r.repeats, r.plan.max_train_steps
        );
    }
    println!("\nkohya with --max_train_epochs {}:", r.epochs);
    println!("{}", r.plan.kohya_summary());
    Ok(())
}

/// Options of `loraeval train`: kohya's option names in kebab-case; they override `--config-file`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// kohya TOML config (as the kohya GUI saves it); flags override its values.
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// Print the settings, dataset and kohya's plan, then exit.
    #[arg(long)]
    dry_run: bool,
    /// Base SD1.5 checkpoint (kohya's --pretrained_model_name_or_path).
    #[arg(long, alias = "pretrained-model-name-or-path")]
    model: Option<String>,
    /// Folder of NN_name image folders.
    #[arg(long)]
    train_data_dir: Option<PathBuf>,
    /// Folder of NN_name regularisation image folders.
    #[arg(long)]
    reg_data_dir: Option<PathBuf>,
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// Base name of the LoRA files (NAME-000001.safetensors … NAME.safetensors).
    #[arg(long)]
    output_name: Option<String>,
    /// Epochs (overrides --max-train-steps).
    #[arg(long)]
    max_train_epochs: Option<u64>,
    /// Total optimization steps (kohya's default 1600).
    #[arg(long)]
    max_train_steps: Option<u64>,
    /// "W,H" or "SIZE".
    #[arg(long)]
    resolution: Option<String>,
    #[arg(long)]
    train_batch_size: Option<u32>,
    #[arg(long)]
    gradient_accumulation_steps: Option<u32>,
    #[arg(long)]
    network_dim: Option<u32>,
    #[arg(long)]
    network_alpha: Option<f64>,
    /// key=value items (conv_dim=4 conv_alpha=1 …).
    #[arg(long, num_args = 1..)]
    network_args: Option<Vec<String>>,
    #[arg(long)]
    learning_rate: Option<f64>,
    #[arg(long)]
    unet_lr: Option<f64>,
    #[arg(long)]
    text_encoder_lr: Option<f64>,
    #[arg(long)]
    optimizer_type: Option<String>,
    #[arg(long)]
    lr_scheduler: Option<String>,
    #[arg(long)]
    lr_scheduler_num_cycles: Option<u32>,
    /// Steps, or a ratio of the total below 1.
    #[arg(long)]
    lr_warmup_steps: Option<f64>,
    #[arg(long)]
    save_every_n_epochs: Option<u64>,
    /// fp16, bf16 or float.
    #[arg(long)]
    save_precision: Option<String>,
    #[arg(long)]
    seed: Option<u64>,
    /// Caption file extension (default .txt).
    #[arg(long)]
    caption_extension: Option<String>,
    #[arg(long)]
    shuffle_caption: bool,
    #[arg(long)]
    keep_tokens: Option<u32>,
    #[arg(long)]
    caption_dropout_rate: Option<f64>,
    #[arg(long)]
    caption_tag_dropout_rate: Option<f64>,
    #[arg(long)]
    flip_aug: bool,
    #[arg(long)]
    enable_bucket: bool,
    #[arg(long)]
    noise_offset: Option<f64>,
    #[arg(long)]
    min_snr_gamma: Option<f64>,
    #[arg(long)]
    clip_skip: Option<u32>,
    /// no, fp16 or bf16 (recorded; loraeval computes in f32).
    #[arg(long)]
    mixed_precision: Option<String>,
}

impl TrainArgs {
    fn to_config(&self) -> Result<TrainConfig> {
        let resolution = match &self.resolution {
            Some(text) => Some(
                parse_resolution(text)
                    .with_context(|| format!("--resolution {text}: expected W,H or SIZE"))?,
            ),
            None => None,
        };
        let warmup = self.lr_warmup_steps.map(|w| {
            if w < 1.0 && w.fract() != 0.0 {
                WarmupSteps::Ratio(w)
            } else {
                WarmupSteps::Steps(w as u64)
            }
        });
        let flag = |b: bool| b.then_some(true);
        Ok(TrainConfig {
            pretrained_model_name_or_path: self.model.clone(),
            train_data_dir: self.train_data_dir.clone(),
            reg_data_dir: self.reg_data_dir.clone(),
            output_dir: self.output_dir.clone(),
            output_name: self.output_name.clone(),
            max_train_epochs: self.max_train_epochs,
            max_train_steps: self.max_train_steps,
            resolution,
            train_batch_size: self.train_batch_size,
            gradient_accumulation_steps: self.gradient_accumulation_steps,
            network_dim: self.network_dim,
            network_alpha: self.network_alpha,
            network_args: self.network_args.clone(),
            learning_rate: self.learning_rate,
            unet_lr: self.unet_lr,
            text_encoder_lr: self.text_encoder_lr,
            optimizer_type: self.optimizer_type.clone(),
            lr_scheduler: self.lr_scheduler.clone(),
            lr_scheduler_num_cycles: self.lr_scheduler_num_cycles,
            lr_warmup_steps: warmup,
            save_every_n_epochs: self.save_every_n_epochs,
            save_precision: self.save_precision.clone(),
            seed: self.seed,
            caption_extension: self.caption_extension.clone(),
            shuffle_caption: flag(self.shuffle_caption),
            keep_tokens: self.keep_tokens,
            caption_dropout_rate: self.caption_dropout_rate,
            caption_tag_dropout_rate: self.caption_tag_dropout_rate,
            flip_aug: flag(self.flip_aug),
            enable_bucket: flag(self.enable_bucket),
            noise_offset: self.noise_offset,
            min_snr_gamma: self.min_snr_gamma,
            clip_skip: self.clip_skip,
            mixed_precision: self.mixed_precision.clone(),
            ..TrainConfig::default()
        })
    }
}

/// Resolves the settings, scans the dataset, prints kohya's summary; `--dry-run` stops there (exit 0), a
/// real run fails because the training loop is not implemented yet.
pub fn run_train(args: TrainArgs) -> Result<()> {
    let settings = resolve_settings(&args)?;
    let dataset = Dataset::scan(
        &settings.train_data_dir,
        settings.reg_data_dir.as_deref(),
        &settings.scan,
    )?;
    for warning in &dataset.warnings {
        eprintln!("warning: {warning}");
    }
    let plan = plan(&PlanSubset::from_dataset(&dataset), &settings.plan)?;
    print_dataset(&dataset);
    println!("{}", plan.kohya_summary());
    print_saves(&settings, &plan);
    if args.dry_run {
        return Ok(());
    }
    bail!("training loop not implemented yet (the reverse pass is in progress); --dry-run shows the plan")
}

fn resolve_settings(args: &TrainArgs) -> Result<TrainSettings> {
    let file = match &args.config_file {
        Some(path) => {
            let (config, report) = TrainConfig::from_toml_file(path)?;
            if !report.ignored.is_empty() {
                eprintln!(
                    "warning: {}: kohya options loraeval does not use (ignored): {}",
                    path.display(),
                    report.ignored.join(", ")
                );
            }
            config
        }
        None => TrainConfig::default(),
    };
    Ok(file.overridden_by(args.to_config()?).resolve()?)
}

fn print_dataset(dataset: &Dataset) {
    for subset in &dataset.subsets {
        let captions = subset
            .images
            .iter()
            .filter(|i| i.caption_file.is_some())
            .count();
        println!(
            "{} {}: {} images × {} repeats, {} with a caption file",
            if subset.is_reg { "reg" } else { "train" },
            subset.dir.display(),
            subset.images.len(),
            subset.num_repeats,
            captions
        );
    }
}

fn print_saves(settings: &TrainSettings, plan: &TrainPlan) {
    let dir = settings
        .output_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    println!("files:");
    for save in &plan.saves {
        println!(
            "  {} (epoch {}, {} steps)",
            dir.join(&save.file_name).display(),
            save.epoch,
            save.steps
        );
    }
}

/// Options of `loraeval prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Photos, or folders of photos.
    #[arg(required = true)]
    raw: Vec<PathBuf>,
    /// Output folder, kohya-style: image/NN_name.
    #[arg(long)]
    out: PathBuf,
    /// Side of the square crops in pixels (512 for SD1.5, 768).
    #[arg(long, default_value_t = 512)]
    size: u32,
    /// Caption stub written for every crop (the trigger word).
    #[arg(long)]
    trigger: String,
    /// Overwrite existing crops and captions.
    #[arg(long)]
    force: bool,
    /// Detector upsampling (1 finds faces down to ~40 px).
    #[arg(long, default_value_t = 1)]
    upsample: u32,
}

/// Crops, captions and the QA list; prints one line per photo and the QA summary.
pub fn run_prepare(args: PrepareArgs) -> Result<()> {
    if ![512, 768].contains(&args.size) {
        bail!("--size {}: use 512 or 768", args.size);
    }
    let options = PrepareOptions {
        size: args.size,
        trigger: args.trigger.clone(),
        force: args.force,
        upsample: args.upsample,
    };
    let report = prepare_photos(&args.raw, &args.out, &options)?;
    for photo in &report.photos {
        println!("{}", describe_photo(photo));
    }
    let qa_path = args.out.join("prepare-qa.json");
    println!(
        "{} crops written to {}; {} photos flagged; QA list: {}",
        report.photos.iter().filter(|p| p.output.is_some()).count(),
        args.out.display(),
        report.photos.iter().filter(|p| !p.flags.is_empty()).count(),
        qa_path.display()
    );
    Ok(())
}

fn describe_photo(photo: &PreparedPhoto) -> String {
    let target = photo
        .output
        .as_deref()
        .map(Path::display)
        .map_or("(no crop)".to_string(), |p| p.to_string());
    let flags: Vec<String> = photo.flags.iter().map(|f| f.to_string()).collect();
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!("  [{}]", flags.join("; "))
    };
    format!("{} -> {target}{flags}", photo.source.display())
}
