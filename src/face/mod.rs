//! Face stage: dlib-compatible model parsing, landmarks, aligned chips and images (see `face.md`).
//!
//! Submodules: [`serialize`] (dlib's binary format), [`dnn`] + [`dnn_layers`] (dlib DNN files and layer maths),
//! [`mmod`] (CNN face detector), [`shape_predictor`] (5-point ERT landmarks), [`align`] (150×150 face chips as
//! dlib cuts them), [`resnet`] (128-D descriptors), [`image_io`] (image files → 8-bit RGB), [`pipeline`]
//! (image → faces → descriptors), [`reference`] (reference photo sets, centroid, outliers), [`score`] (scores of
//! generated images against a reference set).

pub mod align;
pub mod dnn;
pub mod dnn_layers;
pub mod image_io;
pub mod mmod;
pub mod pipeline;
pub mod reference;
pub mod resnet;
pub mod score;
pub mod serialize;
pub mod shape_predictor;

use std::path::PathBuf;

/// Everything that can go wrong in the face stage.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// A model file could not be read from disk.
    #[error("cannot read model file {file}: {source}")]
    ModelIo {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model file is not what dlib would write; `offset` is the byte where parsing failed.
    #[error("model file {file} is invalid at byte offset {offset}: {what}")]
    ModelParse {
        file: PathBuf,
        offset: usize,
        what: String,
    },
    /// An image file could not be opened or decoded, or has a layout we do not accept.
    #[error("cannot use image {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    /// An image or argument has dimensions that the operation cannot work with.
    #[error("invalid input: {what}")]
    InvalidInput { what: String },
    /// No face was found in the image.
    #[error("no face found in {path}")]
    NoFace { path: PathBuf },
}

impl FaceError {
    /// Prefixes the `what` of a [`FaceError::ModelParse`] with what was being read (other variants unchanged).
    pub fn context(self, while_reading: &str) -> FaceError {
        match self {
            FaceError::ModelParse { file, offset, what } => FaceError::ModelParse {
                file,
                offset,
                what: format!("{while_reading}: {what}"),
            },
            other => other,
        }
    }
}

/// An integer rectangle with inclusive corners, like `dlib::rectangle` (width = right − left + 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Rect {
    pub left: i64,
    pub top: i64,
    pub right: i64,
    pub bottom: i64,
}

impl Rect {
    /// Rectangle from inclusive corners.
    pub fn new(left: i64, top: i64, right: i64, bottom: i64) -> Self {
        Rect {
            left,
            top,
            right,
            bottom,
        }
    }

    /// dlib width: `right − left + 1` (0 for empty rectangles).
    pub fn width(&self) -> i64 {
        self.right
            .saturating_sub(self.left)
            .saturating_add(1)
            .max(0)
    }

    /// dlib height: `bottom − top + 1` (0 for empty rectangles).
    pub fn height(&self) -> i64 {
        self.bottom
            .saturating_sub(self.top)
            .saturating_add(1)
            .max(0)
    }

    /// Inclusive area as dlib computes it.
    pub fn area(&self) -> i64 {
        self.width().saturating_mul(self.height())
    }

    /// Intersection (may be empty).
    pub fn intersect(&self, other: &Rect) -> Rect {
        Rect::new(
            self.left.max(other.left),
            self.top.max(other.top),
            self.right.min(other.right),
            self.bottom.min(other.bottom),
        )
    }

    /// Intersection over true union of inclusive areas (0 if both are empty).
    pub fn iou(&self, other: &Rect) -> f64 {
        let inter = self.intersect(other).area();
        let union = self
            .area()
            .saturating_add(other.area())
            .saturating_sub(inter);
        if union <= 0 {
            return 0.0;
        }
        inter as f64 / union as f64
    }
}

/// An integer pixel position (landmark), like `dlib::point`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub x: i64,
    pub y: i64,
}

/// Rounds like dlib's conversion of a floating point vector to an integer point: `floor(v + 0.5)`.
pub(crate) fn round_half_up(v: f64) -> i64 {
    (v + 0.5).floor() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rect_geometry_is_inclusive_like_dlib() {
        let a = Rect::new(0, 0, 9, 9);
        assert_eq!((a.width(), a.height(), a.area()), (10, 10, 100));
        let b = Rect::new(5, 0, 14, 9);
        assert_eq!(a.intersect(&b).area(), 50);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(a.iou(&Rect::new(20, 20, 30, 30)), 0.0);
        assert_eq!(Rect::new(5, 5, 4, 4).area(), 0);
        let huge = Rect::new(i64::MIN, i64::MIN, i64::MAX, i64::MAX);
        assert!(huge.area() > 0 && huge.iou(&a) >= 0.0);
    }

    #[test]
    fn model_parse_context_prefixes_what() {
        let err = FaceError::ModelParse {
            file: "m.dat".into(),
            offset: 7,
            what: "bad".into(),
        };
        assert_eq!(
            err.context("forests").to_string(),
            "model file m.dat is invalid at byte offset 7: forests: bad"
        );
    }
}
