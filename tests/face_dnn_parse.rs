//! dlib DNN parser robustness: truncated / corrupted model files fail with a file + offset error (never a
//! panic), and synthetic files using the record versions the two shipped models do not use
//! (con_5/con_6, affine_2, relu_2, bn_con2 folding, fc_3, input_rgb_image_pyramid2, mmod_options v4,
//! tag wrappers) load and compute what dlib's layer definitions say.

use std::path::Path;

use loraeval::face::dnn::{parse_dnn, Layer};
use loraeval::face::mmod::FaceDetector;
use loraeval::face::resnet::FaceEmbedder;
use loraeval::face::FaceError;

// ---- a minimal dlib serializer (face.md §1) ----

fn int(v: i64) -> Vec<u8> {
    let mut mag = v.unsigned_abs();
    let mut bytes = Vec::new();
    loop {
        bytes.push((mag & 0xff) as u8);
        mag >>= 8;
        if mag == 0 {
            break;
        }
    }
    let control = bytes.len() as u8 | if v < 0 { 0x80 } else { 0 };
    [vec![control], bytes].concat()
}

/// float_details with exponent −24 (exact for the simple values used here).
fn float(v: f64) -> Vec<u8> {
    [int((v * (1u64 << 24) as f64).round() as i64), int(-24)].concat()
}

fn string(s: &str) -> Vec<u8> {
    [int(s.len() as i64), s.as_bytes().to_vec()].concat()
}

fn boolean(b: bool) -> Vec<u8> {
    vec![if b { b'1' } else { b'0' }]
}

fn tensor(dims: [i64; 4], data: &[f32]) -> Vec<u8> {
    let mut out = int(2);
    for d in dims {
        out.extend(int(d));
    }
    for v in data {
        out.extend(v.to_le_bytes());
    }
    out
}

fn flat_tensor(data: &[f32]) -> Vec<u8> {
    tensor([data.len() as i64, 1, 1, 1], data)
}

fn alias(dims: [i64; 4]) -> Vec<u8> {
    let mut out = int(1);
    for d in dims {
        out.extend(int(d));
    }
    out
}

fn empty_tensor() -> Vec<u8> {
    tensor([0, 0, 0, 0], &[])
}

/// The 3 bools + 3 tensors after each layer record (+ sample_expansion_factor for the innermost v3 layer).
fn trailer(innermost: bool) -> Vec<u8> {
    let mut out = [boolean(true), boolean(false), boolean(false)].concat();
    for _ in 0..3 {
        out.extend(empty_tensor());
    }
    if innermost {
        out.extend(int(1));
    }
    out
}

fn multipliers() -> Vec<u8> {
    [float(1.0), float(1.0), float(1.0), float(0.0)].concat()
}

/// con_5 (use_bias given) or con_6 (use_relu false) record.
fn con(
    tag: &str,
    out: i64,
    inp: i64,
    k: i64,
    pad: i64,
    weights: &[f32],
    bias: Option<&[f32]>,
) -> Vec<u8> {
    let params = [weights, bias.unwrap_or(&[])].concat();
    let mut r = [string(tag), flat_tensor(&params)].concat();
    for v in [out, k, k] {
        r.extend(int(v));
    }
    for v in [1, 1, pad, pad] {
        r.extend(int(v));
    }
    r.extend(alias([out, inp, k, k]));
    r.extend(alias([1, out, 1, 1]));
    r.extend(multipliers());
    r.extend(boolean(bias.is_some()));
    if tag == "con_6" {
        r.extend(boolean(false));
    }
    r
}

fn affine2(gamma: &[f32], beta: &[f32]) -> Vec<u8> {
    let k = gamma.len() as i64;
    [
        string("affine_2"),
        flat_tensor(&[gamma, beta].concat()),
        alias([1, k, 1, 1]),
        alias([1, k, 1, 1]),
        int(0),
        boolean(false),
    ]
    .concat()
}

fn bn_con2(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32]) -> Vec<u8> {
    let k = gamma.len() as i64;
    let stats = |v: &[f32]| tensor([1, k, 1, 1], v);
    [
        string("bn_con2"),
        flat_tensor(&[gamma, beta].concat()),
        alias([1, k, 1, 1]),
        alias([1, k, 1, 1]),
        stats(&vec![0.0; k as usize]),
        stats(&vec![1.0; k as usize]),
        stats(mean),
        stats(var),
        int(100),
        int(100),
        multipliers(),
        float(0.0),
    ]
    .concat()
}

/// Tiny descriptor net: con_5 3→2 (3×3, pad 1, zero weights, bias) → affine_2 → relu_2 (disabled) →
/// avg_pool everything → fc_3 2→128 with bias. Input 4×4.
fn tiny_embedder_file() -> Vec<u8> {
    let mut f = [int(1), string("loss_metric_2"), float(0.25), float(0.5)].concat();
    for v in [2, 2, 1, 2, 2, 3] {
        f.extend(int(v)); // fc, avg_pool, tag, relu, affine, con (innermost)
    }
    f.extend(
        [
            string("input_rgb_image_sized"),
            float(122.5),
            float(117.0),
            float(104.25),
            int(4),
            int(4),
        ]
        .concat(),
    );
    f.extend(con("con_5", 2, 3, 3, 1, &[0.0; 54], Some(&[0.5, -0.25])));
    f.extend(trailer(true));
    f.extend(affine2(&[2.0, 1.0], &[0.0, 1.0]));
    f.extend(trailer(false));
    f.extend([string("relu_2"), boolean(true)].concat());
    f.extend(trailer(false));
    f.extend(
        [
            string("avg_pool_2"),
            int(0),
            int(0),
            int(1),
            int(1),
            int(0),
            int(0),
        ]
        .concat(),
    );
    f.extend(trailer(false));
    let weights: Vec<f32> = (0..2 * 128)
        .map(|i| if i < 128 { i as f32 / 128.0 } else { 1.0 })
        .collect();
    let bias = vec![0.125f32; 128];
    f.extend(
        [
            string("fc_3"),
            int(128),
            int(2),
            tensor([3, 128, 1, 1], &[weights, bias].concat()),
            alias([2, 128, 1, 1]),
            alias([1, 128, 1, 1]),
            int(0),
            multipliers(),
            boolean(true),
        ]
        .concat(),
    );
    f.extend(trailer(false));
    f
}

/// Tiny detector: input pyramid2 → con_5 3→2 (3×3, pad 1, zero weights, no bias) → bn_con2 → relu_2 →
/// con_6 2→1 (1×1, bias `score`); mmod_options v4 with one 40×40 window.
fn tiny_detector_file(score: f32) -> Vec<u8> {
    let mut f = [
        int(1),
        string("loss_mmod_"),
        int(4),
        int(1),
        int(2),
        int(40),
        int(40),
        string("face"),
    ]
    .concat();
    for v in [1.0, 1.0, 0.5, 0.4, 1.0, 0.5, 1.0] {
        f.extend(float(v));
    }
    f.extend([vec![1u8], boolean(false), float(100.0)].concat());
    for v in [2, 2, 2, 3] {
        f.extend(int(v));
    }
    f.extend(
        [
            string("input_rgb_image_pyramid2"),
            float(122.5),
            float(117.0),
            float(104.25),
            int(8),
            int(9),
        ]
        .concat(),
    );
    f.extend(con("con_5", 2, 3, 3, 1, &[0.0; 54], None));
    f.extend(trailer(true));
    f.extend(bn_con2(&[1.0, 1.0], &[0.0, 0.0], &[0.0, 0.0], &[1.0, 1.0]));
    f.extend(trailer(false));
    f.extend([string("relu_2"), boolean(false)].concat());
    f.extend(trailer(false));
    f.extend(con("con_6", 1, 2, 1, 0, &[0.0, 0.0], Some(&[score])));
    f.extend(trailer(false));
    f
}

#[test]
fn synthetic_descriptor_net_with_newer_record_versions_computes_dlib_maths() {
    let bytes = tiny_embedder_file();
    let dnn = parse_dnn(&bytes, Path::new("tiny.dat")).expect("parses");
    let tags: Vec<&str> = dnn.layers.iter().map(|l| l.tag.as_str()).collect();
    assert_eq!(tags, ["con_5", "affine_2", "relu_2", "avg_pool_2", "fc_3"]);
    assert!(matches!(dnn.layers[2].layer, Layer::Identity));
    let embedder = FaceEmbedder::from_bytes(&bytes, Path::new("tiny.dat")).expect("loads");
    assert_eq!(embedder.chip_size(), (4, 4));
    let d = embedder.embed(&image::RgbImage::new(4, 4)).expect("embed");
    // channels after con+affine: 2·0.5 + 0 = 1.0 and 1·(−0.25) + 1 = 0.75 (relu disabled, global mean);
    // fc: out[o] = 1.0·o/128 + 0.75·1 + 0.125.
    for (o, v) in d.iter().enumerate() {
        let want = o as f32 / 128.0 + 0.75 + 0.125;
        assert!((v - want).abs() < 1e-6, "out[{o}] = {v}, want {want}");
    }
}

#[test]
fn synthetic_detector_with_mmod_v4_and_bn_records_loads_and_thresholds() {
    let img = image::RgbImage::from_pixel(60, 50, image::Rgb([90, 120, 200]));
    let none =
        FaceDetector::from_bytes(&tiny_detector_file(-1.0), Path::new("neg.dat")).expect("loads");
    assert!(
        none.detect(&img, 0).is_empty(),
        "negative scores give no detections"
    );
    let all =
        FaceDetector::from_bytes(&tiny_detector_file(1.0), Path::new("pos.dat")).expect("loads");
    let dets = all.detect(&img, 0);
    assert!(!dets.is_empty());
    for d in &dets {
        assert_eq!(d.confidence, 1.0);
        assert!(d.rect.width() >= 40 && d.rect.height() >= 40, "{d:?}");
    }
    // NMS (iou 0.4 over the bounding box, coverage 1.0): no kept pair overlaps that much.
    for (i, a) in dets.iter().enumerate() {
        for b in &dets[i + 1..] {
            let inter = a.rect.intersect(&b.rect).area() as f64;
            let bbox = (a.rect.right.max(b.rect.right) - a.rect.left.min(b.rect.left) + 1)
                * (a.rect.bottom.max(b.rect.bottom) - a.rect.top.min(b.rect.top) + 1);
            assert!(inter / bbox as f64 <= 0.4, "{a:?} and {b:?} overlap");
        }
    }
}

#[test]
fn truncated_and_corrupted_detector_files_fail_with_offsets() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/face/mmod_human_face_detector.dat");
    let bytes = std::fs::read(path).expect("model");
    let cuts = (0..2000).chain((2000..bytes.len()).step_by(7919));
    for cut in cuts {
        match FaceDetector::from_bytes(&bytes[..cut], Path::new("cut.dat")) {
            Err(FaceError::ModelParse { offset, .. }) => {
                assert!(offset <= cut, "cut {cut}: offset {offset}")
            }
            other => panic!("cut at {cut}: expected a parse error, got {other:?}"),
        }
    }
    // Flip bytes in the header region: must never panic (an error or, rarely, a still-valid file).
    for pos in 0..800 {
        let mut corrupt = bytes.clone();
        corrupt[pos] ^= 0x5a;
        let _ = FaceDetector::from_bytes(&corrupt, Path::new("flip.dat"));
    }
}
