//! The two products of the fused attention on the AVX2 path (AVX2 + FMA CPUs without AVX-512; the other paths use
//! `gemm`'s kernels), with no packing of the score tile: scores `S = K·Qᵀ` key-major with the running column max taken from
//! the registers, and `O += Pᵀ·V` reading the key-major probabilities in place.
//!
//! Both are 16 query rows (2 ymm) × 6 keys / value columns register blocks (12 accumulators), the layout the
//! attention kernel already uses: `S[j·lanes + r]`, `O[c·lanes + r]`, query rows padded to a multiple of 16 with
//! zero queries whose results are never read. The broadcast operands (keys, values) are first packed per key block
//! into groups of 6 (`pack_keys`, `pack_values`), so that the kernels read them as one contiguous stream.

#[cfg(target_arch = "x86_64")]
pub(crate) use imp::{scores_with_max, weighted_values};

/// Query rows per register block.
pub(crate) const LANES: usize = 16;

/// Keys or value columns per register block.
const NB: usize = 6;

/// Floats [`pack_keys`] writes for `keys` keys of `d` values.
pub(crate) fn packed_keys_len(keys: usize, d: usize) -> usize {
    keys.div_ceil(NB) * d * NB
}

/// Floats [`pack_values`] writes for `keys` keys of `dv` values.
pub(crate) fn packed_values_len(keys: usize, dv: usize) -> usize {
    dv.div_ceil(NB) * keys * NB
}

/// Keys `0..keys` (rows `k_rs` apart, `d` values each) as groups of 6 `[group][c][6]`, the last group padded
/// with copies of the last key: the score kernel's broadcasts then read one contiguous stream (in the token
/// layout the rows are 1280 bytes apart and 512 of them fall into 16 L1 sets).
pub(crate) fn pack_keys(k: &[f32], k_rs: usize, d: usize, keys: usize, dst: &mut [f32]) {
    assert!(keys > 0 && k.len() >= (keys - 1) * k_rs + d);
    let dst = &mut dst[..packed_keys_len(keys, d)];
    for (g, group) in dst.chunks_exact_mut(d * NB).enumerate() {
        for j in 0..NB {
            let key = (g * NB + j).min(keys - 1);
            for (c, &value) in k[key * k_rs..][..d].iter().enumerate() {
                group[c * NB + j] = value;
            }
        }
    }
}

/// Value columns `0..dv` of keys `0..keys` (rows `v_rs` apart) as groups of 6 columns `[group][key][6]`, the
/// last group padded with copies of the last column.
pub(crate) fn pack_values(v: &[f32], v_rs: usize, dv: usize, keys: usize, dst: &mut [f32]) {
    assert!(keys > 0 && dv > 0 && v.len() >= (keys - 1) * v_rs + dv);
    let dst = &mut dst[..packed_values_len(keys, dv)];
    for (g, group) in dst.chunks_exact_mut(keys * NB).enumerate() {
        for (j, out) in group.chunks_exact_mut(NB).enumerate() {
            let row = &v[j * v_rs..][..dv];
            for (c, o) in out.iter_mut().enumerate() {
                *o = row[(g * NB + c).min(dv - 1)];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{packed_keys_len, packed_values_len, LANES, NB};
    use crate::model::kernels::isa::Cpu;

    /// `s[j·stride + r] = Σ_c k[j·k_rs + c]·qt[c·stride + r]` for `keys` keys and the query rows `r < max.len()`
    /// rounded up to 16 (`qt`: the queries transposed, `d × stride`), and `max[r] = max(max[r], s[j·stride + r])`
    /// over all keys for `r < max.len()`. Panics unless `cpu` has AVX2 + FMA.
    pub(crate) fn scores_with_max(
        cpu: Cpu,
        (qt, stride): (&[f32], usize),
        packed_keys: &[f32],
        d: usize,
        keys: usize,
        s: &mut [f32],
        max: &mut [f32],
    ) {
        let rows = max.len().next_multiple_of(LANES);
        assert!(cpu.avx2() && rows <= stride && qt.len() >= d * stride);
        assert!(
            keys > 0 && packed_keys.len() >= packed_keys_len(keys, d) && s.len() >= keys * stride
        );
        // SAFETY: AVX2 and FMA are available; every pointer below stays inside the slices checked above.
        unsafe { scores_avx2(qt, packed_keys, d, keys, s, max, (rows, stride)) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn scores_avx2(
        qt: &[f32],
        packed_keys: &[f32],
        d: usize,
        keys: usize,
        s: &mut [f32],
        max: &mut [f32],
        (rows, lanes): (usize, usize),
    ) {
        for r0 in (0..rows).step_by(LANES) {
            let q = qt.as_ptr().add(r0);
            let mut m0 = _mm256_set1_ps(f32::NEG_INFINITY);
            let mut m1 = m0;
            for j0 in (0..keys).step_by(NB) {
                let valid = NB.min(keys - j0);
                // Keys past the last one repeat it (never stored).
                let group = packed_keys.as_ptr().add(j0 * d);
                let mut acc = [_mm256_setzero_ps(); 2 * NB];
                for c in 0..d {
                    let a0 = _mm256_loadu_ps(q.add(c * lanes));
                    let a1 = _mm256_loadu_ps(q.add(c * lanes + 8));
                    for j in 0..NB {
                        let b = _mm256_broadcast_ss(&*group.add(c * NB + j));
                        acc[2 * j] = _mm256_fmadd_ps(a0, b, acc[2 * j]);
                        acc[2 * j + 1] = _mm256_fmadd_ps(a1, b, acc[2 * j + 1]);
                    }
                }
                for j in 0..valid {
                    let dst = s.as_mut_ptr().add((j0 + j) * lanes + r0);
                    _mm256_storeu_ps(dst, acc[2 * j]);
                    _mm256_storeu_ps(dst.add(8), acc[2 * j + 1]);
                    m0 = _mm256_max_ps(m0, acc[2 * j]);
                    m1 = _mm256_max_ps(m1, acc[2 * j + 1]);
                }
            }
            let mut block = [0f32; LANES];
            _mm256_storeu_ps(block.as_mut_ptr(), m0);
            _mm256_storeu_ps(block.as_mut_ptr().add(8), m1);
            for (m, &b) in max.iter_mut().skip(r0).zip(&block) {
                *m = m.max(b);
            }
        }
    }

    /// `o[c·stride + r] += Σ_j p[j·stride + r]·v[j·v_rs + c]` for `keys` keys, `dv` value columns and `rows` rows
    /// rounded up to 16. Panics unless `cpu` has AVX2 + FMA.
    pub(crate) fn weighted_values(
        cpu: Cpu,
        p: &[f32],
        (rows, stride): (usize, usize),
        packed_values: &[f32],
        keys: usize,
        dv: usize,
        o: &mut [f32],
    ) {
        let rows = rows.next_multiple_of(LANES);
        assert!(cpu.avx2() && rows <= stride && dv > 0 && o.len() >= dv * stride);
        assert!(
            keys > 0
                && packed_values.len() >= packed_values_len(keys, dv)
                && p.len() >= keys * stride
        );
        // SAFETY: AVX2 and FMA are available; every pointer below stays inside the slices checked above.
        unsafe { weighted_values_avx2(p, packed_values, keys, dv, o, (rows, stride)) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn weighted_values_avx2(
        p: &[f32],
        packed_values: &[f32],
        keys: usize,
        dv: usize,
        o: &mut [f32],
        (rows, lanes): (usize, usize),
    ) {
        for r0 in (0..rows).step_by(LANES) {
            for c0 in (0..dv).step_by(NB) {
                let valid = NB.min(dv - c0);
                // Columns past the last one repeat it (never stored).
                let group = packed_values.as_ptr().add(c0 * keys);
                let mut acc = [_mm256_setzero_ps(); 2 * NB];
                for j in 0..keys {
                    let a = p.as_ptr().add(j * lanes + r0);
                    let a0 = _mm256_loadu_ps(a);
                    let a1 = _mm256_loadu_ps(a.add(8));
                    let row = group.add(j * NB);
                    for c in 0..NB {
                        let b = _mm256_broadcast_ss(&*row.add(c));
                        acc[2 * c] = _mm256_fmadd_ps(a0, b, acc[2 * c]);
                        acc[2 * c + 1] = _mm256_fmadd_ps(a1, b, acc[2 * c + 1]);
                    }
                }
                for c in 0..valid {
                    let dst = o.as_mut_ptr().add((c0 + c) * lanes + r0);
                    _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), acc[2 * c]));
                    let dst = dst.add(8);
                    _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), acc[2 * c + 1]));
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn scores_with_max(
    _: super::isa::Cpu,
    _: (&[f32], usize),
    _: &[f32],
    _: usize,
    _: usize,
    _: &mut [f32],
    _: &mut [f32],
) {
    unreachable!("the AVX2 path does not exist on this architecture")
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn weighted_values(
    _: super::isa::Cpu,
    _: &[f32],
    _: (usize, usize),
    _: &[f32],
    _: usize,
    _: usize,
    _: &mut [f32],
) {
    unreachable!("the AVX2 path does not exist on this architecture")
}
