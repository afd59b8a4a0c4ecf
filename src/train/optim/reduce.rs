//! Sums over f32 buffers, taken in f64 in index order so that they do not depend on threads.

/// Σ x².
pub(crate) fn sum_sq(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

/// Σ |x|.
pub(crate) fn sum_abs(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v).abs()).sum()
}

/// Σ a·b.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

/// Root mean square, rounded to f32 as torch's `norm(2) / sqrt(numel)` on an f32 tensor.
pub(crate) fn rms(x: &[f32]) -> f32 {
    let norm = sum_sq(x).sqrt() as f32;
    norm / (x.len() as f64).sqrt() as f32
}

/// x ← x · c.
pub(crate) fn scale(x: &mut [f32], c: f32) {
    x.iter_mut().for_each(|v| *v *= c);
}

/// The mean of `x`, rounded to f32.
pub(crate) fn mean(x: impl Iterator<Item = f32>, n: usize) -> f32 {
    (x.map(f64::from).sum::<f64>() / n as f64) as f32
}
