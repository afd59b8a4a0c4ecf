//! SD1.5 models on candle: CLIP text encoder, UNet, VAE, and the layers that can carry adapters.
//!
//! Model code takes a `candle_nn::VarBuilder` whose names are the diffusers names (the `weights` module maps the
//! original LDM layout onto them), and a config inferred from the tensor shapes.

pub mod adapter;
pub mod attention;
pub mod clip;
pub mod config;
pub mod embeddings;
pub mod kernels;
pub mod layers;
pub mod random_weights;
pub mod resnet;
pub mod unet;
pub mod unet_blocks;
pub mod vae;
