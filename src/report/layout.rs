//! The report's view of a run: one position per grid (x, y) joining the manifest's cells (every seed and Z value)
//! with the position's scores, its ranking and whether it is the pick.

use std::collections::HashMap;

use crate::grid::manifest::{AxisEntry, CellEntry, Manifest};
use crate::recommend::{RankedCell, Recommendation};
use crate::score::table::{CellScore, ImageScoreEntry, ScoreTable};

/// One (x, y) position of the grid.
pub struct Position<'a> {
    pub x: usize,
    pub y: usize,
    /// The manifest's cells at this position, by Z value then seed.
    pub cells: Vec<&'a CellEntry>,
    pub score: Option<&'a CellScore>,
    pub rank: Option<&'a RankedCell>,
    pub is_pick: bool,
    /// The score label, else the axis labels.
    pub label: String,
}

impl Position<'_> {
    /// The id of its detail block.
    pub fn id(&self) -> String {
        format!("cell-{}-{}", self.x, self.y)
    }
}

/// Grid positions row by row, with the axis labels.
pub struct Layout<'a> {
    pub x_labels: Vec<String>,
    /// One empty label when the grid has no Y axis.
    pub y_labels: Vec<String>,
    /// The labels without their axis-name prefix (`0.8` for `LoRA weight: 0.8`).
    pub x_short: Vec<String>,
    pub y_short: Vec<String>,
    pub positions: Vec<Position<'a>>,
    /// Every scored image (cells and control) by its path in the run folder.
    pub image_scores: HashMap<&'a str, &'a ImageScoreEntry>,
}

impl<'a> Layout<'a> {
    pub fn new(
        manifest: &'a Manifest,
        scores: Option<&'a ScoreTable>,
        recommendation: Option<&'a Recommendation>,
    ) -> Layout<'a> {
        let max_x = manifest.cells.iter().map(|c| c.x_index + 1).max();
        let max_y = manifest.cells.iter().map(|c| c.y_index + 1).max();
        let x_labels = labels(Some(&manifest.axes.x), max_x.unwrap_or(0));
        let y_labels = labels(manifest.axes.y.as_ref(), max_y.unwrap_or(1));
        let mut positions = Vec::with_capacity(x_labels.len() * y_labels.len());
        for (y, y_label) in y_labels.iter().enumerate() {
            for (x, x_label) in x_labels.iter().enumerate() {
                let label = format!("{x_label} · {y_label}");
                positions.push(position(manifest, scores, recommendation, (x, y), label));
            }
        }
        Layout {
            x_short: short_labels(Some(&manifest.axes.x), &x_labels),
            y_short: short_labels(manifest.axes.y.as_ref(), &y_labels),
            x_labels,
            y_labels,
            positions,
            image_scores: image_scores(scores),
        }
    }

    /// The position at (x, y).
    pub fn at(&self, x: usize, y: usize) -> Option<&Position<'a>> {
        self.positions.get(y * self.x_labels.len() + x)
    }

    /// The picked position.
    pub fn pick(&self) -> Option<&Position<'a>> {
        self.positions.iter().find(|p| p.is_pick)
    }
}

/// An axis's labels, extended with numbers to cover `count` positions.
fn labels(axis: Option<&AxisEntry>, count: usize) -> Vec<String> {
    let mut labels: Vec<String> = axis.map(|a| a.labels.clone()).unwrap_or_default();
    if axis.is_none() && count <= 1 {
        return vec![String::new()];
    }
    while labels.len() < count {
        labels.push(format!("#{}", labels.len() + 1));
    }
    labels
}

fn short_labels(axis: Option<&AxisEntry>, labels: &[String]) -> Vec<String> {
    let prefix = axis.map(|a| format!("{}: ", a.label)).unwrap_or_default();
    labels
        .iter()
        .map(|l| l.strip_prefix(prefix.as_str()).unwrap_or(l).to_string())
        .collect()
}

fn position<'a>(
    manifest: &'a Manifest,
    scores: Option<&'a ScoreTable>,
    recommendation: Option<&'a Recommendation>,
    (x, y): (usize, usize),
    axis_label: String,
) -> Position<'a> {
    let mut cells: Vec<&CellEntry> = manifest
        .cells
        .iter()
        .filter(|c| c.x_index == x && c.y_index == y)
        .collect();
    cells.sort_by_key(|c| (c.z_index, c.seed_index));
    let score = scores.and_then(|t| t.cells.iter().find(|c| c.x_index == x && c.y_index == y));
    let rank = score.and_then(|s| {
        recommendation.and_then(|r| r.ranking.iter().find(|rank| rank.label == s.label))
    });
    let pick = recommendation.and_then(|r| r.pick.as_ref());
    Position {
        x,
        y,
        cells,
        score,
        rank,
        is_pick: matches!((score, pick), (Some(s), Some(p)) if s.label == p.label),
        label: score.map_or(axis_label, |s| s.label.clone()),
    }
}

fn image_scores(scores: Option<&ScoreTable>) -> HashMap<&str, &ImageScoreEntry> {
    let Some(table) = scores else {
        return HashMap::new();
    };
    table
        .cells
        .iter()
        .chain(table.control.iter())
        .flat_map(|c| c.images.iter())
        .map(|i| (i.image.as_str(), i))
        .collect()
}
