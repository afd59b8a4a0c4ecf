//! Scanning kohya folders: repeats and class tokens from folder names, captions by extension, regularisation
//! folders, warnings and errors that name the file or folder, tag frequency as kohya records it.

use std::path::Path;

use loraeval::train::dataset::{Dataset, DatasetError, DatasetWarning, ScanOptions};
use loraeval::train::plan::{plan, PlanSettings, PlanSubset};

fn png(path: &Path, w: u32, h: u32) {
    image::RgbImage::from_pixel(w, h, image::Rgb([90, 120, 150]))
        .save(path)
        .unwrap();
}

fn mkdir(path: &Path) -> &Path {
    std::fs::create_dir_all(path).unwrap();
    path
}

#[test]
fn kohya_folders_captions_and_class_tokens() {
    let root = tempfile::tempdir().unwrap();
    let img = root.path().join("image");
    let a = mkdir(&img.join("25_sks woman")).to_path_buf();
    png(&a.join("a.png"), 64, 48);
    png(&a.join("b.JPG"), 32, 32);
    png(&a.join("c.Png"), 32, 32);
    std::fs::write(
        a.join("a.txt"),
        "sks woman, Red Hair, smiling\nsecond line ignored\n",
    )
    .unwrap();
    std::fs::write(a.join("notes.md"), "not an image").unwrap();
    let b = mkdir(&img.join("3_sks")).to_path_buf();
    png(&b.join("x.webp.png"), 16, 16);
    std::fs::write(b.join("x.webp.caption"), "ignored: wrong extension").unwrap();
    mkdir(&img.join("no_repeats"));
    mkdir(&img.join("0_zero"));
    mkdir(&img.join("7_empty"));
    let reg = root.path().join("reg");
    let r = mkdir(&reg.join("1_woman")).to_path_buf();
    png(&r.join("r1.png"), 32, 32);
    png(&r.join("r2.png"), 32, 32);

    let dataset = Dataset::scan(&img, Some(&reg), &ScanOptions::default()).unwrap();
    let names: Vec<(&str, u32, &str, bool, usize)> = dataset
        .subsets
        .iter()
        .map(|s| {
            (
                s.folder_name.as_str(),
                s.num_repeats,
                s.class_tokens.as_str(),
                s.is_reg,
                s.images.len(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("25_sks woman", 25, "sks woman", false, 2),
            ("3_sks", 3, "sks", false, 1),
            ("1_woman", 1, "woman", true, 2)
        ]
    );
    let first = &dataset.subsets[0].images;
    assert_eq!(first[0].caption, "sks woman, Red Hair, smiling");
    assert_eq!(first[0].size, (64, 48));
    // b.JPG has no caption: the class tokens.
    assert_eq!(first[1].caption, "sks woman");
    assert_eq!(first[1].caption_file, None);
    assert_eq!(dataset.num_train_images(), 25 * 2 + 3);
    assert_eq!(dataset.num_reg_images(), 2);

    let warnings: Vec<String> = dataset.warnings.iter().map(|w| w.to_string()).collect();
    let has = |needle: &str| warnings.iter().any(|w| w.contains(needle));
    assert!(
        has("ignore directory without repeats") && has("no_repeats"),
        "{warnings:?}"
    );
    assert!(has("0_zero"), "{warnings:?}");
    assert!(has("without images") && has("7_empty"), "{warnings:?}");
    assert!(
        has("c.Png"),
        "mixed-case extension not reported: {warnings:?}"
    );
    assert!(
        dataset.warnings.iter().any(
            |w| matches!(w, DatasetWarning::MissingCaptions { files, .. } if files.len() == 1)
        ),
        "{warnings:?}"
    );

    // kohya: tags split on ",", stripped, lower-cased, per folder (reg folders included).
    assert_eq!(
        dataset.tag_frequency_json(),
        r#"{"25_sks woman": {"sks woman": 2, "red hair": 1, "smiling": 1}, "3_sks": {"sks": 1}, "1_woman": {"woman": 2}}"#
    );
    assert_eq!(
        dataset.dataset_dirs_json(false),
        r#"{"25_sks woman": {"n_repeats": 25, "img_count": 2}, "3_sks": {"n_repeats": 3, "img_count": 1}}"#
    );
    assert_eq!(
        dataset.dataset_dirs_json(true),
        r#"{"1_woman": {"n_repeats": 1, "img_count": 2}}"#
    );

    // 53 train entries; reg 2 images balanced up to 53 entries; batch 1 → 106 batches.
    let p = plan(
        &PlanSubset::from_dataset(&dataset),
        &PlanSettings::new((512, 512)),
    )
    .unwrap();
    assert_eq!(
        (
            p.num_train_images,
            p.num_reg_images,
            p.reg_entries,
            p.batches_per_epoch
        ),
        (53, 2, 53, 106)
    );
}

#[test]
fn caption_extension_option_and_face_crop_names() {
    let root = tempfile::tempdir().unwrap();
    let a = mkdir(&root.path().join("2_x")).to_path_buf();
    png(&a.join("p_10_20_30_40.png"), 8, 8);
    std::fs::write(a.join("p.caption"), "from the face-crop name").unwrap();
    let options = ScanOptions {
        caption_extension: "caption".into(),
        ..ScanOptions::default()
    };
    let dataset = Dataset::scan(root.path(), None, &options).unwrap();
    assert_eq!(
        dataset.subsets[0].images[0].caption,
        "from the face-crop name"
    );
}

#[test]
fn broken_inputs_are_errors_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    let a = mkdir(&root.path().join("5_x")).to_path_buf();
    png(&a.join("good.png"), 8, 8);
    std::fs::write(a.join("bad.png"), "this is text").unwrap();
    let error = Dataset::scan(root.path(), None, &ScanOptions::default()).unwrap_err();
    assert!(
        matches!(&error, DatasetError::BadImage { path, .. } if path.ends_with("bad.png")),
        "{error}"
    );
    assert!(error.to_string().contains("bad.png"));

    std::fs::remove_file(a.join("bad.png")).unwrap();
    std::fs::write(a.join("good.txt"), "").unwrap();
    let error = Dataset::scan(root.path(), None, &ScanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("good.txt") && error.contains("empty"),
        "{error}"
    );

    std::fs::write(a.join("good.txt"), [0xff, 0xfe, 0x00]).unwrap();
    let error = Dataset::scan(root.path(), None, &ScanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("good.txt") && error.contains("UTF-8"),
        "{error}"
    );

    let empty = tempfile::tempdir().unwrap();
    mkdir(&empty.path().join("photos"));
    let error = Dataset::scan(empty.path(), None, &ScanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no training images") && error.contains("NN_name"),
        "{error}"
    );

    let error = Dataset::scan(&root.path().join("missing"), None, &ScanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("missing") && error.contains("not a folder"),
        "{error}"
    );
}

#[test]
fn the_people_fixture_is_a_kohya_folder() {
    let dataset = Dataset::scan(
        Path::new("tests/fixtures/people/reference"),
        None,
        &ScanOptions::default(),
    )
    .unwrap();
    assert_eq!(dataset.subsets.len(), 1);
    assert_eq!(dataset.subsets[0].num_repeats, 10);
    assert_eq!(dataset.num_train_images(), 50);
    assert_eq!(
        dataset.tag_frequency_json(),
        r#"{"10_jolie": {"jolie": 5}}"#
    );
}
