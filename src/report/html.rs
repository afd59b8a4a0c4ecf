//! HTML text helpers: the one escape function every user string goes through, file links, number formatting.

use std::path::Path;

/// Escapes `text` for HTML text and for double- or single-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// An escaped `href` value for a file: relative paths stay relative (to the report's folder), absolute paths
/// become `file://` URLs; every byte outside the URL-safe set is percent-encoded.
pub fn file_href(path: &str) -> String {
    let encoded = percent_encode(&path.replace('\\', "/"));
    if Path::new(path).is_absolute() {
        escape(&format!("file://{encoded}"))
    } else {
        escape(&encoded)
    }
}

fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The last component of a path written with `/` or `\`.
pub fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// `value` with `digits` decimals, or an en dash when absent.
pub fn number(value: Option<f32>, digits: usize) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

/// A share (0..1) as a whole percentage.
pub fn percent(value: f32) -> String {
    format!("{:.0}%", value * 100.0)
}

/// A LoRA weight as written in prompts (`0.8`, `1`), or an en dash.
pub fn weight(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |w| w.to_string())
}

/// `text` cut to `max` characters with an ellipsis.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn links_files() {
        assert_eq!(file_href("cells/a b.png"), "cells/a%20b.png");
        assert_eq!(file_href("/x/\"&.jpg"), "file:///x/%22%26.jpg");
        assert_eq!(file_name("a/b\\c.jpg"), "c.jpg");
    }

    #[test]
    fn truncates_long_text() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
