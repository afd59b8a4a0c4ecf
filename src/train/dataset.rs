//! A kohya `train_data_dir`: subfolders named `NN_name` (NN = repeats, `name` = the class tokens used as the
//! caption of images without a caption file), images by extension, captions by extension; the same for the
//! regularisation folder. Caption processing (shuffle, keep tokens, dropouts) and tag frequency as kohya does.
//!
//! kohya's rules kept here (`library/config_util.py` `generate_dreambooth_subsets_config_by_subdirs`,
//! `library/train_util.py` `DreamBoothDataset`, `glob_images`, `set_tag_frequency`, `process_caption`):
//! * a subfolder's name is split on `_`; the first part must be an integer (else "ignore directory without
//!   repeats"), folders with repeats below 1 are skipped; the class tokens are the other parts joined by `_`;
//! * images are the files ending in `.png .jpg .jpeg .webp .bmp` or their upper-case forms (exactly those
//!   spellings: `a.Jpg` is not read), sorted by path; a folder without images is skipped with a warning;
//! * the caption of `dir/x.png` is the first line (stripped) of `dir/x<ext>`, or of the file named by the stem
//!   without its last four `_` parts when the path has five or more (kohya's face-crop names); a caption file
//!   without any line is an error; no caption file: the class tokens;
//! * tag frequency counts, per folder name, each comma-separated caption part, stripped and lower-cased.
//!
//! Unlike kohya, every image is opened (header only) while scanning, so a broken file is an error naming it
//! before anything runs.

use std::fmt;
use std::path::{Path, PathBuf};

use super::pyfmt::PyValue;
use super::rng::TrainRng;

/// kohya's `IMAGE_EXTENSIONS` (without the optional AVIF / JPEG XL plug-ins).
pub const KOHYA_IMAGE_EXTENSIONS: [&str; 10] = [
    ".png", ".jpg", ".jpeg", ".webp", ".bmp", ".PNG", ".JPG", ".JPEG", ".WEBP", ".BMP",
];

/// How many files without a caption a warning names (kohya shows 5).
const MISSING_CAPTIONS_SHOWN: usize = 5;

/// Errors of dataset scanning; each names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: not a folder (train_data_dir / reg_data_dir must be a folder of NN_name subfolders)")]
    NotAFolder { path: PathBuf },
    #[error("cannot list folder {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable image: {reason}")]
    BadImage { path: PathBuf, reason: String },
    #[error("{count} images cannot be read: {list}")]
    BadImages { count: usize, list: String },
    #[error("caption file {path} is not UTF-8 text")]
    CaptionNotUtf8 { path: PathBuf },
    #[error("caption file {path} is empty (kohya refuses empty caption files; write the caption or delete the file)")]
    EmptyCaption { path: PathBuf },
    #[error("cannot read caption file {path}: {source}")]
    ReadCaption {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no training images in {path}: expected subfolders named NN_name (NN = repeats, e.g. 25_sks) holding .png/.jpg/.jpeg/.webp/.bmp files")]
    NoTrainImages { path: PathBuf },
}

/// Something kohya would warn about (or silently skip) that training can go on with.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetWarning {
    /// A subfolder whose name does not start with an integer.
    NoRepeats { path: PathBuf },
    /// A subfolder whose repeats are below 1.
    RepeatsBelowOne { path: PathBuf, repeats: i64 },
    /// A subfolder without images.
    NoImages { path: PathBuf },
    /// A file that looks like an image but that kohya does not read (extension spelled in mixed case).
    IgnoredFile { path: PathBuf, reason: String },
    /// Images without a caption file; they get the class tokens.
    MissingCaptions {
        folder: PathBuf,
        files: Vec<PathBuf>,
        class_tokens: String,
    },
    /// More regularisation images than training images: some are never used.
    RegImagesUnused { train: u64, reg: u64 },
}

impl fmt::Display for DatasetWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetWarning::NoRepeats { path } => write!(
                f,
                "ignore directory without repeats: {} (name it NN_name, NN = repeats)",
                path.display()
            ),
            DatasetWarning::RepeatsBelowOne { path, repeats } => write!(
                f,
                "ignore directory with repeats {repeats} (below 1): {}",
                path.display()
            ),
            DatasetWarning::NoImages { path } => {
                write!(f, "ignore directory without images: {}", path.display())
            }
            DatasetWarning::IgnoredFile { path, reason } => {
                write!(f, "not used: {}: {reason}", path.display())
            }
            DatasetWarning::MissingCaptions {
                folder,
                files,
                class_tokens,
            } => write_missing_captions(f, folder, files, class_tokens),
            DatasetWarning::RegImagesUnused { train, reg } => write!(
                f,
                "some of the regularisation images are not used: {reg} reg images with repeats for {train} training images"
            ),
        }
    }
}

fn write_missing_captions(
    f: &mut fmt::Formatter<'_>,
    folder: &Path,
    files: &[PathBuf],
    class_tokens: &str,
) -> fmt::Result {
    let caption = if class_tokens.is_empty() {
        "an empty caption".to_string()
    } else {
        format!("the class tokens \"{class_tokens}\"")
    };
    write!(
        f,
        "{}: no caption file for {} images, they get {caption}: ",
        folder.display(),
        files.len()
    )?;
    let shown: Vec<String> = files
        .iter()
        .take(MISSING_CAPTIONS_SHOWN)
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    write!(f, "{}", shown.join(", "))?;
    if files.len() > MISSING_CAPTIONS_SHOWN {
        write!(f, " ... and {} more", files.len() - MISSING_CAPTIONS_SHOWN)?;
    }
    Ok(())
}

/// How captions are found.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanOptions {
    /// Caption file extension with its dot (a missing dot is added, as kohya does).
    pub caption_extension: String,
    /// kohya's `enable_wildcard`: keep every non-empty line of a caption file (joined by `\n`), not the first.
    pub enable_wildcard: bool,
}

impl Default for ScanOptions {
    fn default() -> ScanOptions {
        ScanOptions {
            caption_extension: ".txt".to_string(),
            enable_wildcard: false,
        }
    }
}

/// One training image.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetImage {
    pub path: PathBuf,
    /// The caption as read (or the class tokens).
    pub caption: String,
    /// The caption file, `None` when the class tokens stand in.
    pub caption_file: Option<PathBuf>,
    /// Width and height from the file header (no EXIF rotation, as kohya's `imagesize`).
    pub size: (u32, u32),
}

/// One `NN_name` folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Subset {
    pub dir: PathBuf,
    /// The folder's own name (`25_sks woman`): the key of `ss_tag_frequency` and `ss_dataset_dirs`.
    pub folder_name: String,
    pub num_repeats: u32,
    /// The name after `NN_`: the caption of images without a caption file.
    pub class_tokens: String,
    pub is_reg: bool,
    pub images: Vec<DatasetImage>,
}

/// Tag counts per folder name, in first-seen order (kohya's `tag_frequency` dict).
pub type TagFrequency = Vec<(String, Vec<(String, u64)>)>;

/// A scanned kohya dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub train_dir: PathBuf,
    pub reg_dir: Option<PathBuf>,
    /// Training subsets, then regularisation subsets, each group sorted by folder name.
    pub subsets: Vec<Subset>,
    pub warnings: Vec<DatasetWarning>,
}

impl Dataset {
    /// Scans `train_dir` (and `reg_dir`): subsets, images, captions; every image's header is read.
    pub fn scan(
        train_dir: &Path,
        reg_dir: Option<&Path>,
        options: &ScanOptions,
    ) -> Result<Dataset, DatasetError> {
        let mut warnings = Vec::new();
        let mut subsets = scan_root(train_dir, false, options, &mut warnings)?;
        if let Some(reg) = reg_dir {
            subsets.extend(scan_root(reg, true, options, &mut warnings)?);
        }
        let dataset = Dataset {
            train_dir: train_dir.to_path_buf(),
            reg_dir: reg_dir.map(Path::to_path_buf),
            subsets,
            warnings,
        };
        if dataset.num_train_images() == 0 {
            return Err(DatasetError::NoTrainImages {
                path: train_dir.to_path_buf(),
            });
        }
        Ok(dataset.with_reg_warning())
    }

    fn with_reg_warning(mut self) -> Dataset {
        let (train, reg) = (self.num_train_images(), self.num_reg_images());
        if train < reg {
            self.warnings
                .push(DatasetWarning::RegImagesUnused { train, reg });
        }
        self
    }

    /// Σ repeats × images over the training subsets (kohya's `num_train_images`).
    pub fn num_train_images(&self) -> u64 {
        self.count_with_repeats(false)
    }

    /// Σ repeats × images over the regularisation subsets (kohya's `num_reg_images`).
    pub fn num_reg_images(&self) -> u64 {
        self.count_with_repeats(true)
    }

    fn count_with_repeats(&self, is_reg: bool) -> u64 {
        self.subsets
            .iter()
            .filter(|s| s.is_reg == is_reg)
            .map(|s| u64::from(s.num_repeats) * s.images.len() as u64)
            .sum()
    }

    /// kohya's `tag_frequency`: per folder name (training and regularisation), the count of each
    /// comma-separated caption part, stripped and lower-cased, in first-seen order.
    pub fn tag_frequency(&self) -> TagFrequency {
        let mut frequency: TagFrequency = Vec::new();
        for subset in &self.subsets {
            let index = match frequency.iter().position(|(d, _)| *d == subset.folder_name) {
                Some(i) => i,
                None => {
                    frequency.push((subset.folder_name.clone(), Vec::new()));
                    frequency.len() - 1
                }
            };
            for image in &subset.images {
                count_tags(&image.caption, &mut frequency[index].1);
            }
        }
        frequency
    }

    /// `ss_tag_frequency`: `json.dumps` of [`Dataset::tag_frequency`].
    pub fn tag_frequency_json(&self) -> String {
        let dirs = self
            .tag_frequency()
            .into_iter()
            .map(|(dir, tags)| {
                let tags = tags
                    .into_iter()
                    .map(|(t, n)| (t, PyValue::Int(n as i64)))
                    .collect();
                (dir, PyValue::Dict(tags))
            })
            .collect();
        PyValue::Dict(dirs).dumps()
    }

    /// `ss_dataset_dirs` (`is_reg = false`) or `ss_reg_dataset_dirs`: `{"folder": {"n_repeats": N,
    /// "img_count": M}}`.
    pub fn dataset_dirs_json(&self, is_reg: bool) -> String {
        let dirs = self
            .subsets
            .iter()
            .filter(|s| s.is_reg == is_reg)
            .map(|s| {
                let info = PyValue::Dict(vec![
                    (
                        "n_repeats".to_string(),
                        PyValue::Int(i64::from(s.num_repeats)),
                    ),
                    ("img_count".to_string(), PyValue::Int(s.images.len() as i64)),
                ]);
                (s.folder_name.clone(), info)
            })
            .collect();
        PyValue::Dict(dirs).dumps()
    }
}

fn count_tags(caption: &str, counts: &mut Vec<(String, u64)>) {
    for tag in caption.split(',') {
        let tag = tag.trim();
        if tag.is_empty() {
            continue;
        }
        let tag = tag.to_lowercase();
        match counts.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, n)) => *n += 1,
            None => counts.push((tag, 1)),
        }
    }
}

/// Parses a kohya folder name: `Ok((repeats, class_tokens))`, or `None` when the first `_` part is not an
/// integer. The integer follows Python's `int()`: surrounding whitespace and a sign are allowed.
pub fn parse_folder_name(name: &str) -> Option<(i64, String)> {
    let mut parts = name.split('_');
    let first = parts.next()?.trim();
    let digits = first.strip_prefix(['+', '-']).unwrap_or(first);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let repeats: i64 = first.parse().ok()?;
    let class_tokens = parts.collect::<Vec<_>>().join("_");
    Some((repeats, class_tokens))
}

fn scan_root(
    root: &Path,
    is_reg: bool,
    options: &ScanOptions,
    warnings: &mut Vec<DatasetWarning>,
) -> Result<Vec<Subset>, DatasetError> {
    if !root.is_dir() {
        return Err(DatasetError::NotAFolder {
            path: root.to_path_buf(),
        });
    }
    let mut subsets = Vec::new();
    for dir in list_dir(root)?.into_iter().filter(|p| p.is_dir()) {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some((repeats, class_tokens)) = parse_folder_name(&name) else {
            warnings.push(DatasetWarning::NoRepeats { path: dir });
            continue;
        };
        if repeats < 1 {
            warnings.push(DatasetWarning::RepeatsBelowOne { path: dir, repeats });
            continue;
        }
        let subset = Subset {
            dir: dir.clone(),
            folder_name: name,
            num_repeats: u32::try_from(repeats).unwrap_or(u32::MAX),
            class_tokens,
            is_reg,
            images: Vec::new(),
        };
        if let Some(subset) = scan_subset(subset, options, warnings)? {
            subsets.push(subset);
        }
    }
    Ok(subsets)
}

/// The folder's entries, sorted by path.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let read_error = |source| DatasetError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = std::fs::read_dir(dir)
        .map_err(read_error)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    paths.sort();
    Ok(paths)
}

fn scan_subset(
    mut subset: Subset,
    options: &ScanOptions,
    warnings: &mut Vec<DatasetWarning>,
) -> Result<Option<Subset>, DatasetError> {
    let image_paths = find_subset_images(&subset.dir, warnings)?;
    if image_paths.is_empty() {
        warnings.push(DatasetWarning::NoImages { path: subset.dir });
        return Ok(None);
    }
    let extension = normalized_extension(&options.caption_extension);
    let mut missing = Vec::new();
    let mut bad = Vec::new();
    for path in image_paths {
        let size = match image_size(&path) {
            Ok(size) => size,
            Err(reason) => {
                bad.push((path, reason));
                continue;
            }
        };
        let (caption, caption_file) = match read_caption(&path, &extension, options)? {
            Some((caption, file)) => (caption, Some(file)),
            None => {
                missing.push(path.clone());
                (subset.class_tokens.clone(), None)
            }
        };
        subset.images.push(DatasetImage {
            path,
            caption,
            caption_file,
            size,
        });
    }
    bad_images_error(bad)?;
    if !missing.is_empty() {
        warnings.push(DatasetWarning::MissingCaptions {
            folder: subset.dir.clone(),
            files: missing,
            class_tokens: subset.class_tokens.clone(),
        });
    }
    Ok(Some(subset))
}

fn bad_images_error(bad: Vec<(PathBuf, String)>) -> Result<(), DatasetError> {
    match bad.len() {
        0 => Ok(()),
        1 => {
            let (path, reason) = bad.into_iter().next().unwrap_or_default();
            Err(DatasetError::BadImage { path, reason })
        }
        count => Err(DatasetError::BadImages {
            count,
            list: bad
                .iter()
                .map(|(p, r)| format!("{} ({r})", p.display()))
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

/// Files of a subset folder that kohya reads as images, sorted; mixed-case image extensions are reported.
fn find_subset_images(
    dir: &Path,
    warnings: &mut Vec<DatasetWarning>,
) -> Result<Vec<PathBuf>, DatasetError> {
    let mut images = Vec::new();
    for path in list_dir(dir)? {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with('.') {
            continue;
        }
        if KOHYA_IMAGE_EXTENSIONS.iter().any(|e| name.ends_with(e)) {
            images.push(path);
        } else if is_other_case_image(&name) && path.is_file() {
            warnings.push(DatasetWarning::IgnoredFile {
                path,
                reason: "kohya reads only .png/.jpg/.jpeg/.webp/.bmp in all lower or all upper case; rename it"
                    .to_string(),
            });
        }
    }
    Ok(images)
}

fn is_other_case_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    KOHYA_IMAGE_EXTENSIONS[..5]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// Width and height from the header; an error text when the file is not a readable image.
fn image_size(path: &Path) -> Result<(u32, u32), String> {
    if !path.is_file() {
        return Err("not a file".to_string());
    }
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("unrecognised content (not PNG, JPEG, WebP or BMP data)".to_string());
    }
    let (w, h) = reader.into_dimensions().map_err(|e| e.to_string())?;
    if w == 0 || h == 0 {
        return Err("image has no pixels".to_string());
    }
    Ok((w, h))
}

fn normalized_extension(extension: &str) -> String {
    if extension.is_empty() || extension.starts_with('.') {
        extension.to_string()
    } else {
        format!(".{extension}")
    }
}

/// kohya's caption file candidates: `<path without extension><ext>`, then the same with the last four `_`
/// parts of the whole path removed when it has five or more.
pub fn caption_candidates(image: &Path, extension: &str) -> Vec<PathBuf> {
    let full = image.to_string_lossy();
    let base = match image.extension() {
        Some(ext) => &full[..full.len() - ext.len() - 1],
        None => &full[..],
    };
    let tokens: Vec<&str> = base.split('_').collect();
    let face_base = if tokens.len() >= 5 {
        tokens[..tokens.len() - 4].join("_")
    } else {
        base.to_string()
    };
    vec![
        PathBuf::from(format!("{base}{extension}")),
        PathBuf::from(format!("{face_base}{extension}")),
    ]
}

fn read_caption(
    image: &Path,
    extension: &str,
    options: &ScanOptions,
) -> Result<Option<(String, PathBuf)>, DatasetError> {
    for candidate in caption_candidates(image, extension) {
        if candidate.is_file() {
            let caption = read_caption_file(&candidate, options.enable_wildcard)?;
            return Ok(Some((caption, candidate)));
        }
    }
    Ok(None)
}

/// The first line, stripped (or every non-empty stripped line joined by `\n` with wildcards); a file without
/// any line is an error.
pub fn read_caption_file(path: &Path, enable_wildcard: bool) -> Result<String, DatasetError> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::ReadCaption {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| DatasetError::CaptionNotUtf8 {
        path: path.to_path_buf(),
    })?;
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    if text.is_empty() {
        return Err(DatasetError::EmptyCaption {
            path: path.to_path_buf(),
        });
    }
    let mut lines = text.split_inclusive('\n').map(str::trim);
    if enable_wildcard {
        Ok(lines
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n"))
    } else {
        Ok(lines.next().unwrap_or_default().to_string())
    }
}

/// kohya's per-subset caption settings (`process_caption`).
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionOptions {
    pub shuffle_caption: bool,
    /// Leading parts kept in place when shuffling.
    pub keep_tokens: usize,
    /// When non-empty and in the caption: the parts before it stay fixed, those after it shuffle, and a
    /// second occurrence starts a fixed suffix.
    pub keep_tokens_separator: String,
    /// What splits a caption into parts (`,`).
    pub caption_separator: String,
    /// Replaced by `caption_separator` after shuffling (kohya's `secondary_separator`).
    pub secondary_separator: Option<String>,
    pub caption_prefix: Option<String>,
    pub caption_suffix: Option<String>,
    /// Probability of an empty caption.
    pub caption_dropout_rate: f64,
    /// Empty captions on epochs that are multiples of this (0: never).
    pub caption_dropout_every_n_epochs: u32,
    /// Probability of dropping each shuffled part.
    pub caption_tag_dropout_rate: f64,
}

impl Default for CaptionOptions {
    fn default() -> CaptionOptions {
        CaptionOptions {
            shuffle_caption: false,
            keep_tokens: 0,
            keep_tokens_separator: String::new(),
            caption_separator: ",".to_string(),
            secondary_separator: None,
            caption_prefix: None,
            caption_suffix: None,
            caption_dropout_rate: 0.0,
            caption_dropout_every_n_epochs: 0,
            caption_tag_dropout_rate: 0.0,
        }
    }
}

/// The caption one training step sees, as kohya's `process_caption` makes it (wildcards and token warm-up
/// aside): prefix/suffix, whole-caption dropout, first line, fixed and shuffled parts, part dropout, joined
/// with `", "`. `epoch` counts from 1.
pub fn process_caption(
    caption: &str,
    options: &CaptionOptions,
    epoch: u32,
    rng: &mut TrainRng,
) -> String {
    let mut caption = caption.to_string();
    if let Some(prefix) = options.caption_prefix.as_deref().filter(|p| !p.is_empty()) {
        caption = format!("{prefix} {caption}");
    }
    if let Some(suffix) = options.caption_suffix.as_deref().filter(|s| !s.is_empty()) {
        caption = format!("{caption} {suffix}");
    }
    if caption_dropped(options, epoch, rng) {
        return String::new();
    }
    let mut caption = caption.split('\n').next().unwrap_or_default().to_string();
    if options.shuffle_caption || options.caption_tag_dropout_rate > 0.0 {
        caption = shuffle_parts(&caption, options, rng);
    }
    if let Some(secondary) = options
        .secondary_separator
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        caption = caption.replace(secondary, &options.caption_separator);
    }
    caption
}

fn caption_dropped(options: &CaptionOptions, epoch: u32, rng: &mut TrainRng) -> bool {
    let random_drop =
        options.caption_dropout_rate > 0.0 && rng.next_f64() < options.caption_dropout_rate;
    let every_n = options.caption_dropout_every_n_epochs;
    random_drop || (every_n > 0 && epoch.is_multiple_of(every_n))
}

fn shuffle_parts(caption: &str, options: &CaptionOptions, rng: &mut TrainRng) -> String {
    let separator = options.caption_separator.as_str();
    let split_clean = |part: &str| -> Vec<String> {
        part.split(separator)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    };
    let keep_separator = options.keep_tokens_separator.as_str();
    let (fixed, mut flex, suffix) =
        if !keep_separator.is_empty() && caption.contains(keep_separator) {
            let (fixed_part, rest) = caption.split_once(keep_separator).unwrap_or((caption, ""));
            let (flex_part, suffix_part) = rest.split_once(keep_separator).unwrap_or((rest, ""));
            (
                split_clean(fixed_part),
                split_clean(flex_part),
                split_clean(suffix_part),
            )
        } else {
            let tokens: Vec<String> = caption
                .trim()
                .split(separator)
                .map(|t| t.trim().to_string())
                .collect();
            let keep = options.keep_tokens.min(tokens.len());
            (tokens[..keep].to_vec(), tokens[keep..].to_vec(), Vec::new())
        };
    if options.shuffle_caption {
        rng.shuffle(&mut flex);
    }
    if options.caption_tag_dropout_rate > 0.0 {
        flex.retain(|_| rng.next_f64() >= options.caption_tag_dropout_rate);
    }
    [fixed, flex, suffix].concat().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_as_kohya_parses_them() {
        assert_eq!(
            parse_folder_name("25_sks woman"),
            Some((25, "sks woman".into()))
        );
        assert_eq!(parse_folder_name("10_a_b"), Some((10, "a_b".into())));
        assert_eq!(parse_folder_name("5"), Some((5, String::new())));
        assert_eq!(parse_folder_name("05_x"), Some((5, "x".into())));
        assert_eq!(parse_folder_name("-1_x"), Some((-1, "x".into())));
        assert_eq!(parse_folder_name("sks_woman"), None);
        assert_eq!(parse_folder_name("_x"), None);
        assert_eq!(parse_folder_name("1x_y"), None);
    }

    #[test]
    fn caption_candidates_include_the_face_crop_name() {
        let c = caption_candidates(Path::new("/d/5_x/img_1_2_3_4.png"), ".txt");
        assert_eq!(c[0], PathBuf::from("/d/5_x/img_1_2_3_4.txt"));
        // "/d/5", "x/img", "1", "2", "3", "4": six parts, the last four go.
        assert_eq!(c[1], PathBuf::from("/d/5_x/img.txt"));
        let plain = caption_candidates(Path::new("/d/5_x/a.jpg"), ".caption");
        assert_eq!(plain[0], plain[1]);
    }

    #[test]
    fn tags_counted_lowercase_per_folder() {
        let mut counts = Vec::new();
        count_tags("Sks woman, smiling,, sks WOMAN ", &mut counts);
        assert_eq!(
            counts,
            vec![("sks woman".to_string(), 2), ("smiling".to_string(), 1)]
        );
    }

    #[test]
    fn keep_tokens_stay_first_and_the_rest_is_a_permutation() {
        let options = CaptionOptions {
            shuffle_caption: true,
            keep_tokens: 1,
            ..CaptionOptions::default()
        };
        let mut rng = TrainRng::new(3);
        let mut orders = std::collections::HashSet::new();
        for epoch in 1..50 {
            let out = process_caption("sks, a, b, c", &options, epoch, &mut rng);
            assert!(out.starts_with("sks, "), "{out}");
            let mut rest: Vec<&str> = out[5..].split(", ").collect();
            orders.insert(rest.join(","));
            rest.sort();
            assert_eq!(rest, ["a", "b", "c"]);
        }
        assert!(orders.len() > 3, "shuffle produced {orders:?}");
    }

    #[test]
    fn keep_tokens_separator_fixes_prefix_and_suffix() {
        let options = CaptionOptions {
            shuffle_caption: true,
            keep_tokens_separator: "|||".to_string(),
            ..CaptionOptions::default()
        };
        let mut rng = TrainRng::new(1);
        for epoch in 1..20 {
            let out = process_caption("sks, woman ||| a, b, c ||| best", &options, epoch, &mut rng);
            assert!(
                out.starts_with("sks, woman, ") && out.ends_with(", best"),
                "{out}"
            );
        }
    }

    #[test]
    fn no_shuffle_keeps_the_caption_as_written() {
        let mut rng = TrainRng::new(1);
        let out = process_caption("a,b ,  c", &CaptionOptions::default(), 1, &mut rng);
        assert_eq!(out, "a,b ,  c");
        let multi = process_caption("first\nsecond", &CaptionOptions::default(), 1, &mut rng);
        assert_eq!(multi, "first");
    }

    #[test]
    fn dropouts() {
        let mut rng = TrainRng::new(9);
        let always = CaptionOptions {
            caption_dropout_rate: 1.0,
            ..CaptionOptions::default()
        };
        assert_eq!(process_caption("a, b", &always, 1, &mut rng), "");
        let every_2 = CaptionOptions {
            caption_dropout_every_n_epochs: 2,
            ..CaptionOptions::default()
        };
        assert_eq!(process_caption("a, b", &every_2, 2, &mut rng), "");
        assert_eq!(process_caption("a, b", &every_2, 3, &mut rng), "a, b");
        let tags = CaptionOptions {
            caption_tag_dropout_rate: 0.5,
            keep_tokens: 1,
            ..CaptionOptions::default()
        };
        let kept: usize = (0..400)
            .map(|_| {
                process_caption("k, a, b, c, d", &tags, 1, &mut rng)
                    .split(", ")
                    .count()
                    - 1
            })
            .sum();
        // 4 droppable parts × 400 draws × 0.5 ≈ 800.
        assert!((700..900).contains(&kept), "{kept}");
    }
}
