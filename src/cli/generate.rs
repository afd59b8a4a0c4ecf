//! `loraeval generate`: txt2img renders with AUTOMATIC1111 semantics, written as PNGs with infotext.

use super::progress::step_bar;
use crate::lora::library::resolve_prompt_tags;
use crate::lora::{parse_lora_spec, LoraFile, LoraLibrary, LoraMode, LoraUse};
use crate::sampling::png_info::write_png_atomic;
use crate::sampling::rng::RngSource;
use crate::sampling::samplers::SamplerName;
use crate::sampling::txt2img::{StableDiffusion, Txt2ImgRequest};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of `loraeval generate` (defaults as AUTOMATIC1111 1.10).
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// SD1.5 checkpoint: a single `.safetensors` file (original layout) or a diffusers folder.
    #[arg(long)]
    model: PathBuf,
    /// Prompt, in AUTOMATIC1111 syntax: (word), (word:1.3), [word], BREAK.
    #[arg(long)]
    prompt: String,
    /// Negative prompt.
    #[arg(long, default_value = "")]
    negative: String,
    /// Seed of the first image; -1 or absent picks a random seed, which is printed.
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<i64>,
    /// Sampling steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 7.0)]
    cfg: f64,
    /// Sampler: euler, euler_a, dpmpp_2m, dpmpp_2m_karras, ddim (A1111 names like "DPM++ 2M Karras" work too).
    #[arg(long, default_value = "dpmpp_2m_karras")]
    sampler: String,
    /// Width in pixels (a multiple of 8).
    #[arg(long, default_value_t = 512)]
    width: usize,
    /// Height in pixels (a multiple of 8).
    #[arg(long, default_value_t = 512)]
    height: usize,
    /// CLIP skip: 1 uses the last text-encoder layer, 2 the one before (A1111's setting).
    #[arg(long, default_value_t = 1)]
    clip_skip: usize,
    /// Number of images; image i uses seed+i.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Output PNG; with --batch N > 1, files are named <stem>-<i>.png.
    #[arg(long)]
    out: PathBuf,
    /// Overwrite existing output files.
    #[arg(long)]
    force: bool,
    /// A LoRA to apply: FILE, FILE:W or FILE:TE:UNET (repeatable). Recorded in the infotext as the prompt tag
    /// <lora:STEM:W> that A1111 would need.
    #[arg(long = "lora", value_name = "FILE[:W|:TE:UNET]")]
    loras: Vec<String>,
    /// Folder where <lora:NAME:W> prompt tags are looked up by file stem (A1111's Lora folder).
    #[arg(long)]
    lora_dir: Option<PathBuf>,
    /// How LoRAs are applied: merged into the weights, or unmerged adapters (same image; for testing).
    #[arg(long, default_value = "merged", value_parser = ["merged", "unmerged"])]
    lora_mode: String,
    /// Random number generator source, as A1111's setting: gpu (A1111's default: the numbers an NVIDIA GPU draws;
    /// PNG Info has no "RNG" field), cpu (torch's CPU generator; "RNG: CPU") or nv (A1111's NV; "RNG: NV").
    #[arg(long, default_value = "gpu", value_parser = parse_rng_source)]
    rng: RngSource,
    /// Eta noise seed delta (A1111's ENSD setting; PNG Info "ENSD: N"): after the initial noise, image i's
    /// generator is re-seeded with seed + i + ENSD (changes Euler a's images). 0 = off.
    #[arg(long, default_value_t = 0)]
    ensd: u64,
}

/// `--rng` values: gpu, cpu, nv (any case); the error lists them.
pub(super) fn parse_rng_source(text: &str) -> Result<RngSource, String> {
    RngSource::parse(text).map_err(|e| e.to_string())
}

/// Python `str(float)`-like text of a multiplier for a prompt tag.
fn multiplier_text(value: f32) -> String {
    format!("{value}")
}

/// `--lora` specs and prompt tags → (prompt with a tag for every `--lora`, LoRAs to apply).
fn collect_loras(args: &GenerateArgs) -> Result<(String, Vec<LoraUse>)> {
    let mut prompt = args.prompt.clone();
    let mut uses: Vec<LoraUse> = Vec::new();
    let mut opened: Vec<Arc<LoraFile>> = Vec::new();
    let mut open = |path: &Path| -> Result<Arc<LoraFile>> {
        if let Some(file) = opened.iter().find(|f| f.path == path) {
            return Ok(file.clone());
        }
        let file = Arc::new(LoraFile::open(path)?);
        opened.push(file.clone());
        Ok(file)
    };
    for spec in &args.loras {
        let spec = parse_lora_spec(spec)?;
        let file = open(&spec.path)?;
        let tag = if spec.te == spec.unet {
            format!("<lora:{}:{}>", file.name, multiplier_text(spec.te))
        } else {
            format!(
                "<lora:{}:{}:{}>",
                file.name,
                multiplier_text(spec.te),
                multiplier_text(spec.unet)
            )
        };
        prompt = if prompt.is_empty() {
            tag
        } else {
            format!("{prompt} {tag}")
        };
        uses.push(LoraUse {
            name: file.name.clone(),
            file,
            te: spec.te,
            unet: spec.unet,
        });
    }
    let library = args
        .lora_dir
        .as_deref()
        .map(LoraLibrary::scan)
        .transpose()?;
    let tagged = resolve_prompt_tags(&args.prompt, library.as_ref())?;
    for tag in tagged {
        uses.push(LoraUse {
            name: tag.name,
            file: open(&tag.path)?,
            te: tag.te,
            unet: tag.unet,
        });
    }
    for (i, lora) in uses.iter().enumerate() {
        if uses[..i].iter().any(|other| other.name == lora.name) {
            bail!(
                "LoRA `{}` is given twice (with --lora and/or as a prompt tag)",
                lora.name
            );
        }
    }
    Ok((prompt, uses))
}

/// Warns on stderr about modules of each file that match no layer of the model.
fn report_unmatched(model: &StableDiffusion, uses: &[LoraUse]) -> Result<()> {
    for lora in uses {
        let resolution = model.lora_layers().resolve(&lora.file)?;
        if !resolution.unmatched.is_empty() {
            eprintln!(
                "warning: {}: {} of {} modules match no layer of the model and are ignored, e.g. {}",
                lora.file.path.display(),
                resolution.unmatched.len(),
                lora.file.modules.len(),
                crate::lora::apply::examples(&resolution.unmatched)
            );
        }
        if !resolution.unknown_keys.is_empty() {
            eprintln!(
                "warning: {}: {} keys of unsupported adapter types are ignored, e.g. {}",
                lora.file.path.display(),
                resolution.unknown_keys.len(),
                crate::lora::apply::examples(&resolution.unknown_keys)
            );
        }
    }
    Ok(())
}

fn resolve_seed(seed: Option<i64>) -> Result<u64> {
    match seed {
        None | Some(-1) => Ok(random_seed()),
        Some(value) if value >= 0 => Ok(value as u64),
        Some(value) => {
            bail!("--seed {value} is invalid: use a non-negative seed or -1 for a random one")
        }
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() % (1u64 << 32)
}

fn output_paths(out: &Path, batch: usize) -> Vec<PathBuf> {
    if batch == 1 {
        return vec![out.to_path_buf()];
    }
    let stem = out
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    let extension = out
        .extension()
        .map_or_else(|| "png".into(), |e| e.to_string_lossy().into_owned());
    (0..batch)
        .map(|i| out.with_file_name(format!("{stem}-{i}.{extension}")))
        .collect()
}

fn check_outputs(paths: &[PathBuf], force: bool) -> Result<()> {
    for path in paths {
        if path.exists() && !force {
            bail!(
                "{} already exists (use --force to overwrite)",
                path.display()
            );
        }
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!("output folder {} does not exist", parent.display());
        }
    }
    Ok(())
}

/// Runs `generate`: validates everything, loads the model, renders, writes the PNGs.
pub fn run(args: GenerateArgs) -> Result<()> {
    let seed = resolve_seed(args.seed)?;
    let sampler = SamplerName::parse(&args.sampler)?;
    let (prompt, loras) = collect_loras(&args)?;
    let request = Txt2ImgRequest {
        prompt,
        negative: args.negative.clone(),
        seed,
        steps: args.steps,
        cfg: args.cfg,
        sampler,
        width: args.width,
        height: args.height,
        clip_skip: args.clip_skip,
        batch: args.batch,
        rng: args.rng,
        ensd: args.ensd,
    };
    request.validate()?;
    let paths = output_paths(&args.out, args.batch);
    check_outputs(&paths, args.force)?;
    let model = StableDiffusion::load(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let model = if loras.is_empty() {
        model
    } else {
        report_unmatched(&model, &loras)?;
        let mode = match args.lora_mode.as_str() {
            "unmerged" => LoraMode::Unmerged,
            _ => LoraMode::Merged,
        };
        model.with_loras(&loras, mode)?
    };
    let bar = step_bar(args.steps as u64, "sampling");
    let images = model.txt2img(&request, &mut |step, _| bar.set_position(step as u64))?;
    bar.finish_and_clear();
    for (index, (image, path)) in images.iter().zip(&paths).enumerate() {
        let infotext = model.infotext(&request, index);
        write_png_atomic(path, &image.pixels, &infotext, args.force)?;
        println!("{}\tseed {}", path.display(), image.seed);
    }
    Ok(())
}
