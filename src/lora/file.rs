//! [`LoraFile`]: one adapter `.safetensors` file read into per-module f32 tensors, checked for NaN/Inf, with its
//! metadata.
//!
//! The container is validated by `weights::safetensors_file` (header length, JSON, dtypes, offsets, sizes), so a
//! truncated or corrupt file fails with the same messages a checkpoint would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::keys::{split_key, Role};
use super::{compute_error, LoraError};
use crate::weights::safetensors_file::{SafetensorsFile, StoredDtype};

/// Extensions of pickle-based files, refused because unpickling can execute code.
const PICKLE_EXTENSIONS: [&str; 4] = ["pt", "ckpt", "pth", "bin"];

/// A factor of a LoKr update: a full matrix or a low-rank product `a @ b`.
#[derive(Debug, Clone)]
pub enum KronFactor {
    Full(Tensor),
    Product {
        a: Tensor,
        b: Tensor,
    },
    /// Tucker form (conv): `t [r, r, kh, kw]`, `a [r, out]`, `b [r, in]`.
    Tucker {
        t: Tensor,
        a: Tensor,
        b: Tensor,
    },
}

/// The tensors of one module, by algorithm.
#[derive(Debug, Clone)]
pub enum ModuleWeights {
    /// kohya LoRA / LoCon / PEFT: `down [r, in(, kh, kw)]`, `up [out, r(, 1, 1)]`, optional Tucker `mid`.
    Lora {
        down: Tensor,
        up: Tensor,
        mid: Option<Tensor>,
    },
    /// LyCORIS LoHa: `(w1_a @ w1_b) ⊙ (w2_a @ w2_b)`, or the Tucker form with `t1`, `t2`.
    Loha {
        w1_a: Tensor,
        w1_b: Tensor,
        w2_a: Tensor,
        w2_b: Tensor,
        t1: Option<Tensor>,
        t2: Option<Tensor>,
    },
    /// LyCORIS LoKr: `kron(w1, w2)`.
    Lokr { w1: KronFactor, w2: KronFactor },
}

/// One adapted module of a file.
#[derive(Debug, Clone)]
pub struct LoraModule {
    /// Module name as the file writes it (`lora_unet_…`, `unet.down_blocks.…`).
    pub key: String,
    pub weights: ModuleWeights,
    pub alpha: Option<f32>,
    /// Explicit `.scale` (overrides alpha / rank, A1111 `calc_scale`).
    pub explicit_scale: Option<f32>,
    /// DoRA magnitude: `dora_scale` (`[1, in, …]` or `[out, 1, …]`) or PEFT `lora_magnitude_vector` (`[out]`).
    pub dora_scale: Option<Tensor>,
    /// Stored dtype of the module's main tensors (for `inspect`).
    pub dtype: &'static str,
}

/// A LoRA / LyCORIS / PEFT adapter file.
#[derive(Debug)]
pub struct LoraFile {
    pub path: PathBuf,
    /// File stem: A1111's network name (`<lora:STEM:w>`).
    pub name: String,
    /// `__metadata__` (kohya `ss_*`, `sshs_*`, `modelspec.*`, …).
    pub metadata: BTreeMap<String, String>,
    pub modules: BTreeMap<String, LoraModule>,
    /// Keys this crate does not understand (other LyCORIS types, bundled embeddings, …).
    pub unknown_keys: Vec<String>,
    /// A1111's full hash: `sshs_model_hash` from the metadata, else the SHA-256 of the tensor data (see `hash`).
    pub hash: String,
}

impl LoraFile {
    /// Opens and validates an adapter file; every tensor is read, converted to f32 and checked for NaN/Inf.
    pub fn open(path: &Path) -> Result<LoraFile, LoraError> {
        refuse_pickle(path)?;
        let file = SafetensorsFile::open(path)?;
        let mut grouped: BTreeMap<String, BTreeMap<Role, (Tensor, StoredDtype)>> = BTreeMap::new();
        let mut unknown_keys = Vec::new();
        for (key, info) in &file.tensors {
            let Some((module, role)) = split_key(key) else {
                unknown_keys.push(key.clone());
                continue;
            };
            let tensor = read_checked(&file, key)?;
            grouped
                .entry(module)
                .or_default()
                .insert(role, (tensor, info.dtype));
        }
        if grouped.is_empty() {
            return Err(not_a_lora(path, &file, &unknown_keys));
        }
        let modules = grouped
            .into_iter()
            .map(|(module, tensors)| {
                let built = build_module(path, &module, tensors)?;
                Ok((module, built))
            })
            .collect::<Result<BTreeMap<_, _>, LoraError>>()?;
        let hash = match file
            .metadata
            .get("sshs_model_hash")
            .filter(|h| !h.is_empty())
        {
            Some(hash) => hash.clone(),
            None => super::hash::addnet_hash(path)?,
        };
        Ok(LoraFile {
            hash,
            path: path.to_path_buf(),
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            metadata: file.metadata.clone(),
            modules,
            unknown_keys,
        })
    }
}

fn refuse_pickle(path: &Path) -> Result<(), LoraError> {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if PICKLE_EXTENSIONS.contains(&extension.as_str()) {
        return Err(LoraError::Pickle {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Reads one tensor as f32 and refuses NaN / ±Inf.
fn read_checked(file: &SafetensorsFile, key: &str) -> Result<Tensor, LoraError> {
    let (values, shape) = file.read_f32(key).map_err(|error| match error {
        crate::weights::WeightsError::UnsupportedDtype { path, key, dtype } => {
            LoraError::BadDtype { path, key, dtype }
        }
        other => LoraError::from(other),
    })?;
    let nan = values.iter().filter(|v| v.is_nan()).count();
    let inf = values.iter().filter(|v| v.is_infinite()).count();
    if nan + inf > 0 {
        return Err(LoraError::NonFinite {
            path: file.path.clone(),
            key: key.to_string(),
            nan,
            inf,
            count: values.len(),
        });
    }
    Tensor::from_vec(values, shape, &Device::Cpu).map_err(compute_error(key))
}

/// What a file without any adapter key seems to be.
fn not_a_lora(path: &Path, file: &SafetensorsFile, unknown: &[String]) -> LoraError {
    let has = |prefix: &str| file.tensors.keys().any(|k| k.starts_with(prefix));
    let detail = if file.tensors.is_empty() {
        "the file contains no tensors".to_string()
    } else if has("model.diffusion_model.") || has("first_stage_model.") {
        "it is a full Stable Diffusion checkpoint; pass it as --model".to_string()
    } else {
        let sample: Vec<&str> = unknown.iter().take(3).map(String::as_str).collect();
        format!(
            "none of its {} keys is a LoRA/LoHa/LoKr tensor (e.g. {}); IA3, OFT, GLoRA and full-diff LyCORIS files are not supported",
            unknown.len(),
            sample.join(", ")
        )
    };
    LoraError::NotALora {
        path: path.to_path_buf(),
        detail,
    }
}

/// Assembles one module from its tensors.
fn build_module(
    path: &Path,
    module: &str,
    mut tensors: BTreeMap<Role, (Tensor, StoredDtype)>,
) -> Result<LoraModule, LoraError> {
    let bad = |detail: String| LoraError::BadModule {
        path: path.to_path_buf(),
        module: module.to_string(),
        detail,
    };
    let scalar = |t: &Tensor| -> Result<f32, LoraError> {
        let values = t
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(compute_error(module))?;
        match values.as_slice() {
            [v] => Ok(*v),
            _ => Err(bad(format!(
                "scalar tensor has {} values, expected 1",
                values.len()
            ))),
        }
    };
    let alpha = match tensors.remove(&Role::Alpha) {
        Some((t, _)) => Some(scalar(&t)?),
        None => None,
    };
    let explicit_scale = match tensors.remove(&Role::Scale) {
        Some((t, _)) => Some(scalar(&t)?),
        None => None,
    };
    let dora_scale = tensors
        .remove(&Role::DoraScale)
        .or_else(|| tensors.remove(&Role::Magnitude))
        .map(|(t, _)| t);
    let dtype = tensors.values().next().map_or("?", |(_, d)| d.name());
    let present: Vec<Role> = tensors.keys().copied().collect();
    let mut take = |role: Role| tensors.remove(&role).map(|(t, _)| t);
    let weights = if present.contains(&Role::Down) || present.contains(&Role::Up) {
        let (Some(down), Some(up)) = (take(Role::Down), take(Role::Up)) else {
            return Err(bad(
                "has only one of the down/up (lora_A/lora_B) matrices".into()
            ));
        };
        ModuleWeights::Lora {
            down,
            up,
            mid: take(Role::Mid),
        }
    } else if present.iter().any(|r| format!("{r:?}").starts_with("Hada")) {
        match (
            take(Role::HadaW1A),
            take(Role::HadaW1B),
            take(Role::HadaW2A),
            take(Role::HadaW2B),
        ) {
            (Some(w1_a), Some(w1_b), Some(w2_a), Some(w2_b)) => ModuleWeights::Loha {
                w1_a,
                w1_b,
                w2_a,
                w2_b,
                t1: take(Role::HadaT1),
                t2: take(Role::HadaT2),
            },
            _ => {
                return Err(bad(
                    "LoHa module needs hada_w1_a, hada_w1_b, hada_w2_a and hada_w2_b".into(),
                ))
            }
        }
    } else if present.iter().any(|r| format!("{r:?}").starts_with("Lokr")) {
        let w1 = kron_factor(
            take(Role::LokrW1),
            take(Role::LokrW1A),
            take(Role::LokrW1B),
            None,
        )
        .ok_or_else(|| bad("LoKr module needs lokr_w1 or lokr_w1_a + lokr_w1_b".into()))?;
        let w2 = kron_factor(
            take(Role::LokrW2),
            take(Role::LokrW2A),
            take(Role::LokrW2B),
            take(Role::LokrT2),
        )
        .ok_or_else(|| bad("LoKr module needs lokr_w2 or lokr_w2_a + lokr_w2_b".into()))?;
        ModuleWeights::Lokr { w1, w2 }
    } else {
        return Err(bad(format!(
            "only {:?} without any weight matrices",
            present_names(alpha, explicit_scale, &present)
        )));
    };
    Ok(LoraModule {
        key: module.to_string(),
        weights,
        alpha,
        explicit_scale,
        dora_scale,
        dtype,
    })
}

fn present_names(alpha: Option<f32>, scale: Option<f32>, roles: &[Role]) -> Vec<String> {
    let mut names: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
    if alpha.is_some() {
        names.push("alpha".into());
    }
    if scale.is_some() {
        names.push("scale".into());
    }
    names
}

fn kron_factor(
    full: Option<Tensor>,
    a: Option<Tensor>,
    b: Option<Tensor>,
    t: Option<Tensor>,
) -> Option<KronFactor> {
    match (full, a, b, t) {
        (Some(full), _, _, _) => Some(KronFactor::Full(full)),
        (None, Some(a), Some(b), Some(t)) => Some(KronFactor::Tucker { t, a, b }),
        (None, Some(a), Some(b), None) => Some(KronFactor::Product { a, b }),
        _ => None,
    }
}
