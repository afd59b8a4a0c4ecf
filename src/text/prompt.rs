//! A1111 1.10 prompt syntax: `(emphasis:1.2)`, `[de-emphasis]`, escapes, `BREAK`, and `AND` sub-prompts.
//!
//! Ports of `modules/prompt_parser.py` (`parse_prompt_attention`, `re_attention`, `re_break`,
//! `get_multicond_prompt_list`). Weights are computed in `f64` like Python, so merging of equal-weight runs and
//! the `BREAK` marker (weight exactly -1) behave identically. Extra-network tags and prompt-editing detection
//! live in sibling modules and are re-exported here.

use std::sync::OnceLock;

use regex::Regex;

use super::TextError;

pub use super::extra_networks::{extract_extra_networks, lora_multipliers, ExtraNetworkTag};
pub use super::schedule::reject_prompt_editing;

/// Text and weight of the marker entry that `BREAK` produces (A1111 `["BREAK", -1]`).
pub const BREAK_TEXT: &str = "BREAK";
/// Weight of the `BREAK` marker entry.
pub const BREAK_WEIGHT: f64 = -1.0;

const ROUND_MULTIPLIER: f64 = 1.1;
const ATTENTION_PATTERN: &str =
    r"\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|\]|[^\\()\[\]:]+|:";

fn attention_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(ATTENTION_PATTERN).unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    })
}

fn break_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?s)\s*\bBREAK\b\s*").unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    })
}

/// True for the `("BREAK", -1)` entry that forces a new 75-token chunk.
pub fn is_break(piece: &(String, f64)) -> bool {
    piece.0 == BREAK_TEXT && piece.1 == BREAK_WEIGHT
}

/// Splits `text` into (text, weight) runs like A1111's `parse_prompt_attention`.
///
/// `(a)` ×1.1, `[a]` ÷1.1, `(a:1.3)` ×1.3, nesting multiplies, unclosed brackets apply to the end,
/// `\(` `\)` `\[` `\]` `\\` are literals, `BREAK` becomes its own `("BREAK", -1.0)` entry (see [`is_break`]),
/// adjacent runs with equal weight are merged, and an empty prompt gives `[("", 1.0)]`.
/// Fails only where A1111 raises: a weight such as `(a:1.2.3)` that is not a number.
pub fn parse_prompt_attention(text: &str) -> Result<Vec<(String, f64)>, TextError> {
    let mut parser = AttentionParser::default();
    for m in attention_regex().captures_iter(text) {
        let token = m.get(0).map_or("", |g| g.as_str());
        parser.feed(token, m.get(1).map(|g| g.as_str()))?;
    }
    Ok(parser.finish())
}

#[derive(Default)]
struct AttentionParser {
    res: Vec<(String, f64)>,
    round_brackets: Vec<usize>,
    square_brackets: Vec<usize>,
}

impl AttentionParser {
    fn feed(&mut self, token: &str, weight: Option<&str>) -> Result<(), TextError> {
        if let Some(literal) = token.strip_prefix('\\') {
            self.res.push((literal.to_string(), 1.0));
        } else if token == "(" {
            self.round_brackets.push(self.res.len());
        } else if token == "[" {
            self.square_brackets.push(self.res.len());
        } else if let (Some(w), Some(&start)) = (weight, self.round_brackets.last()) {
            let value = parse_python_float(w)?;
            self.round_brackets.pop();
            self.multiply_range(start, value);
        } else if token == ")" && !self.round_brackets.is_empty() {
            let start = self.round_brackets.pop().unwrap_or(0);
            self.multiply_range(start, ROUND_MULTIPLIER);
        } else if token == "]" && !self.square_brackets.is_empty() {
            let start = self.square_brackets.pop().unwrap_or(0);
            self.multiply_range(start, 1.0 / ROUND_MULTIPLIER);
        } else {
            self.push_text(token);
        }
        Ok(())
    }

    fn push_text(&mut self, token: &str) {
        for (i, part) in break_regex().split(token).enumerate() {
            if i > 0 {
                self.res.push((BREAK_TEXT.to_string(), BREAK_WEIGHT));
            }
            self.res.push((part.to_string(), 1.0));
        }
    }

    fn multiply_range(&mut self, start: usize, multiplier: f64) {
        for piece in self.res.iter_mut().skip(start) {
            piece.1 *= multiplier;
        }
    }

    fn finish(mut self) -> Vec<(String, f64)> {
        for start in std::mem::take(&mut self.round_brackets) {
            self.multiply_range(start, ROUND_MULTIPLIER);
        }
        for start in std::mem::take(&mut self.square_brackets) {
            self.multiply_range(start, 1.0 / ROUND_MULTIPLIER);
        }
        if self.res.is_empty() {
            self.res.push((String::new(), 1.0));
        }
        merge_equal_weights(self.res)
    }
}

fn merge_equal_weights(pieces: Vec<(String, f64)>) -> Vec<(String, f64)> {
    let mut merged: Vec<(String, f64)> = Vec::with_capacity(pieces.len());
    for (text, weight) in pieces {
        match merged.last_mut() {
            Some(last) if last.1 == weight => last.0.push_str(&text),
            _ => merged.push((text, weight)),
        }
    }
    merged
}

/// Python `float()` for the weight strings the A1111 regexes accept (ASCII digits only: A1111 would also
/// accept other Unicode decimal digits such as `١`).
pub(crate) fn parse_python_float(text: &str) -> Result<f64, TextError> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| TextError::InvalidWeight {
            weight: text.to_string(),
        })
}

/// Splits a **positive** prompt into composable-diffusion sub-prompts like A1111's
/// `get_multicond_prompt_list`: split on the word `AND`, then a trailing `:number` of each part is its weight
/// (default 1.0) and trailing whitespace is dropped. A prompt without `AND` or trailing weight gives one part
/// with weight 1.0. (Negative prompts are never split.)
pub fn split_composable(prompt: &str) -> Result<Vec<(String, f64)>, TextError> {
    static AND: OnceLock<Regex> = OnceLock::new();
    static WEIGHT: OnceLock<Regex> = OnceLock::new();
    let and = AND.get_or_init(|| {
        Regex::new(r"\bAND\b").unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    });
    let weight = WEIGHT.get_or_init(|| {
        Regex::new(r"^((?s:.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")
            .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    });
    let mut parts = Vec::new();
    for sub in and.split(prompt) {
        let part = match weight.captures(sub) {
            Some(c) => {
                let text = c.get(1).map_or("", |g| g.as_str()).to_string();
                (
                    text,
                    c.get(2)
                        .map(|w| parse_python_float(w.as_str()))
                        .transpose()?
                        .unwrap_or(1.0),
                )
            }
            None => (sub.to_string(), 1.0),
        };
        parts.push(part);
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, f64)> {
        parse_prompt_attention(text).expect("valid prompt")
    }

    fn pairs(expected: &[(&str, f64)]) -> Vec<(String, f64)> {
        expected.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    // The examples of A1111's own `parse_prompt_attention` docstring (modules/prompt_parser.py).
    #[test]
    fn a1111_docstring_examples() {
        assert_eq!(parse("normal text"), pairs(&[("normal text", 1.0)]));
        assert_eq!(
            parse("an (important) word"),
            pairs(&[("an ", 1.0), ("important", 1.1), (" word", 1.0)])
        );
        assert_eq!(parse("(unbalanced"), pairs(&[("unbalanced", 1.1)]));
        assert_eq!(parse("\\(literal\\]"), pairs(&[("(literal]", 1.0)]));
        assert_eq!(
            parse("(unnecessary)(parens)"),
            pairs(&[("unnecessaryparens", 1.1)])
        );
        let expected = pairs(&[
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ]);
        assert_eq!(
            parse("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."),
            expected
        );
    }

    #[test]
    fn break_is_a_marker_entry() {
        let parsed = parse("a BREAK b");
        assert_eq!(parsed, pairs(&[("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]));
        assert!(is_break(&parsed[1]));
        assert_eq!(parse(""), pairs(&[("", 1.0)]));
    }

    #[test]
    fn invalid_weight_is_an_error() {
        let err = parse_prompt_attention("(a:1.2.3)").unwrap_err();
        assert_eq!(
            err.to_string(),
            "weight `1.2.3` in the prompt is not a number"
        );
    }

    #[test]
    fn composable_split_reads_trailing_weights() {
        let parts = split_composable("a cat:1.5 AND a dog").expect("valid");
        assert_eq!(parts, pairs(&[("a cat", 1.5), (" a dog", 1.0)]));
        assert_eq!(
            split_composable("(cat:1.2)").expect("valid"),
            pairs(&[("(cat:1.2)", 1.0)])
        );
    }
}
