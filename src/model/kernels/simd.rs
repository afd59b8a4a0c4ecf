//! Vectorised helpers for the online softmax of the attention kernel, on key-major score tiles: column max,
//! `exp2(x − m)` with column sums, row scaling of a column-major block.
//!
//! Written as plain element-wise loops over query rows (contiguous) that LLVM turns into SIMD; each helper takes the
//! call's path (`isa::Cpu`) and runs the copy compiled for AVX-512 or AVX2+FMA on those paths (portable code
//! otherwise).

/// `2^x` for `x <= 0` (inputs below −126 give 0): rounding split `x = n + f`, `|f| ≤ 1/2`, degree-7 Taylor
/// polynomial of `e^(f ln 2)` (relative error ≈ 1e-8, below f32 rounding).
#[inline(always)]
pub(crate) fn exp2_nonpositive(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer kept in the low mantissa bits.
    const C: [f32; 8] = [
        1.0,
        std::f32::consts::LN_2,
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
    // Fused multiply-adds: one instruction each in the AVX2+FMA / AVX-512 copies of the callers (a libm call in
    // the portable copy on x86-64 CPUs without FMA, which are also too old for the rest of the fast paths).
    let p = C[7];
    let p = p.mul_add(f, C[6]);
    let p = p.mul_add(f, C[5]);
    let p = p.mul_add(f, C[4]);
    let p = p.mul_add(f, C[3]);
    let p = p.mul_add(f, C[2]);
    let p = p.mul_add(f, C[1]);
    let p = p.mul_add(f, C[0]);
    let scale = f32::from_bits((((n_int + 127).max(0)) as u32) << 23);
    p * scale
}

/// `out[r] = max(out[r], max_j tile[j·stride + r])` over `keys` rows of a key-major tile.
#[inline(always)]
fn column_max_generic(tile: &[f32], keys: usize, stride: usize, out: &mut [f32]) {
    let rows = out.len();
    for j in 0..keys {
        let row = &tile[j * stride..j * stride + rows];
        for (o, &v) in out.iter_mut().zip(row) {
            *o = if v > *o { v } else { *o };
        }
    }
}

/// `tile[j·stride + r] = 2^(tile[j·stride + r] − m[r])` for `keys` rows, adding each row's values into `sums`.
#[inline(always)]
fn column_exp2_sub_sum_generic(
    tile: &mut [f32],
    keys: usize,
    stride: usize,
    m: &[f32],
    sums: &mut [f32],
) {
    let rows = m.len();
    for j in 0..keys {
        let row = &mut tile[j * stride..j * stride + rows];
        for ((v, &mr), s) in row.iter_mut().zip(m).zip(sums.iter_mut()) {
            *v = exp2_nonpositive(*v - mr);
            *s += *v;
        }
    }
}

/// `columns[c·stride + r] *= factors[r]` for every column `c` of a column-major block of `factors.len()` rows.
#[inline(always)]
fn scale_rows_generic(columns: &mut [f32], stride: usize, factors: &[f32]) {
    for column in columns.chunks_mut(stride) {
        for (v, &f) in column.iter_mut().zip(factors) {
            *v *= f;
        }
    }
}

macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident, $generic:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        /// Runs the copy compiled for the path `cpu` names.
        pub(crate) fn $name(cpu: $crate::model::kernels::isa::Cpu, $($arg: $ty),*) -> $ret {
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
                if cpu.avx512() {
                    // SAFETY: a `Cpu` token names only a path the CPU runs.
                    return unsafe { avx512($($arg),*) };
                }
                if cpu.avx2() {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = cpu;
            $generic($($arg),*)
        }
    };
}

pub(crate) use dispatch;

dispatch!(
    /// Column-wise running max of a key-major score tile (see `column_max_generic`).
    column_max, column_max_generic, (tile: &[f32], keys: usize, stride: usize, out: &mut [f32]) -> ()
);
dispatch!(
    /// Column-wise `2^(x − m)` with sums (see `column_exp2_sub_sum_generic`).
    column_exp2_sub_sum, column_exp2_sub_sum_generic,
    (tile: &mut [f32], keys: usize, stride: usize, m: &[f32], sums: &mut [f32]) -> ()
);
dispatch!(
    /// Row scaling of a column-major block (see `scale_rows_generic`).
    scale_rows, scale_rows_generic, (columns: &mut [f32], stride: usize, factors: &[f32]) -> ()
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

    crate::model::kernels::isa::test_each_path!(
        /// The column helpers on each path agree with scalar code.
        fn column_helpers_agree_with_scalar_code(cpu) {
            // 3 keys × 37 query rows in a tile whose rows are 40 apart (the last 3 entries of each row are unused).
            let (keys, rows, stride) = (3, 37, 40);
            let tile: Vec<f32> = (0..keys * stride)
                .map(|i| ((i * 7919) % 101) as f32 * 0.1 - 5.0)
                .collect();
            let mut m = vec![-1.0f32; rows];
            column_max(cpu, &tile, keys, stride, &mut m);
            for (r, &mr) in m.iter().enumerate() {
                let want = (0..keys)
                    .map(|j| tile[j * stride + r])
                    .fold(-1.0f32, f32::max);
                assert_eq!(mr, want, "row {r}");
            }
            let mut probs = tile.clone();
            let mut sums = vec![1.0f32; rows];
            column_exp2_sub_sum(cpu, &mut probs, keys, stride, &m, &mut sums);
            for r in 0..rows {
                let mut want_sum = 1.0f32;
                for j in 0..keys {
                    let want = (tile[j * stride + r] - m[r]).exp2();
                    let got = probs[j * stride + r];
                    assert!((got - want).abs() <= 1e-6 * want, "{got} vs {want}");
                    want_sum += want;
                }
                assert!((sums[r] - want_sum).abs() <= 1e-5, "row {r}");
            }
            assert_eq!(
                probs[rows..stride],
                tile[rows..stride],
                "entries past `rows` untouched"
            );
            let mut columns = vec![1.0f32; 2 * stride];
            let factors: Vec<f32> = (0..rows).map(|r| r as f32).collect();
            scale_rows(cpu, &mut columns, stride, &factors);
            assert_eq!(columns[stride + 5], 5.0);
            assert_eq!(columns[rows], 1.0, "padding rows untouched");
        }
    );
}
