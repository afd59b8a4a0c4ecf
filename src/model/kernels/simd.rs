//! Vectorised row helpers for the softmax of the attention kernel: max, `exp2(x − m)` with its sum, scaling.
//!
//! Written as plain loops over fixed-width lane arrays that LLVM turns into SIMD; each public helper dispatches at
//! run time to a copy compiled for AVX-512 or AVX2+FMA when the CPU has it (portable code otherwise).

const LANES: usize = 16;

/// `2^x` for `x <= 0` (inputs below −126 give 0): rounding split `x = n + f`, `|f| ≤ 1/2`, degree-7 Taylor
/// polynomial of `e^(f ln 2)` (relative error ≈ 1e-8, below f32 rounding).
#[inline(always)]
fn exp2_nonpositive(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer kept in the low mantissa bits.
    const C: [f32; 8] = [
        1.0,
        0.693_147_2,
        0.240_226_5,
        0.055_504_11,
        0.009_618_129,
        0.001_333_355_8,
        0.000_154_035_3,
        0.000_015_252_734,
    ];
    let x = x.max(-127.0);
    let shifted = x + MAGIC;
    let n = shifted - MAGIC;
    let f = x - n;
    let n_int = shifted.to_bits() as i32 - MAGIC.to_bits() as i32;
    let p = C[7];
    let p = p * f + C[6];
    let p = p * f + C[5];
    let p = p * f + C[4];
    let p = p * f + C[3];
    let p = p * f + C[2];
    let p = p * f + C[1];
    let p = p * f + C[0];
    let scale = f32::from_bits((((n_int + 127).max(0)) as u32) << 23);
    p * scale
}

#[inline(always)]
fn max_generic(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in acc.iter().chain(tail) {
        m = if v > m { v } else { m };
    }
    m
}

#[inline(always)]
fn exp2_sub_sum_generic(row: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk.iter_mut()) {
            *v = exp2_nonpositive(*v - m);
            *a += *v;
        }
    }
    let mut sum = 0f32;
    for v in chunks.into_remainder() {
        *v = exp2_nonpositive(*v - m);
        sum += *v;
    }
    sum + acc.iter().sum::<f32>()
}

#[inline(always)]
fn scale_generic(row: &mut [f32], factor: f32) {
    for v in row {
        *v *= factor;
    }
}

macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident, $generic:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) -> $ret {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports the enabled features.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

dispatch!(
    /// Largest value of `row` (−∞ for an empty row).
    row_max, max_generic, (row: &[f32]) -> f32
);
dispatch!(
    /// Replaces each `x` of `row` by `2^(x − m)` (`m` ≥ every `x`) and returns their sum.
    exp2_sub_sum, exp2_sub_sum_generic, (row: &mut [f32], m: f32) -> f32
);
dispatch!(
    /// Multiplies `row` by `factor`.
    scale, scale_generic, (row: &mut [f32], factor: f32) -> ()
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp2_matches_std_to_f32_rounding() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let x = -(i as f32) * 0.0006;
            let got = exp2_nonpositive(x);
            let want = x.exp2();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp2_nonpositive(-200.0), 0.0);
        assert_eq!(exp2_nonpositive(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn row_helpers_agree_with_scalar_code() {
        let mut row: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 * 0.1 - 5.0)
            .collect();
        let m = row_max(&row);
        assert_eq!(m, row.iter().cloned().fold(f32::NEG_INFINITY, f32::max));
        let want: Vec<f32> = row.iter().map(|x| (x - m).exp2()).collect();
        let sum = exp2_sub_sum(&mut row, m);
        for (g, w) in row.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6 * w.abs(), "{g} vs {w}");
        }
        assert!((sum - want.iter().sum::<f32>()).abs() < 1e-5);
        scale(&mut row, 2.0);
        assert!((row[3] - 2.0 * want[3]).abs() < 1e-6);
    }
}
