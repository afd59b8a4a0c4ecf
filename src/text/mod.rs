//! Prompt text → CLIP token chunks, exactly as AUTOMATIC1111 1.10 does it for SD1.5 (no model code here).
//!
//! Pipeline for one prompt, in A1111's order:
//! 1. [`prompt::extract_extra_networks`] removes `<lora:name:…>` tags (A1111 `extra_networks.parse_prompt`);
//! 2. for positive prompts, [`prompt::split_composable`] splits on `AND` (composable diffusion);
//! 3. [`chunks::tokenize_prompt`] rejects prompt editing / alternation, parses `(emphasis:1.2)` with
//!    [`prompt::parse_prompt_attention`], tokenizes each piece with [`tokenizer::ClipTokenizer`] and packs the
//!    tokens into 77-token [`chunks::PromptChunk`]s (A1111 `sd_hijack_clip.tokenize_line`).
//!
//! How the chunks are then encoded (emphasis, clip skip, concatenation) is documented on [`chunks::PromptChunk`].

pub mod chunks;
pub mod extra_networks;
pub mod prompt;
pub mod schedule;
pub mod tokenizer;

/// Errors of the text stage.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The embedded CLIP merges file could not be read.
    #[error("embedded CLIP vocabulary is corrupt: {reason}")]
    CorruptVocabulary { reason: String },
    /// The prompt uses A1111 syntax that loraeval does not implement.
    #[error("prompt uses A1111 {construct} `{fragment}`, which loraeval does not support; escape the brackets as \\[ \\] to use them literally")]
    Unsupported { construct: String, fragment: String },
    /// A weight such as `(word:1.2.3)` is not a number (A1111 fails on it as well).
    #[error("weight `{weight}` in the prompt is not a number")]
    InvalidWeight { weight: String },
    /// A `<lora:…>` tag has no name or a multiplier that is not a number.
    #[error("extra network tag `{tag}`: {reason}")]
    InvalidExtraNetworkTag { tag: String, reason: String },
}
