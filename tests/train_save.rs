//! Saving a kohya LoRA file: it opens with our reader, `loraeval inspect` shows its metadata, and the
//! `sshs_*` hashes are kohya's (recomputed here from their definition, and checked against values from
//! kohya's own function).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use loraeval::lora::LoraFile;
use loraeval::train::config::TrainConfig;
use loraeval::train::dataset::Dataset;
use loraeval::train::metadata::{file_metadata, training_metadata, MetadataInputs, RunIdentity};
use loraeval::train::plan::{plan, PlanSubset};
use loraeval::train::save::{kohya_hashes, save_lora, LoraTensor, SaveDtype, SaveError};
use sha2::{Digest, Sha256};

const UNET_MODULE: &str = "lora_unet_down_blocks_0_attentions_0_proj_in";
const TE_MODULE: &str = "lora_te_text_model_encoder_layers_0_mlp_fc1";

/// Deterministic values in [-0.5, 0.5).
fn values(n: usize, salt: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + salt * 104_729) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// Two modules; the UNet `lora_down` is big enough (8 × 40000 f16 = 640 KB, 1.28 MB in f32) for the legacy
/// hash window at 1 MiB to fall into the data in f32.
fn tensors() -> Vec<LoraTensor> {
    let t = |module: &str, role: &str, shape: Vec<usize>, salt| LoraTensor {
        name: format!("{module}.{role}"),
        values: values(shape.iter().product(), salt),
        shape,
    };
    vec![
        t(UNET_MODULE, "lora_down.weight", vec![8, 40_000], 1),
        t(UNET_MODULE, "lora_up.weight", vec![320, 8], 2),
        LoraTensor {
            name: format!("{UNET_MODULE}.alpha"),
            shape: vec![],
            values: vec![4.0],
        },
        t(TE_MODULE, "lora_down.weight", vec![8, 768], 3),
        t(TE_MODULE, "lora_up.weight", vec![3072, 8], 4),
        LoraTensor {
            name: format!("{TE_MODULE}.alpha"),
            shape: vec![],
            values: vec![4.0],
        },
    ]
}

fn metadata() -> Vec<(String, String)> {
    [
        ("ss_output_name", "sks"),
        ("ss_network_dim", "8"),
        ("ss_network_alpha", "4.0"),
        ("ss_tag_frequency", r#"{"5_sks": {"sks": 3}}"#),
        ("modelspec.title", "sks"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// kohya's hashes from their definition: the file's header with only the `ss_*` metadata, as `safetensors`
/// lays it out (`__metadata__` then the tensors by name, compact JSON, spaces to a multiple of 8), then the
/// file's own tensor bytes; model hash = SHA-256 of those bytes, legacy = bytes 0x100000..0x110000.
fn reference_hashes(file: &[u8]) -> (String, String) {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let mut header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&file[8..8 + n]).unwrap();
    let metadata = header
        .get_mut("__metadata__")
        .unwrap()
        .as_object_mut()
        .unwrap();
    metadata.retain(|k, _| k.starts_with("ss_"));
    let mut json = serde_json::to_string(&header).unwrap().into_bytes();
    json.resize(json.len().next_multiple_of(8), b' ');
    let data = &file[8 + n..];
    let mut rebuilt = (json.len() as u64).to_le_bytes().to_vec();
    rebuilt.extend(&json);
    rebuilt.extend(data);
    let hex = |b: &[u8]| -> String {
        Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    let legacy = hex(&rebuilt[0x100000.min(rebuilt.len())..0x110000.min(rebuilt.len())]);
    (hex(data), legacy[..8].to_string())
}

#[test]
fn saved_file_opens_and_hashes_are_kohyas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sks-000001.safetensors");
    let saved = save_lora(&path, &tensors(), SaveDtype::F32, &metadata(), false).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 0x110000);
    let (model_hash, legacy_hash) = reference_hashes(&bytes);
    assert_eq!(saved.hashes.model_hash, model_hash);
    assert_eq!(saved.hashes.legacy_hash, legacy_hash);

    let file = LoraFile::open(&path).unwrap();
    assert_eq!(file.modules.len(), 2);
    assert_eq!(file.modules[UNET_MODULE].alpha, Some(4.0));
    assert_eq!(file.metadata["sshs_model_hash"], model_hash);
    assert_eq!(file.metadata["sshs_legacy_hash"], legacy_hash);
    assert_eq!(
        file.metadata["ss_tag_frequency"],
        r#"{"5_sks": {"sks": 3}}"#
    );
    assert_eq!(file.metadata["modelspec.title"], "sks");
    // A1111's hash of the file is kohya's model hash.
    assert_eq!(file.hash, model_hash);
    assert_eq!(
        loraeval::lora::hash::addnet_hash(&path).unwrap(),
        model_hash
    );
}

#[test]
fn user_metadata_does_not_change_the_hashes() {
    let mut edited = metadata();
    edited.push(("modelspec.description".into(), "anything".into()));
    let a = kohya_hashes(&tensors(), SaveDtype::F32, &metadata()).unwrap();
    let b = kohya_hashes(&tensors(), SaveDtype::F32, &edited).unwrap();
    assert_eq!(a, b);
    // An ss_ key moves the data window of the legacy hash (longer header), not the model hash.
    edited.push(("ss_training_comment".into(), "x".repeat(40)));
    let c = kohya_hashes(&tensors(), SaveDtype::F32, &edited).unwrap();
    assert_eq!(a.model_hash, c.model_hash);
    assert_ne!(a.legacy_hash, c.legacy_hash);
}

/// Values printed by kohya's own hash functions (`addnet_hash_safetensors`, `addnet_hash_legacy` of sd-scripts
/// `library/train_util.py`, applied as `precalculate_safetensors_hashes` does: the tensors serialized with the
/// `ss_*` metadata only) on the same tensors and metadata, built in numpy and serialized by Python
/// `safetensors` 0.8.0 (`safetensors.numpy.save`, the same bytes `safetensors.torch.save` gives):
/// ```text
/// python scripts/kohya_lora_hashes.py [f32]
/// f32: 1413984 bytes, b8e31312…05f2 ea32e152     fp16: 707412 bytes, b725e5ef…fd11 e3b0c442
/// ```
/// In fp16 the serialization is shorter than 1 MiB, so the legacy hash is that of no bytes (`e3b0c442`).
#[test]
fn hashes_match_kohyas_function() {
    let f32 = kohya_hashes(&tensors(), SaveDtype::F32, &metadata()).unwrap();
    assert_eq!(
        f32.model_hash,
        "b8e31312adfb6b83d0bb0b3b5fe3b77e2750e140cdc3e816a957f224379305f2"
    );
    assert_eq!(f32.legacy_hash, "ea32e152");
    let f16 = kohya_hashes(&tensors(), SaveDtype::F16, &metadata()).unwrap();
    assert_eq!(
        f16.model_hash,
        "b725e5ef9a296cf032afd1747b63320c17c32193b96c66f22a9d49969f71fd11"
    );
    assert_eq!(f16.legacy_hash, "e3b0c442");
}

#[test]
fn bad_input_is_refused_and_nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.safetensors");
    let mut bad = tensors();
    bad[1].values[3] = f32::NAN;
    assert!(matches!(
        save_lora(&path, &bad, SaveDtype::F16, &[], false),
        Err(SaveError::NonFinite { name }) if name.ends_with("lora_up.weight")
    ));
    assert!(!path.exists());
    let mut renamed = tensors();
    renamed[0].name = "unet.down.lora_A.weight".into();
    assert!(matches!(
        save_lora(&path, &renamed, SaveDtype::F16, &[], false),
        Err(SaveError::BadKey { .. })
    ));
    save_lora(&path, &tensors(), SaveDtype::BF16, &[], false).unwrap();
    assert!(matches!(
        save_lora(&path, &tensors(), SaveDtype::BF16, &[], false),
        Err(SaveError::Exists { .. })
    ));
    save_lora(&path, &tensors(), SaveDtype::BF16, &[], true).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

fn write_png(path: &Path, w: u32, h: u32) {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 128]))
        .save(path)
        .unwrap();
}

/// The whole chain on a small kohya folder: scan → plan → kohya metadata → save → `loraeval inspect`.
#[test]
fn full_metadata_round_trips_and_inspect_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("image/5_sks woman");
    std::fs::create_dir_all(&sub).unwrap();
    for i in 0..3 {
        write_png(&sub.join(format!("{i}.png")), 64, 64);
    }
    std::fs::write(sub.join("0.txt"), "sks woman, smiling\n").unwrap();
    let toml = format!(
        "train_data_dir = {:?}\noutput_name = \"sks\"\nmax_train_epochs = 2\nnetwork_dim = 8\nnetwork_alpha = 4\nlearning_rate = 1e-4\nseed = 42\n",
        dir.path().join("image").display().to_string()
    );
    let (config, _) = TrainConfig::from_toml_str(&toml, Path::new("t.toml")).unwrap();
    let settings = config.resolve().unwrap();
    let dataset = Dataset::scan(&settings.train_data_dir, None, &settings.scan).unwrap();
    let plan = plan(&PlanSubset::from_dataset(&dataset), &settings.plan).unwrap();
    let run = RunIdentity {
        session_id: 123,
        training_started_at: 1_700_000_000.5,
        seed: 42,
    };
    let training = training_metadata(&MetadataInputs {
        settings: &settings,
        plan: &plan,
        dataset: &dataset,
        run,
        base_model: None,
    });
    let last = plan.saves.last().unwrap();
    let meta = file_metadata(&training, last, &settings, 1_700_000_100.25);
    let path = dir.path().join(&last.file_name);
    save_lora(&path, &tensors(), SaveDtype::F16, &meta, false).unwrap();

    let file = LoraFile::open(&path).unwrap();
    let m = &file.metadata;
    // 3 images × 5 repeats = 15 batches; 2 epochs → 30 steps.
    assert_eq!(m["ss_num_train_images"], "15");
    assert_eq!(m["ss_num_epochs"], "2");
    assert_eq!(m["ss_epoch"], "2");
    assert_eq!(m["ss_steps"], "30");
    assert_eq!(m["ss_max_train_steps"], "30");
    assert_eq!(m["ss_learning_rate"], "0.0001");
    assert_eq!(m["ss_network_alpha"], "4.0");
    assert_eq!(m["ss_network_dim"], "8");
    assert_eq!(m["ss_unet_lr"], "None");
    assert_eq!(m["ss_resolution"], "(512, 512)");
    assert_eq!(m["ss_training_started_at"], "1700000000.5");
    assert_eq!(m["ss_training_finished_at"], "1700000100.25");
    assert_eq!(
        m["ss_dataset_dirs"],
        r#"{"5_sks woman": {"n_repeats": 5, "img_count": 3}}"#
    );
    // 0.png has a caption file; 1.png and 2.png get the class tokens.
    assert_eq!(
        m["ss_tag_frequency"],
        r#"{"5_sks woman": {"sks woman": 3, "smiling": 1}}"#
    );
    assert_eq!(m["ss_bucket_info"], "null");
    assert_eq!(m["ss_base_model_version"], "sd_v1");
    assert_eq!(m["modelspec.architecture"], "stable-diffusion-v1/lora");
    assert_eq!(m["modelspec.date"], "2023-11-14T22:15:00");
    assert!(m.contains_key("sshs_model_hash") && m.contains_key("sshs_legacy_hash"));

    let inspect = Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .arg("inspect")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success(), "{text}");
    for expected in ["sks", "0.0001", "sks woman"] {
        assert!(
            text.contains(expected),
            "inspect output lacks {expected}:\n{text}"
        );
    }
}
