//! The README's main command end to end on the vendored tiny model: `grid --spec grids/demo.yaml` renders, scores
//! against the reference photos named in the spec, decides and writes the report; `pick` gives the same decision.

use std::process::Command;

#[test]
fn demo_grid_renders_scores_decides_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("demo");
    let output = Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .args(["grid", "--spec", "grids/demo.yaml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.lines().any(|l| l.ends_with("report.html")),
        "{stdout}"
    );
    assert!(
        stderr.contains("no pick: no cell passes every gate"),
        "{stderr}"
    );
    assert!(
        stderr.contains("epoch 1: no face found in any of its 4 images"),
        "{stderr}"
    );
    for file in [
        "grid.png",
        "grid.json",
        "run.json",
        "scores.json",
        "recommendation.json",
        "report.html",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("scores.json")).unwrap()).unwrap();
    assert_eq!(scores["cells"].as_array().unwrap().len(), 12);
    assert_eq!(scores["control"]["images"].as_array().unwrap().len(), 1);
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert!(info["command"]
        .as_str()
        .unwrap()
        .contains("grid --spec grids/demo.yaml"));

    let output = Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .arg("pick")
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("none\n"), "{stdout}");
    assert!(stdout.contains("epoch 3: no face found"), "{stdout}");
}
