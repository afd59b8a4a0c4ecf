//! Command-line front end: clap commands, settings resolution, progress bars and exit codes.

use std::process::ExitCode;

/// Entry point of the binary: parses arguments, runs the command, prints errors with their causes.
pub fn main() -> ExitCode {
    eprintln!("loraeval: not implemented yet");
    ExitCode::FAILURE
}
