//! Random weights of any requested shape, for benchmarks and tests at real SD1.5 sizes without model files.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

/// A `VarBuilder` backend that answers every request with deterministic random values.
///
/// Matrices and kernels get a uniform spread scaled by `1/sqrt(fan_in)` (activations stay in range through deep
/// stacks); 1-D tensors named `*norm*.weight` get ones and other 1-D tensors small values.
pub struct RandomWeights {
    seed: u64,
}

impl RandomWeights {
    /// A `VarBuilder` over random weights in f32 on `device`.
    pub fn var_builder(seed: u64, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(RandomWeights { seed }), DType::F32, device.clone())
    }
}

fn name_seed(seed: u64, name: &str) -> u64 {
    name.bytes()
        .fold(seed ^ 0x9E37_79B9_7F4A_7C15, |hash, byte| {
            (hash ^ byte as u64).wrapping_mul(0x100_0000_01B3)
        })
}

fn uniform_values(count: usize, seed: u64, amplitude: f32) -> Vec<f32> {
    let mut state = seed | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            (unit * 2.0 - 1.0) * amplitude
        })
        .collect()
}

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let dims = shape.dims().to_vec();
        let count = shape.elem_count();
        let values = if dims.len() == 1 && name.contains("norm") && name.ends_with("weight") {
            vec![1.0f32; count]
        } else if dims.len() == 1 {
            uniform_values(count, name_seed(self.seed, name), 0.02)
        } else {
            let fan_in: usize = dims[1..].iter().product();
            let amplitude = (3.0 / fan_in.max(1) as f32).sqrt();
            uniform_values(count, name_seed(self.seed, name), amplitude)
        };
        Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("random weights need a shape for {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}
