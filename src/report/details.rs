//! Per-cell detail (`id="details"`): for each grid position and the control, its verdict and reasons, its metrics,
//! and every image beside its nearest training photo with the image's scores and A1111 infotext.

use super::grid_view::Shot;
use super::html::{escape, file_href, file_name, number, percent};
use super::page::{reference_key, reference_path, Page};
use super::thumbs::placeholder;
use crate::grid::manifest::ParamsEntry;
use crate::recommend::RankedCell;
use crate::score::table::{CellScore, ImageScoreEntry};

/// One detail block's contents.
struct Detail<'a> {
    id: String,
    label: &'a str,
    score: Option<&'a CellScore>,
    rank: Option<&'a RankedCell>,
    is_pick: bool,
    shots: Vec<Shot<'a>>,
}

/// The detail section: every position (and the control) in one block; the script shows one at a time.
pub fn details(page: &Page) -> String {
    let mut out = String::from(
        "<section id=\"details\">\n<h2>Cell detail</h2>\n<p class=\"hint\">The selected cell (click one in the grid or the heatmap). <button type=\"button\" id=\"show-all\">Show every cell</button></p>\n",
    );
    for position in &page.layout.positions {
        out += &article(
            page,
            &Detail {
                id: position.id(),
                label: &position.label,
                score: position.score,
                rank: position.rank,
                is_pick: position.is_pick,
                shots: Shot::of_position(position),
            },
        );
    }
    let controls = Shot::of_controls(page);
    if !controls.is_empty() {
        let detail = Detail {
            id: "control".to_string(),
            label: "Base model, no LoRA",
            score: page.input.scores.and_then(|t| t.control.as_ref()),
            rank: None,
            is_pick: false,
            shots: controls,
        };
        out += &article(page, &detail);
    }
    out + "</section>\n"
}

fn article(page: &Page, detail: &Detail) -> String {
    let reasons: Vec<String> = detail
        .rank
        .map(|r| {
            r.reasons
                .iter()
                .map(|t| format!("<li>{}</li>", escape(t)))
                .collect()
        })
        .unwrap_or_default();
    let shots: Vec<String> = detail
        .shots
        .iter()
        .map(|s| shot(page, s, detail.label))
        .collect();
    format!(
        "<article class=\"detail\" id=\"{}\" data-label=\"{}\">\n<h3>{} {}</h3>\n<ul class=\"reasons\">{}</ul>\n{}<div class=\"shots\">\n{}</div>\n</article>\n",
        detail.id,
        escape(detail.label),
        escape(detail.label),
        verdict(detail),
        reasons.concat(),
        metrics(page, detail.score),
        shots.concat()
    )
}

fn verdict(detail: &Detail) -> &'static str {
    match (detail.is_pick, detail.rank) {
        (true, _) => "<span class=\"chip pick\">★ the pick</span>",
        (false, Some(r)) if r.passed => "<span class=\"chip pass\">✓ passes every gate</span>",
        (false, Some(_)) => "<span class=\"chip fail\">✕ fails a gate</span>",
        (false, None) => "",
    }
}

fn metrics(page: &Page, score: Option<&CellScore>) -> String {
    let Some(s) = score else {
        return "<p class=\"hint\">Not scored.</p>\n".to_string();
    };
    let base = page
        .input
        .scores
        .map(|t| t.baselines.health)
        .unwrap_or_default();
    let (hits, asking) = person_hits(s);
    let mut items = vec![
        ("Likeness", number(s.likeness, 2)),
        ("The person in", format!("{hits}/{asking} images")),
        ("Faces found", format!("{}/{}", s.faces, s.images.len())),
        ("Copy rate", percent(s.copy_rate)),
        ("Flexibility", number(s.flexibility, 2)),
        (
            "Clipped",
            format!(
                "{} (base {})",
                percent(s.health.clipped),
                percent(base.clipped)
            ),
        ),
        (
            "Saturation",
            format!("{:.2} (base {:.2})", s.health.saturation, base.saturation),
        ),
        (
            "Noise",
            format!("{:.1} (base {:.1})", s.health.high_freq, base.high_freq),
        ),
    ];
    if let (Some(change), Some(leak)) = (s.side_effect, s.leak_rate) {
        items.push(("Change without trigger", format!("{change:.2}")));
        items.push(("Person without trigger", percent(leak)));
    }
    let cells: Vec<String> = items
        .iter()
        .map(|(k, v)| format!("<div><dt>{k}</dt><dd>{v}</dd></div>"))
        .collect();
    format!("<dl class=\"metrics\">{}</dl>\n", cells.concat())
}

/// Images showing the person among those whose prompt asks for them, and how many ask.
pub fn person_hits(score: &CellScore) -> (usize, usize) {
    let asking = score.images.iter().filter(|i| i.asks_for_person);
    let hits = asking.clone().filter(|i| i.hit).count();
    (hits, asking.count())
}

fn shot(page: &Page, shot: &Shot, label: &str) -> String {
    let score = page.layout.image_scores.get(shot.image).copied();
    let image = format!(
        "<figure>{}<figcaption>seed {}</figcaption></figure>\n",
        shot.thumb(page, true, label),
        shot.params.seed
    );
    let info = |facts: String| {
        format!(
            "<div class=\"shot-info\">{facts}{}</div>",
            infotext(page, shot)
        )
    };
    match page.input.scores {
        Some(_) => format!(
            "<div class=\"shot\">\n{image}{}{}\n</div>\n",
            nearest(page, score),
            info(facts(score))
        ),
        None => format!(
            "<div class=\"shot single\">\n{image}{}\n</div>\n",
            info(String::new())
        ),
    }
}

fn nearest(page: &Page, score: Option<&ImageScoreEntry>) -> String {
    let Some(path) = score.and_then(|s| s.nearest_reference.as_deref()) else {
        let why = if score.is_some() {
            "no face to compare"
        } else {
            "not scored"
        };
        return format!(
            "<figure>{}<figcaption>nearest training photo</figcaption></figure>\n",
            placeholder(why)
        );
    };
    let resolved = reference_path(page.input.run, path);
    let href = std::path::absolute(&resolved).unwrap_or(resolved);
    let thumb = page.thumbs.element(
        &reference_key(path),
        Some(&href.display().to_string()),
        "nearest training photo",
    );
    let distance = score.and_then(|s| s.nearest_distance);
    format!(
        "<figure>{thumb}<figcaption>nearest training photo: {} · distance {}</figcaption></figure>\n",
        escape(file_name(path)),
        number(distance, 2)
    )
}

fn facts(score: Option<&ImageScoreEntry>) -> String {
    let Some(s) = score else {
        return "<p class=\"hint\">Not scored.</p>".to_string();
    };
    let mut out = format!(
        "<p class=\"facts\">{} · likeness {} · distance {} · {} face{}</p>",
        verdict_of(s),
        number(s.likeness, 2),
        number(s.distance, 3),
        s.n_faces,
        if s.n_faces == 1 { "" } else { "s" }
    );
    if !s.asks_for_person {
        out += &format!(
            "<p class=\"hint\">The prompt lacks the trigger word: the LoRA changed this image by {} against the base model's.</p>",
            number(s.control_change, 2)
        );
    }
    if let Some(copy) = &s.copy {
        out += &format!(
            "<p class=\"warn\">⚠ near-copy of {} ({} {:.3})</p>",
            escape(file_name(&copy.reference)),
            escape(&copy.kind),
            copy.value
        );
    }
    out
}

/// Whether the image shows the person (a leak when its prompt does not ask for them).
fn verdict_of(s: &ImageScoreEntry) -> String {
    match (s.error.as_deref(), s.n_faces, s.hit, s.asks_for_person) {
        (Some(e), _, _, _) => format!("<span class=\"bad\">unreadable: {}</span>", escape(e)),
        (None, 0, _, true) => "<span class=\"bad\">✕ no face found</span>".to_string(),
        (None, 0, _, false) => "<span class=\"good\">no face</span>".to_string(),
        (None, _, true, true) => "<span class=\"good\">✓ the person</span>".to_string(),
        (None, _, false, true) => "<span class=\"bad\">✕ not the person</span>".to_string(),
        (None, _, true, false) => "<span class=\"bad\">⚠ the person, unasked</span>".to_string(),
        (None, _, false, false) => {
            "<span class=\"good\">not the person (not asked)</span>".to_string()
        }
    }
}

fn infotext(page: &Page, shot: &Shot) -> String {
    let stored = page
        .thumbs
        .get(&super::page::cell_key(shot.image))
        .ok()
        .and_then(|t| t.infotext.clone());
    let (text, source) = match stored {
        Some(text) => (text, "infotext"),
        None => (rebuilt_infotext(shot.params), "settings from grid.json"),
    };
    format!(
        "<p class=\"label\">{source} · <a href=\"{}\">{}</a></p><pre class=\"infotext\">{}</pre>",
        file_href(shot.image),
        escape(shot.image),
        escape(&text)
    )
}

/// A1111-style parameters of a cell whose image holds no infotext.
fn rebuilt_infotext(p: &ParamsEntry) -> String {
    let mut text = p.prompt.clone();
    if !p.negative.is_empty() {
        text += &format!("\nNegative prompt: {}", p.negative);
    }
    text += &format!(
        "\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {}, Size: {}x{}",
        p.steps, p.sampler, p.cfg, p.seed, p.width, p.height
    );
    if p.clip_skip > 1 {
        text += &format!(", Clip skip: {}", p.clip_skip);
    }
    text
}
