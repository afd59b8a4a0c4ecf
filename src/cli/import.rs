//! `loraeval import`: a run folder from the images the webui (A1111, ComfyUI) already rendered, for `score`,
//! `pick` and `report`. The grid is on stdout (or JSON with `--json`); what was skipped and why, and the counts,
//! on stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::faces::write_stdout;
use super::progress::step_bar;
use crate::grid::import::{
    count_categories, import_images, ImportOptions, ImportSummary, Progress, Skipped, Stored,
    Transfer,
};
use crate::grid::manifest::{AxisEntry, Manifest};
use crate::grid::run_info::RunInfo;

/// Skipped files listed by name per reason; the rest are counted.
const LISTED_PER_REASON: usize = 5;

/// Options of `loraeval import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The webui's output folder (searched recursively, e.g. outputs/txt2img-images), or image files; several
    /// may be given. PNG (A1111 `parameters` text, ComfyUI `prompt` graph), JPEG and WebP (A1111's EXIF).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The run folder to write; importing into it again adds the new images and keeps the others.
    #[arg(long)]
    out: PathBuf,
    /// The LoRA folder (kohya's output): epochs from the files' ss_epoch, `Lora hashes` checked against the
    /// files, and `pick --copy-to` finds the chosen file there.
    #[arg(long)]
    lora_dir: Option<PathBuf>,
    /// The LoRA run to judge when the images use several (its name, or the name of any of its files).
    #[arg(long)]
    lora_name: Option<String>,
    /// Copy the images into the run folder (the default).
    #[arg(long, conflicts_with = "link")]
    copy: bool,
    /// Hard-link the images into the run folder (a symbolic link when that fails) instead of copying them;
    /// JPEG and WebP images are stored as PNG all the same.
    #[arg(long)]
    link: bool,
    /// Print JSON: {"run", "source", "cells", "controls", "new", "already", "kept", "x", "y", "z", "seeds",
    /// "skipped": [{"file", "reason", "why"}], "notes"}.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ImportJson<'a> {
    run: String,
    source: Option<&'a str>,
    cells: usize,
    controls: usize,
    new: usize,
    already: usize,
    kept: usize,
    x: &'a [String],
    y: &'a [String],
    z: &'a [String],
    seeds: &'a [u64],
    skipped: Vec<SkippedJson>,
    notes: &'a [String],
}

#[derive(Serialize)]
struct SkippedJson {
    file: String,
    reason: String,
    why: String,
}

/// Runs `import`.
pub fn run(args: ImportArgs) -> Result<ExitCode> {
    let options = ImportOptions {
        inputs: args.inputs.clone(),
        out: args.out.clone(),
        lora_dir: lora_dir(&args),
        lora_name: args.lora_name.clone(),
        transfer: if args.link {
            Transfer::Link
        } else {
            Transfer::Copy
        },
    };
    let bar = step_bar(0, "reading");
    let summary = import_images(&options, &|event| match event {
        Progress::Found(n) => bar.set_length(n as u64),
        Progress::Read => bar.inc(1),
    })?;
    bar.finish_and_clear();
    record_run(&args, options.lora_dir.as_deref())?;
    report_stderr(&summary);
    if args.json {
        write_stdout(&(serde_json::to_string_pretty(&json(&args.out, &summary))? + "\n"))?;
    } else {
        write_stdout(&grid_text(&args.out, &summary.manifest))?;
    }
    eprintln!(
        "next: loraeval pick {} --reference YOUR_TRAINING_PHOTOS",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--lora-dir`, else the LoRA folder of an earlier import (its `run.json`).
fn lora_dir(args: &ImportArgs) -> Option<PathBuf> {
    args.lora_dir
        .clone()
        .or_else(|| RunInfo::read(&args.out).and_then(|i| i.lora_dir))
}

/// `run.json`: the command and the LoRA folder.
fn record_run(args: &ImportArgs, lora_dir: Option<&Path>) -> Result<()> {
    let command: Vec<String> = std::env::args().collect();
    RunInfo::new(&command, lora_dir, None).write(&args.out)?;
    Ok(())
}

/// Notes, skipped files (a few per reason) and the counts.
fn report_stderr(summary: &ImportSummary) {
    for note in &summary.notes {
        eprintln!("note: {note}");
    }
    let mut shown: Vec<(String, usize)> = Vec::new();
    for skipped in &summary.skipped {
        let category = skipped.reason.category();
        let count = match shown.iter_mut().find(|(c, _)| *c == category) {
            Some(entry) => {
                entry.1 += 1;
                entry.1
            }
            None => {
                shown.push((category, 1));
                1
            }
        };
        if count <= LISTED_PER_REASON {
            eprintln!("skipped {}: {}", skipped.path, skipped.reason);
        }
    }
    for (category, count) in shown.iter().filter(|(_, n)| *n > LISTED_PER_REASON) {
        eprintln!("  … and {} more: {category}", count - LISTED_PER_REASON);
    }
    eprintln!("{}", counts_line(summary));
}

/// "imported 21 images (18 cells, 3 controls): 21 new (copied), 0 already there; skipped 2: …".
fn counts_line(summary: &ImportSummary) -> String {
    let m = &summary.manifest;
    let stored = |kind: Stored| summary.stored.iter().filter(|s| **s == kind).count();
    let how: Vec<String> = [
        (Stored::Copied, "copied"),
        (Stored::HardLinked, "hard-linked"),
        (Stored::SymLinked, "symlinked"),
        (Stored::Converted, "JPEG/WebP stored as PNG"),
    ]
    .iter()
    .filter(|(kind, _)| stored(*kind) > 0)
    .map(|(kind, name)| format!("{} {name}", stored(*kind)))
    .collect();
    let mut line = format!(
        "{} images in the run ({} cells, {} controls): {} new ({}), {} kept from earlier imports, {} found again",
        m.cells.len() + m.controls.len(),
        m.cells.len(),
        m.controls.len(),
        summary.stored.len(),
        if how.is_empty() { "none".to_string() } else { how.join(", ") },
        summary.kept,
        summary.already
    );
    line += &format!("; {} image files read", summary.found);
    if !summary.skipped.is_empty() {
        line += &format!(
            "; skipped {}: {}",
            summary.skipped.len(),
            count_categories(&summary.skipped)
        );
    }
    if summary.other_files > 0 {
        line += &format!("; {} other files ignored", summary.other_files);
    }
    line
}

/// The grid on stdout: size, then each axis's labels, then the seeds.
fn grid_text(run: &Path, m: &Manifest) -> String {
    let len = |a: Option<&AxisEntry>| a.map_or(1, |a| a.labels.len());
    let mut out = format!(
        "{}: {} x {} x {} x {} = {}, {} (source: {})\n",
        run.display(),
        count(len(Some(&m.axes.x)), "epoch"),
        count(len(m.axes.y.as_ref()), "weight"),
        count(len(m.axes.z.as_ref()), "level"),
        count(m.seeds.len(), "seed"),
        count(m.cells.len(), "cell"),
        count(m.controls.len(), "control"),
        m.source.as_deref().unwrap_or("?")
    );
    let axes = [
        ("X", Some(&m.axes.x)),
        ("Y", m.axes.y.as_ref()),
        ("Z", m.axes.z.as_ref()),
    ];
    for (name, axis) in axes {
        if let Some(axis) = axis {
            out += &format!(
                "{name} {}: {}\n",
                axis.label,
                short_labels(axis).join(" | ")
            );
        }
    }
    let seeds: Vec<String> = m.seeds.iter().map(u64::to_string).collect();
    out + &format!("seeds: {}\n", seeds.join(", "))
}

/// The labels without the axis name A1111 puts in front ("0.8" for "LoRA weight: 0.8").
fn short_labels(axis: &AxisEntry) -> Vec<&str> {
    let prefix = format!("{}: ", axis.label);
    axis.labels
        .iter()
        .map(|l| l.strip_prefix(&prefix).unwrap_or(l))
        .collect()
}

/// "1 epoch", "3 epochs".
fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

fn json<'a>(run: &Path, summary: &'a ImportSummary) -> ImportJson<'a> {
    let m = &summary.manifest;
    let labels = |a: Option<&'a AxisEntry>| a.map_or(&[][..], |a| a.labels.as_slice());
    ImportJson {
        run: run.display().to_string(),
        source: m.source.as_deref(),
        cells: m.cells.len(),
        controls: m.controls.len(),
        new: summary.stored.len(),
        already: summary.already,
        kept: summary.kept,
        x: labels(Some(&m.axes.x)),
        y: labels(m.axes.y.as_ref()),
        z: labels(m.axes.z.as_ref()),
        seeds: &m.seeds,
        skipped: summary.skipped.iter().map(skipped_json).collect(),
        notes: &summary.notes,
    }
}

fn skipped_json(s: &Skipped) -> SkippedJson {
    SkippedJson {
        file: s.path.clone(),
        reason: s.reason.category(),
        why: s.reason.to_string(),
    }
}
