//! The recommendation as a pure function of score tables: gates, ranking, ties, reasons, no-pick answers.

use loraeval::recommend::{recommend, Thresholds};
use loraeval::score::pixels::PixelStats;
use loraeval::score::table::{
    Baselines, CellScore, CopyEntry, ImageScoreEntry, ReferenceReport, ScoreTable,
};

const HEALTHY: PixelStats = PixelStats {
    clipped: 0.02,
    saturation: 0.3,
    high_freq: 8.0,
};

fn image(hit: bool, copy: Option<&str>) -> ImageScoreEntry {
    ImageScoreEntry {
        image: "cells/x.png".into(),
        seed: 1,
        z_index: 0,
        prompt: "photo of sks".into(),
        asks_for_person: true,
        control_change: None,
        n_faces: 1,
        distance: Some(if hit { 0.4 } else { 0.75 }),
        likeness: None,
        hit,
        nearest_reference: None,
        nearest_distance: None,
        copy: copy.map(|reference| CopyEntry {
            reference: format!("train/10_sks/{reference}"),
            kind: "identity".into(),
            value: 0.05,
        }),
        stats: HEALTHY,
        error: None,
    }
}

/// A cell of epoch `epoch` at `weight` with `hits` of 4 images showing the person.
fn cell(epoch: u32, weight: f64, likeness: f32, hits: usize) -> CellScore {
    let images: Vec<ImageScoreEntry> = (0..4).map(|i| image(i < hits, None)).collect();
    CellScore {
        label: format!("sks-{epoch:06} @ {weight}"),
        file: Some(format!("sks-{epoch:06}.safetensors")),
        epoch: Some(epoch),
        weight: Some(weight),
        x_index: epoch as usize,
        y_index: 0,
        planned: 4,
        missing: 0,
        failed: 0,
        faces: 4,
        distance: Some(0.5),
        likeness: Some(likeness),
        hit_rate: hits as f32 / 4.0,
        copy_rate: 0.0,
        flexibility: Some(1.0),
        diversity: Some(0.5),
        pose_spread: Some(0.1),
        health: HEALTHY,
        side_effect: None,
        leak_rate: None,
        images,
    }
}

fn table(cells: Vec<CellScore>) -> ScoreTable {
    ScoreTable {
        version: 1,
        reference: ReferenceReport {
            inputs: vec!["train".into()],
            photos: Vec::new(),
            used: 4,
        },
        baselines: Baselines {
            threshold: 0.6,
            reference_distance: 0.4,
            stranger_distance: 0.8,
            stranger_source: "control".into(),
            copy_distance: 0.15,
            copy_correlation: 0.92,
            health: HEALTHY,
            health_source: "control".into(),
            diversity: Some(0.5),
            pose_spread: Some(0.1),
            flexibility_source: "control".into(),
        },
        control: None,
        cells,
        x_axis: "epoch".into(),
        y_axis: Some("weight".into()),
        trigger: None,
    }
}

#[test]
fn best_passing_likeness_wins_and_ties_go_to_the_earlier_epoch_then_weight_nearer_one() {
    let cells = vec![
        cell(2, 1.0, 0.31, 1),
        cell(8, 1.0, 0.904, 4),
        cell(6, 0.8, 0.901, 4),
        cell(6, 1.0, 0.898, 4),
        cell(4, 0.8, 0.7, 4),
    ];
    let r = recommend(&table(cells), &Thresholds::default());
    let pick = r.pick.expect("a pick");
    assert_eq!(pick.file.as_deref(), Some("sks-000006.safetensors"));
    assert_eq!((pick.epoch, pick.weight), (Some(6), Some(1.0)));
    let order: Vec<&str> = r.ranking.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(
        order,
        [
            "sks-000006 @ 1",
            "sks-000006 @ 0.8",
            "sks-000008 @ 1",
            "sks-000004 @ 0.8",
            "sks-000002 @ 1"
        ]
    );
    assert!(!r.ranking[4].passed);
    assert_eq!(r.ranking[4].failed, ["hit_rate"]);
    assert!(
        r.reasons[0].starts_with("pick: sks-000006 @ 1"),
        "{:?}",
        r.reasons
    );
}

#[test]
fn every_epoch_gets_its_best_weight_or_a_one_line_reason() {
    let mut copied = cell(9, 1.0, 1.0, 4);
    copied.copy_rate = 0.5;
    copied.images[0].copy = image(true, Some("a.png")).copy;
    copied.images[1].copy = image(true, Some("b.png")).copy;
    let mut fried = cell(10, 1.0, 0.95, 4);
    fried.health.clipped = 0.35;
    let mut faceless = cell(1, 1.0, 0.0, 0);
    faceless.faces = 0;
    faceless.likeness = None;
    let cells = vec![
        faceless,
        cell(2, 0.8, 0.31, 0),
        cell(2, 1.0, 0.35, 1),
        cell(6, 0.8, 0.9, 4),
        cell(6, 1.0, 0.85, 4),
        copied,
        fried,
    ];
    let r = recommend(&table(cells), &Thresholds::default());
    let lines: Vec<&str> = r.epochs.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(lines[0], "epoch 1: no face found in any of its 4 images");
    let lines = &lines[1..];
    assert_eq!(lines[0], "epoch 2: likeness 0.35, under-trained");
    assert_eq!(lines[1], "epoch 6: best at weight 0.8 (likeness 0.90)");
    assert_eq!(
        lines[2],
        "epoch 9: near-copies of 2 training photos (a.png, b.png) at weight 1"
    );
    assert!(lines[3]
        .starts_with("epoch 10: fried at weight 1 (fried: 35% clipped pixels (baseline 2%)"));
    assert_eq!(r.epochs[2].best_weight, Some(0.8));
    assert_eq!(r.epochs[1].best_weight, None);
    assert!(r.reasons.iter().any(|l| l == lines[2]));
}

#[test]
fn no_cell_passing_gives_no_pick_and_names_the_gates() {
    let mut flat = cell(6, 1.0, 0.9, 4);
    flat.flexibility = Some(0.1);
    let mut noisy = cell(8, 1.0, 0.9, 4);
    noisy.health.high_freq = 30.0;
    let cells = vec![cell(2, 1.0, 0.2, 0), flat, noisy];
    let r = recommend(&table(cells), &Thresholds::default());
    assert!(r.pick.is_none());
    assert_eq!(
        r.reasons[0],
        "no pick: no cell passes every gate; failed hit rate in 1 of 3 cells, flexibility in 1 of 3 cells, health in 1 of 3 cells"
    );
    let flat_row = r.ranking.iter().find(|c| c.epoch == Some(6)).unwrap();
    assert!(
        flat_row.reasons[0].contains("flexibility 0.10"),
        "{:?}",
        flat_row.reasons
    );
    let noisy_row = r.ranking.iter().find(|c| c.epoch == Some(8)).unwrap();
    assert!(
        noisy_row.reasons[0].contains("high-frequency noise 3.8×"),
        "{:?}",
        noisy_row.reasons
    );
}

#[test]
fn thresholds_are_respected() {
    let cells = vec![cell(3, 1.0, 0.8, 2)];
    assert!(recommend(&table(cells.clone()), &Thresholds::default())
        .pick
        .is_some());
    let strict = Thresholds {
        min_hit_rate: 0.75,
        ..Thresholds::default()
    };
    let r = recommend(&table(cells), &strict);
    assert!(r.pick.is_none());
    assert_eq!(
        r.ranking[0].reasons[0],
        "the person in 2/4 images (needs 75%), likeness 0.80"
    );
}

#[test]
fn a_cell_without_images_fails_and_an_empty_table_says_so() {
    let mut empty = cell(4, 1.0, 0.0, 0);
    empty.images.clear();
    empty.likeness = None;
    empty.missing = 4;
    let r = recommend(&table(vec![empty]), &Thresholds::default());
    assert!(r.pick.is_none());
    assert_eq!(
        r.ranking[0].reasons[0],
        "no image to score (4 missing, 0 failed)"
    );
    let r = recommend(&table(Vec::new()), &Thresholds::default());
    assert_eq!(r.reasons, ["no pick: the run has no cells"]);
}

#[test]
fn runs_without_lora_files_rank_whatever_cells_there_are() {
    let mut a = cell(1, 1.0, 0.6, 4);
    let mut b = cell(2, 1.0, 0.7, 4);
    for (c, label) in [(&mut a, "CFG 5"), (&mut b, "CFG 7")] {
        c.file = None;
        c.epoch = None;
        c.weight = None;
        c.label = label.into();
    }
    let r = recommend(&table(vec![a, b]), &Thresholds::default());
    assert_eq!(r.pick.unwrap().label, "CFG 7");
    assert!(r.epochs.is_empty());
}
