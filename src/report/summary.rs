//! The page header (run, model, counts, navigation) and the recommendation block (`id="pick"`): the pick or why
//! there is none, each epoch's best weight, the full ranking; or a note that the run is not scored yet.

use super::html::{escape, file_name, number, weight};
use super::page::{cell_key, Page};
use crate::recommend::{Pick, Recommendation};

/// The page header.
pub fn header(page: &Page) -> String {
    let manifest = page.input.manifest;
    let s = &manifest.summary;
    let axes = match &manifest.axes.y {
        Some(y) => format!("{} × {}", manifest.axes.x.label, y.label),
        None => manifest.axes.x.label.clone(),
    };
    format!(
        "<header class=\"top\">\n<h1>LoRA evaluation <span class=\"run\">{}</span></h1>\n<p class=\"facts\">Model <b>{}</b> <code>{}</code> · {} grid ({} × {}) · {} seed{} · {} images: {} rendered, {} failed, {} missing{}</p>\n{}</header>\n",
        escape(&page.run_name()),
        escape(&manifest.model.name),
        escape(&manifest.model.hash),
        escape(&axes),
        page.layout.x_labels.len(),
        page.layout.y_labels.len(),
        manifest.seeds.len(),
        if manifest.seeds.len() == 1 { "" } else { "s" },
        s.cells,
        s.ok,
        s.failed,
        s.missing,
        trigger(page),
        nav(page)
    )
}

fn trigger(page: &Page) -> String {
    match page.input.scores.and_then(|t| t.trigger.as_deref()) {
        Some(word) => format!(" · trigger word <code>{}</code>", escape(word)),
        None => String::new(),
    }
}

fn nav(page: &Page) -> String {
    let mut links = vec![("pick", "Recommendation")];
    if page.input.scores.is_some() {
        links.push(("scores", "Scores"));
    }
    links.extend([
        ("grid", "Grid"),
        ("details", "Cell detail"),
        ("reference", "Reference photos"),
        ("metadata", "Training metadata"),
        ("command", "Command"),
    ]);
    let items: Vec<String> = links
        .iter()
        .map(|(id, text)| format!("<a href=\"#{id}\">{text}</a>"))
        .collect();
    format!("<nav>{}</nav>\n", items.join(""))
}

/// The recommendation block.
pub fn pick(page: &Page) -> String {
    let run = escape(&page.input.run.display().to_string());
    let body = match (page.input.scores, page.input.recommendation) {
        (None, _) => format!(
            "<p class=\"note\"><b>Not scored yet.</b> This report shows the grid only: no likeness, no recommendation. Score the cells against the training photos with <code>loraeval pick {run} --reference PHOTOS</code>.</p>\n"
        ),
        (Some(_), None) => format!(
            "<p class=\"note\"><b>Scored, no recommendation yet.</b> Run <code>loraeval pick {run}</code>.</p>\n"
        ),
        (Some(_), Some(rec)) => recommendation(page, rec),
    };
    let class = match page.input.recommendation.map(|r| r.pick.is_some()) {
        Some(true) => "chosen",
        Some(false) => "none",
        None => "pending",
    };
    format!("<section id=\"pick\" class=\"{class}\">\n<h2>Recommendation</h2>\n{body}</section>\n")
}

fn recommendation(page: &Page, rec: &Recommendation) -> String {
    let epoch_reasons: Vec<&str> = rec.epochs.iter().map(|e| e.reason.as_str()).collect();
    let lead: Vec<String> = rec
        .reasons
        .iter()
        .filter(|r| !epoch_reasons.contains(&r.as_str()))
        .map(|r| format!("<li>{}</li>", escape(r)))
        .collect();
    let headline = match &rec.pick {
        Some(pick) => picked(page, pick),
        None => {
            "<p class=\"pick-title\"><b>No pick:</b> no cell passes every gate.</p>\n".to_string()
        }
    };
    format!(
        "<div class=\"pick-main\">\n{headline}<ul class=\"reasons\">{}</ul>\n</div>\n{}{}",
        lead.concat(),
        epochs(rec),
        ranking(rec)
    )
}

fn picked(page: &Page, pick: &Pick) -> String {
    let position = page.layout.pick();
    let thumb = position
        .and_then(|p| p.cells.first())
        .map(|c| {
            page.thumbs
                .element(&cell_key(&c.image), Some(&c.image), &pick.label)
        })
        .unwrap_or_default();
    let detail = position.map_or(String::new(), |p| {
        format!(
            " · <a href=\"#{0}\" data-target=\"{0}\">images and detail</a>",
            p.id()
        )
    });
    let file = pick.file.as_deref().unwrap_or(&pick.label);
    let epoch = pick
        .epoch
        .map_or(String::new(), |e| format!("epoch {e} · "));
    format!(
        "<div class=\"pick-thumb\">{thumb}</div>\n<p class=\"pick-title\">Use <b class=\"pick-file\">{}</b> at weight <b class=\"pick-weight\">{}</b></p>\n<p class=\"pick-sub\">{epoch}likeness {}{detail}</p>\n",
        escape(file),
        weight(pick.weight),
        number(pick.likeness, 2)
    )
}

fn epochs(rec: &Recommendation) -> String {
    if rec.epochs.is_empty() {
        return String::new();
    }
    let rows: Vec<String> = rec
        .epochs
        .iter()
        .map(|e| {
            let verdict = if e.best_weight.is_some() { "pass" } else { "fail" };
            format!(
                "<tr class=\"{verdict}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.epoch.map_or("–".to_string(), |n| n.to_string()),
                escape(e.file.as_deref().map_or("–", file_name)),
                weight(e.best_weight),
                number(e.likeness, 2),
                escape(&e.reason)
            )
        })
        .collect();
    format!(
        "<h3>Each epoch's best weight</h3>\n<table class=\"data\"><thead><tr><th>Epoch</th><th>LoRA file</th><th>Best weight</th><th>Likeness</th><th>Verdict</th></tr></thead><tbody>{}</tbody></table>\n",
        rows.concat()
    )
}

fn ranking(rec: &Recommendation) -> String {
    let rows: Vec<String> = rec
        .ranking
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let result = if r.passed {
                "✓ pass".to_string()
            } else {
                format!("✕ {}", r.failed.join(", ").replace('_', " "))
            };
            format!(
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
                if r.passed { "pass" } else { "fail" },
                i + 1,
                escape(&r.label),
                r.score,
                escape(&result),
                escape(&r.reasons.join("; "))
            )
        })
        .collect();
    format!(
        "<details class=\"ranking\"><summary>Full ranking ({} cells)</summary>\n<table class=\"data\"><thead><tr><th>#</th><th>Cell</th><th>Likeness</th><th>Result</th><th>Reasons</th></tr></thead><tbody>{}</tbody></table></details>\n",
        rec.ranking.len(),
        rows.concat()
    )
}
