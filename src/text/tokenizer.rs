//! The SD1.5 CLIP BPE tokenizer (openai/clip-vit-large-patch14), matching transformers 5.24 `CLIPTokenizer`.
//!
//! Vocabulary: built from OpenAI's embedded `bpe_simple_vocab_16e6.txt.gz` like `simple_tokenizer.py` does
//! (256 byte symbols, the same with `</w>`, one entry per merge, then `<|startoftext|>`, `<|endoftext|>`).
//! Encoding follows the `tokenizers`-backed `CLIPTokenizer` (the only one in transformers 5.x):
//! 1. the special strings `<|startoftext|>` / `<|endoftext|>` written verbatim become their ids;
//! 2. every other stretch is normalised: Unicode NFC, each `\s+` run → one space, lowercase (per char);
//! 3. pre-tokenised with CLIP's regex, each piece turned into byte symbols and merged by BPE.
//!
//! Unlike the old python tokenizer with ftfy (what A1111 ran), no ftfy / HTML unescaping is done; plain
//! prompts give the same ids either way.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use unicode_normalization_alignments::UnicodeNormalization;

use super::TextError;

/// `<|startoftext|>`, put first in every chunk.
pub const BOS: u32 = 49406;
/// `<|endoftext|>`, closes every chunk and pads it (SD1.x pads with EOS).
pub const EOS: u32 = 49407;
/// Number of tokens: 256 + 256 + 48894 merges + 2 special tokens.
pub const VOCAB_SIZE: usize = 49408;

const MERGES_GZ: &[u8] = include_bytes!("../../assets/clip/bpe_simple_vocab_16e6.txt.gz");
const MERGE_COUNT: usize = 49152 - 256 - 2;
const END_OF_WORD: &str = "</w>";
const SPECIAL_TOKENS: [(&str, u32); 2] = [("<|startoftext|>", BOS), ("<|endoftext|>", EOS)];
const PRETOKENIZE_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
const CACHE_LIMIT: usize = 100_000;

/// (left id, right id) → (merge rank, merged id).
type MergeTable = HashMap<(u32, u32), (u32, u32)>;

/// CLIP byte-level BPE tokenizer. Cheap to share (`&ClipTokenizer` is `Sync`); see [`ClipTokenizer::shared`].
pub struct ClipTokenizer {
    encoder: HashMap<String, u32>,
    decoder: Vec<String>,
    merges: MergeTable,
    byte_chars: [char; 256],
    pretokenize: Regex,
    whitespace: Regex,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.decoder.len())
            .finish()
    }
}

impl ClipTokenizer {
    /// Builds the tokenizer from the embedded OpenAI merges file (about 0.1 s; prefer [`Self::shared`]).
    pub fn embedded() -> Result<Self, TextError> {
        Self::from_merges_gz(MERGES_GZ)
    }

    /// The embedded tokenizer, built once per process.
    pub fn shared() -> Result<&'static Self, TextError> {
        static SHARED: OnceLock<Result<ClipTokenizer, String>> = OnceLock::new();
        let built = SHARED.get_or_init(|| Self::embedded().map_err(|e| e.to_string()));
        built
            .as_ref()
            .map_err(|reason| TextError::CorruptVocabulary {
                reason: reason.clone(),
            })
    }

    /// Builds the tokenizer from a gzip-compressed `bpe_simple_vocab_16e6.txt`.
    pub fn from_merges_gz(gz: &[u8]) -> Result<Self, TextError> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut text)
            .map_err(|e| corrupt(format!("cannot decompress merges: {e}")))?;
        let merge_lines: Vec<&str> = text.split('\n').skip(1).take(MERGE_COUNT).collect();
        if merge_lines.len() != MERGE_COUNT {
            return Err(corrupt(format!(
                "{} merge lines, expected {MERGE_COUNT}",
                merge_lines.len()
            )));
        }
        Self::from_merge_lines(&merge_lines)
    }

    fn from_merge_lines(merge_lines: &[&str]) -> Result<Self, TextError> {
        let byte_chars = bytes_to_unicode();
        let pairs = merge_lines
            .iter()
            .map(|line| split_merge(line))
            .collect::<Result<Vec<_>, _>>()?;
        let decoder = build_vocab(&byte_chars, &pairs);
        let encoder: HashMap<String, u32> = decoder
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        if encoder.len() != VOCAB_SIZE {
            return Err(corrupt(format!(
                "{} distinct tokens, expected {VOCAB_SIZE}",
                encoder.len()
            )));
        }
        let merges = build_merge_table(&encoder, &pairs)?;
        Ok(Self {
            encoder,
            decoder,
            merges,
            byte_chars,
            pretokenize: Regex::new(PRETOKENIZE_PATTERN).map_err(|e| corrupt(e.to_string()))?,
            whitespace: Regex::new(r"\s+").map_err(|e| corrupt(e.to_string()))?,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Token ids of `text`, without BOS/EOS (like `tokenizer(text, add_special_tokens=False)`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for (segment, special) in split_special_tokens(text) {
            match special {
                Some(id) => ids.push(id),
                None => self.encode_plain(segment, &mut ids),
            }
        }
        ids
    }

    /// The vocabulary string of a token id (byte-level symbols, `</w>` marks a word end).
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.decoder.get(id as usize).map(String::as_str)
    }

    /// The id of a vocabulary string such as `",</w>"`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.encoder.get(token).copied()
    }

    /// Readable text of token ids (debug aid; `</w>` becomes a space, special tokens are kept).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for token in ids.iter().filter_map(|&id| self.token_str(id)) {
            if SPECIAL_TOKENS.iter().any(|(s, _)| *s == token) {
                bytes.extend_from_slice(token.as_bytes());
                continue;
            }
            let (body, word_end) = token
                .strip_suffix(END_OF_WORD)
                .map_or((token, false), |b| (b, true));
            bytes.extend(
                body.chars()
                    .filter_map(|c| self.byte_chars.iter().position(|&b| b == c))
                    .map(|b| b as u8),
            );
            if word_end {
                bytes.push(b' ');
            }
        }
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) {
        let normalized = self.normalize(text);
        for piece in self.pretokenize.find_iter(&normalized) {
            for word in byte_level_words(piece.as_str()) {
                ids.extend(self.bpe_cached(word));
            }
        }
    }

    /// NFC, `\s+` → `" "`, lowercase: the normalizer sequence of `CLIPTokenizer`.
    fn normalize(&self, text: &str) -> String {
        let nfc: String = text.nfc().map(|(c, _)| c).collect();
        let spaced = self.whitespace.replace_all(&nfc, " ");
        spaced.chars().flat_map(char::to_lowercase).collect()
    }

    fn bpe_cached(&self, word: &str) -> Vec<u32> {
        if let Some(hit) = self
            .cache
            .lock()
            .ok()
            .and_then(|cache| cache.get(word).cloned())
        {
            return hit;
        }
        let ids = self.bpe(word);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(word.to_string(), ids.clone());
        }
        ids
    }

    /// Byte symbols of `word` (the last one with `</w>`), merged lowest rank first until no merge applies.
    fn bpe(&self, word: &str) -> Vec<u32> {
        let mut symbols = self.byte_symbols(word);
        while let Some((rank, left, right, merged)) = self.best_pair(&symbols) {
            tracing::trace!(rank, "bpe merge");
            symbols = merge_pair(&symbols, left, right, merged);
        }
        symbols
    }

    fn byte_symbols(&self, word: &str) -> Vec<u32> {
        let bytes = word.as_bytes();
        let mut symbols: Vec<u32> = Vec::with_capacity(bytes.len());
        for (i, &b) in bytes.iter().enumerate() {
            let mut symbol = self.byte_chars[b as usize].to_string();
            if i + 1 == bytes.len() {
                symbol.push_str(END_OF_WORD);
            }
            symbols.extend(self.encoder.get(&symbol).copied());
        }
        symbols
    }

    fn best_pair(&self, symbols: &[u32]) -> Option<(u32, u32, u32, u32)> {
        symbols
            .windows(2)
            .filter_map(|w| {
                self.merges
                    .get(&(w[0], w[1]))
                    .map(|&(rank, merged)| (rank, w[0], w[1], merged))
            })
            .min_by_key(|&(rank, ..)| rank)
    }
}

fn corrupt(reason: String) -> TextError {
    TextError::CorruptVocabulary { reason }
}

fn split_merge(line: &str) -> Result<(String, String), TextError> {
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
        _ => Err(corrupt(format!("bad merge line `{line}`"))),
    }
}

/// GPT-2's reversible byte → printable char table (`bytes_to_unicode` of CLIP / GPT-2), in vocabulary order.
fn bytes_to_unicode() -> [char; 256] {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut table = ['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        let code = if printable(b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        table[b as usize] = char::from_u32(code).unwrap_or('\0');
    }
    table
}

/// Vocabulary strings in id order (simple_tokenizer.py: byte chars sorted as `bytes_to_unicode().values()`).
fn build_vocab(byte_chars: &[char; 256], merges: &[(String, String)]) -> Vec<String> {
    let mut order: Vec<u8> = (0..=255u8)
        .filter(|&b| byte_chars[b as usize] as u32 == b as u32)
        .collect();
    order.extend((0..=255u8).filter(|&b| byte_chars[b as usize] as u32 != b as u32));
    let singles: Vec<String> = order
        .iter()
        .map(|&b| byte_chars[b as usize].to_string())
        .collect();
    let mut vocab = singles.clone();
    vocab.extend(singles.iter().map(|s| format!("{s}{END_OF_WORD}")));
    vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
    vocab.extend(SPECIAL_TOKENS.iter().map(|(s, _)| s.to_string()));
    vocab
}

fn build_merge_table(
    encoder: &HashMap<String, u32>,
    pairs: &[(String, String)],
) -> Result<MergeTable, TextError> {
    let id = |s: &str| {
        encoder
            .get(s)
            .copied()
            .ok_or_else(|| corrupt(format!("merge symbol `{s}` not in vocabulary")))
    };
    let mut table = HashMap::with_capacity(pairs.len());
    for (rank, (a, b)) in pairs.iter().enumerate() {
        table.insert((id(a)?, id(b)?), (rank as u32, id(&format!("{a}{b}"))?));
    }
    Ok(table)
}

/// Splits raw text around verbatim special tokens (HF "added tokens", matched before normalisation).
fn split_special_tokens(text: &str) -> Vec<(&str, Option<u32>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((pos, token, id)) = next_special(rest) {
        out.push((&rest[..pos], None));
        out.push((token, Some(id)));
        rest = &rest[pos + token.len()..];
    }
    out.push((rest, None));
    out.retain(|(segment, special)| special.is_some() || !segment.is_empty());
    out
}

fn next_special(text: &str) -> Option<(usize, &'static str, u32)> {
    SPECIAL_TOKENS
        .iter()
        .filter_map(|&(token, id)| text.find(token).map(|pos| (pos, token, id)))
        .min_by_key(|t| t.0)
}

/// The words the BPE model sees for one pre-tokenizer piece: the piece itself, except that a special-token
/// string that only appeared after lowercasing is split again by the ByteLevel (GPT-2) regex: `<|`, name, `|>`.
fn byte_level_words(piece: &str) -> Vec<&str> {
    if SPECIAL_TOKENS.iter().any(|(s, _)| *s == piece) {
        let inner = &piece[2..piece.len() - 2];
        return vec![&piece[..2], inner, &piece[piece.len() - 2..]];
    }
    vec![piece]
}

fn merge_pair(symbols: &[u32], left: u32, right: u32, merged: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(symbols.len());
    let mut i = 0;
    while i < symbols.len() {
        if i + 1 < symbols.len() && symbols[i] == left && symbols[i + 1] == right {
            out.push(merged);
            i += 2;
        } else {
            out.push(symbols[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> &'static ClipTokenizer {
        ClipTokenizer::shared().expect("embedded tokenizer")
    }

    #[test]
    fn vocabulary_layout_matches_openai() {
        let t = tok();
        assert_eq!(t.token_str(0), Some("!"));
        assert_eq!(t.token_str(255), Some("Ń"));
        assert_eq!(t.token_str(256), Some("!</w>"));
        assert_eq!(t.token_str(512), Some("in"));
        assert_eq!(t.token_str(BOS), Some("<|startoftext|>"));
        assert_eq!(t.token_str(EOS), Some("<|endoftext|>"));
        assert_eq!(t.token_str(VOCAB_SIZE as u32), None);
        assert_eq!(t.token_id(",</w>"), Some(267));
    }

    #[test]
    fn encodes_simple_words() {
        // openai/clip-vit-large-patch14 vocab.json: a</w>=320, photo</w>=1125, of</w>=539, cat</w>=2368.
        assert_eq!(
            tok().encode("A photo of  a\ncat"),
            vec![320, 1125, 539, 320, 2368]
        );
        assert_eq!(tok().encode(""), Vec::<u32>::new());
    }

    #[test]
    fn decode_round_trips_plain_text() {
        let t = tok();
        let text = "a portrait of sks woman, café, 東京 😀";
        assert_eq!(
            t.decode(&t.encode(text)),
            "a portrait of sks woman , café , 東京 😀"
        );
    }

    #[test]
    fn verbatim_special_tokens_become_ids() {
        let ids = tok().encode("x<|endoftext|>y");
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[1], EOS);
    }

    #[test]
    fn corrupt_archive_is_an_error() {
        let err = ClipTokenizer::from_merges_gz(b"not gzip").unwrap_err();
        assert!(err.to_string().contains("cannot decompress"), "{err}");
    }
}
