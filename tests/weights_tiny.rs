//! `Checkpoint` + `ClipTextModel` on the in-repo tiny model (tests/fixtures/tiny, made by scripts/make_tiny_model.py,
//! whose single file was verified against diffusers' own single-file conversion).
//!
//! References: tests/fixtures/weights/tiny_clip_expected.safetensors (transformers `CLIPTextModel`, by
//! scripts/make_weights_fixtures.py) and the text conditioning recorded in the render traces
//! (scripts/make_render_fixtures.py; with all emphasis multipliers 1 it is the plain CLIP output).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use loraeval::model::clip::ClipTextModel;
use loraeval::model::config::{ClipConfig, UNetConfig, VaeConfig};
use loraeval::weights::safetensors_file::SafetensorsFile;
use loraeval::weights::{Checkpoint, Component, Layout};
use safetensors::{Dtype, View};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn single_path() -> PathBuf {
    repo("tests/fixtures/tiny/tiny-sd15.safetensors")
}

fn folder_path() -> PathBuf {
    repo("tests/fixtures/tiny/diffusers")
}

const COMPONENTS: [Component; 3] = [Component::Unet, Component::Vae, Component::TextEncoder];

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
    diff.max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Every tensor of every component is bit-identical between the two checkpoints.
fn assert_same_tensors(a: &Checkpoint, b: &Checkpoint) {
    for component in COMPONENTS {
        let names = a.tensor_names(component);
        assert_eq!(names, b.tensor_names(component), "{component:?}");
        for name in names {
            let x = a.tensor(component, &name, &Device::Cpu).unwrap();
            let y = b.tensor(component, &name, &Device::Cpu).unwrap();
            assert_eq!(max_abs_diff(&x, &y), 0.0, "{name}");
        }
    }
}

#[test]
fn tiny_layouts_infer_the_same_architecture_and_tensors() {
    let single = Checkpoint::open(&single_path()).unwrap();
    let folder = Checkpoint::open(&folder_path()).unwrap();
    assert_eq!(single.layout(), Layout::SingleFile);
    assert_eq!(folder.layout(), Layout::Diffusers);
    // scripts/README.md: UNet/VAE block_out (32,32,32,32), cross-attn 24; CLIP hidden 24, 2 layers, MLP 96.
    let unet = UNetConfig {
        block_out_channels: vec![32; 4],
        cross_attention_dim: 24,
        ..UNetConfig::sd15()
    };
    let vae = VaeConfig {
        block_out_channels: vec![32; 4],
        ..VaeConfig::sd15()
    };
    let clip = ClipConfig {
        hidden_size: 24,
        intermediate_size: 96,
        num_hidden_layers: 2,
        ..ClipConfig::sd15()
    };
    for checkpoint in [&single, &folder] {
        assert_eq!(checkpoint.unet_config(), unet);
        assert_eq!(checkpoint.vae_config(), vae);
        assert_eq!(checkpoint.clip_config(), clip);
    }
    // Every LDM key of each component maps to a distinct diffusers name (nothing dropped or merged).
    let file = SafetensorsFile::open(&single_path()).unwrap();
    for (component, prefix) in [
        (Component::Unet, "model.diffusion_model."),
        (Component::Vae, "first_stage_model."),
        (Component::TextEncoder, "cond_stage_model.transformer."),
    ] {
        let stored = file
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix) && !k.ends_with("position_ids"));
        assert_eq!(
            single.tensor_names(component).len(),
            stored.count(),
            "{component:?}"
        );
    }
    assert_same_tensors(&single, &folder);
}

struct Bytes(Dtype, Vec<usize>, Vec<u8>);

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.0
    }
    fn shape(&self) -> &[usize] {
        &self.1
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.2)
    }
    fn data_len(&self) -> usize {
        self.2.len()
    }
}

fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}

/// Re-encodes the tiny single file in `dtype`; with `ema`, adds `model_ema.*` copies (negated, so using them
/// instead of the real weights would show) plus the EMA buffers.
fn rewrite_single_file(path: &Path, dtype: Dtype, ema: bool) {
    let source = SafetensorsFile::open(&single_path()).unwrap();
    let mut tensors = HashMap::new();
    for key in source.tensors.keys() {
        let (values, shape) = source.read_f32(key).unwrap();
        if ema {
            if let Some(rest) = key.strip_prefix("model.") {
                let ema_key = format!("model_ema.{}", rest.replace('.', ""));
                let negated: Vec<f32> = values.iter().map(|v| -v).collect();
                tensors.insert(
                    ema_key,
                    Bytes(dtype, shape.clone(), encode(&negated, dtype)),
                );
            }
        }
        tensors.insert(key.clone(), Bytes(dtype, shape, encode(&values, dtype)));
    }
    if ema {
        tensors.insert(
            "model_ema.decay".into(),
            Bytes(Dtype::F32, vec![], encode(&[0.9999], Dtype::F32)),
        );
        tensors.insert(
            "model_ema.num_updates".into(),
            Bytes(Dtype::I32, vec![], 7i32.to_le_bytes().to_vec()),
        );
    }
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.clone(), v)), None).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn tiny_f32_bf16_and_ema_variants_serve_the_same_tensors() {
    // scripts/README.md: every tiny weight is exactly representable in f16 and bf16.
    let reference = Checkpoint::open(&single_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, dtype, ema) in [
        ("f32", Dtype::F32, false),
        ("bf16", Dtype::BF16, false),
        ("ema", Dtype::F32, true),
    ] {
        let path = dir.path().join(format!("tiny-{name}.safetensors"));
        rewrite_single_file(&path, dtype, ema);
        let variant = Checkpoint::open(&path).unwrap();
        assert_same_tensors(&reference, &variant);
    }
}

fn load_expected(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn load_clip(path: &Path) -> ClipTextModel {
    let checkpoint = Checkpoint::open(path).unwrap();
    ClipTextModel::load(
        checkpoint.text_encoder_vb(&Device::Cpu),
        &checkpoint.clip_config(),
    )
    .unwrap()
}

#[test]
fn tiny_clip_matches_transformers_from_both_layouts() {
    let expected = load_expected(&repo(
        "tests/fixtures/weights/tiny_clip_expected.safetensors",
    ));
    for path in [single_path(), folder_path()] {
        let clip = load_clip(&path);
        for skip in 1..=3 {
            let ours = clip.forward(&expected["input_ids"], skip).unwrap();
            let diff = max_abs_diff(&ours, &expected[&format!("clip_skip_{skip}")]);
            eprintln!(
                "{}: clip skip {skip}: max abs diff {diff:e}",
                path.display()
            );
            assert!(
                diff <= 1e-4,
                "{}: clip skip {skip}: max abs diff {diff}",
                path.display()
            );
        }
    }
}

#[test]
fn tiny_clip_matches_the_render_traces_conditioning() {
    let clip = load_clip(&single_path());
    for (trace, skip) in [
        ("trace-euler.safetensors", 1),
        ("trace-clip_skip2.safetensors", 2),
    ] {
        let recorded = load_expected(&repo(&format!("tests/fixtures/tiny/{trace}")));
        for side in ["cond", "uncond"] {
            let multipliers = recorded[&format!("{side}_multipliers")]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert!(
                multipliers.iter().all(|&m| m == 1.0),
                "{trace}: emphasis would change {side}"
            );
            let tokens = recorded[&format!("{side}_tokens")]
                .to_dtype(candle_core::DType::U32)
                .unwrap();
            let ours = clip.forward(&tokens, skip).unwrap();
            let diff = max_abs_diff(&ours, &recorded[side]);
            assert!(diff <= 1e-4, "{trace} {side}: max abs diff {diff}");
        }
    }
}
