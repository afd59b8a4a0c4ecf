//! Original LDM/CompVis key names → diffusers names for the SD1.x UNet, VAE and CLIP text encoder.
//!
//! Mirrors diffusers' `scripts/convert_diffusers_to_original_stable_diffusion.py` (`unet_conversion_map*`,
//! `vae_conversion_map*`) and `loaders/single_file_utils.py` (`convert_ldm_unet_checkpoint`,
//! `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`), read in the LDM → diffusers direction; see
//! `formats.md` sections 1.4–1.6. Every function returns `None` for keys that are not model weights.

/// Prefix of UNet keys in a single-file checkpoint.
pub const LDM_UNET_PREFIX: &str = "model.diffusion_model.";
/// Prefix of VAE keys in a single-file checkpoint.
pub const LDM_VAE_PREFIX: &str = "first_stage_model.";
/// Prefix of CLIP text-encoder keys in a single-file checkpoint (then `text_model.` or, in old files, nothing).
pub const LDM_CLIP_PREFIX: &str = "cond_stage_model.transformer.";

/// Resnet sub-layer renames of the UNet (`update_unet_resnet_ldm_to_diffusers`).
const UNET_RESNET_RENAMES: [(&str, &str); 6] = [
    ("in_layers.0.", "norm1."),
    ("in_layers.2.", "conv1."),
    ("emb_layers.1.", "time_emb_proj."),
    ("out_layers.0.", "norm2."),
    ("out_layers.3.", "conv2."),
    ("skip_connection.", "conv_shortcut."),
];

/// VAE mid-block attention renames (`update_vae_attentions_ldm_to_diffusers`).
const VAE_ATTENTION_RENAMES: [(&str, &str); 5] = [
    ("norm.", "group_norm."),
    ("q.", "to_q."),
    ("k.", "to_k."),
    ("v.", "to_v."),
    ("proj_out.", "to_out.0."),
];

/// Block layout of an LDM UNet, needed to turn flat `input_blocks.N` indices into (level, layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnetLayout {
    pub layers_per_block: usize,
}

/// Splits `"12.rest"` into `(12, "rest")`.
fn split_index(s: &str) -> Option<(usize, &str)> {
    let (index, rest) = s.split_once('.')?;
    Some((index.parse().ok()?, rest))
}

/// Renames the sub-layer part of a UNet resnet key.
fn unet_resnet(rest: &str) -> Option<String> {
    UNET_RESNET_RENAMES.iter().find_map(|(ldm, diffusers)| {
        rest.strip_prefix(ldm)
            .map(|tail| format!("{diffusers}{tail}"))
    })
}

/// Maps a UNet key with `model.diffusion_model.` already stripped.
pub fn unet_key(key: &str, layout: UnetLayout) -> Option<String> {
    let per_level = layout.layers_per_block + 1;
    if let Some(tail) = key.strip_prefix("time_embed.0.") {
        return Some(format!("time_embedding.linear_1.{tail}"));
    }
    if let Some(tail) = key.strip_prefix("time_embed.2.") {
        return Some(format!("time_embedding.linear_2.{tail}"));
    }
    if let Some(tail) = key.strip_prefix("out.0.") {
        return Some(format!("conv_norm_out.{tail}"));
    }
    if let Some(tail) = key.strip_prefix("out.2.") {
        return Some(format!("conv_out.{tail}"));
    }
    if let Some(rest) = key.strip_prefix("input_blocks.") {
        return unet_input_block(rest, per_level);
    }
    if let Some(rest) = key.strip_prefix("middle_block.") {
        return unet_middle_block(rest);
    }
    if let Some(rest) = key.strip_prefix("output_blocks.") {
        return unet_output_block(rest, per_level);
    }
    None
}

/// `input_blocks.N.M.rest`: N = 0 is conv_in; otherwise level (N-1)/per_level, layer (N-1)%per_level.
fn unet_input_block(rest: &str, per_level: usize) -> Option<String> {
    let (n, rest) = split_index(rest)?;
    let (m, rest) = split_index(rest)?;
    if n == 0 {
        return (m == 0).then(|| format!("conv_in.{rest}"));
    }
    let (level, layer) = ((n - 1) / per_level, (n - 1) % per_level);
    if layer == per_level - 1 {
        let tail = rest.strip_prefix("op.")?;
        return (m == 0).then(|| format!("down_blocks.{level}.downsamplers.0.conv.{tail}"));
    }
    match m {
        0 => Some(format!(
            "down_blocks.{level}.resnets.{layer}.{}",
            unet_resnet(rest)?
        )),
        1 => Some(format!("down_blocks.{level}.attentions.{layer}.{rest}")),
        _ => None,
    }
}

/// `middle_block.{0,1,2}` = resnet, attention, resnet.
fn unet_middle_block(rest: &str) -> Option<String> {
    let (m, rest) = split_index(rest)?;
    match m {
        0 => Some(format!("mid_block.resnets.0.{}", unet_resnet(rest)?)),
        1 => Some(format!("mid_block.attentions.0.{rest}")),
        2 => Some(format!("mid_block.resnets.1.{}", unet_resnet(rest)?)),
        _ => None,
    }
}

/// `output_blocks.N.M.rest`: level N/per_level, layer N%per_level; `.1.conv` or `.2.conv` is the upsampler.
fn unet_output_block(rest: &str, per_level: usize) -> Option<String> {
    let (n, rest) = split_index(rest)?;
    let (m, rest) = split_index(rest)?;
    let (level, layer) = (n / per_level, n % per_level);
    if let Some(tail) = rest.strip_prefix("conv.") {
        if m >= 1 {
            return Some(format!("up_blocks.{level}.upsamplers.0.conv.{tail}"));
        }
    }
    match m {
        0 => Some(format!(
            "up_blocks.{level}.resnets.{layer}.{}",
            unet_resnet(rest)?
        )),
        1 => Some(format!("up_blocks.{level}.attentions.{layer}.{rest}")),
        _ => None,
    }
}

/// Renames the sub-layer part of a VAE resnet key (only `nin_shortcut` differs).
fn vae_resnet(rest: &str) -> String {
    match rest.strip_prefix("nin_shortcut.") {
        Some(tail) => format!("conv_shortcut.{tail}"),
        None => rest.to_string(),
    }
}

/// A mapped VAE key; `squeeze_1x1` marks LDM 1×1-conv attention weights that diffusers stores as Linear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaeName {
    pub name: String,
    pub squeeze_1x1: bool,
}

/// Maps a VAE key with `first_stage_model.` already stripped; `levels` = number of `encoder.down.N` levels.
pub fn vae_key(key: &str, levels: usize) -> Option<VaeName> {
    let plain = |name: String| {
        Some(VaeName {
            name,
            squeeze_1x1: false,
        })
    };
    if key.starts_with("quant_conv.") || key.starts_with("post_quant_conv.") {
        return plain(key.to_string());
    }
    let (coder, rest) = key.split_once('.')?;
    if coder != "encoder" && coder != "decoder" {
        return None;
    }
    if rest.starts_with("conv_in.") || rest.starts_with("conv_out.") {
        return plain(key.to_string());
    }
    if let Some(tail) = rest.strip_prefix("norm_out.") {
        return plain(format!("{coder}.conv_norm_out.{tail}"));
    }
    if let Some(mid) = rest.strip_prefix("mid.") {
        return vae_mid(coder, mid);
    }
    if let Some(down) = rest.strip_prefix("down.") {
        return (coder == "encoder")
            .then(|| vae_down(down))
            .flatten()
            .and_then(plain);
    }
    if let Some(up) = rest.strip_prefix("up.") {
        return (coder == "decoder")
            .then(|| vae_up(up, levels))
            .flatten()
            .and_then(plain);
    }
    None
}

/// `mid.block_1|block_2|attn_1`.
fn vae_mid(coder: &str, mid: &str) -> Option<VaeName> {
    if let Some(tail) = mid.strip_prefix("block_1.") {
        return Some(VaeName {
            name: format!("{coder}.mid_block.resnets.0.{}", vae_resnet(tail)),
            squeeze_1x1: false,
        });
    }
    if let Some(tail) = mid.strip_prefix("block_2.") {
        return Some(VaeName {
            name: format!("{coder}.mid_block.resnets.1.{}", vae_resnet(tail)),
            squeeze_1x1: false,
        });
    }
    let attn = mid.strip_prefix("attn_1.")?;
    let (ldm, diffusers) = VAE_ATTENTION_RENAMES
        .iter()
        .find(|(ldm, _)| attn.starts_with(ldm))?;
    let tail = &attn[ldm.len()..];
    Some(VaeName {
        name: format!("{coder}.mid_block.attentions.0.{diffusers}{tail}"),
        squeeze_1x1: *ldm != "norm." && tail == "weight",
    })
}

/// `encoder.down.I.block.J.rest` / `encoder.down.I.downsample.conv.rest`.
fn vae_down(down: &str) -> Option<String> {
    let (level, rest) = split_index(down)?;
    if let Some(block) = rest.strip_prefix("block.") {
        let (j, tail) = split_index(block)?;
        return Some(format!(
            "encoder.down_blocks.{level}.resnets.{j}.{}",
            vae_resnet(tail)
        ));
    }
    let tail = rest.strip_prefix("downsample.conv.")?;
    Some(format!(
        "encoder.down_blocks.{level}.downsamplers.0.conv.{tail}"
    ))
}

/// `decoder.up.K.…`: LDM numbers decoder levels from the output side, diffusers from the latent side.
fn vae_up(up: &str, levels: usize) -> Option<String> {
    let (k, rest) = split_index(up)?;
    let level = levels.checked_sub(1)?.checked_sub(k)?;
    if let Some(block) = rest.strip_prefix("block.") {
        let (j, tail) = split_index(block)?;
        return Some(format!(
            "decoder.up_blocks.{level}.resnets.{j}.{}",
            vae_resnet(tail)
        ));
    }
    let tail = rest.strip_prefix("upsample.conv.")?;
    Some(format!(
        "decoder.up_blocks.{level}.upsamplers.0.conv.{tail}"
    ))
}

/// Maps a CLIP key with `cond_stage_model.transformer.` already stripped, or a diffusers `text_encoder/` key: adds
/// `text_model.` where missing (old LDM files, transformers ≥ 5 `save_pretrained`) and drops `position_ids`.
pub fn clip_key(key: &str) -> Option<String> {
    let name = if key.starts_with("text_model.") {
        key.to_string()
    } else {
        format!("text_model.{key}")
    };
    (!name.ends_with("position_ids")).then_some(name)
}

/// Legacy diffusers VAE attention names (`query`, `key`, `value`, `proj_attn`) → current ones.
pub fn legacy_diffusers_vae_key(key: &str) -> String {
    const LEGACY: [(&str, &str); 4] = [
        (".attentions.0.query.", ".attentions.0.to_q."),
        (".attentions.0.key.", ".attentions.0.to_k."),
        (".attentions.0.value.", ".attentions.0.to_v."),
        (".attentions.0.proj_attn.", ".attentions.0.to_out.0."),
    ];
    LEGACY
        .iter()
        .find(|(old, _)| key.contains(old))
        .map(|(old, new)| key.replacen(old, new, 1))
        .unwrap_or_else(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SD15: UnetLayout = UnetLayout {
        layers_per_block: 2,
    };

    #[test]
    fn unet_blocks_follow_the_sd15_table() {
        let cases = [
            ("time_embed.0.weight", "time_embedding.linear_1.weight"),
            ("input_blocks.0.0.bias", "conv_in.bias"),
            (
                "input_blocks.1.0.in_layers.0.weight",
                "down_blocks.0.resnets.0.norm1.weight",
            ),
            (
                "input_blocks.2.1.proj_in.weight",
                "down_blocks.0.attentions.1.proj_in.weight",
            ),
            (
                "input_blocks.3.0.op.weight",
                "down_blocks.0.downsamplers.0.conv.weight",
            ),
            (
                "input_blocks.4.0.skip_connection.bias",
                "down_blocks.1.resnets.0.conv_shortcut.bias",
            ),
            (
                "input_blocks.11.0.out_layers.3.weight",
                "down_blocks.3.resnets.1.conv2.weight",
            ),
            (
                "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
                "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
            ),
            (
                "middle_block.2.emb_layers.1.bias",
                "mid_block.resnets.1.time_emb_proj.bias",
            ),
            (
                "output_blocks.2.1.conv.weight",
                "up_blocks.0.upsamplers.0.conv.weight",
            ),
            (
                "output_blocks.5.2.conv.bias",
                "up_blocks.1.upsamplers.0.conv.bias",
            ),
            (
                "output_blocks.5.1.norm.weight",
                "up_blocks.1.attentions.2.norm.weight",
            ),
            (
                "output_blocks.9.0.in_layers.2.weight",
                "up_blocks.3.resnets.0.conv1.weight",
            ),
            ("out.2.weight", "conv_out.weight"),
        ];
        for (ldm, diffusers) in cases {
            assert_eq!(unet_key(ldm, SD15).as_deref(), Some(diffusers), "{ldm}");
        }
        assert_eq!(unet_key("label_emb.0.0.weight", SD15), None);
    }

    #[test]
    fn vae_decoder_levels_are_reversed_and_attention_is_squeezed() {
        let up = vae_key("decoder.up.3.block.2.nin_shortcut.weight", 4).unwrap();
        assert_eq!(
            up.name,
            "decoder.up_blocks.0.resnets.2.conv_shortcut.weight"
        );
        let q = vae_key("encoder.mid.attn_1.q.weight", 4).unwrap();
        assert_eq!(q.name, "encoder.mid_block.attentions.0.to_q.weight");
        assert!(q.squeeze_1x1);
        let bias = vae_key("decoder.mid.attn_1.proj_out.bias", 4).unwrap();
        assert_eq!(bias.name, "decoder.mid_block.attentions.0.to_out.0.bias");
        assert!(!bias.squeeze_1x1);
        let norm = vae_key("decoder.mid.attn_1.norm.weight", 4).unwrap();
        assert_eq!(
            norm.name,
            "decoder.mid_block.attentions.0.group_norm.weight"
        );
        assert!(!norm.squeeze_1x1);
        assert_eq!(vae_key("loss.logvar", 4), None);
        assert_eq!(vae_key("decoder.up.4.block.0.conv1.weight", 4), None);
    }

    #[test]
    fn clip_keys_gain_text_model_and_drop_position_ids() {
        assert_eq!(
            clip_key("embeddings.token_embedding.weight").as_deref(),
            Some("text_model.embeddings.token_embedding.weight")
        );
        assert_eq!(
            clip_key("text_model.final_layer_norm.bias").as_deref(),
            Some("text_model.final_layer_norm.bias")
        );
        assert_eq!(clip_key("text_model.embeddings.position_ids"), None);
    }
}
