//! Thumbnails: every image the report shows is read once (in parallel), downscaled and embedded as a JPEG data
//! URI in one CSS rule, so an image shown in several places is stored once. Also reads the PNG infotext.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::PathBuf;

use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader};
use rayon::prelude::*;

use super::html::{escape, file_href};

/// Longest side of a thumbnail, in pixels.
pub const THUMB_SIDE: u32 = 256;
const JPEG_QUALITY: u8 = 82;

/// One image to load: the key the page refers to it by, and the file.
pub struct ThumbRequest {
    pub key: String,
    pub path: PathBuf,
}

/// A loaded thumbnail.
pub struct Thumb {
    /// CSS class holding the image.
    pub class: String,
    pub width: u32,
    pub height: u32,
    /// The PNG `parameters` text (A1111 infotext), when present.
    pub infotext: Option<String>,
    base64: String,
}

/// Every thumbnail of the page by key, or why it could not be made.
pub struct Thumbs {
    entries: HashMap<String, Result<Thumb, String>>,
    order: Vec<String>,
}

impl Thumbs {
    /// Loads every request (duplicate keys once) on rayon's pool.
    pub fn load(mut requests: Vec<ThumbRequest>) -> Thumbs {
        let mut seen = std::collections::HashSet::new();
        requests.retain(|r| seen.insert(r.key.clone()));
        let loaded: Vec<Result<Thumb, String>> =
            requests.par_iter().map(|r| load_thumb(&r.path)).collect();
        let mut entries = HashMap::new();
        let mut order = Vec::new();
        for (index, (request, result)) in requests.into_iter().zip(loaded).enumerate() {
            let result = result.map(|thumb| Thumb {
                class: format!("t{index}"),
                ..thumb
            });
            order.push(request.key.clone());
            entries.insert(request.key, result);
        }
        Thumbs { entries, order }
    }

    /// The thumbnail of `key`, or why there is none.
    pub fn get(&self, key: &str) -> Result<&Thumb, &str> {
        match self.entries.get(key) {
            Some(Ok(thumb)) => Ok(thumb),
            Some(Err(reason)) => Err(reason),
            None => Err("no image"),
        }
    }

    /// The CSS rules carrying the images, one per thumbnail.
    pub fn css(&self) -> String {
        let mut css = String::new();
        for thumb in self
            .order
            .iter()
            .filter_map(|k| self.entries[k].as_ref().ok())
        {
            css.push_str(&format!(
                ".{}{{background-image:url(\"data:image/jpeg;base64,{}\")}}\n",
                thumb.class, thumb.base64
            ));
        }
        css
    }

    /// A thumbnail element: a link to `href` when given, else a plain box; a labelled placeholder when the image
    /// could not be read.
    pub fn element(&self, key: &str, href: Option<&str>, label: &str) -> String {
        match self.get(key) {
            Ok(thumb) => {
                let style = format!("aspect-ratio:{}/{}", thumb.width, thumb.height);
                let (tag, link) = match href {
                    Some(h) => ("a", format!(" href=\"{}\"", file_href(h))),
                    None => ("span", String::new()),
                };
                format!(
                    "<{tag} class=\"thumb {}\"{link} style=\"{style}\" role=\"img\" aria-label=\"{}\" title=\"{}\"></{tag}>",
                    thumb.class,
                    escape(label),
                    escape(label)
                )
            }
            Err(reason) => placeholder(reason),
        }
    }
}

/// A box saying why there is no image.
pub fn placeholder(reason: &str) -> String {
    format!(
        "<span class=\"thumb placeholder\" title=\"{}\">{}</span>",
        escape(reason),
        escape(&super::html::truncate(reason, 60))
    )
}

fn load_thumb(path: &std::path::Path) -> Result<Thumb, String> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "image missing".to_string(),
        _ => format!("unreadable: {e}"),
    })?;
    let infotext = png_parameters(&bytes);
    let image = decode(&bytes).map_err(|e| format!("unreadable: {e}"))?;
    let small = image.thumbnail(THUMB_SIDE, THUMB_SIDE).to_rgb8();
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(&small)
        .map_err(|e| format!("cannot encode a thumbnail: {e}"))?;
    Ok(Thumb {
        class: String::new(),
        width: small.width(),
        height: small.height(),
        infotext,
        base64: base64(&jpeg),
    })
}

/// Decodes an image, turned upright by its EXIF orientation (phone photos).
fn decode(bytes: &[u8]) -> image::ImageResult<DynamicImage> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut decoder = reader.into_decoder()?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// The `parameters` text chunk of a PNG (tEXt, zTXt or iTXt ahead of the image data).
pub fn png_parameters(bytes: &[u8]) -> Option<String> {
    if !bytes.starts_with(b"\x89PNG") {
        return None;
    }
    let reader = png::Decoder::new(Cursor::new(bytes)).read_info().ok()?;
    let info = reader.info();
    let is_parameters = |keyword: &str| keyword == "parameters";
    if let Some(chunk) = info
        .uncompressed_latin1_text
        .iter()
        .find(|c| is_parameters(&c.keyword))
    {
        return Some(chunk.text.clone());
    }
    if let Some(chunk) = info
        .compressed_latin1_text
        .iter()
        .find(|c| is_parameters(&c.keyword))
    {
        return chunk.get_text().ok();
    }
    info.utf8_text
        .iter()
        .find(|c| is_parameters(&c.keyword))
        .and_then(|c| c.get_text().ok())
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}
