//! Tensor keys of adapter files → (module name, role of the tensor).
//!
//! Spellings accepted (formats.md 3.1–3.5; ComfyUI `comfy/weight_adapter/lora.py` `LoRAAdapter.load` lists the same
//! LoRA set): kohya `X.lora_down.weight` / `X.lora_up.weight` / `X.lora_mid.weight` / `X.alpha`; PEFT
//! `X.lora_A.weight` / `X.lora_B.weight` (also `.default.weight`), `X.lora_magnitude_vector`; diffusers
//! `X.lora.down.weight`, `X.lora_linear_layer.down.weight`, attention-processor `…attn1.processor.to_q_lora.down.weight`
//! (module `…attn1.to_q`; `to_out_lora` is `to_out.0`); LyCORIS `X.hada_w1_a` … `X.hada_t2`, `X.lokr_w1` …
//! `X.lokr_t2`, `X.dora_scale`; A1111's explicit `X.scale`.

/// What one tensor of a module is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Down,
    Up,
    Mid,
    Alpha,
    Scale,
    DoraScale,
    /// PEFT DoRA magnitude (per output feature).
    Magnitude,
    HadaW1A,
    HadaW1B,
    HadaW2A,
    HadaW2B,
    HadaT1,
    HadaT2,
    LokrW1,
    LokrW1A,
    LokrW1B,
    LokrW2,
    LokrW2A,
    LokrW2B,
    LokrT2,
}

/// Suffixes after the module name (`.`-separated spellings), checked in order.
const DOTTED_SUFFIXES: [(&str, Role); 30] = [
    (".lora_down.weight", Role::Down),
    (".lora_up.weight", Role::Up),
    (".lora_mid.weight", Role::Mid),
    (".lora_A.default.weight", Role::Down),
    (".lora_B.default.weight", Role::Up),
    (".lora_A.weight", Role::Down),
    (".lora_B.weight", Role::Up),
    (".lora_linear_layer.down.weight", Role::Down),
    (".lora_linear_layer.up.weight", Role::Up),
    (".lora.down.weight", Role::Down),
    (".lora.up.weight", Role::Up),
    (".lora_magnitude_vector.default.weight", Role::Magnitude),
    (".lora_magnitude_vector.weight", Role::Magnitude),
    (".lora_magnitude_vector", Role::Magnitude),
    (".alpha", Role::Alpha),
    (".scale", Role::Scale),
    (".dora_scale", Role::DoraScale),
    (".hada_w1_a", Role::HadaW1A),
    (".hada_w1_b", Role::HadaW1B),
    (".hada_w2_a", Role::HadaW2A),
    (".hada_w2_b", Role::HadaW2B),
    (".hada_t1", Role::HadaT1),
    (".hada_t2", Role::HadaT2),
    (".lokr_w1_a", Role::LokrW1A),
    (".lokr_w1_b", Role::LokrW1B),
    (".lokr_w1", Role::LokrW1),
    (".lokr_w2_a", Role::LokrW2A),
    (".lokr_w2_b", Role::LokrW2B),
    (".lokr_w2", Role::LokrW2),
    (".lokr_t2", Role::LokrT2),
];

/// Attention-processor spellings: `…attn1.processor.to_q_lora.down.weight`.
const PROCESSOR_SUFFIXES: [(&str, Role); 2] = [
    ("_lora.down.weight", Role::Down),
    ("_lora.up.weight", Role::Up),
];

/// Splits a tensor key into its module name and role; `None` when the key is not an adapter tensor this crate
/// knows (IA3, OFT, GLoRA, `diff`, norm, bundled embeddings, …).
pub fn split_key(key: &str) -> Option<(String, Role)> {
    for (suffix, role) in DOTTED_SUFFIXES {
        if let Some(module) = key.strip_suffix(suffix) {
            return (!module.is_empty()).then(|| (module.to_string(), role));
        }
    }
    for (suffix, role) in PROCESSOR_SUFFIXES {
        if let Some(module) = key.strip_suffix(suffix) {
            return Some((processor_module(module), role));
        }
    }
    None
}

/// `a.attn1.processor.to_q` → `a.attn1.to_q`; `to_out` → `to_out.0`.
fn processor_module(module: &str) -> String {
    let module = module.replace(".processor.", ".");
    match module.strip_suffix(".to_out") {
        Some(head) => format!("{head}.to_out.0"),
        None => module,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_every_spelling() {
        let cases = [
            (
                "lora_unet_a_b.lora_down.weight",
                "lora_unet_a_b",
                Role::Down,
            ),
            ("lora_te_x.alpha", "lora_te_x", Role::Alpha),
            ("unet.a.to_q.lora_A.weight", "unet.a.to_q", Role::Down),
            ("unet.a.to_q.lora_B.default.weight", "unet.a.to_q", Role::Up),
            ("unet.a.to_q.lora.up.weight", "unet.a.to_q", Role::Up),
            (
                "unet.b.attn1.processor.to_out_lora.down.weight",
                "unet.b.attn1.to_out.0",
                Role::Down,
            ),
            (
                "text_encoder.t.q_proj.lora_linear_layer.down.weight",
                "text_encoder.t.q_proj",
                Role::Down,
            ),
            ("lora_unet_c.hada_w2_b", "lora_unet_c", Role::HadaW2B),
            ("lora_unet_c.lokr_w1", "lora_unet_c", Role::LokrW1),
            ("lora_unet_c.lokr_w1_a", "lora_unet_c", Role::LokrW1A),
            ("lora_unet_c.dora_scale", "lora_unet_c", Role::DoraScale),
        ];
        for (key, module, role) in cases {
            assert_eq!(split_key(key), Some((module.to_string(), role)), "{key}");
        }
        assert_eq!(split_key("lora_unet_c.oft_blocks"), None);
        assert_eq!(split_key("bundle_emb.x.string_to_param.*"), None);
    }
}
