//! The page: loads the thumbnails, puts the sections in order and wraps them in a document whose content security
//! policy forbids every network or file load (images are data URIs; styles and the script are inline).

use std::path::{Path, PathBuf};

use super::html::escape;
use super::layout::Layout;
use super::thumbs::{ThumbRequest, Thumbs};
use super::{curves, details, grid_view, heatmap, metadata, reference, summary, ReportInput};

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("script.js");
const POLICY: &str =
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'";

/// What every section reads.
pub struct Page<'a> {
    pub input: &'a ReportInput<'a>,
    pub layout: Layout<'a>,
    pub thumbs: Thumbs,
}

impl Page<'_> {
    /// The run folder's name (its absolute path's last component).
    pub fn run_name(&self) -> String {
        let absolute = std::path::absolute(self.input.run).unwrap_or(self.input.run.to_path_buf());
        absolute
            .file_name()
            .map_or(absolute.display().to_string(), |n| {
                n.to_string_lossy().into_owned()
            })
    }
}

/// The thumbnail key of a run-folder image.
pub fn cell_key(image: &str) -> String {
    format!("cell:{image}")
}

/// The thumbnail key of a reference photo.
pub fn reference_key(path: &str) -> String {
    format!("ref:{path}")
}

/// Where a reference photo is: as written when absolute or found from the current folder, else under the run.
pub fn reference_path(run: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() || p.exists() {
        p.to_path_buf()
    } else {
        run.join(p)
    }
}

/// The whole report.
pub fn render(input: &ReportInput<'_>) -> String {
    let page = Page {
        input,
        layout: Layout::new(input.manifest, input.scores, input.recommendation),
        thumbs: Thumbs::load(thumb_requests(input)),
    };
    let body = [
        summary::header(&page),
        summary::pick(&page),
        scores(&page),
        grid_view::grid(&page),
        details::details(&page),
        reference::reference(&page),
        metadata::metadata(&page),
        metadata::command(&page),
    ]
    .concat();
    document(&page, &body)
}

fn document(page: &Page, body: &str) -> String {
    let initial = page
        .layout
        .pick()
        .or(page.layout.positions.first())
        .map(|p| p.id())
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"{POLICY}\">\n<title>LoRA report: {}</title>\n<style>\n{STYLE}{}</style>\n</head>\n<body data-initial=\"{initial}\">\n<main>\n{body}</main>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        escape(&page.run_name()),
        page.thumbs.css()
    )
}

/// Every image the page shows: the cells', the controls', the reference photos and nearest photos.
fn thumb_requests(input: &ReportInput<'_>) -> Vec<ThumbRequest> {
    let manifest = input.manifest;
    let run_images = manifest
        .cells
        .iter()
        .map(|c| &c.image)
        .chain(manifest.controls.iter().map(|c| &c.image))
        .filter(|image| !image.is_empty())
        .map(|image| ThumbRequest {
            key: cell_key(image),
            path: input.run.join(image),
        });
    let mut requests: Vec<ThumbRequest> = run_images.collect();
    requests.extend(reference_requests(input));
    requests
}

fn reference_requests<'a>(input: &'a ReportInput<'_>) -> impl Iterator<Item = ThumbRequest> + 'a {
    let table = input.scores;
    let photos = table
        .into_iter()
        .flat_map(|t| t.reference.photos.iter().map(|p| p.path.as_str()));
    let nearest = table
        .into_iter()
        .flat_map(|t| t.cells.iter().chain(t.control.iter()))
        .flat_map(|c| c.images.iter())
        .filter_map(|i| i.nearest_reference.as_deref());
    photos.chain(nearest).map(|path| ThumbRequest {
        key: reference_key(path),
        path: reference_path(input.run, path),
    })
}

/// The heatmap and the curves (absent before scoring).
fn scores(page: &Page) -> String {
    let Some(table) = page.input.scores else {
        return String::new();
    };
    format!(
        "<section id=\"scores\">\n<h2>Scores</h2>\n<div class=\"panel\">\n<h3>Likeness by cell</h3>\n<div class=\"heatmap-wrap\">\n{}</div>\n<div class=\"scale\"><span>0 · base model</span><span class=\"scale-bar\" style=\"background:{}\"></span><span>1 · training photos</span><span class=\"scale-note\">★ pick · ✓ passes every gate · ✕ failed gates · click a cell for its detail</span></div>\n</div>\n<div class=\"panel\">\n<h3>Likeness and health against the epoch</h3>\n{}</div>\n</section>\n",
        heatmap::heatmap(&page.layout),
        heatmap::legend_gradient(),
        curves::curves(&page.layout, page.input.manifest, &table.baselines)
    )
}
