//! The scoring formulas (docs/scoring.md), as pure functions of image records: the reference model and its
//! dataset check, the baselines, and the score of a cell's images.

use super::pixels::{correlation, PixelStats};
use super::records::ImageRecord;
use super::table::{
    Baselines, CellScore, CopyEntry, ImageScoreEntry, ReferencePhotoEntry, ReferenceReport,
};
use crate::face::pipeline::{mean_descriptor, Descriptor};
use crate::face::reference::{euclidean, leave_one_out_distances};
use crate::face::Point;

/// Settings of the formulas (the CLI's flags; defaults in [`ScoreSettings::default`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreSettings {
    /// dlib's same-person distance.
    pub threshold: f32,
    /// Likeness 0 when the run has no control face: a typical distance between two different people.
    pub default_stranger_distance: f32,
    /// Near-copy: closer to one reference photo than this share of the reference photos' median
    /// nearest-neighbour distance.
    pub copy_factor: f32,
    /// Pixel near-copy: thumbnail correlation at least this.
    pub copy_correlation: f32,
    /// Two reference photos closer than this are duplicates.
    pub duplicate_distance: f32,
    /// The word that makes a prompt ask for the person (None: derived from the reference folders).
    pub trigger: Option<String>,
}

impl Default for ScoreSettings {
    fn default() -> Self {
        ScoreSettings {
            threshold: 0.6,
            default_stranger_distance: 0.8,
            copy_factor: 0.5,
            copy_correlation: 0.92,
            duplicate_distance: 0.12,
            trigger: None,
        }
    }
}

/// One image to score: where it is, what made it, and its record (or why it could not be read).
#[derive(Clone, Debug)]
pub struct ImageInput {
    pub image: String,
    pub seed: u64,
    pub z_index: usize,
    pub prompt: String,
    /// The prompt names the person; images that do not are the side-effect test.
    pub asks_for_person: bool,
    /// Thumbnail of the control image of the same seed and prompt, when there is one.
    pub control_thumbnail: Option<Vec<u8>>,
    pub record: Result<ImageRecord, String>,
}

/// A reference photo and its record (or why it could not be read).
#[derive(Clone, Debug)]
pub struct ReferenceInput {
    pub path: String,
    pub record: Result<ImageRecord, String>,
}

/// The reference identity: the used faces, their mean, and each photo's leave-one-out figures.
#[derive(Clone, Debug)]
pub struct ReferenceModel {
    pub report: ReferenceReport,
    /// (path, descriptor, thumbnail) of the used photos.
    used: Vec<(String, Descriptor, Vec<u8>)>,
    /// All readable photos' thumbnails (pixel copies of a photo without a face count too).
    thumbnails: Vec<(String, Vec<u8>)>,
    mean: Descriptor,
    /// Nearest-neighbour distance of each used photo to the other used photos.
    nearest_neighbour: Vec<f32>,
    records: Vec<ImageRecord>,
}

impl ReferenceModel {
    /// Builds the model; None when no photo has a face.
    pub fn new(
        inputs: Vec<String>,
        photos: &[ReferenceInput],
        settings: &ScoreSettings,
    ) -> Option<ReferenceModel> {
        let readable: Vec<(&str, &ImageRecord)> = photos
            .iter()
            .filter_map(|p| p.record.as_ref().ok().map(|r| (p.path.as_str(), r)))
            .collect();
        let used: Vec<(String, Descriptor, Vec<u8>)> = readable
            .iter()
            .filter_map(|(path, r)| {
                let face = r.face.as_ref()?;
                Some((path.to_string(), face.descriptor(), r.thumbnail_levels()))
            })
            .collect();
        if used.is_empty() {
            return None;
        }
        let descriptors: Vec<Descriptor> = used.iter().map(|u| u.1).collect();
        let loo = leave_one_out_distances(&descriptors);
        let nearest: Vec<Option<(usize, f32)>> = (0..used.len())
            .map(|i| nearest_other(&descriptors, i))
            .collect();
        let mut model = ReferenceModel {
            report: ReferenceReport {
                inputs,
                photos: Vec::new(),
                used: used.len(),
            },
            thumbnails: readable
                .iter()
                .map(|(p, r)| (p.to_string(), r.thumbnail_levels()))
                .collect(),
            mean: mean_descriptor(&descriptors),
            nearest_neighbour: nearest.iter().flatten().map(|n| n.1).collect(),
            records: readable.iter().map(|(_, r)| (*r).clone()).collect(),
            used,
        };
        model.report.photos = photos
            .iter()
            .map(|p| model.photo_entry(p, &loo, &nearest, settings))
            .collect();
        Some(model)
    }

    fn photo_entry(
        &self,
        photo: &ReferenceInput,
        loo: &[Option<f32>],
        nearest: &[Option<(usize, f32)>],
        settings: &ScoreSettings,
    ) -> ReferencePhotoEntry {
        let mut entry = ReferencePhotoEntry {
            path: photo.path.clone(),
            n_faces: 0,
            used: false,
            distance_to_others: None,
            nearest_other: None,
            nearest_other_distance: None,
            flags: Vec::new(),
        };
        let record = match &photo.record {
            Ok(record) => record,
            Err(reason) => {
                entry.flags.push(format!("unreadable: {reason}"));
                return entry;
            }
        };
        entry.n_faces = record.n_faces;
        match record.n_faces {
            0 => entry.flags.push("no face: not used".to_string()),
            1 => {}
            n => entry.flags.push(format!("{n} faces: the largest is used")),
        }
        let Some(index) = self.used.iter().position(|u| u.0 == photo.path) else {
            return entry;
        };
        entry.used = true;
        entry.distance_to_others = loo[index];
        if let Some(d) = loo[index].filter(|d| *d > settings.threshold) {
            entry.flags.push(format!(
                "outlier: {d:.2} from the other photos (same person below {:.2})",
                settings.threshold
            ));
        }
        if let Some((other, distance)) = nearest[index] {
            entry.nearest_other = Some(self.used[other].0.clone());
            entry.nearest_other_distance = Some(distance);
            let pixels = correlation(&self.used[index].2, &self.used[other].2);
            if distance < settings.duplicate_distance || pixels >= settings.copy_correlation {
                entry.flags.push(format!(
                    "duplicate of {} (distance {distance:.2}, thumbnail correlation {pixels:.2})",
                    self.used[other].0
                ));
            }
        }
        entry
    }

    /// Distance to the reference mean.
    pub fn distance(&self, descriptor: &Descriptor) -> f32 {
        euclidean(&self.mean, descriptor)
    }

    /// The nearest used photo and its distance.
    pub fn nearest(&self, descriptor: &Descriptor) -> (String, f32) {
        self.used
            .iter()
            .map(|(path, d, _)| (path.clone(), euclidean(d, descriptor)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or_default()
    }

    /// The reference photo whose thumbnail correlates most with `thumbnail`.
    fn most_correlated(&self, thumbnail: &[u8]) -> Option<(String, f32)> {
        self.thumbnails
            .iter()
            .map(|(path, t)| (path.clone(), correlation(t, thumbnail)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// Index and distance of the descriptor nearest to `descriptors[i]` among the others.
fn nearest_other(descriptors: &[Descriptor], i: usize) -> Option<(usize, f32)> {
    descriptors
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(j, d)| (j, euclidean(d, &descriptors[i])))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// The baselines: identity from the reference photos and the control, health and flexibility from the control
/// (else from the reference photos).
pub fn baselines(
    reference: &ReferenceModel,
    control: &[ImageInput],
    settings: &ScoreSettings,
) -> Baselines {
    let loo: Vec<f32> = reference
        .report
        .photos
        .iter()
        .filter_map(|p| p.distance_to_others)
        .collect();
    let reference_distance = median(&loo).unwrap_or(0.0);
    let control_records: Vec<&ImageRecord> = control
        .iter()
        .filter_map(|i| i.record.as_ref().ok())
        .collect();
    let control_distances: Vec<f32> = control_records
        .iter()
        .filter_map(|r| r.face.as_ref())
        .map(|f| reference.distance(&f.descriptor()))
        .collect();
    let (stranger, stranger_source) = match median(&control_distances) {
        Some(d) => (d, "control"),
        None => (settings.default_stranger_distance, "default"),
    };
    let copy_distance =
        median(&reference.nearest_neighbour).map_or(0.2, |d| d * settings.copy_factor);
    let reference_records: Vec<&ImageRecord> = reference.records.iter().collect();
    let (health_records, health_source) = match control_records.is_empty() {
        false => (&control_records, "control"),
        true => (&reference_records, "reference"),
    };
    let (flex_records, flexibility_source) = match control_records.len() >= 2 {
        true => (&control_records, "control"),
        false => (&reference_records, "reference"),
    };
    Baselines {
        threshold: settings.threshold,
        reference_distance,
        // Likeness needs likeness-0 beyond likeness-1; a control that already looks like the person (a
        // celebrity the base model knows) would otherwise make every cell a stranger.
        stranger_distance: stranger.max(reference_distance + 0.1),
        stranger_source: stranger_source.to_string(),
        copy_distance,
        copy_correlation: settings.copy_correlation,
        health: mean_stats(health_records),
        health_source: health_source.to_string(),
        diversity: diversity(flex_records),
        pose_spread: pose_spread(flex_records),
        flexibility_source: flexibility_source.to_string(),
    }
}

/// Likeness of a face at distance `d`: 1 at the reference photos' own distance, 0 at the stranger distance.
pub fn likeness(d: f32, baselines: &Baselines) -> f32 {
    let span = baselines.stranger_distance - baselines.reference_distance;
    ((baselines.stranger_distance - d) / span).clamp(0.0, 1.0)
}

/// What a cell is, for its row.
#[derive(Clone, Debug, Default)]
pub struct CellMeta {
    pub label: String,
    pub file: Option<String>,
    pub epoch: Option<u32>,
    pub weight: Option<f64>,
    pub x_index: usize,
    pub y_index: usize,
    pub planned: usize,
    pub missing: usize,
    pub failed: usize,
}

/// Scores a cell's images: identity, hits, copies and flexibility over the images that ask for the person,
/// the side effect over the others.
pub fn score_cell(
    meta: CellMeta,
    images: &[ImageInput],
    reference: &ReferenceModel,
    baselines: &Baselines,
) -> CellScore {
    let entries: Vec<ImageScoreEntry> = images
        .iter()
        .map(|i| score_image(i, reference, baselines))
        .collect();
    let asking: Vec<&ImageScoreEntry> = entries.iter().filter(|e| e.asks_for_person).collect();
    let records: Vec<&ImageRecord> = images
        .iter()
        .filter(|i| i.asks_for_person)
        .filter_map(|i| i.record.as_ref().ok())
        .collect();
    let distances: Vec<f32> = asking.iter().filter_map(|e| e.distance).collect();
    let likenesses: Vec<f32> = asking.iter().filter_map(|e| e.likeness).collect();
    let share = |count: usize| match asking.len() {
        0 => 0.0,
        n => count as f32 / n as f32,
    };
    let diversity = diversity(&records);
    let pose_spread = pose_spread(&records);
    let (side_effect, leak_rate) = side_effect(&entries);
    CellScore {
        label: meta.label,
        file: meta.file,
        epoch: meta.epoch,
        weight: meta.weight,
        x_index: meta.x_index,
        y_index: meta.y_index,
        planned: meta.planned,
        missing: meta.missing,
        failed: meta.failed,
        faces: distances.len(),
        distance: mean(&distances),
        likeness: mean(&likenesses),
        hit_rate: share(asking.iter().filter(|e| e.hit).count()),
        copy_rate: share(asking.iter().filter(|e| e.copy.is_some()).count()),
        flexibility: flexibility(diversity, pose_spread, baselines),
        diversity,
        pose_spread,
        health: mean_stats(&records),
        side_effect,
        leak_rate,
        images: entries,
    }
}

/// (mean change against the control, share showing the person) over the images that do not ask for the person.
fn side_effect(entries: &[ImageScoreEntry]) -> (Option<f32>, Option<f32>) {
    let others: Vec<&ImageScoreEntry> = entries
        .iter()
        .filter(|e| !e.asks_for_person && e.error.is_none())
        .collect();
    if others.is_empty() {
        return (None, None);
    }
    let changes: Vec<f32> = others.iter().filter_map(|e| e.control_change).collect();
    let leaks = others.iter().filter(|e| e.hit).count();
    (mean(&changes), Some(leaks as f32 / others.len() as f32))
}

fn score_image(
    input: &ImageInput,
    reference: &ReferenceModel,
    baselines: &Baselines,
) -> ImageScoreEntry {
    let mut entry = ImageScoreEntry {
        image: input.image.clone(),
        seed: input.seed,
        z_index: input.z_index,
        prompt: input.prompt.clone(),
        asks_for_person: input.asks_for_person,
        control_change: None,
        n_faces: 0,
        distance: None,
        likeness: None,
        hit: false,
        nearest_reference: None,
        nearest_distance: None,
        copy: None,
        stats: PixelStats::default(),
        error: None,
    };
    let record = match &input.record {
        Ok(record) => record,
        Err(reason) => {
            entry.error = Some(reason.clone());
            return entry;
        }
    };
    entry.n_faces = record.n_faces;
    entry.stats = record.stats;
    let thumbnail = record.thumbnail_levels();
    entry.control_change = input
        .control_thumbnail
        .as_ref()
        .map(|control| 1.0 - correlation(control, &thumbnail));
    if let Some(face) = &record.face {
        let descriptor = face.descriptor();
        let distance = reference.distance(&descriptor);
        let (nearest, nearest_distance) = reference.nearest(&descriptor);
        entry.distance = Some(distance);
        entry.likeness = Some(likeness(distance, baselines));
        entry.hit = distance < baselines.threshold;
        if nearest_distance < baselines.copy_distance {
            entry.copy = Some(CopyEntry {
                reference: nearest.clone(),
                kind: "identity".to_string(),
                value: nearest_distance,
            });
        }
        entry.nearest_reference = Some(nearest);
        entry.nearest_distance = Some(nearest_distance);
    }
    if entry.copy.is_none() {
        let pixels = reference.most_correlated(&thumbnail);
        if let Some((path, value)) = pixels.filter(|p| p.1 >= baselines.copy_correlation) {
            entry.copy = Some(CopyEntry {
                reference: path,
                kind: "pixels".to_string(),
                value,
            });
        }
    }
    entry
}

/// Mean of the available ratios cell / baseline of diversity and pose spread, each capped at 2.
fn flexibility(
    diversity: Option<f32>,
    pose_spread: Option<f32>,
    baselines: &Baselines,
) -> Option<f32> {
    let ratio = |value: Option<f32>, base: Option<f32>| match (value, base) {
        (Some(v), Some(b)) if b > 1e-3 => Some((v / b).min(2.0)),
        _ => None,
    };
    let ratios: Vec<f32> = [
        ratio(diversity, baselines.diversity),
        ratio(pose_spread, baselines.pose_spread),
    ]
    .into_iter()
    .flatten()
    .collect();
    mean(&ratios)
}

/// Mean pairwise dissimilarity (1 − thumbnail correlation) of the images; None under two images.
pub fn diversity(records: &[&ImageRecord]) -> Option<f32> {
    let thumbnails: Vec<Vec<u8>> = records.iter().map(|r| r.thumbnail_levels()).collect();
    let mut values = Vec::new();
    for i in 0..thumbnails.len() {
        for j in i + 1..thumbnails.len() {
            values.push(1.0 - correlation(&thumbnails[i], &thumbnails[j]));
        }
    }
    mean(&values)
}

/// Spread of head pose over the faces: √(var yaw + var pitch + var roll), from the 5 landmarks; None under
/// two faces.
pub fn pose_spread(records: &[&ImageRecord]) -> Option<f32> {
    let poses: Vec<[f32; 3]> = records
        .iter()
        .filter_map(|r| r.face.as_ref())
        .filter_map(|f| head_pose(&f.landmarks))
        .collect();
    if poses.len() < 2 {
        return None;
    }
    let variance = |k: usize| {
        let values: Vec<f32> = poses.iter().map(|p| p[k]).collect();
        let m = mean(&values).unwrap_or(0.0);
        values.iter().map(|v| (v - m).powi(2)).sum::<f32>() / values.len() as f32
    };
    Some((variance(0) + variance(1) + variance(2)).sqrt())
}

/// (yaw, pitch, roll) proxies: the nose offset from the eyes' midpoint along and across the eye line, in eye
/// spans, and the eye line's angle in radians.
pub fn head_pose(landmarks: &[Point]) -> Option<[f32; 3]> {
    if landmarks.len() < 5 {
        return None;
    }
    let p = |i: usize| (landmarks[i].x as f32, landmarks[i].y as f32);
    let centre = |a: (f32, f32), b: (f32, f32)| ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
    let right_eye = centre(p(0), p(1));
    let left_eye = centre(p(2), p(3));
    let (ux, uy) = (right_eye.0 - left_eye.0, right_eye.1 - left_eye.1);
    let span = (ux * ux + uy * uy).sqrt();
    if span < 1.0 {
        return None;
    }
    let middle = centre(right_eye, left_eye);
    let nose = p(4);
    let (dx, dy) = (nose.0 - middle.0, nose.1 - middle.1);
    let along = (dx * ux + dy * uy) / (span * span);
    let across = (-dx * uy + dy * ux) / (span * span);
    Some([along, across, uy.atan2(ux)])
}

/// Mean of the images' pixel statistics.
pub fn mean_stats(records: &[&ImageRecord]) -> PixelStats {
    let n = records.len().max(1) as f32;
    let sum = |f: fn(&PixelStats) -> f32| records.iter().map(|r| f(&r.stats)).sum::<f32>() / n;
    PixelStats {
        clipped: sum(|s| s.clipped),
        saturation: sum(|s| s.saturation),
        high_freq: sum(|s| s.high_freq),
    }
}

fn mean(values: &[f32]) -> Option<f32> {
    match values.len() {
        0 => None,
        n => Some(values.iter().sum::<f32>() / n as f32),
    }
}

/// Median (mean of the two middle values for an even count).
pub fn median(values: &[f32]) -> Option<f32> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}
