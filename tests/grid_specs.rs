//! The grid specs and prompt sets shipped in `grids/` and `prompts/` parse, name existing prompt sets and valid axes.

use std::path::Path;

use loraeval::grid::axes::AxisSpec;
use loraeval::grid::spec::{GridSpec, PromptSet};

#[test]
fn shipped_specs_and_prompt_sets_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut specs = 0;
    for entry in std::fs::read_dir(root.join("grids")).unwrap() {
        let path = entry.unwrap().path();
        let spec = GridSpec::read(&path).unwrap_or_else(|e| panic!("{e}"));
        for axis in [&spec.x, &spec.y, &spec.z].into_iter().flatten() {
            AxisSpec::parse(axis).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        if let Some(prompts) = &spec.prompts {
            let set = PromptSet::read(prompts).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                set.prompts.iter().all(|p| !p.negative.is_empty()),
                "{}: every prompt has a negative",
                prompts.display()
            );
        }
        specs += 1;
    }
    assert!(specs >= 3);
    let identity = PromptSet::read(&root.join("prompts/face-identity.yaml")).unwrap();
    assert_eq!(identity.prompts.len(), 4);
}

/// The README's main command: the demo spec renders a whole epochs × weights grid on the vendored tiny model.
#[test]
fn demo_spec_renders_the_whole_grid_with_no_downloads() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loraeval"))
        .current_dir(out.path())
        .arg("grid")
        .arg("--spec")
        .arg(root.join("grids/demo.yaml"))
        .arg("--out")
        .arg(out.path().join("run"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("run/grid.json")).unwrap())
            .unwrap();
    let cells = manifest["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 12);
    assert!(cells.iter().all(|cell| cell["status"] == "ok"));
    let epochs: Vec<_> = (0..3)
        .map(|x| {
            cells.iter().find(|c| c["x_index"] == x).unwrap()["params"]["loras"][0]["epoch"].clone()
        })
        .collect();
    assert_eq!(epochs, [1, 2, 3]);
    assert!(out.path().join("run/grid.png").exists());
}
