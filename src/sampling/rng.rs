//! The noise generators of A1111's three "Random number generator source" settings, bit-exact.
//!
//! * [`TorchCpuRng`] ("CPU"): torch's CPU generator and `torch.randn` for float32 (x86-64 AVX2 build).
//! * [`PhiloxRng`] ("NV", and "GPU"): A1111's `modules/rng_philox.py`, its CPU emulation of `torch.randn` on an
//!   NVIDIA GPU (CUDA's Philox4x32-10). A1111's default source, "GPU", draws on the GPU itself; on NVIDIA cards
//!   those are the numbers NV reproduces, so loraeval draws both with [`PhiloxRng`].
//! * [`ImageRng`]: A1111's `ImageRNG`, one generator of the chosen source per image of a batch, re-seeded with
//!   `seed + ENSD` after the first draw when the eta noise seed delta is not 0.
//!
//! What torch 2.12 does for "CPU" (ATen `core/MT19937RNGEngine.h`, `CPUGeneratorImpl.cpp`,
//! `core/DistributionsHelper.h`, `core/TransformationHelper.h`, `native/cpu/DistributionTemplates.h`,
//! `native/cpu/avx_mathfun.h`):
//! * `manual_seed(s)` seeds a standard MT19937 with the low 32 bits of `s` and clears the cached normal sample.
//! * `randn(n)` with `n >= 16` (contiguous f32): fill `n` float uniforms `(u32 & 0xFFFFFF) * 2^-24`, then Box-Muller
//!   in place per block of 16 (pairs `j`, `j + 8`) with AVX2 Cephes polynomials (`log256_ps`, `sincos256_ps`);
//!   if `n % 16 != 0`, draw 16 fresh uniforms into the last 16 slots and transform that block again.
//! * `randn(n)` with `n < 16`: element-wise `normal_distribution<double>` (two 53-bit double uniforms, `log1p`,
//!   `sin`/`cos` in f64), caching the second value of each pair in the generator for the next element or call.
//!
//! The AVX2 polynomials are ported operation by operation, including the multiply-adds the C++ compiler contracts
//! into FMA (checked against torch output in `tests/sampling_rng.rs`).
//!
//! What A1111's NV generator does (`rng_philox.py`): element `i` of the `k`-th `randn` call of a generator seeded
//! with `s` is Philox4x32-10 with key `(low 32 bits of s, high 32 bits of s)` and counter `(k, 0, i, 0)`; its first
//! two outputs `x`, `y` give `sqrt(-2 ln u) sin v` with `u = x c + c/2`, `v = y c' + c'/2` (`c`, `c'` the float32
//! constants 2^-32 and 2π·2^-32), computed in float64 and rounded to float32. Checked against A1111's code in
//! `tests/sampling_nv_rng.rs` (fixtures from `scripts/make_nv_rng_fixtures.py`).

use candle_core::{Device, Tensor};

use super::SamplingError;

const MT_N: usize = 624;
const MT_M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// torch's CPU generator state: MT19937 plus the cached second Box-Muller value of the scalar path.
#[derive(Clone, Debug)]
pub struct TorchCpuRng {
    state: Box<[u32; MT_N]>,
    left: usize,
    next: usize,
    next_double_normal: Option<f64>,
}

impl TorchCpuRng {
    /// Same as `torch.Generator('cpu').manual_seed(seed)`: only the low 32 bits of `seed` matter.
    pub fn new(seed: u64) -> Self {
        let mut state = Box::new([0u32; MT_N]);
        state[0] = (seed & 0xffff_ffff) as u32;
        for j in 1..MT_N {
            let previous = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(previous ^ (previous >> 30))
                .wrapping_add(j as u32);
        }
        TorchCpuRng {
            state,
            left: 1,
            next: 0,
            next_double_normal: None,
        }
    }

    /// Same values as `torch.randn(n, generator=self)` in float32; the generator state advances as torch's does.
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        if n >= 16 {
            self.randn_vectorised(n)
        } else {
            (0..n).map(|_| self.normal_double() as f32).collect()
        }
    }

    /// One raw MT19937 output (`generator->random()`).
    pub fn random_u32(&mut self) -> u32 {
        self.left -= 1;
        if self.left == 0 {
            self.next_state();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `generator->random64()`: the first draw is the high word.
    pub fn random_u64(&mut self) -> u64 {
        let high = self.random_u32() as u64;
        let low = self.random_u32() as u64;
        (high << 32) | low
    }

    /// `uniform_real_distribution<float>(0, 1)`.
    pub fn uniform_f32(&mut self) -> f32 {
        (self.random_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    /// `uniform_real_distribution<double>(0, 1)`.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.random_u64() & ((1u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    fn next_state(&mut self) {
        let twist = |u: u32, v: u32| -> u32 {
            let mixed = (u & UPPER_MASK) | (v & LOWER_MASK);
            (mixed >> 1) ^ if v & 1 == 1 { MATRIX_A } else { 0 }
        };
        let s = &mut self.state;
        for j in 0..MT_N - MT_M {
            s[j] = s[j + MT_M] ^ twist(s[j], s[j + 1]);
        }
        for j in MT_N - MT_M..MT_N - 1 {
            s[j] = s[j + MT_M - MT_N] ^ twist(s[j], s[j + 1]);
        }
        s[MT_N - 1] = s[MT_M - 1] ^ twist(s[MT_N - 1], s[0]);
        self.left = MT_N;
        self.next = 0;
    }

    /// `normal_distribution<double>(0, 1)` with the generator's cached sample.
    fn normal_double(&mut self) -> f64 {
        if let Some(cached) = self.next_double_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let radius = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(radius * theta.sin());
        radius * theta.cos()
    }

    fn randn_vectorised(&mut self, n: usize) -> Vec<f32> {
        let mut data: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for block in data.chunks_exact_mut(16) {
            normal_fill_16(block);
        }
        if !n.is_multiple_of(16) {
            let tail = &mut data[n - 16..];
            for value in tail.iter_mut() {
                *value = self.uniform_f32();
            }
            normal_fill_16(tail);
        }
        data
    }
}

/// A1111's "Random number generator source" (`opts.randn_source`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RngSource {
    /// "GPU", A1111's default: `torch.randn` on the GPU. On an NVIDIA GPU that is CUDA's Philox, drawn here with
    /// A1111's NV algorithm (same numbers); the infotext has no `RNG` field.
    #[default]
    Gpu,
    /// "CPU": torch's CPU generator; infotext `RNG: CPU`.
    Cpu,
    /// "NV": A1111's CPU emulation of the NVIDIA generator; infotext `RNG: NV`.
    Nv,
}

impl RngSource {
    pub const ALL: [RngSource; 3] = [RngSource::Gpu, RngSource::Cpu, RngSource::Nv];

    /// Case-insensitive `gpu`, `cpu` or `nv` (A1111 writes "GPU", "CPU", "NV"); anything else is an error listing
    /// the three.
    pub fn parse(text: &str) -> Result<RngSource, SamplingError> {
        let wanted = text.trim().to_lowercase();
        Self::ALL
            .into_iter()
            .find(|source| source.name() == wanted)
            .ok_or_else(|| SamplingError::UnknownRngSource {
                name: text.to_string(),
                valid: Self::ALL.map(RngSource::name).join(", "),
            })
    }

    /// Our name: `gpu`, `cpu`, `nv`.
    pub fn name(self) -> &'static str {
        match self {
            RngSource::Gpu => "gpu",
            RngSource::Cpu => "cpu",
            RngSource::Nv => "nv",
        }
    }

    /// A1111's value of the setting: "GPU", "CPU", "NV".
    pub fn a1111_name(self) -> &'static str {
        match self {
            RngSource::Gpu => "GPU",
            RngSource::Cpu => "CPU",
            RngSource::Nv => "NV",
        }
    }

    /// The infotext's `RNG` value: A1111 1.10 `create_infotext` writes `opts.randn_source` unless it is "GPU".
    pub fn infotext_value(self) -> Option<&'static str> {
        match self {
            RngSource::Gpu => None,
            other => Some(other.a1111_name()),
        }
    }

    /// The source an infotext's `RNG` value names; no field means "GPU".
    pub fn from_infotext(value: Option<&str>) -> Result<RngSource, SamplingError> {
        value.map_or(Ok(RngSource::Gpu), RngSource::parse)
    }
}

const PHILOX_M: [u32; 2] = [0xD251_1F53, 0xCD9E_8D57];
const PHILOX_W: [u32; 2] = [0x9E37_79B9, 0xBB67_AE85];

/// A1111's NV generator (`modules/rng_philox.py` `Generator`): the numbers `torch.randn` draws on an NVIDIA GPU.
/// Each `randn` call uses the next counter offset, whatever its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhiloxRng {
    seed: u64,
    offset: u32,
}

impl PhiloxRng {
    /// `Generator(seed)`: the whole 64-bit seed is the Philox key.
    pub fn new(seed: u64) -> Self {
        PhiloxRng { seed, offset: 0 }
    }

    /// A generator whose next call uses counter offset `offset` (one call per offset).
    pub fn with_offset(seed: u64, offset: u32) -> Self {
        PhiloxRng { seed, offset }
    }

    /// The counter offset of the next call (the number of calls so far).
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// `randn(shape)` for `n` values (at most 2^32, the counter's index word).
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        let offset = self.offset;
        self.offset = self.offset.wrapping_add(1);
        (0..n)
            .map(|index| {
                let out = philox4x32_10([offset, 0, index as u32, 0], key);
                box_muller_first(out[0], out[1])
            })
            .collect()
    }
}

/// Philox4x32 with 10 rounds, the key bumped by the Weyl constants between rounds.
fn philox4x32_10(mut counter: [u32; 4], mut key: [u32; 2]) -> [u32; 4] {
    for round in 0..10 {
        if round > 0 {
            key[0] = key[0].wrapping_add(PHILOX_W[0]);
            key[1] = key[1].wrapping_add(PHILOX_W[1]);
        }
        let product0 = u64::from(counter[0]) * u64::from(PHILOX_M[0]);
        let product2 = u64::from(counter[2]) * u64::from(PHILOX_M[1]);
        counter = [
            (product2 >> 32) as u32 ^ counter[1] ^ key[0],
            product2 as u32,
            (product0 >> 32) as u32 ^ counter[3] ^ key[1],
            product0 as u32,
        ];
    }
    counter
}

/// `rng_philox.box_muller`: the sine half of Box-Muller on two raw outputs, as numpy evaluates it (the uint32
/// times the float32 constant promotes to float64; products and sums rounded one by one).
fn box_muller_first(x: u32, y: u32) -> f32 {
    let scale = 2.328_306_4e-10_f64 as f32;
    let scale_2pi = (2.328_306_4e-10_f64 * 6.283_185_5_f64) as f32;
    let u = f64::from(x) * f64::from(scale) + f64::from(scale / 2.0);
    let v = f64::from(y) * f64::from(scale_2pi) + f64::from(scale_2pi / 2.0);
    let radius = (-2.0 * u.ln()).sqrt();
    (radius * v.sin()) as f32
}

/// One image's generator of a given source.
#[derive(Clone, Debug)]
pub enum NoiseGenerator {
    TorchCpu(TorchCpuRng),
    Philox(PhiloxRng),
}

impl NoiseGenerator {
    /// A1111 `rng.create_generator(seed)` for `source`.
    pub fn new(source: RngSource, seed: u64) -> Self {
        match source {
            RngSource::Cpu => NoiseGenerator::TorchCpu(TorchCpuRng::new(seed)),
            RngSource::Gpu | RngSource::Nv => NoiseGenerator::Philox(PhiloxRng::new(seed)),
        }
    }

    /// The next `randn` of `n` values.
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        match self {
            NoiseGenerator::TorchCpu(generator) => generator.randn(n),
            NoiseGenerator::Philox(generator) => generator.randn(n),
        }
    }
}

/// A1111 `modules/rng.py` `ImageRNG`: image `i` of a batch owns a generator of the chosen source seeded with its
/// own seed (A1111 uses `seed + i`); every draw (initial noise, then one per ancestral step) is one
/// `randn(shape)` per image, stacked into `[batch, channels, height, width]`. After the first draw, a non-zero
/// eta noise seed delta (ENSD) replaces every generator with a fresh one seeded `seed + ENSD`.
#[derive(Clone, Debug)]
pub struct ImageRng {
    source: RngSource,
    seeds: Vec<u64>,
    generators: Vec<NoiseGenerator>,
    shape: [usize; 3],
    eta_noise_seed_delta: u64,
    first_drawn: bool,
}

impl ImageRng {
    /// torch CPU generators (source "CPU"), no ENSD: `ImageRng::with_source(RngSource::Cpu, seeds, shape, 0)`.
    pub fn new(seeds: &[u64], shape: [usize; 3]) -> Result<Self, SamplingError> {
        Self::with_source(RngSource::Cpu, seeds, shape, 0)
    }

    /// One generator of `source` per seed; `shape` is one image's latent shape `[channels, height, width]`;
    /// `eta_noise_seed_delta` is A1111's ENSD setting (0: off). `seed + ENSD` wraps at 2^64.
    pub fn with_source(
        source: RngSource,
        seeds: &[u64],
        shape: [usize; 3],
        eta_noise_seed_delta: u64,
    ) -> Result<Self, SamplingError> {
        if seeds.is_empty() {
            return Err(SamplingError::NoSeeds);
        }
        if shape.contains(&0) {
            return Err(SamplingError::BadLatentShape {
                shape: shape.to_vec(),
                reason: "every dimension must be at least 1".to_string(),
            });
        }
        Ok(ImageRng {
            source,
            seeds: seeds.to_vec(),
            generators: seeds
                .iter()
                .map(|&seed| NoiseGenerator::new(source, seed))
                .collect(),
            shape,
            eta_noise_seed_delta,
            first_drawn: false,
        })
    }

    /// The seeds A1111 uses for a batch: `first_seed + i`.
    pub fn batch_seeds(first_seed: u64, batch: usize) -> Vec<u64> {
        (0..batch as u64)
            .map(|i| first_seed.wrapping_add(i))
            .collect()
    }

    pub fn source(&self) -> RngSource {
        self.source
    }

    pub fn batch_size(&self) -> usize {
        self.generators.len()
    }

    /// `[batch, channels, height, width]` of one draw.
    pub fn batch_shape(&self) -> [usize; 4] {
        [
            self.generators.len(),
            self.shape[0],
            self.shape[1],
            self.shape[2],
        ]
    }

    /// The next draw as flat values, image after image.
    pub fn next_noise_vec(&mut self) -> Vec<f32> {
        let per_image = self.shape.iter().product();
        let mut values = Vec::with_capacity(per_image * self.generators.len());
        for generator in &mut self.generators {
            values.extend(generator.randn(per_image));
        }
        if !self.first_drawn {
            self.first_drawn = true;
            if self.eta_noise_seed_delta != 0 {
                let delta = self.eta_noise_seed_delta;
                self.generators = self
                    .seeds
                    .iter()
                    .map(|seed| NoiseGenerator::new(self.source, seed.wrapping_add(delta)))
                    .collect();
            }
        }
        values
    }

    /// The next draw as an f32 tensor `[batch, channels, height, width]` on `device`.
    pub fn next_noise(&mut self, device: &Device) -> Result<Tensor, SamplingError> {
        let values = self.next_noise_vec();
        Ok(Tensor::from_vec(
            values,
            self.batch_shape().to_vec(),
            device,
        )?)
    }
}

/// `normal_fill_16_AVX2` with mean 0, std 1 (the final `fmadd(n, 1, 0)` is exact).
fn normal_fill_16(block: &mut [f32]) {
    let two_pi = (2.0f64 * std::f64::consts::PI) as f32;
    for j in 0..8 {
        let u1 = 1.0f32 - block[j];
        let u2 = block[j + 8];
        let radius = (-2.0f32 * log_cephes(u1)).sqrt();
        let (sin, cos) = sincos_cephes(two_pi * u2);
        block[j] = radius * cos;
        block[j + 8] = radius * sin;
    }
}

/// `log256_ps` for one lane (inputs are in (0, 1]).
fn log_cephes(input: f32) -> f32 {
    const SQRTHF: f32 = std::f64::consts::FRAC_1_SQRT_2 as f32;
    const P: [f32; 9] = [
        7.0376836292E-2_f64 as f32,
        -1.1514610310E-1_f64 as f32,
        1.1676998740E-1_f64 as f32,
        -1.2420140846E-1_f64 as f32,
        1.4249322787E-1_f64 as f32,
        -1.6668057665E-1_f64 as f32,
        2.0000714765E-1_f64 as f32,
        -2.4999993993E-1_f64 as f32,
        3.3333331174E-1_f64 as f32,
    ];
    const Q1: f32 = -2.12194440e-4_f64 as f32;
    const Q2: f32 = 0.693_359_4; // 0.693359375 exactly
    let invalid = input <= 0.0;
    let clamped = input.max(f32::from_bits(0x0080_0000));
    let bits = clamped.to_bits();
    let exponent = ((bits >> 23) as i32) - 0x7f;
    let mut x = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let mut e = exponent as f32 + 1.0;
    let below = x < SQRTHF;
    let tmp = if below { x } else { 0.0 };
    x -= 1.0;
    if below {
        e -= 1.0;
    }
    x += tmp;
    let z = x * x;
    let mut y = P[0];
    for p in &P[1..] {
        y = y.mul_add(x, *p);
    }
    y *= x;
    y = y.mul_add(z, e * Q1);
    y = (-z).mul_add(0.5, y);
    x += y;
    x = e.mul_add(Q2, x);
    if invalid {
        f32::NAN
    } else {
        x
    }
}

/// `sincos256_ps` for one lane: returns (sin, cos).
fn sincos_cephes(input: f32) -> (f32, f32) {
    const FOPI: f32 = 1.27323954473516_f64 as f32;
    const DP1: f32 = -0.78515625;
    const DP2: f32 = -2.418_756_5e-4; // -2.4187564849853515625e-4 exactly
    const DP3: f32 = -3.774_894_977_445_941e-8_f64 as f32;
    const SINCOF: [f32; 3] = [
        -1.9515295891E-4_f64 as f32,
        8.3321608736E-3_f64 as f32,
        -1.6666654611E-1_f64 as f32,
    ];
    const COSCOF: [f32; 3] = [
        2.443315711809948E-5_f64 as f32,
        -1.388731625493765E-3_f64 as f32,
        4.166664568298827E-2_f64 as f32,
    ];
    let sign_in = input.to_bits() & 0x8000_0000;
    let mut x = input.abs();
    let quadrant = (((x * FOPI) as i32).wrapping_add(1)) & !1;
    let y = quadrant as f32;
    let swap_sign_sin = ((quadrant & 4) as u32) << 29;
    let use_sine_poly = quadrant & 2 == 0;
    x = y.mul_add(DP1, x);
    x = y.mul_add(DP2, x);
    x = y.mul_add(DP3, x);
    let sign_cos = ((!(quadrant.wrapping_sub(2)) & 4) as u32) << 29;
    let sign_sin = sign_in ^ swap_sign_sin;
    let z = x * x;
    let mut cos_poly = COSCOF[0].mul_add(z, COSCOF[1]);
    cos_poly = cos_poly.mul_add(z, COSCOF[2]);
    cos_poly *= z;
    cos_poly = cos_poly.mul_add(z, -(z * 0.5));
    cos_poly += 1.0;
    let mut sin_poly = SINCOF[0].mul_add(z, SINCOF[1]);
    sin_poly = sin_poly.mul_add(z, SINCOF[2]);
    sin_poly *= z;
    sin_poly = sin_poly.mul_add(x, x);
    let (sin, cos) = if use_sine_poly {
        (sin_poly, cos_poly)
    } else {
        (cos_poly, sin_poly)
    };
    (
        f32::from_bits(sin.to_bits() ^ sign_sin),
        f32::from_bits(cos.to_bits() ^ sign_cos),
    )
}
