//! Loads image files (PNG, JPEG) into 8-bit RGB for the face stage, with errors that name the file.
//!
//! Conversions (documented behaviour, not errors): grayscale is replicated into R, G, B; 16-bit channels are
//! scaled to 8 bits (`round(v · 255 / 65535)`); an alpha channel is dropped (as PIL's `convert("RGB")`, which
//! `face_recognition` uses); CMYK/YCCK JPEGs are converted to RGB by the JPEG decoder (zune-jpeg).
//! Files that are not PNG/JPEG, corrupt or truncated, or larger than [`MAX_IMAGE_SIDE`] are errors.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageReader, RgbImage};

use super::FaceError;

/// Largest accepted width or height in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Largest decoder allocation in bytes.
const MAX_DECODE_BYTES: u64 = 1 << 30;

/// Reads and decodes an image file into 8-bit RGB.
pub fn load_rgb_image(path: &Path) -> Result<RgbImage, FaceError> {
    let bytes =
        std::fs::read(path).map_err(|e| image_error(path, format!("cannot read file: {e}")))?;
    decode_rgb_image(&bytes, path)
}

/// Decodes image bytes (format guessed from the content, not the name); `path` only names them in errors.
pub fn decode_rgb_image(bytes: &[u8], path: &Path) -> Result<RgbImage, FaceError> {
    if bytes.is_empty() {
        return Err(image_error(path, "file is empty".to_string()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_error(path, format!("cannot inspect file: {e}")))?;
    let Some(format) = reader.format() else {
        return Err(image_error(
            path,
            "not a PNG or JPEG file (unrecognised content)".to_string(),
        ));
    };
    if format == image::ImageFormat::Jpeg && jpeg_is_truncated(bytes) {
        return Err(image_error(
            path,
            "corrupt or truncated JPEG data: no end-of-image marker after the last scan"
                .to_string(),
        ));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| image_error(path, describe_decode_error(format, e)))?;
    if decoded.width() == 0 || decoded.height() == 0 {
        return Err(image_error(path, "image has no pixels".to_string()));
    }
    Ok(to_rgb8(decoded))
}

/// Converts any decoded layout to 8-bit RGB (see the module docs for the rules).
fn to_rgb8(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}

/// True if no EOI marker (FF D9) follows the last start-of-scan marker (FF DA). The JPEG decoder fills a
/// truncated scan with grey without failing, so a cut-off download would otherwise pass silently. Inside
/// entropy-coded data 0xFF is always stuffed (FF 00) or a restart marker, so FF DA / FF D9 are real markers;
/// an EXIF thumbnail's own EOI comes before the main image's scans and does not count.
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let last_marker = |code: u8| bytes.windows(2).rposition(|w| w[0] == 0xFF && w[1] == code);
    match (last_marker(0xDA), last_marker(0xD9)) {
        (Some(sos), Some(eoi)) => eoi < sos,
        _ => true,
    }
}

fn describe_decode_error(format: image::ImageFormat, error: image::ImageError) -> String {
    use image::ImageError;
    let name = format!("{format:?}").to_uppercase();
    match error {
        ImageError::Limits(e) => {
            format!("{name} image too large (limit {MAX_IMAGE_SIDE} px per side, {MAX_DECODE_BYTES} bytes): {e}")
        }
        ImageError::Unsupported(e) => {
            format!("unsupported {name} image: {e} (only PNG and JPEG are supported)")
        }
        ImageError::Decoding(e) => format!("corrupt or truncated {name} data: {e}"),
        other => format!("cannot decode {name} image: {other}"),
    }
}

fn image_error(path: &Path, reason: String) -> FaceError {
    FaceError::Image {
        path: path.to_path_buf(),
        reason,
    }
}

/// Saves an RGB image as PNG (for debugging chips); errors name the file.
pub fn save_rgb_png(image: &RgbImage, path: &Path) -> Result<(), FaceError> {
    image
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| image_error(path, format!("cannot write PNG: {e}")))
}
