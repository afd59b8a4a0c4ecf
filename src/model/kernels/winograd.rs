//! Winograd convolution (3×3, stride 1, padding 1, NCHW f32) on AVX2 + FMA or AVX-512: F(4×4, 3×3) (36
//! multiplies per 4×4 output tile instead of 144: 4× fewer FLOPs than direct), and F(2×2, 3×3) (16 per 2×2 tile:
//! 2.25× fewer) on images too small to fill 16 tiles of 4×4.
//!
//! With `d` an (m+2)×(m+2) input patch, `g` a 3×3 filter and `Y` the m×m output tile (Lavin & Gray 2015):
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, summed over input channels before the output transform.
//! F(2×2): `Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]`, `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]`,
//! `Aᵀ = [[1,1,1,0],[0,1,−1,−1]]`: adds and halvings only (relative error ≈ 6e-7 on 130 channels).
//! F(4×4), points 0, ±1, ±2, ∞: `Bᵀ` rows `[4,0,−5,0,1,0] [0,−4,−4,1,1,0] [0,4,−4,−1,1,0] [0,−2,−1,2,1,0]
//! [0,2,−1,−2,1,0] [0,4,0,−5,0,1]`, `G` in [`filter_lanes_f4`], `Aᵀ` rows `[1,1,1,1,1,0] [0,1,−1,2,−2,0]
//! [0,1,1,4,4,0] [0,1,−1,8,−8,1]`: larger constants, so ≈ 10× the rounding error of F(2×2) (≈ 8e-6 relative on
//! 130 channels; 1.8e-5 on a full SD1.5 UNet step's output, docs/perf.md).
//!
//! Tiles are handled in *runs* of 16 horizontally adjacent tiles of one tile row (one zmm lane per tile). A task
//! takes a *panel* of up to 4 runs (64 tiles) and a range of output channels:
//! 1. input transform: for every input channel, the m+2 input rows under a run are copied (zero padding,
//!    GroupNorm and SiLU or ×2 nearest upsampling applied as in the direct kernel), split into overlapping
//!    patches and combined into the (m+2)² values `V[ξ][c][tile]` (ξ = (m+2)·i + j);
//! 2. for each ξ a matrix product `M[ξ][k][tile] = Σ_c U[ξ][k][c]·V[ξ][c][tile]` by a register-blocked
//!    micro-kernel over 6 output channels (filters transformed once per call, 8 at a time in vector lanes, into
//!    `U[ξ][k/6][c][6]`), input channels in L1-sized passes;
//! 3. output transform of `M` into m×m tiles, plus bias / channel shift / residual, masked stores.
//!
//! The products run on AVX-512F on the AVX-512 path (the direct kernel's 64 × 6 micro-kernel) and on AVX2 + FMA on
//! the AVX2 path (16 × 6); the transforms are plain Rust compiled for the same instruction set. Only compiled in on
//! x86-64 and only used on those two paths (`isa.rs`).

pub(crate) use imp::conv2d_winograd;

use super::direct::DirectShape;

/// Whether the Winograd kernel computes this convolution: 3×3, padding 1 (stride 1 is implied by `DirectShape`).
pub(crate) fn supports(s: &DirectShape) -> bool {
    s.kh == 3 && s.kw == 3 && s.pad == 1
}

/// Tiles per run (one zmm lane each).
const RUN: usize = 16;
/// Runs per panel: a panel is the micro-kernel's 64 positions.
const RUNS_PER_PANEL: usize = 4;

/// 16 consecutive output tiles (`count` ≤ 16 of them real) of one image in row-major tile order, starting at
/// tile `(tile_row, first_tile)`. On images at least 16 tiles wide a run stays in one tile row (the vectorised
/// path); on narrower ones it continues on the next tile rows, so every lane still holds a tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TileRun {
    pub image: usize,
    pub tile_row: usize,
    pub first_tile: usize,
    pub count: usize,
}

impl TileRun {
    /// Whether all tiles of the run lie in its first tile row.
    pub fn in_one_row(&self, tiles_w: usize) -> bool {
        self.first_tile + self.count <= tiles_w
    }
}

/// Every run of a call with `m`×`m` output tiles, image by image, in tile order.
pub(crate) fn tile_runs(s: &DirectShape, m: usize) -> Vec<TileRun> {
    let (tiles_h, tiles_w) = (s.oh().div_ceil(m), s.ow().div_ceil(m));
    let mut runs = Vec::new();
    for image in 0..s.batch {
        if tiles_w >= RUN {
            for tile_row in 0..tiles_h {
                for first_tile in (0..tiles_w).step_by(RUN) {
                    runs.push(TileRun {
                        image,
                        tile_row,
                        first_tile,
                        count: RUN.min(tiles_w - first_tile),
                    });
                }
            }
        } else {
            let tiles = tiles_h * tiles_w;
            for first in (0..tiles).step_by(RUN) {
                runs.push(TileRun {
                    image,
                    tile_row: first / tiles_w,
                    first_tile: first % tiles_w,
                    count: RUN.min(tiles - first),
                });
            }
        }
    }
    runs
}

/// Filters transformed at once by [`filter_lanes_f2`] / [`filter_lanes_f4`] (one per vector lane).
pub(crate) const LANES: usize = 8;

/// `G g Gᵀ` of [`LANES`] 3×3 filters for F(2×2, 3×3): `g[k][lane]` (k = ky·3 + kx) in, `u[ξ][lane]` out
/// (ξ = 4i + j), with `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]`.
pub(crate) fn filter_lanes_f2(g: &[[f32; LANES]; 9]) -> [[f32; LANES]; 36] {
    // Applies G to (g0, g1, g2) lane by lane.
    let apply = |g0: &[f32; LANES], g1: &[f32; LANES], g2: &[f32; LANES]| {
        let mut t = [[0f32; LANES]; 4];
        for l in 0..LANES {
            t[0][l] = g0[l];
            t[1][l] = 0.5 * (g0[l] + g1[l] + g2[l]);
            t[2][l] = 0.5 * (g0[l] - g1[l] + g2[l]);
            t[3][l] = g2[l];
        }
        t
    };
    sandwich(g, apply)
}

/// `G g Gᵀ` of [`LANES`] 3×3 filters for F(4×4, 3×3) (Lavin & Gray 2015, points 0, ±1, ±2, ∞): `g[k][lane]` in,
/// `u[ξ][lane]` out (ξ = 6i + j), with `G = [[¼,0,0],[−⅙,−⅙,−⅙],[−⅙,⅙,−⅙],[1⁄24,1⁄12,⅙],[1⁄24,−1⁄12,⅙],[0,0,1]]`.
pub(crate) fn filter_lanes_f4(g: &[[f32; LANES]; 9]) -> [[f32; LANES]; 36] {
    let apply = |g0: &[f32; LANES], g1: &[f32; LANES], g2: &[f32; LANES]| {
        let mut t = [[0f32; LANES]; 6];
        for l in 0..LANES {
            let (outer, middle) = (-(g0[l] + g2[l]) / 6.0, g1[l] / 6.0);
            let (weighted, half_middle) = ((g0[l] + 4.0 * g2[l]) / 24.0, g1[l] / 12.0);
            t[0][l] = 0.25 * g0[l];
            t[1][l] = outer - middle;
            t[2][l] = outer + middle;
            t[3][l] = weighted + half_middle;
            t[4][l] = weighted - half_middle;
            t[5][l] = g2[l];
        }
        t
    };
    sandwich(g, apply)
}

/// `G g Gᵀ` lane by lane, with `apply` computing `G (g0, g1, g2)ᵀ` (A values) for 3 lane vectors: `u[A·i + j]`.
#[inline(always)]
fn sandwich<const A: usize>(
    g: &[[f32; LANES]; 9],
    apply: impl Fn(&[f32; LANES], &[f32; LANES], &[f32; LANES]) -> [[f32; LANES]; A],
) -> [[f32; LANES]; 36] {
    // columns[x][i] = (G g)[i][x]
    let columns = [
        apply(&g[0], &g[3], &g[6]),
        apply(&g[1], &g[4], &g[7]),
        apply(&g[2], &g[5], &g[8]),
    ];
    let mut u = [[0f32; LANES]; 36];
    for i in 0..A {
        let row = apply(&columns[0][i], &columns[1][i], &columns[2][i]);
        u[A * i..A * (i + 1)].copy_from_slice(&row);
    }
    u
}

mod imp {
    use std::arch::x86_64::*;

    use rayon::prelude::*;

    use super::{filter_lanes_f2, filter_lanes_f4, tile_runs, TileRun, LANES, RUN, RUNS_PER_PANEL};
    use crate::model::kernels::direct::{micro_kernel, DirectIo, DirectShape, CO_BLOCK, PANEL};
    use crate::model::kernels::isa::Cpu;
    use crate::model::kernels::storage::SharedMut;

    /// Input channels per pass of the micro-kernel (their `V` rows for one ξ: 64 × 64 floats = 16 KiB, in L1).
    const CHANNELS_PER_PASS: usize = 64;
    /// Calls with at most this many panels take the small-image path (`Job::run_small`): measured on 640 channels
    /// at 16×16, batch 2 (2 panels): 16 ms vs 25 ms; on 320 channels at 32×32 (8 panels) it was slower (23 vs 16).
    const SMALL_MAX_PANELS: usize = 2;
    /// Small-image path: output-channel blocks whose accumulators `M` (F(2×2), 2 panels: 48 KiB per block; F(4×4),
    /// 1 panel: 54 KiB) stay in L2 while the input channels are walked in passes of [`SMALL_CHANNELS`] (their `V`
    /// for all ξ: 256 / 288 KiB, also in L2). The whole `V` is read from L3 once per group. (Passes of 16–64 and
    /// groups of 1–8 measured the same within noise on 1280 channels at 16×16 with F(4×4).)
    const SMALL_GROUP: usize = 4;
    const SMALL_CHANNELS: usize = 32;
    /// Floats (one cache line) added to each ξ plane of `V` and `M`: a transform touches the same lane of all 16
    /// or 36 planes, and planes of `c_in · 64` floats (a multiple of 4 KiB) would put those lines in one L1 set.
    const PAD: usize = 16;

    /// Floats per ξ plane of `V` (`c_in` rows of [`PANEL`] lanes, plus [`PAD`]).
    fn v_plane(c_in: usize) -> usize {
        c_in * PANEL + PAD
    }

    /// Floats per row of the input-transform scratch (m·16 tiles + 2 columns of overlap used: 34 or 66).
    const ROW: usize = 80;

    /// 16 floats on a 64-byte boundary: the element of the scratch buffers, so `M` can be used in place as the
    /// AVX-512 micro-kernel's `[__m512; 24]` accumulators.
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct Vector([f32; 16]);

    thread_local! {
        /// Per-thread `V` and `M` buffers, reused across calls.
        static SCRATCH: std::cell::RefCell<(Vec<Vector>, Vec<Vector>)> =
            const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }

    /// `buffer` with room for at least `floats` floats; returns its start. Old contents are kept (callers write
    /// everything they read, except lanes whose results are never stored).
    fn scratch(buffer: &mut Vec<Vector>, floats: usize) -> *mut f32 {
        let vectors = floats.div_ceil(16);
        if buffer.len() < vectors {
            buffer.resize(vectors, Vector([0.0; 16]));
        }
        buffer.as_mut_ptr() as *mut f32
    }

    /// Same contract as `direct::conv2d_direct` for 3×3, padding-1 convolutions (`super::supports`).
    /// Panics unless `cpu` has AVX2 + FMA; the products use AVX-512F on the AVX-512 path. Small images (at most [`SMALL_MAX_PANELS`] panels of 2×2 tiles)
    /// take the small-image path (filters transformed on the fly): F(4×4, 3×3) when its tiles fill a run, F(2×2,
    /// 3×3) below; larger images the large path with F(4×4, 3×3).
    pub(crate) fn conv2d_winograd(cpu: Cpu, s: &DirectShape, io: DirectIo, out: &mut [f32]) {
        assert!(super::supports(s), "conv2d_winograd takes 3×3, padding 1");
        assert!(cpu.avx2(), "conv2d_winograd needs the AVX2 or AVX-512 path");
        let (sh, sw) = s.stored_hw();
        assert!(!s.upsample || (s.h.is_multiple_of(2) && s.w.is_multiple_of(2)));
        assert!(!s.upsample || io.transform.is_none());
        assert_eq!(io.input.len(), s.batch * s.c_in * sh * sw);
        assert_eq!(io.weight.len(), s.c_out * s.c_in * 9);
        assert_eq!(io.bias.len(), s.batch * s.c_out);
        assert_eq!(out.len(), s.batch * s.c_out * s.oh() * s.ow());
        if let Some(r) = io.residual {
            assert_eq!(r.len(), out.len());
        }
        if let Some((affines, _)) = io.transform {
            assert_eq!(affines.len(), s.batch * s.c_in);
        }
        let job = Job::new(cpu, s, io, out);
        let small_runs = tile_runs(s, F2::M);
        if small_runs.len().div_ceil(RUNS_PER_PANEL) <= SMALL_MAX_PANELS {
            // F(4×4) once its tiles fill a run of 16 lanes (16×16 images, batch 2, 1280 channels: 58–64 ms vs
            // 83–103 ms); on fewer tiles (8×8: 54 vs 25 ms) the empty lanes and the filter transform cost more.
            let runs = tile_runs(s, F4::M);
            if runs.iter().map(|run| run.count).sum::<usize>() >= RUN {
                job.run_small_call::<F4>(&runs);
            } else {
                job.run_small_call::<F2>(&small_runs);
            }
        } else {
            job.run_large_call::<F4>(FILTER_CHUNK_FLOATS);
        }
    }

    /// [`conv2d_winograd`] on the F(4×4, 3×3) path with at most `chunk_floats` transformed filters at a time
    /// (tests: the chunking must not change a single bit).
    #[cfg(test)]
    pub(crate) fn conv2d_f4_chunked(
        cpu: Cpu,
        s: &DirectShape,
        io: DirectIo,
        out: &mut [f32],
        chunk_floats: usize,
    ) {
        assert!(cpu.avx2());
        let job = Job::new(cpu, s, io, out);
        job.run_large_call::<F4>(chunk_floats);
    }

    /// Floats of transformed filters packed at a time (64 MiB): the output channels are done in chunks of blocks
    /// whose `U` fits, so a call never holds more (a whole 1280 → 1280 F(4×4) `U` is 236 MB).
    const FILTER_CHUNK_FLOATS: usize = 16 << 20;

    /// Offset in a ξ plane of packed filters holding `blocks` output-channel blocks, of input channel `ci` and
    /// block `block` (counted from the first packed one): planes are `U[c / 64][k / 6][c mod 64][k mod 6]`, so for
    /// one pass of input channels the blocks follow each other and the tasks read one contiguous stream per ξ and
    /// pass (a new stream per block left the prefetcher behind).
    #[inline(always)]
    fn filter_offset(s: &DirectShape, blocks: usize, block: usize, ci: usize) -> usize {
        let ci0 = ci - ci % CHANNELS_PER_PASS;
        let channels = CHANNELS_PER_PASS.min(s.c_in - ci0);
        (ci0 * blocks + block * channels + (ci - ci0)) * CO_BLOCK
    }

    /// `U[ξ][j]` (variant `V`) of the filters from input channel `ci` to output channels `block·6 + j`, `j < 6`
    /// (zero past `c_out`).
    #[inline(always)]
    fn transform_block<V: Variant>(
        s: &DirectShape,
        weight: &[f32],
        block: usize,
        ci: usize,
    ) -> [[f32; LANES]; 36] {
        let mut g = [[0f32; LANES]; 9];
        for j in 0..CO_BLOCK.min(s.c_out - block * CO_BLOCK) {
            let filter = &weight[((block * CO_BLOCK + j) * s.c_in + ci) * 9..][..9];
            for (k, &value) in filter.iter().enumerate() {
                g[k][j] = value;
            }
        }
        V::transform_filter_lanes(&g)
    }

    thread_local! {
        /// Transformed filters, reused across calls (a fresh buffer per call cost more in page faults than the
        /// transform); at most [`FILTER_CHUNK_FLOATS`] per calling thread.
        static FILTERS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
        /// Input transforms of every panel (calls that share them between tasks), reused the same way.
        static SHARED_V: std::cell::Cell<Vec<Vector>> = const { std::cell::Cell::new(Vec::new()) };
    }

    /// Takes a pooled buffer out of its per-thread slot (empty if another call on this thread holds it: a nested
    /// call, e.g. from a rayon task run while this thread waits, then allocates its own).
    fn take_pooled<T>(pool: &'static std::thread::LocalKey<std::cell::Cell<Vec<T>>>) -> Vec<T> {
        pool.with(|slot| slot.take())
    }

    /// Puts a buffer back for the next call on this thread.
    fn return_pooled<T>(
        pool: &'static std::thread::LocalKey<std::cell::Cell<Vec<T>>>,
        buffer: Vec<T>,
    ) {
        pool.with(|slot| slot.set(buffer));
    }

    /// `U[ξ]` of variant `V` for the output-channel blocks `blocks`, laid out as in [`filter_offset`] in
    /// `packed` (resized as needed): the transformed filters, output channels past `c_out` zero.
    fn pack_filters<V: Variant>(
        s: &DirectShape,
        weight: &[f32],
        blocks: std::ops::Range<usize>,
        packed: &mut Vec<f32>,
    ) {
        let per_xi = blocks.len() * s.c_in * CO_BLOCK;
        // Every element used is written below, so a buffer from an earlier chunk needs no clearing (and is never
        // shrunk: growing it again would clear the regrown part).
        if packed.len() < V::XI * per_xi {
            packed.resize(V::XI * per_xi, 0.0);
        }
        let shared = SharedMut::new(packed);
        // Parallel over output-channel blocks; each writes its slice of all ξ planes, 6 floats at a time.
        blocks.clone().into_par_iter().for_each(|block| {
            let base = shared.ptr();
            for ci in 0..s.c_in {
                let u = transform_block::<V>(s, weight, block, ci);
                let at = filter_offset(s, blocks.len(), block - blocks.start, ci);
                for (xi, u) in u.iter().enumerate().take(V::XI) {
                    // SAFETY: (xi, block, ci) indexes inside `packed`; blocks are disjoint per task.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            u.as_ptr(),
                            base.add(xi * per_xi + at),
                            CO_BLOCK,
                        )
                    };
                }
            }
        });
    }

    /// One task: a panel of tile runs, a range of output-channel blocks.
    struct Job<'a> {
        s: &'a DirectShape,
        /// The call's path: AVX2 + FMA, and AVX-512F products when it is the AVX-512 path.
        cpu: Cpu,
        io: DirectIo<'a>,
        /// Transformed filters of the output-channel blocks `packed_blocks` ([`pack_filters`]).
        filters: &'a [f32],
        packed_blocks: std::ops::Range<usize>,
        out: SharedMut,
    }

    impl<'a> Job<'a> {
        /// A call's job before any filters are packed (the large path packs them chunk by chunk).
        fn new(cpu: Cpu, s: &'a DirectShape, io: DirectIo<'a>, out: &mut [f32]) -> Self {
            Job {
                cpu,
                s,
                io,
                filters: &[],
                packed_blocks: 0..0,
                out: SharedMut::new(out),
            }
        }

        /// Small images (variant `V`, `runs` of its tiles): the input transform of every panel up front, then
        /// tasks of output-channel blocks over all panels ([`Self::run_small`]).
        fn run_small_call<V: Variant>(&self, runs: &[TileRun]) {
            let panels: Vec<&[TileRun]> = runs.chunks(RUNS_PER_PANEL).collect();
            let co_blocks = self.s.c_out.div_ceil(CO_BLOCK);
            let wanted = 8 * rayon::current_num_threads();
            let mut buffer = take_pooled(&SHARED_V);
            let v_all = self.fill_all_v::<V>(&panels, &mut buffer);
            let tasks = co_blocks.div_ceil(co_blocks.div_ceil(wanted));
            let per_task = co_blocks.div_ceil(tasks);
            let avx512 = self.cpu.avx512();
            (0..tasks).into_par_iter().for_each(|task| {
                let blocks = task * per_task..((task + 1) * per_task).min(co_blocks);
                SCRATCH.with(|scratch| {
                    let (u, m) = &mut *scratch.borrow_mut();
                    // SAFETY: the CPU has the features of the variant called; `v_all` holds every panel's `V`;
                    // tasks write disjoint output channels.
                    unsafe {
                        if avx512 {
                            self.run_small_avx512::<V>(&panels, v_all.ptr(), blocks, u, m)
                        } else {
                            self.run_small_avx2::<V>(&panels, v_all.ptr(), blocks, u, m)
                        }
                    }
                });
            });
            return_pooled(&SHARED_V, buffer);
        }

        /// Larger images with variant `V`: output channels in chunks of blocks whose transformed filters take at
        /// most `chunk_floats` (but at least one block); per chunk, tasks of (panel, range of output-channel
        /// blocks). With several tasks per panel the input transform is done once, up front.
        fn run_large_call<V: Variant>(&self, chunk_floats: usize) {
            let s = self.s;
            let runs = tile_runs(s, V::M);
            let panels: Vec<&[TileRun]> = runs.chunks(RUNS_PER_PANEL).collect();
            let co_blocks = s.c_out.div_ceil(CO_BLOCK);
            let per_block = V::XI * s.c_in * CO_BLOCK;
            let chunks = co_blocks.div_ceil((chunk_floats / per_block).max(1));
            let chunk = co_blocks.div_ceil(chunks);
            let wanted = 8 * rayon::current_num_threads();
            let blocks_per_part = chunk.div_ceil(wanted.div_ceil(panels.len()).clamp(1, chunk));
            let mut buffer = take_pooled(&SHARED_V);
            let v_len = V::XI * v_plane(s.c_in);
            let shared = (chunks > 1 || chunk > blocks_per_part)
                .then(|| self.fill_all_v::<V>(&panels, &mut buffer));
            let mut packed = take_pooled(&FILTERS);
            for first in (0..co_blocks).step_by(chunk) {
                let chunk = first..(first + chunk).min(co_blocks);
                pack_filters::<V>(s, self.io.weight, chunk.clone(), &mut packed);
                let job = Job {
                    filters: &packed,
                    packed_blocks: chunk.clone(),
                    ..*self
                };
                let parts = chunk.len().div_ceil(blocks_per_part);
                job.run_tasks::<V>(&panels, parts, blocks_per_part, shared, v_len);
            }
            return_pooled(&FILTERS, packed);
            return_pooled(&SHARED_V, buffer);
        }

        /// The tasks of one chunk (`self.packed_blocks`): `parts` ranges of `blocks_per_part` blocks per panel;
        /// `shared`: every panel's `V` (`v_len` floats each), else each task transforms its panel's input.
        fn run_tasks<V: Variant>(
            &self,
            panels: &[&[TileRun]],
            parts: usize,
            blocks_per_part: usize,
            shared: Option<SharedMut>,
            v_len: usize,
        ) {
            let avx512 = self.cpu.avx512();
            let chunk = self.packed_blocks.clone();
            (0..panels.len() * parts).into_par_iter().for_each(|task| {
                let (panel_index, part) = (task / parts, task % parts);
                let panel = panels[panel_index];
                let start = chunk.start + part * blocks_per_part;
                let blocks = start..(start + blocks_per_part).min(chunk.end);
                // SAFETY: `shared` holds `panels · v_len` floats.
                let ready =
                    shared.map(|v| unsafe { v.ptr().add(panel_index * v_len) as *const f32 });
                SCRATCH.with(|buffers| {
                    let (v, m) = &mut *buffers.borrow_mut();
                    let v = match ready {
                        Some(ready) => ready,
                        None => scratch(v, v_len) as *const f32,
                    };
                    // SAFETY: the CPU has the features of the variant called; tasks write disjoint output
                    // tiles/channels; `v` holds `v_len` floats.
                    unsafe {
                        if avx512 {
                            self.run_avx512::<V>(panel, blocks, v, ready.is_none(), m)
                        } else {
                            self.run_avx2::<V>(panel, blocks, v, ready.is_none(), m)
                        }
                    };
                });
            });
        }

        /// The input transform (variant `V`) of every panel into `buffer`, panel `p` at `p · XI · v_plane`, in
        /// parallel over (panel, pass of input channels).
        fn fill_all_v<V: Variant>(
            &self,
            panels: &[&[TileRun]],
            buffer: &mut Vec<Vector>,
        ) -> SharedMut {
            let s = self.s;
            let v_len = V::XI * v_plane(s.c_in);
            let v = SharedMut::new_for(scratch(buffer, panels.len() * v_len));
            let chunks = s.c_in.div_ceil(CHANNELS_PER_PASS);
            let avx512 = self.cpu.avx512();
            (0..panels.len() * chunks).into_par_iter().for_each(|task| {
                let (panel, chunk) = (task / chunks, task % chunks);
                let channels =
                    chunk * CHANNELS_PER_PASS..((chunk + 1) * CHANNELS_PER_PASS).min(s.c_in);
                // SAFETY: the CPU has the features of the variant called; tasks write disjoint (panel, channel)
                // parts of `buffer`, which holds `panels · v_len` floats.
                unsafe {
                    let dst = v.ptr().add(panel * v_len);
                    if avx512 {
                        self.fill_v_avx512::<V>(panels[panel], channels, dst)
                    } else {
                        self.fill_v_avx2::<V>(panels[panel], channels, dst)
                    }
                }
            });
            v
        }

        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn run_avx512<V: Variant>(
            &self,
            panel: &[TileRun],
            blocks: std::ops::Range<usize>,
            v: *const f32,
            fill: bool,
            m: &mut Vec<Vector>,
        ) {
            self.run::<V, true>(panel, blocks, v, fill, m)
        }

        #[target_feature(enable = "avx2,fma")]
        unsafe fn run_avx2<V: Variant>(
            &self,
            panel: &[TileRun],
            blocks: std::ops::Range<usize>,
            v: *const f32,
            fill: bool,
            m: &mut Vec<Vector>,
        ) {
            self.run::<V, false>(panel, blocks, v, fill, m)
        }

        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn run_small_avx512<V: Variant>(
            &self,
            panels: &[&[TileRun]],
            v: *const f32,
            blocks: std::ops::Range<usize>,
            u: &mut Vec<Vector>,
            m: &mut Vec<Vector>,
        ) {
            self.run_small::<V, true>(panels, v, blocks, u, m)
        }

        #[target_feature(enable = "avx2,fma")]
        unsafe fn run_small_avx2<V: Variant>(
            &self,
            panels: &[&[TileRun]],
            v: *const f32,
            blocks: std::ops::Range<usize>,
            u: &mut Vec<Vector>,
            m: &mut Vec<Vector>,
        ) {
            self.run_small::<V, false>(panels, v, blocks, u, m)
        }

        /// Small images: output-channel blocks `blocks` over every panel (`V` of panel `p` at `v + p·XI·v_plane`).
        /// Per block and pass of input channels the filters are transformed into `U[ξ][c][6]` (≤ 27 KiB) and used
        /// for every panel, so no transformed copy of the whole weight is ever written.
        #[inline(always)]
        unsafe fn run_small<V: Variant, const AVX512: bool>(
            &self,
            panels: &[&[TileRun]],
            v: *const f32,
            blocks: std::ops::Range<usize>,
            u: &mut Vec<Vector>,
            m: &mut Vec<Vector>,
        ) {
            let s = self.s;
            let v_len = V::XI * v_plane(s.c_in);
            let (pass, group_size) = (SMALL_CHANNELS, SMALL_GROUP);
            let u_plane = pass * CO_BLOCK;
            let u_len = V::XI * u_plane;
            let u = scratch(u, group_size * u_len);
            // M[block of the group][panel][ξ][6][64]
            let m_len = V::XI * CO_BLOCK * PANEL;
            let m = scratch(m, group_size * panels.len() * m_len);
            let tiles_w = s.ow().div_ceil(V::M);
            for group_start in blocks.clone().step_by(group_size) {
                let group = group_start..(group_start + group_size).min(blocks.end);
                for ci0 in (0..s.c_in).step_by(pass) {
                    let channels = pass.min(s.c_in - ci0);
                    for (g, block) in group.clone().enumerate() {
                        let u = u.add(g * u_len);
                        self.transform_filters::<V>(block, ci0..ci0 + channels, u, u_plane);
                        for xi in 0..V::XI {
                            for (p, panel) in panels.iter().enumerate() {
                                let dst =
                                    m.add(((g * panels.len() + p) * V::XI + xi) * CO_BLOCK * PANEL);
                                let v = v.add(p * v_len + xi * v_plane(s.c_in) + ci0 * PANEL);
                                let u = u.add(xi * u_plane);
                                if AVX512 {
                                    let acc = &mut *(dst as *mut [__m512; 24]);
                                    if ci0 == 0 {
                                        *acc = [_mm512_setzero_ps(); 24];
                                    }
                                    micro_kernel(v, PANEL, channels, &[0], u, acc);
                                } else {
                                    for sub in 0..panel.len() {
                                        micro_kernel_avx2(
                                            v.add(sub * RUN),
                                            channels,
                                            u,
                                            dst.add(sub * RUN),
                                            ci0 == 0,
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
                for (g, block) in group.enumerate() {
                    for j in 0..CO_BLOCK.min(s.c_out - block * CO_BLOCK) {
                        for (p, panel) in panels.iter().enumerate() {
                            let m = m.add((g * panels.len() + p) * m_len);
                            for (slot, run) in panel.iter().enumerate() {
                                let y = V::output_transform(
                                    m.add(j * PANEL + slot * RUN),
                                    CO_BLOCK * PANEL,
                                );
                                let co = block * CO_BLOCK + j;
                                if run.in_one_row(tiles_w) {
                                    self.store_tiles::<V>(run, co, &y);
                                } else {
                                    self.store_scattered_tiles::<V>(run, co, &y);
                                }
                            }
                        }
                    }
                }
            }
        }

        /// `U[ξ][c − first][j]` (variant `V`) at `u + ξ·plane` for output channels `block·6 + j` and input
        /// channels `channels` (zero past `c_out`).
        #[inline(always)]
        unsafe fn transform_filters<V: Variant>(
            &self,
            block: usize,
            channels: std::ops::Range<usize>,
            u: *mut f32,
            plane: usize,
        ) {
            for (c, ci) in channels.enumerate() {
                let values = transform_block::<V>(self.s, self.io.weight, block, ci);
                for (xi, values) in values.iter().enumerate().take(V::XI) {
                    std::ptr::copy_nonoverlapping(
                        values.as_ptr(),
                        u.add(xi * plane + c * CO_BLOCK),
                        CO_BLOCK,
                    );
                }
            }
        }

        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn fill_v_avx512<V: Variant>(
            &self,
            panel: &[TileRun],
            channels: std::ops::Range<usize>,
            v: *mut f32,
        ) {
            self.fill_v::<V>(panel, channels, v)
        }

        #[target_feature(enable = "avx2,fma")]
        unsafe fn fill_v_avx2<V: Variant>(
            &self,
            panel: &[TileRun],
            channels: std::ops::Range<usize>,
            v: *mut f32,
        ) {
            self.fill_v::<V>(panel, channels, v)
        }

        /// Input transform (variant `V`) of `channels` of the panel into `V[ξ][c][lane]` at `v`.
        #[inline(always)]
        unsafe fn fill_v<V: Variant>(
            &self,
            panel: &[TileRun],
            channels: std::ops::Range<usize>,
            v: *mut f32,
        ) {
            let s = self.s;
            let v_plane = v_plane(s.c_in);
            let tiles_w = s.ow().div_ceil(V::M);
            let mut d: Patches = [[[0f32; RUN]; 6]; 6];
            let mut gathered = Vec::new();
            for (slot, run) in panel.iter().enumerate() {
                for ci in channels.clone() {
                    if run.in_one_row(tiles_w) {
                        split_columns::<V>(&self.input_rows::<V>(run, ci), &mut d);
                    } else {
                        self.gather_patches::<V>(run, ci, &mut gathered, &mut d);
                    }
                    V::input_transform(&d, v.add(ci * PANEL + slot * RUN), v_plane);
                }
            }
        }

        /// Input transform of the panel into `v` when `fill` (else `v` already holds it), then the XI products
        /// for the output-channel blocks `blocks` (ξ by ξ) and the output transform. Inlined into the variants
        /// above, so it is compiled for their instruction sets.
        #[inline(always)]
        unsafe fn run<V: Variant, const AVX512: bool>(
            &self,
            panel: &[TileRun],
            blocks: std::ops::Range<usize>,
            v: *const f32,
            fill: bool,
            m: &mut Vec<Vector>,
        ) {
            let s = self.s;
            let v_plane = v_plane(s.c_in);
            if fill {
                self.fill_v::<V>(panel, 0..s.c_in, v as *mut f32);
            }
            let tiles_w = s.ow().div_ceil(V::M);
            // M[ξ][k − first][lane] for every output channel of the task: each ξ plane (≤ 330 KiB for 1280
            // channels) stays in L2 while the input channels are walked, and `V` is read once per task.
            let m_plane = blocks.len() * CO_BLOCK * PANEL + PAD;
            let m = scratch(m, V::XI * m_plane);
            let packed = self.packed_blocks.len();
            let filter_plane = packed * s.c_in * CO_BLOCK;
            for xi in 0..V::XI {
                for ci0 in (0..s.c_in).step_by(CHANNELS_PER_PASS) {
                    let channels = CHANNELS_PER_PASS.min(s.c_in - ci0);
                    let v = v.add(xi * v_plane + ci0 * PANEL);
                    for block in blocks.clone() {
                        let dst = m.add(xi * m_plane + (block - blocks.start) * CO_BLOCK * PANEL);
                        let u = self.filters.as_ptr().add(
                            xi * filter_plane
                                + filter_offset(s, packed, block - self.packed_blocks.start, ci0),
                        );
                        if AVX512 {
                            let acc = &mut *(dst as *mut [__m512; 24]);
                            if ci0 == 0 {
                                *acc = [_mm512_setzero_ps(); 24];
                            }
                            micro_kernel(v, PANEL, channels, &[0], u, acc);
                        } else {
                            for sub in 0..RUNS_PER_PANEL.min(panel.len()) {
                                micro_kernel_avx2(
                                    v.add(sub * RUN),
                                    channels,
                                    u,
                                    dst.add(sub * RUN),
                                    ci0 == 0,
                                );
                            }
                        }
                    }
                }
            }
            let first = blocks.start * CO_BLOCK;
            let last = (blocks.end * CO_BLOCK).min(s.c_out);
            for co in first..last {
                for (slot, run) in panel.iter().enumerate() {
                    let y = V::output_transform(m.add((co - first) * PANEL + slot * RUN), m_plane);
                    if run.in_one_row(tiles_w) {
                        self.store_tiles::<V>(run, co, &y);
                    } else {
                        self.store_scattered_tiles::<V>(run, co, &y);
                    }
                }
            }
        }

        /// The `A` input rows under `run` (variant `V`) for input channel `ci`, columns `m·first_tile − 1 ..`
        /// (`m·16 + 2` used), zero outside the image, with the call's input transform or upsampling applied.
        #[inline(always)]
        fn input_rows<V: Variant>(&self, run: &TileRun, ci: usize) -> [[f32; ROW]; 6] {
            let s = self.s;
            let mut rows = [[0f32; ROW]; 6];
            let (sh, sw) = s.stored_hw();
            let plane = &self.io.input[(run.image * s.c_in + ci) * sh * sw..][..sh * sw];
            let x0 = V::M * run.first_tile; // image column of scratch column 1
            let x_end = s.w.min(x0 + V::M * RUN + 1);
            let first_col = if x0 == 0 { 1 } else { 0 };
            let x_start = x0 + first_col - 1; // first image column read
            let affine = self
                .io
                .transform
                .map(|(a, silu)| (a[run.image * s.c_in + ci], silu));
            for (i, row) in rows.iter_mut().enumerate().take(V::A) {
                let Some(y) = (V::M * run.tile_row + i)
                    .checked_sub(1)
                    .filter(|&y| y < s.h)
                else {
                    continue;
                };
                let dst = &mut row[first_col..][..x_end - x_start];
                if s.upsample {
                    let src = &plane[(y / 2) * sw..][..sw];
                    for (k, value) in dst.iter_mut().enumerate() {
                        *value = src[(x_start + k) / 2];
                    }
                } else {
                    let src = &plane[y * s.w + x_start..y * s.w + x_end];
                    match affine {
                        Some((a, silu)) => a.apply(self.cpu, src, dst, silu),
                        None => dst.copy_from_slice(src),
                    }
                }
            }
            rows
        }

        /// The input patches `d[i][j][lane]` (variant `V`) of a run that spans several tile rows (images narrower
        /// than 16 tiles): the input rows it covers are copied (zero-padded, input transform or upsampling
        /// applied) into `scratch`, `m·tiles_w + 2` columns wide, then each lane reads its patch there. Lanes past
        /// the run's count keep what they held.
        #[inline(always)]
        fn gather_patches<V: Variant>(
            &self,
            run: &TileRun,
            ci: usize,
            scratch: &mut Vec<f32>,
            d: &mut Patches,
        ) {
            let s = self.s;
            let tiles_w = s.ow().div_ceil(V::M);
            let width = V::M * tiles_w + 2;
            let tile_rows = (run.first_tile + run.count - 1) / tiles_w + 1;
            let rows = V::M * tile_rows + 2;
            if scratch.len() < rows * width {
                // Columns 0 and past the image are never written: zero from here on.
                scratch.clear();
                scratch.resize(rows * width, 0.0);
            }
            let (sh, sw) = s.stored_hw();
            let plane = &self.io.input[(run.image * s.c_in + ci) * sh * sw..][..sh * sw];
            let affine = self
                .io
                .transform
                .map(|(a, silu)| (a[run.image * s.c_in + ci], silu));
            for r in 0..rows {
                let line = &mut scratch[r * width..][..width];
                let Some(y) = (V::M * run.tile_row + r)
                    .checked_sub(1)
                    .filter(|&y| y < s.h)
                else {
                    line.fill(0.0);
                    continue;
                };
                let dst = &mut line[1..][..s.w];
                if s.upsample {
                    let src = &plane[(y / 2) * sw..][..sw];
                    for (x, value) in dst.iter_mut().enumerate() {
                        *value = src[x / 2];
                    }
                } else {
                    let src = &plane[y * s.w..][..s.w];
                    match affine {
                        Some((a, silu)) => a.apply(self.cpu, src, dst, silu),
                        None => dst.copy_from_slice(src),
                    }
                }
            }
            for l in 0..run.count {
                let tile = run.first_tile + l;
                let (row, col) = (tile / tiles_w, tile % tiles_w);
                let at = V::M * (row * width + col);
                for (i, d) in d.iter_mut().enumerate().take(V::A) {
                    for (j, d) in d.iter_mut().enumerate().take(V::A) {
                        d[l] = scratch[at + i * width + j];
                    }
                }
            }
        }

        /// [`Self::store_tiles`] for a run that spans several tile rows: lane by lane.
        #[inline(always)]
        unsafe fn store_scattered_tiles<V: Variant>(&self, run: &TileRun, co: usize, y: &Outputs) {
            let s = self.s;
            let bias = self.io.bias[run.image * s.c_out + co];
            let (oh, ow) = (s.oh(), s.ow());
            let tiles_w = ow.div_ceil(V::M);
            let plane = (run.image * s.c_out + co) * oh * ow;
            for l in 0..run.count {
                let tile = run.tile_row * tiles_w + run.first_tile + l;
                let (oy, ox) = (V::M * (tile / tiles_w), V::M * (tile % tiles_w));
                for (p, y) in y.iter().enumerate().take(V::M).filter(|(p, _)| oy + p < oh) {
                    for (q, y) in y.iter().enumerate().take(V::M).filter(|(q, _)| ox + q < ow) {
                        let at = plane + (oy + p) * ow + ox + q;
                        let residual = self.io.residual.map_or(0.0, |r| r[at]);
                        *self.out.ptr().add(at) = y[l] + bias + residual;
                    }
                }
            }
        }

        /// Adds bias (+ residual) to the m×m tiles `y[p][q][lane]` of `run` for output channel `co` and stores
        /// the pixels inside the output.
        #[inline(always)]
        unsafe fn store_tiles<V: Variant>(&self, run: &TileRun, co: usize, y: &Outputs) {
            let s = self.s;
            let bias = self.io.bias[run.image * s.c_out + co];
            let (oh, ow) = (s.oh(), s.ow());
            let x0 = V::M * run.first_tile;
            let cols = (V::M * run.count).min(ow - x0);
            let plane = (run.image * s.c_out + co) * oh * ow;
            for (p, y) in y.iter().enumerate().take(V::M) {
                let row = V::M * run.tile_row + p;
                if row >= oh {
                    break;
                }
                let at = plane + row * ow + x0;
                let mut values = [0f32; 4 * RUN];
                for l in 0..RUN {
                    for (q, y) in y.iter().enumerate().take(V::M) {
                        values[V::M * l + q] = y[l] + bias;
                    }
                }
                if let Some(r) = self.io.residual {
                    for (value, &r) in values.iter_mut().zip(&r[at..at + cols]) {
                        *value += r;
                    }
                }
                let dst = std::slice::from_raw_parts_mut(self.out.ptr().add(at), cols);
                dst.copy_from_slice(&values[..cols]);
            }
        }
    }

    /// Input patches of 16 tiles, `d[i][j][lane]` (`i, j < A`; F(2×2) uses the top-left 4×4).
    type Patches = [[[f32; RUN]; 6]; 6];
    /// Output tiles of 16 tiles, `y[p][q][lane]` (`p, q < m`).
    type Outputs = [[[f32; RUN]; 4]; 4];

    /// One Winograd variant F(m×m, 3×3): its tile sizes and transforms.
    pub(crate) trait Variant: Sync {
        /// Output tile side m.
        const M: usize;
        /// Input patch side m + 2.
        const A: usize;
        /// Transformed values per tile (A²): the ξ planes of `U`, `V` and `M`.
        const XI: usize = Self::A * Self::A;
        /// `U[ξ][lane]` of [`LANES`] 3×3 filters `g[k][lane]` (`filter_lanes_f2` / `filter_lanes_f4`).
        fn transform_filter_lanes(g: &[[f32; LANES]; 9]) -> [[f32; LANES]; 36];
        /// Writes `V[ξ][lane] = (Bᵀ d B)[ξ][lane]` at `dst + ξ·xi_stride`.
        unsafe fn input_transform(d: &Patches, dst: *mut f32, xi_stride: usize);
        /// `Aᵀ M A` for 16 tiles, `M[ξ][lane]` at `m + ξ·xi_stride`.
        unsafe fn output_transform(m: *const f32, xi_stride: usize) -> Outputs;
    }

    /// F(2×2, 3×3): 16 products per 4 outputs; every transform is adds and halvings.
    pub(crate) struct F2;

    /// F(4×4, 3×3) (points 0, ±1, ±2, ∞): 36 products per 16 outputs, 1.8× fewer than F(2×2, 3×3).
    pub(crate) struct F4;

    impl Variant for F2 {
        const M: usize = 2;
        const A: usize = 4;

        #[inline(always)]
        fn transform_filter_lanes(g: &[[f32; LANES]; 9]) -> [[f32; LANES]; 36] {
            filter_lanes_f2(g)
        }

        #[inline(always)]
        unsafe fn input_transform(d: &Patches, dst: *mut f32, xi_stride: usize) {
            // t = Bᵀ d (combines rows), then v = t B (combines columns).
            let mut t = [[[0f32; RUN]; 4]; 4];
            for j in 0..4 {
                for l in 0..RUN {
                    t[0][j][l] = d[0][j][l] - d[2][j][l];
                    t[1][j][l] = d[1][j][l] + d[2][j][l];
                    t[2][j][l] = d[2][j][l] - d[1][j][l];
                    t[3][j][l] = d[1][j][l] - d[3][j][l];
                }
            }
            for (i, t) in t.iter().enumerate() {
                let mut v = [[0f32; RUN]; 4];
                for l in 0..RUN {
                    v[0][l] = t[0][l] - t[2][l];
                    v[1][l] = t[1][l] + t[2][l];
                    v[2][l] = t[2][l] - t[1][l];
                    v[3][l] = t[1][l] - t[3][l];
                }
                for (j, v) in v.iter().enumerate() {
                    std::ptr::copy_nonoverlapping(
                        v.as_ptr(),
                        dst.add((4 * i + j) * xi_stride),
                        RUN,
                    );
                }
            }
        }

        #[inline(always)]
        unsafe fn output_transform(m: *const f32, xi_stride: usize) -> Outputs {
            let load = |xi: usize| -> [f32; RUN] {
                std::ptr::read_unaligned(m.add(xi * xi_stride) as *const _)
            };
            // s[p][j] = (Aᵀ M)[p][j]
            let (mut s0, mut s1) = ([[0f32; RUN]; 4], [[0f32; RUN]; 4]);
            for (j, (s0, s1)) in s0.iter_mut().zip(&mut s1).enumerate() {
                let (m0, m1, m2, m3) = (load(j), load(4 + j), load(8 + j), load(12 + j));
                for l in 0..RUN {
                    s0[l] = m0[l] + m1[l] + m2[l];
                    s1[l] = m1[l] - m2[l] - m3[l];
                }
            }
            let s = [s0, s1];
            let mut y = [[[0f32; RUN]; 4]; 4];
            for p in 0..2 {
                for l in 0..RUN {
                    y[p][0][l] = s[p][0][l] + s[p][1][l] + s[p][2][l];
                    y[p][1][l] = s[p][1][l] - s[p][2][l] - s[p][3][l];
                }
            }
            y
        }
    }

    /// `Bᵀ r` of F(4×4, 3×3) for one column of 6 values per lane.
    #[inline(always)]
    fn b4(r: [&[f32; RUN]; 6]) -> [[f32; RUN]; 6] {
        let mut o = [[0f32; RUN]; 6];
        for l in 0..RUN {
            let (r0, r1, r2, r3, r4, r5) = (r[0][l], r[1][l], r[2][l], r[3][l], r[4][l], r[5][l]);
            o[0][l] = 4.0 * r0 - 5.0 * r2 + r4;
            o[1][l] = r3 + r4 - 4.0 * (r1 + r2);
            o[2][l] = r4 - r3 + 4.0 * (r1 - r2);
            o[3][l] = r4 - r2 + 2.0 * (r3 - r1);
            o[4][l] = r4 - r2 + 2.0 * (r1 - r3);
            o[5][l] = 4.0 * r1 - 5.0 * r3 + r5;
        }
        o
    }

    /// `Aᵀ m` of F(4×4, 3×3) for one column of 6 values per lane.
    #[inline(always)]
    fn a4(m: [&[f32; RUN]; 6]) -> [[f32; RUN]; 4] {
        let mut y = [[0f32; RUN]; 4];
        for l in 0..RUN {
            let (plus, minus) = (m[1][l] + m[2][l], m[1][l] - m[2][l]);
            let (plus2, minus2) = (m[3][l] + m[4][l], m[3][l] - m[4][l]);
            y[0][l] = m[0][l] + plus + plus2;
            y[1][l] = minus + 2.0 * minus2;
            y[2][l] = plus + 4.0 * plus2;
            y[3][l] = minus + 8.0 * minus2 + m[5][l];
        }
        y
    }

    impl Variant for F4 {
        const M: usize = 4;
        const A: usize = 6;

        #[inline(always)]
        fn transform_filter_lanes(g: &[[f32; LANES]; 9]) -> [[f32; LANES]; 36] {
            filter_lanes_f4(g)
        }

        #[inline(always)]
        unsafe fn input_transform(d: &Patches, dst: *mut f32, xi_stride: usize) {
            // t = Bᵀ d (combines rows, column by column), then v = t B (combines columns, row by row).
            let mut t = [[[0f32; RUN]; 6]; 6];
            for j in 0..6 {
                let column = b4([&d[0][j], &d[1][j], &d[2][j], &d[3][j], &d[4][j], &d[5][j]]);
                for (i, values) in column.iter().enumerate() {
                    t[i][j] = *values;
                }
            }
            for (i, t) in t.iter().enumerate() {
                let v = b4([&t[0], &t[1], &t[2], &t[3], &t[4], &t[5]]);
                for (j, v) in v.iter().enumerate() {
                    std::ptr::copy_nonoverlapping(
                        v.as_ptr(),
                        dst.add((6 * i + j) * xi_stride),
                        RUN,
                    );
                }
            }
        }

        #[inline(always)]
        unsafe fn output_transform(m: *const f32, xi_stride: usize) -> Outputs {
            let load = |xi: usize| -> [f32; RUN] {
                std::ptr::read_unaligned(m.add(xi * xi_stride) as *const _)
            };
            // s[p][j] = (Aᵀ M)[p][j], then y[p] = s[p] A.
            let mut s = [[[0f32; RUN]; 6]; 4];
            for j in 0..6 {
                let (m0, m1, m2) = (load(j), load(6 + j), load(12 + j));
                let (m3, m4, m5) = (load(18 + j), load(24 + j), load(30 + j));
                let values = a4([&m0, &m1, &m2, &m3, &m4, &m5]);
                for (s, values) in s.iter_mut().zip(values) {
                    s[j] = values;
                }
            }
            let mut y = [[[0f32; RUN]; 4]; 4];
            for (y, s) in y.iter_mut().zip(&s) {
                *y = a4([&s[0], &s[1], &s[2], &s[3], &s[4], &s[5]]);
            }
            y
        }
    }

    /// The patches of a run in one tile row (variant `V`) from its input rows (see `Job::input_rows`):
    /// `d[i][j][lane] = rows[i][m·lane + j]`.
    #[inline(always)]
    fn split_columns<V: Variant>(rows: &[[f32; ROW]; 6], d: &mut Patches) {
        for (d, row) in d.iter_mut().zip(rows).take(V::A) {
            for (j, d) in d.iter_mut().enumerate().take(V::A) {
                for (l, d) in d.iter_mut().enumerate() {
                    *d = row[V::M * l + j];
                }
            }
        }
    }

    /// AVX2 micro-kernel: 16 tiles × 6 output channels in 12 ymm accumulators over `channels` input channels.
    /// `v`: `V[c][lane]` rows 64 apart; `u`: `U[c][6]`; `m`: `M[k][lane]` rows 64 apart, overwritten when
    /// `first`, accumulated into otherwise.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn micro_kernel_avx2(
        v: *const f32,
        channels: usize,
        u: *const f32,
        m: *mut f32,
        first: bool,
    ) {
        let mut acc = [_mm256_setzero_ps(); 12];
        if !first {
            for j in 0..CO_BLOCK {
                acc[2 * j] = _mm256_loadu_ps(m.add(j * PANEL));
                acc[2 * j + 1] = _mm256_loadu_ps(m.add(j * PANEL + 8));
            }
        }
        for c in 0..channels {
            let a0 = _mm256_loadu_ps(v.add(c * PANEL));
            let a1 = _mm256_loadu_ps(v.add(c * PANEL + 8));
            let w = u.add(c * CO_BLOCK);
            for j in 0..CO_BLOCK {
                let b = _mm256_broadcast_ss(&*w.add(j));
                acc[2 * j] = _mm256_fmadd_ps(a0, b, acc[2 * j]);
                acc[2 * j + 1] = _mm256_fmadd_ps(a1, b, acc[2 * j + 1]);
            }
        }
        for j in 0..CO_BLOCK {
            _mm256_storeu_ps(m.add(j * PANEL), acc[2 * j]);
            _mm256_storeu_ps(m.add(j * PANEL + 8), acc[2 * j + 1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::isa::{Cpu, Isa};

    /// For each variant, `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` with the kernel's own transforms (filters 8 lanes at a time,
    /// patches and outputs 16 lanes at a time, every lane a different filter and patch) equals the 3×3
    /// correlation of the (m+2)×(m+2) patch, computed in f64.
    fn check_transforms<V: imp::Variant>() {
        let (m, a) = (V::M, V::A);
        let value = |i: usize, scale: f64| ((i as f64 * scale).sin() * 1.5) as f32;
        // g[k][lane], lanes 0..8 (patch lane l uses filter l % 8); d[i][j][lane].
        let mut g = [[0f32; LANES]; 9];
        for (k, g) in g.iter_mut().enumerate() {
            for (l, g) in g.iter_mut().enumerate() {
                *g = value(9 * l + k, 0.37);
            }
        }
        let mut d = [[[0f32; RUN]; 6]; 6];
        for (i, d) in d.iter_mut().enumerate().take(a) {
            for (j, d) in d.iter_mut().enumerate().take(a) {
                for (l, d) in d.iter_mut().enumerate() {
                    *d = value((i * a + j) * RUN + l, 0.71);
                }
            }
        }
        let u = V::transform_filter_lanes(&g);
        let mut v = vec![0f32; 36 * RUN];
        // SAFETY: `v` holds 36 planes of RUN floats; the products are written back in place.
        let y = unsafe {
            V::input_transform(&d, v.as_mut_ptr(), RUN);
            for xi in 0..V::XI {
                for l in 0..RUN {
                    v[xi * RUN + l] *= u[xi][l % LANES];
                }
            }
            V::output_transform(v.as_ptr(), RUN)
        };
        for l in 0..RUN {
            for p in 0..m {
                for q in 0..m {
                    let mut want = 0f64;
                    for ky in 0..3 {
                        for kx in 0..3 {
                            want += g[3 * ky + kx][l % LANES] as f64 * d[p + ky][q + kx][l] as f64;
                        }
                    }
                    let got = y[p][q][l] as f64;
                    assert!(
                        (got - want).abs() < 2e-5,
                        "F{m} lane {l} ({p},{q}): {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn transforms_compute_a_3x3_correlation() {
        check_transforms::<imp::F2>();
        check_transforms::<imp::F4>();
    }

    #[test]
    #[cfg_attr(not(loraeval_cpu_avx2), ignore = "this CPU lacks avx2/fma")]
    fn filter_chunks_do_not_change_the_result_avx2() {
        check_filter_chunks(Cpu::for_test(Isa::Avx2));
    }

    #[test]
    #[cfg_attr(not(loraeval_cpu_avx512), ignore = "this CPU lacks avx512f")]
    fn filter_chunks_do_not_change_the_result_avx512() {
        check_filter_chunks(Cpu::for_test(Isa::Avx512));
    }

    /// Filters packed in chunks of 1, 2 or 5 output-channel blocks (with a GroupNorm+SiLU input transform and a
    /// residual, on runs that span tile rows) give the same bits as all blocks at once, on the path of `cpu`.
    fn check_filter_chunks(cpu: Cpu) {
        let s = DirectShape {
            batch: 2,
            c_in: 20,
            h: 9,
            w: 30,
            c_out: 29,
            kh: 3,
            kw: 3,
            pad: 1,
            upsample: false,
        };
        let values = |n: usize, seed: f64| -> Vec<f32> {
            (0..n)
                .map(|i| ((i as f64 * 0.37 + seed).sin()) as f32)
                .collect()
        };
        let input = values(s.batch * s.c_in * s.h * s.w, 1.0);
        let weight = values(s.c_out * s.c_in * 9, 2.0);
        let bias = values(s.batch * s.c_out, 3.0);
        let residual = values(s.batch * s.c_out * s.h * s.w, 4.0);
        let affines: Vec<_> = (0..s.batch * s.c_in)
            .map(|i| crate::model::kernels::pointwise::Affine {
                mean: 0.2,
                scale: 0.5 + 0.01 * i as f32,
                shift: -0.1,
            })
            .collect();
        let io = crate::model::kernels::direct::DirectIo {
            input: &input,
            weight: &weight,
            bias: &bias,
            residual: Some(&residual),
            transform: Some((&affines, true)),
        };
        let run = |chunk_floats: usize| {
            let mut out = vec![0f32; residual.len()];
            imp::conv2d_f4_chunked(cpu, &s, io, &mut out, chunk_floats);
            out
        };
        let whole = run(usize::MAX);
        let per_block = 36 * s.c_in * 6;
        for blocks in [1, 2, 5] {
            assert_eq!(run(blocks * per_block), whole, "chunks of {blocks} blocks");
        }
        // And the chunked result is the convolution (f64 reference at one output pixel per channel).
        for co in 0..s.c_out {
            let (image, y, x) = (1, 4, 17);
            let mut want = bias[image * s.c_out + co] as f64;
            for ci in 0..s.c_in {
                let affine = &affines[image * s.c_in + ci];
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = (y + ky - 1, x + kx - 1);
                        let raw = input[((image * s.c_in + ci) * s.h + iy) * s.w + ix] as f64;
                        let normed =
                            (raw - affine.mean as f64) * affine.scale as f64 + affine.shift as f64;
                        let silu = normed / (1.0 + (-normed).exp());
                        want += silu * weight[(co * s.c_in + ci) * 9 + 3 * ky + kx] as f64;
                    }
                }
            }
            let at = ((image * s.c_out + co) * s.h + y) * s.w + x;
            want += residual[at] as f64;
            assert!(
                (whole[at] as f64 - want).abs() < 1e-4,
                "channel {co}: {} vs {want}",
                whole[at]
            );
        }
    }

    #[test]
    fn runs_cover_every_tile_once() {
        let s = DirectShape {
            batch: 2,
            c_in: 1,
            h: 7,
            w: 37,
            c_out: 1,
            kh: 3,
            kw: 3,
            pad: 1,
            upsample: false,
        };
        let runs = tile_runs(&s, 2);
        // 4 tile rows × (19 tiles = 16 + 3) × 2 images
        assert_eq!(runs.len(), 2 * 4 * 2);
        assert_eq!(runs.iter().map(|r| r.count).sum::<usize>(), 2 * 4 * 19);
        assert_eq!(
            runs[1],
            TileRun {
                image: 0,
                tile_row: 0,
                first_tile: 16,
                count: 3
            }
        );
    }
}
