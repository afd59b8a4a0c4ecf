//! loraeval: pick the best epoch and weight of a face LoRA for Stable Diffusion 1.5.
//!
//! The library holds every stage of the pipeline (see `ARCHITECTURE.md`); the `loraeval` binary is a thin
//! clap front end in [`cli`]. Only `cli` prints, reads environment variables or picks exit codes.

pub mod cli;
pub mod face;
pub mod grid;
pub mod lora;
pub mod model;
pub mod recommend;
pub mod report;
pub mod sampling;
pub mod score;
pub mod text;
pub mod train;
pub mod weights;
