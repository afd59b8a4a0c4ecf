//! `prepare` on real photos: face-centred 512 crops with caption stubs, and the QA list (no face, several
//! faces, too small, near-duplicates); existing outputs are not overwritten without `force`.

use std::path::{Path, PathBuf};

use loraeval::train::prepare::{
    prepare_photos, PrepareError, PrepareOptions, PrepareReport, QaFlag,
};

fn options(force: bool) -> PrepareOptions {
    PrepareOptions {
        size: 512,
        trigger: "jolie".into(),
        force,
        upsample: 0,
    }
}

fn photo<'a>(report: &'a PrepareReport, name: &str) -> &'a loraeval::train::prepare::PreparedPhoto {
    report
        .photos
        .iter()
        .find(|p| p.source.ends_with(name))
        .unwrap_or_else(|| panic!("{name} not in the report"))
}

#[test]
fn crops_captions_and_qa_on_real_photos() {
    let raw = tempfile::tempdir().unwrap();
    let fixtures = Path::new("tests/fixtures");
    for name in [
        "people/reference/10_jolie/jolie_img1.png",
        "people/heldout/jolie_img7.png",
    ] {
        let from = fixtures.join(name);
        std::fs::copy(&from, raw.path().join(from.file_name().unwrap())).unwrap();
    }
    // The same photo under another name (listed after the original): a near-duplicate.
    std::fs::copy(
        fixtures.join("people/reference/10_jolie/jolie_img1.png"),
        raw.path().join("zz_copy_of_img1.png"),
    )
    .unwrap();
    let inputs: Vec<PathBuf> = vec![
        raw.path().to_path_buf(),
        fixtures.join("faces/2008_002506.png"),
        fixtures.join("faces/dogs.jpg"),
    ];
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("image/25_jolie");
    let report = prepare_photos(&inputs, &target, &options(false)).unwrap();

    let img7 = photo(&report, "jolie_img7.png");
    assert!(img7.flags.is_empty(), "{:?}", img7.flags);
    let crop = image::open(img7.output.as_ref().unwrap()).unwrap();
    assert_eq!((crop.width(), crop.height()), (512, 512));
    assert_eq!(
        std::fs::read_to_string(img7.caption.as_ref().unwrap()).unwrap(),
        "jolie\n"
    );

    let copy = photo(&report, "jolie_img1.png");
    assert!(copy.flags.is_empty(), "{:?}", copy.flags);
    let dup = photo(&report, "zz_copy_of_img1.png");
    assert!(
        dup.flags.iter().any(
            |f| matches!(f, QaFlag::NearDuplicate { of, .. } if of.ends_with("jolie_img1.png"))
        ),
        "{:?}",
        dup.flags
    );

    let group = photo(&report, "2008_002506.png");
    assert!(
        group
            .flags
            .iter()
            .any(|f| matches!(f, QaFlag::SeveralFaces { count } if *count >= 2)),
        "{:?}",
        group.flags
    );
    // Its largest face is about 100 px: a 220 px square, upscaled 2.3x to 512.
    assert!(
        group
            .flags
            .iter()
            .any(|f| matches!(f, QaFlag::TooSmall { .. })),
        "{:?}",
        group.flags
    );

    let dogs = photo(&report, "dogs.jpg");
    assert_eq!(dogs.flags, [QaFlag::NoFace]);
    assert!(dogs.output.is_none());
    assert!(!target.join("dogs.png").exists());

    let qa: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join("prepare-qa.json")).unwrap()).unwrap();
    assert_eq!(qa["photos"].as_array().unwrap().len(), 5);
    assert!(qa.to_string().contains("\"flag\":\"no_face\""));

    // The folder is a kohya folder loraeval train reads.
    let dataset = loraeval::train::dataset::Dataset::scan(
        &out.path().join("image"),
        None,
        &loraeval::train::dataset::ScanOptions::default(),
    )
    .unwrap();
    assert_eq!(dataset.num_train_images(), 25 * 4);

    // Nothing is overwritten without force.
    let error = prepare_photos(&inputs, &target, &options(false)).unwrap_err();
    assert!(matches!(error, PrepareError::Exists { .. }), "{error}");
    assert!(error.to_string().contains("jolie_img7.png"), "{error}");
}
