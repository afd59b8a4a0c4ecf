//! Image → faces → descriptors, as dlib's Python bindings chain them: CNN detection
//! (`cnn_face_detection_model_v1(img, upsample)`), 5-point landmarks (`shape_predictor(img, rect)`), the
//! 150×150 chip (`get_face_chip_details(shape, 150, 0.25)`) and the 128-D descriptor
//! (`compute_face_descriptor(img, shape, num_jitters, 0.25)`), face.md §3.
//!
//! Jitter: with `num_jitters > 1` the descriptor is the mean of the network over that many `jitter_image`
//! crops of the chip, as dlib. dlib draws from one generator per model object, so its jitters depend on what
//! was computed before; here every face starts from a fresh `dlib::rand`, which makes results independent of
//! order and threads and equal to dlib's for the first face a fresh model describes.

use std::path::PathBuf;

use image::RgbImage;
use rayon::prelude::*;

use super::align::{face_chip, jitter_image, DlibRand};
use super::image_io::load_rgb_image;
use super::mmod::{Detection, FaceDetector};
use super::resnet::{FaceEmbedder, DESCRIPTOR_LEN};
use super::shape_predictor::ShapePredictor;
use super::{FaceError, Point, Rect};

/// A face descriptor (not normalised, like dlib's).
pub type Descriptor = [f32; DESCRIPTOR_LEN];

/// The vendored 5-point landmark model.
static EMBEDDED_SHAPE_PREDICTOR: &[u8] =
    include_bytes!("../../assets/face/shape_predictor_5_face_landmarks.dat");
const EMBEDDED_SHAPE_PREDICTOR_NAME: &str = "assets/face/shape_predictor_5_face_landmarks.dat";

/// Settings of the face pipeline (defaults as dlib's Python bindings: no upsampling, no jitter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineOptions {
    /// How many times the image is doubled before detection (finds faces down to ~80 px at 0, ~40 px at 1).
    pub upsample: u32,
    /// Jittered crops averaged per descriptor; 0 and 1 mean none (dlib's `num_jitters`).
    pub num_jitters: u32,
}

/// One face: detection, landmarks and descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceDescription {
    /// Detection box, inclusive corners in image pixels.
    pub rect: Rect,
    /// Detector score (dlib `detection_confidence`).
    pub confidence: f32,
    /// The 5 landmarks: image-right eye outer, inner corner, image-left eye outer, inner corner, nose base.
    pub landmarks: Vec<Point>,
    /// 128-D descriptor of the aligned chip.
    pub descriptor: Descriptor,
}

/// The three dlib models the pipeline needs.
#[derive(Debug, Clone)]
pub struct FaceModels {
    pub detector: FaceDetector,
    pub landmarks: ShapePredictor,
    pub embedder: FaceEmbedder,
}

impl FaceModels {
    /// The models compiled into the binary (`assets/face/`).
    pub fn load_embedded() -> Result<FaceModels, FaceError> {
        Ok(FaceModels {
            detector: FaceDetector::load_embedded()?,
            landmarks: ShapePredictor::from_bytes(
                EMBEDDED_SHAPE_PREDICTOR,
                std::path::Path::new(EMBEDDED_SHAPE_PREDICTOR_NAME),
            )?,
            embedder: FaceEmbedder::load_embedded()?,
        })
    }

    /// Same-person threshold on the Euclidean descriptor distance stored in the model (0.6).
    pub fn same_person_threshold(&self) -> f32 {
        self.embedder.dist_thresh
    }

    /// Face boxes, best score first (dlib's order).
    pub fn detect(&self, image: &RgbImage, upsample: u32) -> Vec<Detection> {
        self.detector.detect(image, upsample)
    }

    /// Landmarks, chip and descriptor of one detected face.
    pub fn describe(
        &self,
        image: &RgbImage,
        detection: Detection,
        num_jitters: u32,
    ) -> Result<FaceDescription, FaceError> {
        let landmarks = self.landmarks.predict_rgb(image, detection.rect);
        let chip = face_chip(image, &landmarks)?;
        let descriptor = self.chip_descriptor(&chip, num_jitters)?;
        Ok(FaceDescription {
            rect: detection.rect,
            confidence: detection.confidence,
            landmarks,
            descriptor,
        })
    }

    /// Descriptor of an aligned chip: the network output, or with `num_jitters > 1` the mean over that many
    /// jittered crops drawn from a fresh `dlib::rand`.
    pub fn chip_descriptor(
        &self,
        chip: &RgbImage,
        num_jitters: u32,
    ) -> Result<Descriptor, FaceError> {
        if num_jitters <= 1 {
            return self.embedder.embed(chip);
        }
        let mut rnd = DlibRand::new();
        let crops = (0..num_jitters)
            .map(|_| jitter_image(chip, &mut rnd))
            .collect::<Result<Vec<_>, _>>()?;
        let descriptors = self.embedder.embed_batch(&crops)?;
        Ok(mean_descriptor(&descriptors))
    }

    /// Every face of the image, in the detector's order (best score first).
    pub fn describe_all(
        &self,
        image: &RgbImage,
        options: PipelineOptions,
    ) -> Result<Vec<FaceDescription>, FaceError> {
        self.detect(image, options.upsample)
            .into_iter()
            .map(|d| self.describe(image, d, options.num_jitters))
            .collect()
    }

    /// The largest face (by box area; the better score on a tie) and how many faces were detected.
    pub fn describe_largest(
        &self,
        image: &RgbImage,
        options: PipelineOptions,
    ) -> Result<LargestFace, FaceError> {
        let detections = self.detect(image, options.upsample);
        let face = match largest_detection(&detections) {
            Some(d) => Some(self.describe(image, d, options.num_jitters)?),
            None => None,
        };
        Ok(LargestFace {
            n_faces: detections.len(),
            face,
        })
    }
}

/// Loads every file and applies `analyze` to it, in parallel (rayon), calling `progress` after each file.
/// Results come back in input order; a file that cannot be read or decoded gives its `Err`.
pub fn process_files<T: Send>(
    paths: &[PathBuf],
    analyze: impl Fn(&RgbImage) -> Result<T, FaceError> + Sync,
    progress: &(dyn Fn() + Sync),
) -> Vec<(PathBuf, Result<T, FaceError>)> {
    paths
        .par_iter()
        .map(|path| {
            let result = load_rgb_image(path).and_then(|image| analyze(&image));
            progress();
            (path.clone(), result)
        })
        .collect()
}

/// The face an image is scored by, and the number of faces found.
#[derive(Debug, Clone, PartialEq)]
pub struct LargestFace {
    pub n_faces: usize,
    pub face: Option<FaceDescription>,
}

/// The detection with the largest box area; the earlier (better scored) one on a tie.
pub fn largest_detection(detections: &[Detection]) -> Option<Detection> {
    detections.iter().copied().reduce(|best, d| {
        if d.rect.area() > best.rect.area() {
            d
        } else {
            best
        }
    })
}

/// Element-wise mean, summed in order in f32 (as dlib's `mean` of float matrices).
pub fn mean_descriptor(descriptors: &[Descriptor]) -> Descriptor {
    let mut sum = [0.0f32; DESCRIPTOR_LEN];
    for d in descriptors {
        for (s, v) in sum.iter_mut().zip(d) {
            *s += v;
        }
    }
    let n = descriptors.len().max(1) as f32;
    sum.map(|s| s / n)
}

/// The descriptor scaled to unit length (unchanged if it is all zeros).
pub fn normalized(d: &Descriptor) -> Descriptor {
    let norm = d.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        d.map(|v| v / norm)
    } else {
        *d
    }
}

/// Dot product.
pub fn dot(a: &Descriptor, b: &Descriptor) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(l: i64, t: i64, r: i64, b: i64, confidence: f32) -> Detection {
        Detection {
            rect: Rect::new(l, t, r, b),
            confidence,
        }
    }

    #[test]
    fn largest_detection_prefers_area_then_order() {
        assert_eq!(largest_detection(&[]), None);
        let dets = [
            det(0, 0, 9, 9, 2.0),
            det(0, 0, 19, 19, 1.0),
            det(5, 5, 24, 24, 0.5),
        ];
        assert_eq!(largest_detection(&dets), Some(dets[1]));
    }

    #[test]
    fn mean_and_normalisation() {
        let mut a = [0.0f32; DESCRIPTOR_LEN];
        let mut b = [0.0f32; DESCRIPTOR_LEN];
        a[0] = 3.0;
        b[0] = 1.0;
        b[1] = 4.0;
        let m = mean_descriptor(&[a, b]);
        assert_eq!((m[0], m[1], m[2]), (2.0, 2.0, 0.0));
        let n = normalized(&m);
        assert!((dot(&n, &n) - 1.0).abs() < 1e-6);
        assert_eq!(normalized(&[0.0; DESCRIPTOR_LEN]), [0.0; DESCRIPTOR_LEN]);
    }
}
