//! A1111's LoRA hash for `Lora hashes: "name: hash"`.
//!
//! A1111 1.10 `extensions-builtin/Lora/network.py` `NetworkOnDisk`: `set_hash(metadata.get("sshs_model_hash") or
//! hashes.sha256_from_cache(..., use_addnet_hash=True) or "")`, `shorthash = hash[0:12]`; `modules/hashes.py`
//! `addnet_hash_safetensors` hashes the file from byte `8 + header_len` to the end (the tensor data only, so edits
//! of user metadata do not change it). kohya writes the same value as `sshs_model_hash` when it saves.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::file::LoraFile;
use super::LoraError;

/// Digits of the short hash.
const SHORT_HASH_DIGITS: usize = 12;

/// Lower-case hex SHA-256 of the tensor data of a safetensors file (kohya / AddNet "model hash").
pub fn addnet_hash(path: &Path) -> Result<String, LoraError> {
    let io_error = |source| LoraError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let mut header_len = [0u8; 8];
    file.read_exact(&mut header_len).map_err(io_error)?;
    let offset = 8u64.saturating_add(u64::from_le_bytes(header_len));
    file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
    crate::weights::sha256_hex_of_reader(file).map_err(io_error)
}

impl LoraFile {
    /// A1111's short hash: the first 12 hex digits of `sshs_model_hash`, else of [`addnet_hash`] (both read when
    /// the file is opened).
    pub fn short_hash(&self) -> Result<String, LoraError> {
        Ok(self.hash.chars().take(SHORT_HASH_DIGITS).collect())
    }
}
