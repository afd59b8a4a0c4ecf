//! The labelled grid image, as AUTOMATIC1111 1.10 draws it (`modules/images.py` `image_grid` and
//! `draw_grid_annotations`; `scripts/xyz_grid.py` for the Z title), with DejaVu Sans instead of Roboto.
//!
//! Cells are pasted row-major into equal slots of the largest cell size (smaller ones centred) on white. Labels:
//! font size `(cell_w + cell_h) // 25`, line spacing half of it; X labels above each column (wrapped to the cell
//! width), Y labels in a left pad of `cell_w * 3 // 4`; each wrapped line shrinks its font until it fits; the margin
//! goes between cells only. A Z title is a one-column annotation over the whole grid, as A1111's Z grid. Cells are
//! downscaled first when the grid would exceed the size limits; missing cells are drawn as grey crossed
//! placeholders with the reason.

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use super::font::GridFont;
use super::GridError;

const BACKGROUND: [u8; 3] = [255, 255, 255];
const TEXT: [u8; 3] = [0, 0, 0];
const PLACEHOLDER: [u8; 3] = [208, 208, 208];
const PLACEHOLDER_CROSS: [u8; 3] = [176, 32, 32];

/// Drawing options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DrawOptions {
    /// Pixels between cells (A1111 "Grid margins (px)").
    pub margin: u32,
    /// Cells are downscaled so that the cell area stays under this many pixels …
    pub max_pixels: u64,
    /// … and neither side of the cell area exceeds this.
    pub max_side: u32,
}

impl Default for DrawOptions {
    fn default() -> Self {
        DrawOptions {
            margin: 0,
            max_pixels: 64_000_000,
            max_side: 16_384,
        }
    }
}

/// One slot of the grid: an image, or a placeholder of the cell's intended size with a reason ("missing", …).
#[derive(Clone, Debug)]
pub enum GridCell {
    Image(RgbImage),
    Placeholder {
        width: u32,
        height: u32,
        reason: String,
    },
}

impl GridCell {
    fn size(&self) -> (u32, u32) {
        match self {
            GridCell::Image(image) => image.dimensions(),
            GridCell::Placeholder { width, height, .. } => (*width, *height),
        }
    }
}

/// Labels of a grid: one per column (X), per row (Y, may be empty strings) and an optional title (Z).
#[derive(Clone, Debug, Default)]
pub struct GridLabels {
    pub columns: Vec<String>,
    pub rows: Vec<String>,
    pub title: Option<String>,
}

/// Draws `cells` (rows of columns) with their labels.
pub fn draw_grid(
    cells: &[Vec<GridCell>],
    labels: &GridLabels,
    options: &DrawOptions,
) -> Result<RgbImage, GridError> {
    let font = GridFont::dejavu_sans()?;
    let rows = cells.len();
    let cols = cells.iter().map(Vec::len).max().unwrap_or(0);
    if rows == 0 || cols == 0 || labels.columns.len() != cols || labels.rows.len() != rows {
        return Err(GridError::InvalidSetting(format!(
            "grid of {rows}x{cols} cells with {} column and {} row labels",
            labels.columns.len(),
            labels.rows.len()
        )));
    }
    let (cell_w, cell_h) = slot_size(cells, cols, rows, options);
    let grid = paste_cells(&font, cells, cols, cell_w, cell_h);
    let column_texts: Vec<Vec<String>> = labels.columns.iter().map(|l| vec![l.clone()]).collect();
    let row_texts: Vec<Vec<String>> = labels.rows.iter().map(|l| vec![l.clone()]).collect();
    let annotated = annotate(
        &font,
        &grid,
        cell_w,
        cell_h,
        &column_texts,
        &row_texts,
        options.margin,
    );
    Ok(match &labels.title {
        Some(title) => {
            let (w, h) = annotated.dimensions();
            annotate(
                &font,
                &annotated,
                w,
                h,
                &[vec![title.clone()]],
                &[vec![String::new()]],
                0,
            )
        }
        None => annotated,
    })
}

/// The slot size: the largest cell, scaled down to the limits.
fn slot_size(
    cells: &[Vec<GridCell>],
    cols: usize,
    rows: usize,
    options: &DrawOptions,
) -> (u32, u32) {
    let sizes = cells.iter().flatten().map(GridCell::size);
    let (w, h) = sizes.fold((1, 1), |(w, h), (cw, ch)| (w.max(cw), h.max(ch)));
    let (total_w, total_h) = (w as f64 * cols as f64, h as f64 * rows as f64);
    let scale = [
        1.0,
        (options.max_pixels as f64 / (total_w * total_h)).sqrt(),
        f64::from(options.max_side) / total_w,
        f64::from(options.max_side) / total_h,
    ]
    .into_iter()
    .fold(f64::INFINITY, f64::min);
    let scaled = |side: u32| ((f64::from(side) * scale).floor() as u32).max(8);
    if scale < 1.0 {
        (scaled(w), scaled(h))
    } else {
        (w, h)
    }
}

/// A1111 `image_grid` with centred cells, resizing cells larger than the slot.
fn paste_cells(
    font: &GridFont,
    cells: &[Vec<GridCell>],
    cols: usize,
    cell_w: u32,
    cell_h: u32,
) -> RgbImage {
    let rows = cells.len() as u32;
    let mut grid = RgbImage::from_pixel(cols as u32 * cell_w, rows * cell_h, Rgb(BACKGROUND));
    for (row, row_cells) in cells.iter().enumerate() {
        for (col, cell) in row_cells.iter().enumerate() {
            let image = cell_image(font, cell, cell_w, cell_h);
            let x = col as u32 * cell_w + (cell_w - image.width()) / 2;
            let y = row as u32 * cell_h + (cell_h - image.height()) / 2;
            imageops::replace(&mut grid, &image, i64::from(x), i64::from(y));
        }
    }
    grid
}

fn cell_image(font: &GridFont, cell: &GridCell, slot_w: u32, slot_h: u32) -> RgbImage {
    let (w, h) = cell.size();
    let fits = w <= slot_w && h <= slot_h;
    let ratio = (f64::from(slot_w) / f64::from(w)).min(f64::from(slot_h) / f64::from(h));
    let (target_w, target_h) = if fits {
        (w, h)
    } else {
        (
            ((f64::from(w) * ratio) as u32).max(1),
            ((f64::from(h) * ratio) as u32).max(1),
        )
    };
    match cell {
        GridCell::Image(image) if fits => image.clone(),
        GridCell::Image(image) => imageops::resize(image, target_w, target_h, FilterType::Lanczos3),
        GridCell::Placeholder { reason, .. } => placeholder(font, target_w, target_h, reason),
    }
}

/// A grey cell with a red cross and the reason in the middle.
fn placeholder(font: &GridFont, width: u32, height: u32, reason: &str) -> RgbImage {
    let mut image = RgbImage::from_pixel(width, height, Rgb(PLACEHOLDER));
    let thickness = (width.min(height) / 64).max(1) as i64;
    let steps = width.max(height) as i64;
    for i in 0..steps {
        let x = i * i64::from(width) / steps;
        let y = i * i64::from(height) / steps;
        for t in -thickness..=thickness {
            for (px, py) in [(x + t, y), (x + t, i64::from(height) - 1 - y)] {
                if px >= 0 && px < i64::from(width) {
                    image.put_pixel(px as u32, py as u32, Rgb(PLACEHOLDER_CROSS));
                }
            }
        }
    }
    let size = ((width + height) / 25).max(1) as f32;
    let mut fitted = size;
    while fitted > 1.0 && font.text_length(reason, fitted) > width as f32 * 0.9 {
        fitted -= 1.0;
    }
    let (text_w, text_h) = font.text_size(reason, fitted);
    let (box_w, box_h) = ((text_w + fitted) as u32, (text_h + fitted) as u32);
    let (box_x, box_y) = (
        (width.saturating_sub(box_w)) / 2,
        (height.saturating_sub(box_h)) / 2,
    );
    for y in box_y..(box_y + box_h).min(height) {
        for x in box_x..(box_x + box_w).min(width) {
            image.put_pixel(x, y, Rgb(PLACEHOLDER));
        }
    }
    font.draw_centered(
        &mut image,
        width as f32 / 2.0,
        height as f32 / 2.0,
        reason,
        fitted,
        TEXT,
    );
    image
}

/// One wrapped line of a label with its size measured at the initial font size.
struct Line {
    text: String,
    size: (f32, f32),
    allowed_width: f32,
}

/// A1111 `draw_grid_annotations(im, width, height, hor_texts, ver_texts, margin)`.
fn annotate(
    font: &GridFont,
    im: &RgbImage,
    width: u32,
    height: u32,
    hor_texts: &[Vec<String>],
    ver_texts: &[Vec<String>],
    margin: u32,
) -> RgbImage {
    let fontsize = ((width + height) / 25) as f32;
    let line_spacing = (fontsize / 2.0).floor();
    let has_ver_text = ver_texts.iter().flatten().any(|t| !t.is_empty());
    let pad_left = if has_ver_text { width * 3 / 4 } else { 0 };
    let cols = hor_texts.len() as u32;
    let rows = ver_texts.len() as u32;
    let wrap_all = |texts: &[Vec<String>], allowed: f32| -> Vec<Vec<Line>> {
        texts
            .iter()
            .map(|t| measure_lines(font, t, fontsize, allowed))
            .collect()
    };
    let hor = wrap_all(hor_texts, width as f32);
    let ver = wrap_all(ver_texts, pad_left as f32);
    let hor_heights: Vec<f32> = hor
        .iter()
        .map(|lines| lines.iter().map(|l| l.size.1 + line_spacing).sum::<f32>() - line_spacing)
        .collect();
    let ver_heights: Vec<f32> = ver
        .iter()
        .map(|lines| {
            lines.iter().map(|l| l.size.1 + line_spacing).sum::<f32>()
                - line_spacing * lines.len() as f32
        })
        .collect();
    let max_hor = hor_heights.iter().cloned().fold(0.0, f32::max);
    let pad_top = if hor_heights.iter().sum::<f32>() == 0.0 {
        0
    } else {
        (max_hor + line_spacing * 2.0) as u32
    };
    let out_w = im.width() + pad_left + margin * cols.saturating_sub(1);
    let out_h = im.height() + pad_top + margin * rows.saturating_sub(1);
    let mut result = RgbImage::from_pixel(out_w, out_h, Rgb(BACKGROUND));
    for row in 0..rows {
        for col in 0..cols {
            let cell = imageops::crop_imm(im, width * col, height * row, width, height).to_image();
            let x = pad_left + (width + margin) * col;
            let y = pad_top + (height + margin) * row;
            imageops::replace(&mut result, &cell, i64::from(x), i64::from(y));
        }
    }
    for (col, lines) in hor.iter().enumerate() {
        let x = pad_left as f32 + ((width + margin) * col as u32) as f32 + width as f32 / 2.0;
        let y = pad_top as f32 / 2.0 - hor_heights[col] / 2.0;
        draw_texts(font, &mut result, x, y, lines, fontsize, line_spacing);
    }
    for (row, lines) in ver.iter().enumerate() {
        let x = pad_left as f32 / 2.0;
        let y = pad_top as f32 + ((height + margin) * row as u32) as f32 + height as f32 / 2.0
            - ver_heights[row] / 2.0;
        draw_texts(font, &mut result, x, y, lines, fontsize, line_spacing);
    }
    result
}

/// A1111 `wrap`: greedy word wrap on whitespace by `textlength`, then each line's `textbbox` size.
fn measure_lines(
    font: &GridFont,
    texts: &[String],
    fontsize: f32,
    allowed_width: f32,
) -> Vec<Line> {
    let mut lines = Vec::new();
    for text in texts {
        let mut wrapped = vec![String::new()];
        for word in text.split_whitespace() {
            let last = wrapped.last().map_or("", String::as_str);
            let candidate = format!("{last} {word}").trim().to_string();
            if font.text_length(&candidate, fontsize) <= allowed_width {
                if let Some(last) = wrapped.last_mut() {
                    *last = candidate;
                }
            } else {
                wrapped.push(word.to_string());
            }
        }
        lines.extend(wrapped.into_iter().map(|text| Line {
            size: font.text_size(&text, fontsize),
            text,
            allowed_width,
        }));
    }
    lines
}

/// A1111 `draw_texts`: each line shrinks its font until it fits its allowed width, drawn with anchor "mm".
fn draw_texts(
    font: &GridFont,
    image: &mut RgbImage,
    x: f32,
    mut y: f32,
    lines: &[Line],
    fontsize: f32,
    spacing: f32,
) {
    for line in lines {
        let mut size = fontsize;
        while font.text_length(&line.text, size) > line.allowed_width && size > 0.0 {
            size -= 1.0;
        }
        if size > 0.0 {
            font.draw_centered(image, x, y + line.size.1 / 2.0, &line.text, size, TEXT);
        }
        y += line.size.1 + spacing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32, value: u8) -> GridCell {
        GridCell::Image(RgbImage::from_pixel(w, h, Rgb([value, 0, 0])))
    }

    #[test]
    fn geometry_follows_draw_grid_annotations() {
        let cells = vec![vec![solid(100, 100, 200), solid(100, 100, 100)]; 2];
        let labels = GridLabels {
            columns: vec!["epoch 1".into(), "epoch 2".into()],
            rows: vec!["LoRA weight: 0.5".into(), "LoRA weight: 1.0".into()],
            title: None,
        };
        let image = draw_grid(
            &cells,
            &labels,
            &DrawOptions {
                margin: 6,
                ..DrawOptions::default()
            },
        )
        .unwrap();
        // pad_left = 100 * 3 // 4; one margin between the two columns and between the two rows.
        assert_eq!(image.width(), 75 + 200 + 6);
        let pad_top = image.height() - 200 - 6;
        // fontsize 8, line spacing 4: pad_top = ink height (about the font size, pixel-rounded) + 8.
        assert!((8..=8 + 10).contains(&pad_top), "pad_top {pad_top}");
        // Cells land where A1111 pastes them; the margin stays white.
        assert_eq!(image.get_pixel(75 + 50, pad_top + 50)[0], 200);
        assert_eq!(image.get_pixel(75 + 106 + 50, pad_top + 50)[0], 100);
        assert_eq!(image.get_pixel(75 + 103, pad_top + 50).0, BACKGROUND);
    }

    #[test]
    fn no_labels_means_no_padding() {
        let cells = vec![vec![solid(64, 32, 9)]];
        let labels = GridLabels {
            columns: vec![String::new()],
            rows: vec![String::new()],
            title: None,
        };
        let image = draw_grid(&cells, &labels, &DrawOptions::default()).unwrap();
        assert_eq!(image.dimensions(), (64, 32));
    }

    #[test]
    fn large_grids_are_downscaled() {
        let cells = vec![vec![solid(512, 512, 50); 4]; 2];
        let labels = GridLabels {
            columns: vec![String::new(); 4],
            rows: vec![String::new(); 2],
            title: None,
        };
        let options = DrawOptions {
            max_side: 1024,
            ..DrawOptions::default()
        };
        let image = draw_grid(&cells, &labels, &options).unwrap();
        assert_eq!(image.dimensions(), (1024, 512));
    }

    #[test]
    fn mismatched_labels_are_an_error() {
        let cells = vec![vec![solid(8, 8, 0)]];
        let labels = GridLabels::default();
        assert!(draw_grid(&cells, &labels, &DrawOptions::default()).is_err());
    }
}
