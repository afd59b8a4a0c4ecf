//! The reference photos (`id="reference"`): every training photo with its dataset-check flags (flagged ones
//! first), and the calibration the scores are measured against.

use super::html::{escape, file_name, number};
use super::page::{reference_key, reference_path, Page};
use crate::score::table::{Baselines, ReferencePhotoEntry, ScoreTable};

/// The reference section.
pub fn reference(page: &Page) -> String {
    let body = match page.input.scores {
        None => "<p class=\"note\">Not scored yet: no reference photos.</p>\n".to_string(),
        Some(table) => scored(page, table),
    };
    format!("<section id=\"reference\">\n<h2>Reference photos</h2>\n{body}</section>\n")
}

fn scored(page: &Page, table: &ScoreTable) -> String {
    let report = &table.reference;
    let flagged = report.photos.iter().filter(|p| is_flagged(p)).count();
    let mut photos: Vec<&ReferencePhotoEntry> = report.photos.iter().collect();
    photos.sort_by_key(|p| !is_flagged(p));
    let figures: Vec<String> = photos.iter().map(|p| photo(page, p)).collect();
    let inputs: Vec<String> = report
        .inputs
        .iter()
        .map(|i| format!("<code>{}</code>", escape(i)))
        .collect();
    format!(
        "<p>{} of {} photos used for the identity; {flagged} flagged. From {}.</p>\n<div class=\"refs\">\n{}</div>\n{}",
        report.used,
        report.photos.len(),
        inputs.join(", "),
        figures.concat(),
        calibration(&table.baselines)
    )
}

fn is_flagged(photo: &ReferencePhotoEntry) -> bool {
    !photo.flags.is_empty() || !photo.used
}

fn photo(page: &Page, photo: &ReferencePhotoEntry) -> String {
    let resolved = reference_path(page.input.run, &photo.path);
    let href = std::path::absolute(&resolved).unwrap_or(resolved);
    let thumb = page.thumbs.element(
        &reference_key(&photo.path),
        Some(&href.display().to_string()),
        file_name(&photo.path),
    );
    let mut chips: Vec<String> = photo
        .flags
        .iter()
        .map(|f| format!("<span class=\"chip fail\">{}</span>", escape(f)))
        .collect();
    if !photo.used {
        chips.push("<span class=\"chip muted\">not used</span>".to_string());
    }
    let class = if is_flagged(photo) {
        "ref flagged"
    } else {
        "ref"
    };
    format!(
        "<figure class=\"{class}\" data-label=\"{}\">{thumb}<figcaption><span class=\"name\" title=\"{}\">{}</span><span class=\"hint\">{} face{} · to the others {}</span>{}</figcaption></figure>\n",
        escape(&photo.path),
        escape(&photo.path),
        escape(file_name(&photo.path)),
        photo.n_faces,
        if photo.n_faces == 1 { "" } else { "s" },
        number(photo.distance_to_others, 2),
        chips.concat()
    )
}

fn calibration(b: &Baselines) -> String {
    let rows = [
        (
            "Same-person threshold (dlib distance)",
            format!("{:.2}", b.threshold),
        ),
        (
            "Likeness 1: median distance between the training photos",
            format!("{:.3}", b.reference_distance),
        ),
        (
            "Likeness 0: distance of a stranger",
            format!(
                "{:.3} ({})",
                b.stranger_distance,
                escape(&b.stranger_source)
            ),
        ),
        (
            "Near-copy: face distance under",
            format!("{:.3}", b.copy_distance),
        ),
        (
            "Near-copy: thumbnail correlation from",
            format!("{:.2}", b.copy_correlation),
        ),
        ("Healthy pixels measured on", escape(&b.health_source)),
        (
            "Flexibility measured against",
            escape(&b.flexibility_source),
        ),
    ];
    let body: Vec<String> = rows
        .iter()
        .map(|(k, v)| format!("<tr><th scope=\"row\">{k}</th><td>{v}</td></tr>"))
        .collect();
    format!(
        "<details class=\"calibration\"><summary>Calibration</summary><table class=\"data\">{}</table></details>\n",
        body.concat()
    )
}
