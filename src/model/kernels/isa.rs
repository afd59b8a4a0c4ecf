//! Which instruction-set path the kernels take, and a record of which kernels ran on it.
//!
//! Every public kernel entry resolves the path once, on the calling thread, with [`selected`]: the path of an
//! enclosing [`with_isa`] call on this thread, else the process default ([`default_isa`]: `LORAEVAL_KERNELS` when it
//! names a path this CPU runs, else [`detected`], the best one it runs). The path is then handed down explicitly
//! (as a [`Cpu`] token) to every helper, including those running in rayon tasks on other threads, so one call
//! never mixes paths. What each path runs:
//!
//! - [`Isa::Avx512`]: direct and Winograd convolutions with the AVX-512 micro-kernels, AVX-512 copies of the
//!   element-wise loops; products of the im2col convolution, the attention and Linear from the `gemm` crate.
//! - [`Isa::Avx2`]: Winograd with the AVX2 micro-kernel (no direct kernel), the AVX2 attention products, this
//!   crate's AVX2 GEMM (`sgemm.rs`) for Linear / GEGLU / 1×1 convolutions, AVX2+FMA copies of the element-wise
//!   loops; im2col + `gemm` for the other convolutions.
//! - [`Isa::Portable`]: no SIMD code of this crate: im2col + `gemm` for every convolution, `gemm` products in the
//!   attention and Linear, plain Rust element-wise loops (auto-vectorised for the baseline target only).
//!
//! The `gemm` crate and candle pick their own instruction set from the CPU whatever the path (a portable run on an
//! AVX-512 machine still multiplies with `gemm`'s AVX-512 micro-kernels).

use std::cell::{Cell, RefCell};
use std::sync::OnceLock;

use super::settings::settings;

/// An instruction-set path of the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// No SIMD code of this crate (what runs on CPUs without AVX2 + FMA and on other architectures).
    Portable,
    /// AVX2 + FMA.
    Avx2,
    /// AVX-512F (with AVX2 + FMA).
    Avx512,
}

impl Isa {
    /// Every path, from the plainest to the widest.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The name `LORAEVAL_KERNELS` takes: `portable`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The path called `name` (as [`Isa::name`] spells it, any case, surrounding spaces ignored).
    pub fn parse(name: &str) -> Option<Isa> {
        let name = name.trim();
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(name))
    }

    /// The CPU features this path uses, as `is_x86_feature_detected!` names them.
    pub fn required_features(self) -> &'static [&'static str] {
        match self {
            Isa::Portable => &[],
            Isa::Avx2 => &["avx2", "fma"],
            Isa::Avx512 => &["avx512f", "avx2", "fma"],
        }
    }

    /// The features of [`Isa::required_features`] this CPU lacks (all of them on other architectures than x86-64).
    pub fn missing_features(self) -> Vec<&'static str> {
        self.required_features()
            .iter()
            .copied()
            .filter(|feature| !cpu_has(feature))
            .collect()
    }

    /// Whether this CPU runs the path.
    pub fn is_supported(self) -> bool {
        self.missing_features().is_empty()
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether this CPU has `feature` (one of the names in [`Isa::required_features`]).
fn cpu_has(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "fma" => std::arch::is_x86_feature_detected!("fma"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        false
    }
}

/// The widest path this CPU runs.
pub fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|isa| isa.is_supported())
            .unwrap_or(Isa::Portable)
    })
}

/// The process-wide path: the one `LORAEVAL_KERNELS` names when this CPU runs it, else [`detected`] (see
/// [`override_problem`] for why a set `LORAEVAL_KERNELS` was not used).
pub fn default_isa() -> Isa {
    default_choice().0
}

/// Why `LORAEVAL_KERNELS` was set but not used: an unknown name, or a path this CPU lacks features for. The
/// library does not print; callers that report the kernels' setup show this.
pub fn override_problem() -> Option<&'static str> {
    default_choice().1.as_deref()
}

fn default_choice() -> &'static (Isa, Option<String>) {
    static CHOICE: OnceLock<(Isa, Option<String>)> = OnceLock::new();
    CHOICE.get_or_init(|| {
        let Some(requested) = settings().kernels.as_deref() else {
            return (detected(), None);
        };
        match Isa::parse(requested) {
            Some(isa) if isa.is_supported() => (isa, None),
            Some(isa) => (
                detected(),
                Some(format!(
                    "LORAEVAL_KERNELS={requested}: this CPU lacks {}; using {}",
                    isa.missing_features().join(", "),
                    detected()
                )),
            ),
            None => (
                detected(),
                Some(format!(
                    "LORAEVAL_KERNELS={requested}: not one of portable, avx2, avx512; using {}",
                    detected()
                )),
            ),
        }
    })
}

thread_local! {
    /// The path of the innermost [`with_isa`] call running on this thread.
    static OVERRIDE: Cell<Option<Isa>> = const { Cell::new(None) };
    /// The kernels run on this thread inside the innermost [`traced`] call, if any.
    static TRACE: RefCell<Option<Vec<KernelRun>>> = const { RefCell::new(None) };
}

/// The path a kernel called now on this thread takes: [`with_isa`]'s, else [`default_isa`]. Always one this CPU
/// runs.
pub fn selected() -> Isa {
    OVERRIDE.get().unwrap_or_else(default_isa)
}

/// A path this CPU lacks features for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kernel path {isa} needs {}: this CPU lacks it", .missing.join(", "))]
pub struct UnsupportedIsa {
    pub isa: Isa,
    pub missing: Vec<&'static str>,
}

/// Runs `body` with every kernel called on this thread taking path `isa` (nested calls: the innermost wins);
/// an error, without running `body`, when this CPU does not run `isa`. For tests and benchmarks that compare
/// paths in one process.
pub fn with_isa<R>(isa: Isa, body: impl FnOnce() -> R) -> Result<R, UnsupportedIsa> {
    let missing = isa.missing_features();
    if !missing.is_empty() {
        return Err(UnsupportedIsa { isa, missing });
    }
    struct Restore(Option<Isa>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OVERRIDE.set(self.0);
        }
    }
    let _restore = Restore(OVERRIDE.replace(Some(isa)));
    Ok(body())
}

/// One kernel call: which kernel (the names of `take_kernel_times`) on which path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelRun {
    pub kernel: &'static str,
    pub isa: Isa,
}

/// Runs `body` and returns, with its result, every kernel call it made on this thread, in order (kernels run
/// from other threads are not seen). Nested calls each see their own calls; the outer one sees them too.
pub fn traced<R>(body: impl FnOnce() -> R) -> (R, Vec<KernelRun>) {
    struct Restore(Option<Vec<KernelRun>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            TRACE.with(|trace| {
                let mut trace = trace.borrow_mut();
                let inner = trace.take().unwrap_or_default();
                *trace = outer.map(|mut outer| {
                    outer.extend(inner);
                    outer
                });
            });
        }
    }
    let restore = Restore(TRACE.with(|trace| trace.borrow_mut().replace(Vec::new())));
    let result = body();
    let runs = TRACE.with(|trace| trace.borrow().clone().unwrap_or_default());
    drop(restore);
    (result, runs)
}

/// Adds a kernel call to this thread's trace, when [`traced`] is running.
pub(crate) fn record(kernel: &'static str, cpu: Cpu) {
    TRACE.with(|trace| {
        if let Some(runs) = trace.borrow_mut().as_mut() {
            runs.push(KernelRun {
                kernel,
                isa: cpu.isa(),
            });
        }
    });
}

/// A path this CPU has been checked to run: the only way for kernels to reach their SIMD code, so that no
/// instruction the CPU lacks is ever executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cpu(Isa);

impl Cpu {
    /// The [`selected`] path, for a kernel entry to resolve once and hand down.
    pub(crate) fn current() -> Cpu {
        let isa = selected();
        debug_assert!(isa.is_supported(), "{isa} selected on a CPU without it");
        Cpu(isa)
    }

    /// `isa` when this CPU runs it.
    #[cfg(test)]
    pub(crate) fn checked(isa: Isa) -> Option<Cpu> {
        isa.is_supported().then_some(Cpu(isa))
    }

    /// `isa` for a unit test of that path; panics, naming the missing features, when this CPU does not run it.
    #[cfg(test)]
    pub(crate) fn for_test(isa: Isa) -> Cpu {
        match Cpu::checked(isa) {
            Some(cpu) => cpu,
            None => panic!(
                "kernel path {isa} not run: this CPU lacks {}",
                isa.missing_features().join(", ")
            ),
        }
    }

    pub(crate) fn isa(self) -> Isa {
        self.0
    }

    /// Whether AVX2 + FMA code may run (the AVX2 and AVX-512 paths).
    pub(crate) fn avx2(self) -> bool {
        self.0 >= Isa::Avx2
    }

    /// Whether AVX-512F code may run.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn avx512(self) -> bool {
        self.0 == Isa::Avx512
    }
}

/// Unit tests of one check on every path: `test_each_path!(fn name(cpu) { … })` makes a module `name` with tests
/// `portable`, `avx2` and `avx512`, each running the body with that path's `Cpu`. The tests of paths the build
/// machine lacks are ignored (`build.rs`), so they show as ignored, not passed.
#[cfg(test)]
macro_rules! test_each_path {
    ($(#[$doc:meta])* fn $name:ident($cpu:ident) $body:block) => {
        $(#[$doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::model::kernels::isa::{Cpu, Isa};

            fn check($cpu: Cpu) $body

            #[test]
            fn portable() {
                check(Cpu::for_test(Isa::Portable));
            }

            #[test]
            #[cfg_attr(not(loraeval_cpu_avx2), ignore = "this CPU lacks avx2/fma")]
            fn avx2() {
                check(Cpu::for_test(Isa::Avx2));
            }

            #[test]
            #[cfg_attr(not(loraeval_cpu_avx512), ignore = "this CPU lacks avx512f")]
            fn avx512() {
                check(Cpu::for_test(Isa::Avx512));
            }
        }
    };
}

#[cfg(test)]
pub(crate) use test_each_path;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_portable_always_runs() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
            assert_eq!(
                Isa::parse(&format!(" {} ", isa.name().to_uppercase())),
                Some(isa)
            );
        }
        assert_eq!(Isa::parse("sse2"), None);
        assert!(Isa::Portable.is_supported());
        assert!(detected().is_supported());
        assert!(
            Isa::ALL
                .iter()
                .all(|isa| *isa <= detected() || !isa.is_supported()),
            "detected() is the widest supported path"
        );
    }

    #[test]
    fn with_isa_nests_restores_and_refuses_missing_paths() {
        let outside = selected();
        let inner = with_isa(Isa::Portable, || {
            assert_eq!(selected(), Isa::Portable);
            with_isa(detected(), selected).unwrap()
        })
        .unwrap();
        assert_eq!(inner, detected());
        assert_eq!(selected(), outside);
        for isa in Isa::ALL.into_iter().filter(|isa| !isa.is_supported()) {
            let error = with_isa(isa, || unreachable!()).unwrap_err();
            assert!(error.to_string().contains("this CPU lacks"), "{error}");
        }
        let caught = std::panic::catch_unwind(|| {
            with_isa(Isa::Portable, || panic!("inside")).unwrap();
        });
        assert!(caught.is_err());
        assert_eq!(selected(), outside, "restored after a panic");
    }

    #[test]
    fn traced_sees_nested_calls_once_each() {
        let portable = Cpu::checked(Isa::Portable).unwrap();
        let ((), outer) = traced(|| {
            record("a", portable);
            let ((), inner) = traced(|| record("b", portable));
            assert_eq!(inner.len(), 1);
            assert_eq!(inner[0].kernel, "b");
        });
        let names: Vec<_> = outer.iter().map(|run| run.kernel).collect();
        assert_eq!(names, ["a", "b"]);
        record("outside", portable);
        let ((), none) = traced(|| ());
        assert!(none.is_empty());
    }
}
