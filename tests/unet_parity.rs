//! Parity of `model::unet::UNet2DConditionModel` with diffusers 0.42.1 on two small SD1.5-topology UNets: the
//! in-repo tiny model (`tests/fixtures/tiny/diffusers`, all widths 32) and `tests/fixtures/models/uneven` (widths
//! 8/16/16/16, so down-path resnets change channels too).
//!
//! Reference tensors come from `scripts/make_model_fixtures.py` (inputs and diffusers' f32 outputs).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use loraeval::model::config::UNetConfig;
use loraeval::model::unet::UNet2DConditionModel;

/// Allowed max |ours − diffusers| relative to max |diffusers|.
const RELATIVE_TOLERANCE: f32 = 1e-4;

/// The two fixture models: (diffusers folder, parity file), relative to the crate root.
const TINY: (&str, &str) = (
    "tests/fixtures/tiny/diffusers",
    "tests/fixtures/models/unet_parity_tiny.safetensors",
);
const UNEVEN: (&str, &str) = (
    "tests/fixtures/models/uneven",
    "tests/fixtures/models/unet_parity_uneven.safetensors",
);

fn crate_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn weights_path(model: (&str, &str)) -> PathBuf {
    crate_path(model.0).join("unet/diffusion_pytorch_model.safetensors")
}

/// The UNetConfig described by the diffusers `config.json` of a fixture model.
fn config_of(model: (&str, &str)) -> UNetConfig {
    let text = std::fs::read_to_string(crate_path(model.0).join("unet/config.json")).unwrap();
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

fn load_unet(
    model: (&str, &str),
    config: &UNetConfig,
) -> candle_core::Result<UNet2DConditionModel> {
    let weights = weights_path(model);
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)? };
    UNet2DConditionModel::load(vb, config)
}

fn reference(model: (&str, &str)) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(crate_path(model.1), &Device::Cpu).unwrap()
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

fn check_case(model: (&str, &str), sample: &str, context: &str, expected: &str) {
    let unet = load_unet(model, &config_of(model)).unwrap();
    let tensors = reference(model);
    let timestep = tensors["timestep"].to_vec1::<f64>().unwrap()[0];
    let eps = unet
        .forward(&tensors[sample], timestep, &tensors[context])
        .unwrap();
    let (diff, scale) = max_diff(&eps, &tensors[expected]);
    eprintln!(
        "{} {expected}: max abs diff {diff:.3e}, output scale {scale:.3}",
        model.0
    );
    assert!(
        diff <= RELATIVE_TOLERANCE * scale,
        "{} {expected}: diff {diff} scale {scale}",
        model.0
    );
}

#[test]
fn unet_matches_diffusers_with_77_token_context() {
    check_case(TINY, "sample", "context_77", "eps_77");
    check_case(UNEVEN, "sample", "context_77", "eps_77");
}

#[test]
fn unet_matches_diffusers_with_154_token_context() {
    check_case(TINY, "sample", "context_154", "eps_154");
    check_case(UNEVEN, "sample", "context_154", "eps_154");
}

#[test]
fn unet_matches_diffusers_on_odd_latent_size() {
    check_case(TINY, "sample_odd", "context_77", "eps_odd_77");
    check_case(UNEVEN, "sample_odd", "context_77", "eps_odd_77");
}

#[test]
fn unet_load_reads_every_tensor_of_the_diffusers_file() {
    for model in [TINY, UNEVEN] {
        let tensors = candle_core::safetensors::load(weights_path(model), &Device::Cpu).unwrap();
        let names: Vec<String> = tensors.keys().cloned().collect();
        let requested = Arc::new(Mutex::new(HashSet::new()));
        let backend = RecordingBackend {
            tensors,
            requested: requested.clone(),
        };
        let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu);
        UNet2DConditionModel::load(vb, &config_of(model)).unwrap();
        let requested = requested.lock().unwrap();
        let unused: Vec<&String> = names.iter().filter(|n| !requested.contains(*n)).collect();
        assert!(unused.is_empty(), "{}: unused tensors {unused:?}", model.0);
    }
}

#[test]
fn unet_forward_rejects_wrong_context_width() {
    let config = config_of(TINY);
    let unet = load_unet(TINY, &config).unwrap();
    let sample = Tensor::zeros((1, 4, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let context_shape = (1, 77, config.cross_attention_dim + 1);
    let context = Tensor::zeros(context_shape, DType::F32, &Device::Cpu).unwrap();
    assert!(unet.forward(&sample, 500.0, &context).is_err());
}

#[test]
fn unet_load_names_the_tensor_whose_shape_disagrees() {
    let mut config = config_of(TINY);
    config.cross_attention_dim += 8;
    let message = load_unet(TINY, &config).unwrap_err().to_string();
    assert!(message.contains("attn2.to_k.weight"), "{message}");
}

/// Serves tensors from a map and records which names were requested.
struct RecordingBackend {
    tensors: HashMap<String, Tensor>,
    requested: Arc<Mutex<HashSet<String>>>,
}

impl SimpleBackend for RecordingBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        _: &Device,
    ) -> candle_core::Result<Tensor> {
        self.requested.lock().unwrap().insert(name.to_string());
        let tensor = self.get_unchecked(name, dtype, &Device::Cpu)?;
        if tensor.shape() != &shape {
            candle_core::bail!("{name}: expected {shape:?}, file has {:?}", tensor.shape());
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _: &Device) -> candle_core::Result<Tensor> {
        match self.tensors.get(name) {
            Some(tensor) => tensor.to_dtype(dtype),
            None => candle_core::bail!("no tensor {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}
