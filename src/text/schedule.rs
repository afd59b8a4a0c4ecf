//! Detection of A1111 prompt editing `[from:to:when]` and alternation `[a|b]`, which loraeval rejects.
//!
//! A1111 1.10 parses prompts with a lark grammar (`modules/prompt_parser.py` `schedule_parser`): a bracket
//! group whose own level holds one or two `:` followed by a number is `scheduled`; one whose own level holds
//! `|` (and no `:`) is `alternate`. If any `|` cannot belong to an alternation, or a `\` ends a line, the
//! grammar fails and A1111 uses the whole prompt literally, without editing. This scanner follows those rules;
//! where it is unsure it errs towards reporting the construct (never silently renders a different prompt).

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

/// What a bracket group with this inner text is, judged on its own nesting level.
fn classify(inner: &[char]) -> Option<Construct> {
    let (colons, pipes) = top_level_separators(inner);
    if !pipes.is_empty() {
        return colons
            .is_empty()
            .then_some(Construct::Alternation { pipes: pipes.len() });
    }
    let last = *colons.last()?;
    let when: String = inner[last + 1..].iter().collect();
    (colons.len() <= 2 && is_signed_number(when.trim())).then_some(Construct::Editing)
}

/// Positions of `:` and `|` that are not escaped and not inside nested `(…)` / `[…]`.
fn top_level_separators(inner: &[char]) -> (Vec<usize>, Vec<usize>) {
    let (mut colons, mut pipes) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    let mut i = 0;
    while i < inner.len() {
        match inner[i] {
            '\\' => i += 1,
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => colons.push(i),
            '|' if depth == 0 => pipes.push(i),
            _ => {}
        }
        i += 1;
    }
    (colons, pipes)
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
