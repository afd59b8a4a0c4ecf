//! Parser of dlib DNN model files (`net_type` serializations, face.md §2): loss record, wrapper versions,
//! input layer and the layer-details records in input → output order, each with its byte offset.
//!
//! The graph wiring (which tag an `add_prev_` refers to) is not stored in dlib files; the network builders
//! in resnet.rs and mmod.rs turn the flat list into a network. Supported layer records: `con_4/5/6`,
//! `affine_`/`affine_2`, `bn_con2`/`bn_fc2` (folded into an affine at load, as dlib's `affine_` does),
//! `relu_`/`relu_2`, `max_pool_2`, `avg_pool_2`, `add_prev_`, `fc_2`/`fc_3`.

use std::path::Path;

use super::dnn_layers::{Affine, Conv, Fc, Pool};
use super::serialize::{AliasTensorDims, DlibTensor, Reader};
use super::FaceError;

/// A parsed dlib DNN file.
#[derive(Clone, Debug)]
pub struct DnnFile {
    pub loss: LossRecord,
    /// Versions of the wrapper objects, outermost first: 2 = `add_layer`, 1 = `add_tag_layer`/`add_skip_layer`,
    /// the last one (innermost `add_layer`) 3 or 2.
    pub wrapper_versions: Vec<i64>,
    pub input: InputRecord,
    /// Layer-details records, input side first.
    pub layers: Vec<LayerRecord>,
}

/// The loss layer record.
#[derive(Clone, Debug, PartialEq)]
pub enum LossRecord {
    /// `loss_metric_`/`loss_metric_2`.
    Metric { margin: f32, dist_thresh: f32 },
    /// `loss_mmod_`.
    Mmod(MmodOptions),
}

/// `mmod_options` of a `loss_mmod_` record.
#[derive(Clone, Debug, PartialEq)]
pub struct MmodOptions {
    pub detector_windows: Vec<DetectorWindow>,
    pub loss_per_false_alarm: f64,
    pub loss_per_missed_target: f64,
    pub truth_match_iou_threshold: f64,
    pub overlaps_nms: BoxOverlap,
    pub overlaps_ignore: BoxOverlap,
    pub assume_image_pyramid: bool,
    pub use_bounding_box_regression: bool,
    pub bbr_lambda: f64,
}

/// One sliding window of an MMOD detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectorWindow {
    pub width: usize,
    pub height: usize,
    pub label: String,
}

/// dlib's `test_box_overlap`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxOverlap {
    pub iou_thresh: f64,
    pub percent_covered_thresh: f64,
}

/// The input layer record.
#[derive(Clone, Debug, PartialEq)]
pub enum InputRecord {
    /// `input_rgb_image_sized<NR,NC>`.
    RgbImageSized { avg: [f32; 3], nr: usize, nc: usize },
    /// `input_rgb_image_pyramid` (v1: paddings 10 and 11) or `input_rgb_image_pyramid2`.
    RgbImagePyramid {
        avg: [f32; 3],
        pyramid_padding: usize,
        pyramid_outer_padding: usize,
    },
}

/// One layer-details record and where it starts in the file.
#[derive(Clone, Debug)]
pub struct LayerRecord {
    /// Byte offset of the record's version string.
    pub offset: usize,
    /// The version string (`con_4`, `bn_con2`, …).
    pub tag: String,
    pub layer: Layer,
}

/// Inference view of a layer record.
#[derive(Clone, Debug)]
pub enum Layer {
    /// `con_`; `use_relu` is con_6's fused relu.
    Con {
        conv: Conv,
        use_relu: bool,
    },
    /// `affine_` or a folded `bn_`; `fc_mode` means one gamma/beta per element instead of per channel.
    Affine {
        affine: Affine,
        fc_mode: bool,
    },
    Relu,
    MaxPool(Pool),
    AvgPool(Pool),
    AddPrev,
    Fc(Fc),
    /// A disabled `affine_2`/`relu_2` (dlib skips it).
    Identity,
}

/// Every layer-details tag this parser understands.
const LAYER_TAGS: &[&str] = &[
    "con_4",
    "con_5",
    "con_6",
    "affine_",
    "affine_2",
    "bn_con2",
    "bn_fc2",
    "relu_",
    "relu_2",
    "max_pool_2",
    "avg_pool_2",
    "add_prev_",
    "fc_2",
    "fc_3",
];

/// Parses a whole dlib DNN file; `file` names it in errors.
pub fn parse_dnn(bytes: &[u8], file: &Path) -> Result<DnnFile, FaceError> {
    let mut r = Reader::new(bytes, file);
    r.read_version(&[1], "add_loss_layer")?;
    let loss = read_loss(&mut r)?;
    let wrapper_versions = read_wrapper_versions(&mut r)?;
    let input = read_input(&mut r)?;
    let innermost_version = wrapper_versions.last().copied().unwrap_or(3);
    let mut layers = Vec::new();
    while !r.is_at_end() {
        layers.push(read_layer(&mut r)?);
        read_add_layer_trailer(&mut r, layers.len() == 1, innermost_version)?;
    }
    let add_layers = wrapper_versions.iter().filter(|&&v| v >= 2).count();
    if add_layers != layers.len() {
        return Err(r.error_at(
            r.pos(),
            format!(
                "{} layer records for {add_layers} add_layer wrappers",
                layers.len()
            ),
        ));
    }
    Ok(DnnFile {
        loss,
        wrapper_versions,
        input,
        layers,
    })
}

/// The loss details record (`loss_metric_2`, `loss_mmod_`, …).
fn read_loss(r: &mut Reader) -> Result<LossRecord, FaceError> {
    let tag = r.read_tag(&["loss_metric_", "loss_metric_2", "loss_mmod_"])?;
    match tag.as_str() {
        "loss_metric_" => Ok(LossRecord::Metric {
            margin: 0.1,
            dist_thresh: 0.75,
        }),
        "loss_metric_2" => Ok(LossRecord::Metric {
            margin: r.read_f32()?,
            dist_thresh: r.read_f32()?,
        }),
        _ => Ok(LossRecord::Mmod(read_mmod_options(r)?)),
    }
}

/// `mmod_options` versions 1–4.
fn read_mmod_options(r: &mut Reader) -> Result<MmodOptions, FaceError> {
    let version = r.read_version(&[1, 2, 3, 4], "mmod_options")?;
    let detector_windows = if version == 1 {
        vec![DetectorWindow {
            width: r.read_usize()?,
            height: r.read_usize()?,
            label: String::new(),
        }]
    } else {
        r.read_vec(5, read_detector_window)?
    };
    let loss_per_false_alarm = r.read_f64()?;
    let loss_per_missed_target = r.read_f64()?;
    let truth_match_iou_threshold = r.read_f64()?;
    let overlaps_nms = read_box_overlap(r)?;
    let overlaps_ignore = read_box_overlap(r)?;
    let assume_image_pyramid = if version >= 3 {
        r.read_u8()? != 0
    } else {
        true
    };
    let (use_bounding_box_regression, bbr_lambda) = if version >= 4 {
        (r.read_bool()?, r.read_f64()?)
    } else {
        (false, 100.0)
    };
    Ok(MmodOptions {
        detector_windows,
        loss_per_false_alarm,
        loss_per_missed_target,
        truth_match_iou_threshold,
        overlaps_nms,
        overlaps_ignore,
        assume_image_pyramid,
        use_bounding_box_regression,
        bbr_lambda,
    })
}

/// `detector_window_details` (version 1: no label, 2: label).
fn read_detector_window(r: &mut Reader) -> Result<DetectorWindow, FaceError> {
    let version = r.read_version(&[1, 2], "detector_window_details")?;
    let width = r.read_usize()?;
    let height = r.read_usize()?;
    let label = if version == 2 {
        r.read_string()?
    } else {
        String::new()
    };
    Ok(DetectorWindow {
        width,
        height,
        label,
    })
}

fn read_box_overlap(r: &mut Reader) -> Result<BoxOverlap, FaceError> {
    Ok(BoxOverlap {
        iou_thresh: r.read_f64()?,
        percent_covered_thresh: r.read_f64()?,
    })
}

/// The run of wrapper version ints that precedes the input layer record (face.md §2.1).
fn read_wrapper_versions(r: &mut Reader) -> Result<Vec<i64>, FaceError> {
    let mut versions = Vec::new();
    loop {
        if next_is_input_tag(r) {
            break;
        }
        let version = r
            .read_version(&[1, 2, 3], "network wrapper (add_layer / tag / skip)")
            .map_err(|e| e.context("expected a wrapper version or the input layer"))?;
        versions.push(version);
        if version == 3 {
            break;
        }
    }
    if versions.last().is_some_and(|&v| v == 1) {
        return Err(r.error_at(
            r.pos(),
            "a tag layer directly on the input layer is not supported",
        ));
    }
    Ok(versions)
}

/// True if a string starting with "input" begins at the reader's position.
fn next_is_input_tag(r: &Reader) -> bool {
    let mut probe = r.clone();
    probe.read_string().is_ok_and(|s| s.starts_with("input"))
}

/// The input layer record.
fn read_input(r: &mut Reader) -> Result<InputRecord, FaceError> {
    let tag = r.read_tag(&[
        "input_rgb_image_sized",
        "input_rgb_image_pyramid",
        "input_rgb_image_pyramid2",
    ])?;
    let avg = [r.read_f32()?, r.read_f32()?, r.read_f32()?];
    match tag.as_str() {
        "input_rgb_image_sized" => Ok(InputRecord::RgbImageSized {
            avg,
            nr: r.read_usize()?,
            nc: r.read_usize()?,
        }),
        "input_rgb_image_pyramid" => Ok(InputRecord::RgbImagePyramid {
            avg,
            pyramid_padding: 10,
            pyramid_outer_padding: 11,
        }),
        _ => Ok(InputRecord::RgbImagePyramid {
            avg,
            pyramid_padding: r.read_usize()?,
            pyramid_outer_padding: r.read_usize()?,
        }),
    }
}

/// After each layer record: 3 bools, x_grad, cached_output, params_grad/grad_final and, for the
/// innermost add_layer of version 3, the sample expansion factor.
fn read_add_layer_trailer(
    r: &mut Reader,
    innermost: bool,
    innermost_version: i64,
) -> Result<(), FaceError> {
    for _ in 0..3 {
        r.read_bool().map_err(|e| e.context("add_layer flags"))?;
    }
    for _ in 0..3 {
        r.read_tensor()
            .map_err(|e| e.context("add_layer state tensor"))?;
    }
    if innermost && innermost_version == 3 {
        r.read_u32()
            .map_err(|e| e.context("sample_expansion_factor"))?;
    }
    Ok(())
}

/// One layer-details record.
fn read_layer(r: &mut Reader) -> Result<LayerRecord, FaceError> {
    let offset = r.pos();
    let tag = r.read_tag(LAYER_TAGS)?;
    let layer = match tag.as_str() {
        "con_4" | "con_5" | "con_6" => read_con(r, &tag, offset),
        "affine_" | "affine_2" => read_affine(r, &tag, offset),
        "bn_con2" | "bn_fc2" => read_bn(r, &tag, offset),
        "relu_" => Ok(Layer::Relu),
        "relu_2" => Ok(if r.read_bool()? {
            Layer::Identity
        } else {
            Layer::Relu
        }),
        "max_pool_2" => Ok(Layer::MaxPool(read_pool(r)?)),
        "avg_pool_2" => Ok(Layer::AvgPool(read_pool(r)?)),
        "add_prev_" => Ok(Layer::AddPrev),
        _ => read_fc(r, &tag, offset),
    }
    .map_err(|e| e.context(&format!("layer record {tag:?} at byte {offset}")))?;
    Ok(LayerRecord { offset, tag, layer })
}

/// A non-negative dlib `int`.
fn read_int_size(r: &mut Reader, what: &str) -> Result<usize, FaceError> {
    let start = r.pos();
    let v = r.read_i32()?;
    usize::try_from(v).map_err(|_| r.error_at(start, format!("{what} must be ≥ 0, found {v}")))
}

fn read_multipliers(r: &mut Reader) -> Result<(), FaceError> {
    for _ in 0..4 {
        r.read_f64()?;
    }
    Ok(())
}

/// `con_4/5/6`: params, num_filters, nr, nc, strides, paddings, filter/bias aliases, 4 multipliers,
/// [use_bias], [use_relu].
fn read_con(r: &mut Reader, tag: &str, offset: usize) -> Result<Layer, FaceError> {
    let params = r.read_tensor()?;
    let num_filters = r.read_nonnegative()?;
    let nr = r.read_nonnegative()?;
    let nc = r.read_nonnegative()?;
    let stride_y = read_int_size(r, "stride_y")?;
    let stride_x = read_int_size(r, "stride_x")?;
    let padding_y = read_int_size(r, "padding_y")?;
    let padding_x = read_int_size(r, "padding_x")?;
    let filters = r.read_alias_tensor()?;
    let biases = r.read_alias_tensor()?;
    read_multipliers(r)?;
    let use_bias = if tag != "con_4" { r.read_bool()? } else { true };
    let use_relu = if tag == "con_6" {
        r.read_bool()?
    } else {
        false
    };
    let n_filters = alias_len(r, &filters, offset)?;
    let n_biases = alias_len(r, &biases, offset)?;
    if filters.num_samples != num_filters
        || filters.nr != nr
        || filters.nc != nc
        || stride_y == 0
        || stride_x == 0
        || padding_y >= nr.max(1)
        || padding_x >= nc.max(1)
    {
        return Err(r.error_at(
            offset,
            format!("inconsistent con_ shape: {num_filters} filters {nr}x{nc}, stride {stride_y}x{stride_x}, filter alias {filters:?}"),
        ));
    }
    let bias_values =
        if use_bias && params.data.len() >= n_filters + n_biases && n_biases == num_filters {
            params.data[n_filters..n_filters + num_filters].to_vec()
        } else if use_bias && num_filters > 0 {
            return Err(r.error_at(
                offset,
                format!(
                    "con_ params hold {} floats, expected {} weights + {num_filters} biases",
                    params.data.len(),
                    n_filters
                ),
            ));
        } else {
            vec![0.0; num_filters]
        };
    check_param_len(r, &params, n_filters, offset)?;
    let conv = Conv {
        num_filters,
        k_in: filters.k,
        nr,
        nc,
        stride_y,
        stride_x,
        padding_y,
        padding_x,
        filters: params.data[..n_filters].to_vec(),
        biases: bias_values,
    };
    Ok(Layer::Con { conv, use_relu })
}

/// Element count of an alias tensor, failing (instead of overflowing) on absurd dims.
fn alias_len(r: &Reader, dims: &AliasTensorDims, offset: usize) -> Result<usize, FaceError> {
    [dims.k, dims.nr, dims.nc]
        .iter()
        .try_fold(dims.num_samples, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= r.len())
        .ok_or_else(|| r.error_at(offset, format!("alias tensor dims {dims:?} are too large")))
}

fn check_param_len(
    r: &Reader,
    params: &DlibTensor,
    needed: usize,
    offset: usize,
) -> Result<(), FaceError> {
    if params.data.len() < needed {
        return Err(r.error_at(
            offset,
            format!(
                "params hold {} floats, the layer needs {needed}",
                params.data.len()
            ),
        ));
    }
    Ok(())
}

/// `affine_`/`affine_2`: params, gamma alias, beta alias, int mode, [disabled].
fn read_affine(r: &mut Reader, tag: &str, offset: usize) -> Result<Layer, FaceError> {
    let params = r.read_tensor()?;
    let gamma = r.read_alias_tensor()?;
    let _beta = r.read_alias_tensor()?;
    let mode = r.read_i32()?;
    let disabled = if tag == "affine_2" {
        r.read_bool()?
    } else {
        false
    };
    if disabled {
        return Ok(Layer::Identity);
    }
    let n = alias_len(r, &gamma, offset)?;
    check_param_len(r, &params, 2 * n, offset)?;
    Ok(Layer::Affine {
        affine: Affine {
            gamma: params.data[..n].to_vec(),
            beta: params.data[n..2 * n].to_vec(),
        },
        fc_mode: mode == 1,
    })
}

/// `bn_con2`/`bn_fc2`, converted as dlib's `affine_(const bn_&)`: g = γ/√(var + eps), b = β − g·mean.
fn read_bn(r: &mut Reader, tag: &str, offset: usize) -> Result<Layer, FaceError> {
    let params = r.read_tensor()?;
    let gamma = r.read_alias_tensor()?;
    let _beta = r.read_alias_tensor()?;
    let _means = r.read_tensor()?;
    let _invstds = r.read_tensor()?;
    let running_means = r.read_tensor()?;
    let running_variances = r.read_tensor()?;
    let _num_updates = r.read_u64()?;
    let _window = r.read_u64()?;
    read_multipliers(r)?;
    let eps = r.read_f64()?;
    let n = alias_len(r, &gamma, offset)?;
    check_param_len(r, &params, 2 * n, offset)?;
    if running_means.data.len() != n || running_variances.data.len() != n {
        return Err(r.error_at(
            offset,
            format!(
                "bn_ running stats have {} / {} values for {n} channels",
                running_means.data.len(),
                running_variances.data.len()
            ),
        ));
    }
    let (g, b): (Vec<f32>, Vec<f32>) = (0..n)
        .map(|i| {
            let g = params.data[i] / (running_variances.data[i] + eps as f32).sqrt();
            (g, params.data[n + i] - g * running_means.data[i])
        })
        .unzip();
    Ok(Layer::Affine {
        affine: Affine { gamma: g, beta: b },
        fc_mode: tag == "bn_fc2",
    })
}

/// `max_pool_2`/`avg_pool_2`: long nr, long nc, int strides, int paddings.
fn read_pool(r: &mut Reader) -> Result<Pool, FaceError> {
    let start = r.pos();
    let pool = Pool {
        nr: r.read_nonnegative()?,
        nc: r.read_nonnegative()?,
        stride_y: read_int_size(r, "stride_y")?,
        stride_x: read_int_size(r, "stride_x")?,
        padding_y: read_int_size(r, "padding_y")?,
        padding_x: read_int_size(r, "padding_x")?,
    };
    let padding_too_big =
        (pool.nr > 0 && pool.padding_y >= pool.nr) || (pool.nc > 0 && pool.padding_x >= pool.nc);
    if pool.stride_y == 0 || pool.stride_x == 0 || padding_too_big {
        return Err(r.error_at(start, format!("invalid pool geometry {pool:?}")));
    }
    Ok(pool)
}

/// `fc_2`/`fc_3`: num_outputs, num_inputs, params, weight/bias aliases, bias_mode, 4 multipliers, [use_bias].
fn read_fc(r: &mut Reader, tag: &str, offset: usize) -> Result<Layer, FaceError> {
    let num_outputs = r.read_usize()?;
    let num_inputs = r.read_usize()?;
    let params = r.read_tensor()?;
    let _weights = r.read_alias_tensor()?;
    let _biases = r.read_alias_tensor()?;
    let bias_mode = r.read_i32()?;
    read_multipliers(r)?;
    let use_bias = if tag == "fc_3" { r.read_bool()? } else { true };
    let n_weights = num_inputs
        .checked_mul(num_outputs)
        .filter(|&n| n <= r.len())
        .ok_or_else(|| {
            r.error_at(
                offset,
                format!("fc_ of {num_inputs} x {num_outputs} is too large"),
            )
        })?;
    let has_bias = bias_mode == 0 && use_bias;
    check_param_len(
        r,
        &params,
        n_weights.saturating_add(if has_bias { num_outputs } else { 0 }),
        offset,
    )?;
    Ok(Layer::Fc(Fc {
        num_outputs,
        num_inputs,
        weights: params.data[..n_weights].to_vec(),
        biases: has_bias.then(|| params.data[n_weights..n_weights + num_outputs].to_vec()),
    }))
}
