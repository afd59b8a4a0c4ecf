//! `loraeval inspect`: what a LoRA file is (format, ranks, alphas, targets, likely base model, training metadata).

use crate::lora::LoraFile;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Options of `loraeval inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// LoRA / LyCORIS / PEFT `.safetensors` file.
    file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Opens the file (which validates every tensor) and prints its summary.
pub fn run(args: InspectArgs) -> Result<()> {
    let file = LoraFile::open(&args.file)?;
    let summary = file.summary();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{}", summary.to_text());
    }
    Ok(())
}
