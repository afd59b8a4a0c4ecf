//! Direct stride-1 convolution (NCHW, f32) with an AVX-512 register-blocked micro-kernel: no im2col matrix and
//! no packing of the image.
//!
//! Each input plane is copied once into a zero-bordered plane of width `Wp = W + 2·pad`. In that layout the input
//! of tap `(ky, kx)` for output position `q = oy·Wp + ox` is at `q + ky·Wp + kx`, the same offset for every `q`: a
//! run of 64 consecutive `q` (one *panel*, crossing rows freely) reads 4 contiguous vectors per tap and channel.
//! The `kw − 1` positions per row with `ox ≥ OW` are computed and thrown away (masked compress-stores write only
//! the valid lanes, which are contiguous in the NCHW output).
//!
//! The micro-kernel keeps a 64-pixel × 6-output-channel block in 24 zmm accumulators over the whole reduction
//! (`c_in · kh · kw`), reading 4 vectors of the padded input and 6 broadcast weights per step (the weights are
//! packed once per call as `[co / 6][ci][tap][6]`), then adds the bias / channel shift / residual and stores.
//! Work is split over rayon tasks of a few panels of one image (their input rows stay in L2 while every block of
//! 6 output channels streams over them).
//!
//! Only compiled in on x86-64 and only used on the AVX-512 path (`isa.rs`; on the others `conv.rs` uses Winograd
//! or its im2col + `gemm` path).

pub(crate) use imp::{conv2d_direct, micro_kernel};

use super::pointwise::Affine;

/// The data of one direct convolution call.
#[derive(Clone, Copy)]
pub(crate) struct DirectIo<'a> {
    /// `[batch, c_in, h, w]` (half size when upsampling).
    pub input: &'a [f32],
    /// `[c_out, c_in, kh, kw]`.
    pub weight: &'a [f32],
    /// `[batch · c_out]`: bias plus channel shift per image.
    pub bias: &'a [f32],
    /// `[batch, c_out, oh, ow]`, added to the output.
    pub residual: Option<&'a [f32]>,
    /// Applied to the input as it is read: one affine per (image, input channel), `[batch · c_in]` (a GroupNorm),
    /// then SiLU when the flag is set. Padding stays zero, as when the convolution pads the normalised tensor.
    pub transform: Option<(&'a [Affine], bool)>,
}

/// Output pixels per micro-kernel panel (4 zmm vectors of 16 lanes).
pub(crate) const PANEL: usize = 64;
/// Output channels per micro-kernel block.
pub(crate) const CO_BLOCK: usize = 6;

/// Everything the direct kernel needs to know about one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DirectShape {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub pad: usize,
    /// The input is stored at half size (`h/2 × w/2`) and read nearest-upsampled ×2 (`h`, `w` are the upsampled
    /// sizes): diffusers `Upsample2D` fused into its convolution.
    pub upsample: bool,
}

impl DirectShape {
    pub fn padded_w(&self) -> usize {
        self.w + 2 * self.pad
    }
    pub fn padded_h(&self) -> usize {
        self.h + 2 * self.pad
    }
    pub fn oh(&self) -> usize {
        self.padded_h() + 1 - self.kh
    }
    pub fn ow(&self) -> usize {
        self.padded_w() + 1 - self.kw
    }
    /// Positions `q` computed per image: `oh` rows of `Wp` (the last `kw − 1` of each row are discarded).
    pub fn q_len(&self) -> usize {
        self.oh() * self.padded_w()
    }
    pub fn panels(&self) -> usize {
        self.q_len().div_ceil(PANEL)
    }
    /// Height and width of the stored input (half of `h`, `w` when `upsample`).
    pub fn stored_hw(&self) -> (usize, usize) {
        if self.upsample {
            (self.h / 2, self.w / 2)
        } else {
            (self.h, self.w)
        }
    }
    pub fn taps(&self) -> usize {
        self.kh * self.kw
    }
}

mod imp {
    use std::arch::x86_64::*;

    use rayon::prelude::*;

    use super::{DirectIo, DirectShape, CO_BLOCK, PANEL};
    use crate::model::kernels::isa::Cpu;
    use crate::model::kernels::pointwise::Affine;
    use crate::model::kernels::storage::SharedMut;

    /// `out[b, co, oy, ox] = Σ w[co, ci, ky, kx]·x[b, ci, oy + ky − pad, ox + kx − pad] + bias[b·c_out + co]
    /// (+ residual[b, co, oy, ox])`, for `out` of `batch·c_out·oh·ow` values, every one of which is written.
    ///
    /// Panics unless `cpu` is the AVX-512 path.
    pub(crate) fn conv2d_direct(cpu: Cpu, s: &DirectShape, io: DirectIo, out: &mut [f32]) {
        let DirectIo {
            input,
            weight,
            bias,
            residual,
            transform,
        } = io;
        assert!(cpu.avx512(), "conv2d_direct needs the AVX-512 path");
        if let Some((affines, _)) = transform {
            assert!(!s.upsample);
            assert_eq!(affines.len(), s.batch * s.c_in);
        }
        let (sh, sw) = s.stored_hw();
        assert!(!s.upsample || (s.h.is_multiple_of(2) && s.w.is_multiple_of(2)));
        assert_eq!(input.len(), s.batch * s.c_in * sh * sw);
        assert_eq!(weight.len(), s.c_out * s.c_in * s.taps());
        assert_eq!(bias.len(), s.batch * s.c_out);
        assert_eq!(out.len(), s.batch * s.c_out * s.oh() * s.ow());
        if let Some(r) = residual {
            assert_eq!(r.len(), out.len());
        }
        let packed = pack_weight(s, weight);
        let split = Split::of(s);
        let out = SharedMut::new(out);
        (0..split.tasks(s)).into_par_iter().for_each(|task| {
            let (image, panels, blocks) = split.task(s, task);
            let job = Job {
                cpu,
                s,
                image,
                input: &input[image * s.c_in * sh * sw..][..s.c_in * sh * sw],
                packed: &packed,
                bias: &bias[image * s.c_out..][..s.c_out],
                residual,
                transform: transform.map(|(a, silu)| (&a[image * s.c_in..][..s.c_in], silu)),
                out,
            };
            BAND.with(|band| {
                let mut band = band.borrow_mut();
                let band = job.fill_band(&mut band, panels.clone());
                // SAFETY: the CPU runs the AVX-512 path (asserted above); tasks write disjoint output pixels.
                unsafe { job.run(panels, blocks, band) };
            });
        });
    }

    /// How the work is cut into tasks: runs of `panels` panels of one image, times `co_parts` ranges of
    /// output-channel blocks (more than one only when there are too few panels to keep every thread busy).
    struct Split {
        panels: usize,
        panel_runs: usize,
        co_parts: usize,
        blocks_per_part: usize,
    }

    impl Split {
        /// At most 16 panels per task, and at least 8 tasks per thread when the output allows it.
        fn of(s: &DirectShape) -> Self {
            let wanted = 8 * rayon::current_num_threads();
            let panels = (s.batch * s.panels()).div_ceil(wanted).clamp(1, 16);
            let panel_runs = s.panels().div_ceil(panels);
            let co_blocks = s.c_out.div_ceil(CO_BLOCK);
            let co_parts = wanted.div_ceil(s.batch * panel_runs).clamp(1, co_blocks);
            let blocks_per_part = co_blocks.div_ceil(co_parts);
            Split {
                panels,
                panel_runs,
                co_parts: co_blocks.div_ceil(blocks_per_part),
                blocks_per_part,
            }
        }

        fn tasks(&self, s: &DirectShape) -> usize {
            s.batch * self.panel_runs * self.co_parts
        }

        /// (image, panels, output-channel blocks) of task `task`.
        fn task(
            &self,
            s: &DirectShape,
            task: usize,
        ) -> (usize, std::ops::Range<usize>, std::ops::Range<usize>) {
            let part = task % self.co_parts;
            let run = (task / self.co_parts) % self.panel_runs;
            let image = task / (self.co_parts * self.panel_runs);
            let first = run * self.panels;
            let co_blocks = s.c_out.div_ceil(CO_BLOCK);
            let block0 = part * self.blocks_per_part;
            (
                image,
                first..(first + self.panels).min(s.panels()),
                block0..(block0 + self.blocks_per_part).min(co_blocks),
            )
        }
    }

    /// Panels that share each pass over the weights (the weights of one pass and block are read once per group).
    const GROUP: usize = 4;

    /// Input channels per pass over the output-channel blocks: their rows under one group of panels (all taps)
    /// fill about 32 KiB, so they stay in L1 while every block of 6 output channels reads them.
    fn channels_per_pass(s: &DirectShape) -> usize {
        let floats_per_channel = GROUP * PANEL + (s.kh - 1) * s.padded_w() + s.kw;
        ((32 << 10) / 4 / floats_per_channel).clamp(4, 64)
    }

    thread_local! {
        /// Per-thread zero-bordered input band, reused across calls (no page faults after the first).
        static BAND: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// The rows of the zero-bordered input that a run of panels reads, all channels.
    struct Band<'a> {
        values: &'a [f32],
        /// Position `q` of the band's first value.
        start: usize,
        /// Floats per channel.
        channel_stride: usize,
    }

    /// `[co / 6][ci][tap][6]`, output channels past `c_out` zero.
    fn pack_weight(s: &DirectShape, weight: &[f32]) -> Vec<f32> {
        let (taps, blocks) = (s.taps(), s.c_out.div_ceil(CO_BLOCK));
        let block_len = s.c_in * taps * CO_BLOCK;
        let mut packed = vec![0f32; blocks * block_len];
        packed
            .par_chunks_mut(block_len)
            .enumerate()
            .for_each(|(block, dst)| {
                for j in 0..CO_BLOCK {
                    let co = block * CO_BLOCK + j;
                    if co >= s.c_out {
                        break;
                    }
                    let src = &weight[co * s.c_in * taps..][..s.c_in * taps];
                    for (k, &v) in src.iter().enumerate() {
                        dst[k * CO_BLOCK + j] = v;
                    }
                }
            });
        packed
    }

    /// One task: a range of panels of one image, all output channels.
    struct Job<'a> {
        cpu: Cpu,
        s: &'a DirectShape,
        image: usize,
        /// The image's input, `[c_in, h, w]` (half size when upsampling).
        input: &'a [f32],
        packed: &'a [f32],
        bias: &'a [f32],
        residual: Option<&'a [f32]>,
        /// The image's input transform, one affine per input channel (see [`DirectIo::transform`]).
        transform: Option<(&'a [Affine], bool)>,
        out: SharedMut,
    }

    /// Where the valid lanes of one 16-lane vector of a panel go: `mask` of valid lanes and the output pixel
    /// index (within the image plane) of the first valid lane.
    #[derive(Clone, Copy, Default)]
    struct VectorStore {
        mask: u16,
        pixel: usize,
    }

    impl Job<'_> {
        /// Writes into `buffer` the zero-bordered input rows that `panels` read (positions `q` from the first
        /// panel's row start to the last panel's end plus the taps' reach), every channel.
        fn fill_band<'b>(
            &self,
            buffer: &'b mut Vec<f32>,
            panels: std::ops::Range<usize>,
        ) -> Band<'b> {
            let s = self.s;
            let wp = s.padded_w();
            let start = (panels.start * PANEL) / wp * wp;
            let end = panels.end * PANEL + (s.kh - 1) * wp + s.kw - 1;
            let stride = (end - start).next_multiple_of(16);
            buffer.clear();
            buffer.resize(s.c_in * stride, 0.0);
            let first_row = start / wp;
            let rows = (end - start).div_ceil(wp);
            let (sh, sw) = s.stored_hw();
            for (ci, band) in buffer.chunks_mut(stride).enumerate() {
                let plane = &self.input[ci * sh * sw..][..sh * sw];
                for padded_row in first_row..first_row + rows {
                    let Some(y) = padded_row.checked_sub(s.pad).filter(|&y| y < s.h) else {
                        continue;
                    };
                    let at = padded_row * wp + s.pad - start;
                    if at >= stride {
                        continue;
                    }
                    let len = s.w.min(stride - at);
                    let dst = &mut band[at..at + len];
                    if s.upsample {
                        let src = &plane[(y / 2) * sw..][..sw];
                        for (pair, &v) in dst.chunks_mut(2).zip(src) {
                            pair.fill(v);
                        }
                    } else if let Some((affines, silu)) = self.transform {
                        affines[ci].apply(self.cpu, &plane[y * s.w..][..len], dst, silu);
                    } else {
                        dst.copy_from_slice(&plane[y * s.w..][..len]);
                    }
                }
            }
            Band {
                values: buffer,
                start,
                channel_stride: stride,
            }
        }

        #[target_feature(enable = "avx512f")]
        unsafe fn run(
            &self,
            panels: std::ops::Range<usize>,
            blocks: std::ops::Range<usize>,
            band: Band,
        ) {
            let s = self.s;
            let taps: Vec<usize> = (0..s.kh)
                .flat_map(|ky| (0..s.kw).map(move |kx| ky * s.padded_w() + kx))
                .collect();
            let block_len = s.c_in * taps.len() * CO_BLOCK;
            let co_blocks = s.c_out.div_ceil(CO_BLOCK);
            let ci_block = channels_per_pass(s);
            // Partial sums of every (panel of the group, output-channel block) while the input channels are
            // walked in passes.
            let mut partial = vec![_mm512_setzero_ps(); GROUP * co_blocks * 24];
            for group_start in panels.clone().step_by(GROUP) {
                let group = group_start..(group_start + GROUP).min(panels.end);
                let stores: Vec<[VectorStore; 4]> =
                    group.clone().map(|p| panel_stores(s, p)).collect();
                for ci0 in (0..s.c_in).step_by(ci_block) {
                    let channels = ci_block.min(s.c_in - ci0);
                    let last_pass = ci0 + channels == s.c_in;
                    for block in blocks.clone() {
                        let weights = self
                            .packed
                            .as_ptr()
                            .add(block * block_len + ci0 * taps.len() * CO_BLOCK);
                        for (g, panel) in group.clone().enumerate() {
                            let acc: &mut [__m512; 24] = (&mut partial
                                [(g * co_blocks + block) * 24..][..24])
                                .try_into()
                                .unwrap_or_else(|_| unreachable!());
                            if ci0 == 0 {
                                *acc = [_mm512_setzero_ps(); 24];
                            }
                            let input = band.values.as_ptr().add(panel * PANEL - band.start);
                            micro_kernel(
                                input.add(ci0 * band.channel_stride),
                                band.channel_stride,
                                channels,
                                &taps,
                                weights,
                                acc,
                            );
                            if last_pass {
                                self.store(block, &stores[g], acc);
                            }
                        }
                    }
                }
            }
        }

        /// Adds the initial value (bias, residual) to the accumulators of output channels
        /// `block·6 .. block·6 + 6` and writes the valid lanes.
        #[target_feature(enable = "avx512f")]
        unsafe fn store(&self, block: usize, stores: &[VectorStore; 4], acc: &[__m512; 24]) {
            let s = self.s;
            let plane = s.oh() * s.ow();
            for j in 0..CO_BLOCK {
                let co = block * CO_BLOCK + j;
                if co >= s.c_out {
                    break;
                }
                let base = (self.image * s.c_out + co) * plane;
                let bias = _mm512_set1_ps(self.bias[co]);
                for (v, st) in stores.iter().enumerate() {
                    if st.mask == 0 {
                        continue;
                    }
                    let mut value = _mm512_add_ps(acc[j * 4 + v], bias);
                    let dst = self.out.ptr().add(base + st.pixel);
                    if st.mask == u16::MAX {
                        if let Some(r) = self.residual {
                            value = _mm512_add_ps(
                                value,
                                _mm512_loadu_ps(r.as_ptr().add(base + st.pixel)),
                            );
                        }
                        _mm512_storeu_ps(dst, value);
                    } else {
                        if let Some(r) = self.residual {
                            let res = _mm512_maskz_expandloadu_ps(
                                st.mask,
                                r.as_ptr().add(base + st.pixel),
                            );
                            value = _mm512_add_ps(value, res);
                        }
                        _mm512_mask_compressstoreu_ps(dst, st.mask, value);
                    }
                }
            }
        }
    }

    /// The 4 vector stores of panel `panel`: lane `l` of vector `v` is position `q = panel·64 + 16v + l`, valid
    /// when `q < q_len` and `q mod Wp < ow`; valid positions map to pixel `(q div Wp)·ow + q mod Wp`.
    fn panel_stores(s: &DirectShape, panel: usize) -> [VectorStore; 4] {
        let (wp, ow) = (s.padded_w(), s.ow());
        let mut stores = [VectorStore::default(); 4];
        for (v, st) in stores.iter_mut().enumerate() {
            let mut first = None;
            for lane in 0..16 {
                let q = panel * PANEL + v * 16 + lane;
                if q < s.q_len() && q % wp < ow {
                    st.mask |= 1 << lane;
                    first.get_or_insert((q / wp) * ow + q % wp);
                }
            }
            st.pixel = first.unwrap_or(0);
        }
        stores
    }

    /// Adds 64 positions × 6 output channels summed over `c_in` input channels and all taps to `acc_io`:
    /// `acc[j·4 + v]` holds channel `j`, positions `16v .. 16v + 16` of the panel starting at `input` (first
    /// channel of the pass; planes `plane` apart).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(crate) unsafe fn micro_kernel(
        input: *const f32,
        plane: usize,
        c_in: usize,
        taps: &[usize],
        weights: *const f32,
        acc_io: &mut [__m512; 24],
    ) {
        let mut acc = *acc_io;
        let mut w = weights;
        for ci in 0..c_in {
            let channel = input.add(ci * plane);
            for &tap in taps {
                let a = channel.add(tap);
                let a0 = _mm512_loadu_ps(a);
                let a1 = _mm512_loadu_ps(a.add(16));
                let a2 = _mm512_loadu_ps(a.add(32));
                let a3 = _mm512_loadu_ps(a.add(48));
                for j in 0..CO_BLOCK {
                    let b = _mm512_set1_ps(*w.add(j));
                    acc[j * 4] = _mm512_fmadd_ps(a0, b, acc[j * 4]);
                    acc[j * 4 + 1] = _mm512_fmadd_ps(a1, b, acc[j * 4 + 1]);
                    acc[j * 4 + 2] = _mm512_fmadd_ps(a2, b, acc[j * 4 + 2]);
                    acc[j * 4 + 3] = _mm512_fmadd_ps(a3, b, acc[j * 4 + 3]);
                }
                w = w.add(CO_BLOCK);
            }
        }
        *acc_io = acc;
    }
}
