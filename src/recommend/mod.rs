//! Recommendation: turns a score table into a ranked choice of (LoRA file, weight) with reasons. A pure function
//! of the table and the thresholds (no I/O). Rules (docs/scoring.md): a cell passes when it clears the hit-rate,
//! copy-risk, flexibility and health gates; the pick is the passing cell with the best calibrated likeness
//! (rounded to 0.01), ties to the earlier epoch, then to the weight nearer 1.0.

use serde::{Deserialize, Serialize};

use crate::score::table::{Baselines, CellScore, ScoreTable};

/// Gate thresholds (the CLI's flags).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Least share of images whose face is the person (dlib distance under the threshold).
    pub min_hit_rate: f32,
    /// Largest share of images that are near-copies of a training photo.
    pub max_copy_rate: f32,
    /// Least flexibility (variety relative to the base model), when measured.
    pub min_flexibility: f32,
    /// Largest increase of the clipped-pixel share over the baseline (0.10 = 10 points).
    pub max_clipped_increase: f32,
    /// Largest saturation relative to the baseline.
    pub max_saturation_ratio: f32,
    /// Largest high-frequency energy relative to the baseline.
    pub max_noise_ratio: f32,
    /// An epoch whose best likeness is below this is called under-trained.
    pub under_trained_likeness: f32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_hit_rate: 0.5,
            max_copy_rate: 0.25,
            min_flexibility: 0.5,
            max_clipped_increase: 0.10,
            max_saturation_ratio: 1.5,
            max_noise_ratio: 2.0,
            under_trained_likeness: 0.5,
        }
    }
}

/// The decision: `pick` (None when no cell passes), every cell ranked, the reasons, and each epoch's best weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub pick: Option<Pick>,
    pub ranking: Vec<RankedCell>,
    pub reasons: Vec<String>,
    pub epochs: Vec<EpochSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pick {
    pub file: Option<String>,
    pub epoch: Option<u32>,
    pub weight: Option<f64>,
    pub label: String,
    pub likeness: Option<f32>,
}

/// One cell in rank order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankedCell {
    pub file: Option<String>,
    pub epoch: Option<u32>,
    pub weight: Option<f64>,
    pub label: String,
    /// The calibrated likeness the ranking uses (0 when no face was found).
    pub score: f32,
    pub passed: bool,
    /// Gates failed: `hit_rate`, `copy_risk`, `flexibility`, `health`.
    pub failed: Vec<String>,
    /// Why it failed, or what it achieved.
    pub reasons: Vec<String>,
}

/// One LoRA file: its best passing weight, or why none passes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    pub file: Option<String>,
    pub epoch: Option<u32>,
    pub best_weight: Option<f64>,
    pub likeness: Option<f32>,
    /// "epoch 2: likeness 0.31, under-trained".
    pub reason: String,
}

/// The recommendation for a score table.
pub fn recommend(table: &ScoreTable, thresholds: &Thresholds) -> Recommendation {
    let mut ranking: Vec<(RankedCell, &CellScore)> = table
        .cells
        .iter()
        .map(|cell| (rank_cell(cell, &table.baselines, thresholds), cell))
        .collect();
    ranking.sort_by(|(a, _), (b, _)| compare(a, b));
    let any_file = ranking.iter().any(|(r, _)| r.file.is_some());
    let pick = ranking
        .iter()
        .find(|(r, _)| r.passed && (r.file.is_some() || !any_file))
        .map(|(r, _)| Pick {
            file: r.file.clone(),
            epoch: r.epoch,
            weight: r.weight,
            label: r.label.clone(),
            likeness: Some(r.score),
        });
    let epochs = epoch_summaries(&ranking, thresholds);
    let ranked: Vec<RankedCell> = ranking.into_iter().map(|(r, _)| r).collect();
    let mut reasons = headline(pick.as_ref(), &ranked, table);
    reasons.extend(epochs.iter().map(|e| e.reason.clone()));
    Recommendation {
        pick,
        ranking: ranked,
        reasons,
        epochs,
    }
}

/// Passing cells first, then likeness (to 0.01) descending, earlier epoch, weight nearer 1.0.
fn compare(a: &RankedCell, b: &RankedCell) -> std::cmp::Ordering {
    let rounded = |r: &RankedCell| (r.score * 100.0).round() as i64;
    let epoch = |r: &RankedCell| r.epoch.unwrap_or(u32::MAX);
    let weight_gap = |r: &RankedCell| r.weight.map_or(f64::MAX, |w| (w - 1.0).abs());
    b.passed
        .cmp(&a.passed)
        .then(rounded(b).cmp(&rounded(a)))
        .then(epoch(a).cmp(&epoch(b)))
        .then(weight_gap(a).total_cmp(&weight_gap(b)))
}

fn rank_cell(cell: &CellScore, baselines: &Baselines, thresholds: &Thresholds) -> RankedCell {
    let gates = [
        ("hit_rate", hit_rate_gate(cell, thresholds)),
        ("copy_risk", copy_gate(cell, thresholds)),
        ("flexibility", flexibility_gate(cell, thresholds)),
        ("health", health_gate(cell, baselines, thresholds)),
    ];
    let failed: Vec<String> = gates
        .iter()
        .filter(|(_, g)| g.is_some())
        .map(|(name, _)| name.to_string())
        .collect();
    let mut reasons: Vec<String> = gates.into_iter().filter_map(|(_, g)| g).collect();
    if reasons.is_empty() {
        reasons.push(achievement(cell));
    }
    RankedCell {
        file: cell.file.clone(),
        epoch: cell.epoch,
        weight: cell.weight,
        label: cell.label.clone(),
        score: cell.likeness.unwrap_or(0.0),
        passed: failed.is_empty(),
        failed,
        reasons,
    }
}

fn achievement(cell: &CellScore) -> String {
    let hits = cell.images.iter().filter(|i| i.hit).count();
    let mut text = format!(
        "likeness {:.2}, the person in {hits}/{} images",
        cell.likeness.unwrap_or(0.0),
        cell.images.len()
    );
    if let Some(f) = cell.flexibility {
        text += &format!(", flexibility {f:.2}");
    }
    if let (Some(change), Some(leak)) = (cell.side_effect, cell.leak_rate) {
        text += &format!(
            "; prompts without the trigger changed by {change:.2}, the person in {:.0}% of them",
            leak * 100.0
        );
    }
    text
}

fn hit_rate_gate(cell: &CellScore, thresholds: &Thresholds) -> Option<String> {
    let n = cell.images.len();
    if n == 0 {
        return Some(format!(
            "no image to score ({} missing, {} failed)",
            cell.missing, cell.failed
        ));
    }
    if cell.hit_rate >= thresholds.min_hit_rate {
        return None;
    }
    let hits = cell.images.iter().filter(|i| i.hit).count();
    let faceless = cell.images.iter().filter(|i| i.n_faces == 0).count();
    let mut text = format!(
        "the person in {hits}/{n} images (needs {:.0}%)",
        thresholds.min_hit_rate * 100.0
    );
    if faceless > 0 {
        text += &format!(", {faceless} without a face");
    }
    if let Some(likeness) = cell.likeness {
        text += &format!(", likeness {likeness:.2}");
    }
    Some(text)
}

fn copy_gate(cell: &CellScore, thresholds: &Thresholds) -> Option<String> {
    if cell.copy_rate <= thresholds.max_copy_rate {
        return None;
    }
    let photos = copied_photos(cell);
    Some(format!(
        "near-copies of {} training photo{} ({}) in {}/{} images",
        photos.len(),
        if photos.len() == 1 { "" } else { "s" },
        photos.join(", "),
        cell.images.iter().filter(|i| i.copy.is_some()).count(),
        cell.images.len()
    ))
}

/// File names of the training photos a cell copies, each once.
fn copied_photos(cell: &CellScore) -> Vec<String> {
    let mut photos: Vec<String> = Vec::new();
    for copy in cell.images.iter().filter_map(|i| i.copy.as_ref()) {
        let name = std::path::Path::new(&copy.reference)
            .file_name()
            .map_or(copy.reference.clone(), |n| n.to_string_lossy().into_owned());
        if !photos.contains(&name) {
            photos.push(name);
        }
    }
    photos
}

fn flexibility_gate(cell: &CellScore, thresholds: &Thresholds) -> Option<String> {
    let flexibility = cell.flexibility?;
    (flexibility < thresholds.min_flexibility).then(|| {
        format!(
            "little variety across seeds and prompts: flexibility {flexibility:.2} (needs {:.2}; overfit)",
            thresholds.min_flexibility
        )
    })
}

fn health_gate(cell: &CellScore, baselines: &Baselines, thresholds: &Thresholds) -> Option<String> {
    if cell.images.is_empty() {
        return None;
    }
    let (h, base) = (&cell.health, &baselines.health);
    let ratio = |value: f32, base: f32| value / base.max(1e-3);
    let mut problems = Vec::new();
    if h.clipped - base.clipped > thresholds.max_clipped_increase {
        problems.push(format!(
            "{:.0}% clipped pixels (baseline {:.0}%)",
            h.clipped * 100.0,
            base.clipped * 100.0
        ));
    }
    if ratio(h.saturation, base.saturation) > thresholds.max_saturation_ratio {
        problems.push(format!(
            "saturation {:.2} (baseline {:.2})",
            h.saturation, base.saturation
        ));
    }
    if ratio(h.high_freq, base.high_freq) > thresholds.max_noise_ratio {
        problems.push(format!(
            "high-frequency noise {:.1}× the baseline",
            ratio(h.high_freq, base.high_freq)
        ));
    }
    (!problems.is_empty()).then(|| format!("fried: {}", problems.join(", ")))
}

fn headline(pick: Option<&Pick>, ranking: &[RankedCell], table: &ScoreTable) -> Vec<String> {
    let passing = ranking.iter().filter(|r| r.passed).count();
    match pick {
        Some(pick) => {
            let best = ranking.iter().find(|r| r.label == pick.label);
            let why = best.map_or(String::new(), |b| b.reasons.join("; "));
            vec![format!(
                "pick: {} ({why}); best of {passing} passing cells out of {}",
                pick.label,
                ranking.len()
            )]
        }
        None if table.cells.is_empty() => vec!["no pick: the run has no cells".to_string()],
        None => {
            let count = |gate: &str| {
                ranking
                    .iter()
                    .filter(|r| r.failed.iter().any(|f| f == gate))
                    .count()
            };
            let failures: Vec<String> = ["hit_rate", "copy_risk", "flexibility", "health"]
                .iter()
                .map(|gate| (gate, count(gate)))
                .filter(|(_, n)| *n > 0)
                .map(|(gate, n)| format!("{} in {n} of {} cells", gate_name(gate), ranking.len()))
                .collect();
            vec![format!(
                "no pick: no cell passes every gate; failed {}",
                failures.join(", ")
            )]
        }
    }
}

fn gate_name(gate: &str) -> &'static str {
    match gate {
        "hit_rate" => "hit rate",
        "copy_risk" => "copy risk",
        "flexibility" => "flexibility",
        _ => "health",
    }
}

/// One summary per LoRA file, in epoch order.
fn epoch_summaries(
    ranking: &[(RankedCell, &CellScore)],
    thresholds: &Thresholds,
) -> Vec<EpochSummary> {
    let mut files: Vec<(Option<String>, Option<u32>)> = Vec::new();
    for (r, _) in ranking {
        if r.file.is_some() && !files.iter().any(|f| f.0 == r.file) {
            files.push((r.file.clone(), r.epoch));
        }
    }
    files.sort_by_key(|f| (f.1.unwrap_or(u32::MAX), f.0.clone()));
    files
        .into_iter()
        .map(|(file, epoch)| {
            let cells: Vec<&(RankedCell, &CellScore)> =
                ranking.iter().filter(|(r, _)| r.file == file).collect();
            epoch_summary(file, epoch, &cells, thresholds)
        })
        .collect()
}

fn epoch_summary(
    file: Option<String>,
    epoch: Option<u32>,
    cells: &[&(RankedCell, &CellScore)],
    thresholds: &Thresholds,
) -> EpochSummary {
    let name = match epoch {
        Some(e) => format!("epoch {e}"),
        None => file.clone().unwrap_or_default(),
    };
    let best_likeness = cells.iter().map(|(r, _)| r.score).fold(0.0f32, f32::max);
    let best = cells.iter().find(|(r, _)| r.passed);
    let reason = match best {
        Some((r, _)) => format!(
            "{name}: best at weight {} (likeness {:.2})",
            r.weight.map_or("-".to_string(), |w| w.to_string()),
            r.score
        ),
        None => format!(
            "{name}: {}",
            epoch_failure(cells, best_likeness, thresholds)
        ),
    };
    EpochSummary {
        file,
        epoch,
        best_weight: best.and_then(|(r, _)| r.weight),
        likeness: best.map(|(r, _)| r.score),
        reason,
    }
}

/// Why no weight of an epoch passes: copies first (the most serious), then fried weights, no face at all,
/// under-training, missed faces, lack of variety.
fn epoch_failure(
    cells: &[&(RankedCell, &CellScore)],
    best_likeness: f32,
    thresholds: &Thresholds,
) -> String {
    let failing = |gate: &str| -> Vec<&(RankedCell, &CellScore)> {
        cells
            .iter()
            .copied()
            .filter(|(r, _)| r.failed.iter().any(|f| f == gate))
            .collect()
    };
    let weights = |list: &[&(RankedCell, &CellScore)]| {
        list.iter()
            .map(|(r, _)| r.weight.map_or("-".to_string(), |w| w.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let copies = failing("copy_risk");
    if !copies.is_empty() {
        let mut photos: Vec<String> = Vec::new();
        for (_, cell) in &copies {
            for p in copied_photos(cell) {
                if !photos.contains(&p) {
                    photos.push(p);
                }
            }
        }
        return format!(
            "near-copies of {} training photo{} ({}) at weight {}",
            photos.len(),
            if photos.len() == 1 { "" } else { "s" },
            photos.join(", "),
            weights(&copies)
        );
    }
    let fried = failing("health");
    if !fried.is_empty() {
        return format!(
            "fried at weight {} ({})",
            weights(&fried),
            fried[0].0.reasons.join("; ")
        );
    }
    let images: usize = cells.iter().map(|(_, c)| c.images.len()).sum();
    let faces: usize = cells.iter().map(|(_, c)| c.faces).sum();
    if images > 0 && faces == 0 {
        return format!("no face found in any of its {images} images");
    }
    if best_likeness < thresholds.under_trained_likeness {
        return format!("likeness {best_likeness:.2}, under-trained");
    }
    let misses = failing("hit_rate");
    if !misses.is_empty() {
        return format!(
            "face not found or not the person at weight {}",
            weights(&misses)
        );
    }
    format!(
        "too little variety at weight {} (overfit)",
        weights(&failing("flexibility"))
    )
}
