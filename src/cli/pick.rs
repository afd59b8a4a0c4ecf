//! `loraeval pick` and `loraeval report`: the decision of a run folder for scripts (exit 0 with a pick, 3 without),
//! and the report rewritten from the folder's files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use super::decide::{decide, report_only, DecisionArgs};
use super::faces::{write_stdout, FaceOptionArgs};
use crate::grid::run_info::RunInfo;
use crate::recommend::{Pick, Recommendation};

/// Exit code when no cell passes the gates.
pub const EXIT_NO_PICK: u8 = 3;

/// Options of `loraeval pick`.
#[derive(Debug, Args)]
pub struct PickArgs {
    /// The run folder (made by `loraeval grid --out RUN`).
    run: PathBuf,
    /// Reference (training) photos: a folder such as kohya's image/NN_name, or files; repeatable. Default: the
    /// photos of the run's last scoring.
    #[arg(long)]
    reference: Vec<PathBuf>,
    /// Print JSON: {"pick": {"file", "epoch", "weight", ...} | null, "ranking": [{"file", "epoch", "weight",
    /// "score", "passed", "reasons"}, ...], "reasons": [...], "epochs": [...]}.
    #[arg(long)]
    json: bool,
    /// Copy the chosen LoRA file into this folder.
    #[arg(long)]
    copy_to: Option<PathBuf>,
    /// The LoRA folder, for --copy-to when the run folder does not record it.
    #[arg(long)]
    lora_dir: Option<PathBuf>,
    /// Overwrite an existing file in --copy-to.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    face: FaceOptionArgs,
    #[command(flatten)]
    decision: DecisionArgs,
}

/// Options of `loraeval report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run folder.
    run: PathBuf,
}

#[derive(Serialize)]
struct PickJson<'a> {
    pick: Option<&'a Pick>,
    ranking: Vec<RankingJson<'a>>,
    reasons: &'a [String],
    epochs: &'a [crate::recommend::EpochSummary],
}

#[derive(Serialize)]
struct RankingJson<'a> {
    file: &'a Option<String>,
    epoch: Option<u32>,
    weight: Option<f64>,
    label: &'a str,
    score: f32,
    passed: bool,
    failed: &'a [String],
    reasons: &'a [String],
}

/// Runs `pick`: scores the run (cached), prints the pick, copies the file if asked.
pub fn run(args: PickArgs) -> Result<ExitCode> {
    let decision = decide(&args.run, &args.reference, &args.face, &args.decision)?;
    let recommendation = &decision.recommendation;
    if let (Some(dir), Some(pick)) = (&args.copy_to, &recommendation.pick) {
        let copied = copy_pick(&args, dir, pick)?;
        eprintln!("copied {}", copied.display());
    }
    if args.json {
        write_stdout(&(serde_json::to_string_pretty(&pick_json(recommendation))? + "\n"))?;
    } else {
        write_stdout(&pick_text(recommendation))?;
    }
    eprintln!("report: {}", decision.report.display());
    Ok(match recommendation.pick {
        Some(_) => ExitCode::SUCCESS,
        None => ExitCode::from(EXIT_NO_PICK),
    })
}

/// Runs `report`: rewrites report.html from grid.json, scores.json and recommendation.json.
pub fn run_report(args: ReportArgs) -> Result<ExitCode> {
    let path = report_only(&args.run)?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn pick_json(recommendation: &Recommendation) -> PickJson<'_> {
    PickJson {
        pick: recommendation.pick.as_ref(),
        ranking: recommendation
            .ranking
            .iter()
            .map(|r| RankingJson {
                file: &r.file,
                epoch: r.epoch,
                weight: r.weight,
                label: &r.label,
                score: r.score,
                passed: r.passed,
                failed: &r.failed,
                reasons: &r.reasons,
            })
            .collect(),
        reasons: &recommendation.reasons,
        epochs: &recommendation.epochs,
    }
}

/// The pick on its first line ("FILE WEIGHT", or "none"), then the reasons.
fn pick_text(recommendation: &Recommendation) -> String {
    let mut out = match &recommendation.pick {
        Some(pick) => format!(
            "{} {}\n",
            pick.file.as_deref().unwrap_or(&pick.label),
            pick.weight.map_or("-".to_string(), |w| w.to_string())
        ),
        None => "none\n".to_string(),
    };
    for reason in &recommendation.reasons {
        out += &format!("  {reason}\n");
    }
    out
}

/// Copies the picked LoRA file into `dir` (never over an existing file without --force).
fn copy_pick(args: &PickArgs, dir: &Path, pick: &Pick) -> Result<PathBuf> {
    let Some(file) = &pick.file else {
        bail!("--copy-to: the picked cell has no LoRA file");
    };
    let lora_dir = args
        .lora_dir
        .clone()
        .or_else(|| RunInfo::read(&args.run).and_then(|i| i.lora_dir))
        .with_context(|| {
            format!(
                "--copy-to: {} does not record its LoRA folder; give --lora-dir",
                args.run.display()
            )
        })?;
    let source = lora_dir.join(file);
    if !source.is_file() {
        bail!(
            "--copy-to: the picked file {} does not exist",
            source.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = dir.join(file);
    if target.exists() && !args.force {
        bail!(
            "--copy-to: {} already exists; pass --force to overwrite it",
            target.display()
        );
    }
    let bytes = std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
    crate::score::write_file_atomic(&target, &bytes)?;
    Ok(target)
}
