//! dlib's CNN face detector (`mmod_human_face_detector.dat`, `cnn_face_detection_model_v1` in Python):
//! tiled `pyramid_down<6>` input, the network, window decoding back to image coordinates, thresholding
//! and non-max suppression as dlib's `loss_mmod_` (face.md §2.5, §5).
//!
//! Upsampling (`upsample > 0`) enlarges the image 2× per step with dlib's `pyramid_up` (bilinear) before
//! detection and maps the boxes back with `pyramid_down<2>::rect_down`, as the Python binding does.

use std::path::Path;

use image::RgbImage;

use super::dnn::{parse_dnn, BoxOverlap, InputRecord, Layer, LayerRecord, LossRecord, MmodOptions};
use super::dnn_layers::{output_shape, run_ops, Op, Tensor};
use super::resnet::fuse_conv;
use super::{FaceError, Rect};

/// The model shipped in `assets/face/`.
static EMBEDDED_MODEL: &[u8] = include_bytes!("../../assets/face/mmod_human_face_detector.dat");
const EMBEDDED_MODEL_NAME: &str = "assets/face/mmod_human_face_detector.dat";

/// Smallest pyramid level height dlib keeps (`compute_tiled_image_pyramid_details`).
const MIN_LEVEL_HEIGHT: i64 = 5;

/// One detected face.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// Box in image coordinates, inclusive corners (dlib `rectangle`).
    pub rect: Rect,
    /// Raw network score (dlib `detection_confidence`); detections have confidence > 0.
    pub confidence: f32,
}

/// dlib's MMOD CNN face detector.
#[derive(Clone, Debug)]
pub struct FaceDetector {
    avg: [f32; 3],
    pyramid_padding: usize,
    pyramid_outer_padding: usize,
    ops: Vec<Op>,
    options: MmodOptions,
    /// Output cell → input tensor coordinate, per axis: p_in = scale·p_out + offset.
    map_x: (f64, f64),
    map_y: (f64, f64),
}

impl FaceDetector {
    /// Loads the model compiled into the binary.
    pub fn load_embedded() -> Result<FaceDetector, FaceError> {
        FaceDetector::from_bytes(EMBEDDED_MODEL, Path::new(EMBEDDED_MODEL_NAME))
    }

    /// Loads a dlib MMOD detector file (a chain of con/bn/affine/relu layers on an RGB pyramid input).
    pub fn load(path: &Path) -> Result<FaceDetector, FaceError> {
        let bytes = super::serialize::read_model_file(path)?;
        FaceDetector::from_bytes(&bytes, path)
    }

    /// Parses model bytes; `file` names them in errors.
    pub fn from_bytes(bytes: &[u8], file: &Path) -> Result<FaceDetector, FaceError> {
        let dnn = parse_dnn(bytes, file)?;
        let parse_error = |offset: usize, what: String| FaceError::ModelParse {
            file: file.to_path_buf(),
            offset,
            what,
        };
        let options = match dnn.loss {
            LossRecord::Mmod(o) => o,
            other => {
                return Err(parse_error(
                    0,
                    format!("expected a loss_mmod_ network, found {other:?}"),
                ))
            }
        };
        if options.use_bounding_box_regression {
            return Err(parse_error(
                0,
                "bounding box regression is not supported".to_string(),
            ));
        }
        let (avg, pyramid_padding, pyramid_outer_padding) = match dnn.input {
            InputRecord::RgbImagePyramid {
                avg,
                pyramid_padding,
                pyramid_outer_padding,
            } => (avg, pyramid_padding, pyramid_outer_padding),
            other => {
                return Err(parse_error(
                    0,
                    format!("expected input_rgb_image_pyramid, found {other:?}"),
                ))
            }
        };
        let ops = build_chain(&dnn.layers).map_err(|(offset, what)| parse_error(offset, what))?;
        let end = bytes.len();
        // Any size that survives the strides works for the shape check.
        let (k, _, _) = output_shape(&ops, (3, 512, 512)).map_err(|e| parse_error(end, e))?;
        if k != options.detector_windows.len() {
            return Err(parse_error(
                end,
                format!(
                    "network outputs {k} channels for {} detector windows",
                    options.detector_windows.len()
                ),
            ));
        }
        let (map_x, map_y) = output_to_input_map(&ops);
        Ok(FaceDetector {
            avg,
            pyramid_padding,
            pyramid_outer_padding,
            ops,
            options,
            map_x,
            map_y,
        })
    }

    /// Faces in `img`, best first. `upsample` doubles the image that many times first (finds smaller faces:
    /// about 80 px faces at 0, 40 px at 1), like `cnn_face_detection_model_v1(img, upsample)`.
    ///
    /// Cost grows with the pixel count: the tiled pyramid tensor is about 3.6 × the image's pixels × 3
    /// floats, and a 512×512 image takes about 0.25 CPU-seconds at upsample 0 (4× that at upsample 1).
    /// Downscale large photos (faces of 100–200 px are plenty) before calling this.
    pub fn detect(&self, img: &RgbImage, upsample: u32) -> Vec<Detection> {
        let mut upsampled: Option<RgbImage> = None;
        for _ in 0..upsample {
            upsampled = Some(pyramid_up(upsampled.as_ref().unwrap_or(img)));
        }
        let mut dets = self.detect_at_scale(upsampled.as_ref().unwrap_or(img));
        for d in &mut dets {
            d.rect = rect_down_2(d.rect, upsample);
        }
        dets
    }

    /// Detection without upsampling: pyramid tensor, network, decoding, NMS.
    fn detect_at_scale(&self, image: &RgbImage) -> Vec<Detection> {
        let layout = tiled_pyramid_layout(
            image.height() as i64,
            image.width() as i64,
            self.pyramid_padding as i64,
            self.pyramid_outer_padding as i64,
        );
        if layout.rects.is_empty() {
            return Vec::new();
        }
        let input = pyramid_tensor(image, &layout, self.avg);
        let output = run_ops(&self.ops, input);
        let candidates = self.candidates(&output, &layout.rects);
        non_max_suppression(candidates, &self.options.overlaps_nms)
    }

    /// Every output cell with score > 0 as an image-space box, sorted by score, best first.
    fn candidates(&self, output: &Tensor, rects: &[Rect]) -> Vec<Detection> {
        let mut dets = Vec::new();
        for (k, window) in self
            .options
            .detector_windows
            .iter()
            .enumerate()
            .take(output.k)
        {
            let plane = output.plane(k);
            for r in 0..output.nr {
                for c in 0..output.nc {
                    let score = plane[r * output.nc + c];
                    if score <= 0.0 {
                        continue;
                    }
                    let p = (
                        self.map_x.0 * c as f64 + self.map_x.1,
                        self.map_y.0 * r as f64 + self.map_y.1,
                    );
                    let tensor_box = centered_drect(p, window.width as f64, window.height as f64);
                    let image_box = tiled_pyramid_to_image(rects, tensor_box);
                    dets.push(Detection {
                        rect: round_drect(image_box),
                        confidence: score,
                    });
                }
            }
        }
        dets.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        dets
    }
}

/// Turns a con/affine/relu record list into conv steps (every record must belong to one).
fn build_chain(layers: &[LayerRecord]) -> Result<Vec<Op>, (usize, String)> {
    let mut ops = Vec::new();
    let mut i = 0;
    while i < layers.len() {
        match &layers[i].layer {
            Layer::Con { .. } => {
                let (op, used) = fuse_conv(&layers[i..]).map_err(|e| (layers[i].offset, e))?;
                ops.push(op);
                i += used;
            }
            Layer::Identity => i += 1,
            _ => {
                return Err((
                    layers[i].offset,
                    format!(
                        "layer {:?} is not supported in an MMOD detector chain",
                        layers[i].tag
                    ),
                ))
            }
        }
    }
    Ok(ops)
}

/// dlib's `output_tensor_to_input_tensor` for a conv chain: each layer maps p ↦ p·stride − pad + k/2.
fn output_to_input_map(ops: &[Op]) -> ((f64, f64), (f64, f64)) {
    let (mut x, mut y) = ((1.0, 0.0), (1.0, 0.0));
    for op in ops.iter().rev() {
        if let Op::Conv { conv, .. } = op {
            let step = |(scale, offset): (f64, f64), stride: usize, pad: usize, k: usize| {
                let s = stride as f64;
                (scale * s, offset * s - pad as f64 + (k / 2) as f64)
            };
            x = step(x, conv.stride_x, conv.padding_x, conv.nc);
            y = step(y, conv.stride_y, conv.padding_y, conv.nr);
        }
    }
    (x, y)
}

/// A rectangle with `f64` corners (dlib `drectangle`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct DRect {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

/// dlib `centered_drect(p, w, h)`: corners at p ± (w − 1)/2, p ± (h − 1)/2.
fn centered_drect(p: (f64, f64), width: f64, height: f64) -> DRect {
    let (hw, hh) = ((width - 1.0) / 2.0, (height - 1.0) / 2.0);
    DRect {
        left: p.0 - hw,
        top: p.1 - hh,
        right: p.0 + hw,
        bottom: p.1 + hh,
    }
}

/// drectangle → rectangle as dlib converts it (`std::lround` of each corner).
fn round_drect(r: DRect) -> Rect {
    Rect::new(
        r.left.round() as i64,
        r.top.round() as i64,
        r.right.round() as i64,
        r.bottom.round() as i64,
    )
}

/// dlib `tiled_pyramid_to_image` for `pyramid_down<6>`: pick the level rect nearest to the box centre,
/// make the box relative to it and apply `point_up` (p·6/5 + 0.3) once per level.
fn tiled_pyramid_to_image(rects: &[Rect], r: DRect) -> DRect {
    let centre = (
        ((r.left + r.right) / 2.0 + 0.5).floor() as i64,
        ((r.top + r.bottom) / 2.0 + 0.5).floor() as i64,
    );
    let level = nearest_rect(rects, centre);
    let origin = &rects[level];
    let mut corners = [
        (r.left - origin.left as f64, r.top - origin.top as f64),
        (r.right - origin.left as f64, r.bottom - origin.top as f64),
    ];
    for p in &mut corners {
        for _ in 0..level {
            *p = (p.0 * (6.0 / 5.0) + 0.3, p.1 * (6.0 / 5.0) + 0.3);
        }
    }
    DRect {
        left: corners[0].0,
        top: corners[0].1,
        right: corners[1].0,
        bottom: corners[1].1,
    }
}

/// dlib `nearest_rect`: the first rect containing `p`, else the one with the nearest point.
fn nearest_rect(rects: &[Rect], p: (i64, i64)) -> usize {
    let mut best = (0, f64::INFINITY);
    for (i, r) in rects.iter().enumerate() {
        let (nx, ny) = (p.0.clamp(r.left, r.right), p.1.clamp(r.top, r.bottom));
        if (nx, ny) == p {
            return i;
        }
        let dist = (((nx - p.0).pow(2) + (ny - p.1).pow(2)) as f64).sqrt();
        if dist < best.1 {
            best = (i, dist);
        }
    }
    best.0
}

/// Greedy NMS of score-sorted candidates with dlib's `test_box_overlap` (IoU over the bounding box of
/// both rectangles, or coverage of either box).
fn non_max_suppression(candidates: Vec<Detection>, nms: &BoxOverlap) -> Vec<Detection> {
    let mut kept: Vec<Detection> = Vec::new();
    for d in candidates {
        if !kept.iter().any(|k| boxes_overlap(nms, &k.rect, &d.rect)) {
            kept.push(d);
        }
    }
    kept
}

/// dlib `test_box_overlap::operator()`.
fn boxes_overlap(nms: &BoxOverlap, a: &Rect, b: &Rect) -> bool {
    let inner = a.intersect(b).area() as f64;
    if inner == 0.0 {
        return false;
    }
    let bounding = Rect::new(
        a.left.min(b.left),
        a.top.min(b.top),
        a.right.max(b.right),
        a.bottom.max(b.bottom),
    );
    inner / bounding.area() as f64 > nms.iou_thresh
        || inner / a.area() as f64 > nms.percent_covered_thresh
        || inner / b.area() as f64 > nms.percent_covered_thresh
}

/// `pyramid_down<2>::rect_down` applied `levels` times (p ↦ p/2 − (1.25, 0.75)), then rounded.
fn rect_down_2(r: Rect, levels: u32) -> Rect {
    if levels == 0 {
        return r;
    }
    let down = |mut x: f64, mut y: f64| {
        for _ in 0..levels {
            x = x / 2.0 - 1.25;
            y = y / 2.0 - 0.75;
        }
        (x, y)
    };
    let (l, t) = down(r.left as f64, r.top as f64);
    let (rt, b) = down(r.right as f64, r.bottom as f64);
    round_drect(DRect {
        left: l,
        top: t,
        right: rt,
        bottom: b,
    })
}

/// Where each pyramid level sits in the tiled input tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct PyramidLayout {
    /// Level rectangles in tensor coordinates, level 0 (full size) first.
    pub rects: Vec<Rect>,
    pub nr: usize,
    pub nc: usize,
}

/// dlib `compute_tiled_image_pyramid_details` for `pyramid_down<6>` on an `nr × nc` image.
pub fn tiled_pyramid_layout(nr: i64, nc: i64, padding: i64, outer_padding: i64) -> PyramidLayout {
    if nr * nc == 0 {
        return PyramidLayout {
            rects: Vec::new(),
            nr: 0,
            nc: 0,
        };
    }
    let sizes = pyramid_level_sizes(nr, nc);
    let first_h = sizes[0].0;
    let width = sizes[0].1;
    let total_height: i64 = sizes.iter().map(|s| s.0 + padding).sum::<i64>() - 2 * padding;
    let (mut height, mut prev_width) = (0i64, 0i64);
    for &(h, w) in &sizes {
        if w <= width - prev_width - padding && (height - first_h) * 2 >= total_height - first_h {
            break;
        }
        height += h + padding;
        prev_width = w;
    }
    height -= padding;
    let mut rects = Vec::with_capacity(sizes.len());
    let mut y = outer_padding;
    let mut i = 0;
    while y < height + outer_padding && i < sizes.len() {
        let (h, w) = sizes[i];
        rects.push(Rect::new(
            outer_padding,
            y,
            outer_padding + w - 1,
            y + h - 1,
        ));
        y += h + padding;
        i += 1;
    }
    y -= padding;
    while i < sizes.len() {
        let (h, w) = sizes[i];
        let (right, bottom) = (outer_padding + width - 1, y - 1);
        let rect = Rect::new(right - w + 1, bottom - h + 1, right, bottom);
        if rects[0].intersect(&rect).area() > 0 {
            break;
        }
        rects.push(rect);
        y -= h + padding;
        i += 1;
    }
    PyramidLayout {
        rects,
        nr: (height + 2 * outer_padding) as usize,
        nc: (width + 2 * outer_padding) as usize,
    }
}

/// (rows, cols) of every `pyramid_down<6>` level: sizes shrink by floor(5/6·n) while ≥ 5 rows.
fn pyramid_level_sizes(mut nr: i64, mut nc: i64) -> Vec<(i64, i64)> {
    let mut sizes = vec![(nr, nc)];
    let rate = 5.0 / 6.0;
    loop {
        nr = (rate * nr as f64).floor() as i64;
        nc = (rate * nc as f64).floor() as i64;
        if nr * nc == 0 || nr < MIN_LEVEL_HEIGHT {
            return sizes;
        }
        sizes.push((nr, nc));
    }
}

/// The input tensor: zeros, level 0 = (pixel − avg)/256 per R, G, B plane, then each level a bilinear
/// resize of the previous one (dlib `input_rgb_image_pyramid::to_tensor`).
fn pyramid_tensor(image: &RgbImage, layout: &PyramidLayout, avg: [f32; 3]) -> Tensor {
    let mut t = Tensor::zeros(3, layout.nr, layout.nc);
    let plane_len = layout.nr * layout.nc;
    let r0 = layout.rects[0];
    let (w, h) = (image.width() as usize, image.height() as usize);
    let raw = image.as_raw();
    for c in 0..3 {
        let plane = &mut t.data[c * plane_len..(c + 1) * plane_len];
        for y in 0..h {
            let row = (r0.top as usize + y) * layout.nc + r0.left as usize;
            for x in 0..w {
                plane[row + x] = (raw[(y * w + x) * 3 + c] as f32 - avg[c]) / 256.0;
            }
        }
        for pair in layout.rects.windows(2) {
            resize_bilinear_within(plane, layout.nc, &pair[0], &pair[1]);
        }
    }
    t
}

/// Bilinear resize (dlib's float `resize_image`) of the `src` rect of a plane into its `dst` rect.
fn resize_bilinear_within(plane: &mut [f32], stride: usize, src: &Rect, dst: &Rect) {
    let (in_nr, in_nc) = (src.height() as usize, src.width() as usize);
    let (out_nr, out_nc) = (dst.height() as usize, dst.width() as usize);
    if in_nr == 0 || in_nc == 0 || out_nr == 0 || out_nc == 0 {
        return;
    }
    let input: Vec<f32> = (0..in_nr)
        .flat_map(|r| {
            let start = (src.top as usize + r) * stride + src.left as usize;
            plane[start..start + in_nc].iter().copied()
        })
        .collect();
    let mut output = vec![0.0f32; out_nr * out_nc];
    resize_bilinear_f32(&input, in_nr, in_nc, &mut output, out_nr, out_nc);
    for r in 0..out_nr {
        let start = (dst.top as usize + r) * stride + dst.left as usize;
        plane[start..start + out_nc].copy_from_slice(&output[r * out_nc..(r + 1) * out_nc]);
    }
}

/// Sample positions of dlib's bilinear `resize_image` (align-corners scale); calls `pixel` for every
/// output pixel with (row, col, top, bottom, left, right, weights [tl, tr, bl, br]). Reproduces dlib's SSE
/// path (four columns at a time with `f32` positions and weights, truncating conversions) and its scalar
/// tail for the last columns, which uses `f64` positions.
fn bilinear_walk(
    in_nr: usize,
    in_nc: usize,
    out_nr: usize,
    out_nc: usize,
    mut pixel: impl FnMut(BilinearSample),
) {
    let x_scale = (in_nc as f64 - 1.0) / (out_nc.max(2) as f64 - 1.0);
    let y_scale = (in_nr as f64 - 1.0) / (out_nr.max(2) as f64 - 1.0);
    let mut y = -y_scale;
    for r in 0..out_nr {
        y += y_scale;
        let top = y.floor() as usize;
        let bottom = (top + 1).min(in_nr - 1);
        let tb_frac = y - top as f64;
        let (tb, inv_tb) = (tb_frac as f32, (1.0 - tb_frac) as f32);
        let x0 = -4.0 * x_scale;
        let mut lanes = [
            x0 as f32,
            (x0 + x_scale) as f32,
            (x0 + 2.0 * x_scale) as f32,
            (x0 + 3.0 * x_scale) as f32,
        ];
        let step = (4.0 * x_scale) as f32;
        let mut c = 0;
        loop {
            for lane in &mut lanes {
                *lane += step;
            }
            let lefts = lanes.map(|v| v as i64);
            if lefts[3] + 1 >= in_nc as i64 || c + 4 > out_nc {
                break;
            }
            for j in 0..4 {
                let lr = lanes[j] - lefts[j] as f32;
                let inv_lr = 1.0 - lr;
                let left = lefts[j] as usize;
                pixel(BilinearSample {
                    row: r,
                    col: c + j,
                    top,
                    bottom,
                    left,
                    right: left + 1,
                    weights: Weights::F32([inv_tb * inv_lr, inv_tb * lr, tb * inv_lr, tb * lr]),
                });
            }
            c += 4;
        }
        let mut x = -x_scale + c as f64 * x_scale;
        for col in c..out_nc {
            x += x_scale;
            let left = x.floor() as usize;
            let right = (left + 1).min(in_nc - 1);
            pixel(BilinearSample {
                row: r,
                col,
                top,
                bottom,
                left,
                right,
                weights: Weights::Tail {
                    lr_frac: x - left as f64,
                    tb_frac,
                },
            });
        }
    }
}

/// One output pixel of [`bilinear_walk`].
struct BilinearSample {
    row: usize,
    col: usize,
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
    weights: Weights,
}

/// SSE-path weights (tl, tr, bl, br) or the fractions of the scalar tail.
enum Weights {
    F32([f32; 4]),
    Tail { lr_frac: f64, tb_frac: f64 },
}

/// dlib's float-image bilinear resize (grayscale `resize_image` overload), row-major buffers.
pub fn resize_bilinear_f32(
    input: &[f32],
    in_nr: usize,
    in_nc: usize,
    output: &mut [f32],
    out_nr: usize,
    out_nc: usize,
) {
    bilinear_walk(in_nr, in_nc, out_nr, out_nc, |s| {
        let at = |r: usize, c: usize| input[r * in_nc + c];
        let (tl, tr, bl, br) = (
            at(s.top, s.left),
            at(s.top, s.right),
            at(s.bottom, s.left),
            at(s.bottom, s.right),
        );
        output[s.row * out_nc + s.col] = match s.weights {
            Weights::F32([a, b, c, d]) => a * tl + b * tr + c * bl + d * br,
            Weights::Tail { lr_frac, tb_frac } => {
                let lr = lr_frac as f32;
                let top_mix = (1.0 - lr) * tl + lr * tr;
                let bottom_mix = (1.0 - lr) * bl + lr * br;
                ((1.0 - tb_frac) * top_mix as f64 + tb_frac * bottom_mix as f64) as f32
            }
        };
    });
}

/// dlib `pyramid_up(img)` with `pyramid_down<2>`: output is `rect_up` of the image rect
/// ((2·rows + 1) × (2·cols + 2)), filled by dlib's RGB bilinear `resize_image` (truncating to u8).
pub fn pyramid_up(img: &RgbImage) -> RgbImage {
    let (in_nc, in_nr) = (img.width() as usize, img.height() as usize);
    if in_nc == 0 || in_nr == 0 {
        return RgbImage::new(0, 0);
    }
    // rect_up: corners (p + (1.25, 0.75))·2, rounded with lround.
    let right = ((in_nc as f64 - 1.0 + 1.25) * 2.0).round() as usize;
    let bottom = ((in_nr as f64 - 1.0 + 0.75) * 2.0).round() as usize;
    let (out_nc, out_nr) = (right + 1, bottom + 1);
    let mut out = RgbImage::new(out_nc as u32, out_nr as u32);
    let raw = img.as_raw();
    let dst = out.as_mut();
    bilinear_walk(in_nr, in_nc, out_nr, out_nc, |s| {
        let at = |r: usize, c: usize, ch: usize| raw[(r * in_nc + c) * 3 + ch];
        for ch in 0..3 {
            let (tl, tr, bl, br) = (
                at(s.top, s.left, ch),
                at(s.top, s.right, ch),
                at(s.bottom, s.left, ch),
                at(s.bottom, s.right, ch),
            );
            dst[(s.row * out_nc + s.col) * 3 + ch] = match s.weights {
                Weights::F32([a, b, c, d]) => {
                    (a * tl as f32 + b * tr as f32 + c * bl as f32 + d * br as f32) as i32 as u8
                }
                Weights::Tail { lr_frac, tb_frac } => {
                    let top_mix = (1.0 - lr_frac) * tl as f64 + lr_frac * tr as f64;
                    let bottom_mix = (1.0 - lr_frac) * bl as f64 + lr_frac * br as f64;
                    ((1.0 - tb_frac) * top_mix + tb_frac * bottom_mix) as u8
                }
            };
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_layout_of_a_square_image_matches_face_md_example() {
        let layout = tiled_pyramid_layout(1024, 1024, 10, 11);
        assert_eq!((layout.nr, layout.nc, layout.rects.len()), (3732, 1046, 28));
        assert_eq!(layout.rects[0], Rect::new(11, 11, 1034, 1034));
    }

    #[test]
    fn bilinear_resize_keeps_corners_and_constants() {
        let input: Vec<f32> = (0..35).map(|v| v as f32).collect();
        let mut out = vec![0.0; 6 * 4];
        resize_bilinear_f32(&input, 5, 7, &mut out, 4, 6);
        assert_eq!(out[0], 0.0);
        assert!((out[23] - 34.0).abs() < 1e-5);
        let flat = vec![0.25f32; 9 * 9];
        let mut out = vec![0.0; 7 * 7];
        resize_bilinear_f32(&flat, 9, 9, &mut out, 7, 7);
        assert!(out.iter().all(|v| (v - 0.25).abs() < 1e-6));
    }

    #[test]
    fn pyramid_up_size_follows_rect_up() {
        let up = pyramid_up(&RgbImage::from_pixel(4, 3, image::Rgb([10, 20, 30])));
        assert_eq!((up.width(), up.height()), (10, 7));
        assert!(up.pixels().all(|p| p.0 == [10, 20, 30]));
    }

    #[test]
    fn nms_uses_bounding_box_not_union() {
        let nms = BoxOverlap {
            iou_thresh: 0.3382761351,
            percent_covered_thresh: 1.0,
        };
        let a = Rect::new(0, 0, 9, 9);
        // Intersection 50, bounding box 150 (> 0.338 fails), true union 150: same here; shift diagonally:
        let b = Rect::new(5, 5, 14, 14); // inter 25, bbox 225, union 175
        assert!(!boxes_overlap(&nms, &a, &b));
        let c = Rect::new(0, 3, 9, 12); // inter 70, bbox 130
        assert!(boxes_overlap(&nms, &a, &c));
    }
}
