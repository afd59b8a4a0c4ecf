//! What one imported image was made with, read from A1111's infotext (`modules/infotext_utils.py`
//! `parse_generation_parameters`, here `sampling::png_info::parse_infotext`) or ComfyUI's graph (`comfy`):
//! prompt, seed, sampler settings, the LoRAs and their weights, the model and size, and the other settings.
//!
//! The fields split in three: the LoRA tag of the run being judged (the grid's X and Y), the seed, the settings
//! that may vary between images and become Z levels ([`ImageSettings::level_fields`]), and the settings that
//! must not vary ([`ImageSettings::fixed_fields`]: base model, size, VAE).

use crate::lora::library::is_lora_kind;
use crate::sampling::png_info::parse_infotext;
use crate::text::extra_networks::{extract_extra_networks, ExtraNetworkTag};
use crate::text::prompt::parse_python_float;

/// One LoRA an image applied: the tag's name (or ComfyUI's file name without extension) and multipliers.
#[derive(Clone, Debug, PartialEq)]
pub struct TagLora {
    pub name: String,
    pub te: f64,
    pub unet: f64,
}

/// The settings of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSettings {
    /// The prompt as written (A1111: with its `<lora:…>` tags).
    pub prompt: String,
    pub negative: String,
    pub seed: u64,
    pub steps: usize,
    pub cfg: f64,
    /// A1111's sampler label with a schedule other than "Automatic" appended ("DPM++ 2M Karras").
    pub sampler: String,
    pub width: u32,
    pub height: u32,
    pub clip_skip: u32,
    pub model_hash: Option<String>,
    pub model_name: Option<String>,
    /// `VAE hash`, else `VAE`.
    pub vae: Option<String>,
    pub loras: Vec<TagLora>,
    /// `Lora hashes` as (tag name without ':' and ',', short hash).
    pub lora_hashes: Vec<(String, String)>,
    /// Every other setting (RNG, ENSD, hires fix, …): a difference makes another Z level.
    pub others: Vec<(String, String)>,
}

/// Infotext fields that describe the image or the grid around it, not how it was drawn.
const NOT_SETTINGS: [&str; 14] = [
    "Lora hashes",
    "TI hashes",
    "Hashes",
    "Version",
    "Script",
    "X Type",
    "X Values",
    "Y Type",
    "Y Values",
    "Z Type",
    "Z Values",
    "Fixed X Values",
    "Fixed Y Values",
    "Fixed Z Values",
];

impl ImageSettings {
    /// Reads an A1111 infotext; the reason when it is not one.
    pub fn from_infotext(text: &str) -> Result<ImageSettings, String> {
        let params = parse_infotext(text).map_err(|e| e.to_string())?;
        let loras = lora_tags(&params.prompt)?;
        let mut others: Vec<(String, String)> = Vec::new();
        others.extend(params.rng.map(|v| ("RNG".to_string(), v)));
        others.extend(params.ensd.map(|v| ("ENSD".to_string(), v.to_string())));
        let mut vae = None;
        for (key, value) in params.extra {
            match key.as_str() {
                "VAE hash" => vae = Some(value),
                "VAE" => vae = vae.or(Some(value)),
                k if NOT_SETTINGS.contains(&k) => {}
                _ => others.push((key, value)),
            }
        }
        Ok(ImageSettings {
            sampler: sampler_label(&params.sampler, &params.schedule_type),
            prompt: params.prompt,
            negative: params.negative,
            seed: params.seed,
            steps: params.steps,
            cfg: params.cfg,
            width: params.width,
            height: params.height,
            clip_skip: params.clip_skip,
            model_hash: params.model_hash,
            model_name: params.model_name,
            vae,
            loras,
            lora_hashes: params.lora_hashes,
            others,
        })
    }

    /// The settings that must be the same in every image of a run, as (name, value).
    pub fn fixed_fields(&self) -> Vec<(&'static str, String)> {
        let model = match (&self.model_hash, &self.model_name) {
            (Some(hash), _) => ("Model hash", hash.clone()),
            (None, Some(name)) => ("Model", name.clone()),
            (None, None) => ("Model hash", "none".to_string()),
        };
        let vae = ("VAE", self.vae.clone().unwrap_or_else(|| "none".into()));
        vec![
            model,
            ("Size", format!("{}x{}", self.width, self.height)),
            vae,
        ]
    }

    /// The settings that make a Z level, as (name, value): the prompt without LoRA tags (spaces and commas
    /// tidied, so A1111's "None" column of a Prompt S/R matches), negative prompt, steps, sampler, CFG, clip skip,
    /// the LoRAs other than the run's (`is_subject`), and every other setting.
    pub fn level_fields(&self, is_subject: &dyn Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut fields = vec![
            ("Prompt".to_string(), tidy_prompt(&self.prompt)),
            ("Negative prompt".to_string(), self.negative.clone()),
            ("Steps".to_string(), self.steps.to_string()),
            ("Sampler".to_string(), self.sampler.clone()),
            ("CFG scale".to_string(), self.cfg.to_string()),
            ("Clip skip".to_string(), self.clip_skip.to_string()),
        ];
        let others: Vec<String> = self
            .loras
            .iter()
            .filter(|l| !is_subject(&l.name))
            .map(|l| format!("{}:{}:{}", l.name, l.te, l.unet))
            .collect();
        if !others.is_empty() {
            fields.push(("Other LoRAs".to_string(), others.join(", ")));
        }
        fields.extend(self.others.iter().cloned());
        fields
    }

    /// The short hash `Lora hashes` gives for the tag `name` (A1111 keys it by the tag's name without ':' and
    /// ',').
    pub fn lora_hash(&self, name: &str) -> Option<&str> {
        let alias = name.replace([':', ','], "");
        self.lora_hashes
            .iter()
            .find(|(a, _)| *a == alias)
            .map(|(_, h)| h.as_str())
    }
}

/// "DPM++ 2M" + "Karras" → "DPM++ 2M Karras"; no or "Automatic" schedule: the sampler alone.
pub fn sampler_label(sampler: &str, schedule: &str) -> String {
    match schedule {
        "" | "Automatic" => sampler.to_string(),
        schedule => format!("{sampler} {schedule}"),
    }
}

/// The `<lora:…>` (and `<lyco:…>`) tags of a prompt with A1111's multipliers (`extra_networks_lora.py`): one
/// number = both, two = text encoder and UNet, `te=` / `unet=` override.
fn lora_tags(prompt: &str) -> Result<Vec<TagLora>, String> {
    let (_, tags) = extract_extra_networks(prompt);
    tags.iter()
        .filter(|t| is_lora_kind(&t.kind))
        .map(tag_lora)
        .collect()
}

fn tag_lora(tag: &ExtraNetworkTag) -> Result<TagLora, String> {
    let bad = |what: &str| format!("{}: {what}", tag.to_tag_text());
    if tag.name.is_empty() {
        return Err(bad("no LoRA name"));
    }
    let number = |text: &str| {
        parse_python_float(text).map_err(|_| bad(&format!("{text:?} is not a weight")))
    };
    let positional = tag.positional_args();
    let mut te = positional.first().map_or(Ok(1.0), |s| number(s))?;
    if let Some(named) = tag.named_arg("te") {
        te = number(named)?;
    }
    let mut unet = positional.get(1).map_or(Ok(te), |s| number(s))?;
    if let Some(named) = tag.named_arg("unet") {
        unet = number(named)?;
    }
    Ok(TagLora {
        name: tag.name.clone(),
        te,
        unet,
    })
}

/// The prompt without LoRA tags, for comparing prompts: runs of spaces made one, empty comma-separated parts
/// dropped ("photo of sks ,  , smiling" and "photo of sks, smiling" are the same prompt).
pub fn tidy_prompt(prompt: &str) -> String {
    let without = crate::grid::plan::control_prompt(prompt);
    without
        .split(',')
        .map(|part| part.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFOTEXT: &str = "photo of sks woman, <lora:sks-000002:0.8>, <lora:style:0.5:1>\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, VAE: vae-ft-mse.safetensors, RNG: CPU, Lora hashes: \"sks-000002: 0123456789ab, style: ba9876543210\", Version: v1.10.1";

    #[test]
    fn reads_a1111_infotext() {
        let s = ImageSettings::from_infotext(INFOTEXT).unwrap();
        assert_eq!(s.sampler, "DPM++ 2M Karras");
        assert_eq!((s.seed, s.steps, s.cfg), (1234, 20, 7.0));
        assert_eq!(
            s.loras[0],
            TagLora {
                name: "sks-000002".into(),
                te: 0.8,
                unet: 0.8
            }
        );
        assert_eq!(
            s.loras[1],
            TagLora {
                name: "style".into(),
                te: 0.5,
                unet: 1.0
            }
        );
        assert_eq!(s.lora_hash("sks-000002"), Some("0123456789ab"));
        assert_eq!(s.vae.as_deref(), Some("735e4c3a44"));
        assert_eq!(s.others, vec![("RNG".to_string(), "CPU".to_string())]);
        assert_eq!(s.fixed_fields()[1], ("Size", "512x512".to_string()));
        let level = s.level_fields(&|n: &str| n.starts_with("sks"));
        assert_eq!(level[0].1, "photo of sks woman");
        assert!(level.contains(&("Other LoRAs".to_string(), "style:0.5:1".to_string())));
    }

    #[test]
    fn tidies_prompts_for_comparison() {
        assert_eq!(
            tidy_prompt("photo of  sks , <lora:a:1>, smiling"),
            "photo of sks, smiling"
        );
        assert_eq!(
            tidy_prompt("photo of sks, smiling, "),
            "photo of sks, smiling"
        );
        assert!(ImageSettings::from_infotext(
            "a prompt <lora:x:abc>\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 8x8"
        )
        .is_err());
        assert!(ImageSettings::from_infotext("just a caption").is_err());
    }
}
