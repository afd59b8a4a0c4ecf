//! Pixel-level measurements of one image: health statistics (clipped pixels, saturation, high-frequency energy)
//! and a 32×32 grey thumbnail for near-duplicate and diversity comparisons.

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// Side of the square grey thumbnail.
pub const THUMBNAIL_SIDE: usize = 32;

/// Health statistics of one image (formulas in docs/scoring.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PixelStats {
    /// Share of pixels with a channel pinned at 0 or 255.
    pub clipped: f32,
    /// Mean HSV saturation, (max − min) / max per pixel, 0..1.
    pub saturation: f32,
    /// Mean absolute 4-neighbour Laplacian of the luma, in grey levels (0..255 scale).
    pub high_freq: f32,
}

/// Clipping, saturation and high-frequency energy of an image.
pub fn pixel_stats(image: &RgbImage) -> PixelStats {
    let pixels = image.pixels().len().max(1) as f64;
    let mut clipped = 0usize;
    let mut saturation = 0.0f64;
    for p in image.pixels() {
        let [r, g, b] = p.0;
        if [r, g, b].iter().any(|&c| c == 0 || c == 255) {
            clipped += 1;
        }
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        if max > 0 {
            saturation += f64::from(max - min) / f64::from(max);
        }
    }
    PixelStats {
        clipped: (clipped as f64 / pixels) as f32,
        saturation: (saturation / pixels) as f32,
        high_freq: mean_abs_laplacian(image),
    }
}

/// Luma (BT.601) of every pixel, row-major.
fn luma(image: &RgbImage) -> Vec<f32> {
    image
        .pixels()
        .map(|p| 0.299 * f32::from(p.0[0]) + 0.587 * f32::from(p.0[1]) + 0.114 * f32::from(p.0[2]))
        .collect()
}

/// Mean |4·c − up − down − left − right| over the interior pixels (0 for images under 3×3).
fn mean_abs_laplacian(image: &RgbImage) -> f32 {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let y = luma(image);
    let mut sum = 0.0f64;
    for row in 1..h - 1 {
        for col in 1..w - 1 {
            let i = row * w + col;
            let lap = 4.0 * y[i] - y[i - 1] - y[i + 1] - y[i - w] - y[i + w];
            sum += f64::from(lap.abs());
        }
    }
    (sum / ((w - 2) * (h - 2)) as f64) as f32
}

/// The centred square of the image averaged down to 32×32 grey levels (box filter), row-major.
pub fn thumbnail(image: &RgbImage) -> Vec<u8> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let side = w.min(h);
    if side == 0 {
        return vec![0; THUMBNAIL_SIDE * THUMBNAIL_SIDE];
    }
    let (x0, y0) = ((w - side) / 2, (h - side) / 2);
    let y = luma(image);
    let mut out = Vec::with_capacity(THUMBNAIL_SIDE * THUMBNAIL_SIDE);
    for ty in 0..THUMBNAIL_SIDE {
        let (r0, r1) = box_range(ty, side);
        for tx in 0..THUMBNAIL_SIDE {
            let (c0, c1) = box_range(tx, side);
            let mut sum = 0.0f64;
            for row in r0..r1 {
                for col in c0..c1 {
                    sum += f64::from(y[(y0 + row) * w + x0 + col]);
                }
            }
            let count = ((r1 - r0) * (c1 - c0)) as f64;
            out.push((sum / count).round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}

/// Source rows (or columns) `[start, end)` averaged into thumbnail row `index`; never empty.
fn box_range(index: usize, side: usize) -> (usize, usize) {
    let start = index * side / THUMBNAIL_SIDE;
    let end = ((index + 1) * side / THUMBNAIL_SIDE)
        .max(start + 1)
        .min(side);
    (start.min(side - 1), end)
}

/// Zero-mean normalised cross-correlation of two thumbnails, −1..1. Two flat thumbnails correlate 1 when their
/// levels are within 2 grey levels, else 0; one flat thumbnail against a textured one gives 0.
pub fn correlation(a: &[u8], b: &[u8]) -> f32 {
    let n = a.len().min(b.len()).max(1) as f64;
    let mean = |t: &[u8]| t.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
        ab += dx * dy;
        aa += dx * dx;
        bb += dy * dy;
    }
    const FLAT: f64 = 1e-6;
    if aa / n < FLAT || bb / n < FLAT {
        let both_flat = aa / n < FLAT && bb / n < FLAT;
        return if both_flat && (ma - mb).abs() <= 2.0 {
            1.0
        } else {
            0.0
        };
    }
    (ab / (aa * bb).sqrt()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
        })
    }

    #[test]
    fn flat_grey_image_is_healthy_and_smooth() {
        let image = RgbImage::from_pixel(16, 16, Rgb([128, 128, 128]));
        let stats = pixel_stats(&image);
        assert_eq!(stats.clipped, 0.0);
        assert_eq!(stats.saturation, 0.0);
        assert_eq!(stats.high_freq, 0.0);
    }

    #[test]
    fn clipping_saturation_and_noise_are_measured() {
        let mut image = RgbImage::from_pixel(10, 10, Rgb([200, 100, 100]));
        for x in 0..10 {
            image.put_pixel(x, 0, Rgb([255, 0, 0]));
        }
        let stats = pixel_stats(&image);
        assert!((stats.clipped - 0.1).abs() < 1e-6);
        assert!((stats.saturation - (0.9 * 0.5 + 0.1)).abs() < 1e-6);
        let checker = RgbImage::from_fn(8, 8, |x, y| {
            let v = if (x + y) % 2 == 0 { 0 } else { 100 };
            Rgb([v, v, v])
        });
        // Every interior pixel: |4·c − 4·other| = 400 grey levels (luma weights sum to 1).
        assert!((pixel_stats(&checker).high_freq - 400.0).abs() < 0.01);
    }

    #[test]
    fn thumbnail_of_a_scaled_image_correlates_with_the_original() {
        let small = gradient(64, 64);
        let large =
            image::imageops::resize(&small, 200, 200, image::imageops::FilterType::Triangle);
        let (a, b) = (thumbnail(&small), thumbnail(&large));
        assert_eq!(a.len(), THUMBNAIL_SIDE * THUMBNAIL_SIDE);
        assert!(correlation(&a, &b) > 0.99);
        let flipped = image::imageops::flip_vertical(&small);
        assert!(correlation(&a, &thumbnail(&flipped)) < 0.0);
    }

    #[test]
    fn thumbnail_uses_the_centred_square_and_small_images() {
        let wide = gradient(90, 30);
        assert_eq!(thumbnail(&wide).len(), 1024);
        let tiny = RgbImage::from_pixel(3, 5, Rgb([9, 9, 9]));
        assert!(thumbnail(&tiny).iter().all(|&v| v == 9));
    }

    #[test]
    fn flat_thumbnails_compare_by_level() {
        assert_eq!(correlation(&[10; 4], &[11; 4]), 1.0);
        assert_eq!(correlation(&[10; 4], &[50; 4]), 0.0);
        assert_eq!(correlation(&[10; 4], &[0, 20, 0, 20]), 0.0);
    }
}
