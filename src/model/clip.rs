//! CLIP text transformer of SD1.x (transformers `CLIPTextModel`): token + learned position embeddings, pre-LN
//! encoder layers with causal self-attention and quick_gelu MLP, `final_layer_norm`, with A1111's clip skip.
//!
//! Weight names are transformers' (`text_model.embeddings.token_embedding.weight`,
//! `text_model.encoder.layers.N.self_attn.q_proj.weight`, …); every `Linear` keeps that name for adapters.

use candle_core::{bail, DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::adapter::{AdaptableLayers, LayerMut};
use super::config::ClipConfig;
use super::layers::{LayerNorm, Linear};

/// LayerNorm epsilon of CLIP ViT-L/14 (`layer_norm_eps` in the transformers config).
const LAYER_NORM_EPS: f64 = 1e-5;

/// Multi-head self-attention (`self_attn`): q/k/v/out projections with bias.
#[derive(Debug, Clone)]
pub struct ClipAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub num_heads: usize,
    pub head_dim: usize,
}

impl ClipAttention {
    fn load(vb: VarBuilder, cfg: &ClipConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            bail!(
                "CLIP width {h} does not split into {} heads",
                cfg.num_attention_heads
            )
        }
        Ok(ClipAttention {
            q_proj: Linear::load(vb.pp("q_proj"), h, h, true)?,
            k_proj: Linear::load(vb.pp("k_proj"), h, h, true)?,
            v_proj: Linear::load(vb.pp("v_proj"), h, h, true)?,
            out_proj: Linear::load(vb.pp("out_proj"), h, h, true)?,
            num_heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
        })
    }

    /// `[B, S, H]` → `[B, heads, S, head_dim]`.
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, s, _) = xs.dims3()?;
        xs.reshape((b, s, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// softmax(q kᵀ · head_dim^-½ + mask) v, computed in f32 like transformers' eager path.
    fn forward(&self, xs: &Tensor, causal_mask: &Tensor) -> Result<Tensor> {
        let (b, s, h) = xs.dims3()?;
        let q = self.split_heads(&self.q_proj.forward(xs)?)?;
        let k = self.split_heads(&self.k_proj.forward(xs)?)?;
        let v = self.split_heads(&self.v_proj.forward(xs)?)?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(causal_mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
        self.out_proj.forward(&out)
    }
}

/// Feed-forward block (`mlp`): fc1 → quick_gelu → fc2.
#[derive(Debug, Clone)]
pub struct ClipMlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl ClipMlp {
    fn load(vb: VarBuilder, cfg: &ClipConfig) -> Result<Self> {
        Ok(ClipMlp {
            fc1: Linear::load(vb.pp("fc1"), cfg.hidden_size, cfg.intermediate_size, true)?,
            fc2: Linear::load(vb.pp("fc2"), cfg.intermediate_size, cfg.hidden_size, true)?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.fc1.forward(xs)?;
        let quick_gelu = (&xs * candle_nn::ops::sigmoid(&(&xs * 1.702)?)?)?;
        self.fc2.forward(&quick_gelu)
    }
}

/// One pre-LN encoder layer (`encoder.layers.N`).
#[derive(Debug, Clone)]
pub struct ClipEncoderLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: ClipAttention,
    pub layer_norm2: LayerNorm,
    pub mlp: ClipMlp,
}

impl ClipEncoderLayer {
    fn load(vb: VarBuilder, cfg: &ClipConfig) -> Result<Self> {
        Ok(ClipEncoderLayer {
            layer_norm1: LayerNorm::load(vb.pp("layer_norm1"), cfg.hidden_size, LAYER_NORM_EPS)?,
            self_attn: ClipAttention::load(vb.pp("self_attn"), cfg)?,
            layer_norm2: LayerNorm::load(vb.pp("layer_norm2"), cfg.hidden_size, LAYER_NORM_EPS)?,
            mlp: ClipMlp::load(vb.pp("mlp"), cfg)?,
        })
    }

    fn forward(&self, xs: &Tensor, causal_mask: &Tensor) -> Result<Tensor> {
        let attn = self
            .self_attn
            .forward(&self.layer_norm1.forward(xs)?, causal_mask)?;
        let xs = (xs + attn)?;
        let mlp = self.mlp.forward(&self.layer_norm2.forward(&xs)?)?;
        xs + mlp
    }
}

/// The CLIP text transformer (`text_model`).
#[derive(Debug, Clone)]
pub struct ClipTextModel {
    /// `text_model.embeddings.token_embedding.weight`, `[vocab, hidden]`.
    pub token_embedding: Tensor,
    /// `text_model.embeddings.position_embedding.weight`, `[positions, hidden]`.
    pub position_embedding: Tensor,
    pub layers: Vec<ClipEncoderLayer>,
    pub final_layer_norm: LayerNorm,
    pub config: ClipConfig,
}

impl ClipTextModel {
    /// Loads from a root VarBuilder holding `text_model.*` (e.g. `Checkpoint::text_encoder_vb`).
    pub fn load(vb: VarBuilder, cfg: &ClipConfig) -> Result<Self> {
        let vb = vb.pp("text_model");
        let embeddings = vb.pp("embeddings");
        let token_embedding = embeddings
            .pp("token_embedding")
            .get((cfg.vocab_size, cfg.hidden_size), "weight")?;
        let position_embedding = embeddings
            .pp("position_embedding")
            .get((cfg.max_position_embeddings, cfg.hidden_size), "weight")?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| ClipEncoderLayer::load(vb.pp("encoder.layers").pp(i), cfg))
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm =
            LayerNorm::load(vb.pp("final_layer_norm"), cfg.hidden_size, LAYER_NORM_EPS)?;
        Ok(ClipTextModel {
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm,
            config: cfg.clone(),
        })
    }

    /// Encodes `input_ids` (`[B, S]` u32, S ≤ positions, normally 77) to `[B, S, hidden]`.
    ///
    /// `clip_skip` follows A1111 (`CLIP_stop_at_last_layers`, `sd_hijack_clip.encode_with_transformers`):
    /// 1 = `last_hidden_state`; n > 1 = `hidden_states[-n]` (the output n − 1 layers before the last; the
    /// embeddings are `hidden_states[0]`) passed through `final_layer_norm`. Valid: 1 ..= layers + 1.
    pub fn forward(&self, input_ids: &Tensor, clip_skip: usize) -> Result<Tensor> {
        let (batch, seq) = input_ids.dims2()?;
        let layers_to_run = self.layers_to_run(clip_skip)?;
        let mut xs = self.embed(input_ids, batch, seq)?;
        let mask = causal_mask(seq, xs.dtype(), xs.device())?;
        for layer in &self.layers[..layers_to_run] {
            xs = layer.forward(&xs, &mask)?;
        }
        self.final_layer_norm.forward(&xs)
    }

    /// Number of encoder layers whose output `clip_skip` selects.
    fn layers_to_run(&self, clip_skip: usize) -> Result<usize> {
        let layers = self.layers.len();
        if clip_skip == 0 || clip_skip > layers + 1 {
            bail!(
                "clip skip {clip_skip} out of range 1..={} for a {layers}-layer text encoder",
                layers + 1
            )
        }
        Ok(layers + 1 - clip_skip)
    }

    /// Token embedding + position embedding for positions `0..seq`.
    fn embed(&self, input_ids: &Tensor, batch: usize, seq: usize) -> Result<Tensor> {
        let positions = self.config.max_position_embeddings;
        if seq > positions {
            bail!("{seq} tokens exceed the text encoder's {positions} positions")
        }
        let ids = input_ids.to_dtype(DType::U32)?.flatten_all()?;
        let vocab = self.config.vocab_size;
        if let Some(bad) = ids
            .to_vec1::<u32>()?
            .into_iter()
            .find(|&id| id as usize >= vocab)
        {
            bail!("token id {bad} outside the vocabulary of {vocab}")
        }
        let hidden = self.config.hidden_size;
        let tokens = self
            .token_embedding
            .index_select(&ids, 0)?
            .reshape((batch, seq, hidden))?;
        tokens.broadcast_add(&self.position_embedding.narrow(0, 0, seq)?)
    }
}

impl AdaptableLayers for ClipTextModel {
    /// `q_proj`, `k_proj`, `v_proj`, `out_proj`, `fc1`, `fc2` of every encoder layer.
    fn collect_layers<'a>(&'a mut self, out: &mut Vec<LayerMut<'a>>) {
        for layer in &mut self.layers {
            let attn = &mut layer.self_attn;
            out.push(LayerMut::Linear(&mut attn.q_proj));
            out.push(LayerMut::Linear(&mut attn.k_proj));
            out.push(LayerMut::Linear(&mut attn.v_proj));
            out.push(LayerMut::Linear(&mut attn.out_proj));
            out.push(LayerMut::Linear(&mut layer.mlp.fc1));
            out.push(LayerMut::Linear(&mut layer.mlp.fc2));
        }
    }
}

/// `[S, S]` mask: 0 on and below the diagonal, −∞ above (token i attends to tokens ≤ i).
fn causal_mask(seq: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (seq, seq), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_mask_blocks_only_future_tokens() {
        let mask = causal_mask(3, DType::F32, &Device::Cpu).unwrap();
        let rows = mask.to_vec2::<f32>().unwrap();
        assert_eq!(rows[0][0], 0.0);
        assert_eq!(rows[2][1], 0.0);
        assert_eq!(rows[0][1], f32::NEG_INFINITY);
        assert_eq!(rows[1][2], f32::NEG_INFINITY);
    }

    #[test]
    fn quick_gelu_matches_its_definition() {
        let identity = |name: &str| Linear {
            name: name.to_string(),
            weight: Tensor::ones((1, 1), DType::F32, &Device::Cpu).unwrap(),
            bias: None,
            adapters: Vec::new(),
        };
        let mlp = ClipMlp {
            fc1: identity("fc1"),
            fc2: identity("fc2"),
        };
        let x = Tensor::new(&[[[2.0f32]]], &Device::Cpu).unwrap();
        let y = mlp
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let expected = 2.0 / (1.0 + (-1.702f32 * 2.0).exp());
        assert!((y[0] - expected).abs() < 1e-6, "{y:?} vs {expected}");
    }
}
