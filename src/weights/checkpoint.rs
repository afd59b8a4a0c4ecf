//! `Checkpoint`: an opened, validated SD1.x checkpoint with its architecture inferred from tensor shapes.
//!
//! Two layouts: a single-file `.safetensors` with the original LDM keys (`model.diffusion_model.*`,
//! `first_stage_model.*`, `cond_stage_model.transformer.*`; `model_ema.*`, schedule buffers and other extra keys are
//! ignored), or a diffusers folder (`unet/diffusion_pytorch_model[.fp16].safetensors`, `vae/…`,
//! `text_encoder/model[.fp16].safetensors`). Either way the three models read diffusers names through
//! [`Checkpoint::unet_vb`], [`Checkpoint::vae_vb`] and [`Checkpoint::text_encoder_vb`].
//!
//! Family checks refuse SD2.x, SDXL, inpainting and non-checkpoint files (LoRA, VAE only, …) with what the file
//! looks like. v-prediction cannot be seen from the weights in general: SD2 768-v files are refused as SD2, a
//! `v_pred` marker key (ComfyUI's convention) or a diffusers scheduler with `prediction_type: v_prediction` is
//! refused, but an unmarked v-prediction SD1.x fine-tune loads and renders noise-like images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::backend::{ComponentTable, Source, TableBackend};
use super::ldm_names::{self, UnetLayout, LDM_CLIP_PREFIX, LDM_UNET_PREFIX, LDM_VAE_PREFIX};
use super::safetensors_file::SafetensorsFile;
use super::WeightsError;
use crate::model::config::{ClipConfig, UNetConfig, VaeConfig};

/// File extensions of pickle-based formats, refused because unpickling can execute code.
const PICKLE_EXTENSIONS: [&str; 4] = ["ckpt", "pt", "pth", "bin"];
/// Attention heads of the SD1.x UNet at every level.
const UNET_HEADS: usize = 8;
/// Attention heads of CLIP ViT-L/14's text tower.
const CLIP_HEADS: usize = 12;
/// GroupNorm groups of SD1.x UNet and VAE (not visible in shapes).
const NORM_GROUPS: usize = 32;
/// Keys that mark a LoRA / LyCORIS file.
const LORA_MARKERS: [&str; 8] = [
    "lora_unet_",
    "lora_te",
    ".lora_down.",
    ".lora_up.",
    "lora_A.",
    "lora_B.",
    ".hada_w1_a",
    ".lokr_w1",
];

/// How the checkpoint is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One `.safetensors` file with original LDM/CompVis keys.
    SingleFile,
    /// A diffusers pipeline folder.
    Diffusers,
}

/// One of the three models in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Unet,
    Vae,
    TextEncoder,
}

impl Component {
    /// Human name used in messages.
    pub fn label(self) -> &'static str {
        match self {
            Component::Unet => "UNet",
            Component::Vae => "VAE",
            Component::TextEncoder => "text encoder",
        }
    }
}

/// An opened SD1.x checkpoint: memory-mapped files, diffusers-name tables and the inferred architecture.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    layout: Layout,
    unet: Arc<ComponentTable>,
    vae: Arc<ComponentTable>,
    text_encoder: Arc<ComponentTable>,
    unet_config: UNetConfig,
    vae_config: VaeConfig,
    clip_config: ClipConfig,
}

/// The three name tables before configs are inferred.
struct Tables {
    unet: ComponentTable,
    vae: ComponentTable,
    text_encoder: ComponentTable,
}

impl Checkpoint {
    /// Opens a single-file `.safetensors` checkpoint or a diffusers folder and validates it.
    pub fn open(path: &Path) -> Result<Checkpoint, WeightsError> {
        if !path.exists() {
            return Err(WeightsError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let (layout, tables) = if path.is_dir() {
            (Layout::Diffusers, open_diffusers(path)?)
        } else {
            (Layout::SingleFile, open_single_file(path)?)
        };
        let unet_config = infer_unet_config(&tables.unet)?;
        let vae_config = infer_vae_config(&tables.vae)?;
        let clip_config = infer_clip_config(&tables.text_encoder)?;
        Ok(Checkpoint {
            path: path.to_path_buf(),
            layout,
            unet: Arc::new(tables.unet),
            vae: Arc::new(tables.vae),
            text_encoder: Arc::new(tables.text_encoder),
            unet_config,
            vae_config,
            clip_config,
        })
    }

    /// The path given to [`Checkpoint::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Single file or diffusers folder.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Name for the infotext (`Model: …`): the file stem (A1111 `CheckpointInfo.name_for_extra`), or the folder name.
    pub fn name(&self) -> String {
        let stem = match self.layout {
            Layout::SingleFile => self.path.file_stem(),
            Layout::Diffusers => self.path.file_name(),
        };
        stem.map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// A1111's 10-hex-digit model hash (see [`super::model_hash`]); reads the whole file.
    pub fn model_hash(&self) -> Result<String, WeightsError> {
        super::model_hash(&self.path)
    }

    /// UNet weights under diffusers names (`conv_in.weight`, `down_blocks.0.resnets.0.norm1.weight`, …), F32.
    pub fn unet_vb(&self, device: &Device) -> VarBuilder<'static> {
        builder(&self.unet, device)
    }

    /// VAE weights under diffusers names (`decoder.mid_block.attentions.0.to_q.weight` as `[C, C]`, …), F32.
    pub fn vae_vb(&self, device: &Device) -> VarBuilder<'static> {
        builder(&self.vae, device)
    }

    /// CLIP text-encoder weights under transformers `CLIPTextModel` names (`text_model.embeddings.…`), F32.
    pub fn text_encoder_vb(&self, device: &Device) -> VarBuilder<'static> {
        builder(&self.text_encoder, device)
    }

    /// UNet architecture inferred from shapes (heads: 8, the SD1.x value).
    pub fn unet_config(&self) -> UNetConfig {
        self.unet_config.clone()
    }

    /// VAE architecture inferred from shapes (scaling factor 0.18215, the SD1.x value).
    pub fn vae_config(&self) -> VaeConfig {
        self.vae_config.clone()
    }

    /// CLIP text-encoder architecture inferred from shapes (heads: 12, the CLIP ViT-L value).
    pub fn clip_config(&self) -> ClipConfig {
        self.clip_config.clone()
    }

    /// Every diffusers name a component serves, sorted.
    pub fn tensor_names(&self, component: Component) -> Vec<String> {
        self.table(component).names.keys().cloned().collect()
    }

    /// Served shape of one tensor (`None` if absent).
    pub fn tensor_shape(&self, component: Component, name: &str) -> Option<Vec<usize>> {
        self.table(component).shape(name)
    }

    /// One tensor by diffusers name, converted to F32 on `device`.
    pub fn tensor(
        &self,
        component: Component,
        name: &str,
        device: &Device,
    ) -> Result<Tensor, WeightsError> {
        self.table(component).tensor(name, None, DType::F32, device)
    }

    fn table(&self, component: Component) -> &ComponentTable {
        match component {
            Component::Unet => &self.unet,
            Component::Vae => &self.vae,
            Component::TextEncoder => &self.text_encoder,
        }
    }
}

/// A root VarBuilder (empty prefix, F32) over a component table.
fn builder(table: &Arc<ComponentTable>, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(TableBackend(table.clone())),
        DType::F32,
        device.clone(),
    )
}

/// `.ckpt`, `.pt`, `.pth`, `.bin` → refused.
fn refuse_pickle_extension(path: &Path) -> Result<(), WeightsError> {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if PICKLE_EXTENSIONS.contains(&extension.as_str()) {
        return Err(WeightsError::PickleRefused {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Opens and maps a single LDM-layout file.
fn open_single_file(path: &Path) -> Result<Tables, WeightsError> {
    refuse_pickle_extension(path)?;
    let file = SafetensorsFile::open(path)?;
    check_single_file_family(&file)?;
    let unet_layout = UnetLayout {
        layers_per_block: ldm_layers_per_block(&file),
    };
    let vae_levels = count_indexed(|i| {
        let prefix = format!("{LDM_VAE_PREFIX}encoder.down.{i}.");
        file.tensors.keys().any(|k| k.starts_with(&prefix))
    });
    let mut unet = BTreeMap::new();
    let mut vae = BTreeMap::new();
    let mut text_encoder = BTreeMap::new();
    for key in file.tensors.keys() {
        let source = |squeeze_1x1| Source {
            file: 0,
            key: key.clone(),
            squeeze_1x1,
        };
        if let Some(name) = key
            .strip_prefix(LDM_UNET_PREFIX)
            .and_then(|k| ldm_names::unet_key(k, unet_layout))
        {
            unet.insert(name, source(false));
        } else if let Some(mapped) = key
            .strip_prefix(LDM_VAE_PREFIX)
            .and_then(|k| ldm_names::vae_key(k, vae_levels))
        {
            vae.insert(mapped.name, source(mapped.squeeze_1x1));
        } else if let Some(name) = key
            .strip_prefix(LDM_CLIP_PREFIX)
            .and_then(ldm_names::clip_key)
        {
            text_encoder.insert(name, source(false));
        }
    }
    let files = Arc::new(vec![file]);
    let table = |component: Component, names, looked_for: &str| {
        non_empty_table(component, names, files.clone(), path, looked_for)
    };
    Ok(Tables {
        unet: table(Component::Unet, unet, LDM_UNET_PREFIX)?,
        vae: table(Component::Vae, vae, LDM_VAE_PREFIX)?,
        text_encoder: table(Component::TextEncoder, text_encoder, LDM_CLIP_PREFIX)?,
    })
}

/// A component table, or `MissingComponent` when nothing mapped to it.
fn non_empty_table(
    component: Component,
    names: BTreeMap<String, Source>,
    files: Arc<Vec<SafetensorsFile>>,
    origin: &Path,
    looked_for: &str,
) -> Result<ComponentTable, WeightsError> {
    if names.is_empty() {
        return Err(WeightsError::MissingComponent {
            path: origin.to_path_buf(),
            component: component.label(),
            looked_for: format!("no keys under `{looked_for}`"),
        });
    }
    Ok(ComponentTable {
        component: component.label(),
        files,
        names,
        origin: origin.to_path_buf(),
    })
}

/// Number of consecutive indices 0, 1, … for which `present` holds.
fn count_indexed(present: impl Fn(usize) -> bool) -> usize {
    (0..).take_while(|&i| present(i)).count()
}

/// Layers per UNet level: the first downsampler sits at `input_blocks.{L+1}.0.op`.
fn ldm_layers_per_block(file: &SafetensorsFile) -> usize {
    let first_downsampler = file.tensors.keys().find_map(|k| {
        let rest = k
            .strip_prefix(LDM_UNET_PREFIX)?
            .strip_prefix("input_blocks.")?;
        let (n, rest) = rest.split_once('.')?;
        rest.starts_with("0.op.")
            .then(|| n.parse::<usize>().ok())
            .flatten()
    });
    match first_downsampler {
        Some(n) if n >= 2 => n - 1,
        _ => max_input_block(file).max(1),
    }
}

/// Highest `input_blocks.N` index (a one-level UNet has no downsampler: N = layers per block).
fn max_input_block(file: &SafetensorsFile) -> usize {
    file.tensors
        .keys()
        .filter_map(|k| {
            let rest = k
                .strip_prefix(LDM_UNET_PREFIX)?
                .strip_prefix("input_blocks.")?;
            rest.split_once('.')?.0.parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// SDXL / SD2 / v-prediction / non-checkpoint detection from the key names of a single file.
fn check_single_file_family(file: &SafetensorsFile) -> Result<(), WeightsError> {
    let path = &file.path;
    let has_prefix = |p: &str| file.tensors.keys().any(|k| k.starts_with(p));
    if has_prefix("conditioner.embedders.") || has_prefix("model.diffusion_model.label_emb.") {
        let adm = file
            .tensors
            .get("model.diffusion_model.label_emb.0.0.weight")
            .and_then(|t| t.shape.get(1).copied());
        let evidence = match adm {
            Some(n) => format!(
                "`conditioner.embedders.*` text encoders, UNet `label_emb` with {n} adm inputs"
            ),
            None => "`conditioner.embedders.*` / `label_emb` keys".to_string(),
        };
        return Err(wrong_family(path, "an SDXL checkpoint", evidence));
    }
    if has_prefix("cond_stage_model.model.") {
        return Err(wrong_family(
            path,
            "an SD2.x checkpoint",
            "OpenCLIP text encoder under `cond_stage_model.model.*`".to_string(),
        ));
    }
    if file.tensors.contains_key("v_pred") {
        return Err(wrong_family(
            path,
            "a v-prediction model",
            "has the `v_pred` marker key".to_string(),
        ));
    }
    if !has_prefix(LDM_UNET_PREFIX) {
        return Err(WeightsError::NotACheckpoint {
            path: path.clone(),
            looks_like: describe_non_checkpoint(file),
        });
    }
    Ok(())
}

fn wrong_family(path: &Path, looks_like: &str, evidence: String) -> WeightsError {
    WeightsError::WrongFamily {
        path: path.to_path_buf(),
        looks_like: looks_like.to_string(),
        evidence,
    }
}

/// What a file without UNet keys seems to be.
fn describe_non_checkpoint(file: &SafetensorsFile) -> String {
    let keys = &file.tensors;
    let first = |pred: &dyn Fn(&str) -> bool| keys.keys().find(|k| pred(k)).cloned();
    if keys.is_empty() {
        return "the file contains no tensors".to_string();
    }
    if let Some(k) = first(&|k| LORA_MARKERS.iter().any(|m| k.contains(m))) {
        return format!(
            "looks like a LoRA (e.g. key `{k}`); pass it as a LoRA, not as the base model"
        );
    }
    if let Some(k) = first(&|k| k.starts_with("encoder.") || k.starts_with("decoder.")) {
        return format!("looks like a standalone VAE (e.g. key `{k}`), not a full model");
    }
    if let Some(k) = first(&|k| k.starts_with("text_model.")) {
        return format!("looks like a standalone text encoder (e.g. key `{k}`), not a full model");
    }
    if let Some(k) = first(&|k| k.starts_with("down_blocks.") || k.starts_with("conv_in.")) {
        return format!(
            "looks like a diffusers UNet file (e.g. key `{k}`); pass the diffusers folder that holds unet/, vae/ and text_encoder/"
        );
    }
    let sample: Vec<&str> = keys.keys().take(3).map(String::as_str).collect();
    format!(
        "no UNet weights (`{LDM_UNET_PREFIX}*`); first keys: {}",
        sample.join(", ")
    )
}

/// `dir/sub/stem.safetensors` or `dir/sub/stem.fp16.safetensors`; a `.bin` there is refused as pickle.
pub(crate) fn diffusers_file(dir: &Path, sub: &str, stem: &str) -> Result<PathBuf, WeightsError> {
    let folder = dir.join(sub);
    for name in [
        format!("{stem}.safetensors"),
        format!("{stem}.fp16.safetensors"),
    ] {
        let candidate = folder.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    for name in [format!("{stem}.bin"), format!("{stem}.fp16.bin")] {
        let candidate = folder.join(name);
        if candidate.is_file() {
            return Err(WeightsError::PickleRefused { path: candidate });
        }
    }
    Err(WeightsError::MissingComponent {
        path: dir.to_path_buf(),
        component: sub_label(sub),
        looked_for: format!("{sub}/{stem}.safetensors or {sub}/{stem}.fp16.safetensors"),
    })
}

fn sub_label(sub: &str) -> &'static str {
    match sub {
        "unet" => "UNet",
        "vae" => "VAE",
        _ => "text encoder",
    }
}

/// Opens the three component files of a diffusers folder.
fn open_diffusers(dir: &Path) -> Result<Tables, WeightsError> {
    if dir.join("text_encoder_2").is_dir() {
        return Err(wrong_family(
            dir,
            "an SDXL diffusers pipeline",
            "has a `text_encoder_2/` folder".to_string(),
        ));
    }
    check_scheduler_prediction_type(dir)?;
    let unet_path = diffusers_file(dir, "unet", "diffusion_pytorch_model")?;
    let vae_path = diffusers_file(dir, "vae", "diffusion_pytorch_model")?;
    let text_path = diffusers_file(dir, "text_encoder", "model")?;
    let files = Arc::new(vec![
        SafetensorsFile::open(&unet_path)?,
        SafetensorsFile::open(&vae_path)?,
        SafetensorsFile::open(&text_path)?,
    ]);
    let names = |file: usize, rename: &dyn Fn(&str) -> Option<(String, bool)>| {
        files[file]
            .tensors
            .keys()
            .filter_map(|key| {
                let (name, squeeze_1x1) = rename(key)?;
                let source = Source {
                    file,
                    key: key.clone(),
                    squeeze_1x1,
                };
                Some((name, source))
            })
            .collect::<BTreeMap<_, _>>()
    };
    let unet = names(0, &|k| Some((k.to_string(), false)));
    let vae = names(1, &|k| {
        let name = ldm_names::legacy_diffusers_vae_key(k);
        let squeeze = name.contains(".attentions.0.to_") && name.ends_with(".weight");
        Some((name, squeeze))
    });
    // transformers ≥ 5 saves CLIPTextModel without the `text_model.` level; older versions keep it.
    let text_encoder = names(2, &|k| ldm_names::clip_key(k).map(|name| (name, false)));
    Ok(Tables {
        unet: non_empty_table(Component::Unet, unet, files.clone(), &unet_path, "")?,
        vae: non_empty_table(Component::Vae, vae, files.clone(), &vae_path, "")?,
        text_encoder: non_empty_table(Component::TextEncoder, text_encoder, files, &text_path, "")?,
    })
}

/// `scheduler/scheduler_config.json` with `"prediction_type": "v_prediction"` → refused.
fn check_scheduler_prediction_type(dir: &Path) -> Result<(), WeightsError> {
    let config_path = dir.join("scheduler").join("scheduler_config.json");
    let Ok(text) = std::fs::read_to_string(&config_path) else {
        return Ok(());
    };
    let config: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    match config.get("prediction_type").and_then(|p| p.as_str()) {
        Some("v_prediction") => Err(wrong_family(
            &config_path,
            "a v-prediction model",
            "scheduler prediction_type is v_prediction".to_string(),
        )),
        _ => Ok(()),
    }
}

/// An `Architecture` error for a component table.
fn architecture(table: &ComponentTable, detail: String) -> WeightsError {
    WeightsError::Architecture {
        path: table.origin.clone(),
        component: table.component,
        detail,
    }
}

/// Size of dimension `axis` of a tensor the inference needs; missing tensor or too few dims → error.
fn dim(table: &ComponentTable, name: &str, axis: usize) -> Result<usize, WeightsError> {
    let shape = table.require_shape(name)?;
    shape.get(axis).copied().ok_or_else(|| {
        architecture(
            table,
            format!(
                "`{name}` has shape {shape:?}, expected at least {} dims",
                axis + 1
            ),
        )
    })
}

/// UNet config from shapes, refusing SD2.x / SDXL / inpainting shapes.
fn infer_unet_config(table: &ComponentTable) -> Result<UNetConfig, WeightsError> {
    check_unet_family(table)?;
    let levels = count_indexed(|b| {
        table
            .shape(&format!("down_blocks.{b}.resnets.0.conv1.weight"))
            .is_some()
    });
    let layers_per_block = count_indexed(|i| {
        table
            .shape(&format!("down_blocks.0.resnets.{i}.conv1.weight"))
            .is_some()
    });
    if levels == 0 || layers_per_block == 0 {
        return Err(table.missing("down_blocks.0.resnets.0.conv1.weight"));
    }
    let block_out_channels = (0..levels)
        .map(|b| dim(table, &format!("down_blocks.{b}.resnets.0.conv1.weight"), 0))
        .collect::<Result<Vec<usize>, WeightsError>>()?;
    let down_block_has_attention = (0..levels)
        .map(|b| {
            table
                .shape(&format!("down_blocks.{b}.attentions.0.proj_in.weight"))
                .is_some()
        })
        .collect();
    let cross_attention_dim = unet_cross_attention_dim(table)?;
    let config = UNetConfig {
        in_channels: dim(table, "conv_in.weight", 1)?,
        out_channels: dim(table, "conv_out.weight", 0)?,
        block_out_channels,
        down_block_has_attention,
        layers_per_block,
        cross_attention_dim,
        attention_heads: UNET_HEADS,
        norm_num_groups: NORM_GROUPS,
        norm_eps: 1e-5,
    };
    check_unet_config(table, &config)?;
    Ok(config)
}

/// SD2.x (1024 context, linear proj_in), SDXL (2048 context, add_embedding), inpainting (9 input channels).
fn check_unet_family(table: &ComponentTable) -> Result<(), WeightsError> {
    let path = &table.origin;
    if let Some(shape) = table.shape("add_embedding.linear_1.weight") {
        let evidence = format!(
            "UNet `add_embedding` with {} inputs",
            shape.get(1).unwrap_or(&0)
        );
        return Err(wrong_family(path, "an SDXL model", evidence));
    }
    match unet_cross_attention_dim(table)? {
        1024 => {
            let evidence = "UNet cross-attention dim 1024 (OpenCLIP ViT-H context)".to_string();
            return Err(wrong_family(path, "an SD2.x model", evidence));
        }
        2048 => {
            let evidence = "UNet cross-attention dim 2048".to_string();
            return Err(wrong_family(path, "an SDXL model", evidence));
        }
        _ => {}
    }
    if let Some(name) = table
        .names
        .keys()
        .find(|k| k.ends_with("proj_in.weight") && table.shape(k).is_some_and(|s| s.len() == 2))
    {
        let evidence = format!("linear `proj_in` (`{name}` is 2-D; SD1.x uses 1×1 convs)");
        return Err(wrong_family(path, "an SD2.x model", evidence));
    }
    match table.require_shape("conv_in.weight")?.get(1).copied() {
        Some(4) => Ok(()),
        Some(9) => Err(wrong_family(
            path,
            "an inpainting model",
            "UNet conv_in takes 9 input channels (latent + masked-image latent + mask)".to_string(),
        )),
        other => Err(wrong_family(
            path,
            "a non-txt2img model",
            format!("UNet conv_in takes {other:?} input channels, txt2img needs 4"),
        )),
    }
}

/// Context width from the first cross-attention `to_k` (`[C, context]`).
fn unet_cross_attention_dim(table: &ComponentTable) -> Result<usize, WeightsError> {
    table
        .names
        .keys()
        .find(|k| k.ends_with("attn2.to_k.weight"))
        .and_then(|k| table.shape(k))
        .and_then(|s| s.get(1).copied())
        .ok_or_else(|| {
            table.missing("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight")
        })
}

/// Channels must split into 8 heads and 32 groups; one transformer block per attention (SD1.x).
fn check_unet_config(table: &ComponentTable, config: &UNetConfig) -> Result<(), WeightsError> {
    for &channels in &config.block_out_channels {
        if channels % UNET_HEADS != 0 || channels % NORM_GROUPS != 0 {
            return Err(architecture(
                table,
                format!("{channels} channels do not split into {UNET_HEADS} heads and {NORM_GROUPS} groups"),
            ));
        }
    }
    if let Some(name) = table
        .names
        .keys()
        .find(|k| k.contains(".transformer_blocks.1."))
    {
        return Err(architecture(
            table,
            format!("more than one transformer block per attention (`{name}`); SD1.x has one"),
        ));
    }
    Ok(())
}

/// VAE config from shapes.
fn infer_vae_config(table: &ComponentTable) -> Result<VaeConfig, WeightsError> {
    let down = |i: usize, j: usize| format!("encoder.down_blocks.{i}.resnets.{j}.conv1.weight");
    let levels = count_indexed(|i| table.shape(&down(i, 0)).is_some());
    let layers_per_block = count_indexed(|j| table.shape(&down(0, j)).is_some());
    if levels == 0 {
        return Err(table.missing(&down(0, 0)));
    }
    let block_out_channels = (0..levels)
        .map(|i| dim(table, &down(i, 0), 0))
        .collect::<Result<Vec<usize>, WeightsError>>()?;
    let config = VaeConfig {
        in_channels: dim(table, "encoder.conv_in.weight", 1)?,
        out_channels: dim(table, "decoder.conv_out.weight", 0)?,
        latent_channels: dim(table, "decoder.conv_in.weight", 1)?,
        block_out_channels,
        layers_per_block,
        norm_num_groups: NORM_GROUPS,
        scaling_factor: 0.18215,
    };
    if let Some(&c) = config
        .block_out_channels
        .iter()
        .find(|&&c| c % NORM_GROUPS != 0)
    {
        return Err(architecture(
            table,
            format!("{c} channels do not split into {NORM_GROUPS} groups"),
        ));
    }
    Ok(config)
}

/// CLIP config from shapes, refusing the SD2.x (1024) and SDXL (1280) text towers.
fn infer_clip_config(table: &ComponentTable) -> Result<ClipConfig, WeightsError> {
    let token = table.require_shape("text_model.embeddings.token_embedding.weight")?;
    let layer = |i: usize| format!("text_model.encoder.layers.{i}.self_attn.q_proj.weight");
    let num_hidden_layers = count_indexed(|i| table.shape(&layer(i)).is_some());
    let (vocab_size, hidden_size) = match token.as_slice() {
        [v, h] => (*v, *h),
        _ => {
            return Err(architecture(
                table,
                format!("token embedding has shape {token:?}"),
            ))
        }
    };
    match hidden_size {
        1024 => {
            let evidence = "text encoder width 1024 (OpenCLIP ViT-H)".to_string();
            return Err(wrong_family(&table.origin, "an SD2.x model", evidence));
        }
        1280 => {
            let evidence = "text encoder width 1280 (OpenCLIP ViT-bigG)".to_string();
            return Err(wrong_family(&table.origin, "an SDXL model", evidence));
        }
        h if h % CLIP_HEADS != 0 => {
            return Err(architecture(
                table,
                format!("width {h} does not split into {CLIP_HEADS} heads"),
            ));
        }
        _ => {}
    }
    Ok(ClipConfig {
        vocab_size,
        hidden_size,
        intermediate_size: dim(table, "text_model.encoder.layers.0.mlp.fc1.weight", 0)?,
        num_hidden_layers,
        num_attention_heads: CLIP_HEADS,
        max_position_embeddings: dim(table, "text_model.embeddings.position_embedding.weight", 0)?,
    })
}
