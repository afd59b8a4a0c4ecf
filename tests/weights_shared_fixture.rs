//! Optional check against the shared sd15-tiny fixture (single file vs diffusers folder made by diffusers itself).
//!
//! Runs only when `LORAEVAL_SHARED_FIXTURES` points at a folder holding `tiny-sd15.safetensors` and `diffusers/`
//! (e.g. /work/shared/fixtures/sd15-tiny); CI skips it.

use std::path::PathBuf;

use candle_core::Device;
use loraeval::model::config::{ClipConfig, UNetConfig, VaeConfig};
use loraeval::weights::{Checkpoint, Component, Layout};

fn shared_fixture() -> PathBuf {
    std::env::var_os("LORAEVAL_SHARED_FIXTURES")
        .map(PathBuf::from)
        .expect("set LORAEVAL_SHARED_FIXTURES to the sd15-tiny folder")
}

#[test]
#[ignore = "needs LORAEVAL_SHARED_FIXTURES=<shared>/fixtures/sd15-tiny (outside the repo)"]
fn shared_tiny_layouts_serve_identical_tensors() {
    let dir = shared_fixture();
    let single = Checkpoint::open(&dir.join("tiny-sd15.safetensors")).unwrap();
    let folder = Checkpoint::open(&dir.join("diffusers")).unwrap();
    assert_eq!(single.layout(), Layout::SingleFile);
    assert_eq!(folder.layout(), Layout::Diffusers);
    let expected_unet = UNetConfig {
        block_out_channels: vec![32, 64, 64, 64],
        cross_attention_dim: 48,
        ..UNetConfig::sd15()
    };
    let expected_vae = VaeConfig {
        block_out_channels: vec![32, 64, 64, 64],
        ..VaeConfig::sd15()
    };
    let expected_clip = ClipConfig {
        hidden_size: 48,
        intermediate_size: 192,
        num_hidden_layers: 2,
        ..ClipConfig::sd15()
    };
    for checkpoint in [&single, &folder] {
        assert_eq!(checkpoint.unet_config(), expected_unet);
        assert_eq!(checkpoint.vae_config(), expected_vae);
        assert_eq!(checkpoint.clip_config(), expected_clip);
    }
    let device = Device::Cpu;
    for component in [Component::Unet, Component::Vae, Component::TextEncoder] {
        let names = single.tensor_names(component);
        assert_eq!(names, folder.tensor_names(component), "{component:?}");
        for name in names {
            let a = single.tensor(component, &name, &device).unwrap();
            let b = folder.tensor(component, &name, &device).unwrap();
            assert_eq!(a.dims(), b.dims(), "{name}");
            let diff = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{name}");
        }
    }
}
