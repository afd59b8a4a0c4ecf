//! Every kernel call goes through [`timed`]: it is recorded for `isa::traced` (which kernel ran on which path) and,
//! with `LORAEVAL_KERNEL_TIMES=1`, its wall time is added to the kernel's total, for seeing where a model step
//! goes; read with [`take_kernel_times`] (`examples/kernel_bench.rs --model` prints them). Off: one load per call.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::isa::{record, Cpu};
use super::settings::settings;

static TOTALS: Mutex<BTreeMap<&'static str, (Duration, u64)>> = Mutex::new(BTreeMap::new());

/// Runs `body`, the kernel `kernel` on path `cpu`: records the call and, when timing is on, adds its wall time to
/// `kernel`'s total. Callers time only outermost calls (kernels do not nest), so the totals add up to at most the
/// step's wall time.
pub(crate) fn timed<T>(kernel: &'static str, cpu: Cpu, body: impl FnOnce() -> T) -> T {
    record(kernel, cpu);
    if !settings().kernel_times {
        return body();
    }
    let start = Instant::now();
    let result = body();
    let elapsed = start.elapsed();
    if let Ok(mut totals) = TOTALS.lock() {
        let entry = totals.entry(kernel).or_default();
        entry.0 += elapsed;
        entry.1 += 1;
    }
    result
}

/// The totals so far as `(kernel, seconds, calls)`, largest first, and resets them.
pub fn take_kernel_times() -> Vec<(&'static str, f64, u64)> {
    let Ok(mut totals) = TOTALS.lock() else {
        return Vec::new();
    };
    let mut times: Vec<_> = std::mem::take(&mut *totals)
        .into_iter()
        .map(|(kernel, (time, calls))| (kernel, time.as_secs_f64(), calls))
        .collect();
    times.sort_by(|a, b| b.1.total_cmp(&a.1));
    times
}
