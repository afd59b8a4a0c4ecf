//! Winograd F(2×2, 3×3) convolution (stride 1, padding 1, NCHW f32) with AVX-512: 16 multiplies per 2×2 output
//! tile instead of 36, so 2.25× fewer FLOPs than the direct kernel on the 3×3 convolutions that dominate SD1.5.
//!
//! With `d` a 4×4 input patch, `g` a 3×3 filter and `Y` the 2×2 output tile (Lavin & Gray 2015):
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, summed over input channels before the output transform, with
//! `Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]`, `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]`,
//! `Aᵀ = [[1,1,1,0],[0,1,−1,−1]]`. Every transform is adds and halvings, so the rounding stays that of a plain
//! sum (the filter transform is exact up to one rounding per sum; no F(4×4) constants like 1/6 or 4).
//!
//! Tiles are handled in *runs* of 16 horizontally adjacent tiles of one tile row (one zmm lane per tile). A task
//! takes a *panel* of up to 4 runs (64 tiles) and a range of output channels:
//! 1. input transform: for every input channel, the 4 input rows under a run are copied (zero padding, GroupNorm
//!    and SiLU or ×2 nearest upsampling applied as in the direct kernel), split into even/odd columns and combined
//!    into the 16 values `V[ξ][c][tile]` (ξ = 4i + j);
//! 2. for each of the 16 ξ a matrix product `M[ξ][k][tile] = Σ_c U[ξ][k][c]·V[ξ][c][tile]` by a
//!    register-blocked micro-kernel over 6 output channels (filters transformed once per call into
//!    `U[ξ][k/6][c][6]`), input channels in L1-sized passes;
//! 3. output transform of `M` into 2×2 tiles, plus bias / channel shift / residual, masked stores.
//!
//! The products run on AVX-512F when the CPU has it (the direct kernel's 64 × 6 micro-kernel) and on AVX2 + FMA
//! otherwise (16 × 6); the transforms are plain Rust compiled for the same instruction set. Only compiled in on
//! x86-64 and only used when the CPU has AVX2 and FMA ([`available`]).

#[cfg(target_arch = "x86_64")]
pub(crate) use imp::{available, conv2d_winograd};

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

/// Every run of a call, image by image, in tile order.
pub(crate) fn tile_runs(s: &DirectShape) -> Vec<TileRun> {
    let (tiles_h, tiles_w) = (s.oh().div_ceil(2), s.ow().div_ceil(2));
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

/// `G g Gᵀ` of one 3×3 filter (row-major `g[ky·3 + kx]`), row-major 4×4.
pub(crate) fn transform_filter(g: &[f32]) -> [f32; 16] {
    // t = G g: 4 rows of 3.
    let mut t = [[0f32; 3]; 4];
    for x in 0..3 {
        let (g0, g1, g2) = (g[x], g[3 + x], g[6 + x]);
        t[0][x] = g0;
        t[1][x] = 0.5 * (g0 + g1 + g2);
        t[2][x] = 0.5 * (g0 - g1 + g2);
        t[3][x] = g2;
    }
    let mut u = [0f32; 16];
    for (i, row) in t.iter().enumerate() {
        let [r0, r1, r2] = *row;
        u[4 * i] = r0;
        u[4 * i + 1] = 0.5 * (r0 + r1 + r2);
        u[4 * i + 2] = 0.5 * (r0 - r1 + r2);
        u[4 * i + 3] = r2;
    }
    u
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use rayon::prelude::*;

    use super::{tile_runs, transform_filter, TileRun, RUN, RUNS_PER_PANEL};
    use crate::model::kernels::direct::{micro_kernel, DirectIo, DirectShape, CO_BLOCK, PANEL};
    use crate::model::kernels::storage::SharedMut;

    /// Input channels per pass of the micro-kernel (their `V` rows for one ξ: 64 × 64 floats = 16 KiB, in L1).
    const CHANNELS_PER_PASS: usize = 64;
    /// Calls with at most this many panels take the small-image path (`Job::run_small`): measured on 640 channels
    /// at 16×16, batch 2 (2 panels): 16 ms vs 25 ms; on 320 channels at 32×32 (8 panels) it was slower (23 vs 16).
    const SMALL_MAX_PANELS: usize = 2;
    /// Small-image path: output-channel blocks whose accumulators `M` (2 panels: 48 KiB per block) stay in L2
    /// while the input channels are walked in passes of [`SMALL_CHANNELS`] (their `V` for all ξ and 2 panels:
    /// 256 KiB, also in L2). The whole `V` is read from L3 once per group.
    const SMALL_GROUP: usize = 4;
    const SMALL_CHANNELS: usize = 32;
    /// Floats (one cache line) added to each ξ plane of `V` and `M`: a transform touches the same lane of all 16
    /// planes, and planes of `c_in · 64` floats (a multiple of 4 KiB) would put those 16 lines in one L1 set.
    const PAD: usize = 16;

    /// Floats per ξ plane of `V` (`c_in` rows of [`PANEL`] lanes, plus [`PAD`]).
    fn v_plane(c_in: usize) -> usize {
        c_in * PANEL + PAD
    }

    /// Floats per row of the input-transform scratch (34 used: 2·16 tiles + 2 columns of overlap).
    const ROW: usize = 48;

    /// Whether this CPU can run the Winograd kernel (AVX2 + FMA; AVX-512F is used when present).
    pub(crate) fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

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
    /// Callers must check [`available`] first.
    pub(crate) fn conv2d_winograd(s: &DirectShape, io: DirectIo, out: &mut [f32]) {
        assert!(super::supports(s), "conv2d_winograd takes 3×3, padding 1");
        assert!(available(), "conv2d_winograd needs AVX2 and FMA");
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
        let avx512 = is_x86_feature_detected!("avx512f");
        let runs = tile_runs(s);
        let panels: Vec<&[TileRun]> = runs.chunks(RUNS_PER_PANEL).collect();
        let co_blocks = s.c_out.div_ceil(CO_BLOCK);
        let wanted = 8 * rayon::current_num_threads();
        let blocks_per_part = co_blocks.div_ceil(wanted.div_ceil(panels.len()).clamp(1, co_blocks));
        let parts = co_blocks.div_ceil(blocks_per_part);
        // Few panels (small images): filters transformed on the fly by the tasks of output-channel blocks.
        let small = panels.len() <= SMALL_MAX_PANELS;
        let filters = if small {
            Vec::new()
        } else {
            pack_filters(s, io.weight)
        };
        let job = Job {
            s,
            io,
            filters: &filters,
            out: SharedMut::new(out),
        };
        // With several tasks per panel (small images, many channels) the input transform is done once, up front.
        let mut shared_v = Vec::new();
        let v_len = 16 * v_plane(s.c_in);
        let shared = (small || parts > 1).then(|| {
            let v = SharedMut::new_for(scratch(&mut shared_v, panels.len() * v_len));
            let chunks = s.c_in.div_ceil(CHANNELS_PER_PASS);
            (0..panels.len() * chunks).into_par_iter().for_each(|task| {
                let (panel, chunk) = (task / chunks, task % chunks);
                let channels =
                    chunk * CHANNELS_PER_PASS..((chunk + 1) * CHANNELS_PER_PASS).min(s.c_in);
                // SAFETY: as below; tasks write disjoint (panel, channel) parts of `shared_v`.
                unsafe {
                    let dst = v.ptr().add(panel * v_len);
                    if avx512 {
                        job.fill_v_avx512(panels[panel], channels, dst)
                    } else {
                        job.fill_v_avx2(panels[panel], channels, dst)
                    }
                }
            });
            v
        });
        if let (true, Some(v_all)) = (small, shared) {
            let tasks = co_blocks.div_ceil(co_blocks.div_ceil(wanted));
            let per_task = co_blocks.div_ceil(tasks);
            (0..tasks).into_par_iter().for_each(|task| {
                let blocks = task * per_task..((task + 1) * per_task).min(co_blocks);
                SCRATCH.with(|scratch| {
                    let (u, m) = &mut *scratch.borrow_mut();
                    // SAFETY: as below; `v_all` holds every panel's `V`.
                    unsafe {
                        if avx512 {
                            job.run_small_avx512(&panels, v_all.ptr(), blocks, u, m)
                        } else {
                            job.run_small_avx2(&panels, v_all.ptr(), blocks, u, m)
                        }
                    }
                });
            });
            return;
        }
        (0..panels.len() * parts).into_par_iter().for_each(|task| {
            let (panel_index, part) = (task / parts, task % parts);
            let panel = panels[panel_index];
            let blocks = part * blocks_per_part..((part + 1) * blocks_per_part).min(co_blocks);
            // SAFETY: `shared_v` holds `panels · v_len` floats.
            let ready = shared.map(|v| unsafe { v.ptr().add(panel_index * v_len) as *const f32 });
            SCRATCH.with(|buffers| {
                let (v, m) = &mut *buffers.borrow_mut();
                let v = match ready {
                    Some(ready) => ready,
                    None => scratch(v, v_len) as *const f32,
                };
                // SAFETY: the CPU has the features of the variant called (checked above); tasks write disjoint
                // output tiles/channels; `v` holds `v_len` floats.
                unsafe {
                    if avx512 {
                        job.run_avx512(panel, blocks, v, ready.is_none(), m)
                    } else {
                        job.run_avx2(panel, blocks, v, ready.is_none(), m)
                    }
                };
            });
        });
    }

    /// Offset in a ξ plane of the packed filters of input channel `ci`, output-channel block `block`: planes are
    /// `U[c / 64][k / 6][c mod 64][k mod 6]`, so for one pass of input channels the blocks follow each other and the
    /// tasks read one contiguous stream per ξ and pass (a new stream per block left the prefetcher behind).
    #[inline(always)]
    fn filter_offset(s: &DirectShape, block: usize, ci: usize) -> usize {
        let blocks = s.c_out.div_ceil(CO_BLOCK);
        let ci0 = ci - ci % CHANNELS_PER_PASS;
        let channels = CHANNELS_PER_PASS.min(s.c_in - ci0);
        (ci0 * blocks + block * channels + (ci - ci0)) * CO_BLOCK
    }

    /// `U[ξ]` laid out as in [`filter_offset`]: the transformed filters, output channels past `c_out` zero.
    fn pack_filters(s: &DirectShape, weight: &[f32]) -> Vec<f32> {
        let blocks = s.c_out.div_ceil(CO_BLOCK);
        let block_len = s.c_in * CO_BLOCK;
        let mut packed = vec![0f32; 16 * blocks * block_len];
        let per_xi = blocks * block_len;
        // Parallel over output-channel blocks; each writes its slice of all 16 ξ planes.
        let shared = SharedMut::new(&mut packed);
        (0..blocks).into_par_iter().for_each(|block| {
            let base = shared.ptr();
            for j in 0..CO_BLOCK {
                let co = block * CO_BLOCK + j;
                if co >= s.c_out {
                    break;
                }
                for ci in 0..s.c_in {
                    let u = transform_filter(&weight[(co * s.c_in + ci) * 9..][..9]);
                    for (xi, &value) in u.iter().enumerate() {
                        // SAFETY: (xi, block, ci, j) indexes inside `packed`; blocks are disjoint per task.
                        unsafe {
                            *base.add(xi * per_xi + filter_offset(s, block, ci) + j) = value;
                        }
                    }
                }
            }
        });
        packed
    }

    /// One task: a panel of tile runs, a range of output-channel blocks.
    struct Job<'a> {
        s: &'a DirectShape,
        io: DirectIo<'a>,
        filters: &'a [f32],
        out: SharedMut,
    }

    impl Job<'_> {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn run_avx512(
            &self,
            panel: &[TileRun],
            blocks: std::ops::Range<usize>,
            v: *const f32,
            fill: bool,
            m: &mut Vec<Vector>,
        ) {
            self.run::<true>(panel, blocks, v, fill, m)
        }

        #[target_feature(enable = "avx2,fma")]
        unsafe fn run_avx2(
            &self,
            panel: &[TileRun],
            blocks: std::ops::Range<usize>,
            v: *const f32,
            fill: bool,
            m: &mut Vec<Vector>,
        ) {
            self.run::<false>(panel, blocks, v, fill, m)
        }

        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn run_small_avx512(
            &self,
            panels: &[&[TileRun]],
            v: *const f32,
            blocks: std::ops::Range<usize>,
            u: &mut Vec<Vector>,
            m: &mut Vec<Vector>,
        ) {
            self.run_small::<true>(panels, v, blocks, u, m)
        }

        #[target_feature(enable = "avx2,fma")]
        unsafe fn run_small_avx2(
            &self,
            panels: &[&[TileRun]],
            v: *const f32,
            blocks: std::ops::Range<usize>,
            u: &mut Vec<Vector>,
            m: &mut Vec<Vector>,
        ) {
            self.run_small::<false>(panels, v, blocks, u, m)
        }

        /// Small images: output-channel blocks `blocks` over every panel (`V` of panel `p` at `v + p·16·v_plane`).
        /// Per block and pass of input channels the filters are transformed into `U[ξ][c][6]` (12 KiB) and used
        /// for every panel, so no transformed copy of the whole weight is ever written.
        #[inline(always)]
        unsafe fn run_small<const AVX512: bool>(
            &self,
            panels: &[&[TileRun]],
            v: *const f32,
            blocks: std::ops::Range<usize>,
            u: &mut Vec<Vector>,
            m: &mut Vec<Vector>,
        ) {
            let s = self.s;
            let v_len = 16 * v_plane(s.c_in);
            let u_plane = SMALL_CHANNELS * CO_BLOCK;
            let u_len = 16 * u_plane;
            let u = scratch(u, SMALL_GROUP * u_len);
            // M[block of the group][panel][ξ][6][64]
            let m_len = 16 * CO_BLOCK * PANEL;
            let m = scratch(m, SMALL_GROUP * panels.len() * m_len);
            let tiles_w = s.ow().div_ceil(2);
            for group_start in blocks.clone().step_by(SMALL_GROUP) {
                let group = group_start..(group_start + SMALL_GROUP).min(blocks.end);
                for ci0 in (0..s.c_in).step_by(SMALL_CHANNELS) {
                    let channels = SMALL_CHANNELS.min(s.c_in - ci0);
                    for (g, block) in group.clone().enumerate() {
                        let u = u.add(g * u_len);
                        self.transform_filters(block, ci0..ci0 + channels, u, u_plane);
                        for xi in 0..16 {
                            for (p, panel) in panels.iter().enumerate() {
                                let dst =
                                    m.add(((g * panels.len() + p) * 16 + xi) * CO_BLOCK * PANEL);
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
                                let y = output_transform(
                                    m.add(j * PANEL + slot * RUN),
                                    CO_BLOCK * PANEL,
                                );
                                if run.in_one_row(tiles_w) {
                                    self.store_tiles(run, block * CO_BLOCK + j, &y);
                                } else {
                                    self.store_scattered_tiles(run, block * CO_BLOCK + j, &y);
                                }
                            }
                        }
                    }
                }
            }
        }

        /// `U[ξ][c − first][j]` at `u + ξ·plane` for output channels `block·6 + j` and input channels `channels`
        /// (zero past `c_out`).
        #[inline(always)]
        unsafe fn transform_filters(
            &self,
            block: usize,
            channels: std::ops::Range<usize>,
            u: *mut f32,
            plane: usize,
        ) {
            let s = self.s;
            for j in 0..CO_BLOCK {
                let co = block * CO_BLOCK + j;
                for (c, ci) in channels.clone().enumerate() {
                    let values = if co < s.c_out {
                        transform_filter(&self.io.weight[(co * s.c_in + ci) * 9..][..9])
                    } else {
                        [0.0; 16]
                    };
                    for (xi, value) in values.into_iter().enumerate() {
                        *u.add(xi * plane + c * CO_BLOCK + j) = value;
                    }
                }
            }
        }

        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn fill_v_avx512(
            &self,
            panel: &[TileRun],
            channels: std::ops::Range<usize>,
            v: *mut f32,
        ) {
            self.fill_v(panel, channels, v)
        }

        #[target_feature(enable = "avx2,fma")]
        unsafe fn fill_v_avx2(
            &self,
            panel: &[TileRun],
            channels: std::ops::Range<usize>,
            v: *mut f32,
        ) {
            self.fill_v(panel, channels, v)
        }

        /// Input transform of `channels` of the panel into `V[ξ][c][lane]` at `v`.
        #[inline(always)]
        unsafe fn fill_v(&self, panel: &[TileRun], channels: std::ops::Range<usize>, v: *mut f32) {
            let s = self.s;
            let v_plane = v_plane(s.c_in);
            let tiles_w = s.ow().div_ceil(2);
            for (slot, run) in panel.iter().enumerate() {
                for ci in channels.clone() {
                    let d = if run.in_one_row(tiles_w) {
                        split_columns(&self.input_rows(run, ci))
                    } else {
                        self.gather_patches(run, ci)
                    };
                    input_transform(&d, v.add(ci * PANEL + slot * RUN), v_plane);
                }
            }
        }

        /// Input transform of the panel into `v` when `fill` (else `v` already holds it), then the 16 products
        /// for the output-channel blocks `blocks` (ξ by ξ) and the output transform. Inlined into the variants
        /// above, so it is compiled for their instruction sets.
        #[inline(always)]
        unsafe fn run<const AVX512: bool>(
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
                self.fill_v(panel, 0..s.c_in, v as *mut f32);
            }
            let tiles_w = s.ow().div_ceil(2);
            // M[ξ][k − first][lane] for every output channel of the task: each ξ plane (≤ 330 KiB for 1280
            // channels) stays in L2 while the input channels are walked, and `V` is read once per task.
            let m_plane = blocks.len() * CO_BLOCK * PANEL + PAD;
            let m = scratch(m, 16 * m_plane);
            let co_blocks = s.c_out.div_ceil(CO_BLOCK);
            let filter_plane = co_blocks * s.c_in * CO_BLOCK;
            for xi in 0..16 {
                for ci0 in (0..s.c_in).step_by(CHANNELS_PER_PASS) {
                    let channels = CHANNELS_PER_PASS.min(s.c_in - ci0);
                    let v = v.add(xi * v_plane + ci0 * PANEL);
                    for block in blocks.clone() {
                        let dst = m.add(xi * m_plane + (block - blocks.start) * CO_BLOCK * PANEL);
                        let u = self
                            .filters
                            .as_ptr()
                            .add(xi * filter_plane + filter_offset(s, block, ci0));
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
                    let y = output_transform(m.add((co - first) * PANEL + slot * RUN), m_plane);
                    if run.in_one_row(tiles_w) {
                        self.store_tiles(run, co, &y);
                    } else {
                        self.store_scattered_tiles(run, co, &y);
                    }
                }
            }
        }

        /// The 4 input rows under `run` for input channel `ci`, columns `2·first_tile − 1 ..` (34 used), zero
        /// outside the image, with the call's input transform or upsampling applied.
        #[inline(always)]
        fn input_rows(&self, run: &TileRun, ci: usize) -> [f32; 4 * ROW] {
            let s = self.s;
            let mut rows = [0f32; 4 * ROW];
            let (sh, sw) = s.stored_hw();
            let plane = &self.io.input[(run.image * s.c_in + ci) * sh * sw..][..sh * sw];
            let x0 = 2 * run.first_tile; // image column of scratch column 1
            let x_end = s.w.min(x0 + 2 * RUN + 1);
            let first_col = if x0 == 0 { 1 } else { 0 };
            let x_start = x0 + first_col - 1; // first image column read
            let affine = self
                .io
                .transform
                .map(|(a, silu)| (a[run.image * s.c_in + ci], silu));
            for i in 0..4 {
                let Some(y) = (2 * run.tile_row + i).checked_sub(1).filter(|&y| y < s.h) else {
                    continue;
                };
                let dst = &mut rows[i * ROW + first_col..][..x_end - x_start];
                if s.upsample {
                    let src = &plane[(y / 2) * sw..][..sw];
                    for (k, value) in dst.iter_mut().enumerate() {
                        *value = src[(x_start + k) / 2];
                    }
                } else {
                    let src = &plane[y * s.w + x_start..y * s.w + x_end];
                    match affine {
                        Some((a, silu)) => a.apply(src, dst, silu),
                        None => dst.copy_from_slice(src),
                    }
                }
            }
            rows
        }

        /// The 4×4 input patches `d[i][j][lane]` of a run that spans several tile rows (images narrower than 16
        /// tiles): the input rows it covers are copied (zero-padded, input transform or upsampling applied) into a
        /// scratch of `2·tiles_w + 2` columns, then each lane reads its patch there.
        #[inline(always)]
        fn gather_patches(&self, run: &TileRun, ci: usize) -> Patches {
            const MAX: usize = (2 * RUN + 2) * (2 * RUN + 2);
            let s = self.s;
            let tiles_w = s.ow().div_ceil(2);
            let width = 2 * tiles_w + 2;
            let tile_rows = (run.first_tile + run.count - 1) / tiles_w + 1;
            let rows = 2 * tile_rows + 2;
            let mut scratch = [0f32; MAX];
            let (sh, sw) = s.stored_hw();
            let plane = &self.io.input[(run.image * s.c_in + ci) * sh * sw..][..sh * sw];
            let affine = self
                .io
                .transform
                .map(|(a, silu)| (a[run.image * s.c_in + ci], silu));
            for r in 0..rows {
                let Some(y) = (2 * run.tile_row + r).checked_sub(1).filter(|&y| y < s.h) else {
                    continue;
                };
                let dst = &mut scratch[r * width + 1..][..s.w];
                if s.upsample {
                    let src = &plane[(y / 2) * sw..][..sw];
                    for (x, value) in dst.iter_mut().enumerate() {
                        *value = src[x / 2];
                    }
                } else {
                    let src = &plane[y * s.w..][..s.w];
                    match affine {
                        Some((a, silu)) => a.apply(src, dst, silu),
                        None => dst.copy_from_slice(src),
                    }
                }
            }
            let mut d = [[[0f32; RUN]; 4]; 4];
            for l in 0..run.count {
                let tile = run.first_tile + l;
                let (row, col) = (tile / tiles_w, tile % tiles_w);
                let at = 2 * row * width + 2 * col;
                for (i, d) in d.iter_mut().enumerate() {
                    for (j, d) in d.iter_mut().enumerate() {
                        d[l] = scratch[at + i * width + j];
                    }
                }
            }
            d
        }

        /// [`Self::store_tiles`] for a run that spans several tile rows: lane by lane.
        #[inline(always)]
        unsafe fn store_scattered_tiles(&self, run: &TileRun, co: usize, y: &[[[f32; RUN]; 2]; 2]) {
            let s = self.s;
            let bias = self.io.bias[run.image * s.c_out + co];
            let (oh, ow) = (s.oh(), s.ow());
            let tiles_w = ow.div_ceil(2);
            let plane = (run.image * s.c_out + co) * oh * ow;
            for l in 0..run.count {
                let tile = run.tile_row * tiles_w + run.first_tile + l;
                let (oy, ox) = (2 * (tile / tiles_w), 2 * (tile % tiles_w));
                for (p, y) in y.iter().enumerate().filter(|(p, _)| oy + p < oh) {
                    for (q, y) in y.iter().enumerate().filter(|(q, _)| ox + q < ow) {
                        let at = plane + (oy + p) * ow + ox + q;
                        let residual = self.io.residual.map_or(0.0, |r| r[at]);
                        *self.out.ptr().add(at) = y[l] + bias + residual;
                    }
                }
            }
        }

        /// Adds bias (+ residual) to the 2×2 tiles `y[p][q][lane]` of `run` for output channel `co` and stores
        /// the pixels inside the output.
        #[inline(always)]
        unsafe fn store_tiles(&self, run: &TileRun, co: usize, y: &[[[f32; RUN]; 2]; 2]) {
            let s = self.s;
            let bias = self.io.bias[run.image * s.c_out + co];
            let (oh, ow) = (s.oh(), s.ow());
            let x0 = 2 * run.first_tile;
            let cols = (2 * run.count).min(ow - x0);
            let plane = (run.image * s.c_out + co) * oh * ow;
            for (p, y) in y.iter().enumerate() {
                let row = 2 * run.tile_row + p;
                if row >= oh {
                    break;
                }
                let at = plane + row * ow + x0;
                let mut values = [0f32; 2 * RUN];
                for l in 0..RUN {
                    values[2 * l] = y[0][l] + bias;
                    values[2 * l + 1] = y[1][l] + bias;
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

    /// 4×4 input patches of 16 tiles, `d[i][j][lane]`.
    type Patches = [[[f32; RUN]; 4]; 4];

    /// The patches of a run in one tile row from its input rows (see `Job::input_rows`):
    /// `d[i][j][lane] = rows[i][2·lane + j]`.
    #[inline(always)]
    fn split_columns(rows: &[f32; 4 * ROW]) -> Patches {
        let mut d = [[[0f32; RUN]; 4]; 4];
        for (i, d) in d.iter_mut().enumerate() {
            for (j, d) in d.iter_mut().enumerate() {
                for (l, d) in d.iter_mut().enumerate() {
                    *d = rows[i * ROW + 2 * l + j];
                }
            }
        }
        d
    }

    /// Writes `V[ξ][lane] = (Bᵀ d B)[ξ][lane]` at `dst + ξ·xi_stride`.
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
                std::ptr::copy_nonoverlapping(v.as_ptr(), dst.add((4 * i + j) * xi_stride), RUN);
            }
        }
    }

    /// `Aᵀ M A` for 16 tiles, `M[ξ][lane]` at `m + ξ·xi_stride`: `y[p][q][lane]`.
    #[inline(always)]
    unsafe fn output_transform(m: *const f32, xi_stride: usize) -> [[[f32; RUN]; 2]; 2] {
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
        let mut y = [[[0f32; RUN]; 2]; 2];
        for p in 0..2 {
            for l in 0..RUN {
                y[p][0][l] = s[p][0][l] + s[p][1][l] + s[p][2][l];
                y[p][1][l] = s[p][1][l] - s[p][2][l] - s[p][3][l];
            }
        }
        y
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

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn available() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn conv2d_winograd(_: &DirectShape, _: super::direct::DirectIo, _: &mut [f32]) {
    unreachable!("conv2d_winograd is only called when available() is true")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` equals the 3×3 correlation of the 4×4 patch (scalar reference of the kernel).
    #[test]
    fn transforms_compute_a_3x3_correlation() {
        let g: Vec<f32> = (0..9).map(|i| (i as f32 * 0.37).sin()).collect();
        let d: Vec<f32> = (0..16).map(|i| (i as f32 * 0.71).cos()).collect();
        let u = transform_filter(&g);
        // Bᵀ d B
        let bt = [
            [1., 0., -1., 0.],
            [0., 1., 1., 0.],
            [0., -1., 1., 0.],
            [0., 1., 0., -1.],
        ];
        let mut v = [0f32; 16];
        for i in 0..4 {
            for j in 0..4 {
                let mut sum = 0.0;
                for a in 0..4 {
                    for b in 0..4 {
                        sum += bt[i][a] * d[4 * a + b] * bt[j][b];
                    }
                }
                v[4 * i + j] = sum;
            }
        }
        let at = [[1., 1., 1., 0.], [0., 1., -1., -1.]];
        for p in 0..2 {
            for q in 0..2 {
                let mut y = 0.0;
                for i in 0..4 {
                    for j in 0..4 {
                        y += at[p][i] * u[4 * i + j] * v[4 * i + j] * at[q][j];
                    }
                }
                let mut want = 0.0;
                for ky in 0..3 {
                    for kx in 0..3 {
                        want += g[3 * ky + kx] * d[4 * (p + ky) + q + kx];
                    }
                }
                assert!((y - want).abs() < 1e-5, "({p},{q}): {y} vs {want}");
            }
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
        let runs = tile_runs(&s);
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
