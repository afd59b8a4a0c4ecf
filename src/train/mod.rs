//! Training, kohya-compatible: what works without gradients.
//!
//! * [`dataset`]: a kohya `train_data_dir` (`NN_name` folders, NN = repeats), captions, class tokens,
//!   regularisation folders, caption shuffling/dropout as kohya does it, tag frequency.
//! * [`buckets`]: kohya's aspect-ratio buckets (which bucket each image falls into).
//! * [`plan`]: kohya's step arithmetic (images × repeats, batches per epoch, epochs, total optimization steps,
//!   saves) and its start-of-run summary; the repeats planner of `loraeval plan`.
//! * [`config`]: kohya's TOML config file (`--config_file`, as the kohya GUI writes it) and the resolved
//!   settings.
//! * [`settings`]: the resolved settings (kohya's defaults filled in).
//! * [`metadata`]: kohya's `ss_*` and `modelspec.*` metadata of a saved file.
//! * [`save`]: writing a kohya LoRA `.safetensors` file with its `ss_*` metadata and `sshs_*` hashes.
//! * [`prepare`]: face-centred square crops, caption stubs and a QA list from raw photos.
//! * [`pyfmt`]: Python's `str()` and `json.dumps()` of values, as kohya's metadata holds them.
//! * [`rng`]: the seeded generator of caption processing.
//! * [`optim`]: the optimizers (AdamW, AdamW8bit, Adafactor, DAdaptAdam, Prodigy), learning-rate schedules and
//!   gradient clipping, each checked against its reference package.
//!
//! The training loop itself (the reverse pass) is not here yet.

pub mod buckets;
pub mod config;
pub mod dataset;
pub mod metadata;
pub mod optim;
pub mod plan;
pub mod prepare;
pub mod pyfmt;
pub mod rng;
pub mod save;
pub mod settings;
