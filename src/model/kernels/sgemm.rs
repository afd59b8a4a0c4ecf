//! f32 matrix multiply `C (+)= A·B` for the AVX2 path (AVX2+FMA CPUs without AVX-512): BLIS-style packing and a
//! 6×16 register tile.
//!
//! Loops (BLIS order): B is packed once per call into 16-column panels (`[panel][k][16]`, zero-padded); each task
//! takes a block of at most [`MC`] rows and a range of panels, and for each block of [`KC`] depths packs its rows of A
//! into 6-row micro-panels (`[6-rows][k][6]`, ≈ 150 KiB, kept in L2), then walks the B panels (16 KiB each, kept
//! in L1) and, for each, all its A micro-panels. The 6×16 tile lives in 12 ymm accumulators: per depth step two
//! B loads, six A broadcasts and twelve FMAs. On the UNet's Linear shapes this reaches the ≈ 170 GFLOP/s of MKL
//! on 2 Zen 3 cores where the `gemm` crate stays at 115–125 (docs/perf.md, "sgemm").

use rayon::prelude::*;

use super::isa::{Cpu, Isa};
use super::storage::threads;

/// Rows of the register tile.
pub(crate) const MR: usize = 6;
/// Columns of the register tile (two 8-float vectors).
pub(crate) const NR: usize = 16;
/// Rows of A packed per task (a multiple of [`MR`]).
const MC: usize = 144;
/// Most depths packed at once: one B panel (`KC × 16` floats, 24 KiB) fits L1 beside an A micro-panel. The depth
/// is split into equal blocks of at most this (320 for the UNet's 320/640/1280 features).
const KC: usize = 384;

/// The depth block of a `k`-deep product: `k` split into equal parts of at most [`KC`], a multiple of 8 when it can.
fn depth_block(k: usize) -> usize {
    let parts = k.div_ceil(KC).max(1);
    k.div_ceil(parts).next_multiple_of(8).clamp(1, KC)
}

/// A strided matrix operand: element `(i, j)` at `ptr + i·row_stride + j·col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Operand {
    pub ptr: *const f32,
    pub row_stride: usize,
    pub col_stride: usize,
}

// SAFETY: an operand is only read, by tasks of one call while the caller's borrow is alive.
unsafe impl Send for Operand {}
unsafe impl Sync for Operand {}

impl Operand {
    /// A row-major matrix with rows `row_stride` apart.
    pub fn rows(data: &[f32], row_stride: usize) -> Self {
        Operand {
            ptr: data.as_ptr(),
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with rows `row_stride` apart (e.g. `Wᵀ` for a `[out, in]` weight).
    pub fn transposed(data: &[f32], row_stride: usize) -> Self {
        Operand {
            ptr: data.as_ptr(),
            row_stride: 1,
            col_stride: row_stride,
        }
    }

    #[inline(always)]
    unsafe fn at(&self, i: usize, j: usize) -> f32 {
        *self.ptr.add(i * self.row_stride + j * self.col_stride)
    }
}

/// The output: row-major rows `row_stride` apart.
#[derive(Clone, Copy)]
struct Output {
    ptr: *mut f32,
    row_stride: usize,
}

// SAFETY: tasks write disjoint tiles of the output.
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

/// Whether [`matmul`] uses this kernel on path `cpu`: on the AVX2 path only (the AVX-512 path has the `gemm`
/// crate's AVX-512 kernels, the portable path no SIMD code of this crate).
pub(crate) fn preferred(cpu: Cpu) -> bool {
    cpu.isa() == Isa::Avx2
}

/// B packed into 16-column panels: panel `p` holds `B[k][16p .. 16p + 16]` for every depth `k`, zero-padded. Only
/// made on a path with AVX2 + FMA, so holding one proves the CPU runs the kernel.
/// The buffer is borrowed from a per-thread pool and given back on drop, so packing a 50 MB weight on every call
/// costs no page faults (≈ 3 µs per 4 KiB page on the development VM).
pub(crate) struct PackedB {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

thread_local! {
    /// Buffers of dropped [`PackedB`]s of this thread, kept at their largest size.
    static PACKED_B_POOL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl PackedB {
    /// Packs the `k × n` operand `b`, panels in parallel when `parallel`. Panics unless `cpu` has AVX2 + FMA.
    ///
    /// # Safety
    /// `b` must address `k × n` readable values.
    pub unsafe fn new(cpu: Cpu, b: Operand, k: usize, n: usize, parallel: bool) -> Self {
        assert!(cpu.avx2(), "sgemm needs the AVX2 or AVX-512 path");
        let panels = n.div_ceil(NR);
        let len = panels * k * NR;
        let mut data = PACKED_B_POOL.with(|pool| std::mem::take(&mut *pool.borrow_mut()));
        if data.len() < len {
            data.resize(len, 0.0);
        }
        let pack = |(panel, dst): (usize, &mut [f32])| pack_b_panel(b, panel * NR, n, dst);
        let chunk = (k * NR).max(1);
        if parallel && panels > 1 {
            data[..len].par_chunks_mut(chunk).enumerate().for_each(pack);
        } else {
            data[..len].chunks_mut(chunk).enumerate().for_each(pack);
        }
        PackedB { data, k, n }
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Depths `k0 .. k0 + kc` of panel `panel`.
    fn block(&self, panel: usize, k0: usize) -> *const f32 {
        self.data[(panel * self.k + k0) * NR..].as_ptr()
    }
}

impl Drop for PackedB {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        PACKED_B_POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if data.len() > pool.len() {
                *pool = data;
            }
        });
    }
}

/// Copies columns `j0 .. j0 + 16` (those below `n`) of `b` into `dst` as `[k][16]`.
unsafe fn pack_b_panel(b: Operand, j0: usize, n: usize, dst: &mut [f32]) {
    let cols = NR.min(n - j0);
    if b.col_stride == 1 && cols == NR {
        for (kk, row) in dst.chunks_exact_mut(NR).enumerate() {
            let src = std::slice::from_raw_parts(b.ptr.add(kk * b.row_stride + j0), NR);
            row.copy_from_slice(src);
        }
        return;
    }
    if b.row_stride == 1 && cols == NR {
        // Columns of B are contiguous (rows of a `[n, k]` weight): 8×8 transposes.
        let k = dst.len() / NR;
        let full = k - k % 8;
        kernel::pack_transposed(
            b.ptr.add(j0 * b.col_stride),
            b.col_stride,
            full,
            dst.as_mut_ptr(),
        );
        for kk in full..k {
            for j in 0..NR {
                dst[kk * NR + j] = b.at(kk, j0 + j);
            }
        }
        return;
    }
    if cols < NR {
        dst.fill(0.0);
    }
    if b.row_stride == 1 {
        // Column j of B is contiguous: read it once, scatter with stride 16.
        for j in 0..cols {
            let src =
                std::slice::from_raw_parts(b.ptr.add((j0 + j) * b.col_stride), dst.len() / NR);
            for (d, &s) in dst[j..].iter_mut().step_by(NR).zip(src) {
                *d = s;
            }
        }
        return;
    }
    for (kk, row) in dst.chunks_exact_mut(NR).enumerate() {
        for (j, d) in row[..cols].iter_mut().enumerate() {
            *d = b.at(kk, j0 + j);
        }
    }
}

thread_local! {
    /// Per-thread packed block of A, reused across calls.
    static PACKED_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `C = init + A·B` for `A: m × k`, `B: k × n`, `C: m × n` row-major with rows `c_row_stride` apart; `accumulate`
/// keeps C's values as `init` (else they are overwritten). Runs on rayon's pool when `parallel`.
///
/// # Safety
/// The operands must address `m × k`, `k × n` and `m × n` valid values; C must not overlap A or B. Panics unless
/// `cpu` has AVX2 + FMA.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
    cpu: Cpu,
    (m, n, k): (usize, usize, usize),
    a: Operand,
    b: Operand,
    c: *mut f32,
    c_row_stride: usize,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let parallel = parallel && threads() > 1;
    let packed = PackedB::new(cpu, b, k, n, parallel);
    sgemm_packed(m, a, &packed, c, c_row_stride, accumulate, parallel);
}

/// [`sgemm`] with B already packed (which proves the CPU runs the kernel).
///
/// # Safety
/// As for [`sgemm`], with `b.k × b.n` for B.
pub(crate) unsafe fn sgemm_packed(
    m: usize,
    a: Operand,
    b: &PackedB,
    c: *mut f32,
    c_row_stride: usize,
    accumulate: bool,
    parallel: bool,
) {
    let out = Output {
        ptr: c,
        row_stride: c_row_stride,
    };
    if !parallel {
        let task = Task {
            rows: 0..m,
            panels: 0..b.panels(),
        };
        run_task(&task, a, b, out, accumulate);
        return;
    }
    let tasks = split_tasks(m, b.panels(), threads());
    tasks
        .par_iter()
        .for_each(|task| run_task(task, a, b, out, accumulate));
}

/// `C (+)= A·B` (C row-major, rows `c_row_stride` apart; `accumulate` keeps C's values) with this module's kernel
/// on the path where it is the better one ([`preferred`]) and the `gemm` crate elsewhere.
///
/// # Safety
/// As for [`sgemm`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    cpu: Cpu,
    (m, n, k): (usize, usize, usize),
    a: Operand,
    b: Operand,
    c: *mut f32,
    c_row_stride: usize,
    accumulate: bool,
    parallel: bool,
) {
    if preferred(cpu) {
        sgemm(cpu, (m, n, k), a, b, c, c_row_stride, accumulate, parallel);
        return;
    }
    let parallelism = if parallel && threads() > 1 {
        gemm::Parallelism::Rayon(threads())
    } else {
        gemm::Parallelism::None
    };
    gemm::gemm(
        m,
        n,
        k,
        c,
        1,
        c_row_stride as isize,
        accumulate,
        a.ptr,
        a.col_stride as isize,
        a.row_stride as isize,
        b.ptr,
        b.col_stride as isize,
        b.row_stride as isize,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        parallelism,
    );
}

/// A block of rows times a range of B panels.
struct Task {
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
}

/// Row blocks of at most [`MC`] rows, as many as a multiple of the thread count (equal work per thread), each split
/// into panel ranges until there are at least 2 tasks per thread.
fn split_tasks(m: usize, panels: usize, threads: usize) -> Vec<Task> {
    let wanted_blocks = m.div_ceil(MC).next_multiple_of(threads);
    let row_block = m.div_ceil(wanted_blocks).next_multiple_of(MR).min(MC);
    let row_blocks = m.div_ceil(row_block);
    let panel_parts = (2 * threads).div_ceil(row_blocks).clamp(1, panels);
    let panels_per_part = panels.div_ceil(panel_parts);
    let mut tasks = Vec::with_capacity(row_blocks * panel_parts);
    for r in 0..row_blocks {
        let rows = r * row_block..((r + 1) * row_block).min(m);
        for p in (0..panels).step_by(panels_per_part) {
            tasks.push(Task {
                rows: rows.clone(),
                panels: p..(p + panels_per_part).min(panels),
            });
        }
    }
    tasks
}

unsafe fn run_task(task: &Task, a: Operand, b: &PackedB, out: Output, accumulate: bool) {
    PACKED_A.with(|packed| {
        let mut packed = packed.borrow_mut();
        for rows0 in task.rows.clone().step_by(MC) {
            let rows = rows0..(rows0 + MC).min(task.rows.end);
            let depth = depth_block(b.k);
            for k0 in (0..b.k).step_by(depth) {
                let kc = depth.min(b.k - k0);
                pack_a(a, rows.clone(), k0, kc, &mut packed);
                let first_pass = k0 == 0 && !accumulate;
                block_product(&rows, &task.panels, (&packed, k0, kc), b, out, first_pass);
            }
            if b.k == 0 && !accumulate {
                zero_rows(out, rows, b.n);
            }
        }
    });
}

unsafe fn zero_rows(out: Output, rows: std::ops::Range<usize>, n: usize) {
    for i in rows {
        std::slice::from_raw_parts_mut(out.ptr.add(i * out.row_stride), n).fill(0.0);
    }
}

/// Rows `rows` × depths `k0 .. k0 + kc` of A as 6-row micro-panels `[k][6]`, zero-padded to a multiple of 6 rows.
unsafe fn pack_a(
    a: Operand,
    rows: std::ops::Range<usize>,
    k0: usize,
    kc: usize,
    dst: &mut Vec<f32>,
) {
    let micro_panels = rows.len().div_ceil(MR);
    dst.clear();
    dst.resize(micro_panels * kc * MR, 0.0);
    for (p, panel) in dst.chunks_exact_mut(kc * MR).enumerate() {
        let i0 = rows.start + p * MR;
        let valid = MR.min(rows.end - i0);
        if a.row_stride == 1 && valid == MR {
            // Rows of A are columns of a row-major matrix (e.g. pixels of an NCHW image): 6 contiguous values per
            // depth.
            for (kk, column) in panel.chunks_exact_mut(MR).enumerate() {
                let src = std::slice::from_raw_parts(a.ptr.add((k0 + kk) * a.col_stride + i0), MR);
                column.copy_from_slice(src);
            }
        } else if a.col_stride == 1 {
            for r in 0..valid {
                let src = std::slice::from_raw_parts(a.ptr.add((i0 + r) * a.row_stride + k0), kc);
                for (d, &s) in panel[r..].iter_mut().step_by(MR).zip(src) {
                    *d = s;
                }
            }
        } else {
            for (kk, column) in panel.chunks_exact_mut(MR).enumerate() {
                for (r, d) in column[..valid].iter_mut().enumerate() {
                    *d = a.at(i0 + r, k0 + kk);
                }
            }
        }
    }
}

/// All register tiles of one packed A block against the B panels `panels` at depths `k0 .. k0 + kc`.
unsafe fn block_product(
    rows: &std::ops::Range<usize>,
    panels: &std::ops::Range<usize>,
    (packed_a, k0, kc): (&[f32], usize, usize),
    b: &PackedB,
    out: Output,
    first_pass: bool,
) {
    for panel in panels.clone() {
        let bp = b.block(panel, k0);
        let j0 = panel * NR;
        let cols = NR.min(b.n - j0);
        for (p, ap) in packed_a.chunks_exact(kc * MR).enumerate() {
            let i0 = rows.start + p * MR;
            let valid_rows = MR.min(rows.end - i0);
            let c = out.ptr.add(i0 * out.row_stride + j0);
            if valid_rows == MR && cols == NR {
                kernel::tile(kc, ap.as_ptr(), bp, c, out.row_stride, first_pass);
            } else {
                let mut tile = [0f32; MR * NR];
                kernel::tile(kc, ap.as_ptr(), bp, tile.as_mut_ptr(), NR, true);
                for r in 0..valid_rows {
                    let dst = std::slice::from_raw_parts_mut(c.add(r * out.row_stride), cols);
                    for (d, &v) in dst.iter_mut().zip(&tile[r * NR..]) {
                        *d = if first_pass { v } else { *d + v };
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// `C[6×16] (+)= Ap · Bp` over `kc` depths: `ap` is `[k][6]`, `bp` is `[k][16]`, C rows `ldc` apart,
    /// overwritten when `overwrite`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(
        kc: usize,
        ap: *const f32,
        bp: *const f32,
        c: *mut f32,
        ldc: usize,
        overwrite: bool,
    ) {
        // C's rows are far apart (one pass per depth block, from L3): fetch them while the products run.
        for r in 0..MR {
            _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc + 15) as *const i8);
        }
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        for kk in 0..kc {
            let b0 = _mm256_loadu_ps(bp.add(kk * NR));
            let b1 = _mm256_loadu_ps(bp.add(kk * NR + 8));
            let a = ap.add(kk * MR);
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*a.add(r));
                acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let row = c.add(r * ldc);
            if overwrite {
                _mm256_storeu_ps(row, acc[0]);
                _mm256_storeu_ps(row.add(8), acc[1]);
            } else {
                _mm256_storeu_ps(row, _mm256_add_ps(acc[0], _mm256_loadu_ps(row)));
                _mm256_storeu_ps(
                    row.add(8),
                    _mm256_add_ps(acc[1], _mm256_loadu_ps(row.add(8))),
                );
            }
        }
    }

    /// `dst[kk·16 + j] = src[j·stride + kk]` for `j < 16`, `kk < k` (`k` a multiple of 8): 16 contiguous source
    /// rows (e.g. rows of a `[n, k]` weight) into a `[k][16]` panel, by 8×8 transposes.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn pack_transposed(src: *const f32, stride: usize, k: usize, dst: *mut f32) {
        for kk in (0..k).step_by(8) {
            for half in 0..2 {
                let rows = src.add(half * 8 * stride + kk);
                let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(rows.add(i * stride)));
                let t = transpose8(r);
                for (q, v) in t.iter().enumerate() {
                    _mm256_storeu_ps(dst.add((kk + q) * NR + half * 8), *v);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    pub(super) unsafe fn pack_transposed(_: *const f32, _: usize, _: usize, _: *mut f32) {
        unreachable!("sgemm::runnable() is false on this architecture")
    }

    pub(super) unsafe fn tile(
        _: usize,
        _: *const f32,
        _: *const f32,
        _: *mut f32,
        _: usize,
        _: bool,
    ) {
        unreachable!("sgemm::runnable() is false on this architecture")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// `init + A·B` in f64 for row-major A (`m × k`) and B (`k × n`).
    fn reference(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], init: &[f32]) -> Vec<f32> {
        let mut out = init.to_vec();
        for i in 0..m {
            for j in 0..n {
                let sum: f64 = (0..k)
                    .map(|kk| a[i * k + kk] as f64 * b[kk * n + j] as f64)
                    .sum();
                out[i * n + j] += sum as f32;
            }
        }
        out
    }

    /// The `rows × cols` row-major matrix `values` stored transposed (`cols × rows`).
    fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..cols * rows)
            .map(|t| values[(t % rows) * cols + t / rows])
            .collect()
    }

    /// The operand for a logical row-major `rows × cols` matrix, stored as given or transposed.
    fn operand(stored: &[f32], rows: usize, cols: usize, transposed: bool) -> Operand {
        if transposed {
            Operand::transposed(stored, rows)
        } else {
            Operand::rows(stored, cols)
        }
    }

    fn check(
        m: usize,
        n: usize,
        k: usize,
        (a_t, b_t): (bool, bool),
        accumulate: bool,
        parallel: bool,
    ) {
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let init = if accumulate {
            values(m * n, 3)
        } else {
            vec![0.0; m * n]
        };
        let expected = reference(m, n, k, &a, &b, &init);
        let mut c = if accumulate {
            init.clone()
        } else {
            vec![f32::NAN; m * n]
        };
        let a_stored = if a_t { transpose(&a, m, k) } else { a.clone() };
        let b_stored = if b_t { transpose(&b, k, n) } else { b.clone() };
        unsafe {
            sgemm(
                Cpu::for_test(Isa::Avx2),
                (m, n, k),
                operand(&a_stored, m, k, a_t),
                operand(&b_stored, k, n, b_t),
                c.as_mut_ptr(),
                n,
                accumulate,
                parallel,
            );
        }
        for (index, (&got, &want)) in c.iter().zip(&expected).enumerate() {
            let tolerance = 1e-5 * (k as f32).sqrt().max(1.0) * 4.0;
            assert!(
                (got - want).abs() <= tolerance,
                "{m}x{n}x{k} (transposed A {a_t}, B {b_t}, accumulate {accumulate}): C[{index}] = {got}, want {want}"
            );
        }
    }

    #[test]
    #[cfg_attr(not(loraeval_cpu_avx2), ignore = "this CPU lacks avx2/fma")]
    fn matches_reference_on_odd_shapes() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (5, 15, 3),
            (6, 16, 7),
            (7, 17, 300),
            (150, 40, 513),
            (13, 33, 0),
        ] {
            for layout in [(false, false), (false, true), (true, false), (true, true)] {
                for accumulate in [false, true] {
                    for parallel in [false, true] {
                        check(m, n, k, layout, accumulate, parallel);
                    }
                }
            }
        }
    }

    #[test]
    fn tasks_cover_every_row_and_panel_once() {
        for &(m, panels, threads) in &[
            (1, 1, 2),
            (512, 80, 2),
            (8192, 20, 2),
            (100, 3, 4),
            (7, 1, 8),
        ] {
            let mut seen = vec![0u8; m * panels];
            for task in split_tasks(m, panels, threads) {
                for i in task.rows.clone() {
                    for p in task.panels.clone() {
                        seen[i * panels + p] += 1;
                    }
                }
            }
            assert!(
                seen.iter().all(|&s| s == 1),
                "m {m}, panels {panels}, threads {threads}"
            );
        }
    }
}
