//! The grid (`id="grid"`): the base-model control, then a table with the grid's rows and columns; each cell shows
//! up to four of its images and a badge with its likeness and hits; the pick is highlighted.

use super::html::{escape, file_href, percent};
use super::layout::Position;
use super::page::{cell_key, Page};
use super::thumbs::placeholder;
use crate::grid::manifest::ParamsEntry;

/// Images shown in a grid cell.
const MOSAIC: usize = 4;

/// One image of a cell or control as the grid and the detail show it.
pub struct Shot<'a> {
    pub image: &'a str,
    pub status: &'a str,
    pub reason: Option<&'a str>,
    pub params: &'a ParamsEntry,
}

impl<'a> Shot<'a> {
    /// The images of a grid position.
    pub fn of_position(position: &Position<'a>) -> Vec<Shot<'a>> {
        position
            .cells
            .iter()
            .map(|c| Shot {
                image: &c.image,
                status: &c.status,
                reason: c.reason.as_deref(),
                params: &c.params,
            })
            .collect()
    }

    /// The images of the base-model control.
    pub fn of_controls(page: &Page<'a>) -> Vec<Shot<'a>> {
        page.input
            .manifest
            .controls
            .iter()
            .map(|c| Shot {
                image: &c.image,
                status: &c.status,
                reason: c.reason.as_deref(),
                params: &c.params,
            })
            .collect()
    }

    /// Its thumbnail (a link to the full image when `link`), or a placeholder saying why there is none.
    pub fn thumb(&self, page: &Page, link: bool, label: &str) -> String {
        let key = cell_key(self.image);
        match (page.thumbs.get(&key), self.status) {
            (Ok(_), _) => page.thumbs.element(&key, link.then_some(self.image), label),
            (Err(_), "missing") => placeholder("not rendered yet"),
            (Err(_), "failed") => placeholder(&format!(
                "render failed: {}",
                self.reason.unwrap_or("unknown reason")
            )),
            (Err(reason), _) => placeholder(reason),
        }
    }
}

/// The grid section.
pub fn grid(page: &Page) -> String {
    format!(
        "<section id=\"grid\">\n<h2>Grid</h2>\n<p class=\"hint\">Click a cell for its images, infotext and nearest training photo. Badge: calibrated likeness · images showing the person.</p>\n{}<div class=\"grid-wrap\">\n<table class=\"grid\">\n{}{}</table>\n</div>\n{}</section>\n",
        control(page),
        head(page),
        rows(page),
        grid_files(page)
    )
}

fn head(page: &Page) -> String {
    let manifest = page.input.manifest;
    let corner = match &manifest.axes.y {
        Some(y) => format!("{} ↓ · {} →", y.label, manifest.axes.x.label),
        None => format!("{} →", manifest.axes.x.label),
    };
    let columns: Vec<String> = page
        .layout
        .x_labels
        .iter()
        .map(|l| format!("<th scope=\"col\">{}</th>", escape(l)))
        .collect();
    format!(
        "<thead><tr><th class=\"corner\">{}</th>{}</tr></thead>\n",
        escape(&corner),
        columns.concat()
    )
}

fn rows(page: &Page) -> String {
    let layout = &page.layout;
    let mut out = String::from("<tbody>\n");
    for (y, label) in layout.y_labels.iter().enumerate() {
        out += &format!("<tr><th scope=\"row\">{}</th>", escape(label));
        for x in 0..layout.x_labels.len() {
            out += &layout.at(x, y).map_or(String::new(), |p| cell(page, p));
        }
        out += "</tr>\n";
    }
    out + "</tbody>\n"
}

fn cell(page: &Page, position: &Position) -> String {
    let verdict = match (position.is_pick, position.rank) {
        (true, _) => "pick",
        (false, Some(r)) if r.passed => "pass",
        (false, Some(_)) => "fail",
        (false, None) => "unscored",
    };
    format!(
        "<td class=\"cell {verdict}\" data-label=\"{}\" data-target=\"{}\" tabindex=\"0\">{}{}</td>",
        escape(&position.label),
        position.id(),
        mosaic(page, &Shot::of_position(position), &position.label),
        badge(position)
    )
}

/// Up to four thumbnails of a cell, with the count of the others.
pub fn mosaic(page: &Page, shots: &[Shot], label: &str) -> String {
    if shots.is_empty() {
        return format!("<div class=\"mosaic n1\">{}</div>", placeholder("no cell"));
    }
    let shown: Vec<String> = shots
        .iter()
        .take(MOSAIC)
        .map(|s| s.thumb(page, false, label))
        .collect();
    let more = match shots.len().saturating_sub(MOSAIC) {
        0 => String::new(),
        n => format!("<span class=\"more\">+{n}</span>"),
    };
    format!(
        "<div class=\"mosaic n{}\">{}{more}</div>",
        shown.len(),
        shown.concat()
    )
}

fn badge(position: &Position) -> String {
    let Some(score) = position.score else {
        let rendered = position.cells.iter().filter(|c| c.status == "ok").count();
        return format!(
            "<div class=\"badge\"><span class=\"hits\">{rendered}/{} rendered</span></div>",
            position.cells.len()
        );
    };
    let (hits, asking) = super::details::person_hits(score);
    let likeness = score
        .likeness
        .map_or("no face".to_string(), |l| format!("{l:.2}"));
    let star = if position.is_pick {
        "<span class=\"star\">★ pick</span>"
    } else {
        ""
    };
    let mark = match position.rank {
        Some(r) if r.passed => "<span class=\"mark\">✓</span>",
        Some(_) => "<span class=\"mark\">✕</span>",
        None => "",
    };
    format!(
        "<div class=\"badge\">{star}<span class=\"like\">{likeness}</span><span class=\"hits\" title=\"hit rate {}\">{hits}/{}</span>{mark}</div>",
        percent(score.hit_rate),
        asking
    )
}

/// The base-model control strip (absent when the run has no controls).
fn control(page: &Page) -> String {
    let shots = Shot::of_controls(page);
    if shots.is_empty() {
        return String::new();
    }
    let likeness = page
        .input
        .scores
        .and_then(|t| t.control.as_ref())
        .map_or(String::new(), |c| {
            let (hits, asking) = super::details::person_hits(c);
            format!(" · the person in {hits}/{asking} images")
        });
    format!(
        "<div class=\"control\" data-target=\"control\" data-label=\"None\" tabindex=\"0\">{}<div class=\"control-text\"><b>Base model, no LoRA</b>{likeness}<br><span class=\"hint\">the control every likeness is measured against</span></div></div>\n",
        mosaic(page, &shots, "base model")
    )
}

fn grid_files(page: &Page) -> String {
    let links: Vec<String> = page
        .input
        .manifest
        .grids
        .iter()
        .map(|g| format!("<a href=\"{}\">{}</a>", file_href(&g.file), escape(&g.file)))
        .collect();
    if links.is_empty() {
        return String::new();
    }
    format!(
        "<p class=\"hint\">Full-size grid images: {}</p>\n",
        links.join(" · ")
    )
}
