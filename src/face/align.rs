//! Aligned face chips exactly as dlib cuts them (face.md §3.2–3.4): `get_face_chip_details` + `extract_image_chips`.
//!
//! Mirrors `dlib/image_transforms/interpolation.h`: a similarity fit of the 5 landmarks to a template gives a
//! rotated rectangle; when the chip is much smaller than that rectangle the crop is first shrunk with dlib's
//! `pyramid_down<2>` (5-tap Gaussian, integer arithmetic), then sampled bilinearly with truncation to u8.

use image::{Rgb, RgbImage};

use super::{FaceError, Point};

/// Chip side used by the face recognition network.
pub const FACE_CHIP_SIZE: usize = 150;
/// Padding around the landmark template used by `compute_face_descriptor` and `get_face_chip`.
pub const FACE_CHIP_PADDING: f64 = 0.25;

/// Mean 5-point landmark positions in a unit square (dlib `get_face_chip_details`).
const FIVE_POINT_TEMPLATE: [[f64; 2]; 5] = [
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
];

/// An affine map `p ↦ m·p + b` (dlib `point_transform_affine`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine2 {
    pub m: [[f64; 2]; 2],
    pub b: [f64; 2],
}

impl Affine2 {
    /// Applies the map to a point.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.m[0][0] * p[0] + self.m[0][1] * p[1] + self.b[0],
            self.m[1][0] * p[0] + self.m[1][1] * p[1] + self.b[1],
        ]
    }
}

/// Least-squares similarity transform `from → to` (Umeyama, as dlib `find_similarity_transform`).
///
/// In 2-D the rotation that Umeyama's SVD picks (a proper rotation) times the scale has the closed form
/// `[[a+d, b−c], [c−b, a+d]] / σ²_from` with `[[a, b], [c, d]]` the cross-covariance, so no SVD is needed.
pub fn find_similarity_transform(from: &[[f64; 2]], to: &[[f64; 2]]) -> Affine2 {
    let n = from.len().min(to.len()).max(1) as f64;
    let mean = |pts: &[[f64; 2]]| {
        let s = pts
            .iter()
            .fold([0.0, 0.0], |acc, p| [acc[0] + p[0], acc[1] + p[1]]);
        [s[0] / n, s[1] / n]
    };
    let (mf, mt) = (mean(from), mean(to));
    let mut sigma_from = 0.0;
    let mut cov = [[0.0f64; 2]; 2];
    for (f, t) in from.iter().zip(to) {
        let df = [f[0] - mf[0], f[1] - mf[1]];
        let dt = [t[0] - mt[0], t[1] - mt[1]];
        sigma_from += df[0] * df[0] + df[1] * df[1];
        for (i, row) in cov.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v += dt[i] * df[j];
            }
        }
    }
    sigma_from /= n;
    let [[a, b], [c, d]] = cov.map(|row| row.map(|v| v / n));
    let (cos_part, sin_part) = (a + d, c - b);
    let m = if sigma_from != 0.0 {
        [
            [cos_part / sigma_from, -sin_part / sigma_from],
            [sin_part / sigma_from, cos_part / sigma_from],
        ]
    } else {
        // dlib keeps c = 1 and R = the rotation itself
        let norm = cos_part.hypot(sin_part);
        if norm > 0.0 {
            [
                [cos_part / norm, -sin_part / norm],
                [sin_part / norm, cos_part / norm],
            ]
        } else {
            [[1.0, 0.0], [0.0, 1.0]]
        }
    };
    let b = [
        mt[0] - (m[0][0] * mf[0] + m[0][1] * mf[1]),
        mt[1] - (m[1][0] * mf[0] + m[1][1] * mf[1]),
    ];
    Affine2 { m, b }
}

/// A rectangle with floating corners (dlib `drectangle`; width = right − left + 1, empty if left > right).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DRect {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
}

impl DRect {
    fn is_empty(&self) -> bool {
        self.top > self.bottom || self.left > self.right
    }

    fn area(&self) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        (self.right - self.left + 1.0) * (self.bottom - self.top + 1.0)
    }

    fn center(&self) -> [f64; 2] {
        [
            (self.left + self.right) / 2.0,
            (self.top + self.bottom) / 2.0,
        ]
    }

    /// `pyramid_down<2>::rect_down`: both corners through `p/2 − (1.25, 0.75)`.
    fn rect_down(&self) -> DRect {
        DRect {
            left: self.left / 2.0 - 1.25,
            top: self.top / 2.0 - 0.75,
            right: self.right / 2.0 - 1.25,
            bottom: self.bottom / 2.0 - 0.75,
        }
    }

    fn translate(&self, dx: f64, dy: f64) -> DRect {
        DRect {
            left: self.left + dx,
            top: self.top + dy,
            right: self.right + dx,
            bottom: self.bottom + dy,
        }
    }

    /// Corners tl, tr, bl, br rotated by `angle` about the centre (dlib `rotate_point`).
    fn rotated_corners(&self, angle: f64) -> [[f64; 2]; 4] {
        let c = self.center();
        let (sin, cos) = (angle.sin(), angle.cos());
        let rotate = |x: f64, y: f64| {
            let (px, py) = (x - c[0], y - c[1]);
            [cos * px - sin * py + c[0], sin * px + cos * py + c[1]]
        };
        [
            rotate(self.left, self.top),
            rotate(self.right, self.top),
            rotate(self.left, self.bottom),
            rotate(self.right, self.bottom),
        ]
    }
}

/// Where and how to cut one chip (dlib `chip_details`): a rectangle in the image rotated by `angle`
/// radians about its centre, resampled to `rows × cols`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChipDetails {
    pub rect: DRect,
    pub angle: f64,
    pub rows: usize,
    pub cols: usize,
}

/// dlib `get_face_chip_details` for 5-point landmarks: fit the template (padded by `padding`, scaled to
/// `size`) to the landmarks and turn the similarity into a rotated rectangle.
pub fn get_face_chip_details(
    landmarks: &[Point],
    size: usize,
    padding: f64,
) -> Result<ChipDetails, FaceError> {
    if landmarks.len() != 5 {
        return Err(FaceError::InvalidInput {
            what: format!(
                "face chips need the 5 dlib landmarks, got {} points",
                landmarks.len()
            ),
        });
    }
    if size < 2 || !(padding >= 0.0 && padding.is_finite()) {
        return Err(FaceError::InvalidInput {
            what: format!("chip size {size} must be ≥ 2 and padding {padding} ≥ 0"),
        });
    }
    let scale_to_chip = size as f64;
    let from: Vec<[f64; 2]> = FIVE_POINT_TEMPLATE
        .iter()
        .map(|p| {
            [
                (padding + p[0]) / (2.0 * padding + 1.0) * scale_to_chip,
                (padding + p[1]) / (2.0 * padding + 1.0) * scale_to_chip,
            ]
        })
        .collect();
    let to: Vec<[f64; 2]> = landmarks.iter().map(|p| [p.x as f64, p.y as f64]).collect();
    let tform = find_similarity_transform(&from, &to);
    let p = [tform.m[0][0], tform.m[1][0]]; // tform.m · (1, 0)
    let angle = p[1].atan2(p[0]);
    let scale = p[0].hypot(p[1]);
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(FaceError::InvalidInput {
            what: format!("degenerate landmarks {landmarks:?}: cannot fit a face chip"),
        });
    }
    let half = size as f64 / 2.0;
    let centre = tform.apply([half, half]);
    let extent = (size as f64 * scale - 1.0) / 2.0; // centered_drect(p, w, h)
    Ok(ChipDetails {
        rect: DRect {
            left: centre[0] - extent,
            top: centre[1] - extent,
            right: centre[0] + extent,
            bottom: centre[1] + extent,
        },
        angle,
        rows: size,
        cols: size,
    })
}

/// The 150×150 chip that dlib's `compute_face_descriptor(img, shape, 0, 0.25)` feeds to the network.
pub fn face_chip(image: &RgbImage, landmarks: &[Point]) -> Result<RgbImage, FaceError> {
    let details = get_face_chip_details(landmarks, FACE_CHIP_SIZE, FACE_CHIP_PADDING)?;
    extract_image_chip(image, &details)
}

/// dlib `extract_image_chip` (one chip; its own crop and pyramid, as `get_face_chip` does).
pub fn extract_image_chip(image: &RgbImage, details: &ChipDetails) -> Result<RgbImage, FaceError> {
    let mut chips = extract_image_chips(image, std::slice::from_ref(details))?;
    chips.pop().ok_or_else(|| FaceError::InvalidInput {
        what: "no chip produced".to_string(),
    })
}

/// dlib `extract_image_chips` with bilinear interpolation. Several chips share one crop and pyramid, as in
/// dlib (so a chip can differ slightly from the one cut alone when a pyramid level is used).
pub fn extract_image_chips(
    image: &RgbImage,
    chips: &[ChipDetails],
) -> Result<Vec<RgbImage>, FaceError> {
    for d in chips {
        let finite = [
            d.rect.left,
            d.rect.top,
            d.rect.right,
            d.rect.bottom,
            d.angle,
        ]
        .iter()
        .all(|v| v.is_finite());
        if d.rows < 2
            || d.cols < 2
            || d.rows > 1 << 14
            || d.cols > 1 << 14
            || !finite
            || d.rect.is_empty()
        {
            return Err(FaceError::InvalidInput {
                what: format!("cannot extract a chip for {d:?}"),
            });
        }
    }
    let image_rect = [
        0i64,
        0,
        i64::from(image.width()) - 1,
        i64::from(image.height()) - 1,
    ];
    let mut bounding_box: Option<[i64; 4]> = None;
    let mut max_depth = 0usize;
    for d in chips {
        let size = (d.rows * d.cols) as f64;
        let mut depth = 0;
        let mut grow = 2.0;
        let mut rect = d.rect.rect_down();
        while rect.area() > size {
            rect = rect.rect_down();
            depth += 1;
            grow = grow * 2.0 + 2.0;
        }
        let corners = d.rect.rotated_corners(d.angle);
        let min = |i: usize| corners.iter().map(|c| c[i]).fold(f64::INFINITY, f64::min);
        let max = |i: usize| {
            corners
                .iter()
                .map(|c| c[i])
                .fold(f64::NEG_INFINITY, f64::max)
        };
        // grow_rect(rot_rect, grow).intersect(get_rect(img)), then converted to an integer rectangle by lround
        let grown = [
            (min(0) - grow).max(image_rect[0] as f64),
            (min(1) - grow).max(image_rect[1] as f64),
            (max(0) + grow).min(image_rect[2] as f64),
            (max(1) + grow).min(image_rect[3] as f64),
        ]
        .map(|v| v.round() as i64);
        bounding_box = union_rect(bounding_box, grown);
        max_depth = max_depth.max(depth);
    }
    let bbox = bounding_box.unwrap_or([0, 0, -1, -1]);
    let crop = crop_image(image, bbox);
    let mut levels: Vec<RgbImage> = Vec::with_capacity(max_depth);
    for i in 0..max_depth {
        let down = pyramid_down2(if i == 0 { &crop } else { &levels[i - 1] });
        levels.push(down);
    }
    let outputs = chips
        .iter()
        .map(|d| {
            let (height, width) = (
                d.rect.bottom - d.rect.top + 1.0,
                d.rect.right - d.rect.left + 1.0,
            );
            if d.angle == 0.0 && d.rows as f64 == height && d.cols as f64 == width {
                return copy_chip(image, d);
            }
            let size = (d.rows * d.cols) as f64;
            let mut rect = d.rect.translate(-bbox[0] as f64, -bbox[1] as f64);
            let mut level: Option<usize> = None;
            while rect.rect_down().area() > size {
                level = Some(level.map_or(0, |l| l + 1));
                rect = rect.rect_down();
            }
            let source = match level {
                None => &crop,
                Some(l) => levels.get(l).unwrap_or(&crop),
            };
            sample_chip(source, &rect, d)
        })
        .collect();
    Ok(outputs)
}

/// dlib `basic_extract_image_chip`: an unrotated, unscaled chip is a plain copy of `round(rect)`, black outside.
fn copy_chip(image: &RgbImage, d: &ChipDetails) -> RgbImage {
    let (left, top) = (d.rect.left.round() as i64, d.rect.top.round() as i64);
    RgbImage::from_fn(d.cols as u32, d.rows as u32, |c, r| {
        let (x, y) = (left + i64::from(c), top + i64::from(r));
        let inside =
            x >= 0 && y >= 0 && x < i64::from(image.width()) && y < i64::from(image.height());
        if inside {
            *image.get_pixel(x as u32, y as u32)
        } else {
            Rgb([0, 0, 0])
        }
    })
}

/// Union of integer inclusive rectangles where empty ones (left > right or top > bottom) are ignored.
fn union_rect(acc: Option<[i64; 4]>, r: [i64; 4]) -> Option<[i64; 4]> {
    let empty = r[0] > r[2] || r[1] > r[3];
    match (acc, empty) {
        (acc, true) => acc,
        (None, false) => Some(r),
        (Some(a), false) => Some([
            a[0].min(r[0]),
            a[1].min(r[1]),
            a[2].max(r[2]),
            a[3].max(r[3]),
        ]),
    }
}

/// The pixels of `image` inside the inclusive rectangle `r` (which lies within the image or is empty).
fn crop_image(image: &RgbImage, r: [i64; 4]) -> RgbImage {
    if r[0] > r[2] || r[1] > r[3] {
        return RgbImage::new(0, 0);
    }
    let (x0, y0) = (r[0] as u32, r[1] as u32);
    let (w, h) = ((r[2] - r[0] + 1) as u32, (r[3] - r[1] + 1) as u32);
    image::imageops::crop_imm(image, x0, y0, w, h).to_image()
}

/// Bilinear resampling of the rotated `rect` (in `source` coordinates) into a `rows × cols` chip.
fn sample_chip(source: &RgbImage, rect: &DRect, d: &ChipDetails) -> RgbImage {
    let [tl, tr, bl, _] = rect.rotated_corners(d.angle);
    let ex = [
        (tr[0] - tl[0]) / (d.cols - 1) as f64,
        (tr[1] - tl[1]) / (d.cols - 1) as f64,
    ];
    let ey = [
        (bl[0] - tl[0]) / (d.rows - 1) as f64,
        (bl[1] - tl[1]) / (d.rows - 1) as f64,
    ];
    let mut chip = RgbImage::new(d.cols as u32, d.rows as u32);
    for (c, r, pixel) in chip.enumerate_pixels_mut() {
        let (c, r) = (f64::from(c), f64::from(r));
        let x = tl[0] + ex[0] * c + ey[0] * r;
        let y = tl[1] + ex[1] * c + ey[1] * r;
        *pixel = interpolate_bilinear(source, x, y).unwrap_or(Rgb([0, 0, 0]));
    }
    chip
}

/// dlib `interpolate_bilinear`: `None` unless all four neighbours are inside; channels truncated to u8.
fn interpolate_bilinear(img: &RgbImage, x: f64, y: f64) -> Option<Rgb<u8>> {
    let (fx, fy) = (x.floor(), y.floor());
    if !(fx >= 0.0
        && fy >= 0.0
        && fx + 1.0 < f64::from(img.width())
        && fy + 1.0 < f64::from(img.height()))
    {
        return None;
    }
    let (left, top) = (fx as u32, fy as u32);
    let lr = x - fx;
    let tb = y - fy;
    let px = |xx: u32, yy: u32| img.get_pixel(xx, yy).0.map(f64::from);
    let (tl, tr, bl, br) = (
        px(left, top),
        px(left + 1, top),
        px(left, top + 1),
        px(left + 1, top + 1),
    );
    let mut out = [0u8; 3];
    for (i, o) in out.iter_mut().enumerate() {
        let v =
            (1.0 - tb) * ((1.0 - lr) * tl[i] + lr * tr[i]) + tb * ((1.0 - lr) * bl[i] + lr * br[i]);
        *o = v as u8;
    }
    Some(Rgb(out))
}

/// dlib `pyramid_down<2>` for RGB: 5-tap [1 4 6 4 1] filter in both directions, keep every other
/// row/column, integer sums divided by 256 (truncating). Output `((h−3)/2) × ((w−3)/2)`, empty if ≤ 8 px.
pub fn pyramid_down2(original: &RgbImage) -> RgbImage {
    let (w, h) = (original.width() as usize, original.height() as usize);
    if w <= 8 || h <= 8 {
        return RgbImage::new(0, 0);
    }
    let (out_w, out_h) = ((w - 3) / 2, (h - 3) / 2);
    let src = original.as_raw();
    // row filter: temp[r][c] uses original columns 2c .. 2c+4
    let mut temp = vec![0u32; h * out_w * 3];
    for r in 0..h {
        for c in 0..out_w {
            for ch in 0..3 {
                let at = |k: usize| u32::from(src[(r * w + 2 * c + k) * 3 + ch]);
                temp[(r * out_w + c) * 3 + ch] = at(0) + 4 * at(1) + 6 * at(2) + 4 * at(3) + at(4);
            }
        }
    }
    // column filter: output row dr uses temp rows 2dr .. 2dr+4
    let mut down = RgbImage::new(out_w as u32, out_h as u32);
    let dst: &mut [u8] = &mut down;
    for dr in 0..out_h {
        for c in 0..out_w {
            for ch in 0..3 {
                let at = |k: usize| temp[((2 * dr + k) * out_w + c) * 3 + ch];
                let sum = at(0) + 4 * at(1) + 6 * at(2) + 4 * at(3) + at(4);
                dst[(dr * out_w + c) * 3 + ch] = (sum / 256) as u8;
            }
        }
    }
    down
}

/// dlib's random number generator `dlib::rand`: mt19937 with its default seed 5489, primed by 10 000 draws.
/// A fresh one reproduces the jitters of a fresh dlib model object (face.md §3.6).
#[derive(Debug, Clone)]
pub struct DlibRand {
    state: [u32; 624],
    index: usize,
}

impl Default for DlibRand {
    fn default() -> Self {
        Self::new()
    }
}

impl DlibRand {
    /// The generator in the state a default-constructed `dlib::rand` has.
    pub fn new() -> Self {
        let mut state = [0u32; 624];
        state[0] = 5489;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        let mut rand = DlibRand { state, index: 624 };
        for _ in 0..10_000 {
            rand.mt19937();
        }
        rand
    }

    /// Next raw mt19937 output.
    fn mt19937(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    next ^= 0x9908_b0df;
                }
                self.state[i] = next;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `get_random_32bit_number`.
    pub fn get_random_32bit_number(&mut self) -> u32 {
        self.mt19937()
    }

    /// `get_random_double`: 48 random bits scaled into [0, 1).
    pub fn get_random_double(&mut self) -> f64 {
        let max_val = (0xFF_FFFFu64 * 0x100_0000 + 0xFF_FFFF) as f64 + 0.05;
        let high = f64::from(self.mt19937() & 0xFF_FFFF) * f64::from(0x100_0000u32);
        let val = (high + f64::from(self.mt19937() & 0xFF_FFFF)) / max_val;
        if val < 1.0 {
            val
        } else {
            1.0 - f64::EPSILON
        }
    }

    /// `get_double_in_range(begin, end)`.
    pub fn get_double_in_range(&mut self, begin: f64, end: f64) -> f64 {
        begin + self.get_random_double() * (end - begin)
    }
}

/// dlib `jitter_image` for a square chip: random shift (±2 %), zoom (box = height / U(0.97, 0.99999)), rotation
/// (±3°) and a left-right mirror with probability ½, drawing from `rnd` in dlib's order.
pub fn jitter_image(chip: &RgbImage, rnd: &mut DlibRand) -> Result<RgbImage, FaceError> {
    let (cols, rows) = (chip.width() as i64, chip.height() as i64);
    if cols != rows || cols <= 6 {
        return Err(FaceError::InvalidInput {
            what: format!("jitter needs a square chip larger than 6 px, got {cols}x{rows}"),
        });
    }
    // rect = shrink_rect(get_rect(img), 3); inclusive, so width = cols − 6
    let (left, right) = (3i64, cols - 4);
    let side = (right - left + 1) as f64;
    // dpoint(dx, dy): GCC evaluates these two constructor arguments right to left, so dy is drawn first
    let dy = rnd.get_double_in_range(-0.02, 0.02) * side;
    let dx = rnd.get_double_in_range(-0.02, 0.02) * side;
    let scale = rnd.get_double_in_range(0.97, 0.99999);
    let box_size = (side / scale) as i64;
    let centre = (left + right + 1) / 2; // dlib center(rectangle)
    let cx = centre + super::round_half_up(dx);
    let cy = centre + super::round_half_up(dy);
    let (crop_left, crop_top) = (cx - box_size / 2, cy - box_size / 2);
    let angle = rnd.get_double_in_range(-3.0, 3.0) * std::f64::consts::PI / 180.0;
    let details = ChipDetails {
        rect: DRect {
            left: crop_left as f64,
            top: crop_top as f64,
            right: (crop_left + box_size - 1) as f64,
            bottom: (crop_top + box_size - 1) as f64,
        },
        angle,
        rows: rows as usize,
        cols: cols as usize,
    };
    let mut crop = extract_image_chip(chip, &details)?;
    if rnd.get_random_double() > 0.5 {
        image::imageops::flip_horizontal_in_place(&mut crop);
    }
    Ok(crop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_recovers_a_known_transform() {
        let from = [[0.0, 0.0], [10.0, 0.0], [0.0, 5.0], [3.0, 7.0]];
        let (s, a, t) = (2.5f64, 0.3f64, [4.0, -7.0]);
        let to: Vec<[f64; 2]> = from
            .iter()
            .map(|p| {
                [
                    s * (a.cos() * p[0] - a.sin() * p[1]) + t[0],
                    s * (a.sin() * p[0] + a.cos() * p[1]) + t[1],
                ]
            })
            .collect();
        let tf = find_similarity_transform(&from, &to);
        for (p, q) in from.iter().zip(&to) {
            let r = tf.apply(*p);
            assert!(
                (r[0] - q[0]).abs() < 1e-9 && (r[1] - q[1]).abs() < 1e-9,
                "{r:?} vs {q:?}"
            );
        }
        // a mirrored point set still gets a proper rotation (Umeyama's sign fix): det(m) > 0
        let mirrored: Vec<[f64; 2]> = from.iter().map(|p| [-p[0], p[1]]).collect();
        let m = find_similarity_transform(&from, &mirrored).m;
        assert!(m[0][0] * m[1][1] - m[0][1] * m[1][0] >= 0.0);
    }

    #[test]
    fn chip_details_of_template_landmarks_are_axis_aligned() {
        // landmarks exactly at the 150/0.25 template positions scaled ×2 and shifted by (100, 50)
        let pts: Vec<Point> = FIVE_POINT_TEMPLATE
            .iter()
            .map(|p| Point {
                x: ((0.25 + p[0]) / 1.5 * 300.0 + 100.0).round() as i64,
                y: ((0.25 + p[1]) / 1.5 * 300.0 + 50.0).round() as i64,
            })
            .collect();
        let d = get_face_chip_details(&pts, 150, 0.25).unwrap();
        assert!(d.angle.abs() < 0.01, "{}", d.angle);
        let width = d.rect.right - d.rect.left + 1.0;
        assert!((width - 300.0).abs() < 2.0, "{width}");
        assert!(
            (d.rect.left - 100.0).abs() < 2.0 && (d.rect.top - 50.0).abs() < 2.0,
            "{:?}",
            d.rect
        );
    }

    #[test]
    fn pyramid_down_matches_hand_computation() {
        // constant image stays constant (sum of weights 256); sizes ((n-3)/2)
        let img = RgbImage::from_pixel(11, 9, Rgb([100, 7, 255]));
        let down = pyramid_down2(&img);
        assert_eq!((down.width(), down.height()), (4, 3));
        assert!(down.pixels().all(|p| p.0 == [100, 7, 255]));
        assert_eq!(pyramid_down2(&RgbImage::new(8, 100)).width(), 0);
        // a single bright pixel at (2,2) lands in output (0,0) with weight 36/256
        let mut img = RgbImage::new(9, 9);
        img.put_pixel(2, 2, Rgb([255, 0, 0]));
        assert_eq!(
            pyramid_down2(&img).get_pixel(0, 0).0[0],
            (255 * 36 / 256) as u8
        );
    }

    #[test]
    fn bilinear_truncates_and_rejects_outside() {
        let mut img = RgbImage::new(2, 2);
        img.put_pixel(1, 0, Rgb([255, 255, 255]));
        assert_eq!(
            interpolate_bilinear(&img, 0.5, 0.0).unwrap().0,
            [127, 127, 127]
        );
        assert!(interpolate_bilinear(&img, 1.0, 0.0).is_none());
        assert!(interpolate_bilinear(&img, -0.1, 0.0).is_none());
    }

    #[test]
    fn dlib_rand_is_mt19937_with_default_seed() {
        // C++ requires the 10000th output of a default-seeded std::mt19937 to be 4123659995; dlib::rand
        // discards exactly 10000 outputs, so its first number is the 10001st.
        let mut mt = DlibRand {
            state: [0; 624],
            index: 0,
        };
        mt.state[0] = 5489;
        for i in 1..624 {
            let prev = mt.state[i - 1];
            mt.state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        mt.index = 624;
        assert_eq!(mt.mt19937(), 3_499_211_612);
        let tenth_thousand = (1..10_000).map(|_| mt.mt19937()).last().unwrap();
        assert_eq!(tenth_thousand, 4_123_659_995);
        let mut rand = DlibRand::new();
        assert_eq!(rand.get_random_32bit_number(), mt.mt19937());
        let d = rand.get_random_double();
        assert!((0.0..1.0).contains(&d));
    }

    #[test]
    fn unrotated_same_size_chip_is_a_plain_copy() {
        let img = RgbImage::from_fn(20, 10, |x, y| Rgb([x as u8, y as u8, 7]));
        let d = ChipDetails {
            rect: DRect {
                left: 15.0,
                top: -2.0,
                right: 24.0,
                bottom: 7.0,
            },
            angle: 0.0,
            rows: 10,
            cols: 10,
        };
        let chip = extract_image_chip(&img, &d).unwrap();
        assert_eq!(chip.get_pixel(0, 2).0, [15, 0, 7]);
        assert_eq!(chip.get_pixel(4, 9).0, [19, 7, 7]);
        assert_eq!(chip.get_pixel(5, 5).0, [0, 0, 0]); // x = 20 is outside
        assert_eq!(chip.get_pixel(0, 0).0, [0, 0, 0]); // y = -2 is outside
    }

    #[test]
    fn bad_inputs_are_errors() {
        let img = RgbImage::new(10, 10);
        assert!(face_chip(&img, &[Point::default(); 4]).is_err());
        assert!(face_chip(&img, &[Point::default(); 5]).is_err());
        // a face far outside the image gives a black chip, not a panic
        let pts: Vec<Point> = FIVE_POINT_TEMPLATE
            .iter()
            .map(|p| Point {
                x: (p[0] * 100.0) as i64 + 5000,
                y: (p[1] * 100.0) as i64 - 3000,
            })
            .collect();
        let chip = face_chip(&img, &pts).unwrap();
        assert!(chip.pixels().all(|p| p.0 == [0, 0, 0]));
        let absurd = [i64::MAX, i64::MIN, 0, i64::MAX, 7].map(|v| Point { x: v, y: v / 3 });
        let _ = face_chip(&img, &absurd);
        assert!(face_chip(&RgbImage::new(0, 0), &pts).is_ok());
    }
}
