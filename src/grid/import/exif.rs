//! The EXIF `UserComment` A1111 writes into JPEG and WebP images: `modules/images.py` saves
//! `piexif.dump({"Exif": {UserComment: piexif.helper.UserComment.dump(infotext, encoding="unicode")}})`, i.e. a
//! TIFF structure (big-endian, as piexif writes it; little-endian is read too) whose IFD0 points to an Exif IFD
//! holding tag 0x9286, `UNICODE\0` followed by the text in UTF-16 (big-endian, as piexif decodes it).
//! `read_info_from_image` falls back to UTF-8 when the prefix is unknown; so does this reader.

/// `Exif\0\0`, the APP1 header JPEG carries before the TIFF data (piexif strips it for WebP's EXIF chunk).
const EXIF_HEADER: &[u8] = b"Exif\0\0";
const TAG_EXIF_IFD: u16 = 0x8769;
const TAG_USER_COMMENT: u16 = 0x9286;
/// Bytes of one IFD entry: tag, type, count, value or offset.
const ENTRY_BYTES: usize = 12;

/// The text of the `UserComment` in raw EXIF data (with or without the `Exif\0\0` header); None when absent or
/// empty.
pub fn user_comment(exif: &[u8]) -> Option<String> {
    let tiff = exif.strip_prefix(EXIF_HEADER).unwrap_or(exif);
    let reader = Tiff::new(tiff)?;
    let ifd0 = reader.u32_at(4)? as usize;
    let exif_ifd = reader.find(ifd0, TAG_EXIF_IFD)?;
    let exif_ifd = reader.u32_at(exif_ifd + 8)? as usize;
    let entry = reader.find(exif_ifd, TAG_USER_COMMENT)?;
    let bytes = reader.entry_bytes(entry)?;
    let text = decode_user_comment(bytes);
    let text = text.trim_end_matches('\0');
    (!text.trim().is_empty()).then(|| text.to_string())
}

/// piexif's `UserComment.load`: an 8-byte prefix names the encoding; without a known one, UTF-8 (A1111's
/// fallback).
fn decode_user_comment(bytes: &[u8]) -> String {
    let (prefix, body) = bytes.split_at(bytes.len().min(8));
    match prefix {
        b"UNICODE\0" => decode_utf16(body),
        b"ASCII\0\0\0" | b"\0\0\0\0\0\0\0\0" | b"JIS\0\0\0\0\0" => {
            String::from_utf8_lossy(body).into_owned()
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// UTF-16 text: big-endian as piexif reads it, unless little-endian gives clearly more plain characters (some
/// tools write the byte order of their TIFF header).
fn decode_utf16(body: &[u8]) -> String {
    let units = |big: bool| -> Vec<u16> {
        body.chunks_exact(2)
            .map(|p| match big {
                true => u16::from_be_bytes([p[0], p[1]]),
                false => u16::from_le_bytes([p[0], p[1]]),
            })
            .collect()
    };
    let big = String::from_utf16_lossy(&units(true));
    let little = String::from_utf16_lossy(&units(false));
    let plain = |s: &str| s.chars().filter(|c| c.is_ascii()).count();
    if plain(&little) > plain(&big) {
        little
    } else {
        big
    }
}

/// A TIFF structure: its bytes and byte order.
struct Tiff<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl<'a> Tiff<'a> {
    fn new(bytes: &'a [u8]) -> Option<Tiff<'a>> {
        let big_endian = match bytes.get(..4)? {
            b"MM\0*" => true,
            b"II*\0" => false,
            _ => return None,
        };
        Some(Tiff { bytes, big_endian })
    }

    fn u16_at(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(at..at + 2)?.try_into().ok()?;
        Some(match self.big_endian {
            true => u16::from_be_bytes(b),
            false => u16::from_le_bytes(b),
        })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at + 4)?.try_into().ok()?;
        Some(match self.big_endian {
            true => u32::from_be_bytes(b),
            false => u32::from_le_bytes(b),
        })
    }

    /// The offset of the entry of `tag` in the IFD at `ifd`.
    fn find(&self, ifd: usize, tag: u16) -> Option<usize> {
        let count = self.u16_at(ifd)? as usize;
        (0..count)
            .map(|i| ifd + 2 + i * ENTRY_BYTES)
            .find(|&entry| self.u16_at(entry) == Some(tag))
    }

    /// The value bytes of an entry of one-byte type (BYTE, ASCII, UNDEFINED): inline when 4 bytes or fewer.
    fn entry_bytes(&self, entry: usize) -> Option<&'a [u8]> {
        let count = self.u32_at(entry + 4)? as usize;
        let start = match count <= 4 {
            true => entry + 8,
            false => self.u32_at(entry + 8)? as usize,
        };
        self.bytes.get(start..start.checked_add(count)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `piexif.dump({"Exif": {UserComment: ...}})` writes: big-endian TIFF, IFD0 with the Exif pointer,
    /// the Exif IFD with the comment.
    fn piexif_dump(comment: &[u8]) -> Vec<u8> {
        let mut out = b"Exif\0\0MM\0*\0\0\0\x08".to_vec();
        out.extend([0, 1, 0x87, 0x69, 0, 4, 0, 0, 0, 1, 0, 0, 0, 26, 0, 0, 0, 0]);
        out.extend([0, 1, 0x92, 0x86, 0, 7]);
        out.extend((comment.len() as u32).to_be_bytes());
        out.extend(44u32.to_be_bytes());
        out.extend([0, 0, 0, 0]);
        out.extend(comment);
        out
    }

    fn unicode(text: &str) -> Vec<u8> {
        let mut bytes = b"UNICODE\0".to_vec();
        bytes.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        bytes
    }

    #[test]
    fn reads_piexif_unicode_comments() {
        let text =
            "photo of sks woman <lora:sks-000002:0.8>\nSteps: 20, Sampler: Euler, Seed: 1, é ü";
        assert_eq!(
            user_comment(&piexif_dump(&unicode(text))).as_deref(),
            Some(text)
        );
        let tiff = piexif_dump(&unicode(text))[6..].to_vec();
        assert_eq!(user_comment(&tiff).as_deref(), Some(text));
    }

    #[test]
    fn reads_ascii_and_unprefixed_comments_and_refuses_garbage() {
        assert_eq!(
            user_comment(&piexif_dump(b"ASCII\0\0\0hello")).as_deref(),
            Some("hello")
        );
        assert_eq!(
            user_comment(&piexif_dump(b"plain utf-8 text")).as_deref(),
            Some("plain utf-8 text")
        );
        assert_eq!(user_comment(&piexif_dump(b"UNICODE\0")), None);
        assert_eq!(user_comment(b"Exif\0\0garbage"), None);
        assert_eq!(user_comment(b""), None);
    }
}
