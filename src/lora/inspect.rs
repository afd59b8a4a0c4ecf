//! What a LoRA file is, without a model: format, ranks, alphas, targets, likely base model, training metadata.
//!
//! The base model is guessed from tensor shapes first (cross-attention `to_k`/`to_v` input width: 768 SD1.x, 1024
//! SD2.x, 2048 SDXL; text-encoder width 768 / 1024 / 1280), then from SDXL's `lora_te1_`/`lora_te2_` modules, then
//! from metadata (`ss_base_model_version`, `ss_v2`, `modelspec.architecture`), as A1111's `detect_version` does.
//! Training metadata labels follow kohya's AddNet viewer (anchors.md 2.4).

use std::collections::BTreeMap;

use serde::Serialize;

use super::file::{LoraFile, LoraModule, ModuleWeights};

/// Most frequent dataset tags listed.
const TOP_TAGS: usize = 15;

/// The guessed base model of a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaseModelGuess {
    /// "SD1.x", "SD2.x", "SDXL", or `None` when nothing tells.
    pub family: Option<&'static str>,
    pub evidence: String,
}

impl BaseModelGuess {
    /// The family, or `default` when unknown.
    pub fn family_or(&self, default: &str) -> String {
        self.family.unwrap_or(default).to_string()
    }
}

/// Guesses which base model a file was trained on.
pub fn guess_base_model(file: &LoraFile) -> BaseModelGuess {
    let from_shapes = guess_from_shapes(file);
    if let Some(guess) = from_shapes.as_ref().filter(|g| g.family.is_some()) {
        return guess.clone();
    }
    if let Some(key) = file
        .modules
        .keys()
        .find(|k| k.starts_with("lora_te1_") || k.starts_with("lora_te2_"))
    {
        return BaseModelGuess {
            family: Some("SDXL"),
            evidence: format!("SDXL text-encoder module `{key}`"),
        };
    }
    guess_from_metadata(file)
        .or(from_shapes)
        .unwrap_or(BaseModelGuess {
            family: None,
            evidence: "no shape or metadata tells the base model".to_string(),
        })
}

fn guess_from_shapes(file: &LoraFile) -> Option<BaseModelGuess> {
    let cross = file.modules.values().find(|m| {
        let k = &m.key;
        k.contains("attn2") && (k.ends_with("to_k") || k.ends_with("to_v"))
    });
    if let Some(module) = cross {
        let width = module.update_shape().get(1).copied().unwrap_or(0);
        let family = match width {
            768 => Some("SD1.x"),
            1024 => Some("SD2.x"),
            2048 => Some("SDXL"),
            _ => None,
        };
        return Some(BaseModelGuess {
            family,
            evidence: format!(
                "cross-attention `{}` takes {width}-wide text features",
                module.key
            ),
        });
    }
    let text = file.modules.values().find(|m| is_text_encoder(&m.key))?;
    let width = text.update_shape().get(1).copied().unwrap_or(0);
    let family = match width {
        768 => Some("SD1.x"),
        1024 => Some("SD2.x"),
        1280 => Some("SDXL"),
        _ => None,
    };
    Some(BaseModelGuess {
        family,
        evidence: format!("text-encoder module `{}` is {width} wide", text.key),
    })
}

fn guess_from_metadata(file: &LoraFile) -> Option<BaseModelGuess> {
    let meta = |k: &str| file.metadata.get(k).map(String::as_str);
    let found = |family, evidence: String| {
        Some(BaseModelGuess {
            family: Some(family),
            evidence,
        })
    };
    if let Some(version) = meta("ss_base_model_version") {
        let family = if version.starts_with("sdxl") {
            "SDXL"
        } else if version.starts_with("sd_v2") {
            "SD2.x"
        } else if version.starts_with("sd_v1") {
            "SD1.x"
        } else {
            return None;
        };
        return found(
            family,
            format!("metadata ss_base_model_version = {version}"),
        );
    }
    if meta("ss_v2") == Some("True") {
        return found("SD2.x", "metadata ss_v2 = True".to_string());
    }
    let architecture = meta("modelspec.architecture")?;
    let family = if architecture.contains("-xl-") {
        "SDXL"
    } else if architecture.starts_with("stable-diffusion-v2") {
        "SD2.x"
    } else if architecture.starts_with("stable-diffusion-v1") {
        "SD1.x"
    } else {
        return None;
    };
    found(
        family,
        format!("metadata modelspec.architecture = {architecture}"),
    )
}

/// Whether a module name belongs to the text encoder.
fn is_text_encoder(key: &str) -> bool {
    key.starts_with("lora_te") || key.starts_with("text_encoder") || key.starts_with("text_model")
}

/// Linear / 1×1 conv / k×k conv module counts of one part.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TargetCounts {
    pub linear: usize,
    pub conv_1x1: usize,
    pub conv_kxk: usize,
}

/// Everything `loraeval inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct LoraSummary {
    pub path: String,
    pub name: String,
    /// Algorithms present: "LoRA", "LoCon", "LoCon (Tucker)", "LoHa", "LoKr", "DoRA".
    pub formats: Vec<String>,
    /// "kohya" (`lora_unet_*`/`lora_te_*`) or "diffusers/PEFT" (dotted names).
    pub key_style: String,
    pub dtypes: Vec<String>,
    pub modules: usize,
    /// rank → number of modules.
    pub ranks: BTreeMap<usize, usize>,
    /// alpha (as written) → number of modules; "none" for modules without alpha.
    pub alphas: BTreeMap<String, usize>,
    pub text_encoder: TargetCounts,
    pub unet: TargetCounts,
    pub base_model: BaseModelGuess,
    /// A1111's short hash (`Lora hashes`).
    pub short_hash: String,
    /// (label, value) of the training metadata present, in a fixed order.
    pub training: Vec<(String, String)>,
    /// Most frequent caption tags with their counts (`ss_tag_frequency`, summed over dataset folders).
    pub top_tags: Vec<(String, u64)>,
    pub distinct_tags: usize,
    /// Keys that are not adapter tensors this crate reads.
    pub unknown_keys: usize,
}

/// Metadata keys shown, with their labels.
const TRAINING_KEYS: [(&str, &str); 28] = [
    ("ss_output_name", "Output name"),
    ("ss_epoch", "Epoch"),
    ("ss_num_epochs", "Total epochs"),
    ("ss_steps", "Steps"),
    ("ss_max_train_steps", "Max train steps"),
    ("ss_resolution", "Resolution"),
    ("ss_num_train_images", "Training images (× repeats)"),
    ("ss_batch_size_per_device", "Batch size/device"),
    ("ss_optimizer", "Optimizer"),
    ("ss_learning_rate", "Learning rate"),
    ("ss_unet_lr", "UNet LR"),
    ("ss_text_encoder_lr", "Text encoder LR"),
    ("ss_lr_scheduler", "LR scheduler"),
    ("ss_lr_warmup_steps", "LR warmup steps"),
    ("ss_network_module", "Network module"),
    ("ss_network_dim", "Network dim"),
    ("ss_network_alpha", "Network alpha"),
    ("ss_network_args", "Network args"),
    ("ss_base_model_version", "Base model version"),
    ("ss_sd_model_name", "Base model"),
    ("ss_clip_skip", "Clip skip"),
    ("ss_mixed_precision", "Mixed precision"),
    ("ss_seed", "Seed"),
    ("ss_noise_offset", "Noise offset"),
    ("ss_min_snr_gamma", "Min SNR gamma"),
    ("ss_session_id", "Session id"),
    ("sshs_model_hash", "Model hash (sshs)"),
    ("sshs_legacy_hash", "Legacy hash (sshs)"),
];

impl LoraFile {
    /// The summary `inspect` prints.
    pub fn summary(&self) -> LoraSummary {
        let mut summary = LoraSummary {
            path: self.path.display().to_string(),
            name: self.name.clone(),
            formats: Vec::new(),
            key_style: key_style(self),
            dtypes: Vec::new(),
            modules: self.modules.len(),
            ranks: BTreeMap::new(),
            alphas: BTreeMap::new(),
            text_encoder: TargetCounts::default(),
            unet: TargetCounts::default(),
            base_model: guess_base_model(self),
            short_hash: self
                .short_hash()
                .unwrap_or_else(|e| format!("unavailable ({e})")),
            training: training_metadata(self),
            top_tags: Vec::new(),
            distinct_tags: 0,
            unknown_keys: self.unknown_keys.len(),
        };
        for module in self.modules.values() {
            add_module(&mut summary, module);
        }
        let (top, distinct) = tag_summary(self);
        summary.top_tags = top;
        summary.distinct_tags = distinct;
        summary
    }
}

fn key_style(file: &LoraFile) -> String {
    let kohya = file
        .modules
        .keys()
        .filter(|k| k.starts_with("lora_"))
        .count();
    match (kohya, file.modules.len() - kohya) {
        (_, 0) => "kohya",
        (0, _) => "diffusers/PEFT",
        _ => "mixed kohya and diffusers/PEFT",
    }
    .to_string()
}

fn push_unique(list: &mut Vec<String>, value: &str) {
    if !list.iter().any(|v| v == value) {
        list.push(value.to_string());
    }
}

fn add_module(summary: &mut LoraSummary, module: &LoraModule) {
    let kernel = module.kernel();
    let format = match (&module.weights, kernel) {
        (ModuleWeights::Lora { mid: Some(_), .. }, _) => "LoCon (Tucker)",
        (ModuleWeights::Lora { .. }, Some((kh, kw))) if kh * kw > 1 => "LoCon",
        (ModuleWeights::Lora { .. }, _) => "LoRA",
        (ModuleWeights::Loha { .. }, _) => "LoHa",
        (ModuleWeights::Lokr { .. }, _) => "LoKr",
    };
    push_unique(&mut summary.formats, format);
    if module.dora_scale.is_some() {
        push_unique(&mut summary.formats, "DoRA");
    }
    push_unique(&mut summary.dtypes, module.dtype);
    if let Some(rank) = module.rank() {
        *summary.ranks.entry(rank).or_default() += 1;
    }
    let alpha = module.alpha.map_or("none".to_string(), |a| format!("{a}"));
    *summary.alphas.entry(alpha).or_default() += 1;
    let counts = if is_text_encoder(&module.key) {
        &mut summary.text_encoder
    } else {
        &mut summary.unet
    };
    match kernel.or_else(|| kernel_from_name(&module.key)) {
        None => counts.linear += 1,
        Some((1, 1)) => counts.conv_1x1 += 1,
        Some(_) => counts.conv_kxk += 1,
    }
}

/// LoHa/LoKr store conv updates flattened (`[r, in·kh·kw]`); the SD1.5 module name tells the kernel.
fn kernel_from_name(key: &str) -> Option<(usize, usize)> {
    let last = key.rsplit(['.', '_']).next().unwrap_or("");
    let ends = |suffix: &str| key.ends_with(suffix);
    if ends("conv1")
        || ends("conv2")
        || ends("conv_in")
        || ends("conv_out")
        || last == "conv"
        || ends("_op")
    {
        Some((3, 3))
    } else if ends("proj_in")
        || ends("proj_out")
        || ends("conv_shortcut")
        || ends("skip_connection")
    {
        Some((1, 1))
    } else {
        None
    }
}

fn training_metadata(file: &LoraFile) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = TRAINING_KEYS
        .iter()
        .filter_map(|(key, label)| {
            let value = file.metadata.get(*key)?;
            (!value.is_empty() && value != "None").then(|| (label.to_string(), value.clone()))
        })
        .collect();
    for (key, label) in [
        ("ss_training_started_at", "Training started (unix time)"),
        ("ss_training_finished_at", "Saved at (unix time)"),
    ] {
        if let Some(value) = file.metadata.get(key) {
            rows.push((label.to_string(), value.clone()));
        }
    }
    if let Some(dirs) = file.metadata.get("ss_dataset_dirs") {
        rows.push(("Dataset folders".to_string(), dataset_dirs(dirs)));
    }
    rows
}

/// `{"10_face": {"n_repeats": 10, "img_count": 20}}` → `10_face: 20 images × 10`.
fn dataset_dirs(json: &str) -> String {
    let Ok(serde_json::Value::Object(dirs)) = serde_json::from_str(json) else {
        return json.to_string();
    };
    dirs.iter()
        .map(|(dir, info)| {
            let images = info.get("img_count").and_then(|v| v.as_u64()).unwrap_or(0);
            let repeats = info.get("n_repeats").and_then(|v| v.as_u64()).unwrap_or(0);
            format!("{dir}: {images} images × {repeats}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Top tags of `ss_tag_frequency` (`{folder: {tag: count}}`) summed over folders, and the distinct tag count.
fn tag_summary(file: &LoraFile) -> (Vec<(String, u64)>, usize) {
    let Some(text) = file.metadata.get("ss_tag_frequency") else {
        return (Vec::new(), 0);
    };
    let Ok(serde_json::Value::Object(folders)) = serde_json::from_str(text) else {
        return (Vec::new(), 0);
    };
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for tags in folders.values() {
        if let Some(tags) = tags.as_object() {
            for (tag, count) in tags {
                *totals.entry(tag.trim().to_string()).or_default() += count.as_u64().unwrap_or(0);
            }
        }
    }
    let distinct = totals.len();
    let mut sorted: Vec<(String, u64)> = totals.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted.truncate(TOP_TAGS);
    (sorted, distinct)
}

impl LoraSummary {
    /// Multi-line human-readable text.
    pub fn to_text(&self) -> String {
        let mut lines = vec![
            format!("file:        {}", self.path),
            format!(
                "format:      {} ({} keys)",
                self.formats.join(" + "),
                self.key_style
            ),
            format!("dtype:       {}", self.dtypes.join(", ")),
            format!("modules:     {}", self.modules),
            format!("rank:        {}", counts_text(&self.ranks)),
            format!("alpha:       {}", counts_text(&self.alphas)),
            format!("text enc.:   {}", targets_text(&self.text_encoder)),
            format!("UNet:        {}", targets_text(&self.unet)),
            format!(
                "base model:  {} ({})",
                self.base_model.family.unwrap_or("unknown"),
                self.base_model.evidence
            ),
            format!("hash:        {} (A1111 Lora hashes)", self.short_hash),
        ];
        if self.unknown_keys > 0 {
            lines.push(format!(
                "ignored:     {} keys of unsupported types",
                self.unknown_keys
            ));
        }
        if !self.training.is_empty() {
            lines.push("training:".to_string());
            for (label, value) in &self.training {
                lines.push(format!("  {label}: {value}"));
            }
        }
        if !self.top_tags.is_empty() {
            let tags: Vec<String> = self
                .top_tags
                .iter()
                .map(|(t, c)| format!("{t} ({c})"))
                .collect();
            lines.push(format!(
                "tags:        {} distinct; most frequent: {}",
                self.distinct_tags,
                tags.join(", ")
            ));
        }
        lines.join("\n")
    }
}

fn counts_text<K: std::fmt::Display>(counts: &BTreeMap<K, usize>) -> String {
    counts
        .iter()
        .map(|(value, n)| format!("{value} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn targets_text(counts: &TargetCounts) -> String {
    format!(
        "{} linear, {} conv 1×1, {} conv k×k",
        counts.linear, counts.conv_1x1, counts.conv_kxk
    )
}
