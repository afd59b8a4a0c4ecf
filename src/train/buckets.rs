//! kohya's aspect-ratio buckets: which bucket resolution each image falls into, which decides the number of
//! batches per epoch (each bucket is batched on its own).
//!
//! Rules (`library/model_util.py` `make_bucket_resolutions`; `library/train_util.py` `BucketManager`,
//! `BaseDataset.adjust_min_max_bucket_reso_by_steps`):
//! * predefined resolutions for a maximum area `w × h`: the square `⌊√(w·h) / step⌋·step`, and for each width
//!   from `min` to `max` in `step`s the height `min(max, ⌊(w·h / width) / step⌋·step)` when it is at least
//!   `min`, both ways round; sorted;
//! * an image keeps its own size if that is a predefined resolution, else takes the predefined one with the
//!   nearest aspect ratio (the first on a tie);
//! * with `bucket_no_upscale`, images larger than the area are scaled down to it (the width or height rounded to
//!   a step, whichever keeps the aspect ratio better), smaller ones keep their size, then both sides are cut
//!   down to a multiple of the step;
//! * without buckets, every image goes into the one bucket of the training resolution.

/// Bucket settings (kohya's `enable_bucket`, `min_bucket_reso`, `max_bucket_reso`, `bucket_reso_steps`,
/// `bucket_no_upscale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSettings {
    pub enable: bool,
    /// Training resolution (width, height).
    pub resolution: (u32, u32),
    pub min_reso: u32,
    pub max_reso: u32,
    pub reso_steps: u32,
    pub no_upscale: bool,
}

impl BucketSettings {
    /// kohya's defaults: no buckets; 256, 1024 and 64 when enabled.
    pub fn new(resolution: (u32, u32)) -> BucketSettings {
        BucketSettings {
            enable: false,
            resolution,
            min_reso: 256,
            max_reso: 1024,
            reso_steps: 64,
            no_upscale: false,
        }
    }
}

/// Errors of bucket settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BucketError {
    #[error("bucket_reso_steps must be at least 1")]
    ZeroStep,
    #[error("resolution {w}x{h} must be at least 1 in both directions")]
    ZeroResolution { w: u32, h: u32 },
    #[error(
        "min_bucket_reso ({min}) must be equal or less than the resolution's smaller side ({side})"
    )]
    MinAboveResolution { min: u32, side: u32 },
    #[error("max_bucket_reso ({max}) must be equal or greater than the resolution's larger side ({side})")]
    MaxBelowResolution { max: u32, side: u32 },
}

/// Assigns images to buckets, in kohya's order of first use.
#[derive(Debug, Clone)]
pub struct BucketAssigner {
    settings: BucketSettings,
    min_reso: u32,
    max_reso: u32,
    predefined: Vec<(u32, u32)>,
}

impl BucketAssigner {
    /// Checks the settings and builds the predefined resolutions.
    pub fn new(settings: BucketSettings) -> Result<BucketAssigner, BucketError> {
        let (w, h) = settings.resolution;
        if w == 0 || h == 0 {
            return Err(BucketError::ZeroResolution { w, h });
        }
        if !settings.enable {
            return Ok(BucketAssigner {
                settings,
                min_reso: 0,
                max_reso: 0,
                predefined: vec![(w, h)],
            });
        }
        let (min_reso, max_reso) = adjusted_min_max(&settings)?;
        let predefined = if settings.no_upscale {
            Vec::new()
        } else {
            bucket_resolutions((w, h), min_reso, max_reso, settings.reso_steps)
        };
        Ok(BucketAssigner {
            settings,
            min_reso,
            max_reso,
            predefined,
        })
    }

    /// The min and max bucket sizes after kohya's rounding to the step.
    pub fn min_max(&self) -> (u32, u32) {
        (self.min_reso, self.max_reso)
    }

    /// The bucket resolution of an image of `size` (width, height).
    pub fn bucket_of(&self, size: (u32, u32)) -> (u32, u32) {
        if self.settings.enable && self.settings.no_upscale {
            self.bucket_no_upscale(size)
        } else {
            self.predefined_bucket(size)
        }
    }

    fn predefined_bucket(&self, size: (u32, u32)) -> (u32, u32) {
        if self.predefined.contains(&size) {
            return size;
        }
        let aspect = f64::from(size.0) / f64::from(size.1);
        let mut best = self.predefined[0];
        let mut best_error = f64::INFINITY;
        for &(w, h) in &self.predefined {
            let error = (f64::from(w) / f64::from(h) - aspect).abs();
            if error < best_error {
                best = (w, h);
                best_error = error;
            }
        }
        best
    }

    fn bucket_no_upscale(&self, (width, height): (u32, u32)) -> (u32, u32) {
        let step = self.settings.reso_steps;
        let (max_w, max_h) = self.settings.resolution;
        let max_area = f64::from(max_w) * f64::from(max_h);
        let (w, h) = (f64::from(width), f64::from(height));
        let resized = if w * h > max_area {
            self.scaled_to_area(w / h, max_area)
        } else {
            (width, height)
        };
        (resized.0 - resized.0 % step, resized.1 - resized.1 % step)
    }

    fn scaled_to_area(&self, aspect: f64, max_area: f64) -> (u32, u32) {
        let round = |x: f64| round_to_steps(x, self.settings.reso_steps);
        let resized_width = (max_area * aspect).sqrt();
        let resized_height = max_area / resized_width;
        let b_width = round(resized_width);
        let b_height_in_w = round(f64::from(b_width) / aspect);
        let ar_width = f64::from(b_width) / f64::from(b_height_in_w);
        let b_height = round(resized_height);
        let b_width_in_h = round(f64::from(b_height) * aspect);
        let ar_height = f64::from(b_width_in_h) / f64::from(b_height);
        if (ar_width - aspect).abs() < (ar_height - aspect).abs() {
            (b_width, py_round_half_up(f64::from(b_width) / aspect))
        } else {
            (py_round_half_up(f64::from(b_height) * aspect), b_height)
        }
    }
}

/// `int(x + 0.5)` for positive `x`.
fn py_round_half_up(x: f64) -> u32 {
    (x + 0.5).floor() as u32
}

/// kohya's `round_to_steps`: round to an integer, then down to a multiple of the step.
fn round_to_steps(x: f64, step: u32) -> u32 {
    let x = py_round_half_up(x);
    x - x % step
}

/// kohya's adjustment: min rounded down and max rounded up to the step, then checked against the resolution.
fn adjusted_min_max(settings: &BucketSettings) -> Result<(u32, u32), BucketError> {
    let step = settings.reso_steps;
    if step == 0 {
        return Err(BucketError::ZeroStep);
    }
    let min = settings.min_reso - settings.min_reso % step;
    let max = if settings.max_reso.is_multiple_of(step) {
        settings.max_reso
    } else {
        settings.max_reso + step - settings.max_reso % step
    };
    let (w, h) = settings.resolution;
    if w.min(h) < min {
        return Err(BucketError::MinAboveResolution {
            min,
            side: w.min(h),
        });
    }
    if w.max(h) > max {
        return Err(BucketError::MaxBelowResolution {
            max,
            side: w.max(h),
        });
    }
    Ok((min, max))
}

/// kohya's `make_bucket_resolutions(max_reso, min_size, max_size, divisible)`, sorted.
pub fn bucket_resolutions(
    max_reso: (u32, u32),
    min_size: u32,
    max_size: u32,
    divisible: u32,
) -> Vec<(u32, u32)> {
    let max_area = u64::from(max_reso.0) * u64::from(max_reso.1);
    let d = u64::from(divisible);
    let mut resos = std::collections::BTreeSet::new();
    let square = ((max_area as f64).sqrt() / d as f64).floor() as u64 * d;
    resos.insert((square as u32, square as u32));
    let mut width = u64::from(min_size);
    while width <= u64::from(max_size) {
        let height = u64::from(max_size).min((max_area / width) / d * d);
        if height >= u64::from(min_size) {
            resos.insert((width as u32, height as u32));
            resos.insert((height as u32, width as u32));
        }
        width += d;
    }
    resos.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd15_buckets_at_512() {
        // by hand: area 262144; widths 256..1024 step 64: height = min(1024, ⌊262144/w / 64⌋·64):
        // 256→1024, 320→768, 384→640, 448→576, 512→512, 576→448, 640→384, 704→320, 768→320, 832→256,
        // 896→256, 960→256, 1024→256.
        let resos = bucket_resolutions((512, 512), 256, 1024, 64);
        let expected = [
            (256, 832),
            (256, 896),
            (256, 960),
            (256, 1024),
            (320, 704),
            (320, 768),
            (384, 640),
            (448, 576),
            (512, 512),
            (576, 448),
            (640, 384),
            (704, 320),
            (768, 320),
            (832, 256),
            (896, 256),
            (960, 256),
            (1024, 256),
        ];
        assert_eq!(resos, expected);
    }

    #[test]
    fn images_go_to_the_nearest_aspect_ratio() {
        let mut settings = BucketSettings::new((512, 512));
        settings.enable = true;
        let buckets = BucketAssigner::new(settings).unwrap();
        assert_eq!(buckets.bucket_of((1024, 1024)), (512, 512));
        // 3:2 landscape, aspect 1.5: 640/384 = 1.667 (error .167), 576/448 = 1.286 (error .214).
        assert_eq!(buckets.bucket_of((1500, 1000)), (640, 384));
        // An exact predefined size is kept.
        assert_eq!(buckets.bucket_of((448, 576)), (448, 576));
    }

    #[test]
    fn no_upscale_cuts_to_the_step() {
        let mut settings = BucketSettings::new((512, 512));
        settings.enable = true;
        settings.no_upscale = true;
        let buckets = BucketAssigner::new(settings).unwrap();
        // Small image: kept, cut to multiples of 64.
        assert_eq!(buckets.bucket_of((300, 200)), (256, 192));
        // Large 1000x1000: scaled to √262144 = 512 both ways.
        assert_eq!(buckets.bucket_of((1000, 1000)), (512, 512));
    }

    #[test]
    fn without_buckets_one_resolution() {
        let buckets = BucketAssigner::new(BucketSettings::new((512, 768))).unwrap();
        assert_eq!(buckets.bucket_of((100, 3000)), (512, 768));
    }

    #[test]
    fn min_max_adjusted_and_checked() {
        let mut settings = BucketSettings::new((512, 512));
        settings.enable = true;
        settings.min_reso = 300;
        settings.max_reso = 1000;
        let buckets = BucketAssigner::new(settings).unwrap();
        assert_eq!(buckets.min_max(), (256, 1024));
        settings.min_reso = 640;
        assert_eq!(
            BucketAssigner::new(settings).unwrap_err(),
            BucketError::MinAboveResolution {
                min: 640,
                side: 512
            }
        );
    }
}
