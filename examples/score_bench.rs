//! Times scoring and the report on a 4 × 4 epoch × weight grid with 4 images per cell (64 images of 512²) made of
//! the real photos in tests/fixtures/people, plus 4 control images:
//!
//! `cargo run --release --example score_bench [-- --size 512 --seeds 4]`
//!
//! prints the cold time (every image analysed: faces, descriptors, pixel statistics), the warm time (all from the
//! run folder's cache, as a second `pick` sees it) and the time to write report.html.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use image::imageops::FilterType;
use serde_json::json;

use loraeval::face::pipeline::{FaceModels, PipelineOptions};
use loraeval::recommend::{recommend, Thresholds};
use loraeval::report::{write_report, ReportInput};
use loraeval::score::metrics::ScoreSettings;
use loraeval::score::run::ScoreJob;

fn photos(folder: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(Path::new("tests/fixtures/people").join(folder))
            .with_context(|| format!("run from the repository root ({folder})"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
    files.sort();
    Ok(files)
}

fn params(epoch: Option<usize>, weight: f64, seed: u64) -> serde_json::Value {
    let loras: Vec<_> = epoch
        .map(|e| {
            json!({"name": format!("sks-{e:06}"), "file": format!("sks-{e:06}.safetensors"),
                   "weight": weight, "unet_weight": weight, "epoch": e, "sha256": null})
        })
        .into_iter()
        .collect();
    json!({"prompt": "photo of sks woman", "negative": "", "seed": seed, "steps": 20, "cfg": 7.0,
           "sampler": "dpmpp_2m_karras", "width": 512, "height": 512, "clip_skip": 1, "loras": loras})
}

/// Writes the run folder: cell (x, y) seed s shows photo number x + y + s of the pool, resized to `size`.
fn write_run(root: &Path, size: u32, seeds: usize) -> Result<()> {
    std::fs::create_dir_all(root.join("cells"))?;
    let mut pool = photos("heldout")?;
    pool.extend(photos("strangers")?);
    let images: Vec<image::RgbImage> = pool
        .iter()
        .map(|p| {
            Ok(image::open(p)?
                .resize_exact(size, size, FilterType::Triangle)
                .to_rgb8())
        })
        .collect::<Result<_>>()?;
    let weights = [0.4, 0.6, 0.8, 1.0];
    let mut cells = Vec::new();
    for (y, weight) in weights.iter().enumerate() {
        for x in 0..4 {
            for s in 0..seeds {
                let key = format!("x{x}y{y}s{s}");
                images[(x + y + s) % images.len()].save(root.join(format!("cells/{key}.png")))?;
                cells.push(
                    json!({"x_index": x, "y_index": y, "z_index": 0, "seed_index": s, "key": key,
                    "image": format!("cells/{key}.png"), "status": "ok", "control": format!("c{s}"),
                    "params": params(Some(x + 1), *weight, s as u64)}),
                );
            }
        }
    }
    let mut controls = Vec::new();
    for s in 0..seeds {
        let key = format!("c{s}");
        images[(s + 3) % images.len()].save(root.join(format!("cells/{key}.png")))?;
        controls.push(
            json!({"key": key, "image": format!("cells/{key}.png"), "status": "ok",
            "z_index": 0, "seed_index": s, "params": params(None, 0.0, s as u64)}),
        );
    }
    let epochs: Vec<String> = (1..=4).map(|e| format!("sks-{e:06}")).collect();
    let manifest = json!({"version": 1,
        "model": {"file": "base.safetensors", "sha256": "0", "hash": "0", "name": "base"},
        "axes": {"x": {"type": "epochs", "label": "Epoch", "raw": "epochs", "values": epochs, "labels": epochs},
                 "y": {"type": "weight", "label": "LoRA weight", "raw": "0.4,0.6,0.8,1.0",
                       "values": weights, "labels": ["0.4", "0.6", "0.8", "1.0"]}, "z": null},
        "seeds": (0..seeds as u64).collect::<Vec<_>>(), "base": params(None, 0.0, 0), "grids": [],
        "cells": cells, "controls": controls,
        "summary": {"cells": 16 * seeds, "ok": 16 * seeds, "failed": 0, "missing": 0}});
    std::fs::write(root.join("grid.json"), manifest.to_string())?;
    Ok(())
}

fn flag(args: &[String], name: &str, default: usize) -> Result<usize> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args.get(i + 1).context("flag without value")?.parse()?),
        None => Ok(default),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let size = flag(&args, "--size", 512)? as u32;
    let seeds = flag(&args, "--seeds", 4)?;
    let dir = tempfile_dir()?;
    write_run(&dir, size, seeds)?;
    let reference = vec![PathBuf::from("tests/fixtures/people/reference")];
    let models = FaceModels::load_embedded()?;
    let job = ScoreJob::new(&dir, &reference)?;
    println!(
        "{} images ({} reference photos) of {size}² on {} threads",
        job.image_count(),
        job.reference_paths.len(),
        rayon::current_num_threads()
    );
    let settings = ScoreSettings::default();
    let mut decided = None;
    for pass in ["cold", "warm"] {
        let started = Instant::now();
        let table = job.run(&models, PipelineOptions::default(), &settings, &|| {})?;
        let recommendation = recommend(&table, &Thresholds::default());
        println!(
            "{pass}: score + recommend {:.2} s (pick: {})",
            started.elapsed().as_secs_f64(),
            recommendation
                .pick
                .as_ref()
                .map_or("none", |p| p.label.as_str())
        );
        decided = Some((table, recommendation));
    }
    let (table, recommendation) = decided.context("no pass ran")?;
    let metadata = BTreeMap::new();
    let input = ReportInput {
        run: &dir,
        manifest: &job.manifest,
        scores: Some(&table),
        recommendation: Some(&recommendation),
        lora_metadata: &metadata,
        command: None,
    };
    let started = Instant::now();
    let path = write_report(&input)?;
    println!(
        "report: {:.2} s, {} KiB",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(path)?.len() / 1024
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("loraeval-score-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
