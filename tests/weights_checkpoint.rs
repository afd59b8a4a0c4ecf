//! `weights::Checkpoint` on synthetic SD1.x-shaped files written by this test (nothing is read from outside).
//!
//! The generator below enumerates a miniature SD1.5 (UNet channels 32/64/32/32, VAE 32/64/32/32, CLIP width 24,
//! 2 layers) with every tensor's diffusers name, its original LDM name and both shapes, written independently of
//! the crate's renaming code from the block layout in formats.md 1.4–1.6. Each tensor gets distinct values, so a
//! wrong mapping, a swapped level or a wrong reshape shows up as a value mismatch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use loraeval::model::config::{ClipConfig, UNetConfig, VaeConfig};
use loraeval::weights::{model_hash, Checkpoint, Component, Layout, WeightsError};
use safetensors::{Dtype, View};

const UNET_CH: [usize; 4] = [32, 64, 32, 32];
const VAE_CH: [usize; 4] = [32, 64, 32, 32];
const CONTEXT: usize = 24;
const CLIP_WIDTH: usize = 24;
const CLIP_LAYERS: usize = 2;
const VOCAB: usize = 16;

/// One tensor of the mini model in both layouts.
#[derive(Debug, Clone)]
struct Entry {
    component: Component,
    diffusers: String,
    ldm: String,
    shape: Vec<usize>,
    ldm_shape: Vec<usize>,
}

/// Knobs for family tests.
#[derive(Debug, Clone, Copy)]
struct Mini {
    in_channels: usize,
    context: usize,
    linear_proj: bool,
}

const SD15_MINI: Mini = Mini {
    in_channels: 4,
    context: CONTEXT,
    linear_proj: false,
};

struct Builder {
    component: Component,
    entries: Vec<Entry>,
}

impl Builder {
    fn add(&mut self, diffusers: &str, ldm: &str, shape: &[usize]) {
        self.add_reshaped(diffusers, ldm, shape, shape);
    }

    fn add_reshaped(&mut self, diffusers: &str, ldm: &str, shape: &[usize], ldm_shape: &[usize]) {
        self.entries.push(Entry {
            component: self.component,
            diffusers: diffusers.to_string(),
            ldm: ldm.to_string(),
            shape: shape.to_vec(),
            ldm_shape: ldm_shape.to_vec(),
        });
    }

    /// weight + bias of a layer named the same way in both layouts apart from the prefix.
    fn layer(&mut self, d: &str, l: &str, weight: &[usize]) {
        self.add(&format!("{d}.weight"), &format!("{l}.weight"), weight);
        self.add(&format!("{d}.bias"), &format!("{l}.bias"), &weight[..1]);
    }

    fn norm(&mut self, d: &str, l: &str, c: usize) {
        self.layer(d, l, &[c]);
    }

    /// UNet resnet (`in_layers`/`emb_layers`/`out_layers`/`skip_connection` in LDM).
    fn unet_resnet(&mut self, d: &str, l: &str, cin: usize, cout: usize, temb: usize) {
        self.norm(&format!("{d}.norm1"), &format!("{l}.in_layers.0"), cin);
        self.layer(
            &format!("{d}.conv1"),
            &format!("{l}.in_layers.2"),
            &[cout, cin, 3, 3],
        );
        self.layer(
            &format!("{d}.time_emb_proj"),
            &format!("{l}.emb_layers.1"),
            &[cout, temb],
        );
        self.norm(&format!("{d}.norm2"), &format!("{l}.out_layers.0"), cout);
        self.layer(
            &format!("{d}.conv2"),
            &format!("{l}.out_layers.3"),
            &[cout, cout, 3, 3],
        );
        if cin != cout {
            self.layer(
                &format!("{d}.conv_shortcut"),
                &format!("{l}.skip_connection"),
                &[cout, cin, 1, 1],
            );
        }
    }

    /// Transformer2DModel: identical internals in both layouts.
    fn transformer(&mut self, d: &str, l: &str, c: usize, mini: Mini) {
        let same = |b: &mut Builder, name: &str, weight: &[usize]| {
            b.layer(&format!("{d}.{name}"), &format!("{l}.{name}"), weight)
        };
        let proj: &[usize] = if mini.linear_proj {
            &[c, c]
        } else {
            &[c, c, 1, 1]
        };
        same(self, "norm", &[c]);
        same(self, "proj_in", proj);
        let t = "transformer_blocks.0";
        for norm in ["norm1", "norm2", "norm3"] {
            same(self, &format!("{t}.{norm}"), &[c]);
        }
        for (attn, kv) in [("attn1", c), ("attn2", mini.context)] {
            for (name, input) in [("to_q", c), ("to_k", kv), ("to_v", kv)] {
                let key = format!("{t}.{attn}.{name}.weight");
                self.add(&format!("{d}.{key}"), &format!("{l}.{key}"), &[c, input]);
            }
            same(self, &format!("{t}.{attn}.to_out.0"), &[c, c]);
        }
        same(self, &format!("{t}.ff.net.0.proj"), &[8 * c, c]);
        same(self, &format!("{t}.ff.net.2"), &[c, 4 * c]);
        same(self, "proj_out", proj);
    }

    /// VAE resnet (`nin_shortcut` in LDM).
    fn vae_resnet(&mut self, d: &str, l: &str, cin: usize, cout: usize) {
        self.norm(&format!("{d}.norm1"), &format!("{l}.norm1"), cin);
        self.layer(
            &format!("{d}.conv1"),
            &format!("{l}.conv1"),
            &[cout, cin, 3, 3],
        );
        self.norm(&format!("{d}.norm2"), &format!("{l}.norm2"), cout);
        self.layer(
            &format!("{d}.conv2"),
            &format!("{l}.conv2"),
            &[cout, cout, 3, 3],
        );
        if cin != cout {
            self.layer(
                &format!("{d}.conv_shortcut"),
                &format!("{l}.nin_shortcut"),
                &[cout, cin, 1, 1],
            );
        }
    }

    /// VAE mid block: resnet, single-head attention (LDM 1×1 convs), resnet.
    fn vae_mid(&mut self, coder: &str, c: usize) {
        let (d, l) = (format!("{coder}.mid_block"), format!("{coder}.mid.block_1"));
        self.vae_resnet(&format!("{d}.resnets.0"), &l, c, c);
        self.vae_resnet(
            &format!("{d}.resnets.1"),
            &format!("{coder}.mid.block_2"),
            c,
            c,
        );
        let a = format!("{d}.attentions.0");
        let la = format!("{coder}.mid.attn_1");
        self.norm(&format!("{a}.group_norm"), &format!("{la}.norm"), c);
        for (dn, ln) in [
            ("to_q", "q"),
            ("to_k", "k"),
            ("to_v", "v"),
            ("to_out.0", "proj_out"),
        ] {
            self.add_reshaped(
                &format!("{a}.{dn}.weight"),
                &format!("{la}.{ln}.weight"),
                &[c, c],
                &[c, c, 1, 1],
            );
            self.add(&format!("{a}.{dn}.bias"), &format!("{la}.{ln}.bias"), &[c]);
        }
    }
}

fn unet_entries(mini: Mini) -> Vec<Entry> {
    let mut b = Builder {
        component: Component::Unet,
        entries: vec![],
    };
    let ch = UNET_CH;
    let temb = 4 * ch[0];
    let attention = [true, true, true, false];
    b.layer("time_embedding.linear_1", "time_embed.0", &[temb, ch[0]]);
    b.layer("time_embedding.linear_2", "time_embed.2", &[temb, temb]);
    b.layer(
        "conv_in",
        "input_blocks.0.0",
        &[ch[0], mini.in_channels, 3, 3],
    );
    let mut prev = ch[0];
    for level in 0..4 {
        for i in 0..2 {
            let n = 3 * level + i + 1;
            let d = format!("down_blocks.{level}");
            b.unet_resnet(
                &format!("{d}.resnets.{i}"),
                &format!("input_blocks.{n}.0"),
                prev,
                ch[level],
                temb,
            );
            if attention[level] {
                b.transformer(
                    &format!("{d}.attentions.{i}"),
                    &format!("input_blocks.{n}.1"),
                    ch[level],
                    mini,
                );
            }
            prev = ch[level];
        }
        if level < 3 {
            let d = format!("down_blocks.{level}.downsamplers.0.conv");
            b.layer(
                &d,
                &format!("input_blocks.{}.0.op", 3 * level + 3),
                &[ch[level], ch[level], 3, 3],
            );
        }
    }
    b.unet_resnet("mid_block.resnets.0", "middle_block.0", ch[3], ch[3], temb);
    b.transformer("mid_block.attentions.0", "middle_block.1", ch[3], mini);
    b.unet_resnet("mid_block.resnets.1", "middle_block.2", ch[3], ch[3], temb);
    let skips = skip_channels(&ch);
    let mut skip_stack = skips.clone();
    let mut prev = ch[3];
    for up in 0..4 {
        let level = 3 - up;
        for i in 0..3 {
            let n = 3 * up + i;
            let skip = skip_stack.pop().unwrap();
            let d = format!("up_blocks.{up}");
            b.unet_resnet(
                &format!("{d}.resnets.{i}"),
                &format!("output_blocks.{n}.0"),
                prev + skip,
                ch[level],
                temb,
            );
            if attention[level] {
                b.transformer(
                    &format!("{d}.attentions.{i}"),
                    &format!("output_blocks.{n}.1"),
                    ch[level],
                    mini,
                );
            }
            prev = ch[level];
        }
        if up < 3 {
            let sub = if attention[level] { 2 } else { 1 };
            let l = format!("output_blocks.{}.{sub}.conv", 3 * up + 2);
            b.layer(
                &format!("up_blocks.{up}.upsamplers.0.conv"),
                &l,
                &[prev, prev, 3, 3],
            );
        }
    }
    b.norm("conv_norm_out", "out.0", ch[0]);
    b.layer("conv_out", "out.2", &[4, ch[0], 3, 3]);
    b.entries
}

/// Channels of the skip connections the down path pushes (conv_in, each resnet, each downsampler).
fn skip_channels(ch: &[usize; 4]) -> Vec<usize> {
    let mut skips = vec![ch[0]];
    for (level, &c) in ch.iter().enumerate() {
        skips.extend([c, c]);
        if level < 3 {
            skips.push(c);
        }
    }
    skips
}

fn vae_entries() -> Vec<Entry> {
    let mut b = Builder {
        component: Component::Vae,
        entries: vec![],
    };
    let ch = VAE_CH;
    b.layer("encoder.conv_in", "encoder.conv_in", &[ch[0], 3, 3, 3]);
    let mut prev = ch[0];
    for (level, &c) in ch.iter().enumerate() {
        for j in 0..2 {
            let d = format!("encoder.down_blocks.{level}.resnets.{j}");
            b.vae_resnet(&d, &format!("encoder.down.{level}.block.{j}"), prev, c);
            prev = c;
        }
        if level < 3 {
            let d = format!("encoder.down_blocks.{level}.downsamplers.0.conv");
            b.layer(
                &d,
                &format!("encoder.down.{level}.downsample.conv"),
                &[prev, prev, 3, 3],
            );
        }
    }
    b.vae_mid("encoder", ch[3]);
    b.norm("encoder.conv_norm_out", "encoder.norm_out", ch[3]);
    b.layer("encoder.conv_out", "encoder.conv_out", &[8, ch[3], 3, 3]);
    b.layer("quant_conv", "quant_conv", &[8, 8, 1, 1]);
    b.layer("post_quant_conv", "post_quant_conv", &[4, 4, 1, 1]);
    b.layer("decoder.conv_in", "decoder.conv_in", &[ch[3], 4, 3, 3]);
    b.vae_mid("decoder", ch[3]);
    let mut prev = ch[3];
    for up in 0..4 {
        let level = 3 - up;
        for j in 0..3 {
            let d = format!("decoder.up_blocks.{up}.resnets.{j}");
            b.vae_resnet(
                &d,
                &format!("decoder.up.{level}.block.{j}"),
                prev,
                ch[level],
            );
            prev = ch[level];
        }
        if up < 3 {
            let d = format!("decoder.up_blocks.{up}.upsamplers.0.conv");
            b.layer(
                &d,
                &format!("decoder.up.{level}.upsample.conv"),
                &[prev, prev, 3, 3],
            );
        }
    }
    b.norm("decoder.conv_norm_out", "decoder.norm_out", ch[0]);
    b.layer("decoder.conv_out", "decoder.conv_out", &[3, ch[0], 3, 3]);
    b.entries
}

fn clip_entries() -> Vec<Entry> {
    let mut b = Builder {
        component: Component::TextEncoder,
        entries: vec![],
    };
    let (h, i) = (CLIP_WIDTH, 2 * CLIP_WIDTH);
    let same = |b: &mut Builder, name: &str, shape: &[usize]| b.add(name, name, shape);
    same(
        &mut b,
        "text_model.embeddings.token_embedding.weight",
        &[VOCAB, h],
    );
    same(
        &mut b,
        "text_model.embeddings.position_embedding.weight",
        &[77, h],
    );
    for layer in 0..CLIP_LAYERS {
        let p = format!("text_model.encoder.layers.{layer}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            b.layer(
                &format!("{p}.self_attn.{proj}"),
                &format!("{p}.self_attn.{proj}"),
                &[h, h],
            );
        }
        b.norm(&format!("{p}.layer_norm1"), &format!("{p}.layer_norm1"), h);
        b.norm(&format!("{p}.layer_norm2"), &format!("{p}.layer_norm2"), h);
        b.layer(&format!("{p}.mlp.fc1"), &format!("{p}.mlp.fc1"), &[i, h]);
        b.layer(&format!("{p}.mlp.fc2"), &format!("{p}.mlp.fc2"), &[h, i]);
    }
    b.norm(
        "text_model.final_layer_norm",
        "text_model.final_layer_norm",
        h,
    );
    b.entries
}

fn all_entries(mini: Mini) -> Vec<Entry> {
    let mut entries = unet_entries(mini);
    entries.extend(vae_entries());
    entries.extend(clip_entries());
    entries
}

fn ldm_prefix(component: Component) -> &'static str {
    match component {
        Component::Unet => "model.diffusion_model.",
        Component::Vae => "first_stage_model.",
        Component::TextEncoder => "cond_stage_model.transformer.",
    }
}

/// Distinct deterministic values per tensor (xorshift seeded by the diffusers name).
fn values(name: &str, n: usize) -> Vec<f32> {
    let mut state = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A tensor to write: name, shape, f32 values.
type Raw = (String, Vec<usize>, Vec<f32>);

struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        other => panic!("test writer does not encode {other:?}"),
    }
}

fn write_safetensors(path: &Path, tensors: &[Raw], dtype: Dtype) {
    let bytes: BTreeMap<String, Bytes> = tensors
        .iter()
        .map(|(name, shape, vals)| {
            let b = Bytes {
                dtype,
                shape: shape.clone(),
                data: encode(vals, dtype),
            };
            (name.clone(), b)
        })
        .collect();
    let serialized =
        safetensors::serialize(bytes.iter().map(|(k, v)| (k.clone(), v)), None).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serialized).unwrap();
}

fn ldm_tensors(entries: &[Entry]) -> Vec<Raw> {
    entries
        .iter()
        .map(|e| {
            let n = e.shape.iter().product();
            let name = format!("{}{}", ldm_prefix(e.component), e.ldm);
            (name, e.ldm_shape.clone(), values(&e.diffusers, n))
        })
        .collect()
}

/// Keys a real single-file checkpoint carries besides the three models; all must be ignored.
fn extra_ldm_tensors() -> Vec<Raw> {
    [
        ("alphas_cumprod", vec![1000]),
        ("model_ema.decay", vec![]),
        (
            "model_ema.diffusion_modelinput_blocks00weight",
            vec![32, 4, 3, 3],
        ),
        (
            "cond_stage_model.transformer.text_model.embeddings.position_ids",
            vec![1, 77],
        ),
        ("first_stage_model.loss.logvar", vec![]),
    ]
    .into_iter()
    .map(|(name, shape)| {
        let n = shape.iter().product();
        (name.to_string(), shape, values(name, n))
    })
    .collect()
}

fn write_ldm(path: &Path, entries: &[Entry], dtype: Dtype) {
    let mut tensors = ldm_tensors(entries);
    tensors.extend(extra_ldm_tensors());
    write_safetensors(path, &tensors, dtype);
}

fn write_diffusers(dir: &Path, entries: &[Entry], suffix: &str) {
    let files = [
        (
            Component::Unet,
            format!("unet/diffusion_pytorch_model{suffix}"),
        ),
        (
            Component::Vae,
            format!("vae/diffusion_pytorch_model{suffix}"),
        ),
        (
            Component::TextEncoder,
            format!("text_encoder/model{suffix}"),
        ),
    ];
    for (component, file) in files {
        let tensors: Vec<Raw> = entries
            .iter()
            .filter(|e| e.component == component)
            .map(|e| {
                (
                    e.diffusers.clone(),
                    e.shape.clone(),
                    values(&e.diffusers, e.shape.iter().product()),
                )
            })
            .collect();
        write_safetensors(&dir.join(file), &tensors, Dtype::F32);
    }
}

fn expected_configs() -> (UNetConfig, VaeConfig, ClipConfig) {
    let unet = UNetConfig {
        block_out_channels: UNET_CH.to_vec(),
        cross_attention_dim: CONTEXT,
        ..UNetConfig::sd15()
    };
    let vae = VaeConfig {
        block_out_channels: VAE_CH.to_vec(),
        ..VaeConfig::sd15()
    };
    let clip = ClipConfig {
        vocab_size: VOCAB,
        hidden_size: CLIP_WIDTH,
        intermediate_size: 2 * CLIP_WIDTH,
        num_hidden_layers: CLIP_LAYERS,
        ..ClipConfig::sd15()
    };
    (unet, vae, clip)
}

fn tensor_values(checkpoint: &Checkpoint, entry: &Entry) -> (Vec<usize>, Vec<f32>) {
    let t = checkpoint
        .tensor(entry.component, &entry.diffusers, &Device::Cpu)
        .unwrap();
    (
        t.dims().to_vec(),
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    )
}

fn open_err(path: &Path) -> WeightsError {
    Checkpoint::open(path).expect_err("open should fail")
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Both lists sorted; reports only the first differences.
fn assert_same_names(got: &[String], want: &[String], what: &str) {
    let missing: Vec<&String> = want
        .iter()
        .filter(|n| got.binary_search(n).is_err())
        .take(5)
        .collect();
    let extra: Vec<&String> = got
        .iter()
        .filter(|n| want.binary_search(n).is_err())
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && got.len() == want.len(),
        "{what}: missing {missing:?}, unexpected {extra:?}"
    );
}

#[test]
fn ldm_file_and_diffusers_folder_serve_identical_tensors() {
    let dir = tmp();
    let entries = all_entries(SD15_MINI);
    let single_path = dir.path().join("mini-sd15.safetensors");
    write_ldm(&single_path, &entries, Dtype::F32);
    write_diffusers(&dir.path().join("mini-diffusers"), &entries, ".safetensors");
    let single = Checkpoint::open(&single_path).unwrap();
    let folder = Checkpoint::open(&dir.path().join("mini-diffusers")).unwrap();
    assert_eq!(single.layout(), Layout::SingleFile);
    assert_eq!(folder.layout(), Layout::Diffusers);
    let (unet, vae, clip) = expected_configs();
    for checkpoint in [&single, &folder] {
        assert_eq!(checkpoint.unet_config(), unet);
        assert_eq!(checkpoint.vae_config(), vae);
        assert_eq!(checkpoint.clip_config(), clip);
    }
    for component in [Component::Unet, Component::Vae, Component::TextEncoder] {
        let mut expected: Vec<String> = entries
            .iter()
            .filter(|e| e.component == component)
            .map(|e| e.diffusers.clone())
            .collect();
        expected.sort();
        assert_same_names(&single.tensor_names(component), &expected, "single file");
        assert_same_names(&folder.tensor_names(component), &expected, "folder");
    }
    for entry in &entries {
        let want = values(&entry.diffusers, entry.shape.iter().product());
        assert_eq!(
            tensor_values(&single, entry),
            (entry.shape.clone(), want.clone()),
            "{}",
            entry.diffusers
        );
        assert_eq!(
            tensor_values(&folder, entry),
            (entry.shape.clone(), want),
            "{}",
            entry.diffusers
        );
    }
}

#[test]
fn sd15_mini_has_the_sd15_tensor_counts() {
    // formats.md 1.3 counts for real SD1.5: UNet 686, VAE 248, CLIP 196 (12 layers); diffusers' own tiny export
    // (/work/shared sd15-tiny) has 684 UNet / 244 VAE keys because its block widths make two fewer shortcuts each.
    let entries = all_entries(SD15_MINI);
    let count = |c: Component| entries.iter().filter(|e| e.component == c).count();
    assert_eq!(count(Component::TextEncoder), 4 + 16 * CLIP_LAYERS);
    assert!(count(Component::Unet) >= 680, "{}", count(Component::Unet));
    assert!(count(Component::Vae) >= 240, "{}", count(Component::Vae));
}

#[test]
fn half_precision_files_are_widened_to_f32() {
    let dir = tmp();
    let entries = all_entries(SD15_MINI);
    for (dtype, round) in [
        (
            Dtype::F16,
            (|v: f32| half::f16::from_f32(v).to_f32()) as fn(f32) -> f32,
        ),
        (Dtype::BF16, |v: f32| half::bf16::from_f32(v).to_f32()),
    ] {
        let path = dir.path().join(format!("mini-{dtype:?}.safetensors"));
        write_ldm(&path, &entries, dtype);
        let checkpoint = Checkpoint::open(&path).unwrap();
        let vb = checkpoint.vae_vb(&Device::Cpu);
        let name = "decoder.mid_block.attentions.0.to_q.weight";
        let c = VAE_CH[3];
        let served = vb.get((c, c), name).unwrap();
        assert_eq!(served.dtype(), DType::F32);
        let want: Vec<f32> = values(name, c * c).into_iter().map(round).collect();
        assert_eq!(
            served.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want,
            "{dtype:?}"
        );
        let entry = entries
            .iter()
            .find(|e| e.diffusers == "conv_in.weight")
            .unwrap();
        let want: Vec<f32> = values("conv_in.weight", 32 * 4 * 9)
            .into_iter()
            .map(round)
            .collect();
        assert_eq!(tensor_values(&checkpoint, entry).1, want, "{dtype:?}");
    }
}

#[test]
fn fp16_variant_names_in_diffusers_folders_are_found() {
    let dir = tmp();
    let entries = all_entries(SD15_MINI);
    write_diffusers(dir.path(), &entries, ".fp16.safetensors");
    let checkpoint = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(checkpoint.clip_config(), expected_configs().2);
}

#[test]
fn old_clip_keys_without_text_model_are_accepted() {
    let dir = tmp();
    let entries = all_entries(SD15_MINI);
    let mut tensors = ldm_tensors(&entries);
    for (name, _, _) in tensors.iter_mut() {
        *name = name.replace(
            "cond_stage_model.transformer.text_model.",
            "cond_stage_model.transformer.",
        );
    }
    let path = dir.path().join("old.safetensors");
    write_safetensors(&path, &tensors, Dtype::F32);
    let checkpoint = Checkpoint::open(&path).unwrap();
    let vb = checkpoint.text_encoder_vb(&Device::Cpu);
    assert!(vb.contains_tensor("text_model.final_layer_norm.weight"));
    assert_eq!(checkpoint.clip_config(), expected_configs().2);
}

#[test]
fn clip_model_loads_from_both_layouts() {
    let dir = tmp();
    let entries = all_entries(SD15_MINI);
    let single_path = dir.path().join("m.safetensors");
    write_ldm(&single_path, &entries, Dtype::F32);
    write_diffusers(&dir.path().join("d"), &entries, ".safetensors");
    let ids = candle_core::Tensor::new(&[[1u32, 5, 15, 15]], &Device::Cpu).unwrap();
    let mut outputs = vec![];
    for path in [single_path, dir.path().join("d")] {
        let checkpoint = Checkpoint::open(&path).unwrap();
        let clip = loraeval::model::clip::ClipTextModel::load(
            checkpoint.text_encoder_vb(&Device::Cpu),
            &checkpoint.clip_config(),
        )
        .unwrap();
        let out = clip.forward(&ids, 1).unwrap();
        outputs.push(out.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn missing_tensor_is_named_with_the_file() {
    let dir = tmp();
    let entries = all_entries(SD15_MINI);
    let mut tensors = ldm_tensors(&entries);
    tensors.retain(|(name, _, _)| name != "model.diffusion_model.output_blocks.4.1.proj_out.bias");
    let path = dir.path().join("holey.safetensors");
    write_safetensors(&path, &tensors, Dtype::F32);
    let checkpoint = Checkpoint::open(&path).unwrap();
    let vb = checkpoint.unet_vb(&Device::Cpu);
    let message = vb
        .pp("up_blocks.1.attentions.1.proj_out")
        .get(64, "bias")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("up_blocks.1.attentions.1.proj_out.bias"),
        "{message}"
    );
    assert!(message.contains("holey.safetensors"), "{message}");
    assert!(message.contains("UNet"), "{message}");
}

#[test]
fn wrong_shape_request_names_both_keys_and_shapes() {
    let dir = tmp();
    let path = dir.path().join("m.safetensors");
    write_ldm(&path, &all_entries(SD15_MINI), Dtype::F32);
    let checkpoint = Checkpoint::open(&path).unwrap();
    let message = checkpoint
        .unet_vb(&Device::Cpu)
        .get((32, 3, 3, 3), "conv_in.weight")
        .unwrap_err()
        .to_string();
    for part in [
        "conv_in.weight",
        "model.diffusion_model.input_blocks.0.0.weight",
        "[32, 4, 3, 3]",
        "[32, 3, 3, 3]",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
}

/// Writes a file with a hand-made header and `data_len` zero bytes of data.
fn write_raw(path: &Path, header: &str, data_len: usize) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, data_len));
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn malformed_headers_are_reported_with_the_file() {
    let dir = tmp();
    let path = dir.path().join("bad.safetensors");

    std::fs::write(&path, [1u8, 2, 3]).unwrap();
    assert!(matches!(
        open_err(&path),
        WeightsError::TooShort { file_len: 3, .. }
    ));

    let mut past_end = 1000u64.to_le_bytes().to_vec();
    past_end.extend_from_slice(b"{}");
    std::fs::write(&path, past_end).unwrap();
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            WeightsError::HeaderPastEnd {
                header_len: 1000,
                file_len: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("bad.safetensors"));

    write_raw(&path, "{\"a\": [", 0);
    let err = open_err(&path);
    assert!(matches!(err, WeightsError::BadHeader { .. }), "{err}");
    assert!(err.to_string().contains("not valid JSON"), "{err}");

    write_raw(
        &path,
        r#"{"w": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}"#,
        8,
    );
    let err = open_err(&path);
    assert!(
        matches!(&err, WeightsError::UnknownDtype { key, dtype, .. } if key == "w" && dtype == "F33"),
        "{err}"
    );

    write_raw(
        &path,
        r#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#,
        4,
    );
    let err = open_err(&path);
    assert!(
        matches!(&err, WeightsError::BadOffsets { key, end: 8, data_len: 4, .. } if key == "w"),
        "{err}"
    );

    write_raw(
        &path,
        r#"{"w": {"dtype": "F16", "shape": [3, 2], "data_offsets": [0, 8]}}"#,
        8,
    );
    let err = open_err(&path);
    assert!(
        matches!(&err, WeightsError::SizeMismatch { key, expected_bytes: Some(12), actual_bytes: 8, .. } if key == "w"),
        "{err}"
    );

    write_raw(
        &path,
        r#"{"w": {"dtype": "F32", "shape": "big", "data_offsets": [0, 8]}}"#,
        8,
    );
    assert!(open_err(&path)
        .to_string()
        .contains("`shape` is not a list"));
}

#[test]
fn pickle_files_are_refused() {
    let dir = tmp();
    let ckpt = dir.path().join("model.ckpt");
    write_ldm(&ckpt, &all_entries(SD15_MINI), Dtype::F32);
    let err = open_err(&ckpt);
    assert!(matches!(err, WeightsError::PickleRefused { .. }), "{err}");
    assert!(
        err.to_string().contains("convert it to .safetensors"),
        "{err}"
    );

    let zip = dir.path().join("renamed.safetensors");
    std::fs::write(&zip, b"PK\x03\x04\x14\x00\x00\x00\x08\x00").unwrap();
    assert!(matches!(open_err(&zip), WeightsError::PickleRefused { .. }));

    let folder = dir.path().join("diffusers");
    write_diffusers(&folder, &all_entries(SD15_MINI), ".safetensors");
    let unet = folder.join("unet/diffusion_pytorch_model.safetensors");
    std::fs::rename(&unet, folder.join("unet/diffusion_pytorch_model.bin")).unwrap();
    let err = open_err(&folder);
    assert!(
        matches!(&err, WeightsError::PickleRefused { path } if path.ends_with("diffusion_pytorch_model.bin")),
        "{err}"
    );
}

fn write_family_case(dir: &Path, name: &str, mini: Mini, extra: &[(&str, Vec<usize>)]) -> PathBuf {
    let mut tensors = ldm_tensors(&all_entries(mini));
    tensors.extend(
        extra
            .iter()
            .map(|(k, s)| (k.to_string(), s.clone(), values(k, s.iter().product()))),
    );
    let path = dir.join(format!("{name}.safetensors"));
    write_safetensors(&path, &tensors, Dtype::F32);
    path
}

fn assert_family(err: WeightsError, looks_like: &str, evidence: &str) {
    let message = err.to_string();
    match err {
        WeightsError::WrongFamily {
            looks_like: l,
            evidence: e,
            ..
        } => {
            assert!(l.contains(looks_like), "{message}");
            assert!(e.contains(evidence), "{message}");
        }
        other => panic!("expected WrongFamily, got {other}"),
    }
}

#[test]
fn other_model_families_are_refused_with_what_they_look_like() {
    let dir = tmp();
    let d = dir.path();
    let sdxl = write_family_case(
        d,
        "sdxl",
        SD15_MINI,
        &[
            (
                "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
                vec![4],
            ),
            (
                "model.diffusion_model.label_emb.0.0.weight",
                vec![128, 2816],
            ),
        ],
    );
    assert_family(open_err(&sdxl), "SDXL", "2816 adm");
    let sd2 = write_family_case(
        d,
        "sd2",
        SD15_MINI,
        &[("cond_stage_model.model.ln_final.weight", vec![4])],
    );
    assert_family(open_err(&sd2), "SD2.x", "cond_stage_model.model");
    let wide = Mini {
        context: 1024,
        ..SD15_MINI
    };
    assert_family(
        open_err(&write_family_case(d, "ctx1024", wide, &[])),
        "SD2.x",
        "1024",
    );
    let linear = Mini {
        linear_proj: true,
        ..SD15_MINI
    };
    assert_family(
        open_err(&write_family_case(d, "linear", linear, &[])),
        "SD2.x",
        "linear `proj_in`",
    );
    let inpaint = Mini {
        in_channels: 9,
        ..SD15_MINI
    };
    assert_family(
        open_err(&write_family_case(d, "inpaint", inpaint, &[])),
        "inpainting",
        "9 input channels",
    );
    let vpred = write_family_case(d, "vpred", SD15_MINI, &[("v_pred", vec![])]);
    assert_family(open_err(&vpred), "v-prediction", "v_pred");
}

#[test]
fn diffusers_folders_of_other_families_are_refused() {
    let dir = tmp();
    let folder = dir.path().join("vpred");
    write_diffusers(&folder, &all_entries(SD15_MINI), ".safetensors");
    std::fs::create_dir_all(folder.join("scheduler")).unwrap();
    std::fs::write(
        folder.join("scheduler/scheduler_config.json"),
        r#"{"prediction_type": "v_prediction"}"#,
    )
    .unwrap();
    assert_family(open_err(&folder), "v-prediction", "v_prediction");
    std::fs::create_dir_all(folder.join("text_encoder_2")).unwrap();
    assert_family(open_err(&folder), "SDXL", "text_encoder_2");
}

#[test]
fn non_checkpoints_say_what_they_look_like() {
    let dir = tmp();
    let lora = dir.path().join("face.safetensors");
    let lora_keys = [
        (
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
            vec![4, 32, 1, 1],
        ),
        ("lora_unet_down_blocks_0_attentions_0_proj_in.alpha", vec![]),
    ];
    let raw: Vec<Raw> = lora_keys
        .iter()
        .map(|(k, s)| (k.to_string(), s.clone(), values(k, s.iter().product())))
        .collect();
    write_safetensors(&lora, &raw, Dtype::F16);
    let err = open_err(&lora);
    assert!(matches!(err, WeightsError::NotACheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("looks like a LoRA"), "{err}");

    let vae_only = dir.path().join("vae.safetensors");
    let raw: Vec<Raw> = vae_entries()
        .iter()
        .map(|e| {
            (
                e.ldm.clone(),
                e.ldm_shape.clone(),
                vec![0.0; e.shape.iter().product()],
            )
        })
        .collect();
    write_safetensors(&vae_only, &raw, Dtype::F32);
    assert!(open_err(&vae_only).to_string().contains("standalone VAE"));

    let empty = dir.path().join("empty.safetensors");
    write_raw(&empty, "{}", 0);
    assert!(open_err(&empty).to_string().contains("no tensors"));
}

#[test]
fn missing_components_are_reported() {
    let dir = tmp();
    let mut tensors = ldm_tensors(&all_entries(SD15_MINI));
    tensors.retain(|(name, _, _)| !name.starts_with("first_stage_model."));
    let path = dir.path().join("novae.safetensors");
    write_safetensors(&path, &tensors, Dtype::F32);
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            WeightsError::MissingComponent {
                component: "VAE",
                ..
            }
        ),
        "{err}"
    );

    let folder = dir.path().join("d");
    write_diffusers(&folder, &all_entries(SD15_MINI), ".safetensors");
    std::fs::remove_file(folder.join("text_encoder/model.safetensors")).unwrap();
    let err = open_err(&folder);
    assert!(
        err.to_string().contains("text_encoder/model.safetensors"),
        "{err}"
    );
    assert!(matches!(
        open_err(&dir.path().join("nope.safetensors")),
        WeightsError::NotFound { .. }
    ));
}

#[test]
fn model_hash_is_the_sha256_prefix_of_the_file() {
    let dir = tmp();
    let abc = dir.path().join("abc.safetensors");
    std::fs::write(&abc, b"abc").unwrap();
    // FIPS 180-2 test vectors: sha256("abc"), sha256(10^6 × "a").
    assert_eq!(model_hash(&abc).unwrap(), "ba7816bf8f");
    let million = dir.path().join("a.safetensors");
    std::fs::write(&million, vec![b'a'; 1_000_000]).unwrap();
    assert_eq!(model_hash(&million).unwrap(), "cdc76e5c99");

    let folder = dir.path().join("my-model");
    write_diffusers(&folder, &all_entries(SD15_MINI), ".safetensors");
    let unet_hash = model_hash(&folder.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    let checkpoint = Checkpoint::open(&folder).unwrap();
    assert_eq!(checkpoint.model_hash().unwrap(), unet_hash);
    assert_eq!(checkpoint.name(), "my-model");

    let single = dir.path().join("realisticVision_v51.safetensors");
    write_ldm(&single, &all_entries(SD15_MINI), Dtype::F32);
    assert_eq!(
        Checkpoint::open(&single).unwrap().name(),
        "realisticVision_v51"
    );
}
