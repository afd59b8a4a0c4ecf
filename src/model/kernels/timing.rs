//! Optional wall-time totals per kernel (`LORAEVAL_KERNEL_TIMES=1`), for seeing where a model step goes; read
//! with [`take_kernel_times`] (`examples/kernel_bench.rs --model` prints them). Off: one relaxed load per call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// 0: not read yet, 1: off, 2: on.
static STATE: AtomicU8 = AtomicU8::new(0);
static TOTALS: Mutex<BTreeMap<&'static str, (Duration, u64)>> = Mutex::new(BTreeMap::new());

fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var_os("LORAEVAL_KERNEL_TIMES").is_some_and(|v| v == "1");
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        state => state == 2,
    }
}

/// Runs `body`, adding its wall time to `kernel`'s total when timing is on. Callers time only outermost calls
/// (kernels do not nest), so the totals add up to at most the step's wall time.
pub(crate) fn timed<T>(kernel: &'static str, body: impl FnOnce() -> T) -> T {
    if !enabled() {
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
