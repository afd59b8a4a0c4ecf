//! Parity of `model::unet::UNet2DConditionModel` with diffusers 0.42.1 on the tiny SD1.5-topology UNet.
//!
//! Reference tensors come from `scripts/make_model_fixtures.py` (inputs and diffusers' f32 outputs).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use loraeval::model::config::UNetConfig;
use loraeval::model::unet::UNet2DConditionModel;

/// Allowed max |ours − diffusers| relative to max |diffusers|.
const RELATIVE_TOLERANCE: f32 = 1e-4;

fn fixture_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(relative)
}

/// The UNetConfig described by the diffusers `config.json` of the tiny model.
fn tiny_config() -> UNetConfig {
    let text = std::fs::read_to_string(fixture_path("tiny/unet/config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let usizes = |key: &str| -> Vec<usize> {
        json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let usize_of = |key: &str| json[key].as_u64().unwrap() as usize;
    UNetConfig {
        in_channels: usize_of("in_channels"),
        out_channels: usize_of("out_channels"),
        block_out_channels: usizes("block_out_channels"),
        down_block_has_attention: json["down_block_types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().starts_with("CrossAttn"))
            .collect(),
        layers_per_block: usize_of("layers_per_block"),
        cross_attention_dim: usize_of("cross_attention_dim"),
        // diffusers' SD1.5 `attention_head_dim` is the number of heads.
        attention_heads: usize_of("attention_head_dim"),
        norm_num_groups: usize_of("norm_num_groups"),
        norm_eps: json["norm_eps"].as_f64().unwrap(),
    }
}

fn load_unet(config: &UNetConfig) -> candle_core::Result<UNet2DConditionModel> {
    let weights = fixture_path("tiny/unet/diffusion_pytorch_model.safetensors");
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)? };
    UNet2DConditionModel::load(vb, config)
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture_path("unet_parity.safetensors"), &Device::Cpu).unwrap()
}

/// (max |a − b|, max |b|).
fn max_diff(ours: &Tensor, expected: &Tensor) -> (f32, f32) {
    assert_eq!(ours.dims(), expected.dims());
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
    (
        diff.to_scalar::<f32>().unwrap(),
        scale.to_scalar::<f32>().unwrap(),
    )
}

fn check_case(sample: &str, context: &str, expected: &str) {
    let unet = load_unet(&tiny_config()).unwrap();
    let tensors = reference();
    let timestep = tensors["timestep"].to_vec1::<f64>().unwrap()[0];
    let eps = unet
        .forward(&tensors[sample], timestep, &tensors[context])
        .unwrap();
    let (diff, scale) = max_diff(&eps, &tensors[expected]);
    eprintln!("{expected}: max abs diff {diff:.3e}, output scale {scale:.3}");
    assert!(
        diff <= RELATIVE_TOLERANCE * scale,
        "{expected}: diff {diff} scale {scale}"
    );
}

#[test]
fn unet_matches_diffusers_with_77_token_context() {
    check_case("sample", "context_77", "eps_77");
}

#[test]
fn unet_matches_diffusers_with_154_token_context() {
    check_case("sample", "context_154", "eps_154");
}

#[test]
fn unet_matches_diffusers_on_odd_latent_size() {
    check_case("sample_odd", "context_77", "eps_odd_77");
}

#[test]
fn unet_forward_rejects_wrong_context_width() {
    let config = tiny_config();
    let unet = load_unet(&config).unwrap();
    let sample = Tensor::zeros((1, 4, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let context = Tensor::zeros(
        (1, 77, config.cross_attention_dim + 1),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert!(unet.forward(&sample, 500.0, &context).is_err());
}

#[test]
fn unet_load_names_the_tensor_whose_shape_disagrees() {
    let mut config = tiny_config();
    config.cross_attention_dim += 8;
    let message = load_unet(&config).unwrap_err().to_string();
    assert!(message.contains("attn2.to_k.weight"), "{message}");
}
