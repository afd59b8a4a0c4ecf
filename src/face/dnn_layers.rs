//! Layer maths of dlib's DNN inference (`con_`, `affine_`/`bn_`, `relu_`, `max_pool_`, `avg_pool_`,
//! `add_prev_`, `fc_`) on single-sample CHW tensors, computed as dlib's CPU code does (face.md §2.3).
//!
//! Convolution is im2col + `gemm`, tiled over output rows so the column buffer stays small and the tiles
//! run in parallel with rayon. Shapes are validated when a network is built (resnet.rs, mmod.rs), so the
//! functions here only check them with `debug_assert!`.

use rayon::prelude::*;

/// A single-sample tensor in dlib's memory order: `k` channel planes of `nr` rows × `nc` columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub k: usize,
    pub nr: usize,
    pub nc: usize,
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(k: usize, nr: usize, nc: usize) -> Tensor {
        Tensor {
            k,
            nr,
            nc,
            data: vec![0.0; k * nr * nc],
        }
    }

    /// Number of values in one channel plane.
    pub fn plane_len(&self) -> usize {
        self.nr * self.nc
    }

    /// Channel plane `c` as a row-major slice.
    pub fn plane(&self, c: usize) -> &[f32] {
        let len = self.plane_len();
        &self.data[c * len..(c + 1) * len]
    }

    /// Value at channel `c`, row `r`, column `col`.
    pub fn at(&self, c: usize, r: usize, col: usize) -> f32 {
        self.data[(c * self.nr + r) * self.nc + col]
    }
}

/// A `con_` layer: cross-correlation with zero padding, filters in OIHW order.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub num_filters: usize,
    pub k_in: usize,
    pub nr: usize,
    pub nc: usize,
    pub stride_y: usize,
    pub stride_x: usize,
    pub padding_y: usize,
    pub padding_x: usize,
    /// `num_filters × k_in × nr × nc` weights.
    pub filters: Vec<f32>,
    /// One bias per filter (zeros when the layer has no bias).
    pub biases: Vec<f32>,
}

/// A per-channel `affine_` layer (CONV_MODE), or a `bn_con` record folded into one: y = gamma·x + beta.
#[derive(Clone, Debug, PartialEq)]
pub struct Affine {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// Window of a `max_pool_`/`avg_pool_` layer; `nr == 0 && nc == 0` means "the whole input".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub nr: usize,
    pub nc: usize,
    pub stride_y: usize,
    pub stride_x: usize,
    pub padding_y: usize,
    pub padding_x: usize,
}

/// An `fc_` layer: out[o] = Σ_i in[i]·weights[i·num_outputs + o] (+ bias[o]).
#[derive(Clone, Debug, PartialEq)]
pub struct Fc {
    pub num_outputs: usize,
    pub num_inputs: usize,
    pub weights: Vec<f32>,
    pub biases: Option<Vec<f32>>,
}

/// dlib's output size of a sliding window: 1 + (n + 2p − w)/s, or 0 when the window does not fit.
pub fn sliding_output_size(n: usize, window: usize, stride: usize, padding: usize) -> usize {
    if n + 2 * padding < window || stride == 0 {
        0
    } else {
        1 + (n + 2 * padding - window) / stride
    }
}

impl Conv {
    /// Output (rows, cols) for an input of `nr × nc`.
    pub fn output_size(&self, nr: usize, nc: usize) -> (usize, usize) {
        (
            sliding_output_size(nr, self.nr, self.stride_y, self.padding_y),
            sliding_output_size(nc, self.nc, self.stride_x, self.padding_x),
        )
    }

    /// Rows of the im2col matrix (= length of one filter).
    fn patch_len(&self) -> usize {
        self.k_in * self.nr * self.nc
    }
}

/// What to apply to each convolution output value before it is stored: dlib runs these as separate
/// layers, fusing them here does not change the arithmetic.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    pub affine: Option<&'a Affine>,
    pub relu: bool,
}

/// Largest im2col buffer (floats) one tile may use: 1 MiB keeps it in L2 for the gemm that reads it
/// (2× faster than streaming a large buffer from memory on the development machine).
const MAX_TILE_FLOATS: usize = 1 << 18;

/// `con_` forward (then the optional affine and relu), parallel over tiles of output rows.
pub fn conv2d(input: &Tensor, conv: &Conv, epilogue: Epilogue) -> Tensor {
    debug_assert_eq!(input.k, conv.k_in);
    let (out_nr, out_nc) = conv.output_size(input.nr, input.nc);
    let mut out = Tensor::zeros(conv.num_filters, out_nr, out_nc);
    if out_nr == 0 || out_nc == 0 || conv.num_filters == 0 {
        return out;
    }
    let rows_per_tile = tile_rows(conv.patch_len(), out_nr, out_nc);
    let tiles: Vec<(usize, usize)> = (0..out_nr)
        .step_by(rows_per_tile)
        .map(|r0| (r0, (r0 + rows_per_tile).min(out_nr)))
        .collect();
    let phased = (conv.stride_x > 1 && conv.num_filters > DIRECT_MAX_FILTERS)
        .then(|| PhaseSplit::new(input, conv.stride_x));
    // A few tiles per thread at a time, so only a handful of tile buffers exist at once.
    let group = 4 * rayon::current_num_threads().max(1);
    let plane = out_nr * out_nc;
    for group_tiles in tiles.chunks(group) {
        let results: Vec<Vec<f32>> = group_tiles
            .par_iter()
            .map(|&(r0, r1)| conv_tile(input, phased.as_ref(), conv, (r0, r1), out_nc, epilogue))
            .collect();
        for (&(r0, r1), tile) in group_tiles.iter().zip(&results) {
            let tile_len = (r1 - r0) * out_nc;
            for o in 0..conv.num_filters {
                let dst = &mut out.data[o * plane + r0 * out_nc..o * plane + r1 * out_nc];
                dst.copy_from_slice(&tile[o * tile_len..(o + 1) * tile_len]);
            }
        }
    }
    out
}

/// Output rows per tile: bounded by the buffer size, and split so both cores get work on big maps.
fn tile_rows(patch_len: usize, out_nr: usize, out_nc: usize) -> usize {
    let by_memory = (MAX_TILE_FLOATS / (patch_len * out_nc).max(1)).max(1);
    let threads = rayon::current_num_threads().max(1);
    let work = patch_len * out_nr * out_nc;
    let by_threads = if work >= (1 << 18) {
        out_nr.div_ceil(2 * threads)
    } else {
        out_nr
    };
    by_memory.min(by_threads).max(1)
}

/// One tile of output rows `r0..r1`: im2col, gemm, bias and epilogue; result is `[filter][row][col]`.
fn conv_tile(
    input: &Tensor,
    phased: Option<&PhaseSplit>,
    conv: &Conv,
    (r0, r1): (usize, usize),
    out_nc: usize,
    epilogue: Epilogue,
) -> Vec<f32> {
    let positions = (r1 - r0) * out_nc;
    let mut tile = vec![0.0f32; conv.num_filters * positions];
    if conv.num_filters <= DIRECT_MAX_FILTERS {
        direct_conv_tile(input, conv, (r0, r1), out_nc, &mut tile);
    } else {
        let cols = im2col(input, phased, conv, (r0, r1), out_nc);
        matmul(
            &conv.filters,
            &cols,
            &mut tile,
            conv.num_filters,
            conv.patch_len(),
            positions,
        );
    }
    for o in 0..conv.num_filters {
        let values = &mut tile[o * positions..(o + 1) * positions];
        let bias = conv.biases.get(o).copied().unwrap_or(0.0);
        let (g, b) = match epilogue.affine {
            Some(a) => (a.gamma[o], a.beta[o]),
            None => (1.0, 0.0),
        };
        for v in values.iter_mut() {
            let mut y = *v + bias;
            if epilogue.affine.is_some() {
                y = g * y + b;
            }
            if epilogue.relu && y < 0.0 {
                y = 0.0;
            }
            *v = y;
        }
    }
    tile
}

/// Up to this many filters a convolution is computed directly (a gemm with so few rows is a
/// memory-bound matrix-vector product over a large im2col buffer).
const DIRECT_MAX_FILTERS: usize = 4;

/// Direct convolution of output rows `r0..r1` into `tile` (`[filter][row][col]`), one row sweep per tap.
fn direct_conv_tile(
    input: &Tensor,
    conv: &Conv,
    (r0, r1): (usize, usize),
    out_nc: usize,
    tile: &mut [f32],
) {
    let positions = (r1 - r0) * out_nc;
    for (o, out) in tile
        .chunks_mut(positions.max(1))
        .enumerate()
        .take(conv.num_filters)
    {
        for c in 0..conv.k_in {
            let plane = input.plane(c);
            for ky in 0..conv.nr {
                for kx in 0..conv.nc {
                    let w = conv.filters[((o * conv.k_in + c) * conv.nr + ky) * conv.nc + kx];
                    let (j_lo, j_hi) = valid_output_cols(input, conv, kx, out_nc);
                    for i in r0..r1 {
                        let y = (i * conv.stride_y + ky) as isize - conv.padding_y as isize;
                        if y < 0 || y as usize >= input.nr || j_lo >= j_hi {
                            continue;
                        }
                        let src_row = &plane[y as usize * input.nc..(y as usize + 1) * input.nc];
                        let dst = &mut out[(i - r0) * out_nc + j_lo..(i - r0) * out_nc + j_hi];
                        let x0 = j_lo * conv.stride_x + kx - conv.padding_x;
                        if conv.stride_x == 1 {
                            for (d, v) in dst.iter_mut().zip(&src_row[x0..x0 + (j_hi - j_lo)]) {
                                *d += w * v;
                            }
                        } else {
                            let src = src_row[x0..].iter().step_by(conv.stride_x);
                            for (d, v) in dst.iter_mut().zip(src) {
                                *d += w * v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Output columns j whose input column j·sx + kx − px lies inside the input: `j_lo..j_hi`.
fn valid_output_cols(input: &Tensor, conv: &Conv, kx: usize, out_nc: usize) -> (usize, usize) {
    let j_lo = conv.padding_x.saturating_sub(kx).div_ceil(conv.stride_x);
    let j_hi = if input.nc + conv.padding_x > kx {
        ((input.nc + conv.padding_x - kx - 1) / conv.stride_x + 1).min(out_nc)
    } else {
        0
    };
    (j_lo, j_hi)
}

/// The input with every row reordered by column phase (x mod stride): columns 0, s, 2s, … then 1, 1+s, …
/// so that a strided convolution reads each kernel tap's inputs as one contiguous run.
struct PhaseSplit {
    data: Vec<f32>,
    /// Offset of each phase's first value within a reordered row.
    phase_start: Vec<usize>,
}

impl PhaseSplit {
    fn new(input: &Tensor, stride: usize) -> PhaseSplit {
        let nc = input.nc;
        let mut phase_start = Vec::with_capacity(stride);
        let mut start = 0;
        for phase in 0..stride {
            phase_start.push(start);
            start += (nc + stride - 1 - phase.min(nc)) / stride;
        }
        let mut data = Vec::with_capacity(input.data.len());
        for row in input.data.chunks(nc.max(1)) {
            for phase in 0..stride.min(nc) {
                data.extend(row[phase..].iter().step_by(stride));
            }
        }
        PhaseSplit { data, phase_start }
    }
}

/// The im2col matrix of output rows `r0..r1`: `[c·kh·kw + ky·kw + kx][position]`, zero outside the input.
fn im2col(
    input: &Tensor,
    phased: Option<&PhaseSplit>,
    conv: &Conv,
    rows: (usize, usize),
    out_nc: usize,
) -> Vec<f32> {
    let positions = (rows.1 - rows.0) * out_nc;
    let mut cols = vec![0.0f32; conv.patch_len() * positions];
    let mut q = 0;
    for c in 0..conv.k_in {
        let plane = match phased {
            Some(p) => &p.data[c * input.plane_len()..(c + 1) * input.plane_len()],
            None => input.plane(c),
        };
        let source = PatchSource {
            plane,
            phase_start: phased.map(|p| p.phase_start.as_slice()),
        };
        for ky in 0..conv.nr {
            for kx in 0..conv.nc {
                let row = &mut cols[q * positions..(q + 1) * positions];
                fill_patch_row(row, &source, input, conv, rows, (ky, kx), out_nc);
                q += 1;
            }
        }
    }
    cols
}

/// One channel plane, either as stored or phase-split ([`PhaseSplit`]).
struct PatchSource<'a> {
    plane: &'a [f32],
    phase_start: Option<&'a [usize]>,
}

/// One im2col row: for every output position of the tile, the input value under kernel tap (ky, kx).
fn fill_patch_row(
    row: &mut [f32],
    source: &PatchSource,
    input: &Tensor,
    conv: &Conv,
    (r0, r1): (usize, usize),
    (ky, kx): (usize, usize),
    out_nc: usize,
) {
    let (j_lo, j_hi) = valid_output_cols(input, conv, kx, out_nc);
    for i in r0..r1 {
        let y = (i * conv.stride_y + ky) as isize - conv.padding_y as isize;
        if y < 0 || y as usize >= input.nr || j_lo >= j_hi {
            continue;
        }
        let src_row = &source.plane[y as usize * input.nc..(y as usize + 1) * input.nc];
        let dst = &mut row[(i - r0) * out_nc + j_lo..(i - r0) * out_nc + j_hi];
        let x0 = j_lo * conv.stride_x + kx - conv.padding_x;
        match source.phase_start {
            Some(starts) => {
                let start = starts[x0 % conv.stride_x] + x0 / conv.stride_x;
                dst.copy_from_slice(&src_row[start..start + dst.len()]);
            }
            None if conv.stride_x == 1 => dst.copy_from_slice(&src_row[x0..x0 + dst.len()]),
            None => {
                let src = src_row[x0..].iter().step_by(conv.stride_x);
                for (d, v) in dst.iter_mut().zip(src) {
                    *d = *v;
                }
            }
        }
    }
}

/// dst (m×n) = lhs (m×k) · rhs (k×n), all row-major and contiguous; single-threaded (callers tile).
pub fn matmul(lhs: &[f32], rhs: &[f32], dst: &mut [f32], m: usize, k: usize, n: usize) {
    assert!(lhs.len() >= m * k && rhs.len() >= k * n && dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst[..m * n].fill(0.0);
        return;
    }
    // SAFETY: the assert above guarantees every index gemm touches (row-major strides, given sizes) is
    // inside the three slices, and `dst` does not alias the inputs (it is a unique borrow).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `affine_` in CONV_MODE, in place: x = gamma[c]·x + beta[c].
pub fn affine_inplace(t: &mut Tensor, affine: &Affine) {
    let len = t.plane_len();
    for (c, plane) in t.data.chunks_mut(len.max(1)).enumerate().take(t.k) {
        let (g, b) = (affine.gamma[c], affine.beta[c]);
        for v in plane {
            *v = g * *v + b;
        }
    }
}

/// `relu_`, in place.
pub fn relu_inplace(t: &mut Tensor) {
    for v in &mut t.data {
        if *v < 0.0 {
            *v = 0.0;
        }
    }
}

/// Window size actually used by a pool on an `nr × nc` input (0 means "everything").
fn pool_window(pool: &Pool, nr: usize, nc: usize) -> (usize, usize) {
    let wy = if pool.nr == 0 { nr } else { pool.nr };
    let wx = if pool.nc == 0 { nc } else { pool.nc };
    (wy, wx)
}

/// Output (rows, cols) of a pool on an `nr × nc` input.
pub fn pool_output_size(pool: &Pool, nr: usize, nc: usize) -> (usize, usize) {
    let (wy, wx) = pool_window(pool, nr, nc);
    (
        sliding_output_size(nr, wy, pool.stride_y, pool.padding_y),
        sliding_output_size(nc, wx, pool.stride_x, pool.padding_x),
    )
}

/// `max_pool_` (`max == true`) or `avg_pool_`: window for output (r, c) starts at (r·s − p, c·s − p), is
/// clipped to the input, and the max / mean is taken over the in-bounds values only.
pub fn pool2d(input: &Tensor, pool: &Pool, max: bool) -> Tensor {
    let (wy, wx) = pool_window(pool, input.nr, input.nc);
    let (out_nr, out_nc) = pool_output_size(pool, input.nr, input.nc);
    let mut out = Tensor::zeros(input.k, out_nr, out_nc);
    for c in 0..input.k {
        let plane = input.plane(c);
        for r in 0..out_nr {
            let (y0, y1) = clipped_span(r * pool.stride_y, pool.padding_y, wy, input.nr);
            for col in 0..out_nc {
                let (x0, x1) = clipped_span(col * pool.stride_x, pool.padding_x, wx, input.nc);
                out.data[(c * out_nr + r) * out_nc + col] =
                    window_reduce(plane, input.nc, (y0, y1), (x0, x1), max);
            }
        }
    }
    out
}

/// [start − padding, start − padding + window) clipped to [0, limit).
fn clipped_span(start: usize, padding: usize, window: usize, limit: usize) -> (usize, usize) {
    let lo = start.saturating_sub(padding);
    let hi = (start + window).saturating_sub(padding).min(limit);
    (lo, hi.max(lo))
}

/// Max or mean of a rectangle of a plane (0 for an empty rectangle).
fn window_reduce(
    plane: &[f32],
    nc: usize,
    (y0, y1): (usize, usize),
    (x0, x1): (usize, usize),
    max: bool,
) -> f32 {
    let count = (y1 - y0) * (x1 - x0);
    if count == 0 {
        return 0.0;
    }
    let values = (y0..y1).flat_map(|y| plane[y * nc + x0..y * nc + x1].iter().copied());
    if max {
        values.fold(f32::NEG_INFINITY, f32::max)
    } else {
        values.sum::<f32>() / count as f32
    }
}

/// `add_prev_`: element-wise sum whose dims are the max of both inputs; missing elements count as 0.
pub fn add_prev(a: &Tensor, b: &Tensor) -> Tensor {
    if a.k == b.k && a.nr == b.nr && a.nc == b.nc {
        let data = a.data.iter().zip(&b.data).map(|(x, y)| x + y).collect();
        return Tensor { data, ..*a };
    }
    let mut out = Tensor::zeros(a.k.max(b.k), a.nr.max(b.nr), a.nc.max(b.nc));
    for src in [a, b] {
        for c in 0..src.k {
            for r in 0..src.nr {
                let from = &src.data[(c * src.nr + r) * src.nc..(c * src.nr + r + 1) * src.nc];
                let start = (c * out.nr + r) * out.nc;
                for (d, s) in out.data[start..start + src.nc].iter_mut().zip(from) {
                    *d += s;
                }
            }
        }
    }
    out
}

/// `fc_` forward on the CHW-flattened input.
pub fn fully_connected(input: &[f32], fc: &Fc) -> Vec<f32> {
    debug_assert_eq!(input.len(), fc.num_inputs);
    let mut out = vec![0.0f32; fc.num_outputs];
    matmul(
        input,
        &fc.weights,
        &mut out,
        1,
        fc.num_inputs,
        fc.num_outputs,
    );
    if let Some(b) = &fc.biases {
        for (o, bias) in out.iter_mut().zip(b) {
            *o += bias;
        }
    }
    out
}

/// One step of a network built from dlib layer records (conv steps carry their following affine / relu).
#[derive(Clone, Debug)]
pub enum Op {
    Conv {
        conv: Conv,
        affine: Option<Affine>,
        relu: bool,
    },
    Affine(Affine),
    Relu,
    MaxPool(Pool),
    AvgPool(Pool),
    /// relu-free residual: `add_prev(shortcut(x), body(x))`, shortcut = identity or an average pool.
    Residual {
        body: Vec<Op>,
        shortcut_pool: Option<Pool>,
    },
    /// `fc_` on the flattened input; the output is a `num_outputs × 1 × 1` tensor.
    Fc(Fc),
}

/// Runs `ops` in order on `x`.
pub fn run_ops(ops: &[Op], mut x: Tensor) -> Tensor {
    for op in ops {
        x = run_op(op, x);
    }
    x
}

fn run_op(op: &Op, mut x: Tensor) -> Tensor {
    match op {
        Op::Conv { conv, affine, relu } => conv2d(
            &x,
            conv,
            Epilogue {
                affine: affine.as_ref(),
                relu: *relu,
            },
        ),
        Op::Affine(a) => {
            affine_inplace(&mut x, a);
            x
        }
        Op::Relu => {
            relu_inplace(&mut x);
            x
        }
        Op::MaxPool(p) => pool2d(&x, p, true),
        Op::AvgPool(p) => pool2d(&x, p, false),
        Op::Residual {
            body,
            shortcut_pool,
        } => {
            let shortcut = match shortcut_pool {
                Some(p) => pool2d(&x, p, false),
                None => x.clone(),
            };
            add_prev(&shortcut, &run_ops(body, x))
        }
        Op::Fc(fc) => {
            let data = fully_connected(&x.data, fc);
            Tensor {
                k: fc.num_outputs,
                nr: 1,
                nc: 1,
                data,
            }
        }
    }
}

/// Output shape `(k, nr, nc)` of `ops` for an input shape, or a description of the first mismatch
/// (wrong input channels, affine size, fc input size).
pub fn output_shape(
    ops: &[Op],
    mut shape: (usize, usize, usize),
) -> Result<(usize, usize, usize), String> {
    for (i, op) in ops.iter().enumerate() {
        shape = op_output_shape(op, shape).map_err(|e| format!("step {i}: {e}"))?;
    }
    Ok(shape)
}

fn op_output_shape(
    op: &Op,
    (k, nr, nc): (usize, usize, usize),
) -> Result<(usize, usize, usize), String> {
    let check_affine = |a: &Affine, k: usize| {
        if a.gamma.len() == k && a.beta.len() == k {
            Ok(())
        } else {
            Err(format!(
                "affine has {} values for {k} channels",
                a.gamma.len()
            ))
        }
    };
    match op {
        Op::Conv { conv, affine, .. } => {
            if conv.k_in != k {
                return Err(format!(
                    "conv expects {} input channels, gets {k}",
                    conv.k_in
                ));
            }
            if let Some(a) = affine {
                check_affine(a, conv.num_filters)?;
            }
            let (r, c) = conv.output_size(nr, nc);
            Ok((conv.num_filters, r, c))
        }
        Op::Affine(a) => check_affine(a, k).map(|_| (k, nr, nc)),
        Op::Relu => Ok((k, nr, nc)),
        Op::MaxPool(p) | Op::AvgPool(p) => {
            let (r, c) = pool_output_size(p, nr, nc);
            Ok((k, r, c))
        }
        Op::Residual {
            body,
            shortcut_pool,
        } => {
            let (bk, br, bc) = output_shape(body, (k, nr, nc))?;
            let (sr, sc) = shortcut_pool.map_or((nr, nc), |p| pool_output_size(&p, nr, nc));
            Ok((bk.max(k), br.max(sr), bc.max(sc)))
        }
        Op::Fc(fc) => {
            if fc.num_inputs != k * nr * nc {
                return Err(format!(
                    "fc expects {} inputs, gets {k}x{nr}x{nc}",
                    fc.num_inputs
                ));
            }
            Ok((fc.num_outputs, 1, 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct (textbook) convolution used as the reference for the im2col path.
    fn naive_conv(input: &Tensor, conv: &Conv) -> Tensor {
        let (out_nr, out_nc) = conv.output_size(input.nr, input.nc);
        let mut out = Tensor::zeros(conv.num_filters, out_nr, out_nc);
        for o in 0..conv.num_filters {
            for i in 0..out_nr {
                for j in 0..out_nc {
                    let mut acc = conv.biases[o] as f64;
                    for c in 0..conv.k_in {
                        for y in 0..conv.nr {
                            for x in 0..conv.nc {
                                let iy = (i * conv.stride_y + y) as isize - conv.padding_y as isize;
                                let ix = (j * conv.stride_x + x) as isize - conv.padding_x as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy as usize >= input.nr
                                    || ix as usize >= input.nc
                                {
                                    continue;
                                }
                                let w =
                                    conv.filters[((o * conv.k_in + c) * conv.nr + y) * conv.nc + x];
                                acc += w as f64 * input.at(c, iy as usize, ix as usize) as f64;
                            }
                        }
                    }
                    out.data[(o * out_nr + i) * out_nc + j] = acc as f32;
                }
            }
        }
        out
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    fn test_conv(k_in: usize, o: usize, ksize: usize, stride: usize, pad: usize) -> Conv {
        Conv {
            num_filters: o,
            k_in,
            nr: ksize,
            nc: ksize,
            stride_y: stride,
            stride_x: stride,
            padding_y: pad,
            padding_x: pad,
            filters: pseudo_random(o * k_in * ksize * ksize, 7),
            biases: pseudo_random(o, 9),
        }
    }

    #[test]
    fn conv_matches_direct_convolution_for_strides_and_paddings() {
        for &(ksize, stride, pad, nr, nc) in &[
            (3, 1, 1, 9, 11),
            (5, 2, 0, 17, 12),
            (7, 2, 3, 15, 15),
            (9, 1, 4, 6, 5),
        ] {
            let input = Tensor {
                k: 3,
                nr,
                nc,
                data: pseudo_random(3 * nr * nc, 3),
            };
            // 1 filter takes the direct path, 7 the im2col + gemm path.
            for filters in [1, 7] {
                let conv = test_conv(3, filters, ksize, stride, pad);
                let fast = conv2d(&input, &conv, Epilogue::default());
                let slow = naive_conv(&input, &conv);
                assert_eq!((fast.k, fast.nr, fast.nc), (slow.k, slow.nr, slow.nc));
                for (a, b) in fast.data.iter().zip(&slow.data) {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "{a} vs {b} for {filters} filters k{ksize} s{stride} p{pad}"
                    );
                }
            }
        }
    }

    #[test]
    fn conv_output_is_empty_when_the_window_does_not_fit() {
        let input = Tensor::zeros(3, 3, 3);
        let out = conv2d(&input, &test_conv(3, 2, 5, 2, 0), Epilogue::default());
        assert_eq!((out.nr, out.nc, out.data.len()), (0, 0, 0));
    }

    #[test]
    fn pools_clip_windows_and_average_in_bounds_values_only() {
        let input = Tensor {
            k: 1,
            nr: 3,
            nc: 3,
            data: (1..=9).map(|v| v as f32).collect(),
        };
        let pool = Pool {
            nr: 2,
            nc: 2,
            stride_y: 2,
            stride_x: 2,
            padding_y: 1,
            padding_x: 1,
        };
        let avg = pool2d(&input, &pool, false);
        assert_eq!((avg.nr, avg.nc), (2, 2));
        assert_eq!(avg.data, vec![1.0, 2.5, 5.5, 7.0]);
        let mx = pool2d(&input, &pool, true);
        assert_eq!(mx.data, vec![1.0, 3.0, 7.0, 9.0]);
        let everything = Pool {
            nr: 0,
            nc: 0,
            stride_y: 1,
            stride_x: 1,
            padding_y: 0,
            padding_x: 0,
        };
        assert_eq!(pool2d(&input, &everything, false).data, vec![5.0]);
    }

    #[test]
    fn add_prev_zero_fills_the_smaller_operand() {
        let a = Tensor {
            k: 1,
            nr: 1,
            nc: 1,
            data: vec![1.0],
        };
        let b = Tensor {
            k: 2,
            nr: 2,
            nc: 2,
            data: vec![1.0; 8],
        };
        let sum = add_prev(&a, &b);
        assert_eq!(sum.data, vec![2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn fc_uses_dlib_weight_layout() {
        let fc = Fc {
            num_outputs: 2,
            num_inputs: 3,
            weights: vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0],
            biases: Some(vec![0.5, -0.5]),
        };
        assert_eq!(fully_connected(&[1.0, 1.0, 2.0], &fc), vec![9.5, 89.5]);
    }
}
