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

use super::simd::{exp2_sub_sum, row_max, scale};
use super::storage::{
    check_f32, dims, tensor_from_vec, threads, with_f32_slice, KernelError, SharedMut,
};

const OP: &str = "scaled_dot_product_attention";

/// Query rows per task (fewer when that would leave a thread idle). With [`DEFAULT_KEY_BLOCK`] the score tile is
/// 1 MiB, inside one core's L2; the sweep in docs/perf-kernels.md found 256×1024 the fastest of the sizes tried.
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

/// Per-task scratch: scaled queries, score tile, running max / sum, output accumulator.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    s: Vec<f32>,
    m: Vec<f32>,
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
    scratch.q.clear();
    scratch.q.extend(q.iter().map(|x| x * factor));
    scratch.s.resize(rows * key_block, 0.0);
    scratch.m.clear();
    scratch.m.resize(rows, f32::NEG_INFINITY);
    scratch.l.clear();
    scratch.l.resize(rows, 0.0);
    scratch.o.clear();
    scratch.o.resize(rows * dv, 0.0);
    for key0 in (0..shape.lk).step_by(key_block) {
        let keys = key_block.min(shape.lk - key0);
        scores(
            &scratch.q,
            &k[key0 * d..],
            &mut scratch.s,
            rows,
            keys,
            d,
            key_block,
        );
        online_softmax(scratch, rows, keys, key_block, dv);
        accumulate_pv(
            &scratch.s,
            &v[key0 * dv..],
            &mut scratch.o,
            rows,
            keys,
            dv,
            key_block,
        );
    }
    for (r, out_row) in out.chunks_exact_mut(dv).enumerate() {
        let inv = 1.0 / scratch.l[r];
        for (o, &acc) in out_row.iter_mut().zip(&scratch.o[r * dv..(r + 1) * dv]) {
            *o = acc * inv;
        }
    }
}

/// `s[r, j] = Σ_c q[r, c]·k[j, c]` for `rows × keys`; rows of `s` are `s_stride` apart.
fn scores(
    q: &[f32],
    k: &[f32],
    s: &mut [f32],
    rows: usize,
    keys: usize,
    d: usize,
    s_stride: usize,
) {
    // SAFETY: q is rows×d, k holds at least keys×d values, s at least rows×s_stride.
    unsafe {
        gemm::gemm(
            rows,
            keys,
            d,
            s.as_mut_ptr(),
            1,
            s_stride as isize,
            false,
            q.as_ptr(),
            1,
            d as isize,
            k.as_ptr(),
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

/// Turns the score tile into probabilities `2^(s − m_new)`, updating the running max/sum and rescaling the
/// accumulated output rows when the max grew.
fn online_softmax(scratch: &mut Scratch, rows: usize, keys: usize, s_stride: usize, dv: usize) {
    for r in 0..rows {
        let row = &mut scratch.s[r * s_stride..r * s_stride + keys];
        let m_old = scratch.m[r];
        let m_new = m_old.max(row_max(row));
        let sum = exp2_sub_sum(row, m_new);
        if m_new > m_old {
            let correction = (m_old - m_new).exp2();
            scratch.l[r] *= correction;
            scale(&mut scratch.o[r * dv..(r + 1) * dv], correction);
            scratch.m[r] = m_new;
        }
        scratch.l[r] += sum;
    }
}

/// `o[r, c] += Σ_j p[r, j]·v[j, c]` for `rows × dv`; rows of `p` are `p_stride` apart.
fn accumulate_pv(
    p: &[f32],
    v: &[f32],
    o: &mut [f32],
    rows: usize,
    keys: usize,
    dv: usize,
    p_stride: usize,
) {
    // SAFETY: p is rows×p_stride, v holds at least keys×dv values, o is rows×dv.
    unsafe {
        gemm::gemm(
            rows,
            dv,
            keys,
            o.as_mut_ptr(),
            1,
            dv as isize,
            true,
            p.as_ptr(),
            1,
            p_stride as isize,
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
