//! A1111's checkpoint short hash: the first 10 hex digits of the SHA-256 of the whole file.
//!
//! A1111 1.10 `modules/sd_models.py` `CheckpointInfo`: `self.sha256 = hashes.sha256_from_cache(filename, …)`,
//! `self.shorthash = self.sha256[0:10]`; `modules/hashes.py` `calculate_sha256` hashes the whole file in 1 MiB
//! blocks. The infotext writes it as `Model hash: <shorthash>`. For a diffusers folder (which A1111 cannot load)
//! we hash `unet/diffusion_pytorch_model[.fp16].safetensors`.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::WeightsError;

/// Lower-case hex SHA-256 of a whole file, read in 1 MiB blocks.
pub fn sha256_hex(path: &Path) -> Result<String, WeightsError> {
    let io_error = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    sha256_hex_of_reader(file).map_err(io_error)
}

/// Lower-case hex SHA-256 of everything `reader` yields, read in 1 MiB blocks.
pub fn sha256_hex_of_reader(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut block)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A1111's short model hash of a checkpoint file or diffusers folder (10 hex digits).
pub fn model_hash(path: &Path) -> Result<String, WeightsError> {
    let file = if path.is_dir() {
        super::checkpoint::diffusers_file(path, "unet", "diffusion_pytorch_model")?
    } else {
        path.to_path_buf()
    };
    let mut full = sha256_hex(&file)?;
    full.truncate(10);
    Ok(full)
}
