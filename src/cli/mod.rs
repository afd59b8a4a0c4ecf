//! Command-line front end: clap commands, settings resolution, progress bars and exit codes.
//!
//! Only this module prints, reads environment variables or picks exit codes. Data goes to stdout, progress and
//! logs to stderr.

mod bench;
mod decide;
mod faces;
mod generate;
mod grid;
mod import;
mod inspect;
mod pick;
mod progress;
mod score;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// loraeval: find the best epoch and weight of a face LoRA for Stable Diffusion 1.5.
#[derive(Debug, Parser)]
#[command(name = "loraeval", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render txt2img images from an SD1.5 checkpoint exactly as AUTOMATIC1111 would (any of its RNG sources).
    Generate(Box<generate::GenerateArgs>),
    /// Time one UNet step (CFG batch 2), one VAE decode and one text encode at real SD1.5 shapes.
    Bench(bench::BenchArgs),
    /// Render an X/Y/Z plot (e.g. LoRA epochs x weights) as A1111 does, into a resumable, shardable run folder.
    Grid(Box<grid::GridArgs>),
    /// Face detection and dlib face descriptors.
    #[command(subcommand)]
    Faces(faces::FacesCommand),
    /// Score a run folder against the training photos (per-cell likeness, hit rate, copies, flexibility,
    /// health; recommendation and report.html), or loose images: similarity, dlib distance, nearest photo.
    Score(score::ScoreArgs),
    /// The recommended LoRA file and weight of a run folder (exit 0), or none with the reasons (exit 3).
    Pick(pick::PickArgs),
    /// Rewrite a run folder's report.html from its grid.json, scores.json and recommendation.json.
    Report(pick::ReportArgs),
    /// Describe a LoRA file: format, ranks, alphas, targeted modules, likely base model, training metadata.
    Inspect(inspect::InspectArgs),
    /// kohya's numbers for a dataset plan: repeats = max steps / (images × epochs), the NN_name folder,
    /// batches, epochs and total optimization steps.
    Plan(train::PlanArgs),
    /// Train a kohya-compatible LoRA (kohya's options and TOML config). Only --dry-run works yet: it checks
    /// the dataset and prints kohya's start-of-run summary and the files a run will write.
    Train(Box<train::TrainArgs>),
    /// Face-centred square crops of raw photos for a kohya folder (image/NN_name), caption stubs, QA list.
    Prepare(train::PrepareArgs),
    /// Make a run folder from images the webui already rendered (A1111 infotext, ComfyUI LoRA loader graphs),
    /// for score, pick and report.
    Import(import::ImportArgs),
}

/// Entry point of the binary: parses arguments, runs the command, prints errors with their causes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Generate(args) => generate::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Grid(args) => grid::run(*args),
        Command::Faces(command) => faces::run(command).map(|()| ExitCode::SUCCESS),
        Command::Score(args) => score::run(args).map(|()| ExitCode::SUCCESS),
        Command::Inspect(args) => inspect::run(args).map(|()| ExitCode::SUCCESS),
        Command::Pick(args) => pick::run(args),
        Command::Report(args) => pick::run_report(args),
        Command::Import(args) => import::run(args),
        Command::Plan(args) => train::run_plan(args).map(|()| ExitCode::SUCCESS),
        Command::Train(args) => train::run_train(*args).map(|()| ExitCode::SUCCESS),
        Command::Prepare(args) => train::run_prepare(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default_level = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LORAEVAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
