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

use super::simd::{column_exp2_sub_sum, column_max, scale_rows};
use super::storage::{
    check_f32, dims, tensor_from_vec, threads, with_f32_slice, KernelError, SharedMut,
};

const OP: &str = "scaled_dot_product_attention";

/// Query rows per task (fewer when that would leave a thread idle). With [`DEFAULT_KEY_BLOCK`] the score tile is
/// 1 MiB, inside one core's L2; the sweep in docs/perf.md, "CPU kernels" found 256×1024 the fastest of the sizes tried.
pub const DEFAULT_QUERY_BLOCK: usize = 256;
/// Keys per score tile.
pub const DEFAULT_KEY_BLOCK: usize = 1024;

/// `softmax(q·kᵀ/√d)·v` for `q` `[B, H, Lq, d]`, `k` `[B, H, Lk, d]`, `v` `[B, H, Lk, dv]` (f32); returns
/// `[B, H, Lq, dv]`. Non-CPU tensors go through candle's unfused ops.
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
) -> candle_core::Result<Tensor> {
    scaled_dot_product_attention_with_blocks(q, k, v, DEFAULT_QUERY_BLOCK, DEFAULT_KEY_BLOCK)
}

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    heads: usize,
    lq: usize,
    lk: usize,
    d: usize,
    dv: usize,
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
    };
    let mut out = vec![0f32; b * h * lq * dv];
    with_f32_slice(q, |q| {
        with_f32_slice(k, |k| {
            with_f32_slice(v, |v| {
                run(
                    &shape,
                    q,
                    k,
                    v,
                    &mut out,
                    query_block.max(1),
                    key_block.max(1),
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

fn run(
    shape: &Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    query_block: usize,
    key_block: usize,
) {
    let query_block = balanced_query_block(shape, query_block);
    let blocks_per_head = shape.lq.div_ceil(query_block);
    let out = SharedMut::new(out);
    (0..shape.heads * blocks_per_head)
        .into_par_iter()
        .for_each_init(Scratch::default, |scratch, task| {
            let head = task / blocks_per_head;
            let row0 = (task % blocks_per_head) * query_block;
            let rows = query_block.min(shape.lq - row0);
            let q = &q[(head * shape.lq + row0) * shape.d..][..rows * shape.d];
            let k = &k[head * shape.lk * shape.d..][..shape.lk * shape.d];
            let v = &v[head * shape.lk * shape.dv..][..shape.lk * shape.dv];
            // SAFETY: task `task` alone writes output rows row0..row0+rows of head `head`.
            let out = unsafe {
                std::slice::from_raw_parts_mut(
                    out.ptr().add((head * shape.lq + row0) * shape.dv),
                    rows * shape.dv,
                )
            };
            attend_block(shape, q, k, v, out, rows, key_block, scratch);
        });
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

/// Attention of `rows` query rows against all keys of one head, written to `out` (`[rows, dv]`).
///
/// Scores are kept key-major (`s[j·rows + r]`): the softmax then runs down columns, vectorised across query rows
/// with no horizontal reductions, and `P` is already column-major for `O += P·V`. `O` is column-major too
/// (`o[c·rows + r]`), so the rescale by `2^(m_old − m_new)` is vectorised across rows as well.
#[allow(clippy::too_many_arguments)]
fn attend_block(
    shape: &Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    rows: usize,
    key_block: usize,
    scratch: &mut Scratch,
) {
    let (d, dv) = (shape.d, shape.dv);
    let key_block = key_block.min(shape.lk);
    let factor = std::f32::consts::LOG2_E / (d as f32).sqrt();
    let sc = scratch;
    sc.q.clear();
    sc.q.extend(q.iter().map(|x| x * factor));
    sc.s.resize(rows * key_block, 0.0);
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
    sc.o.resize(rows * dv, 0.0);
    for key0 in (0..shape.lk).step_by(key_block) {
        let keys = key_block.min(shape.lk - key0);
        scores_key_major(&sc.q, &k[key0 * d..], &mut sc.s, rows, keys, d);
        online_softmax(sc, rows, keys, dv);
        accumulate_pv(&sc.s, &v[key0 * dv..], &mut sc.o, rows, keys, dv);
    }
    write_normalised(&sc.o, &mut sc.l, out, rows, dv);
}

/// `out[r, c] = o[c·rows + r] / l[r]`: the transpose of the column-major accumulator, in blocks of 8 rows so that
/// both sides stay in a few cache lines (`l` is overwritten with its inverse).
fn write_normalised(o: &[f32], l: &mut [f32], out: &mut [f32], rows: usize, dv: usize) {
    for x in l.iter_mut() {
        *x = 1.0 / *x;
    }
    const BLOCK: usize = 8;
    for r0 in (0..rows).step_by(BLOCK) {
        let r1 = (r0 + BLOCK).min(rows);
        for c in 0..dv {
            let column = &o[c * rows + r0..c * rows + r1];
            for ((r, &value), &inv) in (r0..r1).zip(column).zip(&l[r0..r1]) {
                out[r * dv + c] = value * inv;
            }
        }
    }
}

/// `s[j·rows + r] = Σ_c k[j, c]·q[r, c]` for `keys × rows`.
fn scores_key_major(q: &[f32], k: &[f32], s: &mut [f32], rows: usize, keys: usize, d: usize) {
    // SAFETY: q is rows×d, k holds at least keys×d values, s at least keys×rows.
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
            d as isize,
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

/// Turns the key-major score tile into probabilities `2^(s − m_new)`, updating the running max/sum and rescaling
/// the accumulated output rows.
fn online_softmax(sc: &mut Scratch, rows: usize, keys: usize, dv: usize) {
    sc.m_new.copy_from_slice(&sc.m);
    column_max(&sc.s, keys, rows, &mut sc.m_new);
    let mut grew = false;
    for r in 0..rows {
        let (old, new) = (sc.m[r], sc.m_new[r]);
        sc.correction[r] = if new > old { (old - new).exp2() } else { 1.0 };
        grew |= new > old;
        sc.l[r] *= sc.correction[r];
    }
    if grew {
        scale_rows(&mut sc.o[..rows * dv], rows, &sc.correction);
    }
    sc.m.copy_from_slice(&sc.m_new);
    column_exp2_sub_sum(&mut sc.s, keys, rows, &sc.m, &mut sc.l);
}

/// `o[c·rows + r] += Σ_j p[j·rows + r]·v[j, c]` for `rows × dv`.
fn accumulate_pv(p: &[f32], v: &[f32], o: &mut [f32], rows: usize, keys: usize, dv: usize) {
    // SAFETY: p holds keys×rows values, v at least keys×dv, o is rows×dv.
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
            dv as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
