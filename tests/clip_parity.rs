//! `ClipTextModel` against transformers' `CLIPTextModel` (fixtures by scripts/make_weights_fixtures.py).
//!
//! The tiny random model has 3 layers, so clip skip 1..=4 covers last_hidden_state, every intermediate layer and the
//! embeddings alone, each through final_layer_norm (A1111 semantics).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use loraeval::model::clip::ClipTextModel;
use loraeval::model::config::ClipConfig;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/weights");

/// The configuration written at the top of scripts/make_weights_fixtures.py.
fn tiny_config() -> ClipConfig {
    ClipConfig {
        vocab_size: 512,
        hidden_size: 48,
        intermediate_size: 192,
        num_hidden_layers: 3,
        num_attention_heads: 12,
        max_position_embeddings: 77,
    }
}

fn load_model() -> ClipTextModel {
    let bytes = std::fs::read(Path::new(FIXTURES).join("clip_tiny.safetensors")).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).unwrap();
    ClipTextModel::load(vb, &tiny_config()).unwrap()
}

fn expected() -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(
        Path::new(FIXTURES).join("clip_tiny_expected.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn clip_matches_transformers_for_every_clip_skip() {
    let model = load_model();
    let reference = expected();
    let ids = &reference["input_ids"];
    for skip in 1..=4 {
        let ours = model.forward(ids, skip).unwrap();
        let theirs = &reference[&format!("clip_skip_{skip}")];
        let diff = max_abs_diff(&ours, theirs);
        eprintln!("clip skip {skip}: max abs diff {diff:e}");
        assert!(diff <= 1e-4, "clip skip {skip}: max abs diff {diff}");
    }
}

#[test]
fn clip_skip_outputs_differ_from_each_other() {
    let reference = expected();
    let diff = max_abs_diff(&reference["clip_skip_1"], &reference["clip_skip_2"]);
    assert!(
        diff > 0.1,
        "fixture would not catch a wrong clip skip: {diff}"
    );
}

#[test]
fn clip_rejects_bad_clip_skip_and_ids() {
    let model = load_model();
    let ids = &expected()["input_ids"];
    let zero = model.forward(ids, 0).unwrap_err().to_string();
    assert!(zero.contains("clip skip 0 out of range 1..=4"), "{zero}");
    assert!(model.forward(ids, 5).is_err());
    let out_of_vocab = Tensor::new(&[[510u32, 512, 511]], &Device::Cpu).unwrap();
    let message = model.forward(&out_of_vocab, 1).unwrap_err().to_string();
    assert!(
        message.contains("token id 512 outside the vocabulary of 512"),
        "{message}"
    );
    let too_long = Tensor::zeros((1, 78), DType::U32, &Device::Cpu).unwrap();
    assert!(model.forward(&too_long, 1).is_err());
}

#[test]
fn clip_missing_weight_names_the_tensor() {
    let bytes = std::fs::read(Path::new(FIXTURES).join("clip_tiny.safetensors")).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).unwrap();
    let four_layers = ClipConfig {
        num_hidden_layers: 4,
        ..tiny_config()
    };
    let message = ClipTextModel::load(vb, &four_layers)
        .unwrap_err()
        .to_string();
    assert!(message.contains("text_model.encoder.layers.3"), "{message}");
}
