//! Scores generated images against a reference set: face found or not (the largest face is used), cosine
//! similarity to the centroid, dlib's Euclidean distance to the mean descriptor, the nearest reference photo
//! (a near-copy of a training photo hints at overfitting) and the face size.

use std::path::PathBuf;

use image::RgbImage;

use super::pipeline::{process_files, FaceDescription, FaceModels, PipelineOptions};
use super::reference::{describe_inputs, ReferenceError, ReferenceSet};
use super::{FaceError, Rect};

/// Score of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageScore {
    pub width: u32,
    pub height: u32,
    /// Faces detected.
    pub n_faces: usize,
    /// The largest face and its scores (None: no face found).
    pub face: Option<ScoredFace>,
}

/// Scores of the face an image is judged by.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredFace {
    pub rect: Rect,
    pub confidence: f32,
    /// Face size in pixels: square root of the box area (MMOD boxes are close to square).
    pub face_size: u32,
    /// Cosine similarity to the reference centroid (1 = same direction).
    pub similarity: f32,
    /// Euclidean distance to the reference mean descriptor (dlib: same person below 0.6).
    pub distance: f32,
    /// Most similar reference photo.
    pub nearest: Option<NearestReference>,
}

/// The reference photo nearest to an image's face.
#[derive(Debug, Clone, PartialEq)]
pub struct NearestReference {
    pub path: PathBuf,
    /// Cosine similarity of the two descriptors.
    pub similarity: f32,
    /// Euclidean distance of the two descriptors.
    pub distance: f32,
}

/// Scores one described face against the reference.
pub fn score_face(reference: &ReferenceSet, face: &FaceDescription) -> ScoredFace {
    let nearest = reference
        .nearest(&face.descriptor)
        .map(|n| NearestReference {
            path: n.photo.path.clone(),
            similarity: n.similarity,
            distance: n.distance,
        });
    ScoredFace {
        rect: face.rect,
        confidence: face.confidence,
        face_size: (face.rect.area() as f64).sqrt().round() as u32,
        similarity: reference.similarity(&face.descriptor),
        distance: reference.distance(&face.descriptor),
        nearest,
    }
}

/// Detects, describes and scores the largest face of an image.
pub fn score_image(
    models: &FaceModels,
    reference: &ReferenceSet,
    image: &RgbImage,
    options: PipelineOptions,
) -> Result<ImageScore, FaceError> {
    let largest = models.describe_largest(image, options)?;
    Ok(ImageScore {
        width: image.width(),
        height: image.height(),
        n_faces: largest.n_faces,
        face: largest.face.as_ref().map(|f| score_face(reference, f)),
    })
}

/// Builds the reference set from the image files `paths` (from [`super::reference::find_images`] on `inputs`, which only name
/// the set in errors); photos are processed in parallel and `progress` is called after each. Unreadable photos
/// are listed in the set, not fatal.
pub fn build_reference_set(
    models: &FaceModels,
    paths: &[PathBuf],
    inputs: &[PathBuf],
    options: PipelineOptions,
    progress: &(dyn Fn() + Sync),
) -> Result<ReferenceSet, ReferenceError> {
    if paths.is_empty() {
        return Err(ReferenceError::NoImages {
            inputs: describe_inputs(inputs),
        });
    }
    let results = process_files(
        paths,
        |image| models.describe_largest(image, options),
        progress,
    );
    ReferenceSet::from_results(results, models.same_person_threshold(), inputs)
}
