//! Parity of the fused kernels (`model::kernels::{pointwise, linear}`, the conv epilogue, token-major attention)
//! with the chains of candle ops they replace, on awkward shapes (odd sizes, channels not multiples of 8), on every
//! instruction-set path of the kernels (`kernels_support`), checking which kernels ran; and the in-place adds'
//! handling of operands that share storage.

#[macro_use]
mod kernels_support;

use std::time::Duration;

use candle_core::{DType, Device, Module, Tensor, D};
use kernels_support::{kernels_on, on_path};
use loraeval::model::kernels::attention::{
    scaled_dot_product_attention, scaled_dot_product_attention_tokens,
};
use loraeval::model::kernels::conv::{
    conv2d_add, conv2d_norm_add, conv2d_upsample2x_add, ConvAdd, ConvAlgorithm, InputNorm,
    PackedConvWeight,
};
use loraeval::model::kernels::isa::Isa;
use loraeval::model::kernels::linear::{
    linear, linear_geglu, pointwise_conv_from_tokens, pointwise_conv_to_tokens,
};
use loraeval::model::kernels::pointwise::{
    add_in_place, geglu, group_norm, group_norm_in_place, silu, GroupNormParams,
};

/// Deterministic values in [-1, 1) · `scale` + `offset` from a linear congruential generator.
fn pseudo_random(shape: &[usize], seed: u64, scale: f32, offset: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale + offset
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    pseudo_random(shape, seed, 1.0, 0.0)
}

/// max |got − want| / max |want|.
fn relative_error(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims());
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
    let scale = want.abs().unwrap().max_all().unwrap();
    diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap()
}

/// GroupNorm computed in f64 with candle ops (the definition), back to f32.
fn group_norm_f64(x: &Tensor, groups: usize, eps: f64, w: &Tensor, b: &Tensor) -> Tensor {
    let dims = x.dims().to_vec();
    let (n, c) = (dims[0], dims[1]);
    let xg = x
        .to_dtype(DType::F64)
        .unwrap()
        .reshape((n, groups, ()))
        .unwrap();
    let mean = xg.mean_keepdim(2).unwrap();
    let centered = xg.broadcast_sub(&mean).unwrap();
    let var = centered.sqr().unwrap().mean_keepdim(2).unwrap();
    let normed = centered
        .broadcast_div(&(var + eps).unwrap().sqrt().unwrap())
        .unwrap()
        .reshape(dims.as_slice())
        .unwrap();
    let mut wd = vec![1usize; dims.len()];
    wd[1] = c;
    let w = w
        .to_dtype(DType::F64)
        .unwrap()
        .reshape(wd.as_slice())
        .unwrap();
    let b = b
        .to_dtype(DType::F64)
        .unwrap()
        .reshape(wd.as_slice())
        .unwrap();
    normed
        .broadcast_mul(&w)
        .unwrap()
        .broadcast_add(&b)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

fn group_norm_matches_definition_with_and_without_silu(path: Isa) {
    // (shape, groups): odd spatial sizes, one group, many groups, 3-D input, a large mean (offset 30).
    let cases: [(&[usize], usize, f32); 5] = [
        (&[2, 12, 7, 9], 4, 0.0),
        (&[1, 6, 5, 5], 1, 0.0),
        (&[3, 33, 3, 1], 11, 0.0),
        (&[2, 8, 13], 2, 0.0),
        (&[1, 64, 17, 19], 32, 30.0),
    ];
    for (i, (shape, groups, offset)) in cases.into_iter().enumerate() {
        let c = shape[1];
        let x = pseudo_random(shape, i as u64, 2.0, offset);
        let w = pseudo_random(&[c], 100 + i as u64, 1.0, 1.0);
        let b = random(&[c], 200 + i as u64);
        let params = GroupNormParams {
            groups,
            eps: 1e-5,
            weight: &w,
            bias: &b,
        };
        let want = group_norm_f64(&x, groups, 1e-5, &w, &b);
        let in_place = x.copy().unwrap();
        let ((got, got_silu), runs) = on_path(path, || {
            let got = group_norm(&x, params, false).unwrap();
            let got_silu = group_norm(&x, params, true).unwrap();
            group_norm_in_place(&in_place, params, true).unwrap();
            (got, got_silu)
        });
        assert_eq!(
            kernels_on(&runs, path),
            ["group norm", "group norm", "group norm in place"]
        );
        let err = relative_error(&got, &want);
        eprintln!("{path} group_norm case {i}: relative error {err:.2e}");
        assert!(err < 1e-6, "{path} case {i}: {err}");

        let want_silu = want.silu().unwrap();
        let err = relative_error(&got_silu, &want_silu);
        eprintln!("{path} group_norm+silu case {i}: relative error {err:.2e}");
        assert!(err < 1e-6, "{path} case {i} silu: {err}");
        assert_eq!(
            relative_error(&in_place, &got_silu),
            0.0,
            "{path} case {i} in place"
        );
    }
}
path_tests!(group_norm_matches_definition_with_and_without_silu: portable, avx2, avx512);

#[test]
fn group_norm_rejects_bad_shapes() {
    let x = random(&[1, 6, 4, 4], 1);
    let w = random(&[6], 2);
    let params = |groups| GroupNormParams {
        groups,
        eps: 1e-5,
        weight: &w,
        bias: &w,
    };
    assert!(
        group_norm(&x, params(4), false).is_err(),
        "4 groups of 6 channels"
    );
    assert!(
        group_norm(&random(&[6, 4], 3), params(2), false).is_err(),
        "rank 2"
    );
    let strided = random(&[1, 6, 4, 8], 4).narrow(3, 0, 4).unwrap();
    assert!(
        group_norm_in_place(&strided, params(2), false).is_err(),
        "not contiguous"
    );
}

fn silu_geglu_and_add_match_candle(path: Isa) {
    let x = pseudo_random(&[3, 5, 1000], 7, 12.0, 0.0);
    let (got, runs) = on_path(path, || silu(&x).unwrap());
    assert_eq!(kernels_on(&runs, path), ["silu"]);
    let err = relative_error(&got, &x.silu().unwrap());
    eprintln!("{path} silu: relative error {err:.2e}");
    assert!(err < 1e-6);

    let projected = pseudo_random(&[2, 7, 2 * 37], 8, 5.0, 0.0);
    let hidden = projected.narrow(D::Minus1, 0, 37).unwrap();
    let gate = projected.narrow(D::Minus1, 37, 37).unwrap();
    let want = (hidden * gate.gelu_erf().unwrap()).unwrap();
    let (got, runs) = on_path(path, || geglu(&projected).unwrap());
    assert_eq!(kernels_on(&runs, path), ["geglu"]);
    let err = relative_error(&got, &want);
    eprintln!("{path} geglu: relative error {err:.2e}");
    assert!(err < 1e-6);
    assert!(geglu(&random(&[2, 5], 9)).is_err(), "odd width");

    let a = random(&[4, 9, 11], 10);
    let b = random(&[4, 9, 11], 11);
    let want = (&a + &b).unwrap();
    let ((), runs) = on_path(path, || add_in_place(&a, &b).unwrap());
    assert_eq!(kernels_on(&runs, path), ["add in place"]);
    assert_eq!(relative_error(&a, &want), 0.0);
    assert!(add_in_place(&a, &random(&[4, 9, 10], 12)).is_err());
}
path_tests!(silu_geglu_and_add_match_candle: portable, avx2, avx512);

/// Runs `body` on another thread and fails if it has not returned within a minute (an in-place update waiting on
/// its own storage lock never would).
fn within_a_minute(body: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(60))
        .expect("in-place update did not finish (deadlock) or panicked");
}

#[test]
fn add_in_place_of_a_tensor_to_itself_doubles_it() {
    within_a_minute(|| {
        let t = random(&[3, 70_001], 13);
        let want = (&t * 2.0).unwrap();
        add_in_place(&t, &t).unwrap();
        assert_eq!(relative_error(&t, &want), 0.0);

        // A clone and a reshaped view share the storage too.
        let u = random(&[6, 5], 14);
        let want = (&u * 2.0).unwrap();
        add_in_place(&u, &u.clone()).unwrap();
        assert_eq!(relative_error(&u, &want), 0.0);
        let flat = u.flatten_all().unwrap();
        add_in_place(&flat, &u.reshape(30).unwrap()).unwrap();
        assert_eq!(relative_error(&u, &(want * 2.0).unwrap()), 0.0);
    });
}

#[test]
fn add_in_place_reads_an_overlapping_view_before_writing() {
    within_a_minute(|| {
        // dst = row 0..6 of a 10-value storage, src = values 4..10: src's first two values are dst's last two,
        // and the sum uses their values from before the call.
        let storage = random(&[10], 15);
        let before = storage.to_vec1::<f32>().unwrap();
        let dst = storage.narrow(0, 0, 6).unwrap();
        let src = storage.narrow(0, 4, 6).unwrap();
        add_in_place(&dst, &src).unwrap();
        let after = storage.to_vec1::<f32>().unwrap();
        for i in 0..6 {
            assert_eq!(after[i], before[i] + before[i + 4], "value {i}");
        }
        assert_eq!(after[6..], before[6..], "values past dst untouched");
    });
}

fn linear_matches_candle_with_bias_and_residual(path: Isa) {
    for (i, (shape, out)) in [
        (&[2usize, 7, 33][..], 19usize),
        (&[5, 3][..], 8),
        (&[1, 300, 64][..], 200),
    ]
    .into_iter()
    .enumerate()
    {
        let k = *shape.last().unwrap();
        let x = random(shape, 20 + i as u64);
        let w = random(&[out, k], 30 + i as u64);
        let b = random(&[out], 40 + i as u64);
        let plain = candle_nn::Linear::new(w.clone(), Some(b.clone()))
            .forward(&x)
            .unwrap();
        let residual = random(plain.dims(), 50 + i as u64);
        let no_bias = candle_nn::Linear::new(w.clone(), None).forward(&x).unwrap();
        let ((got, got_res, got_nb), runs) = on_path(path, || {
            (
                linear(&x, &w, Some(&b), None).unwrap(),
                linear(&x, &w, Some(&b), Some(&residual)).unwrap(),
                linear(&x, &w, None, None).unwrap(),
            )
        });
        assert_eq!(kernels_on(&runs, path), ["linear"; 3]);
        let err = relative_error(&got, &plain);
        let err_res = relative_error(&got_res, &(&plain + &residual).unwrap());
        let err_nb = relative_error(&got_nb, &no_bias);
        eprintln!(
            "{path} linear case {i}: {err:.2e} / +residual {err_res:.2e} / no bias {err_nb:.2e}"
        );
        assert!(
            err < 1e-6 && err_res < 1e-6 && err_nb < 1e-6,
            "{path} case {i}"
        );
    }
    let x = random(&[2, 5], 60);
    assert!(
        linear(&x, &random(&[3, 4], 61), None, None).is_err(),
        "width mismatch"
    );
    let residual = random(&[2, 4], 62);
    assert!(linear(&x, &random(&[3, 5], 63), None, Some(&residual)).is_err());
}
path_tests!(linear_matches_candle_with_bias_and_residual: portable, avx2, avx512);

fn pointwise_convs_to_and_from_tokens_match_conv_and_transpose(path: Isa) {
    let (batch, c_in, c_out, h, w) = (2, 13, 21, 5, 7);
    let x = random(&[batch, c_in, h, w], 70);
    let weight = random(&[c_out, c_in, 1, 1], 71);
    let bias = random(&[c_out], 72);
    let conv = x
        .conv2d(&weight, 0, 1, 1, 1)
        .unwrap()
        .broadcast_add(&bias.reshape((1, (), 1, 1)).unwrap())
        .unwrap();
    let want_tokens = conv
        .reshape((batch, c_out, h * w))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap();
    let (tokens, runs) = on_path(path, || {
        pointwise_conv_to_tokens(&x, &weight, Some(&bias)).unwrap()
    });
    assert_eq!(kernels_on(&runs, path), ["conv 1x1 to tokens"]);
    let err = relative_error(&tokens, &want_tokens);
    eprintln!("{path} to tokens: {err:.2e}");
    assert!(err < 1e-6);

    let back_weight = random(&[c_in, c_out, 1, 1], 73);
    let back_bias = random(&[c_in], 74);
    let residual = random(&[batch, c_in, h, w], 75);
    let nchw = tokens
        .transpose(1, 2)
        .unwrap()
        .reshape((batch, c_out, h, w))
        .unwrap();
    let want = (nchw
        .conv2d(&back_weight, 0, 1, 1, 1)
        .unwrap()
        .broadcast_add(&back_bias.reshape((1, (), 1, 1)).unwrap())
        .unwrap()
        + &residual)
        .unwrap();
    let (got, runs) = on_path(path, || {
        pointwise_conv_from_tokens(
            &tokens,
            (h, w),
            &back_weight,
            Some(&back_bias),
            Some(&residual),
        )
        .unwrap()
    });
    assert_eq!(kernels_on(&runs, path), ["conv 1x1 from tokens"]);
    let err = relative_error(&got, &want);
    eprintln!("{path} from tokens: {err:.2e}");
    assert!(err < 1e-6);
    assert!(pointwise_conv_from_tokens(&tokens, (h, w + 1), &back_weight, None, None).is_err());
}
path_tests!(pointwise_convs_to_and_from_tokens_match_conv_and_transpose: portable, avx2, avx512);

fn conv_epilogue_adds_bias_channel_shift_and_residual(path: Isa) {
    // stride 1 and 2, odd sizes, and a small image that takes the multi-image tile path.
    for (i, (batch, c_in, c_out, size, stride)) in
        [(2, 5, 7, 11, 1), (3, 4, 6, 9, 2), (2, 3, 5, 4, 1)]
            .into_iter()
            .enumerate()
    {
        let x = random(&[batch, c_in, size, size + 2], 80 + i as u64);
        let w = random(&[c_out, c_in, 3, 3], 90 + i as u64);
        let bias = random(&[c_out], 100 + i as u64);
        let shift = random(&[batch, c_out], 110 + i as u64);
        let plain = x.conv2d(&w, 1, stride, 1, 1).unwrap();
        let residual = random(plain.dims(), 120 + i as u64);
        let want = plain
            .broadcast_add(&bias.reshape((1, (), 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&shift.unsqueeze(2).unwrap().unsqueeze(3).unwrap())
            .unwrap();
        let want = (want + &residual).unwrap();
        let packed = PackedConvWeight::new(&w).unwrap();
        for algorithm in [
            ConvAlgorithm::Im2col(7),
            ConvAlgorithm::Im2col(256),
            ConvAlgorithm::Direct,
        ] {
            let add = ConvAdd {
                bias: Some(&bias),
                channel_shift: Some(&shift),
                residual: Some(&residual),
            };
            let (got, runs) = on_path(path, || {
                conv2d_add(&x, &packed, stride, 1, add, algorithm).unwrap()
            });
            let ran = kernels_on(&runs, path);
            let direct = algorithm == ConvAlgorithm::Direct && stride == 1 && path == Isa::Avx512;
            let want_kernel = if direct { "conv direct" } else { "conv im2col" };
            assert_eq!(ran, [want_kernel], "{path} case {i} {algorithm:?}");
            let err = relative_error(&got, &want);
            eprintln!("{path} conv epilogue case {i} {algorithm:?}: {err:.2e}");
            assert!(err < 1e-6, "{path} case {i} {algorithm:?}");
        }
        let bad = ConvAdd {
            residual: Some(&x),
            ..ConvAdd::default()
        };
        assert!(conv2d_add(&x, &packed, stride, 1, bad, ConvAlgorithm::Auto).is_err());
    }
}
path_tests!(conv_epilogue_adds_bias_channel_shift_and_residual: portable, avx2, avx512);

fn upsample_fused_into_conv_matches_upsample_then_conv(path: Isa) {
    // Upsampled widths 40 and 64 take the fused Winograd kernel on the AVX2 and AVX-512 paths; 12 (and every width
    // on the portable path) falls back to upsample + im2col.
    for (i, (batch, c_in, c_out, h, w)) in [(2, 5, 7, 17, 20), (1, 3, 13, 4, 32), (1, 4, 4, 5, 6)]
        .into_iter()
        .enumerate()
    {
        let x = random(&[batch, c_in, h, w], 140 + i as u64);
        let weight = random(&[c_out, c_in, 3, 3], 150 + i as u64);
        let bias = random(&[c_out], 160 + i as u64);
        let up = x.upsample_nearest2d(2 * h, 2 * w).unwrap();
        let want = up
            .conv2d(&weight, 1, 1, 1, 1)
            .unwrap()
            .broadcast_add(&bias.reshape((1, (), 1, 1)).unwrap())
            .unwrap();
        let add = ConvAdd {
            bias: Some(&bias),
            ..ConvAdd::default()
        };
        let packed = PackedConvWeight::new(&weight).unwrap();
        let (got, runs) = on_path(path, || conv2d_upsample2x_add(&x, &packed, 1, add).unwrap());
        let fused = 2 * w >= 16 && path != Isa::Portable;
        let want_kernel = if fused {
            "conv winograd"
        } else {
            "conv im2col"
        };
        assert_eq!(kernels_on(&runs, path), [want_kernel], "{path} case {i}");
        let err = relative_error(&got, &want);
        eprintln!("{path} upsample+conv case {i}: {err:.2e}");
        // Widths ≥ 16 take Winograd F(4×4, 3×3), whose larger transform constants give ≈ 2e-6 here.
        assert!(err < 1e-5, "{path} case {i}: {err}");
    }
}
path_tests!(upsample_fused_into_conv_matches_upsample_then_conv: portable, avx2, avx512);

fn group_norm_fused_into_conv_matches_norm_then_conv(path: Isa) {
    // Direct and Winograd kernels (normalise while reading) and im2col (normalises first), with and without SiLU, with a
    // residual and a channel shift; 12 channels in 4 groups, odd sizes.
    let (batch, c_in, c_out, h, w) = (2, 12, 7, 9, 37);
    let x = pseudo_random(&[batch, c_in, h, w], 170, 3.0, 0.5);
    let gamma = pseudo_random(&[c_in], 171, 0.5, 1.0);
    let beta = random(&[c_in], 172);
    let weight = random(&[c_out, c_in, 3, 3], 173);
    let bias = random(&[c_out], 174);
    let shift = random(&[batch, c_out], 175);
    let residual = random(&[batch, c_out, h, w], 176);
    let params = GroupNormParams {
        groups: 4,
        eps: 1e-6,
        weight: &gamma,
        bias: &beta,
    };
    let add = ConvAdd {
        bias: Some(&bias),
        channel_shift: Some(&shift),
        residual: Some(&residual),
    };
    let packed = PackedConvWeight::new(&weight).unwrap();
    for silu in [true, false] {
        let normed = group_norm(&x, params, silu).unwrap();
        let want = conv2d_add(&normed, &packed, 1, 1, add, ConvAlgorithm::Im2col(256)).unwrap();
        for algorithm in [
            ConvAlgorithm::Direct,
            ConvAlgorithm::Winograd,
            ConvAlgorithm::Im2col(64),
        ] {
            let norm = InputNorm { params, silu };
            let (got, runs) = on_path(path, || {
                conv2d_norm_add(&x, Some(norm), &packed, 1, 1, add, algorithm).unwrap()
            });
            // The in-place kernels normalise while reading (statistics first); im2col normalises first.
            let kernel = match (algorithm, path) {
                (ConvAlgorithm::Direct, Isa::Avx512) => "conv direct",
                (ConvAlgorithm::Winograd, Isa::Avx2 | Isa::Avx512) => "conv winograd",
                _ => "conv im2col",
            };
            let first = if kernel == "conv im2col" {
                "group norm"
            } else {
                "group norm statistics"
            };
            assert_eq!(
                kernels_on(&runs, path),
                [first, kernel],
                "{path} {algorithm:?}"
            );
            let err = relative_error(&got, &want);
            eprintln!("{path} norm+conv silu {silu} {algorithm:?}: {err:.2e}");
            // Winograd F(4×4, 3×3): larger transform constants, ≈ 2e-6 here (F(2×2) gave 5e-7; the others 0).
            let limit = match kernel {
                "conv winograd" => 1e-5,
                _ => 1e-6,
            };
            assert!(err < limit, "{path} silu {silu} {algorithm:?}: {err}");
        }
    }
}
path_tests!(group_norm_fused_into_conv_matches_norm_then_conv: portable, avx2, avx512);

fn token_major_attention_matches_split_heads(path: Isa) {
    // Self-attention with q/k/v as column slices of one [B, L, 3C] tensor, and cross-attention with dv ≠ d.
    let (batch, heads, len, d) = (2, 3, 37, 8);
    let c = heads * d;
    let qkv = random(&[batch, len, 3 * c], 130);
    let q = qkv.narrow(2, 0, c).unwrap();
    let k = qkv.narrow(2, c, c).unwrap();
    let v = qkv.narrow(2, 2 * c, c).unwrap();
    let split = |t: &Tensor, width: usize| {
        let (b, l, _) = t.dims3().unwrap();
        t.reshape((b, l, heads, width))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    };
    let merge = |t: &Tensor| {
        let (b, h, l, w) = t.dims4().unwrap();
        t.transpose(1, 2).unwrap().reshape((b, l, h * w)).unwrap()
    };
    let want = merge(
        &scaled_dot_product_attention(
            &split(&q.contiguous().unwrap(), d),
            &split(&k.contiguous().unwrap(), d),
            &split(&v.contiguous().unwrap(), d),
        )
        .unwrap(),
    );
    let (got, runs) = on_path(path, || {
        scaled_dot_product_attention_tokens(&q, &k, &v, heads).unwrap()
    });
    assert_eq!(kernels_on(&runs, path), ["attention"]);
    let err = relative_error(&got, &want);
    eprintln!("{path} self-attention tokens: {err:.2e}");
    assert!(err < 1e-6);

    let (lk, dv) = (77, 5);
    let ctx_k = random(&[batch, lk, c], 131);
    let ctx_v = random(&[batch, lk, heads * dv], 132);
    let want = merge(
        &scaled_dot_product_attention(
            &split(&q.contiguous().unwrap(), d),
            &split(&ctx_k, d),
            &split(&ctx_v, dv),
        )
        .unwrap(),
    );
    let (got, runs) = on_path(path, || {
        scaled_dot_product_attention_tokens(&q, &ctx_k, &ctx_v, heads).unwrap()
    });
    assert_eq!(kernels_on(&runs, path), ["attention"]);
    let err = relative_error(&got, &want);
    eprintln!("{path} cross-attention tokens: {err:.2e}");
    assert!(err < 1e-6);
    assert!(
        scaled_dot_product_attention_tokens(&q, &ctx_k, &ctx_v, 5).is_err(),
        "24 columns in 5 heads"
    );
}
path_tests!(token_major_attention_matches_split_heads: portable, avx2, avx512);

fn linear_geglu_matches_linear_then_geglu(path: Isa) {
    // 2 × 1250 rows: several row blocks of 1024 and a partial one; odd widths; with and without bias.
    let x = random(&[2, 1250, 13], 190);
    let weight = random(&[2 * 11, 13], 191);
    let bias = random(&[2 * 11], 192);
    for bias in [Some(&bias), None] {
        let ((want, got), runs) = on_path(path, || {
            let want = geglu(&linear(&x, &weight, bias, None).unwrap()).unwrap();
            (want, linear_geglu(&x, &weight, bias).unwrap())
        });
        assert_eq!(kernels_on(&runs, path), ["linear", "geglu", "linear+geglu"]);
        assert_eq!(got.dims(), &[2, 1250, 11]);
        let err = relative_error(&got, &want);
        assert!(err < 1e-6, "{path} bias {}: {err}", bias.is_some());
    }
    let odd = random(&[5, 13], 193);
    assert!(
        linear_geglu(&x, &odd, None).is_err(),
        "odd projection width"
    );
}
path_tests!(linear_geglu_matches_linear_then_geglu: portable, avx2, avx512);
