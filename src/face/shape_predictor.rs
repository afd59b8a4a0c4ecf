//! dlib's ERT shape predictor (face.md §4): parses `shape_predictor_5_face_landmarks.dat` and places landmarks.
//!
//! Mirrors `dlib/image_processing/shape_predictor.h`: a cascade of regression forests; each cascade samples grey
//! pixel intensities at points anchored to the current shape, each depth-4 tree compares two of them and
//! adds its leaf vector to the shape (normalised to the detection rectangle).

use std::path::Path;

use image::{GrayImage, RgbImage};

use super::align::{find_similarity_transform, Affine2};
use super::serialize::{read_model_file, Reader};
use super::{round_half_up, FaceError, Point, Rect};

/// One split: go left if `feature[idx1] − feature[idx2] > thresh`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SplitFeature {
    idx1: usize,
    idx2: usize,
    thresh: f32,
}

/// A complete binary tree: `splits` in breadth-first order, `leaf_values` = `num_leaves × 2P` floats.
#[derive(Debug, Clone, PartialEq)]
struct RegressionTree {
    splits: Vec<SplitFeature>,
    leaf_values: Vec<f32>,
}

/// A parsed dlib `shape_predictor`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapePredictor {
    /// Mean shape, interleaved x0,y0,x1,y1… in rectangle-normalised coordinates.
    initial_shape: Vec<f32>,
    /// `forests[cascade][tree]`.
    forests: Vec<Vec<RegressionTree>>,
    /// Per cascade and feature pixel: the shape point it is anchored to.
    anchor_idx: Vec<Vec<usize>>,
    /// Per cascade and feature pixel: offset from the anchor in the initial shape's frame.
    deltas: Vec<Vec<[f32; 2]>>,
}

impl ShapePredictor {
    /// Loads a dlib shape predictor file (e.g. `assets/face/shape_predictor_5_face_landmarks.dat`).
    pub fn load(path: &Path) -> Result<Self, FaceError> {
        let bytes = read_model_file(path)?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses the bytes of a shape predictor file; `file` only names it in errors.
    pub fn from_bytes(bytes: &[u8], file: &Path) -> Result<Self, FaceError> {
        let mut r = Reader::new(bytes, file);
        r.read_version(&[1], "shape_predictor")?;
        let initial_start = r.pos();
        let initial = r
            .read_matrix_f32()
            .map_err(|e| e.context("initial_shape"))?;
        let num_values = initial.data.len();
        if initial.cols != 1 || num_values == 0 || num_values % 2 != 0 {
            return Err(r.error_at(
                initial_start,
                format!(
                    "initial_shape must be a column of 2·parts values, found {}x{}",
                    initial.rows, initial.cols
                ),
            ));
        }
        let forests_start = r.pos();
        let forests = r
            .read_vec(1, |r| r.read_vec(1, |r| read_tree(r, num_values)))
            .map_err(|e| e.context("forests"))?;
        let anchors_start = r.pos();
        let anchor_idx = r
            .read_vec(1, |r| r.read_vec(1, |r| r.read_usize()))
            .map_err(|e| e.context("anchor_idx"))?;
        let deltas_start = r.pos();
        let deltas = r
            .read_vec(1, |r| r.read_vec(2, |r| r.read_point_f32()))
            .map_err(|e| e.context("deltas"))?;
        r.expect_end()?;
        let predictor = ShapePredictor {
            initial_shape: initial.data,
            forests,
            anchor_idx,
            deltas,
        };
        predictor.validate(&r, [forests_start, anchors_start, deltas_start])?;
        Ok(predictor)
    }

    /// Checks the cross-references between forests, anchors and deltas (offsets point at each section).
    fn validate(
        &self,
        r: &Reader<'_>,
        [forests_at, anchors_at, deltas_at]: [usize; 3],
    ) -> Result<(), FaceError> {
        let cascades = self.forests.len();
        if self.anchor_idx.len() != cascades || self.deltas.len() != cascades {
            return Err(r.error_at(
                anchors_at,
                format!(
                    "{cascades} cascades of trees but {} anchor lists and {} delta lists",
                    self.anchor_idx.len(),
                    self.deltas.len()
                ),
            ));
        }
        let parts = self.num_parts();
        for (k, (anchors, deltas)) in self.anchor_idx.iter().zip(&self.deltas).enumerate() {
            if anchors.len() != deltas.len() {
                return Err(r.error_at(
                    deltas_at,
                    format!(
                        "cascade {k}: {} anchors but {} deltas",
                        anchors.len(),
                        deltas.len()
                    ),
                ));
            }
            if let Some(bad) = anchors.iter().find(|&&a| a >= parts) {
                return Err(r.error_at(
                    anchors_at,
                    format!("cascade {k}: anchor index {bad} but the shape has {parts} parts"),
                ));
            }
            let features = deltas.len();
            let max_idx = self.forests[k]
                .iter()
                .flat_map(|t| t.splits.iter().map(|s| s.idx1.max(s.idx2)))
                .max();
            if let Some(max_idx) = max_idx.filter(|&m| m >= features) {
                return Err(r.error_at(
                    forests_at,
                    format!("cascade {k}: a split uses feature {max_idx} but only {features} feature pixels exist"),
                ));
            }
        }
        Ok(())
    }

    /// Number of landmarks (5 for the vendored model).
    pub fn num_parts(&self) -> usize {
        self.initial_shape.len() / 2
    }

    /// Landmarks for a detection rectangle on an RGB image (grey = (R+G+B)/3 as dlib's `get_pixel_intensity`).
    pub fn predict_rgb(&self, image: &RgbImage, rect: Rect) -> Vec<Point> {
        let width = image.width() as usize;
        let raw = image.as_raw();
        self.predict_with(image.width(), image.height(), rect, |x, y| {
            let i = (y * width + x) * 3;
            let sum = u32::from(raw[i]) + u32::from(raw[i + 1]) + u32::from(raw[i + 2]);
            (sum / 3) as u8
        })
    }

    /// Landmarks for a detection rectangle on a grayscale image.
    pub fn predict_gray(&self, image: &GrayImage, rect: Rect) -> Vec<Point> {
        let width = image.width() as usize;
        let raw = image.as_raw();
        self.predict_with(image.width(), image.height(), rect, |x, y| {
            raw[y * width + x]
        })
    }

    /// The cascade of `shape_predictor::operator()`, reading grey pixels through `intensity(x, y)`.
    fn predict_with(
        &self,
        width: u32,
        height: u32,
        rect: Rect,
        intensity: impl Fn(usize, usize) -> u8,
    ) -> Vec<Point> {
        let to_image = unnormalizing_transform(rect);
        let mut shape = self.initial_shape.clone();
        let mut features: Vec<f32> = Vec::new();
        for (k, forest) in self.forests.iter().enumerate() {
            let tform = shape_transform(&self.initial_shape, &shape);
            features.clear();
            for (&anchor, delta) in self.anchor_idx[k].iter().zip(&self.deltas[k]) {
                let qx = tform[0][0] * delta[0] + tform[0][1] * delta[1] + shape[2 * anchor];
                let qy = tform[1][0] * delta[0] + tform[1][1] * delta[1] + shape[2 * anchor + 1];
                let [x, y] = to_image.apply([f64::from(qx), f64::from(qy)]);
                let (px, py) = (round_half_up(x), round_half_up(y));
                let inside = px >= 0 && py >= 0 && px < i64::from(width) && py < i64::from(height);
                let value = if inside {
                    intensity(px as usize, py as usize)
                } else {
                    0
                };
                features.push(f32::from(value));
            }
            for tree in forest {
                let leaf = tree.leaf(&features, shape.len());
                for (s, l) in shape.iter_mut().zip(leaf) {
                    *s += l;
                }
            }
        }
        shape
            .chunks_exact(2)
            .map(|p| {
                let [x, y] = to_image.apply([f64::from(p[0]), f64::from(p[1])]);
                Point {
                    x: round_half_up(x),
                    y: round_half_up(y),
                }
            })
            .collect()
    }
}

impl RegressionTree {
    /// Walks the tree for these feature values and returns the leaf's shape increment.
    fn leaf(&self, features: &[f32], leaf_len: usize) -> &[f32] {
        let mut i = 0;
        while i < self.splits.len() {
            let s = self.splits[i];
            i = if features[s.idx1] - features[s.idx2] > s.thresh {
                2 * i + 1
            } else {
                2 * i + 2
            };
        }
        let leaf = i - self.splits.len();
        &self.leaf_values[leaf * leaf_len..(leaf + 1) * leaf_len]
    }
}

/// `regression_tree`: vector of splits, vector of leaf vectors (each a `matrix<float,0,1>` of `leaf_len`).
fn read_tree(r: &mut Reader<'_>, leaf_len: usize) -> Result<RegressionTree, FaceError> {
    let start = r.pos();
    let splits = r.read_vec(3, |r| {
        Ok(SplitFeature {
            idx1: r.read_usize()?,
            idx2: r.read_usize()?,
            thresh: r.read_f32()?,
        })
    })?;
    let leaves_start = r.pos();
    let leaf_count = r.read_len(2)?;
    if leaf_count != splits.len() + 1 || !leaf_count.is_power_of_two() {
        return Err(r.error_at(
            leaves_start,
            format!(
                "tree at {start} has {} splits and {leaf_count} leaves (needs a complete tree)",
                splits.len()
            ),
        ));
    }
    let mut leaf_values = Vec::with_capacity(leaf_count * leaf_len);
    for _ in 0..leaf_count {
        let leaf_start = r.pos();
        let leaf = r.read_matrix_f32()?;
        if leaf.data.len() != leaf_len || leaf.cols != 1 {
            return Err(r.error_at(
                leaf_start,
                format!("leaf is {}x{}, expected {leaf_len}x1", leaf.rows, leaf.cols),
            ));
        }
        leaf_values.extend_from_slice(&leaf.data);
    }
    Ok(RegressionTree {
        splits,
        leaf_values,
    })
}

/// The 2×2 part of the similarity transform from `initial` to `current` (in double, then cast to float as
/// dlib's `find_tform_between_shapes` + `matrix_cast<float>`); identity for a single point.
fn shape_transform(initial: &[f32], current: &[f32]) -> [[f32; 2]; 2] {
    if initial.len() < 4 {
        return [[1.0, 0.0], [0.0, 1.0]];
    }
    let from: Vec<[f64; 2]> = initial
        .chunks_exact(2)
        .map(|p| [f64::from(p[0]), f64::from(p[1])])
        .collect();
    let to: Vec<[f64; 2]> = current
        .chunks_exact(2)
        .map(|p| [f64::from(p[0]), f64::from(p[1])])
        .collect();
    let m = find_similarity_transform(&from, &to).m;
    [
        [m[0][0] as f32, m[0][1] as f32],
        [m[1][0] as f32, m[1][1] as f32],
    ]
}

/// Maps (0,0) → top-left, (1,0) → top-right, (1,1) → bottom-right of `rect` (dlib `unnormalizing_tform`).
fn unnormalizing_transform(rect: Rect) -> Affine2 {
    Affine2 {
        m: [
            [rect.right as f64 - rect.left as f64, 0.0],
            [0.0, rect.bottom as f64 - rect.top as f64],
        ],
        b: [rect.left as f64, rect.top as f64],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-built predictor: 1 part, 1 cascade, 1 tree with one split on features 0 and 1.
    fn tiny_model(thresh_bytes: &[u8]) -> Vec<u8> {
        let mut b = vec![0x01, 0x01]; // version
        b.extend_from_slice(&[0x81, 0x02, 0x81, 0x01]); // matrix -2 x -1
        b.extend_from_slice(&[0x01, 0x01, 0x81, 0x01]); // x = 0.5
        b.extend_from_slice(&[0x01, 0x01, 0x81, 0x01]); // y = 0.5
        b.extend_from_slice(&[0x01, 0x01, 0x01, 0x01]); // 1 cascade, 1 tree
        b.extend_from_slice(&[0x01, 0x01, 0x01, 0x00, 0x01, 0x01]); // 1 split: idx 0, 1
        b.extend_from_slice(thresh_bytes);
        b.extend_from_slice(&[0x01, 0x02]); // 2 leaves
                                            // left leaf (+0.25, 0), right leaf (-0.25, 0)
        b.extend_from_slice(&[
            0x81, 0x02, 0x81, 0x01, 0x01, 0x01, 0x81, 0x02, 0x01, 0x00, 0x01, 0x00,
        ]);
        b.extend_from_slice(&[
            0x81, 0x02, 0x81, 0x01, 0x81, 0x01, 0x81, 0x02, 0x01, 0x00, 0x01, 0x00,
        ]);
        b.extend_from_slice(&[0x01, 0x01, 0x01, 0x02, 0x01, 0x00, 0x01, 0x00]); // anchor_idx [[0, 0]]
                                                                                // deltas [[(-0.25, 0), (+0.25, 0)]]
        b.extend_from_slice(&[0x01, 0x01, 0x01, 0x02]);
        b.extend_from_slice(&[0x81, 0x01, 0x81, 0x02, 0x01, 0x00, 0x01, 0x00]);
        b.extend_from_slice(&[0x01, 0x01, 0x81, 0x02, 0x01, 0x00, 0x01, 0x00]);
        b
    }

    #[test]
    fn tiny_model_moves_toward_brighter_side() {
        let bytes = tiny_model(&[0x01, 0x00, 0x01, 0x00]); // thresh 0
        let sp = ShapePredictor::from_bytes(&bytes, Path::new("tiny.dat")).unwrap();
        assert_eq!(sp.num_parts(), 1);
        // rect 0..100: features at x = 25 and x = 75 (y = 50)
        let rect = Rect::new(0, 0, 100, 100);
        let mut img = GrayImage::new(101, 101);
        img.put_pixel(25, 50, image::Luma([200]));
        // feature0 − feature1 = 200 > 0 → left leaf (+0.25) → x = 0.75·100
        assert_eq!(sp.predict_gray(&img, rect), vec![Point { x: 75, y: 50 }]);
        let mut img = GrayImage::new(101, 101);
        img.put_pixel(75, 50, image::Luma([200]));
        assert_eq!(sp.predict_gray(&img, rect), vec![Point { x: 25, y: 50 }]);
        // RGB grey is (R+G+B)/3: (200+100+0)/3 = 100 > 0
        let mut rgb = RgbImage::new(101, 101);
        rgb.put_pixel(25, 50, image::Rgb([200, 100, 0]));
        assert_eq!(sp.predict_rgb(&rgb, rect), vec![Point { x: 75, y: 50 }]);
        // a rectangle partly outside the image reads 0 outside and does not panic, nor do absurd ones
        let _ = sp.predict_rgb(&rgb, Rect::new(-500, -500, 10, 10));
        let _ = sp.predict_rgb(&rgb, Rect::new(i64::MIN, i64::MIN, i64::MAX, i64::MAX));
    }

    #[test]
    fn corrupt_models_report_offsets() {
        let bytes = tiny_model(&[0x01, 0x00, 0x01, 0x00]);
        // truncated anywhere: error, never a panic
        for cut in 0..bytes.len() {
            let err = ShapePredictor::from_bytes(&bytes[..cut], Path::new("cut.dat")).unwrap_err();
            assert!(
                matches!(err, FaceError::ModelParse { offset, .. } if offset <= cut),
                "{err}"
            );
        }
        // split index 9 beyond the 2 feature pixels
        let mut bad = bytes.clone();
        bad[23] = 0x09;
        let msg = ShapePredictor::from_bytes(&bad, Path::new("bad.dat"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("feature 9") && msg.contains("bad.dat"),
            "{msg}"
        );
        // trailing garbage
        let mut long = bytes.clone();
        long.push(0);
        let msg = ShapePredictor::from_bytes(&long, Path::new("x.dat"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&format!("offset {}", bytes.len())), "{msg}");
    }
}
