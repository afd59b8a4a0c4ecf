//! Parity of `model::kernels::conv::conv2d` with candle's own conv2d (+ bias) on awkward shapes, on every
//! instruction-set path of the kernels (`kernels_support`), checking which kernel ran.

#[macro_use]
mod kernels_support;

use candle_core::{Device, Tensor};
use kernels_support::{conv_kernels, kernels_on, on_path};
use loraeval::model::kernels::conv::{
    conv2d, conv2d_add, conv2d_with_tile, ConvAdd, ConvAlgorithm, PackedConvWeight,
};
use loraeval::model::kernels::isa::{self, Isa};

/// Deterministic values in [-1, 1) from a linear congruential generator.
fn pseudo_random(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn reference(x: &Tensor, w: &Tensor, b: Option<&Tensor>, stride: usize, padding: usize) -> Tensor {
    let y = x.conv2d(w, padding, stride, 1, 1).unwrap();
    match b {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1)).unwrap()).unwrap(),
        None => y,
    }
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

struct Case {
    batch: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
}

const CASES: &[Case] = &[
    Case {
        batch: 1,
        c_in: 3,
        c_out: 5,
        h: 9,
        w: 7,
        kernel: 3,
        stride: 1,
        padding: 1,
        bias: true,
    },
    Case {
        batch: 2,
        c_in: 13,
        c_out: 11,
        h: 17,
        w: 15,
        kernel: 3,
        stride: 1,
        padding: 1,
        bias: true,
    },
    Case {
        batch: 2,
        c_in: 13,
        c_out: 11,
        h: 17,
        w: 15,
        kernel: 3,
        stride: 2,
        padding: 1,
        bias: true,
    },
    Case {
        batch: 2,
        c_in: 7,
        c_out: 9,
        h: 16,
        w: 16,
        kernel: 3,
        stride: 2,
        padding: 0,
        bias: false,
    },
    Case {
        batch: 1,
        c_in: 10,
        c_out: 6,
        h: 11,
        w: 13,
        kernel: 3,
        stride: 1,
        padding: 0,
        bias: true,
    },
    Case {
        batch: 2,
        c_in: 19,
        c_out: 21,
        h: 5,
        w: 9,
        kernel: 1,
        stride: 1,
        padding: 0,
        bias: true,
    },
    Case {
        batch: 1,
        c_in: 12,
        c_out: 4,
        h: 9,
        w: 9,
        kernel: 1,
        stride: 2,
        padding: 0,
        bias: true,
    },
    Case {
        batch: 2,
        c_in: 6,
        c_out: 3,
        h: 7,
        w: 5,
        kernel: 1,
        stride: 1,
        padding: 1,
        bias: false,
    },
    Case {
        batch: 2,
        c_in: 33,
        c_out: 17,
        h: 3,
        w: 3,
        kernel: 3,
        stride: 1,
        padding: 1,
        bias: true,
    },
];

fn check_case(case: &Case, seed: u64, tile: Option<usize>) -> f32 {
    let x = pseudo_random(&[case.batch, case.c_in, case.h, case.w], seed);
    let w = pseudo_random(&[case.c_out, case.c_in, case.kernel, case.kernel], seed + 1);
    let b = case.bias.then(|| pseudo_random(&[case.c_out], seed + 2));
    let want = reference(&x, &w, b.as_ref(), case.stride, case.padding);
    let packed = PackedConvWeight::new(&w).unwrap();
    let got = match tile {
        None => conv2d(&x, &packed, b.as_ref(), case.stride, case.padding).unwrap(),
        Some(tile) => {
            conv2d_with_tile(&x, &packed, b.as_ref(), case.stride, case.padding, tile).unwrap()
        }
    };
    relative_error(&got, &want)
}

/// The automatic choice on `path`: within 1e-5 of candle, each call one convolution kernel of the path.
fn conv2d_matches_candle_on_odd_shapes(path: Isa) {
    let cases: Vec<&Case> = CASES.iter().collect();
    let ((), runs) = on_path(path, || {
        for (i, case) in cases.iter().enumerate() {
            let err = check_case(case, 10 * i as u64, None);
            eprintln!("{path} case {i}: relative error {err:.2e}");
            assert!(err <= 1e-5, "{path} case {i}: relative error {err}");
        }
    });
    let kernels = kernels_on(&runs, path);
    assert_eq!(kernels.len(), cases.len(), "{kernels:?}");
    for kernel in &kernels {
        assert!(conv_kernels(path).contains(kernel), "{kernel} on {path}");
    }
}
path_tests!(conv2d_matches_candle_on_odd_shapes: portable, avx2, avx512);

/// Which kernel [`ConvAlgorithm::Auto`] takes on `path`, for shapes each of which one kernel should get: 3×3
/// padding 1 on wide rows (Winograd with SIMD), 5×5 on rows of 40 (direct on AVX-512), 3×3 on rows of 8, 1×1 and
/// stride 2 (im2col everywhere).
fn auto_picks_the_kernel_of_the_path(path: Isa) {
    let simd = path != Isa::Portable;
    let avx512 = path == Isa::Avx512;
    let pick = |simd_kernel: bool, kernel: &'static str| {
        if simd_kernel {
            kernel
        } else {
            "conv im2col"
        }
    };
    // (batch, c_in, c_out, h, w, kernel, stride, padding, expected kernel)
    let cases = [
        (1, 8, 12, 6, 40, 3, 1, 1, pick(simd, "conv winograd")),
        (2, 5, 7, 9, 40, 5, 1, 2, pick(avx512, "conv direct")),
        (2, 6, 5, 8, 8, 3, 1, 1, "conv im2col"),
        (1, 9, 4, 6, 40, 1, 1, 0, "conv im2col"),
        (1, 4, 6, 12, 40, 3, 2, 1, "conv im2col"),
    ];
    for (i, &(batch, c_in, c_out, h, w, kernel, stride, padding, want)) in cases.iter().enumerate()
    {
        let case = Case {
            batch,
            c_in,
            c_out,
            h,
            w,
            kernel,
            stride,
            padding,
            bias: true,
        };
        let (err, runs) = on_path(path, || check_case(&case, 900 + i as u64, None));
        assert!(err <= 1e-5, "{path} case {i}: relative error {err}");
        assert_eq!(kernels_on(&runs, path), [want], "{path} case {i}");
    }
}
path_tests!(auto_picks_the_kernel_of_the_path: portable, avx2, avx512);

/// Stride-1 cases for the direct and Winograd kernels beyond `CASES`: a 5×5 kernel with padding 2, a wide image
/// whose rows span several 64-pixel panels, and for Winograd odd heights/widths (partial 2×2 tiles), a row of
/// 19 tiles (a run of 16 and one of 3), 70 input channels (two passes of 64), 1×1 and 1×N images, 32×32 (8
/// panels), and 16×15 with 100 channels (the small-image path: runs across tile rows, 4 passes of 32 channels,
/// a partial group of output-channel blocks).
const STRIDE_1_EXTRA: &[Case] = &[
    Case {
        batch: 2,
        c_in: 5,
        c_out: 13,
        h: 10,
        w: 21,
        kernel: 5,
        stride: 1,
        padding: 2,
        bias: true,
    },
    Case {
        batch: 1,
        c_in: 9,
        c_out: 7,
        h: 6,
        w: 150,
        kernel: 3,
        stride: 1,
        padding: 1,
        bias: true,
    },
    Case {
        batch: 2,
        c_in: 70,
        c_out: 13,
        h: 7,
        w: 37,
        kernel: 3,
        stride: 1,
        padding: 1,
        bias: true,
    },
    Case {
        batch: 3,
        c_in: 4,
        c_out: 50,
        h: 1,
        w: 1,
        kernel: 3,
        stride: 1,
        padding: 1,
        bias: false,
    },
    Case {
        batch: 1,
        c_in: 6,
        c_out: 6,
        h: 1,
        w: 33,
        kernel: 3,
        stride: 1,
        padding: 1,
        bias: true,
    },
    Case {
        batch: 2,
        c_in: 130,
        c_out: 100,
        h: 32,
        w: 32,
        kernel: 3,
        stride: 1,
        padding: 1,
        bias: true,
    },
    Case {
        batch: 2,
        c_in: 100,
        c_out: 55,
        h: 16,
        w: 15,
        kernel: 3,
        stride: 1,
        padding: 1,
        bias: true,
    },
];

/// `algorithm` on the stride-1 cases on `path`, with a residual: within 1e-5 of candle; returns the kernel each
/// case ran and whether it is 3×3 with padding 1 (what Winograd takes).
fn check_stride_1_kernel(
    path: Isa,
    algorithm: ConvAlgorithm,
    seed: u64,
) -> Vec<(&'static str, bool)> {
    let mut kernels = Vec::new();
    for (i, case) in CASES.iter().chain(STRIDE_1_EXTRA).enumerate() {
        if case.stride != 1 {
            continue;
        }
        let seed = seed + 10 * i as u64;
        let x = pseudo_random(&[case.batch, case.c_in, case.h, case.w], seed);
        let w = pseudo_random(&[case.c_out, case.c_in, case.kernel, case.kernel], seed + 1);
        let b = case.bias.then(|| pseudo_random(&[case.c_out], seed + 2));
        let want = reference(&x, &w, b.as_ref(), 1, case.padding);
        let residual = pseudo_random(want.dims(), seed + 3);
        let add = ConvAdd {
            bias: b.as_ref(),
            residual: Some(&residual),
            ..ConvAdd::default()
        };
        let packed = PackedConvWeight::new(&w).unwrap();
        let (got, runs) = on_path(path, || {
            conv2d_add(&x, &packed, 1, case.padding, add, algorithm).unwrap()
        });
        let err = relative_error(&got, &(want + &residual).unwrap());
        eprintln!("{path} {algorithm:?} case {i}: relative error {err:.2e}");
        assert!(
            err <= 1e-5,
            "{path} {algorithm:?} case {i}: relative error {err}"
        );
        let ran = kernels_on(&runs, path);
        assert_eq!(ran.len(), 1, "{path} case {i}: {ran:?}");
        kernels.push((ran[0], case.kernel == 3 && case.padding == 1));
    }
    kernels
}

/// The direct kernel (AVX-512 path only), forced on every stride-1 case.
fn direct_kernel_matches_candle_on_odd_shapes(path: Isa) {
    for (kernel, _) in check_stride_1_kernel(path, ConvAlgorithm::Direct, 300) {
        assert_eq!(kernel, "conv direct");
    }
}
path_tests!(direct_kernel_matches_candle_on_odd_shapes: avx512);

/// The Winograd kernel (AVX2 and AVX-512 paths), forced: every 3×3 padding-1 case; the others go to the direct
/// kernel on AVX-512 and to im2col on AVX2.
fn winograd_kernel_matches_candle_on_odd_shapes(path: Isa) {
    for (kernel, winograd) in check_stride_1_kernel(path, ConvAlgorithm::Winograd, 700) {
        let want = match (winograd, path) {
            (true, _) => "conv winograd",
            (false, Isa::Avx512) => "conv direct",
            (false, _) => "conv im2col",
        };
        assert_eq!(kernel, want);
    }
}
path_tests!(winograd_kernel_matches_candle_on_odd_shapes: avx2, avx512);

/// On paths without them, forcing the direct or Winograd kernel computes the same convolution with what the path
/// has (Winograd on AVX2 for 3×3 padding 1, im2col otherwise).
fn forced_kernels_fall_back_on_paths_without_them(path: Isa) {
    for (kernel, winograd) in check_stride_1_kernel(path, ConvAlgorithm::Direct, 1300) {
        assert_eq!(kernel, "conv im2col", "3x3 padding 1: {winograd}");
    }
    for (kernel, winograd) in check_stride_1_kernel(path, ConvAlgorithm::Winograd, 1700) {
        let want = if winograd && path == Isa::Avx2 {
            "conv winograd"
        } else {
            "conv im2col"
        };
        assert_eq!(kernel, want);
    }
}
path_tests!(forced_kernels_fall_back_on_paths_without_them: portable, avx2);

#[test]
fn conv2d_matches_candle_for_every_tiling() {
    // Tiles of 1, 7 and 40 pixels split images mid-row; 500 groups several small images into one tile. The im2col
    // code is the same on every path (its products are the `gemm` crate's).
    let ((), runs) = isa::traced(|| {
        for tile in [1, 7, 40, 500] {
            for (i, case) in CASES.iter().enumerate() {
                let err = check_case(case, 100 + i as u64, Some(tile));
                assert!(err <= 1e-5, "case {i}, tile {tile}: relative error {err}");
            }
        }
    });
    assert_eq!(runs.len(), 4 * CASES.len());
    assert!(
        runs.iter().all(|run| run.kernel == "conv im2col"),
        "{runs:?}"
    );
}

#[test]
fn conv2d_accepts_a_non_contiguous_input() {
    let x = pseudo_random(&[2, 9, 6, 5], 7);
    let w = pseudo_random(&[4, 9, 3, 3], 8);
    let xt = x.transpose(2, 3).unwrap();
    let want = reference(&xt, &w, None, 1, 1);
    let got = conv2d(&xt, &PackedConvWeight::new(&w).unwrap(), None, 1, 1).unwrap();
    assert!(relative_error(&got, &want) <= 1e-5);
}

#[test]
fn conv2d_reports_channel_mismatch_and_bad_bias() {
    let x = pseudo_random(&[1, 5, 8, 8], 1);
    let w = PackedConvWeight::new(&pseudo_random(&[4, 6, 3, 3], 2)).unwrap();
    let err = conv2d(&x, &w, None, 1, 1).unwrap_err().to_string();
    assert!(
        err.contains("5 channels") && err.contains("expects 6"),
        "{err}"
    );
    let w = PackedConvWeight::new(&pseudo_random(&[4, 5, 3, 3], 2)).unwrap();
    let bias = pseudo_random(&[3], 3);
    let err = conv2d(&x, &w, Some(&bias), 1, 1).unwrap_err().to_string();
    assert!(
        err.contains("bias [3]") && err.contains("4 output channels"),
        "{err}"
    );
    let x64 = x.to_dtype(candle_core::DType::F64).unwrap();
    let err = conv2d(&x64, &w, None, 1, 1).unwrap_err().to_string();
    assert!(err.contains("expected f32"), "{err}");
}
