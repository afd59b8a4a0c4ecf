//! The vendored DejaVu Sans through ab_glyph: PIL-like text measurement (`textlength`, `textbbox` size) and drawing
//! with PIL's "mm" anchor (horizontal middle of the advance, vertical middle between ascender and descender).

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

use super::GridError;

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The grid label font.
pub(crate) struct GridFont {
    font: FontRef<'static>,
}

impl GridFont {
    pub(crate) fn dejavu_sans() -> Result<GridFont, GridError> {
        let font =
            FontRef::try_from_slice(DEJAVU_SANS).map_err(|e| GridError::Font(e.to_string()))?;
        Ok(GridFont { font })
    }

    /// ab_glyph scales by ascent-descent height; PIL's size is the em size in pixels.
    fn scale(&self, size: f32) -> PxScale {
        let units_per_em = self.font.units_per_em().unwrap_or(2048.0);
        PxScale::from(size * self.font.height_unscaled() / units_per_em)
    }

    /// Pen positions of each glyph of a line (kerning applied) and the total advance.
    fn layout(&self, text: &str, size: f32) -> (Vec<(GlyphId, f32)>, f32) {
        let scaled = self.font.as_scaled(self.scale(size));
        let mut x = 0.0;
        let mut previous: Option<GlyphId> = None;
        let mut glyphs = Vec::new();
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(prev) = previous {
                x += scaled.kern(prev, id);
            }
            glyphs.push((id, x));
            x += scaled.h_advance(id);
            previous = Some(id);
        }
        (glyphs, x)
    }

    /// PIL `ImageDraw.textlength`: the advance width of one line.
    pub(crate) fn text_length(&self, text: &str, size: f32) -> f32 {
        self.layout(text, size).1
    }

    /// PIL `textbbox` size of one line: (advance width, ink height from the highest to the lowest glyph pixel).
    pub(crate) fn text_size(&self, text: &str, size: f32) -> (f32, f32) {
        let scale = self.scale(size);
        let (glyphs, width) = self.layout(text, size);
        let mut top = f32::INFINITY;
        let mut bottom = f32::NEG_INFINITY;
        for (id, x) in glyphs {
            if let Some(outlined) = self
                .font
                .outline_glyph(id.with_scale_and_position(scale, point(x, 0.0)))
            {
                let bounds = outlined.px_bounds();
                top = top.min(bounds.min.y);
                bottom = bottom.max(bounds.max.y);
            }
        }
        let height = if bottom > top { bottom - top } else { 0.0 };
        (width, height)
    }

    /// Draws one line centred on (`cx`, `cy`) like PIL `text(..., anchor="mm")`, blending `color` by coverage.
    pub(crate) fn draw_centered(
        &self,
        image: &mut RgbImage,
        cx: f32,
        cy: f32,
        text: &str,
        size: f32,
        color: [u8; 3],
    ) {
        let scale = self.scale(size);
        let scaled = self.font.as_scaled(scale);
        let (glyphs, width) = self.layout(text, size);
        let left = cx - width / 2.0;
        let baseline = cy + (scaled.ascent() + scaled.descent()) / 2.0;
        for (id, x) in glyphs {
            let glyph = id.with_scale_and_position(scale, point(left + x, baseline));
            if let Some(outlined) = self.font.outline_glyph(glyph) {
                let bounds = outlined.px_bounds();
                outlined.draw(|gx, gy, coverage| {
                    let px = bounds.min.x as i64 + i64::from(gx);
                    let py = bounds.min.y as i64 + i64::from(gy);
                    blend(image, px, py, color, coverage);
                });
            }
        }
    }
}

fn blend(image: &mut RgbImage, x: i64, y: i64, color: [u8; 3], coverage: f32) {
    if x < 0 || y < 0 || x >= i64::from(image.width()) || y >= i64::from(image.height()) {
        return;
    }
    let coverage = coverage.clamp(0.0, 1.0);
    let pixel = image.get_pixel_mut(x as u32, y as u32);
    let mixed: [u8; 3] = std::array::from_fn(|i| {
        (f32::from(pixel[i]) * (1.0 - coverage) + f32::from(color[i]) * coverage).round() as u8
    });
    *pixel = Rgb(mixed);
}
