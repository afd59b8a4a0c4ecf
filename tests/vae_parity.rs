//! Parity of `model::vae::AutoEncoderKL` (decode and encode) with diffusers 0.42.1 on two small SD1.5-topology
//! VAEs: the in-repo tiny model (`tests/fixtures/tiny/diffusers`, all widths 32) and
//! `tests/fixtures/models/uneven` (widths 8/8/16/16, so encoder and decoder resnets change channels).
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

/// The two fixture models: (diffusers folder, parity file), relative to the crate root.
const TINY: (&str, &str) = (
    "tests/fixtures/tiny/diffusers",
    "tests/fixtures/models/vae_parity_tiny.safetensors",
);
const UNEVEN: (&str, &str) = (
    "tests/fixtures/models/uneven",
    "tests/fixtures/models/vae_parity_uneven.safetensors",
);

fn crate_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The VaeConfig described by the diffusers `config.json` of a fixture model.
fn config_of(model: (&str, &str)) -> VaeConfig {
    let text = std::fs::read_to_string(crate_path(model.0).join("vae/config.json")).unwrap();
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

fn load_vae(model: (&str, &str), config: &VaeConfig) -> candle_core::Result<AutoEncoderKL> {
    let weights = crate_path(model.0).join("vae/diffusion_pytorch_model.safetensors");
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)? };
    AutoEncoderKL::load(vb, config)
}

fn reference(model: (&str, &str)) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(crate_path(model.1), &Device::Cpu).unwrap()
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
    for model in [TINY, UNEVEN] {
        let vae = load_vae(model, &config_of(model)).unwrap();
        let tensors = reference(model);
        for suffix in ["", "_odd"] {
            let decoded = vae.decode(&tensors[&format!("latents{suffix}")]).unwrap();
            let name = format!("{} decoded{suffix}", model.0);
            assert_close(&name, &decoded, &tensors[&format!("decoded{suffix}")]);
        }
    }
}

#[test]
fn vae_encode_matches_diffusers() {
    for model in [TINY, UNEVEN] {
        let vae = load_vae(model, &config_of(model)).unwrap();
        let tensors = reference(model);
        for suffix in ["", "_odd"] {
            let (mean, logvar) = vae.encode(&tensors[&format!("image{suffix}")]).unwrap();
            let name = format!("{} mean{suffix}", model.0);
            assert_close(&name, &mean, &tensors[&format!("mean{suffix}")]);
            let name = format!("{} logvar{suffix}", model.0);
            assert_close(&name, &logvar, &tensors[&format!("logvar{suffix}")]);
        }
    }
}

#[test]
fn vae_load_names_the_tensor_whose_shape_disagrees() {
    let mut config = config_of(TINY);
    config.latent_channels = 8;
    let message = load_vae(TINY, &config).unwrap_err().to_string();
    assert!(message.contains("conv_out.weight"), "{message}");
}
