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
