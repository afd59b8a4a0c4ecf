//! Build script: tells the tests which instruction-set paths of the CPU kernels (`src/model/kernels/isa.rs`) the
//! build machine runs, as `cfg(loraeval_cpu_avx2)` (AVX2 + FMA) and `cfg(loraeval_cpu_avx512)` (AVX-512F too).
//!
//! The per-path kernel tests are marked `#[ignore]` for the paths not listed, so `cargo test` on a machine without
//! AVX-512 reports its AVX-512 tests as ignored (never as passed), and `cargo test -- --include-ignored` runs them
//! anyway (they then fail, naming the missing feature). Nothing is set when building for another target than the
//! build machine's. The library itself does not use these cfgs: it checks the CPU at run time.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(loraeval_cpu_avx2, loraeval_cpu_avx512)");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target != host {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        if avx2 {
            println!("cargo::rustc-cfg=loraeval_cpu_avx2");
            if std::arch::is_x86_feature_detected!("avx512f") {
                println!("cargo::rustc-cfg=loraeval_cpu_avx512");
            }
        }
    }
}
