//! kohya's step arithmetic and its start-of-run summary, and the repeats planner of `loraeval plan`.
//!
//! The rules, as `train_network.py` and `library/train_util.py` (`DreamBoothDataset.__init__`,
//! `BaseDataset.make_buckets`) compute them, with one process:
//! * `num_train_images = Σ repeats × images` over the training folders; `num_reg_images` the same over the
//!   regularisation folders;
//! * regularisation images are balanced against the training images: each reg image is registered with its
//!   repeats, in order, until the count reaches `num_train_images` (stopping there, so a large reg set is only
//!   partly used), and while it is short every reg image gets one more repeat in turn, so reg images add
//!   exactly `num_train_images` entries when there are enough of them;
//! * every entry (an image repeated) goes into its bucket; `batches per epoch = Σ_buckets ⌈count / batch⌉`;
//! * `--max_train_epochs E` overrides the steps: `max_train_steps = E × ⌈batches / grad_accum⌉`;
//! * `update steps per epoch = ⌈batches / grad_accum⌉`, `num epochs = ⌈max_train_steps / update steps⌉`;
//! * `--save_n_epoch_ratio R` sets `save_every_n_epochs = ⌊num epochs / R⌋` (at least 1);
//! * a file is saved after epoch `e` when `e % save_every_n_epochs == 0` and `e < num epochs` as
//!   `name-{e:06}.safetensors` (`ss_steps` = the optimizer steps so far, `e × update steps`), and at the end
//!   as `name.safetensors` (`ss_epoch` = num epochs, `ss_steps` = `max_train_steps`); without an output name
//!   kohya writes `epoch-…` and `last.safetensors`.

use super::buckets::{BucketAssigner, BucketError, BucketSettings};
use super::dataset::Dataset;
use super::pyfmt::PyValue;

/// Errors of planning.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("no training images (images × repeats is 0)")]
    NoTrainImages,
    #[error("{name} must be at least 1")]
    Zero { name: &'static str },
    #[error(transparent)]
    Bucket(#[from] BucketError),
}

/// One folder as the arithmetic needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSubset {
    pub num_repeats: u32,
    pub is_reg: bool,
    /// Width and height of each image, in kohya's order (sorted by path).
    pub image_sizes: Vec<(u32, u32)>,
}

impl PlanSubset {
    /// The subsets of a scanned dataset.
    pub fn from_dataset(dataset: &Dataset) -> Vec<PlanSubset> {
        dataset
            .subsets
            .iter()
            .map(|s| PlanSubset {
                num_repeats: s.num_repeats,
                is_reg: s.is_reg,
                image_sizes: s.images.iter().map(|i| i.size).collect(),
            })
            .collect()
    }
}

/// The settings the arithmetic depends on (kohya's names).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSettings {
    pub train_batch_size: u32,
    pub gradient_accumulation_steps: u32,
    /// kohya's default is 1600.
    pub max_train_steps: u64,
    pub max_train_epochs: Option<u64>,
    pub save_every_n_epochs: Option<u64>,
    pub save_n_epoch_ratio: Option<u64>,
    pub buckets: BucketSettings,
    pub output_name: Option<String>,
}

impl PlanSettings {
    /// kohya's defaults at a resolution.
    pub fn new(resolution: (u32, u32)) -> PlanSettings {
        PlanSettings {
            train_batch_size: 1,
            gradient_accumulation_steps: 1,
            max_train_steps: 1600,
            max_train_epochs: None,
            save_every_n_epochs: None,
            save_n_epoch_ratio: None,
            buckets: BucketSettings::new(resolution),
            output_name: None,
        }
    }
}

/// One bucket and its entries (images × repeats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketCount {
    pub resolution: (u32, u32),
    pub count: u64,
}

/// One file the run writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSave {
    pub epoch: u64,
    /// Optimizer steps done when it is written (`ss_steps`).
    pub steps: u64,
    pub file_name: String,
    /// The final file.
    pub last: bool,
}

/// kohya's numbers for a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainPlan {
    pub num_train_images: u64,
    pub num_reg_images: u64,
    /// Regularisation entries after balancing (what the epoch holds).
    pub reg_entries: u64,
    /// Buckets sorted by resolution.
    pub buckets: Vec<BucketCount>,
    pub enable_bucket: bool,
    /// Mean |bucket aspect − image aspect| over the images (without repeats), with buckets only.
    pub mean_ar_error: Option<f64>,
    pub batches_per_epoch: u64,
    pub train_batch_size: u32,
    pub gradient_accumulation_steps: u32,
    /// The `max_train_epochs` that set `max_train_steps`, if any.
    pub max_train_epochs: Option<u64>,
    pub max_train_steps: u64,
    pub update_steps_per_epoch: u64,
    pub num_epochs: u64,
    pub save_every_n_epochs: Option<u64>,
    pub saves: Vec<PlannedSave>,
}

/// kohya's arithmetic for these folders and settings.
pub fn plan(subsets: &[PlanSubset], settings: &PlanSettings) -> Result<TrainPlan, PlanError> {
    check_nonzero(settings)?;
    let num_train_images = count(subsets, false);
    if num_train_images == 0 {
        return Err(PlanError::NoTrainImages);
    }
    let num_reg_images = count(subsets, true);
    let entries = entries_with_balanced_reg(subsets, num_train_images);
    let reg_entries = entries.iter().filter(|e| e.is_reg).map(|e| e.repeats).sum();
    let assigner = BucketAssigner::new(settings.buckets)?;
    let (buckets, mean_ar_error) = fill_buckets(&entries, &assigner);
    let batch = u64::from(settings.train_batch_size);
    let batches_per_epoch = buckets.iter().map(|b| b.count.div_ceil(batch)).sum();
    let accum = u64::from(settings.gradient_accumulation_steps);
    let update_steps_per_epoch = u64::div_ceil(batches_per_epoch, accum);
    let max_train_steps = match settings.max_train_epochs {
        Some(epochs) => epochs * update_steps_per_epoch,
        None => settings.max_train_steps,
    };
    let num_epochs = max_train_steps.div_ceil(update_steps_per_epoch);
    let save_every_n_epochs = match settings.save_n_epoch_ratio.filter(|r| *r > 0) {
        Some(ratio) => Some((num_epochs / ratio).max(1)),
        None => settings.save_every_n_epochs,
    };
    let saves = planned_saves(
        settings.output_name.as_deref(),
        num_epochs,
        update_steps_per_epoch,
        max_train_steps,
        save_every_n_epochs,
    );
    Ok(TrainPlan {
        num_train_images,
        num_reg_images,
        reg_entries,
        buckets,
        enable_bucket: settings.buckets.enable,
        mean_ar_error: settings.buckets.enable.then_some(mean_ar_error),
        batches_per_epoch,
        train_batch_size: settings.train_batch_size,
        gradient_accumulation_steps: settings.gradient_accumulation_steps,
        max_train_epochs: settings.max_train_epochs,
        max_train_steps,
        update_steps_per_epoch,
        num_epochs,
        save_every_n_epochs,
        saves,
    })
}

fn check_nonzero(settings: &PlanSettings) -> Result<(), PlanError> {
    let checks = [
        ("train_batch_size", u64::from(settings.train_batch_size)),
        (
            "gradient_accumulation_steps",
            u64::from(settings.gradient_accumulation_steps),
        ),
        ("max_train_steps", settings.max_train_steps),
        ("max_train_epochs", settings.max_train_epochs.unwrap_or(1)),
        (
            "save_every_n_epochs",
            settings.save_every_n_epochs.unwrap_or(1),
        ),
    ];
    match checks.iter().find(|(_, v)| *v == 0) {
        Some((name, _)) => Err(PlanError::Zero { name }),
        None => Ok(()),
    }
}

fn count(subsets: &[PlanSubset], is_reg: bool) -> u64 {
    subsets
        .iter()
        .filter(|s| s.is_reg == is_reg)
        .map(|s| u64::from(s.num_repeats) * s.image_sizes.len() as u64)
        .sum()
}

/// One image with the repeats it gets.
#[derive(Debug, Clone, Copy)]
struct Entry {
    size: (u32, u32),
    repeats: u64,
    is_reg: bool,
}

/// Training images with their repeats, then the registered reg images with their balanced repeats.
fn entries_with_balanced_reg(subsets: &[PlanSubset], num_train_images: u64) -> Vec<Entry> {
    let images = |is_reg: bool| {
        subsets
            .iter()
            .filter(move |s| s.is_reg == is_reg)
            .flat_map(move |s| {
                s.image_sizes.iter().map(move |&size| Entry {
                    size,
                    repeats: u64::from(s.num_repeats),
                    is_reg,
                })
            })
    };
    let mut entries: Vec<Entry> = images(false).collect();
    let reg: Vec<Entry> = images(true).collect();
    entries.extend(balance_reg(reg, num_train_images));
    entries
}

/// kohya's loop: register reg images with their repeats until `target` is reached, then add one repeat to
/// each in turn while short of it.
fn balance_reg(mut reg: Vec<Entry>, target: u64) -> Vec<Entry> {
    if reg.is_empty() {
        return reg;
    }
    let mut n = 0;
    let mut registered = 0;
    for entry in &reg {
        registered += 1;
        n += entry.repeats;
        if n >= target {
            break;
        }
    }
    reg.truncate(registered);
    let mut i = 0;
    while n < target {
        reg[i].repeats += 1;
        n += 1;
        i = (i + 1) % reg.len();
    }
    reg
}

/// Bucket counts (sorted by resolution) and the mean aspect-ratio error over the images.
fn fill_buckets(entries: &[Entry], assigner: &BucketAssigner) -> (Vec<BucketCount>, f64) {
    let mut buckets: Vec<BucketCount> = Vec::new();
    let mut error_sum = 0.0;
    for entry in entries {
        let resolution = assigner.bucket_of(entry.size);
        let aspect = f64::from(entry.size.0) / f64::from(entry.size.1);
        error_sum += (f64::from(resolution.0) / f64::from(resolution.1) - aspect).abs();
        match buckets.iter_mut().find(|b| b.resolution == resolution) {
            Some(bucket) => bucket.count += entry.repeats,
            None => buckets.push(BucketCount {
                resolution,
                count: entry.repeats,
            }),
        }
    }
    buckets.sort_by_key(|b| b.resolution);
    let mean = if entries.is_empty() {
        0.0
    } else {
        error_sum / entries.len() as f64
    };
    (buckets, mean)
}

/// kohya's epoch file name: `{name}-{epoch:06}.safetensors` (`epoch-…` without a name).
pub fn epoch_file_name(output_name: Option<&str>, epoch: u64) -> String {
    format!("{}-{epoch:06}.safetensors", output_name.unwrap_or("epoch"))
}

/// kohya's final file name: `{name}.safetensors` (`last.safetensors` without a name).
pub fn last_file_name(output_name: Option<&str>) -> String {
    format!("{}.safetensors", output_name.unwrap_or("last"))
}

fn planned_saves(
    output_name: Option<&str>,
    num_epochs: u64,
    update_steps_per_epoch: u64,
    max_train_steps: u64,
    save_every_n_epochs: Option<u64>,
) -> Vec<PlannedSave> {
    let mut saves: Vec<PlannedSave> = match save_every_n_epochs {
        Some(every) => (1..num_epochs)
            .filter(|e| e.is_multiple_of(every))
            .map(|epoch| PlannedSave {
                epoch,
                steps: epoch * update_steps_per_epoch,
                file_name: epoch_file_name(output_name, epoch),
                last: false,
            })
            .collect(),
        None => Vec::new(),
    };
    saves.push(PlannedSave {
        epoch: num_epochs,
        steps: max_train_steps,
        file_name: last_file_name(output_name),
        last: true,
    });
    saves
}

impl TrainPlan {
    /// The lines kohya prints before training starts (`train_network.py`), the "override steps" line first
    /// when `max_train_epochs` set the steps.
    pub fn kohya_summary(&self) -> String {
        let mut lines = Vec::new();
        if let Some(epochs) = self.max_train_epochs {
            lines.push(format!(
                "override steps. steps for {epochs} epochs is / 指定エポックまでのステップ数: {}",
                self.max_train_steps
            ));
        }
        lines.push("running training / 学習開始".to_string());
        let rows = [
            format!(
                "num train images * repeats / 学習画像の数×繰り返し回数: {}",
                self.num_train_images
            ),
            "num validation images * repeats / 学習画像の数×繰り返し回数: 0".to_string(),
            format!("num reg images / 正則化画像の数: {}", self.num_reg_images),
            format!(
                "num batches per epoch / 1epochのバッチ数: {}",
                self.batches_per_epoch
            ),
            format!("num epochs / epoch数: {}", self.num_epochs),
            format!(
                "batch size per device / バッチサイズ: {}",
                self.train_batch_size
            ),
            format!(
                "gradient accumulation steps / 勾配を合計するステップ数 = {}",
                self.gradient_accumulation_steps
            ),
            format!(
                "total optimization steps / 学習ステップ数: {}",
                self.max_train_steps
            ),
        ];
        lines.extend(rows.iter().map(|r| format!("  {r}")));
        lines.join("\n")
    }

    /// `ss_bucket_info`: `null` without buckets, else `{"buckets": {"0": {"resolution": [w, h], "count": n},
    /// …}, "mean_img_ar_error": e}`.
    pub fn bucket_info_json(&self) -> String {
        let Some(mean) = self.mean_ar_error else {
            return PyValue::None.dumps();
        };
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (w, h) = b.resolution;
                let info = PyValue::Dict(vec![
                    (
                        "resolution".to_string(),
                        PyValue::List(vec![PyValue::Int(w.into()), PyValue::Int(h.into())]),
                    ),
                    ("count".to_string(), PyValue::Int(b.count as i64)),
                ]);
                (i.to_string(), info)
            })
            .collect();
        PyValue::Dict(vec![
            ("buckets".to_string(), PyValue::Dict(buckets)),
            ("mean_img_ar_error".to_string(), PyValue::Float(mean)),
        ])
        .dumps()
    }
}

/// What `loraeval plan` answers: the repeats that give about `max_steps` in `epochs` epochs, the folder
/// name, and kohya's numbers for a run with `--max_train_epochs epochs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatsPlan {
    pub images: u64,
    pub epochs: u64,
    pub target_steps: u64,
    /// `⌊max_steps × batch × grad_accum / (images × epochs)⌋`, at least 1.
    pub repeats: u32,
    /// True when those repeats give exactly the target.
    pub exact: bool,
    pub folder_name: String,
    pub plan: TrainPlan,
    /// With one more repeat: (repeats, total steps), when the target is not met exactly.
    pub next: Option<(u32, u64)>,
}

/// Repeats for `images` photos and `epochs` epochs at a target step count (repeats = steps × batch ×
/// accumulation / (images × epochs), rounded down), and kohya's numbers for them.
pub fn plan_repeats(
    images: u64,
    epochs: u64,
    max_steps: u64,
    batch: u32,
    grad_accum: u32,
    name: &str,
) -> Result<RepeatsPlan, PlanError> {
    for (what, value) in [
        ("images", images),
        ("epochs", epochs),
        ("max steps", max_steps),
    ] {
        if value == 0 {
            return Err(PlanError::Zero { name: what });
        }
    }
    let per_repeat = images * epochs;
    let wanted = max_steps * u64::from(batch) * u64::from(grad_accum);
    let repeats = u32::try_from((wanted / per_repeat).max(1)).unwrap_or(u32::MAX);
    let plan_for = |repeats: u32| {
        let subset = PlanSubset {
            num_repeats: repeats,
            is_reg: false,
            image_sizes: vec![(512, 512); images as usize],
        };
        let settings = PlanSettings {
            train_batch_size: batch,
            gradient_accumulation_steps: grad_accum,
            max_train_epochs: Some(epochs),
            output_name: Some(name.to_string()),
            ..PlanSettings::new((512, 512))
        };
        plan(&[subset], &settings)
    };
    let plan = plan_for(repeats)?;
    let exact = plan.max_train_steps == max_steps;
    let next = if exact {
        None
    } else {
        Some((repeats + 1, plan_for(repeats + 1)?.max_train_steps))
    };
    Ok(RepeatsPlan {
        images,
        epochs,
        target_steps: max_steps,
        repeats,
        exact,
        folder_name: format!("{repeats}_{name}"),
        plan,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subset(repeats: u32, n: usize, is_reg: bool) -> PlanSubset {
        PlanSubset {
            num_repeats: repeats,
            is_reg,
            image_sizes: vec![(512, 512); n],
        }
    }

    #[test]
    fn steps_default_1600_without_epochs() {
        // 20 images × 10 repeats = 200 entries, batch 1 → 200 batches; max_train_steps 1600 (default);
        // epochs = ⌈1600 / 200⌉ = 8.
        let p = plan(&[subset(10, 20, false)], &PlanSettings::new((512, 512))).unwrap();
        assert_eq!(
            (
                p.num_train_images,
                p.batches_per_epoch,
                p.num_epochs,
                p.max_train_steps
            ),
            (200, 200, 8, 1600)
        );
        assert_eq!(p.saves.len(), 1);
        assert_eq!(p.saves[0].file_name, "last.safetensors");
    }

    #[test]
    fn epochs_override_steps_with_batch_and_accumulation() {
        // 15 images × 7 repeats = 105 entries; batch 4 → ⌈105/4⌉ = 27 batches; accumulation 2 →
        // update steps per epoch ⌈27/2⌉ = 14; max_train_epochs 5 → max_train_steps = 5 × 14 = 70;
        // epochs = ⌈70/14⌉ = 5.
        let settings = PlanSettings {
            train_batch_size: 4,
            gradient_accumulation_steps: 2,
            max_train_epochs: Some(5),
            save_every_n_epochs: Some(2),
            output_name: Some("sks".into()),
            ..PlanSettings::new((512, 512))
        };
        let p = plan(&[subset(7, 15, false)], &settings).unwrap();
        assert_eq!(p.batches_per_epoch, 27);
        assert_eq!(p.update_steps_per_epoch, 14);
        assert_eq!(p.max_train_steps, 70);
        assert_eq!(p.num_epochs, 5);
        // Saves after epochs 2 and 4 (e % 2 == 0 and e < 5), steps 28 and 56, then the final file.
        let names: Vec<(&str, u64, u64)> = p
            .saves
            .iter()
            .map(|s| (s.file_name.as_str(), s.epoch, s.steps))
            .collect();
        assert_eq!(
            names,
            [
                ("sks-000002.safetensors", 2, 28),
                ("sks-000004.safetensors", 4, 56),
                ("sks.safetensors", 5, 70)
            ]
        );
    }

    #[test]
    fn steps_not_a_multiple_of_an_epoch() {
        // 32 images × 15 repeats = 480 batches; max_train_steps 1000 → epochs = ⌈1000/480⌉ = 3; the last
        // epoch stops at step 1000. save_every_n_epochs 1: files after epochs 1 and 2 (480, 960 steps).
        let settings = PlanSettings {
            max_train_steps: 1000,
            save_every_n_epochs: Some(1),
            output_name: Some("x".into()),
            ..PlanSettings::new((512, 512))
        };
        let p = plan(&[subset(15, 32, false)], &settings).unwrap();
        assert_eq!(p.num_epochs, 3);
        let steps: Vec<u64> = p.saves.iter().map(|s| s.steps).collect();
        assert_eq!(steps, [480, 960, 1000]);
    }

    #[test]
    fn reg_images_are_balanced_to_the_train_count() {
        // Train 10 × 5 = 50; reg 1 repeat × 8 images = 8 (num_reg_images 8). First pass registers all 8 (n = 8),
        // then one repeat each in turn until n = 50: 50 reg entries. Batches = (50 + 50) / 2 = 50.
        let settings = PlanSettings {
            train_batch_size: 2,
            ..PlanSettings::new((512, 512))
        };
        let p = plan(&[subset(5, 10, false), subset(1, 8, true)], &settings).unwrap();
        assert_eq!(
            (p.num_train_images, p.num_reg_images, p.reg_entries),
            (50, 8, 50)
        );
        assert_eq!(p.batches_per_epoch, 50);
        // Reg larger than train: 3 repeats × 30 images = 90 ≥ 50; registration stops at the first image that
        // reaches 50: 17 images × 3 = 51 entries.
        let p = plan(&[subset(5, 10, false), subset(3, 30, true)], &settings).unwrap();
        assert_eq!((p.num_reg_images, p.reg_entries), (90, 51));
        // ⌈(50 + 51) / 2⌉ = 51 batches (one bucket).
        assert_eq!(p.batches_per_epoch, 51);
    }

    #[test]
    fn buckets_are_batched_separately() {
        // Buckets on at 512: 3 square images × 2 repeats = 6 in (512, 512); 1 landscape 3:2 image × 2 = 2 in
        // (640, 384). Batch 4: ⌈6/4⌉ + ⌈2/4⌉ = 2 + 1 = 3 batches (one bucket would give ⌈8/4⌉ = 2).
        let mut settings = PlanSettings {
            train_batch_size: 4,
            ..PlanSettings::new((512, 512))
        };
        settings.buckets.enable = true;
        let subset = PlanSubset {
            num_repeats: 2,
            is_reg: false,
            image_sizes: vec![(512, 512), (1024, 1024), (800, 800), (1500, 1000)],
        };
        let p = plan(std::slice::from_ref(&subset), &settings).unwrap();
        assert_eq!(
            p.buckets,
            [
                BucketCount {
                    resolution: (512, 512),
                    count: 6
                },
                BucketCount {
                    resolution: (640, 384),
                    count: 2
                }
            ]
        );
        assert_eq!(p.batches_per_epoch, 3);
        // mean |bucket ar − image ar| = (0 + 0 + 0 + |5/3 − 3/2|) / 4 = 0.041666…
        assert!((p.mean_ar_error.unwrap() - (5.0 / 3.0 - 1.5) / 4.0).abs() < 1e-12);
        assert_eq!(
            p.bucket_info_json(),
            format!(
                "{{\"buckets\": {{\"0\": {{\"resolution\": [512, 512], \"count\": 6}}, \"1\": {{\"resolution\": [640, 384], \"count\": 2}}}}, \"mean_img_ar_error\": {}}}",
                super::super::pyfmt::float((5.0 / 3.0 - 1.5) / 4.0)
            )
        );
        settings.buckets.enable = false;
        assert_eq!(plan(&[subset], &settings).unwrap().batches_per_epoch, 2);
    }

    #[test]
    fn save_ratio_sets_every_n() {
        // 100 entries, 1600 steps → 16 epochs; save_n_epoch_ratio 5 → every ⌊16/5⌋ = 3 epochs: 3,6,9,12,15.
        let settings = PlanSettings {
            save_n_epoch_ratio: Some(5),
            output_name: Some("a".into()),
            ..PlanSettings::new((512, 512))
        };
        let p = plan(&[subset(10, 10, false)], &settings).unwrap();
        assert_eq!(p.save_every_n_epochs, Some(3));
        let epochs: Vec<u64> = p.saves.iter().map(|s| s.epoch).collect();
        assert_eq!(epochs, [3, 6, 9, 12, 15, 16]);
    }

    #[test]
    fn summary_lines_as_kohya_prints_them() {
        let settings = PlanSettings {
            max_train_epochs: Some(10),
            ..PlanSettings::new((512, 512))
        };
        let p = plan(&[subset(15, 32, false)], &settings).unwrap();
        let expected = "override steps. steps for 10 epochs is / 指定エポックまでのステップ数: 4800
running training / 学習開始
  num train images * repeats / 学習画像の数×繰り返し回数: 480
  num validation images * repeats / 学習画像の数×繰り返し回数: 0
  num reg images / 正則化画像の数: 0
  num batches per epoch / 1epochのバッチ数: 480
  num epochs / epoch数: 10
  batch size per device / バッチサイズ: 1
  gradient accumulation steps / 勾配を合計するステップ数 = 1
  total optimization steps / 学習ステップ数: 4800";
        assert_eq!(p.kohya_summary(), expected);
    }

    #[test]
    fn repeats_planner() {
        // 4800 / (32 × 10) = 15 exactly → folder 15_name; 10 × 480 = 4800 steps.
        let r = plan_repeats(32, 10, 4800, 1, 1, "name").unwrap();
        assert_eq!(
            (r.repeats, r.exact, r.folder_name.as_str()),
            (15, true, "15_name")
        );
        assert_eq!(r.plan.max_train_steps, 4800);
        // 7 images: 4800 / 70 = 68.57 → 68 → 10 × 476 = 4760 steps; 69 gives 10 × 483 = 4830.
        let r = plan_repeats(7, 10, 4800, 1, 1, "sks").unwrap();
        assert_eq!(
            (r.repeats, r.exact, r.plan.max_train_steps),
            (68, false, 4760)
        );
        assert_eq!(r.next, Some((69, 4830)));
        // Batch 2: 4800 × 2 / 320 = 30 repeats → 960 entries, 480 batches, 4800 steps.
        let r = plan_repeats(32, 10, 4800, 2, 1, "name").unwrap();
        assert_eq!(
            (r.repeats, r.plan.batches_per_epoch, r.plan.max_train_steps),
            (30, 480, 4800)
        );
        assert_eq!(
            plan_repeats(0, 10, 4800, 1, 1, "n").unwrap_err(),
            PlanError::Zero { name: "images" }
        );
    }

    #[test]
    fn zero_settings_and_no_images_are_errors() {
        let mut settings = PlanSettings::new((512, 512));
        assert_eq!(
            plan(&[subset(1, 0, false)], &settings).unwrap_err(),
            PlanError::NoTrainImages
        );
        settings.train_batch_size = 0;
        assert_eq!(
            plan(&[subset(1, 1, false)], &settings).unwrap_err(),
            PlanError::Zero {
                name: "train_batch_size"
            }
        );
    }
}
