//! Epochs and LoRA weights act through the prompt's `<lora:NAME:W>` tag, as a Prompt S/R on the tag would in
//! A1111: the axis rewrites the tag's name (an epoch file's stem) or its first weight; a prompt without the tag gets
//! one appended.

use std::sync::OnceLock;

use regex::Regex;

use super::values::float_label;

/// Which `<lora:…>` tag of a prompt the epoch and weight axes rewrite.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraTarget {
    /// Tag names that denote this LoRA: every file stem of the run and its `ss_output_name` alias.
    pub names: Vec<String>,
    /// The name written when the prompt has no tag yet (the run's final file stem).
    pub default_name: String,
}

impl LoraTarget {
    /// A target for a single LoRA name (no run folder).
    pub fn single(name: &str) -> Self {
        LoraTarget {
            names: vec![name.to_string()],
            default_name: name.to_string(),
        }
    }
}

fn lora_tag_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"<lora:([^>]+)>").unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    })
}

/// The names of all `<lora:NAME…>` tags in `text`, in order (first positional item, as A1111 reads it).
pub fn lora_tag_names(text: &str) -> Vec<String> {
    lora_tag_regex()
        .captures_iter(text)
        .filter_map(|c| c.get(1))
        .filter_map(|items| {
            let items: Vec<&str> = items.as_str().split(':').collect();
            name_position(&items).map(|i| items[i].to_string())
        })
        .collect()
}

/// A1111: an item `key=value` (exactly one `=`) is named; the first other item is the network name.
fn name_position(items: &[&str]) -> Option<usize> {
    items.iter().position(|item| !is_named(item))
}

fn is_named(item: &str) -> bool {
    item.split_once('=').is_some_and(|(_, v)| !v.contains('='))
}

/// Rewrites every tag of `target` in `prompt`: its name to `name` and/or its first weight to `weight`. When the
/// prompt has no such tag, `<lora:NAME:W>` is appended (after a space) with the default name and weight 1.
pub fn set_lora_tag(
    prompt: &str,
    target: &LoraTarget,
    name: Option<&str>,
    weight: Option<f64>,
) -> String {
    let mut found = false;
    let rewritten = lora_tag_regex().replace_all(prompt, |c: &regex::Captures| {
        let whole = c.get(0).map_or("", |m| m.as_str());
        let items: Vec<&str> = c.get(1).map_or("", |m| m.as_str()).split(':').collect();
        match name_position(&items) {
            Some(index) if target.names.iter().any(|n| n == items[index]) => {
                found = true;
                rewrite_items(&items, index, name, weight)
            }
            _ => whole.to_string(),
        }
    });
    if found {
        return rewritten.into_owned();
    }
    let tag = format!(
        "<lora:{}:{}>",
        name.unwrap_or(&target.default_name),
        weight.map_or_else(|| "1".to_string(), float_label)
    );
    if prompt.trim().is_empty() {
        tag
    } else {
        format!("{prompt} {tag}")
    }
}

fn rewrite_items(items: &[&str], index: usize, name: Option<&str>, weight: Option<f64>) -> String {
    let mut items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    if let Some(name) = name {
        items[index] = name.to_string();
    }
    if let Some(weight) = weight {
        let weight_index = (index + 1..items.len()).find(|&i| !is_named(&items[i]));
        match weight_index {
            Some(i) => items[i] = float_label(weight),
            None => items.insert(index + 1, float_label(weight)),
        }
    }
    format!("<lora:{}>", items.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> LoraTarget {
        LoraTarget {
            names: vec!["face".into(), "face-000001".into(), "face-000002".into()],
            default_name: "face".into(),
        }
    }

    #[test]
    fn rewrites_name_and_weight_of_the_run_tag_only() {
        let prompt = "photo of sks <lora:face:0.7>, <lora:style:0.3>";
        assert_eq!(
            set_lora_tag(prompt, &target(), Some("face-000002"), None),
            "photo of sks <lora:face-000002:0.7>, <lora:style:0.3>"
        );
        assert_eq!(
            set_lora_tag(prompt, &target(), None, Some(0.4)),
            "photo of sks <lora:face:0.4>, <lora:style:0.3>"
        );
    }

    #[test]
    fn appends_a_tag_when_missing_and_inserts_a_missing_weight() {
        assert_eq!(
            set_lora_tag("photo", &target(), Some("face-000001"), None),
            "photo <lora:face-000001:1>"
        );
        assert_eq!(
            set_lora_tag("photo", &target(), None, Some(0.6000000000000001)),
            "photo <lora:face:0.6>"
        );
        assert_eq!(
            set_lora_tag("<lora:face>", &target(), None, Some(1.0)),
            "<lora:face:1.0>"
        );
        assert_eq!(
            set_lora_tag("<lora:face:te=0.5>", &target(), None, Some(0.8)),
            "<lora:face:0.8:te=0.5>"
        );
    }

    #[test]
    fn lists_tag_names() {
        assert_eq!(
            lora_tag_names("a <lora:x:1> b <lora:te=1:y>"),
            vec!["x".to_string(), "y".to_string()]
        );
    }
}
