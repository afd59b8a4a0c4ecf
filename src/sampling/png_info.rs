//! A1111 1.10 infotext (the PNG `parameters` text), pixel conversion and atomic PNG writing.
//!
//! `to_infotext` follows `modules/processing.py` `create_infotext` and `modules/infotext_utils.py` `quote`;
//! `parse_infotext` follows `infotext_utils.parse_generation_parameters`. Images are converted as
//! `process_images_inner` does (`trunc(255 * clamp((x + 1) / 2, 0, 1))` in f32) and saved like PIL's
//! `PngInfo.add_text` (tEXt when the text is Latin-1, iTXt otherwise).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use candle_core::{DType, Tensor};
use image::RgbImage;
use regex::Regex;

use super::rng::RngSource;
use super::SamplingError;

/// The generation parameters A1111 writes into an image's infotext.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationParams {
    pub prompt: String,
    pub negative: String,
    pub steps: usize,
    /// A1111 sampler label without the schedule suffix, e.g. "DPM++ 2M" (see `SamplerName::infotext_sampler`).
    pub sampler: String,
    /// A1111 schedule label, e.g. "Karras" or "Automatic" (see `SamplerName::infotext_schedule`); empty: omitted.
    pub schedule_type: String,
    pub cfg: f64,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub model_hash: Option<String>,
    pub model_name: Option<String>,
    /// Written only when > 1 ("Clip skip: 2").
    pub clip_skip: u32,
    /// A1111 "ENSD" field (eta noise seed delta): written when it is not 0 and the sampler uses it (see
    /// `SamplerName::infotext_ensd`).
    pub ensd: Option<u64>,
    /// A1111 "RNG" field: "CPU" or "NV"; absent for the default source, "GPU" (see `RngSource::infotext_value`).
    pub rng: Option<String>,
    /// (alias, short hash) of each LoRA; written as `Lora hashes: "alias: hash, alias2: hash2"`.
    pub lora_hashes: Vec<(String, String)>,
    /// Other `extra_generation_params`, in order, written after "Lora hashes".
    pub extra: Vec<(String, String)>,
    /// "Version: v1.10.1" is written last when set.
    pub version: Option<String>,
}

impl GenerationParams {
    /// A1111 1.10 `create_infotext`: prompt, optional "Negative prompt: …" line, then the parameter line.
    pub fn to_infotext(&self) -> String {
        let parameters = self
            .parameter_pairs()
            .iter()
            .map(|(key, value)| {
                if key == value {
                    key.clone()
                } else {
                    format!("{key}: {}", quote(value))
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let negative = if self.negative.is_empty() {
            String::new()
        } else {
            format!("\nNegative prompt: {}", self.negative)
        };
        python_strip(&format!("{}{negative}\n{parameters}", self.prompt)).to_string()
    }

    /// The RNG source the image was made with: its `RNG` field, or "GPU" when there is none.
    pub fn rng_source(&self) -> Result<RngSource, SamplingError> {
        RngSource::from_infotext(self.rng.as_deref())
    }

    /// The eta noise seed delta the image was made with: its `ENSD` field, or 0 when there is none.
    pub fn eta_noise_seed_delta(&self) -> u64 {
        self.ensd.unwrap_or(0)
    }

    fn parameter_pairs(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut push = |key: &str, value: String| pairs.push((key.to_string(), value));
        push("Steps", self.steps.to_string());
        push("Sampler", self.sampler.clone());
        if !self.schedule_type.is_empty() {
            push("Schedule type", self.schedule_type.clone());
        }
        push("CFG scale", format_number(self.cfg));
        push("Seed", self.seed.to_string());
        push("Size", format!("{}x{}", self.width, self.height));
        if let Some(hash) = &self.model_hash {
            push("Model hash", hash.clone());
        }
        if let Some(name) = &self.model_name {
            push("Model", name.clone());
        }
        if self.clip_skip > 1 {
            push("Clip skip", self.clip_skip.to_string());
        }
        if let Some(ensd) = self.ensd {
            push("ENSD", ensd.to_string());
        }
        if let Some(rng) = &self.rng {
            push("RNG", rng.clone());
        }
        if !self.lora_hashes.is_empty() {
            push("Lora hashes", format_lora_hashes(&self.lora_hashes));
        }
        for (key, value) in &self.extra {
            push(key, value.clone());
        }
        if let Some(version) = &self.version {
            push("Version", version.clone());
        }
        pairs
    }
}

/// A1111's Lora extension: `alias: hash` joined by ", ", with ':' and ',' removed from aliases.
fn format_lora_hashes(hashes: &[(String, String)]) -> String {
    hashes
        .iter()
        .map(|(alias, hash)| format!("{}: {hash}", alias.replace([':', ','], "")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Python `str(value)` for a UI number: integral values without ".0" (gradio sends 7, not 7.0), else repr.
fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// `infotext_utils.quote`: JSON-quote values containing ',', '\n' or ':' (`json.dumps(ensure_ascii=False)`).
pub fn quote(value: &str) -> String {
    if !value.contains([',', '\n', ':']) {
        return value.to_string();
    }
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
}

/// `infotext_utils.unquote`: JSON-decode a value wrapped in double quotes, else keep it.
pub fn unquote(value: &str) -> String {
    if value.len() < 2 || !value.starts_with('"') || !value.ends_with('"') {
        return value.to_string();
    }
    serde_json::from_str::<String>(value).unwrap_or_else(|_| value.to_string())
}

/// Python `str.strip()` (whitespace per `str.isspace`).
fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

fn param_regex() -> &'static Regex {
    static PARAM: OnceLock<Regex> = OnceLock::new();
    PARAM.get_or_init(|| {
        Regex::new(r#"\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)"#)
            .unwrap_or_else(|_| unreachable!("constant regex"))
    })
}

/// `parse_generation_parameters`: the last line holds the parameters when it has at least 3 `key: value` pairs.
pub fn parse_infotext(text: &str) -> Result<GenerationParams, SamplingError> {
    let stripped = python_strip(text);
    let mut lines: Vec<&str> = stripped.split('\n').collect();
    let mut last_line = lines.pop().unwrap_or("");
    if param_regex().captures_iter(last_line).count() < 3 {
        lines.push(last_line);
        last_line = "";
    }
    let (prompt, negative) = split_prompt_lines(&lines);
    let mut fields: Vec<(String, String)> = param_regex()
        .captures_iter(last_line)
        .map(|c| (c[1].to_string(), unquote(&c[2])))
        .collect();
    let mut take = |key: &str| -> Option<String> {
        let index = fields.iter().position(|(k, _)| k == key)?;
        Some(fields.remove(index).1)
    };
    let required = |key: &str, value: Option<String>| {
        value.ok_or_else(|| SamplingError::BadInfotext {
            reason: format!("no {key:?} field"),
        })
    };
    let steps = required("Steps", take("Steps"))?;
    let sampler = required("Sampler", take("Sampler"))?;
    let cfg = required("CFG scale", take("CFG scale"))?;
    let seed = required("Seed", take("Seed"))?;
    let size = required("Size", take("Size"))?;
    let (width, height) = parse_size(&size)?;
    let clip_skip = take("Clip skip");
    let lora_hashes = take("Lora hashes").map(|v| parse_lora_hashes(&v));
    Ok(GenerationParams {
        prompt,
        negative,
        steps: parse_number("Steps", &steps)?,
        sampler,
        schedule_type: take("Schedule type").unwrap_or_default(),
        cfg: parse_number("CFG scale", &cfg)?,
        seed: parse_number("Seed", &seed)?,
        width,
        height,
        model_hash: take("Model hash"),
        model_name: take("Model"),
        clip_skip: clip_skip.map_or(Ok(1), |v| parse_number("Clip skip", &v))?,
        ensd: take("ENSD").map(|v| parse_number("ENSD", &v)).transpose()?,
        rng: take("RNG"),
        lora_hashes: lora_hashes.unwrap_or_default(),
        version: take("Version"),
        extra: fields,
    })
}

fn split_prompt_lines(lines: &[&str]) -> (String, String) {
    let mut prompt: Vec<&str> = Vec::new();
    let mut negative: Vec<&str> = Vec::new();
    let mut in_negative = false;
    for line in lines {
        let mut line = python_strip(line);
        if let Some(rest) = line.strip_prefix("Negative prompt:") {
            in_negative = true;
            line = python_strip(rest);
        }
        if in_negative {
            negative.push(line);
        } else {
            prompt.push(line);
        }
    }
    (prompt.join("\n"), negative.join("\n"))
}

fn parse_number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, SamplingError> {
    value
        .trim()
        .parse()
        .map_err(|_| SamplingError::BadInfotext {
            reason: format!("{key} {value:?} is not a valid number"),
        })
}

fn parse_size(value: &str) -> Result<(u32, u32), SamplingError> {
    let bad = || SamplingError::BadInfotext {
        reason: format!("Size {value:?} is not WIDTHxHEIGHT"),
    };
    let (width, height) = value.split_once('x').ok_or_else(bad)?;
    Ok((
        width.parse().map_err(|_| bad())?,
        height.parse().map_err(|_| bad())?,
    ))
}

fn parse_lora_hashes(value: &str) -> Vec<(String, String)> {
    value
        .split(", ")
        .filter_map(|item| item.split_once(": "))
        .map(|(alias, hash)| (alias.to_string(), hash.to_string()))
        .collect()
}

/// Decoded images `[batch, 3, height, width]` in [-1, 1] to 8-bit RGB, as A1111:
/// `trunc(255 * clamp((x + 1) / 2, 0, 1))` in f32.
pub fn latents_to_rgb8(image: &Tensor) -> Result<Vec<RgbImage>, SamplingError> {
    let bad_shape = || SamplingError::BadImageShape {
        shape: image.dims().to_vec(),
    };
    let (batch, channels, height, width) = image.dims4().map_err(|_| bad_shape())?;
    if channels != 3 {
        return Err(bad_shape());
    }
    let hwc = image
        .to_dtype(DType::F32)?
        .permute((0, 2, 3, 1))?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let pixels_per_image = height * width * 3;
    (0..batch)
        .map(|b| {
            let bytes = hwc[b * pixels_per_image..(b + 1) * pixels_per_image]
                .iter()
                .map(|x| to_u8(*x))
                .collect();
            RgbImage::from_raw(width as u32, height as u32, bytes).ok_or_else(bad_shape)
        })
        .collect()
}

fn to_u8(x: f32) -> u8 {
    let unit = ((x + 1.0) / 2.0).clamp(0.0, 1.0);
    (255.0f32 * unit) as u8
}

/// Write `image` as PNG with the infotext in a `parameters` text chunk (tEXt if Latin-1, else iTXt, like PIL),
/// through a temporary file in the same folder renamed into place. Refuses an existing file unless `overwrite`.
pub fn write_png_atomic(
    path: &Path,
    image: &RgbImage,
    infotext: &str,
    overwrite: bool,
) -> Result<(), SamplingError> {
    if !overwrite && path.exists() {
        return Err(SamplingError::FileExists {
            path: path.to_path_buf(),
        });
    }
    let temp = temp_path(path);
    let result = write_png(&temp, image, infotext).and_then(|_| publish(&temp, path, overwrite));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp_name = format!(".{name}.{}-{unique}.tmp", std::process::id());
    path.with_file_name(temp_name)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SamplingError + '_ {
    move |source| SamplingError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_png(path: &Path, image: &RgbImage, infotext: &str) -> Result<(), SamplingError> {
    let bytes = encode_png(image, infotext).map_err(|source| SamplingError::PngEncode {
        path: path.to_path_buf(),
        source,
    })?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(&bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// PNG bytes with the infotext in a `parameters` chunk ahead of the image data.
pub fn encode_png(image: &RgbImage, infotext: &str) -> Result<Vec<u8>, png::EncodingError> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, image.width(), image.height());
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    if infotext.chars().all(|c| (c as u32) < 256) {
        encoder.add_text_chunk("parameters".to_string(), infotext.to_string())?;
    } else {
        encoder.add_itxt_chunk("parameters".to_string(), infotext.to_string())?;
    }
    let mut writer = encoder.write_header()?;
    writer.write_image_data(image.as_raw())?;
    writer.finish()?;
    Ok(bytes)
}

/// Move the finished temp file to `path`: rename when overwriting, else a no-clobber hard link (falling back to
/// check-then-rename on filesystems without hard links).
fn publish(temp: &Path, path: &Path, overwrite: bool) -> Result<(), SamplingError> {
    if overwrite {
        return fs::rename(temp, path).map_err(io_error(path));
    }
    match fs::hard_link(temp, path) {
        Ok(()) => fs::remove_file(temp).map_err(io_error(temp)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(SamplingError::FileExists {
            path: path.to_path_buf(),
        }),
        Err(_) if path.exists() => Err(SamplingError::FileExists {
            path: path.to_path_buf(),
        }),
        Err(_) => fs::rename(temp, path).map_err(io_error(path)),
    }
}
