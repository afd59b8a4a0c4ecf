//! `loraeval bench`: times the SD1.5 models at real shapes with random weights.

use crate::model::clip::ClipTextModel;
use crate::model::config::{ClipConfig, UNetConfig, VaeConfig};
use crate::model::random_weights::RandomWeights;
use crate::model::unet::UNet2DConditionModel;
use crate::model::vae::AutoEncoderKL;
use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use std::time::Instant;

/// Options of `loraeval bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Image size in pixels (square); the latent is size/8.
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// Images per step; the UNet runs 2×batch samples (cond and uncond, as CFG does).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed runs per model after one warm-up run; the median is reported.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Print one JSON line {"unet_step_s", "vae_decode_s", "text_encode_s"} on stdout.
    #[arg(long)]
    json: bool,
    /// Only time these parts (comma-separated: unet, vae, text).
    #[arg(long, value_delimiter = ',', default_values_t = vec!["unet".to_string(), "vae".to_string(), "text".to_string()])]
    only: Vec<String>,
}

fn median_seconds(iters: usize, mut run: impl FnMut() -> Result<()>) -> Result<f64> {
    run()?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        run()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn bench_unet(args: &BenchArgs, device: &Device) -> Result<f64> {
    let config = UNetConfig::sd15();
    let unet = UNet2DConditionModel::load(RandomWeights::var_builder(1, device), &config)?;
    let latent = args.size / 8;
    let samples = 2 * args.batch;
    let x = Tensor::randn(0f32, 1.0, (samples, 4, latent, latent), device)?;
    let context = Tensor::randn(0f32, 1.0, (samples, 77, config.cross_attention_dim), device)?;
    median_seconds(args.iters, || {
        unet.forward(&x, 500.5, &context)?;
        Ok(())
    })
}

fn bench_vae(args: &BenchArgs, device: &Device) -> Result<f64> {
    let vae = AutoEncoderKL::load(RandomWeights::var_builder(2, device), &VaeConfig::sd15())?;
    let latent = args.size / 8;
    let z = Tensor::randn(0f32, 1.0, (args.batch, 4, latent, latent), device)?;
    median_seconds(args.iters, || {
        vae.decode(&z)?;
        Ok(())
    })
}

fn bench_text(args: &BenchArgs, device: &Device) -> Result<f64> {
    let config = ClipConfig::sd15();
    let clip = ClipTextModel::load(RandomWeights::var_builder(3, device), &config)?;
    let ids: Vec<u32> = (0..2 * args.batch * 77)
        .map(|i| (i * 131 % 49408) as u32)
        .collect();
    let ids = Tensor::from_vec(ids, (2 * args.batch, 77), device)?.to_dtype(DType::U32)?;
    median_seconds(args.iters, || {
        clip.forward(&ids, 1)?;
        Ok(())
    })
}

/// Runs the benchmark and prints the medians.
pub fn run(args: BenchArgs) -> Result<()> {
    ensure!(
        args.size >= 64 && args.size.is_multiple_of(64),
        "--size {} must be a multiple of 64",
        args.size
    );
    ensure!(
        args.batch >= 1 && args.iters >= 1,
        "--batch and --iters must be at least 1"
    );
    let device = Device::Cpu;
    let wants = |part: &str| args.only.iter().any(|p| p == part);
    let mut timings: Vec<(&str, f64)> = Vec::new();
    if wants("unet") {
        timings.push((
            "unet_step_s",
            bench_unet(&args, &device).context("UNet benchmark")?,
        ));
    }
    if wants("vae") {
        timings.push((
            "vae_decode_s",
            bench_vae(&args, &device).context("VAE benchmark")?,
        ));
    }
    if wants("text") {
        timings.push((
            "text_encode_s",
            bench_text(&args, &device).context("text encoder benchmark")?,
        ));
    }
    print_timings(&args, &timings);
    Ok(())
}

fn print_timings(args: &BenchArgs, timings: &[(&str, f64)]) {
    if args.json {
        let object: serde_json::Map<String, serde_json::Value> = timings
            .iter()
            .map(|(name, seconds)| (name.to_string(), serde_json::json!(seconds)))
            .collect();
        println!("{}", serde_json::Value::Object(object));
    } else {
        println!(
            "size {0}x{0}, batch {1}, median of {2}:",
            args.size, args.batch, args.iters
        );
        for (name, seconds) in timings {
            println!("  {name:<14} {seconds:>9.3} s");
        }
    }
}
