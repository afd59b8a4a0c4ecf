//! A1111 extra-network tags such as `<lora:my_face-000004:0.8>`: extraction and LoRA multipliers.
//!
//! Ports of `modules/extra_networks.py` (`re_extra_net`, `parse_prompt`, `ExtraNetworkParams`) and of the
//! multiplier rules of `extensions-builtin/Lora/extra_networks_lora.py`.

use std::sync::OnceLock;

use regex::Regex;

use super::prompt::parse_python_float;
use super::TextError;

/// One `<kind:item:item…>` tag, items split on `:` exactly as A1111 does.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraNetworkTag {
    /// The word before the first colon: `lora`, `hypernet`, `lyco`, … (case kept).
    pub kind: String,
    /// The network name: A1111's first positional item (items of the form `key=value` are named, not positional).
    /// Empty if the tag has no positional item (A1111 then fails when it activates the network).
    pub name: String,
    /// Every item except the one used as name, raw and in order (e.g. `["0.8"]`, `["te=0.5", "unet=1"]`).
    pub args: Vec<String>,
}

impl ExtraNetworkTag {
    /// The tag as written in the prompt, for error messages.
    pub fn to_tag_text(&self) -> String {
        let mut items = vec![self.kind.clone(), self.name.clone()];
        items.extend(self.args.iter().cloned());
        format!("<{}>", items.join(":"))
    }

    fn from_items(kind: &str, items: Vec<String>) -> Self {
        let name_index = items.iter().position(|item| named_item(item).is_none());
        let name = name_index.map(|i| items[i].clone()).unwrap_or_default();
        let args = items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != name_index)
            .map(|(_, s)| s)
            .collect();
        Self {
            kind: kind.to_string(),
            name,
            args,
        }
    }

    /// Positional arguments after the name (A1111 `params.positional[1..]`).
    pub fn positional_args(&self) -> Vec<&str> {
        self.args
            .iter()
            .filter(|a| named_item(a).is_none())
            .map(String::as_str)
            .collect()
    }

    /// Value of a named argument such as `te=0.5` (the last one wins, as in A1111's dict).
    pub fn named_arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .rev()
            .filter_map(|a| named_item(a))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .next()
    }
}

/// A1111 `item.split('=', 2)` with exactly two parts makes a named item; `a=b=c` stays positional.
fn named_item(item: &str) -> Option<(&str, &str)> {
    let (key, value) = item.split_once('=')?;
    (!value.contains('=')).then_some((key, value))
}

fn extra_net_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"<(\w+):([^>]+)>").unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    })
}

/// Removes every `<kind:name:args…>` tag (A1111 regex `<(\w+):([^>]+)>`) and returns the remaining prompt and
/// the tags in prompt order. The tags are replaced by nothing, so surrounding spaces and commas stay.
pub fn extract_extra_networks(prompt: &str) -> (String, Vec<ExtraNetworkTag>) {
    let mut tags = Vec::new();
    let stripped = extra_net_regex().replace_all(prompt, |c: &regex::Captures| {
        tags.push(captured_tag(c));
        ""
    });
    (stripped.into_owned(), tags)
}

/// `prompt` with the tags for which `remove` is true replaced by nothing, exactly as [`extract_extra_networks`]
/// removes them (surrounding spaces and commas stay); every other tag stays as written.
pub fn remove_extra_networks(
    prompt: &str,
    mut remove: impl FnMut(&ExtraNetworkTag) -> bool,
) -> String {
    extra_net_regex()
        .replace_all(prompt, |c: &regex::Captures| {
            match remove(&captured_tag(c)) {
                true => String::new(),
                false => c.get(0).map_or("", |g| g.as_str()).to_string(),
            }
        })
        .into_owned()
}

fn captured_tag(c: &regex::Captures) -> ExtraNetworkTag {
    let kind = c.get(1).map_or("", |g| g.as_str());
    let items = c
        .get(2)
        .map_or("", |g| g.as_str())
        .split(':')
        .map(str::to_string)
        .collect();
    ExtraNetworkTag::from_items(kind, items)
}

/// (text-encoder multiplier, UNet multiplier) of a `<lora:…>` tag by A1111's Lora extension rules:
/// `<lora:n>` = (1, 1); `<lora:n:w>` = (w, w); `<lora:n:te:unet>` = (te, unet); named `te=` / `unet=`
/// override the positional values; a missing UNet value defaults to the text-encoder value.
/// (`dyn=` / a third positional DyLoRA rank is ignored.)
pub fn lora_multipliers(tag: &ExtraNetworkTag) -> Result<(f32, f32), TextError> {
    let invalid = |reason: String| TextError::InvalidExtraNetworkTag {
        tag: tag.to_tag_text(),
        reason,
    };
    if tag.name.is_empty() {
        return Err(invalid("no network name".to_string()));
    }
    let number = |text: &str, what: &str| {
        parse_python_float(text)
            .map_err(|_| invalid(format!("{what} multiplier `{text}` is not a number")))
    };
    let positional = tag.positional_args();
    let mut te = positional
        .first()
        .map_or(Ok(1.0), |s| number(s, "text encoder"))?;
    if let Some(named) = tag.named_arg("te") {
        te = number(named, "text encoder")?;
    }
    let mut unet = positional.get(1).map_or(Ok(te), |s| number(s, "UNet"))?;
    if let Some(named) = tag.named_arg("unet") {
        unet = number(named, "UNet")?;
    }
    Ok((te as f32, unet as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_tags_in_order() {
        let (text, tags) = extract_extra_networks("photo <lora:face-000004:0.8>, <hypernet:h:1>x");
        assert_eq!(text, "photo , x");
        assert_eq!(tags.len(), 2);
        assert_eq!(
            (tags[0].kind.as_str(), tags[0].name.as_str()),
            ("lora", "face-000004")
        );
        assert_eq!(tags[0].args, vec!["0.8"]);
        assert_eq!(tags[1].kind, "hypernet");
    }

    #[test]
    fn removes_only_the_chosen_tags() {
        let prompt = "photo <lora:face:0.8>, <hypernet:h:1>x <LORA:b>";
        let kept = remove_extra_networks(prompt, |t| t.kind.eq_ignore_ascii_case("lora"));
        assert_eq!(kept, "photo , <hypernet:h:1>x ");
        assert_eq!(
            extract_extra_networks(&kept).0,
            extract_extra_networks(prompt).0
        );
        assert_eq!(remove_extra_networks(prompt, |_| false), prompt);
    }

    #[test]
    fn multipliers_follow_the_lora_extension() {
        let te_unet =
            |p: &str| lora_multipliers(&extract_extra_networks(p).1[0]).expect("valid tag");
        assert_eq!(te_unet("<lora:a>"), (1.0, 1.0));
        assert_eq!(te_unet("<lora:a:0.5>"), (0.5, 0.5));
        assert_eq!(te_unet("<lora:a:0.5:0.25>"), (0.5, 0.25));
        assert_eq!(te_unet("<lora:a:unet=0.4>"), (1.0, 0.4));
        assert_eq!(te_unet("<lora:a:0.7:te=0.2>"), (0.2, 0.2));
    }

    #[test]
    fn bad_multiplier_names_the_tag() {
        let (_, tags) = extract_extra_networks("<lora:bad:abc>");
        let err = lora_multipliers(&tags[0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "extra network tag `<lora:bad:abc>`: text encoder multiplier `abc` is not a number"
        );
    }
}
