//! The kernels' settings from the environment, read once per process by [`settings`]: the one place outside `cli`
//! where the library reads environment variables (`LORAEVAL_KERNELS`, `LORAEVAL_KERNEL_TIMES`).

use std::sync::OnceLock;

/// What the environment asks of the kernels.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    /// `LORAEVAL_KERNELS`: the instruction-set path to use instead of the best one the CPU runs (`portable`,
    /// `avx2` or `avx512`; checked by `isa::default_isa`).
    pub kernels: Option<String>,
    /// `LORAEVAL_KERNEL_TIMES=1`: add up each kernel's wall time (`timing.rs`).
    pub kernel_times: bool,
}

/// The settings, read from the environment on first use.
pub(crate) fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        kernels: std::env::var("LORAEVAL_KERNELS").ok(),
        kernel_times: std::env::var_os("LORAEVAL_KERNEL_TIMES").is_some_and(|v| v == "1"),
    })
}
