//! End to end through `weights::Checkpoint`: the tiny model opened as an LDM single file and as a diffusers folder
//! (config inferred from shapes, names mapped by `weights`) gives diffusers' UNet ε and VAE decode.
//!
//! Reference tensors come from `scripts/make_model_fixtures.py` (diffusers' f32 outputs on the diffusers folder;
//! `tests/fixtures/tiny/tiny-sd15.safetensors` holds the same weights in the LDM layout).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use loraeval::model::unet::UNet2DConditionModel;
use loraeval::model::vae::AutoEncoderKL;
use loraeval::weights::Checkpoint;

/// Allowed max |ours − diffusers| relative to max |diffusers|.
const RELATIVE_TOLERANCE: f32 = 1e-4;

const SOURCES: [&str; 2] = [
    "tests/fixtures/tiny/tiny-sd15.safetensors",
    "tests/fixtures/tiny/diffusers",
];

fn crate_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn reference(file: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(crate_path(file), &Device::Cpu).unwrap()
}

fn assert_close(name: &str, ours: &Tensor, expected: &Tensor) {
    assert_eq!(ours.dims(), expected.dims(), "{name}");
    let diff = (ours - expected)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap();
    let diff = diff.max(0).unwrap().to_scalar::<f32>().unwrap();
    let scale = expected.abs().unwrap().flatten_all().unwrap();
    let scale = scale.max(0).unwrap().to_scalar::<f32>().unwrap();
    eprintln!("{name}: max abs diff {diff:.3e}, output scale {scale:.3}");
    assert!(
        diff <= RELATIVE_TOLERANCE * scale,
        "{name}: diff {diff} scale {scale}"
    );
}

#[test]
fn unet_from_checkpoint_matches_diffusers() {
    let tensors = reference("tests/fixtures/models/unet_parity_tiny.safetensors");
    let timestep = tensors["timestep"].to_vec1::<f64>().unwrap()[0];
    for source in SOURCES {
        let checkpoint = Checkpoint::open(&crate_path(source)).unwrap();
        let vb = checkpoint.unet_vb(&Device::Cpu);
        let unet = UNet2DConditionModel::load(vb, &checkpoint.unet_config()).unwrap();
        let eps = unet
            .forward(&tensors["sample"], timestep, &tensors["context_77"])
            .unwrap();
        assert_close(&format!("{source} eps_77"), &eps, &tensors["eps_77"]);
    }
}

#[test]
fn vae_from_checkpoint_matches_diffusers() {
    let tensors = reference("tests/fixtures/models/vae_parity_tiny.safetensors");
    for source in SOURCES {
        let checkpoint = Checkpoint::open(&crate_path(source)).unwrap();
        let vb = checkpoint.vae_vb(&Device::Cpu);
        let vae = AutoEncoderKL::load(vb, &checkpoint.vae_config()).unwrap();
        let decoded = vae.decode(&tensors["latents"]).unwrap();
        assert_close(&format!("{source} decoded"), &decoded, &tensors["decoded"]);
        let (mean, _) = vae.encode(&tensors["image"]).unwrap();
        assert_close(&format!("{source} mean"), &mean, &tensors["mean"]);
    }
}
