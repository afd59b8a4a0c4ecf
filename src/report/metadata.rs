//! The LoRA files' training metadata (`id="metadata"`: kohya `ss_*` keys: steps, learning rates, dim, alpha,
//! dataset folders and tags) and the command that reproduces the run (`id="command"`).

use std::collections::BTreeMap;

use super::html::{escape, truncate};
use super::page::Page;

type Metadata = BTreeMap<String, String>;

/// Table columns: heading and the keys tried in order.
const COLUMNS: [(&str, &[&str]); 10] = [
    ("Epoch", &["ss_epoch"]),
    ("Steps", &["ss_steps", "ss_max_train_steps"]),
    ("Learning rate", &["ss_learning_rate"]),
    ("UNet LR", &["ss_unet_lr"]),
    ("Text encoder LR", &["ss_text_encoder_lr"]),
    ("Dim", &["ss_network_dim"]),
    ("Alpha", &["ss_network_alpha"]),
    ("Resolution", &["ss_resolution"]),
    ("Images", &["ss_num_train_images"]),
    ("Optimizer", &["ss_optimizer"]),
];
const TOP_TAGS: usize = 40;

/// The metadata section.
pub fn metadata(page: &Page) -> String {
    let files = page.input.lora_metadata;
    let body = if files.values().all(|m| m.is_empty()) {
        "<p class=\"note\">No training metadata: the LoRA folder is unknown or its files carry no <code>ss_*</code> keys.</p>\n".to_string()
    } else {
        let sorted = sorted_files(files);
        [table(&sorted), datasets(&sorted), all_keys(&sorted)].concat()
    };
    format!("<section id=\"metadata\">\n<h2>Training metadata</h2>\n{body}</section>\n")
}

/// Files by epoch, then name.
fn sorted_files(files: &BTreeMap<String, Metadata>) -> Vec<(&String, &Metadata)> {
    let mut sorted: Vec<(&String, &Metadata)> =
        files.iter().filter(|(_, m)| !m.is_empty()).collect();
    let epoch = |m: &Metadata| m.get("ss_epoch").and_then(|e| e.trim().parse::<u64>().ok());
    sorted.sort_by_key(|(name, m)| (epoch(m).unwrap_or(u64::MAX), name.to_string()));
    sorted
}

fn value<'a>(metadata: &'a Metadata, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| metadata.get(*k))
        .map(|v| v.trim())
        .filter(|v| !v.is_empty() && *v != "None")
}

fn table(files: &[(&String, &Metadata)]) -> String {
    let columns: Vec<&(&str, &[&str])> = COLUMNS
        .iter()
        .filter(|(_, keys)| files.iter().any(|(_, m)| value(m, keys).is_some()))
        .collect();
    let head: Vec<String> = columns
        .iter()
        .map(|(h, _)| format!("<th>{h}</th>"))
        .collect();
    let rows: Vec<String> = files
        .iter()
        .map(|(name, m)| {
            let cells: Vec<String> = columns
                .iter()
                .map(|(_, keys)| {
                    let v = value(m, keys).unwrap_or("–");
                    format!(
                        "<td title=\"{}\">{}</td>",
                        escape(v),
                        escape(&truncate(v, 28))
                    )
                })
                .collect();
            format!("<tr><td>{}</td>{}</tr>", escape(name), cells.concat())
        })
        .collect();
    format!(
        "<div class=\"table-wrap\"><table class=\"data\"><thead><tr><th>LoRA file</th>{}</tr></thead><tbody>{}</tbody></table></div>\n",
        head.concat(),
        rows.concat()
    )
}

/// Dataset folders and the most frequent caption tags of the last file that records them.
fn datasets(files: &[(&String, &Metadata)]) -> String {
    let tags = files
        .iter()
        .rev()
        .find_map(|(_, m)| m.get("ss_tag_frequency").and_then(|t| tag_counts(t)));
    let dirs = files
        .iter()
        .rev()
        .find_map(|(_, m)| m.get("ss_dataset_dirs").and_then(|d| dataset_dirs(d)));
    let mut out = String::new();
    if let Some(dirs) = dirs {
        out += &format!("<p>Dataset folders: {}</p>\n", dirs.join(", "));
    }
    if let Some(tags) = tags {
        let chips: Vec<String> = tags
            .iter()
            .take(TOP_TAGS)
            .map(|(tag, n)| format!("<span class=\"tag\">{} <b>{n}</b></span>", escape(tag)))
            .collect();
        let more = tags.len().saturating_sub(TOP_TAGS);
        let rest = if more > 0 {
            format!(" <span class=\"hint\">and {more} more</span>")
        } else {
            String::new()
        };
        out += &format!(
            "<p>Dataset tags ({} distinct, by frequency):</p>\n<div class=\"tags\">{}{rest}</div>\n",
            tags.len(),
            chips.concat()
        );
    }
    out
}

/// `ss_tag_frequency` (`{"10_name": {"tag": count}}`) summed over folders, most frequent first.
fn tag_counts(json: &str) -> Option<Vec<(String, u64)>> {
    let folders: BTreeMap<String, BTreeMap<String, serde_json::Value>> =
        serde_json::from_str(json).ok()?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for tags in folders.values() {
        for (tag, n) in tags {
            *counts.entry(tag.trim().to_string()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    let mut sorted: Vec<(String, u64)> =
        counts.into_iter().filter(|(t, _)| !t.is_empty()).collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Some(sorted)
}

/// `ss_dataset_dirs` (`{"10_name": {"n_repeats": 10, "img_count": 20}}`) as escaped HTML items.
fn dataset_dirs(json: &str) -> Option<Vec<String>> {
    let dirs: BTreeMap<String, serde_json::Value> = serde_json::from_str(json).ok()?;
    let items = dirs.iter().map(|(name, info)| {
        let field = |k: &str| {
            info.get(k)
                .and_then(|v| v.as_u64())
                .map_or("?".to_string(), |n| n.to_string())
        };
        format!(
            "<code>{}</code> ({} images × {} repeats)",
            escape(name),
            field("img_count"),
            field("n_repeats")
        )
    });
    Some(items.collect())
}

fn all_keys(files: &[(&String, &Metadata)]) -> String {
    let blocks: Vec<String> = files
        .iter()
        .map(|(name, m)| {
            let rows: Vec<String> = m
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                        escape(k),
                        escape(&truncate(v, 400))
                    )
                })
                .collect();
            format!(
                "<details class=\"keys\"><summary>All keys of {}</summary><table class=\"data kv\">{}</table></details>\n",
                escape(name),
                rows.concat()
            )
        })
        .collect();
    blocks.concat()
}

/// The command section.
pub fn command(page: &Page) -> String {
    let body = match page.input.command {
        Some(cmd) => format!("<pre class=\"command\"><code>{}</code></pre>\n", escape(cmd)),
        None => "<p class=\"note\">The command of this run was not recorded (the run folder has no run.json).</p>\n".to_string(),
    };
    format!(
        "<section id=\"command\">\n<h2>Reproduce this run</h2>\n{body}<p class=\"hint\">Cells already on disk are not rendered again. Rewrite this report from the run folder with <code>loraeval report {}</code>.</p>\n</section>\n",
        escape(&page.input.run.display().to_string())
    )
}
