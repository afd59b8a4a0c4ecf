//! Every name an adapter file may use for one of our layers → that layer.
//!
//! Built from the model's own layer names (diffusers names for the UNet, transformers names for CLIP), never by
//! parsing `_`-flattened names (they are ambiguous: `to_out_0`, `ff_net_0_proj`). For each UNet layer `P` the table
//! holds the kohya names `lora_unet_<P with . → _>` (what sd-scripts writes for SD1.x) and
//! `lora_unet_<LDM path with . → _>` (what some tools write, e.g. `lora_unet_input_blocks_1_1_proj_in`), the PEFT /
//! diffusers names `unet.<P>` and `<P>`, and `diffusion_model.<LDM path>`; for each text-encoder layer `T`
//! (`text_model.encoder.layers.N.…`): `lora_te_<T flattened>`, `text_encoder.<T>` and `<T>`. The same approach as
//! A1111's `assign_network_names_to_compvis_modules` and ComfyUI's `model_lora_keys_unet/clip`.

use std::collections::HashMap;

/// Which model a layer belongs to (chooses the text-encoder or UNet multiplier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    TextEncoder,
    Unet,
}

impl Part {
    /// Label for messages and `inspect`.
    pub fn label(self) -> &'static str {
        match self {
            Part::TextEncoder => "text encoder",
            Part::Unet => "UNet",
        }
    }
}

/// A layer of the model: its part and name (without `.weight`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayerRef {
    pub part: Part,
    pub name: String,
}

/// Lookup table from file module names to layers.
#[derive(Debug, Clone, Default)]
pub struct LayerTable {
    entries: HashMap<String, LayerRef>,
}

/// `a.b.c` → `a_b_c`.
fn flatten(name: &str) -> String {
    name.replace('.', "_")
}

impl LayerTable {
    /// Builds the table from the UNet's and the text encoder's layer names.
    pub fn build(unet_layers: &[String], text_encoder_layers: &[String]) -> Self {
        let mut entries = HashMap::new();
        let layout = UnetLayout::from_names(unet_layers);
        for name in unet_layers {
            let layer = LayerRef {
                part: Part::Unet,
                name: name.clone(),
            };
            let mut names = vec![
                format!("lora_unet_{}", flatten(name)),
                format!("unet.{name}"),
                name.clone(),
            ];
            if let Some(ldm) = layout.ldm_name(name) {
                names.push(format!("lora_unet_{}", flatten(&ldm)));
                names.push(format!("diffusion_model.{ldm}"));
            }
            for alias in names {
                entries.entry(alias).or_insert_with(|| layer.clone());
            }
        }
        for name in text_encoder_layers {
            let layer = LayerRef {
                part: Part::TextEncoder,
                name: name.clone(),
            };
            for alias in [
                format!("lora_te_{}", flatten(name)),
                format!("text_encoder.{name}"),
                name.clone(),
            ] {
                entries.entry(alias).or_insert_with(|| layer.clone());
            }
        }
        LayerTable { entries }
    }

    /// The layer a file's module name refers to.
    pub fn lookup(&self, module: &str) -> Option<&LayerRef> {
        if let Some(hit) = self.entries.get(module) {
            return Some(hit);
        }
        let module = module.strip_prefix("base_model.model.").unwrap_or(module);
        if let Some(hit) = self.entries.get(module) {
            return Some(hit);
        }
        // transformers ≥ 5 drops the `text_model.` level of CLIPTextModel.
        let rest = module.strip_prefix("text_encoder.")?;
        self.entries.get(&format!("text_encoder.text_model.{rest}"))
    }

    /// Number of names in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What the LDM (CompVis) numbering of a UNet needs: layers per level and which up levels have attention.
#[derive(Debug, Clone)]
struct UnetLayout {
    layers_per_block: usize,
    up_has_attention: Vec<bool>,
}

/// Resnet sub-layer renames diffusers → LDM.
const RESNET_TO_LDM: [(&str, &str); 4] = [
    ("conv1", "in_layers.2"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
];

impl UnetLayout {
    fn from_names(names: &[String]) -> Self {
        let layers_per_block = (0..)
            .take_while(|i| {
                let prefix = format!("down_blocks.0.resnets.{i}.");
                names.iter().any(|n| n.starts_with(&prefix))
            })
            .count();
        let up_levels = (0..)
            .take_while(|b| {
                let prefix = format!("up_blocks.{b}.");
                names.iter().any(|n| n.starts_with(&prefix))
            })
            .count();
        let up_has_attention = (0..up_levels)
            .map(|b| {
                let prefix = format!("up_blocks.{b}.attentions.");
                names.iter().any(|n| n.starts_with(&prefix))
            })
            .collect();
        UnetLayout {
            layers_per_block,
            up_has_attention,
        }
    }

    /// The LDM module path of a diffusers UNet layer (formats.md 3.2 table), e.g.
    /// `down_blocks.1.attentions.0.proj_in` → `input_blocks.4.1.proj_in`.
    fn ldm_name(&self, name: &str) -> Option<String> {
        let per_level = self.layers_per_block + 1;
        let fixed = match name {
            "conv_in" => Some("input_blocks.0.0"),
            "conv_out" => Some("out.2"),
            "time_embedding.linear_1" => Some("time_embed.0"),
            "time_embedding.linear_2" => Some("time_embed.2"),
            _ => None,
        };
        if let Some(fixed) = fixed {
            return Some(fixed.to_string());
        }
        let parts: Vec<&str> = name.splitn(5, '.').collect();
        let index = |i: usize| parts.get(i).and_then(|p| p.parse::<usize>().ok());
        let tail = |from: usize| parts[from..].join(".");
        match (parts.first().copied(), parts.get(1), parts.get(2).copied()) {
            (Some("mid_block"), _, _) => {
                let (kind, i) = (parts.get(1).copied()?, index(2)?);
                let rest = tail(3);
                match kind {
                    "attentions" => Some(format!("middle_block.1.{rest}")),
                    "resnets" => Some(format!("middle_block.{}.{}", 2 * i, resnet_sub(&rest)?)),
                    _ => None,
                }
            }
            (Some("down_blocks"), Some(_), Some(kind)) => {
                let (b, i) = (index(1)?, index(3)?);
                let rest = tail(4);
                let n = 1 + per_level * b + i;
                match kind {
                    "resnets" => Some(format!("input_blocks.{n}.0.{}", resnet_sub(&rest)?)),
                    "attentions" => Some(format!("input_blocks.{n}.1.{rest}")),
                    "downsamplers" if rest == "conv" => {
                        Some(format!("input_blocks.{}.0.op", per_level * (b + 1)))
                    }
                    _ => None,
                }
            }
            (Some("up_blocks"), Some(_), Some(kind)) => {
                let (b, i) = (index(1)?, index(3)?);
                let rest = tail(4);
                let n = per_level * b + i;
                match kind {
                    "resnets" => Some(format!("output_blocks.{n}.0.{}", resnet_sub(&rest)?)),
                    "attentions" => Some(format!("output_blocks.{n}.1.{rest}")),
                    "upsamplers" if rest == "conv" => {
                        let slot = if *self.up_has_attention.get(b)? { 2 } else { 1 };
                        Some(format!(
                            "output_blocks.{}.{slot}.conv",
                            per_level * b + per_level - 1
                        ))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn resnet_sub(rest: &str) -> Option<String> {
    RESNET_TO_LDM
        .iter()
        .find(|(diffusers, _)| *diffusers == rest)
        .map(|(_, ldm)| ldm.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::ldm_names::{unet_key, UnetLayout as LdmLayout};

    fn sd15_like_names() -> Vec<String> {
        let mut names = vec![
            "conv_in".to_string(),
            "time_embedding.linear_1".into(),
            "conv_out".into(),
        ];
        for b in 0..4 {
            for i in 0..2 {
                names.push(format!("down_blocks.{b}.resnets.{i}.conv1"));
                names.push(format!("down_blocks.{b}.resnets.{i}.conv_shortcut"));
                if b < 3 {
                    names.push(format!("down_blocks.{b}.attentions.{i}.proj_in"));
                    names.push(format!(
                        "down_blocks.{b}.attentions.{i}.transformer_blocks.0.attn1.to_out.0"
                    ));
                }
            }
            if b < 3 {
                names.push(format!("down_blocks.{b}.downsamplers.0.conv"));
            }
            for i in 0..3 {
                names.push(format!("up_blocks.{b}.resnets.{i}.time_emb_proj"));
                if b > 0 {
                    names.push(format!("up_blocks.{b}.attentions.{i}.proj_out"));
                }
            }
            if b < 3 {
                names.push(format!("up_blocks.{b}.upsamplers.0.conv"));
            }
        }
        names.push("mid_block.resnets.1.conv2".into());
        names.push("mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj".into());
        names
    }

    /// Our diffusers → LDM names must invert `weights::ldm_names::unet_key` (LDM → diffusers).
    #[test]
    fn ldm_names_round_trip_through_the_checkpoint_mapping() {
        let names = sd15_like_names();
        let layout = UnetLayout::from_names(&names);
        assert_eq!(layout.layers_per_block, 2);
        for name in &names {
            let ldm = layout.ldm_name(name).unwrap_or_else(|| panic!("{name}"));
            let back = unet_key(
                &format!("{ldm}.weight"),
                LdmLayout {
                    layers_per_block: 2,
                },
            );
            assert_eq!(back, Some(format!("{name}.weight")), "{name} -> {ldm}");
        }
    }

    #[test]
    fn kohya_diffusers_and_ldm_spellings_find_the_same_layer() {
        let names = sd15_like_names();
        let te = vec!["text_model.encoder.layers.0.self_attn.q_proj".to_string()];
        let table = LayerTable::build(&names, &te);
        let target = "down_blocks.1.attentions.0.proj_in";
        for spelling in [
            "lora_unet_down_blocks_1_attentions_0_proj_in",
            "lora_unet_input_blocks_4_1_proj_in",
            "unet.down_blocks.1.attentions.0.proj_in",
            "base_model.model.down_blocks.1.attentions.0.proj_in",
        ] {
            assert_eq!(
                table.lookup(spelling).map(|l| l.name.as_str()),
                Some(target),
                "{spelling}"
            );
        }
        let hit = table
            .lookup("lora_te_text_model_encoder_layers_0_self_attn_q_proj")
            .unwrap();
        assert_eq!(hit.part, Part::TextEncoder);
        assert!(table
            .lookup("text_encoder.encoder.layers.0.self_attn.q_proj")
            .is_some());
        assert!(table
            .lookup("lora_te1_text_model_encoder_layers_0_self_attn_q_proj")
            .is_none());
        assert_eq!(
            table
                .lookup("lora_unet_output_blocks_2_1_conv")
                .map(|l| l.name.as_str()),
            Some("up_blocks.0.upsamplers.0.conv")
        );
    }
}
