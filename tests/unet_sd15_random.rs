//! Real-size SD1.5 UNet and VAE built from random weights: every tensor of the SD1.5 layout is requested exactly
//! once with its documented shape (686 UNet / 248 VAE tensors), and one 64×64-latent UNet step runs with shapes
//! and memory in bounds. Slow (several GB of weights): ignored by default (`-- --ignored` runs it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use loraeval::model::config::{UNetConfig, VaeConfig};
use loraeval::model::unet::UNet2DConditionModel;
use loraeval::model::vae::AutoEncoderKL;

/// Name → shape of every tensor a model asked for.
type RequestLog = Arc<Mutex<HashMap<String, Vec<usize>>>>;

/// Hands out random tensors of the requested shape and records every name and shape asked for.
struct RandomBackend {
    requested: RequestLog,
}

impl SimpleBackend for RandomBackend {
    fn get(&self, shape: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let previous = self
            .requested
            .lock()
            .unwrap()
            .insert(name.to_string(), shape.dims().to_vec());
        assert!(previous.is_none(), "tensor {name} requested twice");
        let dims = shape.dims();
        let tensor = if name.contains("norm") && name.ends_with(".weight") {
            Tensor::ones(shape.clone(), dtype, dev)?
        } else if dims.len() >= 2 {
            let fan_in: usize = dims[1..].iter().product();
            Tensor::randn(
                0f32,
                (1.0 / fan_in as f64).sqrt() as f32,
                shape.clone(),
                dev,
            )?
            .to_dtype(dtype)?
        } else {
            Tensor::zeros(shape.clone(), dtype, dev)?
        };
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("random backend has no unchecked tensor {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

fn random_var_builder() -> (VarBuilder<'static>, RequestLog) {
    let requested = Arc::new(Mutex::new(HashMap::new()));
    let backend = RandomBackend {
        requested: requested.clone(),
    };
    (
        VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu),
        requested,
    )
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if readable.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[test]
#[ignore = "slow (several GB of weights): run with cargo test --release -- --ignored"]
fn sd15_unet_from_random_weights_runs_one_64x64_step() {
    let (vb, requested) = random_var_builder();
    let config = UNetConfig::sd15();
    let unet = UNet2DConditionModel::load(vb, &config).unwrap();
    {
        let requested = requested.lock().unwrap();
        assert_eq!(requested.len(), 686);
        assert_eq!(requested["conv_in.weight"], [320, 4, 3, 3]);
        assert_eq!(requested["time_embedding.linear_1.weight"], [1280, 320]);
        let attn2_to_k = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight";
        assert_eq!(requested[attn2_to_k], [320, 768]);
        let ff = "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight";
        assert_eq!(requested[ff], [2560, 320]);
        assert_eq!(
            requested["up_blocks.1.resnets.2.conv_shortcut.weight"],
            [1280, 1920, 1, 1]
        );
        assert_eq!(
            requested["mid_block.attentions.0.proj_in.weight"],
            [1280, 1280, 1, 1]
        );
    }
    let sample = Tensor::randn(0f32, 1.0, (1, 4, 64, 64), &Device::Cpu).unwrap();
    let context = Tensor::randn(0f32, 1.0, (1, 77, 768), &Device::Cpu).unwrap();
    let start = std::time::Instant::now();
    let eps = unet.forward(&sample, 617.37, &context).unwrap();
    let peak = peak_rss_mib();
    eprintln!(
        "one 64x64 step: {:.1}s, peak RSS {peak:?} MiB",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(eps.dims(), &[1, 4, 64, 64]);
    let finite = eps
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|x| x.is_finite());
    assert!(finite);
    // Weights are 3.3 GiB of f32; activations and attention scores (256 MiB chunks) must stay well below that.
    if let Some(peak) = peak {
        assert!(peak < 3300 + 3000, "peak RSS {peak} MiB");
    }
}

#[test]
#[ignore = "slow (several GB of weights): run with cargo test --release -- --ignored"]
fn sd15_vae_from_random_weights_has_the_sd15_layout() {
    let (vb, requested) = random_var_builder();
    let vae = AutoEncoderKL::load(vb, &VaeConfig::sd15()).unwrap();
    {
        let requested = requested.lock().unwrap();
        assert_eq!(requested.len(), 248);
        assert_eq!(
            requested["decoder.mid_block.attentions.0.to_q.weight"],
            [512, 512]
        );
        assert_eq!(
            requested["decoder.up_blocks.2.resnets.0.conv_shortcut.weight"],
            [256, 512, 1, 1]
        );
        assert_eq!(
            requested["encoder.down_blocks.1.resnets.0.conv_shortcut.weight"],
            [256, 128, 1, 1]
        );
        assert_eq!(requested["quant_conv.weight"], [8, 8, 1, 1]);
    }
    let latents = Tensor::randn(0f32, 1.0, (1, 4, 8, 8), &Device::Cpu).unwrap();
    let image = vae.decode(&latents).unwrap();
    assert_eq!(image.dims(), &[1, 3, 64, 64]);
    let (mean, logvar) = vae.encode(&image).unwrap();
    assert_eq!(mean.dims(), &[1, 4, 8, 8]);
    assert_eq!(logvar.dims(), &[1, 4, 8, 8]);
}
