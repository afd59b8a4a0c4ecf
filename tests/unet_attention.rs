//! `scaled_dot_product_attention`: chunking over batch items and heads gives the plain formula's result.

use candle_core::{DType, Device, Tensor, D};
use loraeval::model::attention::{
    scaled_dot_product_attention, scaled_dot_product_attention_chunked,
};

/// softmax(q kᵀ / sqrt(d)) v over the whole tensor at once, with an explicit max-subtracted softmax.
fn plain_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let head_dim = q.dim(D::Minus1).unwrap();
    let scores = (q.matmul(&k.t().unwrap()).unwrap() / (head_dim as f64).sqrt()).unwrap();
    let shifted = scores
        .broadcast_sub(&scores.max_keepdim(D::Minus1).unwrap())
        .unwrap()
        .exp()
        .unwrap();
    let probs = shifted
        .broadcast_div(&shifted.sum_keepdim(D::Minus1).unwrap())
        .unwrap();
    probs.matmul(v).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn random(shape: (usize, usize, usize, usize)) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()
}

#[test]
fn chunked_attention_equals_plain_formula_for_every_chunk_size() {
    let q = random((2, 5, 37, 8));
    let k = random((2, 5, 77, 8));
    let v = random((2, 5, 77, 8));
    let expected = plain_attention(&q, &k, &v);
    for heads_per_chunk in [1, 2, 3, 5, 9] {
        let ours = scaled_dot_product_attention_chunked(&q, &k, &v, heads_per_chunk).unwrap();
        assert_eq!(ours.dims(), &[2, 5, 37, 8]);
        let diff = max_abs_diff(&ours, &expected);
        assert!(
            diff < 1e-5,
            "heads_per_chunk {heads_per_chunk}: diff {diff}"
        );
    }
    let ours = scaled_dot_product_attention(&q, &k, &v).unwrap();
    assert!(max_abs_diff(&ours, &expected) < 1e-5);
}

#[test]
fn attention_accepts_non_contiguous_inputs_and_keeps_dtype() {
    // [B, L, heads, d] transposed to [B, heads, L, d], as the model produces them.
    let q = random((1, 12, 4, 6)).transpose(1, 2).unwrap();
    let k = random((1, 9, 4, 6)).transpose(1, 2).unwrap();
    let v = random((1, 9, 4, 6)).transpose(1, 2).unwrap();
    let expected = plain_attention(
        &q.contiguous().unwrap(),
        &k.contiguous().unwrap(),
        &v.contiguous().unwrap(),
    );
    let ours = scaled_dot_product_attention(&q, &k, &v).unwrap();
    assert!(max_abs_diff(&ours, &expected) < 1e-5);
    let half = scaled_dot_product_attention(
        &q.to_dtype(DType::F16).unwrap(),
        &k.to_dtype(DType::F16).unwrap(),
        &v.to_dtype(DType::F16).unwrap(),
    )
    .unwrap();
    assert_eq!(half.dtype(), DType::F16);
}
