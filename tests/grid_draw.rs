//! Golden images of the grid drawing on small synthetic cells (`REGENERATE=1` rewrites the goldens), plus the
//! geometry A1111's `draw_grid_annotations` implies.

use image::{Rgb, RgbImage};
use loraeval::grid::draw::{draw_grid, DrawOptions, GridCell, GridLabels};
use std::path::PathBuf;

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/grid")
        .join(name)
}

/// A cell with a colour gradient unique to (x, y), so misplaced cells show.
fn gradient_cell(width: u32, height: u32, x: u32, y: u32) -> GridCell {
    GridCell::Image(RgbImage::from_fn(width, height, |px, py| {
        Rgb([
            (px * 255 / width) as u8,
            (py * 255 / height) as u8,
            (60 * x + 110 * y) as u8,
        ])
    }))
}

fn check_golden(name: &str, image: &RgbImage) {
    let path = golden_path(name);
    if std::env::var("REGENERATE").is_ok_and(|v| v == "1") {
        image.save(&path).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let golden = image::open(&path)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with REGENERATE=1 to create it)",
                path.display()
            )
        })
        .to_rgb8();
    assert_eq!(image.dimensions(), golden.dimensions(), "{name}: size");
    let differing = image
        .pixels()
        .zip(golden.pixels())
        .filter(|(a, b)| a.0.iter().zip(b.0).any(|(p, q)| p.abs_diff(q) > 1))
        .count();
    assert_eq!(
        differing, 0,
        "{name}: {differing} pixels differ from the golden image"
    );
}

fn labels(columns: &[&str], rows: &[&str], title: Option<&str>) -> GridLabels {
    GridLabels {
        columns: columns.iter().map(|s| s.to_string()).collect(),
        rows: rows.iter().map(|s| s.to_string()).collect(),
        title: title.map(str::to_string),
    }
}

#[test]
fn epoch_by_weight_grid_with_wrapped_labels_and_margin() {
    let cells: Vec<Vec<GridCell>> = (0..2)
        .map(|y| (0..3).map(|x| gradient_cell(96, 96, x, y)).collect())
        .collect();
    let labels = labels(
        &[
            "epoch 1 (100 steps)",
            "epoch 2 (200 steps)",
            "a very long label that has to wrap",
        ],
        &["LoRA weight: 0.5", "LoRA weight: 1.0"],
        None,
    );
    let options = DrawOptions {
        margin: 4,
        ..DrawOptions::default()
    };
    let image = draw_grid(&cells, &labels, &options).unwrap();
    // Width: left pad 96*3//4 = 72, three cells, two margins.
    assert_eq!(image.width(), 72 + 3 * 96 + 2 * 4);
    check_golden("golden-epochs-weights.png", &image);
}

#[test]
fn z_title_placeholders_and_mixed_sizes() {
    let cells = vec![vec![
        gradient_cell(64, 96, 0, 0),
        GridCell::Placeholder {
            width: 96,
            height: 96,
            reason: "missing".into(),
        },
        gradient_cell(96, 64, 2, 0),
    ]];
    let labels = labels(
        &["Steps: 10", "Steps: 20", "Steps: 30"],
        &[""],
        Some("portrait close-up"),
    );
    let image = draw_grid(&cells, &labels, &DrawOptions::default()).unwrap();
    // No row labels: no left pad; slots are the largest cell (96x96).
    assert_eq!(image.width(), 3 * 96);
    // The placeholder is grey where neither the cross nor the text is.
    let top_pad = image.height() - 96;
    assert_eq!(image.get_pixel(96 + 48, top_pad + 20).0, [208, 208, 208]);
    // Smaller cells are centred: the 64-wide cell leaves 16 white columns on its left.
    assert_eq!(image.get_pixel(8, top_pad + 48).0, [255, 255, 255]);
    check_golden("golden-title-placeholder.png", &image);
}

#[test]
fn labels_are_drawn_in_their_pads() {
    let cells = vec![vec![gradient_cell(100, 100, 0, 0)]];
    let image = draw_grid(
        &cells,
        &labels(&["Seed: 1"], &["Weight"], None),
        &DrawOptions::default(),
    )
    .unwrap();
    let pad_top = image.height() - 100;
    let dark = |x0: u32, x1: u32, y0: u32, y1: u32| {
        (x0..x1)
            .flat_map(|x| (y0..y1).map(move |y| (x, y)))
            .filter(|&(x, y)| image.get_pixel(x, y).0.iter().all(|&c| c < 128))
            .count()
    };
    assert!(dark(75, 175, 0, pad_top) > 10, "X label ink above the cell");
    assert!(
        dark(0, 75, pad_top, pad_top + 100) > 10,
        "Y label ink left of the cell"
    );
    assert_eq!(dark(0, 75, 0, pad_top), 0, "top-left corner stays white");
}
