//! Reading one image file the webui saved: its bytes (hashed: the key of the imported cell), its format, its
//! generation text (PNG `parameters` text chunk, A1111's EXIF `UserComment` in JPEG and WebP, or ComfyUI's
//! `prompt` JSON chunk) and a full decode, so a truncated or corrupt file is reported here and not later.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use sha2::{Digest, Sha256};

use super::exif::user_comment;
use super::SkipReason;

/// Hex digits of an imported cell's key (as a rendered cell's).
const KEY_HEX_DIGITS: usize = 20;
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The file formats the webui saves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    Webp,
}

impl Format {
    fn image_format(self) -> ImageFormat {
        match self {
            Format::Png => ImageFormat::Png,
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Webp => ImageFormat::WebP,
        }
    }

    /// By content, not by name.
    fn sniff(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(PNG_SIGNATURE) {
            Some(Format::Png)
        } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(Format::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Format::Webp)
        } else {
            None
        }
    }
}

/// The generation text an image carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Metadata {
    /// A1111's infotext (PNG `parameters`, or the EXIF `UserComment` of a JPEG/WebP).
    A1111(String),
    /// ComfyUI's `prompt` chunk: the API graph that made the image.
    Comfy(String),
}

/// One image file, read (and decoded once, to know it is whole).
#[derive(Clone, Debug)]
pub struct ImageFile {
    pub path: PathBuf,
    /// The first hex digits of the SHA-256 of the file's bytes.
    pub key: String,
    pub format: Format,
    pub metadata: Metadata,
}

/// Reads, hashes and decodes `path`; the reason it cannot be imported otherwise.
pub fn read_image(path: &Path) -> Result<ImageFile, SkipReason> {
    let bytes = std::fs::read(path).map_err(|e| SkipReason::Unreadable(e.to_string()))?;
    let format = Format::sniff(&bytes).ok_or_else(|| {
        SkipReason::Unreadable("not a PNG, JPEG or WebP file (by its content)".to_string())
    })?;
    let (_, exif) = decode(&bytes, format)?;
    let metadata = match format {
        Format::Png => png_metadata(&bytes)?,
        Format::Jpeg | Format::Webp => exif.as_deref().and_then(user_comment).map(Metadata::A1111),
    };
    let metadata = metadata.ok_or(SkipReason::NoInfotext(format))?;
    Ok(ImageFile {
        path: path.to_path_buf(),
        key: content_key(&bytes),
        format,
        metadata,
    })
}

/// The key of an imported file: the first 20 hex digits of the SHA-256 of its bytes.
pub fn content_key(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..KEY_HEX_DIGITS].to_string()
}

/// The decoded image and its raw EXIF data.
fn decode(bytes: &[u8], format: Format) -> Result<(DynamicImage, Option<Vec<u8>>), SkipReason> {
    let unreadable = |e: image::ImageError| SkipReason::Unreadable(e.to_string());
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format.image_format())
        .into_decoder()
        .map_err(unreadable)?;
    let exif = match format {
        Format::Png => None,
        _ => decoder.exif_metadata().map_err(unreadable)?,
    };
    let image = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    Ok((image, exif))
}

/// Decodes `path` to 8-bit RGB (for JPEG/WebP images stored as PNG).
pub fn decode_rgb(path: &Path) -> Result<image::RgbImage, SkipReason> {
    let bytes = std::fs::read(path).map_err(|e| SkipReason::Unreadable(e.to_string()))?;
    let format = Format::sniff(&bytes)
        .ok_or_else(|| SkipReason::Unreadable("not a PNG, JPEG or WebP file".to_string()))?;
    Ok(decode(&bytes, format)?.0.to_rgb8())
}

/// A1111's `parameters`, else ComfyUI's `prompt`, from the PNG's text chunks (tEXt, zTXt, iTXt, anywhere in
/// the file, as PIL reads them).
fn png_metadata(bytes: &[u8]) -> Result<Option<Metadata>, SkipReason> {
    let texts = png_texts(bytes)?;
    let find = |key: &str| texts.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    Ok(find("parameters")
        .filter(|t| !t.trim().is_empty())
        .map(Metadata::A1111)
        .or_else(|| find("prompt").map(Metadata::Comfy)))
}

/// Every (keyword, text) of a PNG's text chunks, in file order.
pub fn png_texts(bytes: &[u8]) -> Result<Vec<(String, String)>, SkipReason> {
    let truncated = || SkipReason::Unreadable("truncated PNG chunk".to_string());
    let mut texts = Vec::new();
    let mut at = PNG_SIGNATURE.len();
    while at + 8 <= bytes.len() {
        let length = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let kind = &bytes[at + 4..at + 8];
        let start = at + 8;
        let end = start.checked_add(length as usize).ok_or_else(truncated)?;
        let data = bytes.get(start..end).ok_or_else(truncated)?;
        if let Some(text) = text_chunk(kind, data) {
            texts.push(text);
        }
        if kind == b"IEND" {
            break;
        }
        at = end + 4;
    }
    Ok(texts)
}

/// (keyword, text) of a tEXt (Latin-1), zTXt (Latin-1, deflated) or iTXt (UTF-8, maybe deflated) chunk.
fn text_chunk(kind: &[u8], data: &[u8]) -> Option<(String, String)> {
    let nul = data.iter().position(|&b| b == 0)?;
    let keyword = latin1(&data[..nul]);
    let rest = &data[nul + 1..];
    let text = match kind {
        b"tEXt" => latin1(rest),
        b"zTXt" => latin1(&inflate(rest.get(1..)?)?),
        b"iTXt" => itxt_text(rest)?,
        _ => return None,
    };
    Some((keyword, text))
}

/// iTXt after the keyword: compression flag, method, language tag\0, translated keyword\0, text.
fn itxt_text(rest: &[u8]) -> Option<String> {
    let (flag, rest) = (*rest.first()?, rest.get(2..)?);
    let language_end = rest.iter().position(|&b| b == 0)?;
    let rest = &rest[language_end + 1..];
    let translated_end = rest.iter().position(|&b| b == 0)?;
    let text = &rest[translated_end + 1..];
    let text = match flag {
        0 => text.to_vec(),
        _ => inflate(text)?,
    };
    String::from_utf8(text).ok()
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

fn inflate(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_chunks_of_every_kind() {
        let image = image::RgbImage::new(2, 2);
        let bytes = crate::sampling::png_info::encode_png(&image, "a prompt\nSteps: 1").unwrap();
        let texts = png_texts(&bytes).unwrap();
        assert_eq!(
            texts,
            vec![("parameters".into(), "a prompt\nSteps: 1".into())]
        );
        let unicode = crate::sampling::png_info::encode_png(&image, "日本 prompt").unwrap();
        assert_eq!(png_texts(&unicode).unwrap()[0].1, "日本 prompt");
        assert_eq!(
            png_metadata(&bytes).unwrap(),
            Some(Metadata::A1111("a prompt\nSteps: 1".into()))
        );
    }

    #[test]
    fn keys_are_content_hashes() {
        assert_eq!(content_key(b"abc"), "ba7816bf8f01cfea4141");
        assert_eq!(Format::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::Webp));
        assert_eq!(Format::sniff(b"GIF89a"), None);
    }
}
