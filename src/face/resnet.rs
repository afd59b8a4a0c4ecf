//! dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`): 150×150 aligned chip →
//! 128-D descriptor, computed as dlib's `anet_type` does (face.md §2.4, §3.5).
//!
//! The graph is rebuilt from the flat layer list: every `con_` takes the `affine_`/`relu_` that follow it,
//! and each `add_prev_` closes a residual group that began at the first `con_` after the previous
//! group (or after the `max_pool`); an `avg_pool` (not global) just before the `add_prev_` pools the
//! shortcut (dlib's `ares_down`).

use std::path::Path;

use image::RgbImage;
use rayon::prelude::*;

use super::dnn::{parse_dnn, InputRecord, Layer, LayerRecord, LossRecord};
use super::dnn_layers::{output_shape, run_ops, Op, Pool, Tensor};
use super::FaceError;

/// Length of a face descriptor.
pub const DESCRIPTOR_LEN: usize = 128;

/// The model shipped in `assets/face/`.
static EMBEDDED_MODEL: &[u8] =
    include_bytes!("../../assets/face/dlib_face_recognition_resnet_model_v1.dat");
const EMBEDDED_MODEL_NAME: &str = "assets/face/dlib_face_recognition_resnet_model_v1.dat";

/// dlib's face descriptor network.
#[derive(Clone, Debug)]
pub struct FaceEmbedder {
    /// Mean R, G, B subtracted from the chip before scaling by 1/256.
    avg: [f32; 3],
    /// Chip rows × columns the network takes (150 × 150).
    chip_size: (usize, usize),
    ops: Vec<Op>,
    /// `loss_metric_` distance threshold stored in the model (0.6): same person if distance < it.
    pub dist_thresh: f32,
}

impl FaceEmbedder {
    /// Loads the model compiled into the binary.
    pub fn load_embedded() -> Result<FaceEmbedder, FaceError> {
        FaceEmbedder::from_bytes(EMBEDDED_MODEL, Path::new(EMBEDDED_MODEL_NAME))
    }

    /// Loads a dlib face-recognition model file.
    pub fn load(path: &Path) -> Result<FaceEmbedder, FaceError> {
        let bytes = super::serialize::read_model_file(path)?;
        FaceEmbedder::from_bytes(&bytes, path)
    }

    /// Parses model bytes; `file` names them in errors.
    pub fn from_bytes(bytes: &[u8], file: &Path) -> Result<FaceEmbedder, FaceError> {
        let dnn = parse_dnn(bytes, file)?;
        let parse_error = |offset: usize, what: String| FaceError::ModelParse {
            file: file.to_path_buf(),
            offset,
            what,
        };
        let dist_thresh = match dnn.loss {
            LossRecord::Metric { dist_thresh, .. } => dist_thresh,
            other => {
                return Err(parse_error(
                    0,
                    format!("expected a loss_metric_ network, found {other:?}"),
                ))
            }
        };
        let (avg, chip_size) = match dnn.input {
            InputRecord::RgbImageSized { avg, nr, nc } => (avg, (nr, nc)),
            other => {
                return Err(parse_error(
                    0,
                    format!("expected input_rgb_image_sized, found {other:?}"),
                ))
            }
        };
        let ops = build_resnet(&dnn.layers).map_err(|(offset, what)| parse_error(offset, what))?;
        let end = bytes.len();
        let shape =
            output_shape(&ops, (3, chip_size.0, chip_size.1)).map_err(|e| parse_error(end, e))?;
        if shape.0 * shape.1 * shape.2 != DESCRIPTOR_LEN {
            return Err(parse_error(
                end,
                format!("network outputs {shape:?}, expected {DESCRIPTOR_LEN} values"),
            ));
        }
        Ok(FaceEmbedder {
            avg,
            chip_size,
            ops,
            dist_thresh,
        })
    }

    /// Chip (rows, cols) the network takes.
    pub fn chip_size(&self) -> (usize, usize) {
        self.chip_size
    }

    /// Descriptor of one aligned chip (150×150, as `dlib.get_face_chip` cuts it). Not normalised, like dlib's.
    pub fn embed(&self, chip: &RgbImage) -> Result<[f32; DESCRIPTOR_LEN], FaceError> {
        let input = self.chip_tensor(chip)?;
        let out = run_ops(&self.ops, input);
        let mut descriptor = [0.0f32; DESCRIPTOR_LEN];
        descriptor.copy_from_slice(&out.data[..DESCRIPTOR_LEN]);
        Ok(descriptor)
    }

    /// Descriptors of several chips, computed in parallel.
    pub fn embed_batch(&self, chips: &[RgbImage]) -> Result<Vec<[f32; DESCRIPTOR_LEN]>, FaceError> {
        chips.par_iter().map(|chip| self.embed(chip)).collect()
    }

    /// dlib's `input_rgb_image_sized` conversion: planes R, G, B of (v − avg)/256.
    fn chip_tensor(&self, chip: &RgbImage) -> Result<Tensor, FaceError> {
        let (nr, nc) = self.chip_size;
        if chip.height() as usize != nr || chip.width() as usize != nc {
            return Err(FaceError::InvalidInput {
                what: format!(
                    "face chip is {}x{} (width x height), the descriptor network needs {nc}x{nr}",
                    chip.width(),
                    chip.height()
                ),
            });
        }
        let mut t = Tensor::zeros(3, nr, nc);
        let plane = nr * nc;
        for (i, px) in chip.pixels().enumerate() {
            for c in 0..3 {
                t.data[c * plane + i] = (px.0[c] as f32 - self.avg[c]) / 256.0;
            }
        }
        Ok(t)
    }
}

/// Euclidean distance between two descriptors (dlib: same person if < 0.6).
pub fn descriptor_distance(a: &[f32; DESCRIPTOR_LEN], b: &[f32; DESCRIPTOR_LEN]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// Rebuilds the residual network from the input-first layer list; errors carry the record offset.
fn build_resnet(layers: &[LayerRecord]) -> Result<Vec<Op>, (usize, String)> {
    let mut ops: Vec<Op> = Vec::new();
    let mut group_start: Option<usize> = None;
    let mut i = 0;
    while i < layers.len() {
        let record = &layers[i];
        match &record.layer {
            Layer::Con { .. } => {
                if group_start.is_none() {
                    group_start = Some(ops.len());
                }
                let (op, used) = fuse_conv(&layers[i..]).map_err(|e| (record.offset, e))?;
                ops.push(op);
                i += used;
                continue;
            }
            Layer::AddPrev => {
                let start = group_start.take().ok_or((
                    record.offset,
                    "add_prev_ without a residual group before it".to_string(),
                ))?;
                let mut body = ops.split_off(start);
                let shortcut_pool = match body.last() {
                    Some(Op::AvgPool(p)) if !is_global(p) => Some(*p),
                    _ => None,
                };
                if shortcut_pool.is_some() {
                    body.pop();
                }
                ops.push(Op::Residual {
                    body,
                    shortcut_pool,
                });
            }
            Layer::Affine {
                affine,
                fc_mode: false,
            } => ops.push(Op::Affine(affine.clone())),
            Layer::Relu => ops.push(Op::Relu),
            Layer::MaxPool(p) => {
                group_start = None;
                ops.push(Op::MaxPool(*p));
            }
            Layer::AvgPool(p) => {
                if is_global(p) {
                    group_start = None;
                }
                ops.push(Op::AvgPool(*p));
            }
            Layer::Fc(fc) => {
                group_start = None;
                ops.push(Op::Fc(fc.clone()));
            }
            Layer::Identity => {}
            Layer::Affine { fc_mode: true, .. } => {
                return Err((
                    record.offset,
                    "affine/bn in FC mode is not supported here".to_string(),
                ));
            }
        }
        i += 1;
    }
    Ok(ops)
}

/// A `con_` record plus the `affine_` (conv mode) and `relu_` records right after it, as one step;
/// returns the step and how many records it used.
pub(crate) fn fuse_conv(layers: &[LayerRecord]) -> Result<(Op, usize), String> {
    let Some(Layer::Con { conv, use_relu }) = layers.first().map(|r| &r.layer) else {
        return Err("expected a con_ record".to_string());
    };
    if *use_relu {
        return Ok((
            Op::Conv {
                conv: conv.clone(),
                affine: None,
                relu: true,
            },
            1,
        ));
    }
    let mut used = 1;
    let mut affine = None;
    if let Some(Layer::Affine {
        affine: a,
        fc_mode: false,
    }) = layers.get(used).map(|r| &r.layer)
    {
        affine = Some(a.clone());
        used += 1;
    }
    let relu = matches!(layers.get(used).map(|r| &r.layer), Some(Layer::Relu));
    if relu {
        used += 1;
    }
    Ok((
        Op::Conv {
            conv: conv.clone(),
            affine,
            relu,
        },
        used,
    ))
}

/// `avg_pool_everything` (window 0×0 = the whole input).
fn is_global(p: &Pool) -> bool {
    p.nr == 0 && p.nc == 0
}
