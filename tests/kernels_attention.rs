//! Parity of `model::kernels::attention::scaled_dot_product_attention` with softmax(q·kᵀ/√d)·v computed in f64,
//! on every instruction-set path of the kernels (`kernels_support`), checking that the kernel ran on it.

#[macro_use]
mod kernels_support;

use candle_core::{DType, Device, Tensor, D};
use kernels_support::{kernels_on, on_path};
use loraeval::model::kernels::attention::{
    scaled_dot_product_attention, scaled_dot_product_attention_with_blocks,
};
use loraeval::model::kernels::isa::Isa;

/// Deterministic values in [-amplitude, amplitude) from a linear congruential generator.
fn pseudo_random(shape: &[usize], seed: u64, amplitude: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * amplitude
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// softmax(q·kᵀ/√d)·v in f64, rounded to f32.
fn reference(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let [q, k, v] = [q, k, v].map(|t| t.to_dtype(DType::F64).unwrap());
    let d = q.dim(3).unwrap() as f64;
    let scores = (q.matmul(&k.t().unwrap()).unwrap() / d.sqrt()).unwrap();
    let max = scores.max_keepdim(D::Minus1).unwrap();
    let e = scores.broadcast_sub(&max).unwrap().exp().unwrap();
    let p = e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap();
    p.matmul(&v).unwrap().to_dtype(DType::F32).unwrap()
}

/// max |got − want| / max |want|.
fn relative_error(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims());
    let diff = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = want
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    diff / scale
}

/// (batch, heads, query tokens, key tokens, d, dv, amplitude of q and k)
const CASES: &[(usize, usize, usize, usize, usize, usize, f32)] = &[
    (2, 3, 130, 130, 40, 40, 1.0), // self-attention, d 40, tokens not a multiple of the blocks
    (1, 2, 37, 77, 40, 40, 1.0),   // cross-attention over 77 text tokens
    (2, 1, 19, 154, 80, 80, 1.0),  // 154 keys (two prompt chunks), d 80
    (1, 1, 9, 77, 160, 160, 1.0),  // d 160
    (1, 2, 50, 300, 8, 12, 4.0),   // peaked softmax (scores up to ±45), dv ≠ d
    (1, 1, 1, 1, 5, 3, 1.0),       // one key
];

fn check(case: usize, blocks: Option<(usize, usize)>) -> f32 {
    let (b, h, lq, lk, d, dv, amplitude) = CASES[case];
    let seed = 10 * case as u64;
    let q = pseudo_random(&[b, h, lq, d], seed, amplitude);
    let k = pseudo_random(&[b, h, lk, d], seed + 1, amplitude);
    let v = pseudo_random(&[b, h, lk, dv], seed + 2, 1.0);
    let got = match blocks {
        None => scaled_dot_product_attention(&q, &k, &v).unwrap(),
        Some((bq, bk)) => scaled_dot_product_attention_with_blocks(&q, &k, &v, bq, bk).unwrap(),
    };
    relative_error(&got, &reference(&q, &k, &v))
}

/// `check` of `case` on `path`, asserting that the call was one attention kernel run on it.
fn check_on(path: Isa, case: usize, blocks: Option<(usize, usize)>) -> f32 {
    let (err, runs) = on_path(path, || check(case, blocks));
    assert_eq!(kernels_on(&runs, path), ["attention"]);
    err
}

fn attention_matches_f64_softmax_reference(path: Isa) {
    for case in 0..CASES.len() {
        let err = check_on(path, case, None);
        eprintln!("{path} case {case}: relative error {err:.2e}");
        assert!(err <= 1e-5, "{path} case {case}: relative error {err}");
    }
}
path_tests!(attention_matches_f64_softmax_reference: portable, avx2, avx512);

fn attention_matches_reference_for_small_blocks(path: Isa) {
    // Key blocks of 7 and 32 force many online-softmax rescales; query blocks of 1 and 5 split rows unevenly.
    for (bq, bk) in [(1, 7), (5, 32), (64, 1)] {
        for case in 0..CASES.len() {
            let err = check_on(path, case, Some((bq, bk)));
            assert!(
                err <= 1e-5,
                "{path} case {case}, blocks {bq}x{bk}: relative error {err}"
            );
        }
    }
}
path_tests!(attention_matches_reference_for_small_blocks: portable, avx2, avx512);

#[test]
fn attention_rejects_mismatched_shapes() {
    let q = pseudo_random(&[1, 2, 4, 8], 1, 1.0);
    let k = pseudo_random(&[1, 2, 5, 8], 2, 1.0);
    let v = pseudo_random(&[1, 2, 6, 8], 3, 1.0);
    let err = scaled_dot_product_attention(&q, &k, &v)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[1, 2, 5, 8]") && err.contains("[1, 2, 6, 8]"),
        "{err}"
    );
}
