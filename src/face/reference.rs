//! Reference set of a person: the photos of a folder (kohya's `image/NN_name/` layout works as it is), one
//! descriptor per photo (its largest face), their mean and normalised centroid, and outlier photos.
//!
//! Definitions (also in docs/perf.md, "Face scoring"):
//! - `mean_descriptor` = element-wise mean of the photos' raw dlib descriptors; dlib's distance of an image
//!   is the Euclidean distance to it.
//! - `centroid` = the mean of the unit-length descriptors, scaled to unit length; the similarity of an image
//!   is the cosine between its descriptor and the centroid.
//! - Outlier rule: for each photo, `distance_to_others` = Euclidean distance between its descriptor and the
//!   mean descriptor of all the *other* photos (leave-one-out). A photo is an outlier when that distance is
//!   above dlib's same-person threshold (0.6, stored in the model): dlib would call it a different person
//!   than the rest. Outliers are reported, not removed (they still count in the centroid).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::pipeline::{dot, mean_descriptor, normalized, Descriptor, FaceDescription, LargestFace};
use super::FaceError;

/// File name extensions scanned in folders (lower case); all four formats are decoded.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "bmp"];

/// Errors of reference-set building and image listing.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// A path given on the command line does not exist.
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    /// A folder could not be listed.
    #[error("cannot list folder {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No image files under the given paths.
    #[error("no images (.jpg, .jpeg, .png, .webp, .bmp) in {inputs}")]
    NoImages { inputs: String },
    /// Images were found but none has a usable face.
    #[error(
        "no usable face in the reference photos ({photos} photos: {no_face} without a face, {unreadable} unreadable) in {inputs}"
    )]
    NoUsableFace {
        inputs: String,
        photos: usize,
        no_face: usize,
        unreadable: usize,
    },
    /// A face-stage error (model, image).
    #[error(transparent)]
    Face(#[from] FaceError),
}

/// True if the file name has one of [`IMAGE_EXTENSIONS`] (any case).
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Files given directly are kept whatever their extension; folders are walked recursively for image files
/// (hidden entries skipped, each folder visited once even through symbolic links). Each folder's images come
/// out sorted by path; the order of the inputs is kept. A path that does not exist is an error.
pub fn find_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ReferenceError> {
    if let Some(missing) = inputs.iter().find(|p| !p.exists()) {
        return Err(ReferenceError::Missing {
            path: missing.clone(),
        });
    }
    expand_folders(inputs)
}

/// Like [`find_images`], but paths that are not folders are kept even if they do not exist (reading them
/// fails later, so a batch can skip and count them).
pub fn expand_folders(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ReferenceError> {
    let mut images = Vec::new();
    let mut visited = HashSet::new();
    for input in inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            walk_folder(input, &mut found, &mut visited)?;
            found.sort();
            images.extend(found);
        } else {
            images.push(input.clone());
        }
    }
    Ok(images)
}

fn walk_folder(
    folder: &Path,
    found: &mut Vec<PathBuf>,
    visited: &mut HashSet<PathBuf>,
) -> Result<(), ReferenceError> {
    let read_dir_error = |source| ReferenceError::ReadDir {
        path: folder.to_path_buf(),
        source,
    };
    let canonical = folder.canonicalize().map_err(read_dir_error)?;
    if !visited.insert(canonical) {
        return Ok(());
    }
    for entry in std::fs::read_dir(folder).map_err(read_dir_error)? {
        let path = entry.map_err(read_dir_error)?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk_folder(&path, found, visited)?;
        } else if is_image_file(&path) {
            found.push(path);
        }
    }
    Ok(())
}

/// Joins paths for messages: `a, b`.
pub fn describe_inputs(inputs: &[PathBuf]) -> String {
    inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One reference photo that could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferencePhoto {
    pub path: PathBuf,
    /// Faces detected in the photo.
    pub n_faces: usize,
    /// Its largest face (None: no face, the photo is not used).
    pub face: Option<FaceDescription>,
    /// Distance to the mean descriptor of the other used photos (None if unused or the only one).
    pub distance_to_others: Option<f32>,
    /// `distance_to_others` above the same-person threshold.
    pub outlier: bool,
}

/// A photo that could not be read or decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedImage {
    pub path: PathBuf,
    pub reason: String,
}

/// The reference identity: photos, their mean descriptor and centroid.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceSet {
    /// Readable photos in input order.
    pub photos: Vec<ReferencePhoto>,
    /// Photos that could not be read.
    pub unreadable: Vec<SkippedImage>,
    /// Element-wise mean of the used photos' descriptors.
    pub mean_descriptor: Descriptor,
    /// Unit-length mean of the used photos' unit-length descriptors.
    pub centroid: Descriptor,
    /// Same-person threshold used for outliers.
    pub threshold: f32,
}

impl ReferenceSet {
    /// Builds the set from per-photo results (`Err` = unreadable). Fails if no photo has a face.
    pub fn from_results(
        results: Vec<(PathBuf, Result<LargestFace, FaceError>)>,
        threshold: f32,
        inputs: &[PathBuf],
    ) -> Result<ReferenceSet, ReferenceError> {
        let mut photos = Vec::new();
        let mut unreadable = Vec::new();
        for (path, result) in results {
            match result {
                Ok(largest) => photos.push(ReferencePhoto {
                    path,
                    n_faces: largest.n_faces,
                    face: largest.face,
                    distance_to_others: None,
                    outlier: false,
                }),
                Err(error) => unreadable.push(SkippedImage {
                    reason: skip_reason(&error),
                    path,
                }),
            }
        }
        let descriptors: Vec<Descriptor> = photos
            .iter()
            .filter_map(|p| p.face.as_ref().map(|f| f.descriptor))
            .collect();
        if descriptors.is_empty() {
            let no_face = photos.len();
            return Err(ReferenceError::NoUsableFace {
                inputs: describe_inputs(inputs),
                photos: no_face + unreadable.len(),
                no_face,
                unreadable: unreadable.len(),
            });
        }
        let distances = leave_one_out_distances(&descriptors);
        let mut used = photos.iter_mut().filter(|p| p.face.is_some());
        for (photo, distance) in (&mut used).zip(distances) {
            photo.distance_to_others = distance;
            photo.outlier = distance.is_some_and(|d| d > threshold);
        }
        let units: Vec<Descriptor> = descriptors.iter().map(normalized).collect();
        Ok(ReferenceSet {
            photos,
            unreadable,
            mean_descriptor: mean_descriptor(&descriptors),
            centroid: normalized(&mean_descriptor(&units)),
            threshold,
        })
    }

    /// Photos whose face is used.
    pub fn used(&self) -> impl Iterator<Item = &ReferencePhoto> {
        self.photos.iter().filter(|p| p.face.is_some())
    }

    /// Photos in which no face was found.
    pub fn without_face(&self) -> impl Iterator<Item = &ReferencePhoto> {
        self.photos.iter().filter(|p| p.face.is_none())
    }

    /// Photos with more than one face (their largest face is used).
    pub fn with_several_faces(&self) -> impl Iterator<Item = &ReferencePhoto> {
        self.photos.iter().filter(|p| p.n_faces > 1)
    }

    /// Outlier photos (see the module docs).
    pub fn outliers(&self) -> impl Iterator<Item = &ReferencePhoto> {
        self.photos.iter().filter(|p| p.outlier)
    }

    /// Cosine similarity of a descriptor to the centroid.
    pub fn similarity(&self, descriptor: &Descriptor) -> f32 {
        dot(&normalized(descriptor), &self.centroid)
    }

    /// Euclidean distance of a descriptor to the mean descriptor (dlib's distance).
    pub fn distance(&self, descriptor: &Descriptor) -> f32 {
        euclidean(descriptor, &self.mean_descriptor)
    }

    /// The used photo most similar (cosine) to a descriptor, with that similarity and the Euclidean distance.
    pub fn nearest(&self, descriptor: &Descriptor) -> Option<NearestPhoto<'_>> {
        let unit = normalized(descriptor);
        self.used()
            .filter_map(|photo| {
                let face = photo.face.as_ref()?;
                Some(NearestPhoto {
                    photo,
                    similarity: dot(&unit, &normalized(&face.descriptor)),
                    distance: euclidean(descriptor, &face.descriptor),
                })
            })
            .reduce(|best, n| {
                if n.similarity > best.similarity {
                    n
                } else {
                    best
                }
            })
    }
}

/// The reference photo nearest to an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearestPhoto<'a> {
    pub photo: &'a ReferencePhoto,
    /// Cosine similarity of the two descriptors.
    pub similarity: f32,
    /// Euclidean distance of the two descriptors.
    pub distance: f32,
}

/// The message for a skipped image: the face error's reason without repeating the path.
pub fn skip_reason(error: &FaceError) -> String {
    match error {
        FaceError::Image { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Euclidean distance.
pub fn euclidean(a: &Descriptor, b: &Descriptor) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// For each descriptor, the distance to the mean of the others (None when it is the only one).
pub fn leave_one_out_distances(descriptors: &[Descriptor]) -> Vec<Option<f32>> {
    let n = descriptors.len();
    if n < 2 {
        return vec![None; n];
    }
    let mut sum = [0.0f64; 128];
    for d in descriptors {
        for (s, v) in sum.iter_mut().zip(d) {
            *s += f64::from(*v);
        }
    }
    descriptors
        .iter()
        .map(|d| {
            let squared: f64 = sum
                .iter()
                .zip(d)
                .map(|(s, v)| {
                    let others = (s - f64::from(*v)) / (n - 1) as f64;
                    (f64::from(*v) - others).powi(2)
                })
                .sum();
            Some(squared.sqrt() as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::{Point, Rect};

    fn face(descriptor: Descriptor) -> LargestFace {
        LargestFace {
            n_faces: 1,
            face: Some(FaceDescription {
                rect: Rect::new(0, 0, 9, 9),
                confidence: 1.0,
                landmarks: vec![Point::default(); 5],
                descriptor,
            }),
        }
    }

    fn axis(i: usize, scale: f32) -> Descriptor {
        let mut d = [0.0; 128];
        d[i] = scale;
        d
    }

    #[test]
    fn leave_one_out_flags_the_stranger() {
        let results = vec![
            ("a.png".into(), Ok(face(axis(0, 1.0)))),
            ("b.png".into(), Ok(face(axis(0, 1.1)))),
            ("c.png".into(), Ok(face(axis(0, 0.9)))),
            ("d.png".into(), Ok(face(axis(1, 1.0)))),
            (
                "e.png".into(),
                Ok(LargestFace {
                    n_faces: 0,
                    face: None,
                }),
            ),
        ];
        let set = ReferenceSet::from_results(results, 0.6, &[]).unwrap();
        let outliers: Vec<_> = set.outliers().map(|p| p.path.clone()).collect();
        assert_eq!(outliers, vec![PathBuf::from("d.png")]);
        // a: others' mean = (2.0/3, 1/3): distance sqrt((1/3)^2 + (1/3)^2)
        let a = set.photos[0].distance_to_others.unwrap();
        assert!((a - (2.0f32 / 9.0).sqrt()).abs() < 1e-6, "{a}");
        assert_eq!(set.without_face().count(), 1);
        assert_eq!(set.mean_descriptor[0], 0.75);
        let cos = set.similarity(&axis(0, 5.0));
        assert!((cos - 3.0 / 10f32.sqrt()).abs() < 1e-6, "{cos}");
        let nearest = set.nearest(&axis(1, 0.5)).unwrap();
        assert_eq!(nearest.photo.path, PathBuf::from("d.png"));
        assert!((nearest.similarity - 1.0).abs() < 1e-6 && (nearest.distance - 0.5).abs() < 1e-6);
    }

    #[test]
    fn no_usable_face_is_an_error_naming_the_counts() {
        let results = vec![
            (
                "a.png".into(),
                Ok(LargestFace {
                    n_faces: 0,
                    face: None,
                }),
            ),
            (
                "b.png".into(),
                Err(FaceError::Image {
                    path: "b.png".into(),
                    reason: "corrupt".into(),
                }),
            ),
        ];
        let err = ReferenceSet::from_results(results, 0.6, &["refs".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no usable face in the reference photos (2 photos: 1 without a face, 1 unreadable) in refs"
        );
    }

    #[test]
    fn folders_are_walked_recursively_for_images() {
        let dir = tempfile::tempdir().unwrap();
        let kohya = dir.path().join("image").join("10_person");
        std::fs::create_dir_all(kohya.join("sub")).unwrap();
        for name in ["b.PNG", "a.jpg", "c.txt", ".hidden.png", "sub/d.webp"] {
            std::fs::write(kohya.join(name), b"x").unwrap();
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path(), kohya.join("sub/loop")).unwrap();
        let found = find_images(&[dir.path().join("image")]).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(&kohya).unwrap().to_path_buf())
            .collect();
        let expected: Vec<PathBuf> = ["a.jpg", "b.PNG", "sub/d.webp"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(names, expected);
        let missing = dir.path().join("nope.png");
        assert!(matches!(
            find_images(std::slice::from_ref(&missing)),
            Err(ReferenceError::Missing { .. })
        ));
        assert_eq!(
            expand_folders(std::slice::from_ref(&missing)).unwrap(),
            vec![missing]
        );
    }

    #[test]
    fn one_photo_has_no_leave_one_out_distance() {
        assert_eq!(leave_one_out_distances(&[axis(0, 1.0)]), vec![None]);
        let two = leave_one_out_distances(&[axis(0, 1.0), axis(1, 1.0)]);
        assert!((two[0].unwrap() - 2f32.sqrt()).abs() < 1e-6);
    }
}
