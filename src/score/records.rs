//! What scoring needs to know about one image file, computed once per file content and kept in the run
//! folder's cache (`scores/cache.json`): faces found, the largest face's box, landmarks and descriptor, pixel
//! statistics and thumbnail. A cell replaced by hand or rendered on another machine is a new content hash, so
//! it is analysed again; everything else comes from the cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::pixels::{pixel_stats, thumbnail, PixelStats};
use super::ScoreError;
use crate::face::image_io::decode_rgb_image;
use crate::face::pipeline::{Descriptor, FaceModels, PipelineOptions};
use crate::face::{FaceError, Point, Rect};

/// Bumped when the analysis of an image changes, so that older cache entries are not reused.
pub const RECORD_VERSION: u32 = 1;

/// The analysis of one image file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub width: u32,
    pub height: u32,
    /// Faces detected.
    pub n_faces: usize,
    /// The largest face (None: no face found).
    pub face: Option<FaceRecord>,
    pub stats: PixelStats,
    /// 32×32 grey thumbnail of the centred square, as hex.
    pub thumbnail: String,
}

/// The largest face of an image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaceRecord {
    #[serde(rename = "box")]
    pub rect: Rect,
    pub confidence: f32,
    /// dlib's 5 points: image-right eye outer, inner corner, image-left eye outer, inner corner, nose base.
    pub landmarks: Vec<Point>,
    pub descriptor: Vec<f32>,
}

impl FaceRecord {
    /// The 128-D descriptor (zeros past a short vector, which only a hand-edited cache can hold).
    pub fn descriptor(&self) -> Descriptor {
        let mut out = [0.0f32; 128];
        for (o, v) in out.iter_mut().zip(&self.descriptor) {
            *o = *v;
        }
        out
    }
}

impl ImageRecord {
    /// The thumbnail's grey levels.
    pub fn thumbnail_levels(&self) -> Vec<u8> {
        (0..self.thumbnail.len() / 2)
            .filter_map(|i| u8::from_str_radix(&self.thumbnail[2 * i..2 * i + 2], 16).ok())
            .collect()
    }
}

/// Analyses a decoded image: the largest face and the pixel measurements.
pub fn analyze_image(
    models: &FaceModels,
    image: &RgbImage,
    options: PipelineOptions,
) -> Result<ImageRecord, FaceError> {
    let largest = models.describe_largest(image, options)?;
    Ok(ImageRecord {
        width: image.width(),
        height: image.height(),
        n_faces: largest.n_faces,
        face: largest.face.map(|f| FaceRecord {
            rect: f.rect,
            confidence: f.confidence,
            landmarks: f.landmarks,
            descriptor: f.descriptor.to_vec(),
        }),
        stats: pixel_stats(image),
        thumbnail: thumbnail(image)
            .iter()
            .map(|v| format!("{v:02x}"))
            .collect(),
    })
}

/// Image records by content: `scores/cache.json` of a run folder.
#[derive(Debug)]
pub struct RecordCache {
    path: PathBuf,
    records: BTreeMap<String, ImageRecord>,
    /// Why an existing cache file was not used (unreadable, another version); None when it was read or absent.
    pub discarded: Option<String>,
    changed: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    version: u32,
    records: BTreeMap<String, ImageRecord>,
}

impl RecordCache {
    /// Opens the cache at `path`; a missing file is an empty cache, an unreadable one is set aside (`discarded`).
    pub fn open(path: &Path) -> RecordCache {
        let mut cache = RecordCache {
            path: path.to_path_buf(),
            records: BTreeMap::new(),
            discarded: None,
            changed: false,
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return cache;
        };
        match serde_json::from_str::<CacheFile>(&text) {
            Ok(file) if file.version == RECORD_VERSION => cache.records = file.records,
            Ok(file) => cache.discarded = Some(format!("cache version {}", file.version)),
            Err(e) => cache.discarded = Some(e.to_string()),
        }
        cache
    }

    /// Writes the cache if anything was added (temporary file + rename).
    pub fn save(&self) -> Result<(), ScoreError> {
        if !self.changed {
            return Ok(());
        }
        let file = CacheFile {
            version: RECORD_VERSION,
            records: self.records.clone(),
        };
        let text = serde_json::to_string(&file).map_err(|e| ScoreError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        super::write_file_atomic(&self.path, text.as_bytes())
    }

    /// Records of `paths` (input order): cached ones by content hash, the others analysed in parallel and added.
    /// `progress` is called once per path.
    pub fn records(
        &mut self,
        paths: &[PathBuf],
        models: &FaceModels,
        options: PipelineOptions,
        progress: &(dyn Fn() + Sync),
    ) -> Vec<(PathBuf, Result<ImageRecord, FaceError>)> {
        let records = &self.records;
        let results: Vec<(PathBuf, Result<FileRecord, FaceError>)> = paths
            .par_iter()
            .map(|path| {
                let result = record_of_file(path, records, models, options);
                progress();
                (path.clone(), result)
            })
            .collect();
        results
            .into_iter()
            .map(|(path, result)| {
                let record = result.map(|(key, record, fresh)| {
                    if fresh {
                        self.records.insert(key, record.clone());
                        self.changed = true;
                    }
                    record
                });
                (path, record)
            })
            .collect()
    }
}

/// (cache key, record, newly computed) of one file.
type FileRecord = (String, ImageRecord, bool);

fn record_of_file(
    path: &Path,
    cached: &BTreeMap<String, ImageRecord>,
    models: &FaceModels,
    options: PipelineOptions,
) -> Result<FileRecord, FaceError> {
    let bytes = std::fs::read(path).map_err(|e| FaceError::Image {
        path: path.to_path_buf(),
        reason: format!("cannot read file: {e}"),
    })?;
    let key = cache_key(&bytes, options);
    if let Some(record) = cached.get(&key) {
        return Ok((key, record.clone(), false));
    }
    let image = decode_rgb_image(&bytes, path)?;
    let record = analyze_image(models, &image, options)?;
    Ok((key, record, true))
}

/// SHA-256 of the file content and the face-pipeline settings.
fn cache_key(bytes: &[u8], options: PipelineOptions) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-u{}-j{}", options.upsample, options.num_jitters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_depends_on_content_and_options() {
        let options = PipelineOptions::default();
        let jitter = PipelineOptions {
            upsample: 0,
            num_jitters: 4,
        };
        assert_eq!(cache_key(b"a", options), cache_key(b"a", options));
        assert_ne!(cache_key(b"a", options), cache_key(b"b", options));
        assert_ne!(cache_key(b"a", options), cache_key(b"a", jitter));
    }

    #[test]
    fn unreadable_cache_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        std::fs::write(&path, "{not json").unwrap();
        let cache = RecordCache::open(&path);
        assert!(cache.discarded.is_some());
        assert!(RecordCache::open(&dir.path().join("absent.json"))
            .discarded
            .is_none());
    }
}
