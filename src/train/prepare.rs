//! `loraeval prepare`: raw photos → face-centred square crops for a kohya folder (`image/NN_name/`), caption
//! stubs, and a QA list.
//!
//! The crop rule (head with a little shoulder, from the largest face dlib's detector finds):
//! * `s` = the larger side of the face box; the square's side is `2.2 × s`, its centre the box centre moved
//!   down by `0.1 × s` (about half a face of room above the box for hair, the neck and shoulder tops below);
//! * the square is shrunk to fit the photo if needed and moved inside it;
//! * it is resized to `size × size` with Lanczos3; a crop upscaled more than 2× is flagged "too small".
//!
//! EXIF orientation is applied before anything (kohya itself reads pixels as stored, so a crop written
//! upright trains upright). QA flags: no face (no crop written), several faces (the largest is used),
//! too small, blurry (variance of the 4-neighbour Laplacian of the crop's grey levels below
//! [`BLUR_VARIANCE_MIN`], measured at [`BLUR_PROBE_SIDE`] px), near-duplicates (face descriptors closer than [`DUPLICATE_DESCRIPTOR_DISTANCE`],
//! or 16×16 grey thumbnails differing by less than [`DUPLICATE_THUMBNAIL_DIFF`] grey levels on average).

use std::fmt;
use std::path::{Path, PathBuf};

use image::{imageops::FilterType, DynamicImage, GrayImage, ImageDecoder, ImageReader, RgbImage};
use rayon::prelude::*;
use serde::Serialize;

use crate::face::pipeline::{largest_detection, Descriptor, FaceModels};
use crate::face::reference::{euclidean, find_images, ReferenceError};
use crate::face::{FaceError, Rect};

/// Crop side / face box side.
pub const CROP_SIDE_FACTOR: f64 = 2.2;
/// Downward shift of the crop centre / face box side.
pub const CROP_CENTER_SHIFT: f64 = 0.1;
/// Upscaling above this flags the photo as too small.
pub const MAX_UPSCALE: f64 = 2.0;
/// Laplacian variance below this flags the crop as blurry (grey levels 0-255, crop resized to
/// [`BLUR_PROBE_SIDE`]).
pub const BLUR_VARIANCE_MIN: f64 = 60.0;
/// Side of the grey image the blur measure is taken on.
pub const BLUR_PROBE_SIDE: u32 = 256;
/// Face descriptors closer than this are the same picture (resized copies of one photo measure 0.05-0.10).
pub const DUPLICATE_DESCRIPTOR_DISTANCE: f32 = 0.12;
/// Mean absolute grey difference of 16×16 thumbnails below which two crops are the same picture.
pub const DUPLICATE_THUMBNAIL_DIFF: f64 = 6.0;

/// Errors of preparation; each names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Input(#[from] ReferenceError),
    #[error(transparent)]
    Face(#[from] FaceError),
    #[error("no photos (.jpg, .jpeg, .png, .webp, .bmp) in the inputs")]
    NoPhotos,
    #[error("{count} output files exist (use --force to overwrite): {list}")]
    Exists { count: usize, list: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Settings of `prepare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareOptions {
    /// Output side in pixels.
    pub size: u32,
    /// Caption stub.
    pub trigger: String,
    /// Overwrite existing outputs.
    pub force: bool,
    /// Detector upsampling.
    pub upsample: u32,
}

/// A square crop in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CropBox {
    pub x: u32,
    pub y: u32,
    pub side: u32,
}

/// One QA finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "flag", rename_all = "snake_case")]
pub enum QaFlag {
    Unreadable { reason: String },
    NoFace,
    SeveralFaces { count: usize },
    TooSmall { crop_side: u32, upscale: f64 },
    Blurry { laplacian_variance: f64 },
    NearDuplicate { of: PathBuf, by: &'static str },
}

impl fmt::Display for QaFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QaFlag::Unreadable { reason } => write!(f, "unreadable: {reason}"),
            QaFlag::NoFace => write!(f, "no face found; not cropped"),
            QaFlag::SeveralFaces { count } => write!(f, "{count} faces; cropped to the largest"),
            QaFlag::TooSmall { crop_side, upscale } => write!(
                f,
                "too small: a {crop_side} px crop upscaled {upscale:.1}x (below a useful size)"
            ),
            QaFlag::Blurry { laplacian_variance } => {
                write!(f, "blurry (Laplacian variance {laplacian_variance:.0})")
            }
            QaFlag::NearDuplicate { of, by } => {
                write!(f, "near-duplicate of {} (by {by})", of.display())
            }
        }
    }
}

/// What happened to one photo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreparedPhoto {
    pub source: PathBuf,
    /// The crop written (`None`: no face or unreadable).
    pub output: Option<PathBuf>,
    pub caption: Option<PathBuf>,
    pub crop: Option<CropBox>,
    pub faces: usize,
    pub laplacian_variance: Option<f64>,
    pub flags: Vec<QaFlag>,
}

/// The result of a `prepare` run (also written as `prepare-qa.json` in the output folder).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrepareReport {
    pub size: u32,
    pub trigger: String,
    pub photos: Vec<PreparedPhoto>,
}

/// The square around a face box in a `width × height` photo (see the module rule).
pub fn crop_box(face: Rect, width: u32, height: u32) -> CropBox {
    let s = face.width().max(face.height()) as f64;
    let cx = (face.left + face.right) as f64 / 2.0 + 0.5;
    let cy = (face.top + face.bottom) as f64 / 2.0 + 0.5 + CROP_CENTER_SHIFT * s;
    let side = ((CROP_SIDE_FACTOR * s).round() as u32).clamp(1, width.min(height));
    let place = |centre: f64, limit: u32| -> u32 {
        let start = (centre - f64::from(side) / 2.0).round();
        start.clamp(0.0, f64::from(limit - side)) as u32
    };
    CropBox {
        x: place(cx, width),
        y: place(cy, height),
        side,
    }
}

/// Variance of the 4-neighbour Laplacian over the inner pixels of a grey image.
pub fn laplacian_variance(gray: &GrayImage) -> f64 {
    let (w, h) = gray.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    let p = |x: u32, y: u32| f64::from(gray.get_pixel(x, y)[0]);
    let values: Vec<f64> = (1..h - 1)
        .flat_map(|y| (1..w - 1).map(move |x| (x, y)))
        .map(|(x, y)| p(x - 1, y) + p(x + 1, y) + p(x, y - 1) + p(x, y + 1) - 4.0 * p(x, y))
        .collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64
}

/// Reads a photo with its EXIF orientation applied.
pub fn load_upright(path: &Path) -> Result<RgbImage, String> {
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| e.to_string())?;
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    image.apply_orientation(orientation);
    Ok(image.to_rgb8())
}

/// A photo analysed and cropped, before writing.
struct Analysed {
    photo: PreparedPhoto,
    crop: Option<RgbImage>,
    descriptor: Option<Descriptor>,
    thumbnail: Option<Vec<u8>>,
}

/// Crops every photo of `raw` into `out` (PNG named after the photo) with a caption stub, flags the QA
/// findings and writes `prepare-qa.json`. Existing outputs are an error unless `force`.
pub fn prepare_photos(
    raw: &[PathBuf],
    out: &Path,
    options: &PrepareOptions,
) -> Result<PrepareReport, PrepareError> {
    let sources = find_images(raw)?;
    if sources.is_empty() {
        return Err(PrepareError::NoPhotos);
    }
    let names = output_names(&sources, out);
    check_free(&names, options.force)?;
    let models = FaceModels::load_embedded()?;
    let mut analysed: Vec<Analysed> = sources
        .par_iter()
        .zip(&names)
        .map(|(source, target)| analyse(&models, source, target, options))
        .collect();
    flag_duplicates(&mut analysed);
    std::fs::create_dir_all(out).map_err(|e| write_error(out, e))?;
    for item in &analysed {
        write_outputs(item, options)?;
    }
    let report = PrepareReport {
        size: options.size,
        trigger: options.trigger.clone(),
        photos: analysed.into_iter().map(|a| a.photo).collect(),
    };
    let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
    write_atomic(&out.join("prepare-qa.json"), &json)?;
    Ok(report)
}

/// `<out>/<stem>.png`, with `-2`, `-3`… for stems seen before.
fn output_names(sources: &[PathBuf], out: &Path) -> Vec<PathBuf> {
    let mut used = std::collections::HashSet::new();
    sources
        .iter()
        .map(|source| {
            let stem = source
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let mut name = stem.clone();
            let mut n = 2;
            while !used.insert(name.clone()) {
                name = format!("{stem}-{n}");
                n += 1;
            }
            out.join(format!("{name}.png"))
        })
        .collect()
}

fn check_free(names: &[PathBuf], force: bool) -> Result<(), PrepareError> {
    if force {
        return Ok(());
    }
    let taken: Vec<String> = names
        .iter()
        .flat_map(|png| [png.clone(), png.with_extension("txt")])
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    Err(PrepareError::Exists {
        count: taken.len(),
        list: taken.join(", "),
    })
}

fn analyse(
    models: &FaceModels,
    source: &Path,
    target: &Path,
    options: &PrepareOptions,
) -> Analysed {
    let mut photo = PreparedPhoto {
        source: source.to_path_buf(),
        output: None,
        caption: None,
        crop: None,
        faces: 0,
        laplacian_variance: None,
        flags: Vec::new(),
    };
    let empty = |photo| Analysed {
        photo,
        crop: None,
        descriptor: None,
        thumbnail: None,
    };
    let image = match load_upright(source) {
        Ok(image) => image,
        Err(reason) => {
            photo.flags.push(QaFlag::Unreadable { reason });
            return empty(photo);
        }
    };
    let detections = models.detect(&image, options.upsample);
    photo.faces = detections.len();
    let Some(face) = largest_detection(&detections) else {
        photo.flags.push(QaFlag::NoFace);
        return empty(photo);
    };
    if detections.len() > 1 {
        photo.flags.push(QaFlag::SeveralFaces {
            count: detections.len(),
        });
    }
    let descriptor = models.describe(&image, face, 0).ok().map(|d| d.descriptor);
    let crop = cut(&image, face.rect, options.size, &mut photo);
    photo.output = Some(target.to_path_buf());
    photo.caption = Some(target.with_extension("txt"));
    let thumbnail = Some(thumbnail(&crop));
    Analysed {
        photo,
        crop: Some(crop),
        descriptor,
        thumbnail,
    }
}

/// Crops and resizes; flags too-small and blurry crops.
fn cut(image: &RgbImage, face: Rect, size: u32, photo: &mut PreparedPhoto) -> RgbImage {
    let b = crop_box(face, image.width(), image.height());
    photo.crop = Some(b);
    let square = image::imageops::crop_imm(image, b.x, b.y, b.side, b.side).to_image();
    let resized = image::imageops::resize(&square, size, size, FilterType::Lanczos3);
    let upscale = f64::from(size) / f64::from(b.side);
    if upscale > MAX_UPSCALE {
        photo.flags.push(QaFlag::TooSmall {
            crop_side: b.side,
            upscale,
        });
    }
    let variance = sharpness(&square);
    photo.laplacian_variance = Some(variance);
    if variance < BLUR_VARIANCE_MIN {
        photo.flags.push(QaFlag::Blurry {
            laplacian_variance: variance,
        });
    }
    resized
}

/// Laplacian variance of the crop's grey levels at [`BLUR_PROBE_SIDE`] px, so that it does not depend on the
/// photo's resolution or the output size.
fn sharpness(square: &RgbImage) -> f64 {
    let gray = DynamicImage::ImageRgb8(square.clone()).to_luma8();
    let probe = image::imageops::resize(
        &gray,
        BLUR_PROBE_SIDE,
        BLUR_PROBE_SIDE,
        FilterType::Triangle,
    );
    laplacian_variance(&probe)
}

fn thumbnail(crop: &RgbImage) -> Vec<u8> {
    let gray = DynamicImage::ImageRgb8(crop.clone()).to_luma8();
    image::imageops::resize(&gray, 16, 16, FilterType::Triangle).into_raw()
}

/// Flags each photo that matches an earlier one (descriptor or thumbnail).
fn flag_duplicates(items: &mut [Analysed]) {
    for j in 1..items.len() {
        for i in 0..j {
            if let Some(by) = duplicate_by(&items[i], &items[j]) {
                let of = items[i].photo.source.clone();
                items[j].photo.flags.push(QaFlag::NearDuplicate { of, by });
                break;
            }
        }
    }
}

fn duplicate_by(a: &Analysed, b: &Analysed) -> Option<&'static str> {
    if let (Some(da), Some(db)) = (&a.descriptor, &b.descriptor) {
        if euclidean(da, db) < DUPLICATE_DESCRIPTOR_DISTANCE {
            return Some("face descriptor");
        }
    }
    if let (Some(ta), Some(tb)) = (&a.thumbnail, &b.thumbnail) {
        let diff: f64 = ta
            .iter()
            .zip(tb)
            .map(|(x, y)| f64::from(x.abs_diff(*y)))
            .sum::<f64>()
            / ta.len() as f64;
        if diff < DUPLICATE_THUMBNAIL_DIFF {
            return Some("thumbnail");
        }
    }
    None
}

fn write_outputs(item: &Analysed, options: &PrepareOptions) -> Result<(), PrepareError> {
    let (Some(crop), Some(png), Some(txt)) = (&item.crop, &item.photo.output, &item.photo.caption)
    else {
        return Ok(());
    };
    let mut bytes = Vec::new();
    crop.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| write_error(png, e))?;
    write_atomic(png, &bytes)?;
    write_atomic(txt, format!("{}\n", options.trigger).as_bytes())
}

fn write_error(path: &Path, e: impl fmt::Display) -> PrepareError {
    PrepareError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PrepareError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            write_error(path, e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_rule() {
        // Face box 100 px (left 200..299, top 100..199) in a 1000×1000 photo: side 220, centre (250, 160):
        // x = 250 − 110 = 140, y = 160 − 110 = 50.
        let b = crop_box(Rect::new(200, 100, 299, 199), 1000, 1000);
        assert_eq!(
            b,
            CropBox {
                x: 140,
                y: 50,
                side: 220
            }
        );
        // Near the top-left corner the square is moved inside.
        let b = crop_box(Rect::new(0, 0, 99, 99), 1000, 1000);
        assert_eq!((b.x, b.y, b.side), (0, 0, 220));
        // A photo smaller than the square: the square shrinks to the photo's short side.
        let b = crop_box(Rect::new(50, 50, 149, 149), 300, 200);
        assert_eq!(b.side, 200);
        assert!(b.x + b.side <= 300 && b.y == 0);
    }

    #[test]
    fn laplacian_variance_of_flat_and_sharp_images() {
        let flat = GrayImage::from_pixel(8, 8, image::Luma([100]));
        assert_eq!(laplacian_variance(&flat), 0.0);
        let checker = GrayImage::from_fn(8, 8, |x, y| {
            image::Luma([if (x + y) % 2 == 0 { 0 } else { 255 }])
        });
        assert!(laplacian_variance(&checker) > 1e5);
    }
}
