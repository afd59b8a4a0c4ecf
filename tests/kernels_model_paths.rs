//! The UNet and VAE parity checks of `tests/unet_parity.rs` and `tests/vae_parity.rs` (diffusers 0.42.1 outputs
//! on the tiny and uneven fixture models, same tolerance) on every instruction-set path of the kernels, checking
//! that the model's kernels ran on that path; and that a `LORAEVAL_KERNELS` override, when set, is in effect (CI
//! runs the model and pipeline parity tests once per path that way, `.ci/run`).

#[macro_use]
mod kernels_support;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use kernels_support::{assert_ran, kernels_on, on_path};
use loraeval::model::config::{UNetConfig, VaeConfig};
use loraeval::model::kernels::isa::{self, Isa};
use loraeval::model::unet::UNet2DConditionModel;
use loraeval::model::vae::AutoEncoderKL;

/// Allowed max |ours − diffusers| relative to max |diffusers| (as in the parity tests).
const RELATIVE_TOLERANCE: f32 = 1e-4;

/// The fixture models (diffusers folder, UNet parity file, VAE parity file), relative to the crate root.
const MODELS: [(&str, &str, &str); 2] = [
    (
        "tests/fixtures/tiny/diffusers",
        "tests/fixtures/models/unet_parity_tiny.safetensors",
        "tests/fixtures/models/vae_parity_tiny.safetensors",
    ),
    (
        "tests/fixtures/models/uneven",
        "tests/fixtures/models/unet_parity_uneven.safetensors",
        "tests/fixtures/models/vae_parity_uneven.safetensors",
    ),
];

fn crate_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn config_json(folder: &str, part: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(crate_path(folder).join(part).join("config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn usizes(json: &serde_json::Value, key: &str) -> Vec<usize> {
    let values = json[key].as_array().unwrap().iter();
    values.map(|v| v.as_u64().unwrap() as usize).collect()
}

fn usize_of(json: &serde_json::Value, key: &str) -> usize {
    json[key].as_u64().unwrap() as usize
}

fn unet_config(folder: &str) -> UNetConfig {
    let json = config_json(folder, "unet");
    UNetConfig {
        in_channels: usize_of(&json, "in_channels"),
        out_channels: usize_of(&json, "out_channels"),
        block_out_channels: usizes(&json, "block_out_channels"),
        down_block_has_attention: json["down_block_types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().starts_with("CrossAttn"))
            .collect(),
        layers_per_block: usize_of(&json, "layers_per_block"),
        cross_attention_dim: usize_of(&json, "cross_attention_dim"),
        // diffusers' SD1.5 `attention_head_dim` is the number of heads.
        attention_heads: usize_of(&json, "attention_head_dim"),
        norm_num_groups: usize_of(&json, "norm_num_groups"),
        norm_eps: json["norm_eps"].as_f64().unwrap(),
    }
}

fn vae_config(folder: &str) -> VaeConfig {
    let json = config_json(folder, "vae");
    VaeConfig {
        in_channels: usize_of(&json, "in_channels"),
        out_channels: usize_of(&json, "out_channels"),
        latent_channels: usize_of(&json, "latent_channels"),
        block_out_channels: usizes(&json, "block_out_channels"),
        layers_per_block: usize_of(&json, "layers_per_block"),
        norm_num_groups: usize_of(&json, "norm_num_groups"),
        scaling_factor: json["scaling_factor"].as_f64().unwrap(),
    }
}

fn var_builder(folder: &str, part: &str) -> VarBuilder<'static> {
    let weights = crate_path(folder)
        .join(part)
        .join("diffusion_pytorch_model.safetensors");
    unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu).unwrap() }
}

fn reference(file: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(crate_path(file), &Device::Cpu).unwrap()
}

fn assert_close(name: &str, ours: &Tensor, expected: &Tensor) {
    assert_eq!(ours.dims(), expected.dims(), "{name}");
    let max_abs = |t: &Tensor| t.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let diff = max_abs(&(ours - expected).unwrap())
        .to_scalar::<f32>()
        .unwrap();
    let scale = max_abs(expected).to_scalar::<f32>().unwrap();
    eprintln!("{name}: max abs diff {diff:.3e}, output scale {scale:.3}");
    assert!(
        diff <= RELATIVE_TOLERANCE * scale,
        "{name}: diff {diff} scale {scale}"
    );
}

/// The kernels a model run used on `path`, each at least once: every model run uses the convolutions, GroupNorm
/// and (`attention`: the UNet) attention and Linear; when the run has rows of at least 16 pixels (`wide`), its
/// 3×3 convolutions there take Winograd on the SIMD paths.
fn assert_model_kernels(runs: &[isa::KernelRun], path: Isa, attention: bool, wide: bool) {
    let ran: BTreeSet<&str> = kernels_on(runs, path).into_iter().collect();
    eprintln!("{path}: {ran:?}");
    assert_ran(runs, path, "conv im2col");
    if wide && path != Isa::Portable {
        assert_ran(runs, path, "conv winograd");
    }
    if attention {
        for kernel in ["attention", "linear", "linear+geglu"] {
            assert_ran(runs, path, kernel);
        }
    }
}

fn unet_matches_diffusers(path: Isa) {
    for (folder, unet_file, _) in MODELS {
        let vb = var_builder(folder, "unet");
        let unet = UNet2DConditionModel::load(vb, &unet_config(folder)).unwrap();
        let tensors = reference(unet_file);
        let timestep = tensors["timestep"].to_vec1::<f64>().unwrap()[0];
        // `sample` is 8×16 latents (Winograd on its 16-wide rows), `sample_odd` 9×13.
        for (sample, context, expected) in [
            ("sample", "context_77", "eps_77"),
            ("sample", "context_154", "eps_154"),
            ("sample_odd", "context_77", "eps_odd_77"),
        ] {
            let (eps, runs) = on_path(path, || {
                unet.forward(&tensors[sample], timestep, &tensors[context])
                    .unwrap()
            });
            assert_model_kernels(&runs, path, true, sample == "sample");
            let name = format!("{path} {folder} {expected}");
            assert_close(&name, &eps, &tensors[expected]);
        }
    }
}
path_tests!(unet_matches_diffusers: portable, avx2, avx512);

fn vae_matches_diffusers(path: Isa) {
    for (folder, _, vae_file) in MODELS {
        let vae = AutoEncoderKL::load(var_builder(folder, "vae"), &vae_config(folder)).unwrap();
        let tensors = reference(vae_file);
        for suffix in ["", "_odd"] {
            let (decoded, runs) = on_path(path, || {
                vae.decode(&tensors[&format!("latents{suffix}")]).unwrap()
            });
            assert_model_kernels(&runs, path, false, true);
            let name = format!("{path} {folder} decoded{suffix}");
            assert_close(&name, &decoded, &tensors[&format!("decoded{suffix}")]);

            let ((mean, logvar), runs) = on_path(path, || {
                vae.encode(&tensors[&format!("image{suffix}")]).unwrap()
            });
            assert!(!runs.is_empty());
            kernels_on(&runs, path);
            let name = format!("{path} {folder} mean{suffix}");
            assert_close(&name, &mean, &tensors[&format!("mean{suffix}")]);
            let name = format!("{path} {folder} logvar{suffix}");
            assert_close(&name, &logvar, &tensors[&format!("logvar{suffix}")]);
        }
    }
}
path_tests!(vae_matches_diffusers: portable, avx2, avx512);

/// With `LORAEVAL_KERNELS` set (CI's per-path runs of the parity tests), the kernels take that path, so those runs
/// test what they claim; a path this CPU lacks is an error here rather than a silent fallback.
#[test]
fn kernels_override_from_the_environment_is_in_effect() {
    let Some(requested) = std::env::var_os("LORAEVAL_KERNELS") else {
        assert!(isa::override_problem().is_none());
        assert_eq!(isa::default_isa(), isa::detected());
        return;
    };
    let requested = requested.to_string_lossy();
    assert_eq!(
        isa::override_problem(),
        None,
        "LORAEVAL_KERNELS={requested}"
    );
    let want = Isa::parse(&requested).unwrap();
    assert_eq!(isa::default_isa(), want);
    let (_, runs) = isa::traced(|| {
        let x = Tensor::ones((1, 2, 3, 4), DType::F32, &Device::Cpu).unwrap();
        loraeval::model::kernels::pointwise::silu(&x).unwrap()
    });
    assert_eq!(kernels_on(&runs, want), ["silu"]);
}
