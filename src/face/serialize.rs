//! dlib's binary deserialization primitives (face.md §1) over a byte slice; errors carry file and byte offset.
//!
//! dlib files have no header or magic: objects follow each other from byte 0. Integers use dlib's
//! variable-length format (control byte + little-endian magnitude), floats are `mantissa · 2^exponent`
//! pairs of such integers, tensors hold raw little-endian `f32`. Every read that fails returns
//! [`FaceError::ModelParse`] with the offset where the failing item starts.

use std::path::{Path, PathBuf};

use super::FaceError;

/// Reads a whole model file into memory, naming the file on failure.
pub fn read_model_file(path: &Path) -> Result<Vec<u8>, FaceError> {
    std::fs::read(path).map_err(|source| FaceError::ModelIo {
        file: path.to_path_buf(),
        source,
    })
}

/// A dense row-major `dlib::matrix<float>` (column vectors have `cols == 1`).
#[derive(Debug, Clone, PartialEq)]
pub struct DlibMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

/// A `dlib::resizable_tensor`: dims `(num_samples, k, nr, nc)`, data in NCHW row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct DlibTensor {
    pub num_samples: usize,
    pub k: usize,
    pub nr: usize,
    pub nc: usize,
    pub data: Vec<f32>,
}

impl DlibTensor {
    /// The four dims as `[num_samples, k, nr, nc]`.
    pub fn dims(&self) -> [usize; 4] {
        [self.num_samples, self.k, self.nr, self.nc]
    }
}

/// A `dlib::alias_tensor`: only a shape (a view into a parameter tensor), no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliasTensorDims {
    pub num_samples: usize,
    pub k: usize,
    pub nr: usize,
    pub nc: usize,
}

impl AliasTensorDims {
    /// Number of elements the alias covers.
    pub fn size(&self) -> usize {
        self.num_samples * self.k * self.nr * self.nc
    }
}

/// Cursor over the bytes of one dlib file. Cheap to create; all reads advance `pos`.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    file: PathBuf,
}

impl<'a> Reader<'a> {
    /// Starts reading `bytes` (the contents of `file`, used only in error messages) at offset 0.
    pub fn new(bytes: &'a [u8], file: impl Into<PathBuf>) -> Self {
        Reader {
            bytes,
            pos: 0,
            file: file.into(),
        }
    }

    /// Current byte offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Total number of bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True if the underlying byte slice is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes left after `pos`.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// True when every byte has been consumed.
    pub fn is_at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    /// The file name used in error messages.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Builds a [`FaceError::ModelParse`] for this file at `offset`.
    pub fn error_at(&self, offset: usize, what: impl Into<String>) -> FaceError {
        FaceError::ModelParse {
            file: self.file.clone(),
            offset,
            what: what.into(),
        }
    }

    /// Fails unless every byte was consumed (dlib models end exactly after their last object).
    pub fn expect_end(&self) -> Result<(), FaceError> {
        if self.is_at_end() {
            return Ok(());
        }
        Err(self.error_at(
            self.pos,
            format!(
                "{} unexpected trailing bytes after the last object",
                self.remaining()
            ),
        ))
    }

    /// Next byte without consuming it.
    pub fn peek_u8(&self) -> Result<u8, FaceError> {
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.error_at(self.pos, "unexpected end of file"))
    }

    /// One raw byte (dlib's `char`/`unsigned char`/`uint8` serializers write raw bytes).
    pub fn read_u8(&mut self) -> Result<u8, FaceError> {
        let byte = self.peek_u8()?;
        self.pos += 1;
        Ok(byte)
    }

    /// `n` raw bytes.
    pub fn read_bytes(&mut self, n: usize) -> Result<&'a [u8], FaceError> {
        if n > self.remaining() {
            return Err(self.error_at(
                self.pos,
                format!(
                    "need {n} bytes but the file ends after {} more",
                    self.remaining()
                ),
            ));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    /// A dlib variable-length integer with at most `max_bytes` magnitude bytes: (is_negative, magnitude).
    fn read_int_parts(&mut self, max_bytes: usize, signed: bool) -> Result<(bool, u64), FaceError> {
        let start = self.pos;
        let control = self.read_u8()?;
        // dlib masks the 3 reserved bits 0x70; unsigned readers keep the sign bit so it makes the size invalid.
        let size = if signed {
            (control & 0x0F) as usize
        } else {
            (control & 0x8F) as usize
        };
        if size == 0 || size > max_bytes {
            self.pos = start;
            return Err(self.error_at(
                start,
                format!(
                    "bad integer control byte 0x{control:02x} (needs 1..={max_bytes} magnitude bytes{})",
                    if signed { "" } else { ", unsigned" }
                ),
            ));
        }
        let magnitude_bytes = match self.read_bytes(size) {
            Ok(b) => b,
            Err(_) => {
                self.pos = start;
                return Err(self.error_at(start, "integer cut off by the end of the file"));
            }
        };
        let magnitude = magnitude_bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        Ok((signed && control & 0x80 != 0, magnitude))
    }

    /// A signed integer that must fit in `bits` bits (`int` = 32, `long`/`long long` = 64, `int16` = 16).
    fn read_signed(&mut self, bits: u32) -> Result<i64, FaceError> {
        let start = self.pos;
        let (negative, magnitude) = self.read_int_parts((bits / 8) as usize, true)?;
        let limit = 1u64 << (bits - 1); // |MIN| for negatives, MAX + 1 for positives
        if (negative && magnitude > limit) || (!negative && magnitude >= limit) {
            self.pos = start;
            return Err(self.error_at(start, format!("integer does not fit in {bits} bits")));
        }
        let value = magnitude as i128;
        let signed_value = if negative { -value } else { value };
        Ok(signed_value as i64)
    }

    /// dlib `long long` / `long` / `int64`.
    pub fn read_i64(&mut self) -> Result<i64, FaceError> {
        self.read_signed(64)
    }

    /// dlib `int`.
    pub fn read_i32(&mut self) -> Result<i32, FaceError> {
        Ok(self.read_signed(32)? as i32)
    }

    /// dlib `int16` (the exponent of a float).
    pub fn read_i16(&mut self) -> Result<i16, FaceError> {
        Ok(self.read_signed(16)? as i16)
    }

    /// dlib `unsigned long` / `size_t` / `uint64`.
    pub fn read_u64(&mut self) -> Result<u64, FaceError> {
        Ok(self.read_int_parts(8, false)?.1)
    }

    /// dlib `unsigned int` / `uint32`.
    pub fn read_u32(&mut self) -> Result<u32, FaceError> {
        Ok(self.read_int_parts(4, false)?.1 as u32)
    }

    /// An unsigned integer used as a size or index, converted to `usize`.
    pub fn read_usize(&mut self) -> Result<usize, FaceError> {
        let start = self.pos;
        let value = self.read_u64()?;
        usize::try_from(value).map_err(|_| self.error_at(start, format!("size {value} too large")))
    }

    /// A signed `long` that must be ≥ 0 (dimensions), as `usize`.
    pub fn read_nonnegative(&mut self) -> Result<usize, FaceError> {
        let start = self.pos;
        let value = self.read_i64()?;
        usize::try_from(value)
            .map_err(|_| self.error_at(start, format!("expected a size ≥ 0, found {value}")))
    }

    /// A container element count (`unsigned long`), checked against the bytes left: every element
    /// takes at least `min_element_bytes` bytes, so corrupt counts fail here instead of allocating.
    pub fn read_len(&mut self, min_element_bytes: usize) -> Result<usize, FaceError> {
        let start = self.pos;
        let count = self.read_usize()?;
        let needed = count.saturating_mul(min_element_bytes.max(1));
        if needed > self.remaining() {
            self.pos = start;
            return Err(self.error_at(
                start,
                format!(
                    "container of {count} elements cannot fit in the {} bytes left",
                    self.remaining()
                ),
            ));
        }
        Ok(count)
    }

    /// dlib `bool`: ASCII '1' or '0'.
    pub fn read_bool(&mut self) -> Result<bool, FaceError> {
        let start = self.pos;
        match self.read_u8()? {
            b'1' => Ok(true),
            b'0' => Ok(false),
            other => {
                self.pos = start;
                Err(self.error_at(
                    start,
                    format!("bad bool byte 0x{other:02x} (expected '0' or '1')"),
                ))
            }
        }
    }

    /// The `(mantissa, exponent)` pair of dlib's `float_details`.
    fn read_float_details(&mut self) -> Result<(i64, i16), FaceError> {
        let start = self.pos;
        if self.peek_u8()? & 0x70 != 0 {
            return Err(self.error_at(
                start,
                "old ASCII floating point format is not supported (or corrupt float)",
            ));
        }
        let mantissa = self.read_i64().map_err(|e| e.context("float mantissa"))?;
        let exponent = self.read_i16().map_err(|e| e.context("float exponent"))?;
        Ok((mantissa, exponent))
    }

    /// dlib `double` (float_details; exponent 32000 = +inf, 32001 = −inf, above = NaN).
    pub fn read_f64(&mut self) -> Result<f64, FaceError> {
        let (mantissa, exponent) = self.read_float_details()?;
        Ok(float_details_value(mantissa as f64, exponent))
    }

    /// dlib `float` (float_details, converted like dlib: `ldexp((float)mantissa, exponent)`).
    pub fn read_f32(&mut self) -> Result<f32, FaceError> {
        let (mantissa, exponent) = self.read_float_details()?;
        let value = float_details_value((mantissa as f32) as f64, exponent);
        Ok(value as f32)
    }

    /// A `std::string` (or string literal): `unsigned long` length, then the bytes.
    pub fn read_string(&mut self) -> Result<String, FaceError> {
        let start = self.pos;
        let len = self.read_len(1)?;
        let bytes = self.read_bytes(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.error_at(start, format!("string of {len} bytes is not valid UTF-8")))
    }

    /// A version/tag string that must be one of `accepted`; returns the one found.
    pub fn read_tag(&mut self, accepted: &[&str]) -> Result<String, FaceError> {
        let start = self.pos;
        let tag = self
            .read_string()
            .map_err(|e| e.context(&format!("expected one of {accepted:?}")))?;
        if accepted.contains(&tag.as_str()) {
            return Ok(tag);
        }
        self.pos = start;
        Err(self.error_at(
            start,
            format!("found tag {tag:?}, expected one of {accepted:?}"),
        ))
    }

    /// An integer version that must be one of `accepted`.
    pub fn read_version(&mut self, accepted: &[i64], object: &str) -> Result<i64, FaceError> {
        let start = self.pos;
        let version = self
            .read_i64()
            .map_err(|e| e.context(&format!("{object} version")))?;
        if accepted.contains(&version) {
            return Ok(version);
        }
        self.pos = start;
        Err(self.error_at(
            start,
            format!("{object}: unsupported version {version}, expected one of {accepted:?}"),
        ))
    }

    /// A `std::vector<T>`: count, then each element read by `read_element`
    /// (`min_element_bytes` bounds the count against the bytes left).
    pub fn read_vec<T>(
        &mut self,
        min_element_bytes: usize,
        mut read_element: impl FnMut(&mut Self) -> Result<T, FaceError>,
    ) -> Result<Vec<T>, FaceError> {
        let count = self.read_len(min_element_bytes)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(read_element(self)?);
        }
        Ok(out)
    }

    /// A `dlib::matrix<float>`: `long nr`, `long nc` (negated in the new format), row-major floats.
    pub fn read_matrix_f32(&mut self) -> Result<DlibMatrix, FaceError> {
        let start = self.pos;
        let rows = self.read_i64()?.unsigned_abs();
        let cols = self.read_i64()?.unsigned_abs();
        let count = rows
            .checked_mul(cols)
            .filter(|&n| n <= self.remaining() as u64);
        let Some(count) = count else {
            self.pos = start;
            return Err(self.error_at(
                start,
                format!("matrix {rows}x{cols} cannot fit in the bytes left"),
            ));
        };
        let mut data = Vec::with_capacity(count as usize);
        for _ in 0..count {
            data.push(self.read_f32().map_err(|e| e.context("matrix element"))?);
        }
        Ok(DlibMatrix {
            rows: rows as usize,
            cols: cols as usize,
            data,
        })
    }

    /// A `dlib::vector<float,2>` (a point): x then y.
    pub fn read_point_f32(&mut self) -> Result<[f32; 2], FaceError> {
        Ok([self.read_f32()?, self.read_f32()?])
    }

    /// Four `long long` dims, all ≥ 0.
    fn read_dims4(&mut self) -> Result<[usize; 4], FaceError> {
        let mut dims = [0usize; 4];
        for d in &mut dims {
            *d = self.read_nonnegative()?;
        }
        Ok(dims)
    }

    /// A `dlib::resizable_tensor`: int version 2, four `long long` dims, then raw little-endian f32.
    pub fn read_tensor(&mut self) -> Result<DlibTensor, FaceError> {
        let start = self.pos;
        self.read_version(&[2], "resizable_tensor")?;
        let [num_samples, k, nr, nc] = self.read_dims4().map_err(|e| e.context("tensor dims"))?;
        let count = num_samples
            .checked_mul(k)
            .and_then(|n| n.checked_mul(nr))
            .and_then(|n| n.checked_mul(nc))
            .filter(|&n| n.saturating_mul(4) <= self.remaining());
        let Some(count) = count else {
            self.pos = start;
            return Err(self.error_at(
                start,
                format!(
                    "tensor {num_samples}x{k}x{nr}x{nc} needs more float data than the {} bytes left",
                    self.remaining()
                ),
            ));
        };
        let raw = self.read_bytes(count * 4)?;
        let data = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(DlibTensor {
            num_samples,
            k,
            nr,
            nc,
            data,
        })
    }

    /// A `dlib::alias_tensor`: int version 1, four `long long` dims.
    pub fn read_alias_tensor(&mut self) -> Result<AliasTensorDims, FaceError> {
        self.read_version(&[1], "alias_tensor")?;
        let [num_samples, k, nr, nc] = self
            .read_dims4()
            .map_err(|e| e.context("alias_tensor dims"))?;
        Ok(AliasTensorDims {
            num_samples,
            k,
            nr,
            nc,
        })
    }
}

/// `ldexp(mantissa, exponent)` with dlib's special exponents for inf/−inf/NaN.
fn float_details_value(mantissa: f64, exponent: i16) -> f64 {
    match exponent {
        e if e < 32000 => ldexp(mantissa, i32::from(e)),
        32000 => f64::INFINITY,
        32001 => f64::NEG_INFINITY,
        _ => f64::NAN,
    }
}

/// `x · 2^e` without overflow in the intermediate power of two.
fn ldexp(mut x: f64, mut e: i32) -> f64 {
    while e > 1000 {
        x *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        x *= 2f64.powi(-1000);
        e += 1000;
    }
    x * 2f64.powi(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Reader<'_> {
        Reader::new(bytes, "test.dat")
    }

    fn parse_offset(err: FaceError) -> (usize, String) {
        match err {
            FaceError::ModelParse { offset, what, .. } => (offset, what),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn integers_in_dlib_format() {
        let bytes = [
            0x01, 0x02, 0x02, 0x80, 0x12, 0x81, 0x1c, 0x01, 0x00, 0x02, 0xf4, 0x01,
        ];
        let mut r = reader(&bytes);
        assert_eq!(r.read_i64().unwrap(), 2);
        assert_eq!(r.read_u64().unwrap(), 4736);
        assert_eq!(r.read_i32().unwrap(), -28);
        assert_eq!(r.read_i16().unwrap(), 0);
        assert_eq!(r.read_usize().unwrap(), 500);
        assert!(r.is_at_end());
        r.expect_end().unwrap();
    }

    #[test]
    fn integer_extremes_and_range_checks() {
        let min = [0x88, 0, 0, 0, 0, 0, 0, 0, 0x80];
        assert_eq!(reader(&min).read_i64().unwrap(), i64::MIN);
        let max_u = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(reader(&max_u).read_u64().unwrap(), u64::MAX);
        // 5 magnitude bytes do not fit an int (dlib rejects by size), 0x8000 does not fit an int16.
        let (offset, what) = parse_offset(reader(&[0x05, 1, 2, 3, 4, 5]).read_i32().unwrap_err());
        assert_eq!(offset, 0);
        assert!(what.contains("control byte 0x05"), "{what}");
        assert!(reader(&[0x02, 0x00, 0x80]).read_i16().is_err());
        assert_eq!(reader(&[0x82, 0x00, 0x80]).read_i16().unwrap(), i16::MIN);
    }

    #[test]
    fn integer_errors() {
        // zero-size control byte
        assert!(reader(&[0x00]).read_i64().is_err());
        // negative into unsigned
        let (_, what) = parse_offset(reader(&[0x81, 0x05]).read_u64().unwrap_err());
        assert!(what.contains("unsigned"), "{what}");
        // truncated magnitude, offset of the control byte reported
        let mut r = reader(&[0x01, 0x07, 0x03, 0x01]);
        r.read_i64().unwrap();
        let (offset, what) = parse_offset(r.read_i64().unwrap_err());
        assert_eq!(offset, 2);
        assert!(what.contains("end of the file"), "{what}");
        assert!(reader(&[]).read_i64().is_err());
    }

    #[test]
    fn bools() {
        let mut r = reader(b"10x");
        assert!(r.read_bool().unwrap());
        assert!(!r.read_bool().unwrap());
        let (offset, _) = parse_offset(r.read_bool().unwrap_err());
        assert_eq!(offset, 2);
    }

    #[test]
    fn floats_in_float_details_format() {
        // margin 0.04 and dist_thresh 0.6 of the face model (face.md §1.3)
        let bytes = [
            0x03, 0x0a, 0xd7, 0xa3, 0x81, 0x1c, 0x03, 0x9a, 0x99, 0x99, 0x81, 0x18,
        ];
        let mut r = reader(&bytes);
        assert_eq!(r.read_f32().unwrap(), 0.04f32);
        assert_eq!(r.read_f32().unwrap(), 0.6f32);
        // 0.5 as a double: mantissa 1, exponent -1; inf / -inf / NaN markers
        assert_eq!(reader(&[0x01, 0x01, 0x81, 0x01]).read_f64().unwrap(), 0.5);
        let inf = [0x01, 0x00, 0x02, 0x00, 0x7d];
        assert_eq!(reader(&inf).read_f64().unwrap(), f64::INFINITY);
        let ninf = [0x01, 0x00, 0x02, 0x01, 0x7d];
        assert_eq!(reader(&ninf).read_f64().unwrap(), f64::NEG_INFINITY);
        assert!(reader(&[0x01, 0x00, 0x02, 0x02, 0x7d])
            .read_f64()
            .unwrap()
            .is_nan());
        // negative: -3 * 2^2 = -12
        assert_eq!(reader(&[0x81, 0x03, 0x01, 0x02]).read_f32().unwrap(), -12.0);
        // old ASCII format is refused with an offset
        let (offset, what) = parse_offset(reader(b"1.5 ").read_f32().unwrap_err());
        assert_eq!(offset, 0);
        assert!(what.contains("ASCII"), "{what}");
    }

    #[test]
    fn strings_and_tags() {
        let mut bytes = vec![0x01, 0x05];
        bytes.extend_from_slice(b"con_4");
        bytes.extend_from_slice(&[0x01, 0x03]);
        bytes.extend_from_slice(b"bad");
        let mut r = reader(&bytes);
        assert_eq!(r.read_tag(&["con_4", "con_5"]).unwrap(), "con_4");
        let (offset, what) = parse_offset(r.read_tag(&["relu_"]).unwrap_err());
        assert_eq!(offset, 7);
        assert!(what.contains("\"bad\""), "{what}");
        // a length longer than the file
        assert!(reader(&[0x01, 0x09, b'a']).read_string().is_err());
    }

    #[test]
    fn vectors_and_matrices() {
        // vector<unsigned long> {4, 0, 1}
        let bytes = [0x01, 0x03, 0x01, 0x04, 0x01, 0x00, 0x01, 0x01];
        let v = reader(&bytes).read_vec(2, |r| r.read_u64()).unwrap();
        assert_eq!(v, vec![4, 0, 1]);
        // absurd count fails before allocating
        let huge = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(reader(&huge).read_vec(2, |r| r.read_u64()).is_err());
        // matrix<float> 2x1 new format (-2, -1): 0.5, -12
        let m = [
            0x81, 0x02, 0x81, 0x01, 0x01, 0x01, 0x81, 0x01, 0x81, 0x03, 0x01, 0x02,
        ];
        let mut r = reader(&m);
        let matrix = r.read_matrix_f32().unwrap();
        assert_eq!((matrix.rows, matrix.cols), (2, 1));
        assert_eq!(matrix.data, vec![0.5, -12.0]);
        assert!(r.is_at_end());
    }

    #[test]
    fn tensors() {
        // version 2, dims 2x1x1x1, floats 1.5 and -2
        let mut bytes = vec![0x01, 0x02, 0x01, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01];
        bytes.extend_from_slice(&1.5f32.to_le_bytes());
        bytes.extend_from_slice(&(-2f32).to_le_bytes());
        let mut r = reader(&bytes);
        let t = r.read_tensor().unwrap();
        assert_eq!(t.dims(), [2, 1, 1, 1]);
        assert_eq!(t.data, vec![1.5, -2.0]);
        // empty tensor
        let empty = [0x01, 0x02, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00];
        assert!(reader(&empty).read_tensor().unwrap().data.is_empty());
        // truncated data names the tensor start
        let (offset, what) = parse_offset(reader(&bytes[..14]).read_tensor().unwrap_err());
        assert_eq!(offset, 0);
        assert!(what.contains("2x1x1x1"), "{what}");
        // wrong version
        let (_, what) = parse_offset(reader(&[0x01, 0x03]).read_tensor().unwrap_err());
        assert!(what.contains("version 3"), "{what}");
        // alias tensor
        let alias = [0x01, 0x01, 0x01, 0x01, 0x01, 0x20, 0x01, 0x01, 0x01, 0x01];
        let a = reader(&alias).read_alias_tensor().unwrap();
        assert_eq!((a.k, a.size()), (32, 32));
    }

    #[test]
    fn error_message_names_file_and_offset() {
        let err = Reader::new(&[0x01], "models/x.dat").read_i64().unwrap_err();
        let msg = err.context("reading the header").to_string();
        assert!(msg.contains("models/x.dat"), "{msg}");
        assert!(msg.contains("offset 0"), "{msg}");
        assert!(msg.contains("reading the header"), "{msg}");
    }
}
