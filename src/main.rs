//! The `loraeval` binary: a thin wrapper around [`loraeval::cli`].

fn main() -> std::process::ExitCode {
    loraeval::cli::main()
}
