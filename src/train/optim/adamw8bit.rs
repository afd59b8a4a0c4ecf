//! `bitsandbytes.optim.AdamW8bit` as its CUDA kernels compute it (bitsandbytes 0.50): tensors of at least
//! `min_8bit_size` elements keep both moments as 8-bit codes of the dynamic maps (signed for m, unsigned for v),
//! one f32 absmax per block of `block_size` elements (`kOptimizerStatic8bit2StateBlockwise`); smaller tensors keep
//! f32 moments (`kOptimizer32bit2State`). Both apply the weight decay after the Adam step:
//! `p ← (p − lr·√bc2/bc1 · m/(√v + eps·√bc2)) · (1 − lr·wd)`, every scalar in f32.
//!
//! A block step dequantises the codes with the block's old absmax, updates the moments in f32, takes the block's
//! new absmax (the kernel's padding lanes of a last, partial block take part with code 128 and a zero gradient),
//! updates the parameters from the unquantised moments, then re-quantises with `quantize_code` (through a table of codes for
//! most values) and moves a first moment whose code has the wrong sign one code towards its sign. Non-finite gradients zero both moments and leave
//! the parameter, as the kernel does. Older bitsandbytes releases used blocks of 2048 (`block_size`).

use rayon::prelude::*;

use super::quant::CodeTable;
use super::{
    check_layout, check_lens, check_range, init_states, load_per_param, save_layout, state_key,
    OptimError, Optimizer, OptimizerState, Param, ParamGroup, StepReport,
};

/// AdamW8bit's settings (bitsandbytes' defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW8bitConfig {
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// Tensors with fewer elements keep 32-bit states.
    pub min_8bit_size: usize,
    /// Elements per absmax block.
    pub block_size: usize,
}

impl Default for AdamW8bitConfig {
    fn default() -> Self {
        Self {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
            min_8bit_size: 4096,
            block_size: 256,
        }
    }
}

/// The moments of one tensor.
#[derive(Debug, Clone)]
enum Moments {
    F32 {
        m: Vec<f32>,
        v: Vec<f32>,
    },
    Q8 {
        m: Vec<u8>,
        v: Vec<u8>,
        absmax_m: Vec<f32>,
        absmax_v: Vec<f32>,
    },
}

impl Moments {
    fn new(p: &Param, c: &AdamW8bitConfig) -> Self {
        let n = p.value.len();
        if n < c.min_8bit_size {
            return Self::F32 {
                m: vec![0.0; n],
                v: vec![0.0; n],
            };
        }
        let blocks = n.div_ceil(c.block_size);
        Self::Q8 {
            m: vec![0; n],
            v: vec![0; n],
            absmax_m: vec![0.0; blocks],
            absmax_v: vec![0.0; blocks],
        }
    }

    /// Checks that the buffers of a loaded state fit together (one absmax per block).
    fn check(&self, gi: usize, pi: usize, block_size: usize) -> Result<(), OptimError> {
        match self {
            Self::F32 { m, v } => {
                check_lens(gi, pi, &[("exp_avg", m.len()), ("exp_avg_sq", v.len())])
            }
            Self::Q8 {
                m,
                v,
                absmax_m,
                absmax_v,
            } => {
                check_lens(gi, pi, &[("state1", m.len()), ("state2", v.len())])?;
                let blocks = m.len().div_ceil(block_size);
                let lens = [
                    ("blocks", blocks),
                    ("absmax1", absmax_m.len()),
                    ("absmax2", absmax_v.len()),
                ];
                check_lens(gi, pi, &lens)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::F32 { m, .. } => m.len(),
            Self::Q8 { m, .. } => m.len(),
        }
    }
}

/// The kernels' f32 scalars of one step.
#[derive(Debug, Clone, Copy)]
struct Scalars {
    beta1: f32,
    beta2: f32,
    eps: f32,
    lr: f32,
    weight_decay: f32,
    correction2: f32,
    step_size: f32,
}

impl Scalars {
    fn new(c: &AdamW8bitConfig, lr: f64, wd: f64, step: u64) -> Self {
        let beta1 = c.betas.0 as f32;
        let beta2 = c.betas.1 as f32;
        let lr = lr as f32;
        let t = step as i32;
        let correction1 = 1.0 - f64::from(beta1).powi(t) as f32;
        let correction2 = (1.0 - f64::from(beta2).powi(t) as f32).sqrt();
        Self {
            beta1,
            beta2,
            eps: c.eps as f32,
            lr,
            weight_decay: wd as f32,
            correction2,
            step_size: -lr * correction2 / correction1,
        }
    }

    /// The Adam step of one element from its updated moments, then the decay.
    fn apply(&self, p: f32, m: f32, v: f32) -> f32 {
        let p = p + self.step_size * (m / (v.sqrt() + self.correction2 * self.eps));
        if self.weight_decay > 0.0 {
            p * (1.0 - self.lr * self.weight_decay)
        } else {
            p
        }
    }
}

/// `kOptimizer32bit2State` (Adam): f32 moments.
fn step_f32(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &Scalars) {
    for i in 0..p.len() {
        m[i] = m[i] * k.beta1 + (1.0 - k.beta1) * g[i];
        v[i] = v[i] * k.beta2 + (1.0 - k.beta2) * (g[i] * g[i]);
        p[i] = k.apply(p[i], m[i], v[i]);
    }
}

/// The two maps with their code tables, made once per optimizer.
#[derive(Debug, Clone)]
struct Maps {
    signed: CodeTable,
    unsigned: CodeTable,
}

/// One block of `kOptimizerStatic8bit2StateBlockwise`; `pad` says whether the block is a last, partial one.
struct Block<'a> {
    p: &'a mut [f32],
    g: &'a [f32],
    cm: &'a mut [u8],
    cv: &'a mut [u8],
    absmax_m: &'a mut f32,
    absmax_v: &'a mut f32,
    pad: bool,
}

fn step_block(b: Block<'_>, maps: &Maps, k: &Scalars, scratch: &mut (Vec<f32>, Vec<f32>)) {
    let (ms, vs) = scratch;
    ms.clear();
    vs.clear();
    let mut max_m = f32::MIN;
    let mut max_v = f32::MIN;
    for i in 0..b.p.len() {
        let g = b.g[i];
        let (m, v) = if g.is_finite() {
            let v = maps.unsigned.value(b.cv[i]) * *b.absmax_v;
            let v = v * k.beta2 + (1.0 - k.beta2) * g * g;
            let m = maps.signed.value(b.cm[i]) * *b.absmax_m;
            (m * k.beta1 + (1.0 - k.beta1) * g, v)
        } else {
            (0.0, 0.0)
        };
        max_m = max_m.max(m.abs());
        max_v = max_v.max(v.abs());
        ms.push(m);
        vs.push(v);
    }
    if b.pad {
        let m = maps.signed.value(128) * *b.absmax_m;
        max_m = max_m.max((m * k.beta1 + (1.0 - k.beta1) * 0.0).abs());
        max_v = max_v.max(0.0);
    }
    *b.absmax_m = max_m;
    *b.absmax_v = max_v;
    for i in 0..b.p.len() {
        if b.g[i].is_finite() {
            b.p[i] = k.apply(b.p[i], ms[i], vs[i]);
        }
        b.cm[i] = quantize_signed(&maps.signed, ms[i], max_m);
        b.cv[i] = maps.unsigned.code(vs[i] / max_v);
    }
}

/// The first moment's code, moved one code towards the moment's sign when the nearest code has the other sign.
fn quantize_signed(map: &CodeTable, m: f32, absmax: f32) -> u8 {
    let code = map.code(m / absmax);
    if map.value(code).is_sign_negative() == m.is_sign_negative() {
        code
    } else if m > 0.0 {
        code.wrapping_add(1)
    } else {
        code.wrapping_sub(1)
    }
}

/// `bitsandbytes.optim.AdamW8bit`.
#[derive(Debug, Clone)]
pub struct AdamW8bit {
    config: AdamW8bitConfig,
    maps: Maps,
    step: u64,
    states: Vec<Vec<Moments>>,
}

impl AdamW8bit {
    pub fn new(config: AdamW8bitConfig) -> Result<Self, OptimError> {
        check_range("beta1", config.betas.0, 0.0, 1.0)?;
        check_range("beta2", config.betas.1, 0.0, 1.0)?;
        check_range("eps", config.eps, 0.0, f64::INFINITY)?;
        check_range("weight_decay", config.weight_decay, 0.0, f64::INFINITY)?;
        check_range("block_size", config.block_size as f64, 1.0, f64::INFINITY)?;
        Ok(Self {
            config,
            maps: Maps {
                signed: CodeTable::new(true),
                unsigned: CodeTable::new(false),
            },
            step: 0,
            states: Vec::new(),
        })
    }

    fn step_param(&self, p: &mut Param, s: &mut Moments, k: &Scalars) {
        match s {
            Moments::F32 { m, v } => step_f32(&mut p.value, &p.grad, m, v, k),
            Moments::Q8 {
                m,
                v,
                absmax_m,
                absmax_v,
            } => {
                let bs = self.config.block_size;
                let last = absmax_m.len() - 1;
                let partial = !p.value.len().is_multiple_of(bs);
                p.value
                    .par_chunks_mut(bs)
                    .zip(p.grad.par_chunks(bs))
                    .zip(m.par_chunks_mut(bs).zip(v.par_chunks_mut(bs)))
                    .zip(absmax_m.par_iter_mut().zip(absmax_v.par_iter_mut()))
                    .enumerate()
                    .for_each_init(
                        || (Vec::with_capacity(bs), Vec::with_capacity(bs)),
                        |scratch, (i, (((p, g), (cm, cv)), (am, av)))| {
                            let block = Block {
                                p,
                                g,
                                cm,
                                cv,
                                absmax_m: am,
                                absmax_v: av,
                                pad: partial && i == last,
                            };
                            step_block(block, &self.maps, k, scratch);
                        },
                    );
            }
        }
    }
}

impl Optimizer for AdamW8bit {
    fn name(&self) -> &'static str {
        "AdamW8bit"
    }

    fn step(
        &mut self,
        groups: &mut [ParamGroup],
        lr_factor: f64,
    ) -> Result<StepReport, OptimError> {
        check_layout(groups, &self.states, Moments::len)?;
        let config = self.config;
        init_states(groups, &mut self.states, |p| Moments::new(p, &config));
        self.step += 1;
        let mut states = std::mem::take(&mut self.states);
        let mut lrs = Vec::with_capacity(groups.len());
        for (group, st) in groups.iter_mut().zip(&mut states) {
            let lr = group.lr * lr_factor;
            let k = Scalars::new(
                &config,
                lr,
                group.weight_decay.unwrap_or(config.weight_decay),
                self.step,
            );
            let this = &*self;
            group
                .params
                .par_iter_mut()
                .zip(st.par_iter_mut())
                .for_each(|(p, s)| this.step_param(p, s, &k));
            lrs.push(lr);
        }
        self.states = states;
        Ok(StepReport { lrs })
    }

    fn steps(&self) -> u64 {
        self.step
    }

    fn state(&self) -> OptimizerState {
        let mut st = OptimizerState::new(self.name());
        st.set_scalar("step", self.step as f64);
        save_layout(&mut st, &self.states);
        for (gi, states) in self.states.iter().enumerate() {
            for (pi, s) in states.iter().enumerate() {
                let key = |b| state_key(gi, pi, b);
                match s {
                    Moments::F32 { m, v } => {
                        st.set_f32(key("exp_avg"), m);
                        st.set_f32(key("exp_avg_sq"), v);
                    }
                    Moments::Q8 {
                        m,
                        v,
                        absmax_m,
                        absmax_v,
                    } => {
                        st.set_u8(key("state1"), m);
                        st.set_u8(key("state2"), v);
                        st.set_f32(key("absmax1"), absmax_m);
                        st.set_f32(key("absmax2"), absmax_v);
                    }
                }
            }
        }
        st
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        state.expect_kind(self.name())?;
        let step = state.scalar("step")? as u64;
        let bs = self.config.block_size;
        self.states = load_per_param(state, |gi, pi| {
            let key = |b| state_key(gi, pi, b);
            let moments = if state.has(&key("state1")) {
                Moments::Q8 {
                    m: state.u8(&key("state1"))?,
                    v: state.u8(&key("state2"))?,
                    absmax_m: state.f32(&key("absmax1"))?,
                    absmax_v: state.f32(&key("absmax2"))?,
                }
            } else {
                Moments::F32 {
                    m: state.f32(&key("exp_avg"))?,
                    v: state.f32(&key("exp_avg_sq"))?,
                }
            };
            moments.check(gi, pi, bs)?;
            Ok(moments)
        })?;
        self.step = step;
        Ok(())
    }
}
