//! Writing a kohya LoRA `.safetensors` file: kohya's key names, the save dtype, `__metadata__`, and the two
//! hashes kohya adds (`networks/lora.py` `save_weights` → `library/train_util.py`
//! `precalculate_safetensors_hashes`):
//! * the file is serialized once more in memory with only the `ss_*` metadata (user-editable keys left out so
//!   that editing them does not change the hashes);
//! * `sshs_model_hash` = SHA-256 (hex) of that serialization from byte `8 + header length` to the end: the
//!   tensor data, the same bytes as in the written file (`addnet_hash_safetensors`);
//! * `sshs_legacy_hash` = the first 8 hex digits of the SHA-256 of bytes `0x100000..0x110000` of that
//!   serialization (`addnet_hash_legacy`; fewer bytes, or none, when it is shorter).
//!
//! The layout is the `safetensors` crate's, which Python's `safetensors` is built on: tensors sorted by dtype
//! then name, header JSON padded with spaces to a multiple of 8. The file goes to a temporary name in the
//! target folder and is renamed into place.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, View};
use sha2::{Digest, Sha256};

/// Errors of saving; each names the file or the tensor.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("tensor `{name}`: not a kohya LoRA key (lora_unet_…/lora_te_… ending in .lora_down.weight, .lora_up.weight or .alpha)")]
    BadKey { name: String },
    #[error("tensor `{name}`: shape {shape:?} holds {expected} values, {found} given")]
    BadShape {
        name: String,
        shape: Vec<usize>,
        expected: usize,
        found: usize,
    },
    #[error("tensor `{name}` holds NaN or infinite values (the run diverged); not saved")]
    NonFinite { name: String },
    #[error("no tensors to save")]
    Empty,
    #[error("{path} exists (not overwritten)")]
    Exists { path: PathBuf },
    #[error("cannot serialize {path}: {reason}")]
    Serialize { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The dtype tensors are stored in (kohya's `save_precision`: `float`, `fp16`, `bf16`; none keeps f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveDtype {
    F32,
    F16,
    BF16,
}

impl SaveDtype {
    /// From kohya's `save_precision` (`None`: f32, the dtype loraeval trains in).
    pub fn from_save_precision(precision: Option<&str>) -> SaveDtype {
        match precision {
            Some("fp16") => SaveDtype::F16,
            Some("bf16") => SaveDtype::BF16,
            _ => SaveDtype::F32,
        }
    }

    fn encode(self, values: &[f32]) -> (Dtype, Vec<u8>) {
        match self {
            SaveDtype::F32 => (
                Dtype::F32,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            SaveDtype::F16 => (
                Dtype::F16,
                values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            SaveDtype::BF16 => (
                Dtype::BF16,
                values
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
        }
    }
}

/// One tensor to save, in f32 (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraTensor {
    /// kohya key, e.g. `lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight`.
    pub name: String,
    /// `[]` for `.alpha`.
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// A tensor in its save dtype (the `safetensors` view).
struct Encoded {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Encoded {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// The two hashes kohya stores in the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KohyaHashes {
    /// `sshs_model_hash`: full hex SHA-256 of the tensor data.
    pub model_hash: String,
    /// `sshs_legacy_hash`: 8 hex digits.
    pub legacy_hash: String,
}

/// What [`save_lora`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedLora {
    pub path: PathBuf,
    pub hashes: KohyaHashes,
}

/// True for kohya LoRA key names.
pub fn is_kohya_lora_key(name: &str) -> bool {
    let prefix = name.starts_with("lora_unet_") || name.starts_with("lora_te_");
    let suffix = [".lora_down.weight", ".lora_up.weight", ".alpha"]
        .iter()
        .any(|s| name.ends_with(s));
    prefix && suffix
}

/// Writes `tensors` and `metadata` (plus `sshs_model_hash` and `sshs_legacy_hash`) to `path`, atomically;
/// an existing file is an error unless `overwrite`.
pub fn save_lora(
    path: &Path,
    tensors: &[LoraTensor],
    dtype: SaveDtype,
    metadata: &[(String, String)],
    overwrite: bool,
) -> Result<SavedLora, SaveError> {
    if !overwrite && path.exists() {
        return Err(SaveError::Exists {
            path: path.to_path_buf(),
        });
    }
    let encoded = encode_all(tensors, dtype)?;
    let hashes = kohya_hashes_of(&encoded, metadata, path)?;
    let mut full: HashMap<String, String> = metadata.iter().cloned().collect();
    full.insert("sshs_model_hash".into(), hashes.model_hash.clone());
    full.insert("sshs_legacy_hash".into(), hashes.legacy_hash.clone());
    let bytes = serialize(&encoded, full, path)?;
    write_atomic(path, &bytes)?;
    Ok(SavedLora {
        path: path.to_path_buf(),
        hashes,
    })
}

/// kohya's hashes of these tensors and metadata (only the `ss_*` keys count), without writing anything.
pub fn kohya_hashes(
    tensors: &[LoraTensor],
    dtype: SaveDtype,
    metadata: &[(String, String)],
) -> Result<KohyaHashes, SaveError> {
    let encoded = encode_all(tensors, dtype)?;
    kohya_hashes_of(&encoded, metadata, Path::new("(memory)"))
}

fn encode_all(
    tensors: &[LoraTensor],
    dtype: SaveDtype,
) -> Result<Vec<(String, Encoded)>, SaveError> {
    if tensors.is_empty() {
        return Err(SaveError::Empty);
    }
    tensors.iter().map(|t| encode_one(t, dtype)).collect()
}

fn encode_one(t: &LoraTensor, dtype: SaveDtype) -> Result<(String, Encoded), SaveError> {
    if !is_kohya_lora_key(&t.name) {
        return Err(SaveError::BadKey {
            name: t.name.clone(),
        });
    }
    let expected: usize = t.shape.iter().product();
    if expected != t.values.len() {
        return Err(SaveError::BadShape {
            name: t.name.clone(),
            shape: t.shape.clone(),
            expected,
            found: t.values.len(),
        });
    }
    if t.values.iter().any(|v| !v.is_finite()) {
        return Err(SaveError::NonFinite {
            name: t.name.clone(),
        });
    }
    let (dtype, bytes) = dtype.encode(&t.values);
    let encoded = Encoded {
        dtype,
        shape: t.shape.clone(),
        bytes,
    };
    Ok((t.name.clone(), encoded))
}

fn serialize(
    encoded: &[(String, Encoded)],
    metadata: HashMap<String, String>,
    path: &Path,
) -> Result<Vec<u8>, SaveError> {
    let views = encoded.iter().map(|(name, e)| (name.as_str(), e));
    safetensors::serialize(views, Some(metadata)).map_err(|e| SaveError::Serialize {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn kohya_hashes_of(
    encoded: &[(String, Encoded)],
    metadata: &[(String, String)],
    path: &Path,
) -> Result<KohyaHashes, SaveError> {
    let training_only: HashMap<String, String> = metadata
        .iter()
        .filter(|(k, _)| k.starts_with("ss_"))
        .cloned()
        .collect();
    let bytes = serialize(encoded, training_only, path)?;
    Ok(hashes_of_serialized(&bytes))
}

/// kohya's `addnet_hash_safetensors` and `addnet_hash_legacy` of a serialized safetensors file.
pub fn hashes_of_serialized(bytes: &[u8]) -> KohyaHashes {
    let header_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        .unwrap_or(0);
    let data_start = usize::try_from(header_len.saturating_add(8))
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let legacy_start = 0x100000.min(bytes.len());
    let legacy_end = 0x110000.min(bytes.len());
    KohyaHashes {
        model_hash: hex(&Sha256::digest(&bytes[data_start..])),
        legacy_hash: hex(&Sha256::digest(&bytes[legacy_start..legacy_end]))[..8].to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes to `.<name>.<pid>.tmp` beside `path`, syncs, renames into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&temp);
        SaveError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        assert!(is_kohya_lora_key(
            "lora_unet_mid_block_attentions_0_proj_in.alpha"
        ));
        assert!(is_kohya_lora_key(
            "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"
        ));
        assert!(!is_kohya_lora_key("unet.mid.lora_A.weight"));
        assert!(!is_kohya_lora_key("lora_unet_x.weight"));
    }

    #[test]
    fn hashes_of_a_short_buffer() {
        // Header length 8: data = bytes 16.. ; shorter than 1 MiB, so the legacy hash is sha256("").
        let mut bytes = 8u64.to_le_bytes().to_vec();
        bytes.extend(b"{}      ");
        bytes.extend([1, 2, 3]);
        let h = hashes_of_serialized(&bytes);
        assert_eq!(h.model_hash, hex(&Sha256::digest([1u8, 2, 3])));
        assert_eq!(h.legacy_hash, "e3b0c442");
    }
}
