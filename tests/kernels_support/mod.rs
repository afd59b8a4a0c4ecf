//! Shared by the kernel tests (`tests/kernels_*.rs`): running a check on one instruction-set path of the kernels,
//! recording which kernels ran, and one test function per path.
//!
//! `path_tests!(check: portable, avx2, avx512)` makes a module `check` with one test per listed path, each calling
//! `check(Isa::…)`. The tests of paths the build machine's CPU lacks are marked ignored (`build.rs` sets
//! `cfg(loraeval_cpu_avx2)` / `cfg(loraeval_cpu_avx512)`), so `cargo test` lists them as ignored, never as passed;
//! run with `--include-ignored` they fail, naming the missing features.

#![allow(dead_code)]

use loraeval::model::kernels::isa::{self, Isa, KernelRun};

/// Runs `body` with every kernel on path `path`, and returns its result with the kernels it ran. Panics when this
/// CPU lacks the path.
pub fn on_path<R>(path: Isa, body: impl FnOnce() -> R) -> (R, Vec<KernelRun>) {
    match isa::with_isa(path, || isa::traced(body)) {
        Ok(result) => result,
        Err(error) => panic!("kernel path {path} not run: {error}"),
    }
}

/// The kernels of `runs`, in order, after asserting that every one ran on `path`.
pub fn kernels_on(runs: &[KernelRun], path: Isa) -> Vec<&'static str> {
    for run in runs {
        assert_eq!(
            run.isa, path,
            "{} ran on {} instead of {path}",
            run.kernel, run.isa
        );
    }
    runs.iter().map(|run| run.kernel).collect()
}

/// Asserts that every run took `path` and that `kernel` ran at least once.
pub fn assert_ran(runs: &[KernelRun], path: Isa, kernel: &str) {
    let kernels = kernels_on(runs, path);
    assert!(
        kernels.contains(&kernel),
        "{kernel} did not run on {path}; ran: {kernels:?}"
    );
}

/// The convolution kernels path `path` may run (`conv.rs`, `isa.rs`).
pub fn conv_kernels(path: Isa) -> &'static [&'static str] {
    match path {
        Isa::Portable => &["conv im2col"],
        Isa::Avx2 => &["conv im2col", "conv winograd"],
        Isa::Avx512 => &["conv im2col", "conv winograd", "conv direct"],
    }
}

macro_rules! path_tests {
    ($check:ident: $($path:ident),+ $(,)?) => {
        mod $check {
            $(path_tests!(@one $check $path);)+
        }
    };
    (@one $check:ident portable) => {
        #[test]
        fn portable() {
            super::$check(loraeval::model::kernels::isa::Isa::Portable);
        }
    };
    (@one $check:ident avx2) => {
        #[test]
        #[cfg_attr(not(loraeval_cpu_avx2), ignore = "this CPU lacks avx2/fma")]
        fn avx2() {
            super::$check(loraeval::model::kernels::isa::Isa::Avx2);
        }
    };
    (@one $check:ident avx512) => {
        #[test]
        #[cfg_attr(not(loraeval_cpu_avx512), ignore = "this CPU lacks avx512f")]
        fn avx512() {
            super::$check(loraeval::model::kernels::isa::Isa::Avx512);
        }
    };
}
