//! LoRA switching cost at real SD1.5 shapes (issue 3 benchmark; figures in docs/perf.md, "LoRA switching").
//!
//! Random base weights (`model::random_weights`) and a random rank-R kohya LoRA on every default kohya target (every
//! Linear / 1×1 conv inside the 16 UNet `Transformer2DModel`s, every CLIP attention/MLP Linear; `--locon` adds the
//! resnet / sampler convolutions). Times:
//! * merged: applying one (file, weight) to the UNet and the text encoder (`W += m·scale·up@down` on copies whose
//!   untouched tensors are shared), and removing it (dropping the copies);
//! * one UNet step at `--size` for each `--batches` value: plain, and with the LoRA as unmerged adapters (one file
//!   for the whole batch, and one file per image).
//!
//! Run: `cargo run --release --example lora_bench -- --size 512 --rank 128 --batches 2,8`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use loraeval::lora::apply::{apply, attach_per_image};
use loraeval::lora::{LoraFile, LoraMode, LoraModule, LoraUse, ModelLayers, ModuleWeights, Part};
use loraeval::model::adapter::AdaptableLayers;
use loraeval::model::clip::ClipTextModel;
use loraeval::model::config::{ClipConfig, UNetConfig};
use loraeval::model::random_weights::RandomWeights;
use loraeval::model::unet::UNet2DConditionModel;

struct Options {
    size: usize,
    rank: usize,
    batches: Vec<usize>,
    locon: bool,
    per_image_files: bool,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        size: 512,
        rank: 128,
        batches: vec![2, 8],
        locon: false,
        per_image_files: true,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--size" => options.size = value.parse()?,
            "--rank" => options.rank = value.parse()?,
            "--batches" => {
                options.batches = value
                    .split(',')
                    .map(|b| b.parse())
                    .collect::<Result<_, _>>()?
            }
            "--locon" => {
                options.locon = true;
                i += 1;
                continue;
            }
            "--no-per-image" => {
                options.per_image_files = false;
                i += 1;
                continue;
            }
            other => bail!("unknown option {other}"),
        }
        i += 2;
    }
    Ok(options)
}

/// Whether kohya's default network (or LoCon) targets this UNet layer.
fn kohya_target(name: &str, locon: bool) -> bool {
    let conv_block = [".resnets.", ".downsamplers.", ".upsamplers."]
        .iter()
        .any(|p| name.contains(p));
    name.contains(".attentions.") || (locon && conv_block)
}

/// A random LoRA in memory with kohya names for the given layers.
fn random_lora(name: &str, layers: &[(String, Vec<usize>, Part)], rank: usize) -> Result<LoraFile> {
    let device = Device::Cpu;
    let mut modules = BTreeMap::new();
    for (layer, shape, part) in layers {
        let prefix = match part {
            Part::TextEncoder => "lora_te_",
            Part::Unet => "lora_unet_",
        };
        let key = format!("{prefix}{}", layer.replace('.', "_"));
        let mut down_shape = vec![rank];
        down_shape.extend(&shape[1..]);
        let mut up_shape = vec![shape[0], rank];
        if shape.len() == 4 {
            up_shape.extend([1, 1]);
        }
        let fan_in: usize = shape[1..].iter().product();
        let down = (Tensor::randn(0f32, 1.0, down_shape, &device)? / (fan_in as f64).sqrt())?;
        let up = (Tensor::randn(0f32, 1.0, up_shape, &device)? * 0.01)?;
        modules.insert(
            key.clone(),
            LoraModule {
                key,
                weights: ModuleWeights::Lora {
                    down,
                    up,
                    mid: None,
                },
                alpha: Some(rank as f32 / 2.0),
                explicit_scale: None,
                dora_scale: None,
                dtype: "F32",
            },
        );
    }
    Ok(LoraFile {
        path: format!("{name}.safetensors").into(),
        name: name.to_string(),
        metadata: BTreeMap::new(),
        modules,
        unknown_keys: Vec::new(),
        hash: String::new(),
    })
}

fn seconds(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

fn time_step(unet: &UNet2DConditionModel, x: &Tensor, context: &Tensor) -> Result<f64> {
    let start = Instant::now();
    unet.forward(x, 500.5, context)?;
    Ok(seconds(start))
}

fn main() -> Result<()> {
    let options = parse_options()?;
    let device = Device::Cpu;
    let start = Instant::now();
    let mut unet =
        UNet2DConditionModel::load(RandomWeights::var_builder(1, &device), &UNetConfig::sd15())?;
    let mut clip =
        ClipTextModel::load(RandomWeights::var_builder(3, &device), &ClipConfig::sd15())?;
    eprintln!("random SD1.5 UNet + CLIP built in {:.1} s", seconds(start));
    let model_layers = ModelLayers::new(&mut unet, &mut clip);
    let mut targets: Vec<(String, Vec<usize>, Part)> = Vec::new();
    for layer in unet.layers_mut() {
        if kohya_target(layer.name(), options.locon) {
            targets.push((
                layer.name().into(),
                layer.weight().dims().to_vec(),
                Part::Unet,
            ));
        }
    }
    for layer in clip.layers_mut() {
        targets.push((
            layer.name().into(),
            layer.weight().dims().to_vec(),
            Part::TextEncoder,
        ));
    }
    let params: usize = targets
        .iter()
        .map(|(_, s, _)| options.rank * (s[0] + s[1..].iter().product::<usize>()))
        .sum();
    let lora = Arc::new(random_lora("random", &targets, options.rank)?);
    eprintln!(
        "LoRA: rank {}, {} modules ({} UNet), {:.1} M parameters",
        options.rank,
        targets.len(),
        targets.iter().filter(|t| t.2 == Part::Unet).count(),
        params as f64 / 1e6
    );
    let uses = vec![LoraUse {
        file: lora.clone(),
        name: "random".into(),
        te: 0.7,
        unet: 0.7,
    }];

    // Merged: apply one (file, weight), then remove it.
    let mut apply_times = Vec::new();
    let mut remove_times = Vec::new();
    for _ in 0..2 {
        let start = Instant::now();
        let mut merged_unet = unet.clone();
        let mut merged_clip = clip.clone();
        apply(
            &mut merged_unet,
            Part::Unet,
            &model_layers,
            &uses,
            LoraMode::Merged,
        )?;
        apply(
            &mut merged_clip,
            Part::TextEncoder,
            &model_layers,
            &uses,
            LoraMode::Merged,
        )?;
        apply_times.push(seconds(start));
        let start = Instant::now();
        drop(merged_unet);
        drop(merged_clip);
        remove_times.push(seconds(start));
    }
    println!(
        "merged apply (UNet + text encoder): {:.3} s (first run {:.3} s); remove: {:.4} s",
        apply_times[1], apply_times[0], remove_times[1]
    );

    let latent = options.size / 8;
    for &batch in &options.batches {
        let x = Tensor::randn(0f32, 1.0, (batch, 4, latent, latent), &device)?;
        let context = Tensor::randn(0f32, 1.0, (batch, 77, 768), &device)?;
        time_step(&unet, &x, &context)?; // warm-up
        let base = time_step(&unet, &x, &context)?;
        let mut adapted = unet.clone();
        apply(
            &mut adapted,
            Part::Unet,
            &model_layers,
            &uses,
            LoraMode::Unmerged,
        )?;
        let unmerged = time_step(&adapted, &x, &context)?;
        drop(adapted);
        println!(
            "batch {batch}, {size}x{size}: UNet step {base:.2} s; unmerged, one file: {unmerged:.2} s (+{overhead:.1} %)",
            size = options.size,
            overhead = 100.0 * (unmerged / base - 1.0)
        );
        if options.per_image_files {
            let images = batch / 2;
            let per_image: Vec<Vec<LoraUse>> = (0..images)
                .map(|i| -> Result<Vec<LoraUse>> {
                    let file = Arc::new(random_lora("cell", &targets, options.rank)?);
                    Ok(vec![LoraUse {
                        file,
                        name: format!("cell{i}"),
                        te: 0.5,
                        unet: 0.5 + i as f32 * 0.1,
                    }])
                })
                .collect::<Result<_>>()?;
            let mut adapted = unet.clone();
            attach_per_image(&mut adapted, Part::Unet, &model_layers, &per_image)?;
            let per_image_time = time_step(&adapted, &x, &context)?;
            println!(
                "batch {batch}: unmerged, a different file per image ({images} files): {per_image_time:.2} s (+{:.1} %)",
                100.0 * (per_image_time / base - 1.0)
            );
        }
    }
    Ok(())
}
