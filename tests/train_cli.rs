//! `loraeval plan`, `loraeval train --dry-run` and the honest refusal of `loraeval train`, from the binary.

use std::process::{Command, Output};

fn loraeval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .args(args)
        .output()
        .unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn plan_gives_repeats_folder_and_kohya_numbers() {
    let out = loraeval(&[
        "plan",
        "--images",
        "32",
        "--epochs",
        "10",
        "--max-steps",
        "4800",
        "--name",
        "sks",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("repeats: 15 "), "{stdout}");
    assert!(stdout.contains("image/15_sks/"), "{stdout}");
    assert!(
        stdout.contains("  num train images * repeats / 学習画像の数×繰り返し回数: 480"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  total optimization steps / 学習ステップ数: 4800"),
        "{stdout}"
    );
}

#[test]
fn train_dry_run_prints_the_plan_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("train.toml");
    std::fs::write(
        &config,
        "[folders]\ntrain_data_dir = \"tests/fixtures/people/reference\"\noutput_name = \"jolie\"\n\
         [training]\nmax_train_epochs = 4\nsave_every_n_epochs = 2\ntrain_batch_size = 4\ncolor_aug = true\n",
    )
    .unwrap();
    // The flag overrides the file's batch size: 50 entries / batch 2 = 25 batches, 4 epochs = 100 steps.
    let out = loraeval(&[
        "train",
        "--config-file",
        config.to_str().unwrap(),
        "--train-batch-size",
        "2",
        "--output-dir",
        "runs/jolie",
        "--dry-run",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("num batches per epoch / 1epochのバッチ数: 25"),
        "{stdout}"
    );
    assert!(
        stdout.contains("total optimization steps / 学習ステップ数: 100"),
        "{stdout}"
    );
    assert!(
        stdout.contains("runs/jolie/jolie-000002.safetensors (epoch 2, 50 steps)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("runs/jolie/jolie.safetensors (epoch 4, 100 steps)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("color_aug = true"),
        "ignored key not reported: {stderr}"
    );
    assert!(stderr.contains("no caption file for 5 images"), "{stderr}");
}

#[test]
fn train_without_dry_run_says_the_loop_is_not_implemented() {
    let out = loraeval(&[
        "train",
        "--train-data-dir",
        "tests/fixtures/people/reference",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("training loop not implemented yet"),
        "{stderr}"
    );
    // The summary still comes first, as kohya prints it before training.
    assert!(stdout.contains("running training / 学習開始"), "{stdout}");
}

#[test]
fn config_errors_name_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("typo.toml");
    std::fs::write(&config, "train_data_dir = \"x\"\nlearning_rat = 1e-4\n").unwrap();
    let out = loraeval(&[
        "train",
        "--config-file",
        config.to_str().unwrap(),
        "--dry-run",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("typo.toml")
            && stderr.contains("`learning_rat`")
            && stderr.contains("`learning_rate`"),
        "{stderr}"
    );
}
