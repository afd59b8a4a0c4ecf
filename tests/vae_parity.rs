//! Parity of `model::vae::AutoEncoderKL` (decode and encode) with diffusers 0.42.1 on the tiny SD1.5-topology VAE.
//!
//! Reference tensors come from `scripts/make_model_fixtures.py` (inputs and diffusers' f32 outputs).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use loraeval::model::config::VaeConfig;
use loraeval::model::vae::AutoEncoderKL;

/// Allowed max |ours − diffusers| relative to max |diffusers|.
const RELATIVE_TOLERANCE: f32 = 1e-4;

fn fixture_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(relative)
}

/// The VaeConfig described by the diffusers `config.json` of the tiny model.
fn tiny_config() -> VaeConfig {
    let text = std::fs::read_to_string(fixture_path("tiny/vae/config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let usize_of = |key: &str| json[key].as_u64().unwrap() as usize;
    VaeConfig {
        in_channels: usize_of("in_channels"),
        out_channels: usize_of("out_channels"),
        latent_channels: usize_of("latent_channels"),
        block_out_channels: json["block_out_channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect(),
        layers_per_block: usize_of("layers_per_block"),
        norm_num_groups: usize_of("norm_num_groups"),
        scaling_factor: json["scaling_factor"].as_f64().unwrap(),
    }
}

fn load_vae(config: &VaeConfig) -> candle_core::Result<AutoEncoderKL> {
    let weights = fixture_path("tiny/vae/diffusion_pytorch_model.safetensors");
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)? };
    AutoEncoderKL::load(vb, config)
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture_path("vae_parity.safetensors"), &Device::Cpu).unwrap()
}

fn assert_close(name: &str, ours: &Tensor, expected: &Tensor) {
    assert_eq!(ours.dims(), expected.dims(), "{name}");
    let diff = (ours - expected)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    let scale = expected
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    let (diff, scale) = (
        diff.to_scalar::<f32>().unwrap(),
        scale.to_scalar::<f32>().unwrap(),
    );
    eprintln!("{name}: max abs diff {diff:.3e}, output scale {scale:.3}");
    assert!(
        diff <= RELATIVE_TOLERANCE * scale,
        "{name}: diff {diff} scale {scale}"
    );
}

#[test]
fn vae_decode_matches_diffusers() {
    let vae = load_vae(&tiny_config()).unwrap();
    let tensors = reference();
    for suffix in ["", "_odd"] {
        let decoded = vae.decode(&tensors[&format!("latents{suffix}")]).unwrap();
        assert_close(
            &format!("decoded{suffix}"),
            &decoded,
            &tensors[&format!("decoded{suffix}")],
        );
    }
}

#[test]
fn vae_encode_matches_diffusers() {
    let vae = load_vae(&tiny_config()).unwrap();
    let tensors = reference();
    for suffix in ["", "_odd"] {
        let (mean, logvar) = vae.encode(&tensors[&format!("image{suffix}")]).unwrap();
        assert_close(
            &format!("mean{suffix}"),
            &mean,
            &tensors[&format!("mean{suffix}")],
        );
        assert_close(
            &format!("logvar{suffix}"),
            &logvar,
            &tensors[&format!("logvar{suffix}")],
        );
    }
}

#[test]
fn vae_load_names_the_missing_tensor_when_channels_disagree() {
    let mut config = tiny_config();
    config.latent_channels = 8;
    let message = load_vae(&config).unwrap_err().to_string();
    assert!(
        message.contains("conv_out.weight") || message.contains("quant_conv.weight"),
        "{message}"
    );
}
