//! One memory-mapped `.safetensors` file whose header has been validated by hand before any tensor is read.
//!
//! Layout (safetensors spec): 8-byte little-endian header length `n`, `n` bytes of JSON mapping each tensor name to
//! `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the byte after the header), optional
//! `"__metadata__"`, then the raw little-endian tensor data.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::WeightsError;

/// Element type of a stored tensor (the names are the safetensors header's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDtype {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

impl StoredDtype {
    /// Parses a header dtype string; `None` for anything this crate does not know.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "BOOL" => Self::Bool,
            "U8" => Self::U8,
            "I8" => Self::I8,
            "F8_E5M2" => Self::F8E5M2,
            "F8_E4M3" => Self::F8E4M3,
            "I16" => Self::I16,
            "U16" => Self::U16,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "I32" => Self::I32,
            "U32" => Self::U32,
            "F32" => Self::F32,
            "F64" => Self::F64,
            "I64" => Self::I64,
            "U64" => Self::U64,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            Self::Bool | Self::U8 | Self::I8 | Self::F8E5M2 | Self::F8E4M3 => 1,
            Self::I16 | Self::U16 | Self::F16 | Self::BF16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::F64 | Self::I64 | Self::U64 => 8,
        }
    }

    /// The header spelling, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::U8 => "U8",
            Self::I8 => "I8",
            Self::F8E5M2 => "F8_E5M2",
            Self::F8E4M3 => "F8_E4M3",
            Self::I16 => "I16",
            Self::U16 => "U16",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::I32 => "I32",
            Self::U32 => "U32",
            Self::F32 => "F32",
            Self::F64 => "F64",
            Self::I64 => "I64",
            Self::U64 => "U64",
        }
    }
}

/// Where one tensor lives inside the data section.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub dtype: StoredDtype,
    pub shape: Vec<usize>,
    /// Byte range relative to the start of the data section.
    pub begin: usize,
    pub end: usize,
}

/// A validated, memory-mapped safetensors file.
#[derive(Debug)]
pub struct SafetensorsFile {
    pub path: PathBuf,
    mmap: memmap2::Mmap,
    data_start: usize,
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: BTreeMap<String, String>,
}

impl SafetensorsFile {
    /// Maps `path` and validates its header: length, JSON, dtypes, shapes and offsets.
    pub fn open(path: &Path) -> Result<Self, WeightsError> {
        let io_error = |source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        // SAFETY: the map is read-only; the file must not be truncated by another process while we hold it, which
        // is the usual contract for model files (candle and the safetensors crate map them the same way).
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error)?;
        let (header, data_start) = parse_header(path, &mmap)?;
        let data_len = mmap.len() - data_start;
        let tensors = validate_tensors(path, &header, data_len)?;
        let metadata = read_metadata(&header);
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            mmap,
            data_start,
            tensors,
            metadata,
        })
    }

    /// The raw bytes of one tensor (bounds were checked at open).
    pub fn bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.mmap[self.data_start + info.begin..self.data_start + info.end]
    }

    /// Hands the mapped pages of one tensor back to the kernel once it has been copied out, so loading a model
    /// does not hold the file's pages and the f32 copies in memory at once (peak RSS ≈ one copy of the weights).
    #[cfg(unix)]
    fn release_pages(&self, info: &TensorInfo) {
        let offset = self.data_start + info.begin;
        // SAFETY: the map is a read-only file mapping that we never write through; after MADV_DONTNEED the pages
        // are read again from the file on the next access, so no data is lost and no reference is invalidated.
        let _ = unsafe {
            self.mmap.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                offset,
                info.end - info.begin,
            )
        };
    }

    #[cfg(not(unix))]
    fn release_pages(&self, _: &TensorInfo) {}

    /// Reads a floating-point tensor and widens/narrows it to f32.
    pub fn read_f32(&self, key: &str) -> Result<(Vec<f32>, Vec<usize>), WeightsError> {
        let result = self.read_f32_mapped(key);
        if let Some(info) = self.tensors.get(key) {
            self.release_pages(info);
        }
        result
    }

    fn read_f32_mapped(&self, key: &str) -> Result<(Vec<f32>, Vec<usize>), WeightsError> {
        let info = self
            .tensors
            .get(key)
            .ok_or_else(|| WeightsError::MissingTensor {
                path: self.path.clone(),
                key: key.to_string(),
                component: "file",
            })?;
        let bytes = self.bytes(info);
        let values = match info.dtype {
            StoredDtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            StoredDtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            StoredDtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            StoredDtype::F64 => bytes
                .chunks_exact(8)
                .map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    f64::from_le_bytes(a) as f32
                })
                .collect(),
            other => {
                return Err(WeightsError::UnsupportedDtype {
                    path: self.path.clone(),
                    key: key.to_string(),
                    dtype: other.name().to_string(),
                })
            }
        };
        Ok((values, info.shape.clone()))
    }
}

/// Splits the file into its JSON header (parsed) and the offset where data begins.
fn parse_header(
    path: &Path,
    bytes: &[u8],
) -> Result<(serde_json::Map<String, serde_json::Value>, usize), WeightsError> {
    let file_len = bytes.len() as u64;
    if bytes.len() < 8 {
        return Err(WeightsError::TooShort {
            path: path.to_path_buf(),
            file_len,
        });
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[..8]);
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > file_len - 8 {
        if looks_like_pickle(bytes) {
            return Err(WeightsError::PickleRefused {
                path: path.to_path_buf(),
            });
        }
        return Err(WeightsError::HeaderPastEnd {
            path: path.to_path_buf(),
            header_len,
            file_len,
        });
    }
    let data_start = 8 + header_len as usize;
    let bad_json = |message: String| WeightsError::BadHeader {
        path: path.to_path_buf(),
        message,
    };
    let text = std::str::from_utf8(&bytes[8..data_start])
        .map_err(|e| bad_json(format!("header is not UTF-8: {e}")))?;
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad_json(format!("header is not valid JSON: {e}")))?;
    match value {
        serde_json::Value::Object(map) => Ok((map, data_start)),
        _ => Err(bad_json("header JSON is not an object".to_string())),
    }
}

/// A torch zip archive (`PK\x03\x04`) or a bare pickle (protocol ≥ 2 starts with 0x80).
fn looks_like_pickle(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80)
}

/// Checks every tensor entry and returns them by name.
fn validate_tensors(
    path: &Path,
    header: &serde_json::Map<String, serde_json::Value>,
    data_len: usize,
) -> Result<BTreeMap<String, TensorInfo>, WeightsError> {
    let mut tensors = BTreeMap::new();
    for (key, entry) in header {
        if key == "__metadata__" {
            continue;
        }
        let info = parse_entry(path, key, entry)?;
        check_entry_size(path, key, &info, data_len)?;
        tensors.insert(key.clone(), info);
    }
    Ok(tensors)
}

/// Parses `{"dtype", "shape", "data_offsets"}` of one tensor.
fn parse_entry(
    path: &Path,
    key: &str,
    entry: &serde_json::Value,
) -> Result<TensorInfo, WeightsError> {
    let bad = |what: &str| WeightsError::BadHeader {
        path: path.to_path_buf(),
        message: format!("tensor `{key}`: {what}"),
    };
    let dtype_name = entry
        .get("dtype")
        .and_then(|d| d.as_str())
        .ok_or_else(|| bad("missing or non-string `dtype`"))?;
    let dtype = StoredDtype::parse(dtype_name).ok_or_else(|| WeightsError::UnknownDtype {
        path: path.to_path_buf(),
        key: key.to_string(),
        dtype: dtype_name.to_string(),
    })?;
    let shape =
        usize_list(entry.get("shape")).ok_or_else(|| bad("`shape` is not a list of integers"))?;
    let offsets = usize_list(entry.get("data_offsets"))
        .filter(|o| o.len() == 2)
        .ok_or_else(|| bad("`data_offsets` is not a pair of integers"))?;
    Ok(TensorInfo {
        dtype,
        shape,
        begin: offsets[0],
        end: offsets[1],
    })
}

/// Offsets must lie inside the data section and span exactly `numel × element size` bytes.
fn check_entry_size(
    path: &Path,
    key: &str,
    info: &TensorInfo,
    data_len: usize,
) -> Result<(), WeightsError> {
    if info.begin > info.end || info.end > data_len {
        return Err(WeightsError::BadOffsets {
            path: path.to_path_buf(),
            key: key.to_string(),
            begin: info.begin,
            end: info.end,
            data_len,
        });
    }
    let expected = info
        .shape
        .iter()
        .try_fold(info.dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d));
    if expected != Some(info.end - info.begin) {
        return Err(WeightsError::SizeMismatch {
            path: path.to_path_buf(),
            key: key.to_string(),
            dtype: info.dtype.name().to_string(),
            shape: info.shape.clone(),
            expected_bytes: expected,
            actual_bytes: info.end - info.begin,
        });
    }
    Ok(())
}

/// A JSON array of non-negative integers.
fn usize_list(value: Option<&serde_json::Value>) -> Option<Vec<usize>> {
    value?
        .as_array()?
        .iter()
        .map(|v| v.as_u64().and_then(|n| usize::try_from(n).ok()))
        .collect()
}

/// `__metadata__` string pairs (non-string values are skipped).
fn read_metadata(header: &serde_json::Map<String, serde_json::Value>) -> BTreeMap<String, String> {
    header
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}
