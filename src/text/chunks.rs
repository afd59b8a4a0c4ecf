//! 77-token prompt chunks with per-token emphasis multipliers: A1111 `sd_hijack_clip.tokenize_line`.
//!
//! A prompt's tokens are packed 75 to a chunk; when a chunk fills up and a `,` lies within the last
//! 20 tokens (`opts.comma_padding_backtrack`), the tokens after that comma move to the next chunk.
//! `BREAK` closes the current chunk. Each chunk is `[BOS] + 75 tokens padded with EOS + [EOS]`.

use super::prompt::{is_break, parse_prompt_attention, reject_prompt_editing};
use super::tokenizer::{ClipTokenizer, BOS, EOS};
use super::TextError;

/// Tokens per chunk including BOS and EOS.
pub const CHUNK_TOKENS: usize = 77;
/// Prompt tokens per chunk (A1111 `chunk_length`).
pub const CHUNK_LENGTH: usize = 75;
/// A1111 default of `opts.comma_padding_backtrack`.
pub const COMMA_PADDING_BACKTRACK: usize = 20;
/// Id of `,</w>`, the token A1111 backtracks to (`vocab[',</w>']`).
pub const COMMA: u32 = 267;

/// One CLIP input window of a prompt and the emphasis weight of each position.
///
/// How the caller encodes a prompt (A1111 `FrozenCLIPEmbedderWithCustomWords.forward` / `process_tokens`,
/// emphasis mode "Original", SD1.5):
/// * Every chunk is encoded **on its own** by the CLIP text model: `tokens` → `(1, 77, 768)`.
/// * Clip skip (`CLIP_stop_at_last_layers = N`): N = 1 uses `last_hidden_state` (already through
///   `final_layer_norm`); N > 1 takes `hidden_states[-N]` (13 entries: embeddings + 12 layers, so N = 2 is
///   the output of layer 11) **and then applies `final_layer_norm`**.
/// * Emphasis, per chunk: `original_mean = z.mean()` (over all elements), `z *= multipliers[.., None]`
///   (each token's 768 values times its multiplier), then `z *= original_mean / z.mean()`.
///   Skip both steps when every multiplier is 1.0 only if bit-exactness does not matter: A1111 always runs them.
/// * The chunk outputs are concatenated along the token axis: `(1, 77·k, 768)`. When cond and uncond have
///   different chunk counts, A1111 pads the shorter with empty-prompt chunks only if `pad_cond_uncond` is set,
///   otherwise it runs them separately; an empty prompt is one chunk `[BOS] + [EOS]×76`.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptChunk {
    /// `[BOS, 75 prompt tokens padded with EOS, EOS]`.
    pub tokens: [u32; CHUNK_TOKENS],
    /// Emphasis weight per position; 1.0 at BOS, EOS and padding.
    pub multipliers: [f32; CHUNK_TOKENS],
}

/// Chunks of one prompt (tags already removed by `extract_extra_networks`): rejects prompt editing and
/// alternation, parses emphasis, tokenizes every piece and packs the tokens like A1111.
pub fn tokenize_prompt(
    tokenizer: &ClipTokenizer,
    prompt: &str,
) -> Result<Vec<PromptChunk>, TextError> {
    reject_prompt_editing(prompt)?;
    let parsed = parse_prompt_attention(prompt)?;
    Ok(tokenize_line(tokenizer, &parsed))
}

/// A1111 `tokenize_line` on already parsed `(text, weight)` pieces (see [`parse_prompt_attention`]).
pub fn tokenize_line(tokenizer: &ClipTokenizer, parsed: &[(String, f64)]) -> Vec<PromptChunk> {
    let mut builder = ChunkBuilder::default();
    for piece in parsed {
        if is_break(piece) {
            builder.next_chunk();
            continue;
        }
        for token in tokenizer.encode(&piece.0) {
            builder.push(token, piece.1);
        }
    }
    builder.finish()
}

#[derive(Default)]
struct ChunkBuilder {
    chunks: Vec<PromptChunk>,
    tokens: Vec<u32>,
    multipliers: Vec<f64>,
    last_comma: Option<usize>,
}

impl ChunkBuilder {
    fn push(&mut self, token: u32, weight: f64) {
        if token == COMMA {
            self.last_comma = Some(self.tokens.len());
        } else if let Some(comma) = self.backtrack_point() {
            self.move_tail_after(comma);
        }
        if self.tokens.len() == CHUNK_LENGTH {
            self.next_chunk();
        }
        self.tokens.push(token);
        self.multipliers.push(weight);
    }

    /// The comma to break after when the chunk is full and a comma lies within the backtrack window.
    fn backtrack_point(&self) -> Option<usize> {
        let comma = self.last_comma?;
        let full = self.tokens.len() == CHUNK_LENGTH;
        (full && self.tokens.len() - comma <= COMMA_PADDING_BACKTRACK).then_some(comma)
    }

    fn move_tail_after(&mut self, comma: usize) {
        let tail_tokens = self.tokens.split_off(comma + 1);
        let tail_multipliers = self.multipliers.split_off(comma + 1);
        self.next_chunk();
        self.tokens = tail_tokens;
        self.multipliers = tail_multipliers;
    }

    fn next_chunk(&mut self) {
        let mut chunk = PromptChunk {
            tokens: [EOS; CHUNK_TOKENS],
            multipliers: [1.0; CHUNK_TOKENS],
        };
        chunk.tokens[0] = BOS;
        for (i, (&token, &weight)) in self.tokens.iter().zip(&self.multipliers).enumerate() {
            chunk.tokens[i + 1] = token;
            chunk.multipliers[i + 1] = weight as f32;
        }
        self.chunks.push(chunk);
        self.tokens.clear();
        self.multipliers.clear();
        self.last_comma = None;
    }

    fn finish(mut self) -> Vec<PromptChunk> {
        if !self.tokens.is_empty() || self.chunks.is_empty() {
            self.next_chunk();
        }
        self.chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(prompt: &str) -> Vec<PromptChunk> {
        tokenize_prompt(ClipTokenizer::shared().expect("tokenizer"), prompt).expect("valid prompt")
    }

    #[test]
    fn empty_prompt_is_one_padded_chunk() {
        let c = chunks("");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].tokens[0], BOS);
        assert!(c[0].tokens[1..].iter().all(|&t| t == EOS));
        assert!(c[0].multipliers.iter().all(|&m| m == 1.0));
    }

    #[test]
    fn comma_constant_is_the_vocab_entry() {
        assert_eq!(
            ClipTokenizer::shared()
                .expect("tokenizer")
                .token_id(",</w>"),
            Some(COMMA)
        );
    }

    #[test]
    fn emphasis_reaches_the_multipliers() {
        let c = chunks("a (cat:1.5)");
        assert_eq!(&c[0].tokens[..4], &[BOS, 320, 2368, EOS]);
        assert_eq!(&c[0].multipliers[..4], &[1.0, 1.0, 1.5, 1.0]);
    }

    #[test]
    fn long_prompt_backtracks_to_the_last_comma() {
        // 70 × "word", a comma, then 10 more words: the chunk is full at token 75 and the comma
        // (position 70) is within 20 tokens, so the 4 words after it move to the next chunk.
        let prompt = format!("{}, {}", ["word"; 70].join(" "), ["more"; 10].join(" "));
        let c = chunks(&prompt);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].tokens[71], COMMA);
        assert!(c[0].tokens[72..].iter().all(|&t| t == EOS));
        assert!(c[1].tokens[1..11].iter().all(|&t| t != EOS) && c[1].tokens[11] == EOS);
    }

    #[test]
    fn break_starts_a_new_chunk() {
        assert_eq!(chunks("a BREAK b").len(), 2);
        assert_eq!(chunks("BREAK").len(), 1);
    }

    #[test]
    fn prompt_editing_is_rejected() {
        let err =
            tokenize_prompt(ClipTokenizer::shared().expect("tokenizer"), "[a:b:3]").unwrap_err();
        assert!(matches!(err, TextError::Unsupported { .. }), "{err}");
    }
}
