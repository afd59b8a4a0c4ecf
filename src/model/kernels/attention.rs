//! Fused scaled-dot-product attention (flash-attention style) for f32 CPU tensors `[B, heads, L, d]`.
//!
//! Each rayon task owns one block of query rows of one (batch, head). It walks the keys in blocks: scores
//! `S = (Q·scale·log2 e)·Kᵀ` for the block (`gemm`), an online softmax in base 2 (running row max `m` and sum `l`;
//! earlier output is rescaled by `2^(m_old − m_new)` when the max grows), then `O += P·V` (`gemm`). Memory per task is
//! one `query_block × key_block` score tile, so the whole call is linear in the number of tokens: the
//! `L × L` score matrix of the unfused form (4096² floats per head at 512×512) never exists.

use candle_core::Tensor;
use gemm::Parallelism;
use rayon::prelude::*;

use super::attention_avx2;
use super::isa::{Cpu, Isa};
use super::simd::{column_exp2_sub_sum, column_max, scale_rows};
use super::storage::{
    check_f32, dims, tensor_from_vec, threads, with_f32_rows, with_f32_slice, KernelError,
    SharedMut,
};
use super::timing::timed;

const OP: &str = "scaled_dot_product_attention";

/// Query rows per task (fewer when that would leave a thread idle) on CPUs with at least 2 MiB of L2 per core:
/// with [`DEFAULT_KEY_BLOCK`] the score tile is 1 MiB; the sweep in docs/perf.md, "CPU kernels" (AVX-512 machine)
/// found 256×1024 the fastest of the sizes tried.
pub const DEFAULT_QUERY_BLOCK: usize = 256;
/// Keys per score tile (see [`DEFAULT_QUERY_BLOCK`]).
pub const DEFAULT_KEY_BLOCK: usize = 1024;
/// Query rows and keys per score tile on CPUs with a smaller L2 (256 KiB tile; 512 KiB L2 on the Zen 3 machine,
/// where it measured 450–500 ms against 473–529 ms for 256×1024 on 4096 × 4096 tokens, d = 40; docs/perf.md).
pub const SMALL_L2_BLOCKS: (usize, usize) = (128, 512);

/// The score-tile shape for this CPU: [`DEFAULT_QUERY_BLOCK`] × [`DEFAULT_KEY_BLOCK`] when the L2 cache read from
/// sysfs holds at least 2 MiB, [`SMALL_L2_BLOCKS`] otherwise (or when it cannot be read).
pub fn default_blocks() -> (usize, usize) {
    static BLOCKS: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();
    *BLOCKS.get_or_init(|| match l2_bytes() {
        Some(bytes) if bytes >= 2 << 20 => (DEFAULT_QUERY_BLOCK, DEFAULT_KEY_BLOCK),
        _ => SMALL_L2_BLOCKS,
    })
}

/// Size of the first CPU's level-2 cache (`/sys/devices/system/cpu/cpu0/cache/index*/`, sizes like `512K`).
fn l2_bytes() -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    (0..8).find_map(|index| {
        let entry = dir.join(format!("index{index}"));
        let level = std::fs::read_to_string(entry.join("level")).ok()?;
        if level.trim() != "2" {
            return None;
        }
        let size = std::fs::read_to_string(entry.join("size")).ok()?;
        let size = size.trim();
        let (digits, unit) = size.split_at(
            size.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(size.len()),
        );
        let value: usize = digits.parse().ok()?;
        match unit {
            "K" => Some(value << 10),
            "M" => Some(value << 20),
            "" => Some(value),
            _ => None,
        }
    })
}

/// `softmax(q·kᵀ/√d)·v` for `q` `[B, H, Lq, d]`, `k` `[B, H, Lk, d]`, `v` `[B, H, Lk, dv]` (f32); returns
/// `[B, H, Lq, dv]`. Non-CPU tensors go through candle's unfused ops.
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
) -> candle_core::Result<Tensor> {
    let (query_block, key_block) = default_blocks();
    scaled_dot_product_attention_with_blocks(q, k, v, query_block, key_block)
}

/// Multi-head attention on token-major tensors, as `Attention` layers produce them: `q` `[B, Lq, H·d]`,
/// `k` `[B, Lk, H·d]`, `v` `[B, Lk, H·dv]` (head `h` = columns `h·d..(h+1)·d`); returns `[B, Lq, H·dv]`. Equal to
/// splitting the heads, [`scaled_dot_product_attention`] and merging them back, without the four transposing
/// copies. The inputs only need contiguous rows: column slices of one wider tensor are read in place.
pub fn scaled_dot_product_attention_tokens(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
) -> candle_core::Result<Tensor> {
    let [b, lq, qw] = dims::<3>(OP, q)?;
    let [bk, lk, kw] = dims::<3>(OP, k)?;
    let [bv, lv, vw] = dims::<3>(OP, v)?;
    let fits = heads > 0
        && qw.is_multiple_of(heads)
        && vw.is_multiple_of(heads)
        && kw == qw
        && (bk, bv) == (b, b)
        && lv == lk
        && lk > 0;
    if !fits {
        return Err(KernelError::Shape {
            op: OP,
            detail: format!(
                "q {:?}, k {:?}, v {:?}, {heads} heads",
                q.dims(),
                k.dims(),
                v.dims()
            ),
        }
        .into_candle());
    }
    let (d, dv) = (qw / heads, vw / heads);
    if !q.device().is_cpu() {
        let split = |t: &Tensor, len: usize, width: usize| {
            t.reshape((b, len, heads, width))?
                .transpose(1, 2)?
                .contiguous()
        };
        let out = unfused(&split(q, lq, d)?, &split(k, lk, d)?, &split(v, lk, dv)?)?;
        return out.transpose(1, 2)?.reshape((b, lq, vw));
    }
    for t in [q, k, v] {
        check_f32(OP, t)?;
    }
    let mut out = vec![0f32; b * lq * vw];
    with_f32_rows(q, |q, q_bs, q_rs| {
        with_f32_rows(k, |k, k_bs, k_rs| {
            with_f32_rows(v, |v, v_bs, v_rs| {
                let shape = Dims {
                    heads: b * heads,
                    lq,
                    lk,
                    d,
                    dv,
                    q: Strides::tokens(heads, d, q_rs, q_bs),
                    k: Strides::tokens(heads, d, k_rs, k_bs),
                    v: Strides::tokens(heads, dv, v_rs, v_bs),
                    out: Strides::tokens(heads, dv, vw, lq * vw),
                };
                let (query_block, key_block) = default_blocks();
                run(
                    Cpu::current(),
                    &shape,
                    q,
                    k,
                    v,
                    &mut out,
                    (query_block, key_block),
                );
                Ok(())
            })
        })
    })?;
    tensor_from_vec(out, &[b, lq, vw])
}

/// Shapes of one attention call. `heads` counts (batch, head) pairs; each operand's element `(pair, row, c)` is
/// at `base(pair) + row · row_stride + c`.
#[derive(Debug, Clone, Copy)]
struct Dims {
    heads: usize,
    lq: usize,
    lk: usize,
    d: usize,
    dv: usize,
    q: Strides,
    k: Strides,
    v: Strides,
    out: Strides,
}

/// Where the rows of one operand are: pair `p = batch · heads_per_batch + head` starts at
/// `batch · batch_stride + head · head_stride`; rows are `row_stride` apart, columns contiguous.
#[derive(Debug, Clone, Copy)]
struct Strides {
    heads_per_batch: usize,
    batch_stride: usize,
    head_stride: usize,
    row_stride: usize,
}

impl Strides {
    /// `[B, H, L, width]` contiguous.
    fn heads_major(heads: usize, len: usize, width: usize) -> Self {
        Strides {
            heads_per_batch: heads,
            batch_stride: heads * len * width,
            head_stride: len * width,
            row_stride: width,
        }
    }

    /// `[B, L, H·width]` with rows `row_stride` apart and batches `batch_stride` apart (head `h` = columns
    /// `h·width..(h+1)·width`).
    fn tokens(heads: usize, width: usize, row_stride: usize, batch_stride: usize) -> Self {
        Strides {
            heads_per_batch: heads,
            batch_stride,
            head_stride: width,
            row_stride,
        }
    }

    fn base(&self, pair: usize) -> usize {
        (pair / self.heads_per_batch) * self.batch_stride
            + (pair % self.heads_per_batch) * self.head_stride
    }

    /// Number of values from `base(pair)` to the end of row `rows − 1`, column `width − 1`.
    fn span(&self, rows: usize, width: usize) -> usize {
        if rows == 0 {
            0
        } else {
            (rows - 1) * self.row_stride + width
        }
    }
}

/// [`scaled_dot_product_attention`] with explicit block sizes; for tuning and benchmarks.
#[doc(hidden)]
pub fn scaled_dot_product_attention_with_blocks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    query_block: usize,
    key_block: usize,
) -> candle_core::Result<Tensor> {
    let [b, h, lq, d] = dims::<4>(OP, q)?;
    let [bk, hk, lk, dk] = dims::<4>(OP, k)?;
    let [bv, hv, lv, dv] = dims::<4>(OP, v)?;
    if (bk, hk, dk) != (b, h, d) || (bv, hv, lv) != (b, h, lk) || lk == 0 {
        return Err(KernelError::Shape {
            op: OP,
            detail: format!("q {:?}, k {:?}, v {:?}", q.dims(), k.dims(), v.dims()),
        }
        .into_candle());
    }
    if !q.device().is_cpu() {
        return unfused(q, k, v);
    }
    for t in [q, k, v] {
        check_f32(OP, t)?;
    }
    let shape = Dims {
        heads: b * h,
        lq,
        lk,
        d,
        dv,
        q: Strides::heads_major(h, lq, d),
        k: Strides::heads_major(h, lk, d),
        v: Strides::heads_major(h, lk, dv),
        out: Strides::heads_major(h, lq, dv),
    };
    let mut out = vec![0f32; b * h * lq * dv];
    with_f32_slice(q, |q| {
        with_f32_slice(k, |k| {
            with_f32_slice(v, |v| {
                run(
                    Cpu::current(),
                    &shape,
                    q,
                    k,
                    v,
                    &mut out,
                    (query_block.max(1), key_block.max(1)),
                );
                Ok(())
            })
        })
    })?;
    tensor_from_vec(out, &[b, h, lq, dv])
}

/// The plain form `softmax(q·kᵀ/√d)·v`, for devices other than the CPU.
fn unfused(q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
    let d = q.dim(3)? as f64;
    let scores = (q.matmul(&k.t()?.contiguous()?)? / d.sqrt())?;
    candle_nn::ops::softmax_last_dim(&scores)?.matmul(v)
}

/// Per-task scratch: scaled queries, key-major score tile, running max / sum, column-major output accumulator.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    s: Vec<f32>,
    m: Vec<f32>,
    m_new: Vec<f32>,
    correction: Vec<f32>,
    l: Vec<f32>,
    o: Vec<f32>,
}

/// The attention on path `cpu` with score tiles of `query_block × key_block`.
fn run(
    cpu: Cpu,
    shape: &Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    (query_block, key_block): (usize, usize),
) {
    timed("attention", cpu, || {
        run_tasks(cpu, shape, q, k, v, out, (query_block, key_block))
    })
}

fn run_tasks(
    cpu: Cpu,
    shape: &Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    (query_block, key_block): (usize, usize),
) {
    let query_block = balanced_query_block(shape, query_block);
    let blocks_per_head = shape.lq.div_ceil(query_block);
    let key_block = key_block.min(shape.lk);
    // The AVX2 products on the AVX2 path; `gemm` (with its own AVX-512 kernels where the CPU has them) otherwise.
    let packed = (cpu.isa() == Isa::Avx2).then(|| PackedKeyValues::new(shape, k, v, key_block));
    let out = SharedMut::new(out);
    (0..shape.heads * blocks_per_head)
        .into_par_iter()
        .for_each_init(Scratch::default, |scratch, task| {
            let head = task / blocks_per_head;
            let row0 = (task % blocks_per_head) * query_block;
            let rows = query_block.min(shape.lq - row0);
            let q =
                &q[shape.q.base(head) + row0 * shape.q.row_stride..][..shape.q.span(rows, shape.d)];
            let key_values = match &packed {
                Some(packed) => packed.head(head),
                None => KeyValues::Rows {
                    k: &k[shape.k.base(head)..][..shape.k.span(shape.lk, shape.d)],
                    v: &v[shape.v.base(head)..][..shape.v.span(shape.lk, shape.dv)],
                },
            };
            // Task `task` alone writes columns 0..dv of output rows row0..row0+rows of head `head` (the other
            // heads' columns in the same rows belong to other tasks), so it gets a raw pointer, not a slice.
            let out = OutRows {
                start: out,
                offset: shape.out.base(head) + row0 * shape.out.row_stride,
                row_stride: shape.out.row_stride,
            };
            attend_block(cpu, shape, q, key_values, out, rows, key_block, scratch);
        });
}

/// The keys and values of one (batch, head) pair as [`attend_block`] reads them.
#[derive(Clone, Copy)]
enum KeyValues<'a> {
    /// Rows in place (strides from [`Dims`]).
    Rows { k: &'a [f32], v: &'a [f32] },
    /// AVX2 path: key block `b` at `k[b·k_block ..]` packed by `attention_avx2::pack_keys`, its values at
    /// `v[b·v_block ..]` packed by `attention_avx2::pack_values`.
    Packed {
        k: &'a [f32],
        v: &'a [f32],
        k_block: usize,
        v_block: usize,
    },
}

/// Keys and values of every pair packed once per call for the AVX2 products (every query block of a head reads
/// all of them: packing per task cost more than it saved).
struct PackedKeyValues {
    k: Vec<f32>,
    v: Vec<f32>,
    /// Floats per key block in `k` / `v`, and key blocks per pair.
    k_block: usize,
    v_block: usize,
    blocks: usize,
}

/// `attention_avx2::pack_keys` / `pack_values`: (rows, row stride, width, keys, destination).
type PackFn = fn(&[f32], usize, usize, usize, &mut [f32]);

impl PackedKeyValues {
    fn new(shape: &Dims, k: &[f32], v: &[f32], key_block: usize) -> Self {
        let blocks = shape.lk.div_ceil(key_block);
        let k_block = attention_avx2::packed_keys_len(key_block, shape.d);
        let v_block = attention_avx2::packed_values_len(key_block, shape.dv);
        let mut packed = PackedKeyValues {
            k: vec![0f32; shape.heads * blocks * k_block],
            v: vec![0f32; shape.heads * blocks * v_block],
            k_block,
            v_block,
            blocks,
        };
        let keys_of = |block: usize| key_block.min(shape.lk - block * key_block);
        // Every (pair, key block) of `src` packed by `pack` into its `chunk` floats of `dst`.
        let pack_all =
            |dst: &mut [f32], chunk, src: &[f32], strides: &Strides, width, pack: PackFn| {
                dst.par_chunks_mut(chunk)
                    .enumerate()
                    .for_each(|(index, dst)| {
                        let (pair, block) = (index / blocks, index % blocks);
                        let rows =
                            &src[strides.base(pair) + block * key_block * strides.row_stride..];
                        pack(rows, strides.row_stride, width, keys_of(block), dst);
                    });
            };
        pack_all(
            &mut packed.k,
            k_block,
            k,
            &shape.k,
            shape.d,
            attention_avx2::pack_keys,
        );
        pack_all(
            &mut packed.v,
            v_block,
            v,
            &shape.v,
            shape.dv,
            attention_avx2::pack_values,
        );
        packed
    }

    fn head(&self, pair: usize) -> KeyValues<'_> {
        let (k_len, v_len) = (self.blocks * self.k_block, self.blocks * self.v_block);
        KeyValues::Packed {
            k: &self.k[pair * k_len..][..k_len],
            v: &self.v[pair * v_len..][..v_len],
            k_block: self.k_block,
            v_block: self.v_block,
        }
    }
}

/// `query_block`, shrunk (not below 16 rows) until there are at least two tasks per thread.
fn balanced_query_block(shape: &Dims, query_block: usize) -> usize {
    let wanted_tasks = 2 * threads();
    let mut block = query_block;
    while block > 16 && shape.heads * shape.lq.div_ceil(block) < wanted_tasks {
        block /= 2;
    }
    block
}

/// Column stride of the AVX2 path's key-major tiles for `rows` query rows: a multiple of 16 floats (whole register
/// blocks) and an odd number of 64-byte lines, so that walking a column (one line per key) spreads over every L1
/// set; with 128 rows (512 bytes, 8 lines) a column used only 8 of the 64 sets and the `P·V` loads missed L1.
fn padded_stride(rows: usize) -> usize {
    let lanes = rows.next_multiple_of(attention_avx2::LANES);
    if (lanes / attention_avx2::LANES).is_multiple_of(2) {
        lanes + attention_avx2::LANES
    } else {
        lanes
    }
}

/// Attention of `rows` query rows against all keys of one head, written to `out` (`[rows, dv]`).
///
/// Scores are kept key-major (`s[j·rows + r]`): the softmax then runs down columns, vectorised across query rows
/// with no horizontal reductions, and `P` is already column-major for `O += P·V`. `O` is column-major too
/// (`o[c·rows + r]`), so the rescale by `2^(m_old − m_new)` is vectorised across rows as well.
#[allow(clippy::too_many_arguments)]
fn attend_block(
    cpu: Cpu,
    shape: &Dims,
    q: &[f32],
    key_values: KeyValues,
    out: OutRows,
    rows: usize,
    key_block: usize,
    scratch: &mut Scratch,
) {
    let (d, dv) = (shape.d, shape.dv);
    let key_block = key_block.min(shape.lk);
    let factor = std::f32::consts::LOG2_E / (d as f32).sqrt();
    let sc = scratch;
    // AVX2 products (no packing) read the queries transposed and want whole 16-row register blocks: `lanes` is
    // the column stride of `s` and `o`, padded by `padded_stride` (rows past `rows` hold zero queries, never read
    // back).
    let avx2 = matches!(key_values, KeyValues::Packed { .. });
    let lanes = if avx2 { padded_stride(rows) } else { rows };
    sc.q.clear();
    if avx2 {
        sc.q.resize(d * lanes, 0.0);
        for r in 0..rows {
            let row = &q[r * shape.q.row_stride..][..d];
            for (c, &x) in row.iter().enumerate() {
                sc.q[c * lanes + r] = x * factor;
            }
        }
    } else {
        for r in 0..rows {
            let row = &q[r * shape.q.row_stride..][..d];
            sc.q.extend(row.iter().map(|x| x * factor));
        }
    }
    sc.s.resize(lanes * key_block, 0.0);
    for (buffer, value) in [
        (&mut sc.m, f32::NEG_INFINITY),
        (&mut sc.m_new, f32::NEG_INFINITY),
        (&mut sc.correction, 0.0),
        (&mut sc.l, 0.0),
    ] {
        buffer.clear();
        buffer.resize(rows, value);
    }
    sc.o.clear();
    sc.o.resize(lanes * dv, 0.0);
    for (block, key0) in (0..shape.lk).step_by(key_block).enumerate() {
        let keys = key_block.min(shape.lk - key0);
        sc.m_new.copy_from_slice(&sc.m);
        match key_values {
            KeyValues::Packed { k, k_block, .. } => {
                let (k, s) = (&k[block * k_block..], &mut sc.s);
                attention_avx2::scores_with_max(cpu, (&sc.q, lanes), k, d, keys, s, &mut sc.m_new);
            }
            KeyValues::Rows { k, .. } => {
                let k = &k[key0 * shape.k.row_stride..];
                scores_key_major(&sc.q, k, shape.k.row_stride, &mut sc.s, rows, keys, d);
                column_max(cpu, &sc.s, keys, rows, &mut sc.m_new);
            }
        }
        online_softmax(cpu, sc, (rows, lanes), keys, dv);
        match key_values {
            KeyValues::Packed { v, v_block, .. } => {
                let v = &v[block * v_block..];
                attention_avx2::weighted_values(cpu, &sc.s, (rows, lanes), v, keys, dv, &mut sc.o);
            }
            KeyValues::Rows { v, .. } => {
                let v = &v[key0 * shape.v.row_stride..];
                accumulate_pv(&sc.s, v, shape.v.row_stride, &mut sc.o, rows, keys, dv);
            }
        }
    }
    // SAFETY: see `OutRows`.
    unsafe { write_normalised(&sc.o, lanes, &mut sc.l, out, rows, dv) };
}

/// The output rows of one task: row `r`, column `c` is at `start + offset + r·row_stride + c`.
#[derive(Clone, Copy)]
struct OutRows {
    start: SharedMut,
    offset: usize,
    row_stride: usize,
}

/// `out[r, c] = o[c·stride + r] / l[r]`: the transpose of the column-major accumulator, in blocks of 8 rows so that
/// both sides stay in a few cache lines (`l` is overwritten with its inverse).
///
/// # Safety
/// `out` must address `rows` rows of `dv` values inside the output buffer that no other task writes.
unsafe fn write_normalised(
    o: &[f32],
    stride: usize,
    l: &mut [f32],
    out: OutRows,
    rows: usize,
    dv: usize,
) {
    for x in l.iter_mut() {
        *x = 1.0 / *x;
    }
    const BLOCK: usize = 8;
    for r0 in (0..rows).step_by(BLOCK) {
        let r1 = (r0 + BLOCK).min(rows);
        for c in 0..dv {
            let column = &o[c * stride + r0..c * stride + r1];
            for ((r, &value), &inv) in (r0..r1).zip(column).zip(&l[r0..r1]) {
                *out.start.ptr().add(out.offset + r * out.row_stride + c) = value * inv;
            }
        }
    }
}

/// `s[j·rows + r] = Σ_c k[j, c]·q[r, c]` for `keys × rows` (rows of `k` are `k_rs` apart).
fn scores_key_major(
    q: &[f32],
    k: &[f32],
    k_rs: usize,
    s: &mut [f32],
    rows: usize,
    keys: usize,
    d: usize,
) {
    debug_assert!(k.len() >= (keys - 1) * k_rs + d);
    // SAFETY: q is rows×d, k holds keys rows of d values k_rs apart, s at least keys×rows.
    unsafe {
        gemm::gemm(
            keys,
            rows,
            d,
            s.as_mut_ptr(),
            1,
            rows as isize,
            false,
            k.as_ptr(),
            1,
            k_rs as isize,
            q.as_ptr(),
            d as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Turns the key-major score tile (column stride `lanes`) into probabilities `2^(s − m_new)` (`m_new`: the
/// running max including this tile), updating the running max/sum and rescaling the accumulated output rows.
fn online_softmax(
    cpu: Cpu,
    sc: &mut Scratch,
    (rows, lanes): (usize, usize),
    keys: usize,
    dv: usize,
) {
    let mut grew = false;
    for r in 0..rows {
        let (old, new) = (sc.m[r], sc.m_new[r]);
        sc.correction[r] = if new > old { (old - new).exp2() } else { 1.0 };
        grew |= new > old;
        sc.l[r] *= sc.correction[r];
    }
    if grew {
        scale_rows(cpu, &mut sc.o[..lanes * dv], lanes, &sc.correction);
    }
    sc.m.copy_from_slice(&sc.m_new);
    column_exp2_sub_sum(cpu, &mut sc.s, keys, lanes, &sc.m, &mut sc.l);
}

/// `o[c·rows + r] += Σ_j p[j·rows + r]·v[j, c]` for `rows × dv` (rows of `v` are `v_rs` apart).
fn accumulate_pv(
    p: &[f32],
    v: &[f32],
    v_rs: usize,
    o: &mut [f32],
    rows: usize,
    keys: usize,
    dv: usize,
) {
    debug_assert!(v.len() >= (keys - 1) * v_rs + dv);
    // SAFETY: p holds keys×rows values, v keys rows of dv values v_rs apart, o is rows×dv.
    unsafe {
        gemm::gemm(
            rows,
            dv,
            keys,
            o.as_mut_ptr(),
            rows as isize,
            1,
            true,
            p.as_ptr(),
            rows as isize,
            1,
            v.as_ptr(),
            1,
            v_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
