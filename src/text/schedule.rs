//! Detection of A1111 prompt editing `[from:to:when]` and alternation `[a|b]`, which loraeval rejects.
//!
//! A1111 1.10 parses prompts with a lark grammar (`modules/prompt_parser.py` `schedule_parser`). A `[…]` group
//! is `scheduled` when its own level holds one or two `:` followed by a number and the texts between are
//! valid `prompt`s (balanced, every nested group itself a valid rule); it is `alternate` when its own level
//! holds `|` and no `:` and every option is a valid `prompt`. If any `|` cannot belong to an alternation, or a
//! `\` ends a line, the grammar fails and A1111 uses the whole prompt literally. This scanner applies those
//! rules; tests/text_tokenizer.rs compares it with lark on 1,250 prompts. The only differences known are
//! lark ambiguity choices where stray brackets follow a group (`[a:3][(`): there we report the construct,
//! i.e. we err towards an error, never towards silently rendering a different prompt.

use std::sync::OnceLock;

use regex::Regex;

use super::TextError;

/// Fails with [`TextError::Unsupported`] if A1111 would treat part of `prompt` as prompt editing
/// (`[cat:dog:0.5]`, `[cat:10]`, `[cat::0.5]`) or alternation (`[cat|dog]`).
pub fn reject_prompt_editing(prompt: &str) -> Result<(), TextError> {
    let chars: Vec<char> = prompt.chars().collect();
    let Some(groups) = bracket_groups(&chars) else {
        return Ok(());
    };
    let mut pipes_used = 0;
    let mut first: Option<(Construct, &BracketGroup)> = None;
    for group in &groups {
        let construct = classify(&chars[group.start + 1..group.end]);
        if let Some(Construct::Alternation { pipes }) = construct {
            pipes_used += pipes;
        }
        if let (Some(c), None) = (construct, first) {
            first = Some((c, group));
        }
    }
    if pipes_used < count_unescaped(&chars, '|') {
        return Ok(()); // a stray `|`: A1111's grammar fails and the prompt is used literally
    }
    match first {
        None => Ok(()),
        Some((construct, group)) => Err(TextError::Unsupported {
            construct: construct.description().to_string(),
            fragment: chars[group.start..=group.end].iter().collect(),
        }),
    }
}

#[derive(Debug, Clone, Copy)]
enum Construct {
    Editing,
    Alternation { pipes: usize },
}

impl Construct {
    fn description(self) -> &'static str {
        match self {
            Construct::Editing => "prompt editing [from:to:when]",
            Construct::Alternation { .. } => "alternation [a|b]",
        }
    }
}

/// A matched `[` … `]` pair (char indices of both brackets).
#[derive(Debug)]
struct BracketGroup {
    start: usize,
    end: usize,
}

/// Matched square-bracket groups, innermost first; `None` if a `\` ends the text or a line (grammar failure).
fn bracket_groups(chars: &[char]) -> Option<Vec<BracketGroup>> {
    let mut open: Vec<(char, usize)> = Vec::new();
    let mut groups = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if chars.get(i + 1).is_none_or(|&c| c == '\n') => return None,
            '\\' => i += 1,
            '(' | '[' => open.push((chars[i], i)),
            ')' if open.last().is_some_and(|o| o.0 == '(') => {
                open.pop();
            }
            ']' if open.last().is_some_and(|o| o.0 == '[') => {
                let start = open.pop().map_or(0, |o| o.1);
                groups.push(BracketGroup { start, end: i });
            }
            _ => {}
        }
        i += 1;
    }
    Some(groups)
}

/// What a `[…]` group with this inner text is, by the `scheduled` and `alternate` rules of the grammar.
fn classify(inner: &[char]) -> Option<Construct> {
    let level = TopLevel::scan(inner)?;
    if !level.pipes.is_empty() {
        let options_ok = level.colons.is_empty() && level.parts(inner, &level.pipes).all(is_prompt);
        return options_ok.then_some(Construct::Alternation {
            pipes: level.pipes.len(),
        });
    }
    let last = *level.colons.last()?;
    let when: String = inner[last + 1..].iter().collect();
    let mut texts = level.parts(&inner[..last], &level.colons[..level.colons.len() - 1]);
    let editing = level.colons.len() <= 2 && is_signed_number(when.trim()) && texts.all(is_prompt);
    editing.then_some(Construct::Editing)
}

/// The grammar's `prompt`: no `:` or `|` on its own level, and every nested group a valid rule.
fn is_prompt(text: &[char]) -> bool {
    let Some(level) = TopLevel::scan(text) else {
        return false;
    };
    let groups_ok = level
        .groups
        .iter()
        .all(|&(open, start, end)| is_rule(open, &text[start + 1..end]));
    level.colons.is_empty() && level.pipes.is_empty() && groups_ok
}

/// `emphasized` `(a)`, `(a:b)`, `[a]`, or `scheduled` / `alternate` for square brackets.
fn is_rule(open: char, inner: &[char]) -> bool {
    if open == '[' {
        return is_prompt(inner) || classify(inner).is_some();
    }
    let Some(level) = TopLevel::scan(inner) else {
        return false;
    };
    level.pipes.is_empty()
        && level.colons.len() <= 1
        && level.parts(inner, &level.colons).all(is_prompt)
}

/// Separators and nested groups on the outermost level of a text (escapes skipped).
struct TopLevel {
    colons: Vec<usize>,
    pipes: Vec<usize>,
    /// (opening char, index of the opening bracket, index of the closing bracket).
    groups: Vec<(char, usize, usize)>,
}

impl TopLevel {
    /// `None` if the brackets are not balanced (then the text cannot be a grammar rule).
    fn scan(text: &[char]) -> Option<Self> {
        let mut level = TopLevel {
            colons: Vec::new(),
            pipes: Vec::new(),
            groups: Vec::new(),
        };
        let mut open: Vec<(char, usize)> = Vec::new();
        let mut i = 0;
        while i < text.len() {
            match text[i] {
                '\\' => i += 1,
                c @ ('(' | '[') => open.push((c, i)),
                c @ (')' | ']') => level.close(&mut open, c, i)?,
                ':' if open.is_empty() => level.colons.push(i),
                '|' if open.is_empty() => level.pipes.push(i),
                _ => {}
            }
            i += 1;
        }
        open.is_empty().then_some(level)
    }

    fn close(&mut self, open: &mut Vec<(char, usize)>, close: char, at: usize) -> Option<()> {
        let (c, start) = open.pop()?;
        if (c, close) != ('(', ')') && (c, close) != ('[', ']') {
            return None;
        }
        if open.is_empty() {
            self.groups.push((c, start, at));
        }
        Some(())
    }

    /// The pieces of `text` between the given separator positions.
    fn parts<'a>(
        &self,
        text: &'a [char],
        separators: &'a [usize],
    ) -> impl Iterator<Item = &'a [char]> + 'a {
        let bounds = std::iter::once(0).chain(separators.iter().map(|&p| p + 1));
        let ends = separators
            .iter()
            .copied()
            .chain(std::iter::once(text.len()));
        bounds.zip(ends).map(move |(a, b)| &text[a..b])
    }
}

fn count_unescaped(chars: &[char], wanted: char) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' {
            i += 1;
        } else if chars[i] == wanted {
            count += 1;
        }
        i += 1;
    }
    count
}

/// lark `common.SIGNED_NUMBER`: `[+-]` then `1`, `1.`, `1.5`, `.5`, optionally with an exponent.
fn is_signed_number(text: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
            .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    });
    re.is_match(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_emphasis_prompts_pass() {
        for prompt in [
            "a photo",
            "(a:1.2) [b] ((c))",
            "[a:b]",
            "a | b",
            "\\[a:b:0.5\\]",
            "[a (b|c) d]",
        ] {
            assert!(reject_prompt_editing(prompt).is_ok(), "{prompt}");
        }
    }

    #[test]
    fn editing_and_alternation_are_named() {
        let err = reject_prompt_editing("photo of [cat:dog:0.5], smiling").unwrap_err();
        assert_eq!(
            err.to_string(),
            "prompt uses A1111 prompt editing [from:to:when] `[cat:dog:0.5]`, which loraeval does not support; \
             escape the brackets as \\[ \\] to use them literally"
        );
        let err = reject_prompt_editing("[red|blue] hair").unwrap_err();
        assert!(
            err.to_string().contains("alternation [a|b] `[red|blue]`"),
            "{err}"
        );
    }
}
