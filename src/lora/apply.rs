//! Matching a [`LoraFile`] against a model and applying it, merged or unmerged.
//!
//! * Resolution ([`ModelLayers::resolve`]): every module is looked up by name ([`LayerTable`]); its update shape
//!   must fit the layer (else [`LoraError::ShapeMismatch`] naming the key, both shapes and the base model the file
//!   looks made for); a file where most modules match nothing, or with SDXL's `lora_te1_`/`lora_te2_` encoders, is
//!   [`LoraError::WrongBaseModel`]. Unmatched modules are returned for the caller to report.
//! * Merged ([`LoraMode::Merged`]): `W ← W + m·scale·ΔW` per LoRA in order (A1111 `network_apply_weights`), in f32;
//!   a multiplier of exactly 0 leaves the weight tensor untouched (bit-exact base image).
//! * Unmerged ([`LoraMode::Unmerged`]): each targeted layer gets an [`Adapter`] evaluated in forward; LoRA/LoCon
//!   stay low-rank (`up(down(x))`), LoHa/LoKr/DoRA become dense updates. [`attach_per_image`] gives every image of
//!   a batch its own set of files and multipliers.
//!
//! The text-encoder multiplier applies to text-encoder layers, the UNet multiplier to UNet layers (A1111
//! `NetworkModule.multiplier`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use candle_core::Tensor;

use super::file::{LoraFile, LoraModule, ModuleWeights};
use super::inspect::guess_base_model;
pub use super::names::Part;
use super::names::{LayerRef, LayerTable};
use super::{compute_error, LoraError, ShapeMismatch, WrongBaseModel};
use crate::model::adapter::{
    AdaptableLayers, Adapter, AdapterMultiplier, AdapterWeights, LayerMut,
};

/// Unmatched modules examples shown in messages.
const EXAMPLES_SHOWN: usize = 3;

/// One LoRA to apply and its multipliers.
#[derive(Debug, Clone)]
pub struct LoraUse {
    pub file: Arc<LoraFile>,
    /// The name written in the infotext (the tag's name, or the file stem for `--lora FILE`).
    pub name: String,
    pub te: f32,
    pub unet: f32,
}

impl LoraUse {
    /// The multiplier of `part`.
    pub fn multiplier(&self, part: Part) -> f32 {
        match part {
            Part::TextEncoder => self.te,
            Part::Unet => self.unet,
        }
    }
}

/// How LoRAs reach the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraMode {
    /// Added into the layer weights (one setting for the whole batch; fastest per step).
    Merged,
    /// Evaluated as adapters in the forward pass on shared base weights.
    Unmerged,
}

/// The adaptable layers of a model: the name lookup table and every layer's weight shape.
#[derive(Debug, Clone)]
pub struct ModelLayers {
    table: LayerTable,
    shapes: HashMap<(Part, String), Vec<usize>>,
}

/// A file matched against a model.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// (layer, module key in the file) for every matched module.
    pub targets: Vec<(LayerRef, String)>,
    /// Module keys that match no layer.
    pub unmatched: Vec<String>,
    /// Keys the reader did not understand (unsupported adapter types, bundled embeddings).
    pub unknown_keys: Vec<String>,
}

impl ModelLayers {
    /// Collects the layers of a UNet and a text encoder.
    pub fn new(unet: &mut dyn AdaptableLayers, text_encoder: &mut dyn AdaptableLayers) -> Self {
        let describe = |model: &mut dyn AdaptableLayers| -> Vec<(String, Vec<usize>)> {
            model
                .layers_mut()
                .iter()
                .map(|l| (l.name().to_string(), l.weight().dims().to_vec()))
                .collect()
        };
        Self::from_shapes(&describe(unet), &describe(text_encoder))
    }

    /// From (layer name, weight shape) lists.
    pub fn from_shapes(
        unet: &[(String, Vec<usize>)],
        text_encoder: &[(String, Vec<usize>)],
    ) -> Self {
        let names = |layers: &[(String, Vec<usize>)]| -> Vec<String> {
            layers.iter().map(|(n, _)| n.clone()).collect()
        };
        let table = LayerTable::build(&names(unet), &names(text_encoder));
        let shapes = unet
            .iter()
            .map(|(n, s)| ((Part::Unet, n.clone()), s.clone()))
            .chain(
                text_encoder
                    .iter()
                    .map(|(n, s)| ((Part::TextEncoder, n.clone()), s.clone())),
            )
            .collect();
        ModelLayers { table, shapes }
    }

    /// Matches every module of `file`; errors for wrong families and shape mismatches.
    pub fn resolve(&self, file: &LoraFile) -> Result<Resolution, LoraError> {
        refuse_sdxl_encoders(file)?;
        let mut targets = Vec::new();
        let mut unmatched = Vec::new();
        for (key, module) in &file.modules {
            let Some(layer) = self.table.lookup(key) else {
                unmatched.push(key.clone());
                continue;
            };
            let shape = &self.shapes[&(layer.part, layer.name.clone())];
            check_shape(file, module, layer, shape)?;
            targets.push((layer.clone(), key.clone()));
        }
        let total = file.modules.len();
        if targets.len() * 2 < total {
            let guess = guess_base_model(file);
            return Err(LoraError::WrongBaseModel {
                path: file.path.clone(),
                detail: Box::new(WrongBaseModel {
                    looks_like: guess.family_or("a different model architecture"),
                    evidence: guess.evidence,
                    matched: targets.len(),
                    total,
                    examples: examples(&unmatched),
                }),
            });
        }
        Ok(Resolution {
            targets,
            unmatched,
            unknown_keys: file.unknown_keys.clone(),
        })
    }
}

/// First few names, comma-separated.
pub fn examples(names: &[String]) -> String {
    let shown: Vec<&str> = names
        .iter()
        .take(EXAMPLES_SHOWN)
        .map(String::as_str)
        .collect();
    if names.len() > EXAMPLES_SHOWN {
        format!("{}, …", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// `lora_te1_` / `lora_te2_` / `text_encoder_2.` only exist in SDXL LoRAs.
fn refuse_sdxl_encoders(file: &LoraFile) -> Result<(), LoraError> {
    let sdxl: Vec<String> = file
        .modules
        .keys()
        .filter(|k| {
            k.starts_with("lora_te1_")
                || k.starts_with("lora_te2_")
                || k.starts_with("text_encoder_2.")
        })
        .cloned()
        .collect();
    if sdxl.is_empty() {
        return Ok(());
    }
    let matched = file.modules.len() - sdxl.len();
    Err(LoraError::WrongBaseModel {
        path: file.path.clone(),
        detail: Box::new(WrongBaseModel {
            looks_like: "SDXL".to_string(),
            evidence: "it has modules for SDXL's two text encoders (`lora_te1_`/`lora_te2_`)"
                .to_string(),
            matched,
            total: file.modules.len(),
            examples: examples(&sdxl),
        }),
    })
}

/// The update must have the layer's output and input widths and element count.
fn check_shape(
    file: &LoraFile,
    module: &LoraModule,
    layer: &LayerRef,
    model_shape: &[usize],
) -> Result<(), LoraError> {
    let update = module.update_shape();
    let numel = |s: &[usize]| s.iter().product::<usize>();
    // Flattened updates (LoHa/LoKr `[out, in·kh·kw]`, a Linear-shaped LoRA on a 1×1 conv) are reshaped like A1111
    // does, so only the output width and the element count must agree; same-rank updates must agree exactly.
    let fits = update.first() == model_shape.first()
        && numel(&update) == numel(model_shape)
        && (update.len() != model_shape.len() || update == model_shape);
    if fits {
        return Ok(());
    }
    let guess = guess_base_model(file);
    let hint = match guess.family {
        Some(family) => format!("; the file looks made for {family} ({})", guess.evidence),
        None => String::new(),
    };
    Err(LoraError::ShapeMismatch {
        path: file.path.clone(),
        detail: Box::new(ShapeMismatch {
            key: module.key.clone(),
            layer: layer.name.clone(),
            lora_shape: update,
            model_shape: model_shape.to_vec(),
            tensors: tensor_shapes(module),
            hint,
        }),
    })
}

/// `down [4, 2048], up [320, 4]` style summary of a module's tensors.
fn tensor_shapes(module: &LoraModule) -> String {
    let s = |name: &str, t: &Tensor| format!("{name} {:?}", t.dims());
    match &module.weights {
        ModuleWeights::Lora { down, up, mid } => {
            let mut parts = vec![s("lora_down", down), s("lora_up", up)];
            if let Some(mid) = mid {
                parts.push(s("lora_mid", mid));
            }
            parts.join(", ")
        }
        ModuleWeights::Loha { w1_a, w1_b, .. } => {
            format!("{}, {}", s("hada_w1_a", w1_a), s("hada_w1_b", w1_b))
        }
        ModuleWeights::Lokr { .. } => format!("LoKr update {:?}", module.update_shape()),
    }
}

/// (file index, module key, multiplier) contributions to one layer.
type Contributions = BTreeMap<String, Vec<(usize, String, f32)>>;

/// Resolves every use and groups the contributions of `part` by layer name.
fn contributions(
    layers: &ModelLayers,
    uses: &[LoraUse],
    part: Part,
) -> Result<Contributions, LoraError> {
    let mut by_layer: Contributions = BTreeMap::new();
    for (index, lora) in uses.iter().enumerate() {
        let resolution = layers.resolve(&lora.file)?;
        for (layer, key) in resolution.targets {
            if layer.part == part {
                by_layer
                    .entry(layer.name)
                    .or_default()
                    .push((index, key, lora.multiplier(part)));
            }
        }
    }
    Ok(by_layer)
}

/// Applies `uses` to the layers of `model` (which is the model `part` names).
pub fn apply(
    model: &mut dyn AdaptableLayers,
    part: Part,
    layers: &ModelLayers,
    uses: &[LoraUse],
    mode: LoraMode,
) -> Result<(), LoraError> {
    let by_layer = contributions(layers, uses, part)?;
    if by_layer.is_empty() {
        return Ok(());
    }
    for mut layer in model.layers_mut() {
        let Some(list) = by_layer.get(layer.name()) else {
            continue;
        };
        for (index, key, multiplier) in list {
            let lora = &uses[*index];
            let module = &lora.file.modules[key];
            match mode {
                LoraMode::Merged => merge_module(&mut layer, module, *multiplier)?,
                LoraMode::Unmerged => {
                    let multiplier = AdapterMultiplier::Uniform(*multiplier);
                    attach_module(&mut layer, module, &lora.name, multiplier)?
                }
            }
        }
    }
    Ok(())
}

/// Gives image `i` of a batch the LoRAs `per_image[i]` as adapters on `model` (unmerged only). Each distinct
/// file gets one adapter per layer whose per-image multipliers are 0 for the images that do not use it.
pub fn attach_per_image(
    model: &mut dyn AdaptableLayers,
    part: Part,
    layers: &ModelLayers,
    per_image: &[Vec<LoraUse>],
) -> Result<(), LoraError> {
    let images = per_image.len();
    let mut files: Vec<LoraUse> = Vec::new();
    let mut factors: Vec<Vec<f32>> = Vec::new();
    for (image, uses) in per_image.iter().enumerate() {
        for lora in uses {
            let slot = match files.iter().position(|f| Arc::ptr_eq(&f.file, &lora.file)) {
                Some(slot) => slot,
                None => {
                    files.push(lora.clone());
                    factors.push(vec![0.0; images]);
                    files.len() - 1
                }
            };
            factors[slot][image] += lora.multiplier(part);
        }
    }
    let by_layer = contributions(layers, &files, part)?;
    for mut layer in model.layers_mut() {
        let Some(list) = by_layer.get(layer.name()) else {
            continue;
        };
        for (index, key, _) in list {
            let module = &files[*index].file.modules[key];
            let multiplier = AdapterMultiplier::PerImage(factors[*index].clone());
            attach_module(&mut layer, module, &files[*index].name, multiplier)?;
        }
    }
    Ok(())
}

/// `W ← W + m·update`; nothing at all when `m == 0`.
fn merge_module(
    layer: &mut LayerMut<'_>,
    module: &LoraModule,
    multiplier: f32,
) -> Result<(), LoraError> {
    if multiplier == 0.0 {
        return Ok(());
    }
    let layer_name = layer.name().to_string();
    let context = || format!("merging `{}` into `{layer_name}`", module.key);
    let base = layer.weight().clone();
    let update = module
        .scaled_update(&base)
        .map_err(compute_error(context()))?;
    let merged = (&base + (update * multiplier as f64).map_err(compute_error(context()))?)
        .map_err(compute_error(context()))?;
    layer.set_weight(merged).map_err(compute_error(context()))
}

/// Adds one adapter for `module` to `layer`.
fn attach_module(
    layer: &mut LayerMut<'_>,
    module: &LoraModule,
    source: &str,
    multiplier: AdapterMultiplier,
) -> Result<(), LoraError> {
    let layer_name = layer.name().to_string();
    let context = || format!("attaching `{}` to `{layer_name}`", module.key);
    let scale = module.scale();
    let low_rank = match (&module.weights, &module.dora_scale) {
        (ModuleWeights::Lora { down, up, mid }, None) => Some((down, up, mid)),
        _ => None,
    };
    let (weights, multiplier) = match low_rank {
        Some((down, up, mid)) => {
            let weights = low_rank_weights(layer, down, up, mid.as_ref())
                .map_err(compute_error(context()))?;
            (weights, scaled(multiplier, scale))
        }
        None => {
            let delta = module
                .scaled_update(layer.weight())
                .map_err(compute_error(context()))?;
            (AdapterWeights::Dense { delta }, multiplier)
        }
    };
    layer.adapters_mut().push(Adapter {
        source: source.to_string(),
        weights,
        multiplier,
    });
    Ok(())
}

fn scaled(multiplier: AdapterMultiplier, scale: f32) -> AdapterMultiplier {
    match multiplier {
        AdapterMultiplier::Uniform(m) => AdapterMultiplier::Uniform(m * scale),
        AdapterMultiplier::PerImage(values) => {
            AdapterMultiplier::PerImage(values.into_iter().map(|m| m * scale).collect())
        }
    }
}

/// LoRA tensors in the layer's compute form: conv targets need 4-D `down`/`up`.
fn low_rank_weights(
    layer: &LayerMut<'_>,
    down: &Tensor,
    up: &Tensor,
    mid: Option<&Tensor>,
) -> candle_core::Result<AdapterWeights> {
    if !layer.is_conv() {
        return Ok(AdapterWeights::LowRank {
            down: down.clone(),
            mid: mid.cloned(),
            up: up.clone(),
        });
    }
    let to_4d = |t: &Tensor| -> candle_core::Result<Tensor> {
        match t.rank() {
            2 => t.reshape((t.dim(0)?, t.dim(1)?, 1, 1)),
            _ => Ok(t.clone()),
        }
    };
    Ok(AdapterWeights::LowRank {
        down: to_4d(down)?,
        mid: mid.cloned(),
        up: to_4d(up)?,
    })
}
