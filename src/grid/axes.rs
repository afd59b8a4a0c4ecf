//! Axis types of the X/Y/Z plot, their `--x <type>:<values>` syntax, labels, and how each value changes a cell's
//! settings (Prompt S/R exactly as A1111's `apply_prompt`).

use super::epochs::{EpochFile, LoraRun};
use super::lora_tag::{set_lora_tag, LoraTarget};
use super::plan::Settings;
use super::values::{float_label, parse_float_values, parse_int_values, split_csv, ValueError};
use super::GridError;
use crate::sampling::rng::RngSource;
use crate::sampling::samplers::SamplerName;

/// What an axis varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AxisKind {
    /// The epoch files of one training run, through the LoRA tag's name.
    Epochs,
    /// The LoRA tag's weight (a bare number list means this axis).
    LoraWeight,
    /// A1111 Prompt S/R: the first value is the search term.
    PromptSr,
    Seed,
    Steps,
    Cfg,
    Sampler,
    ClipSkip,
    Width,
    Height,
    /// A1111's "RNG source": GPU, CPU, NV.
    Rng,
    /// Entries of a prompt set (prompt and negative), from a YAML file.
    Prompt,
}

impl AxisKind {
    /// Every kind a user can write on the command line.
    pub const WRITABLE: [AxisKind; 11] = [
        AxisKind::Epochs,
        AxisKind::LoraWeight,
        AxisKind::PromptSr,
        AxisKind::Seed,
        AxisKind::Steps,
        AxisKind::Cfg,
        AxisKind::Sampler,
        AxisKind::ClipSkip,
        AxisKind::Width,
        AxisKind::Height,
        AxisKind::Rng,
    ];

    /// The name used in `--x <name>:…`, specs and `grid.json`.
    pub fn id(self) -> &'static str {
        match self {
            AxisKind::Epochs => "epochs",
            AxisKind::LoraWeight => "weight",
            AxisKind::PromptSr => "prompt-sr",
            AxisKind::Seed => "seed",
            AxisKind::Steps => "steps",
            AxisKind::Cfg => "cfg",
            AxisKind::Sampler => "sampler",
            AxisKind::ClipSkip => "clip-skip",
            AxisKind::Width => "width",
            AxisKind::Height => "height",
            AxisKind::Rng => "rng",
            AxisKind::Prompt => "prompt",
        }
    }

    /// A1111's axis label (the grid infotext's `X Type`; also the label prefix of `format_value_add_label`).
    pub fn a1111_label(self) -> &'static str {
        match self {
            AxisKind::Epochs => "Epoch",
            AxisKind::LoraWeight => "LoRA weight",
            AxisKind::PromptSr => "Prompt S/R",
            AxisKind::Seed => "Seed",
            AxisKind::Steps => "Steps",
            AxisKind::Cfg => "CFG Scale",
            AxisKind::Sampler => "Sampler",
            AxisKind::ClipSkip => "Clip skip",
            AxisKind::Width => "Width",
            AxisKind::Height => "Height",
            AxisKind::Rng => "RNG source",
            AxisKind::Prompt => "Prompt",
        }
    }

    /// Parses a type name (case-insensitive; `_` and `-` alike; a few aliases).
    pub fn parse_name(name: &str) -> Option<AxisKind> {
        let wanted = name.trim().to_lowercase().replace('_', "-");
        let kind = match wanted.as_str() {
            "epochs" | "epoch" => AxisKind::Epochs,
            "weight" | "weights" | "lora-weight" | "lora-weights" => AxisKind::LoraWeight,
            "prompt-sr" | "prompt s/r" | "sr" => AxisKind::PromptSr,
            "seed" | "seeds" => AxisKind::Seed,
            "steps" => AxisKind::Steps,
            "cfg" | "cfg-scale" => AxisKind::Cfg,
            "sampler" | "samplers" => AxisKind::Sampler,
            "clip-skip" => AxisKind::ClipSkip,
            "width" => AxisKind::Width,
            "height" => AxisKind::Height,
            "rng" | "rng-source" | "rng source" => AxisKind::Rng,
            _ => return None,
        };
        Some(kind)
    }

    fn valid_names() -> String {
        Self::WRITABLE.map(AxisKind::id).join(", ")
    }
}

/// An axis as written: its kind and the raw value text (A1111's `X Values`).
#[derive(Clone, Debug, PartialEq)]
pub struct AxisSpec {
    pub kind: AxisKind,
    pub values: String,
}

impl AxisSpec {
    /// `type:values`, a bare `epochs`, or a bare number list (= LoRA weights).
    pub fn parse(text: &str) -> Result<AxisSpec, GridError> {
        if let Some(kind) = AxisKind::parse_name(text) {
            return Ok(AxisSpec {
                kind,
                values: String::new(),
            });
        }
        if let Some((head, values)) = text.split_once(':') {
            if let Some(kind) = AxisKind::parse_name(head) {
                return Ok(AxisSpec {
                    kind,
                    values: values.to_string(),
                });
            }
        }
        if parse_float_values(text).is_ok_and(|v| !v.is_empty()) {
            return Ok(AxisSpec {
                kind: AxisKind::LoraWeight,
                values: text.to_string(),
            });
        }
        Err(GridError::BadAxis {
            axis: text.to_string(),
            reason: format!(
                "write <type>:<values> with type one of {}, `epochs`, or a list of LoRA weights such as 0.4,0.6,0.8,1.0",
                AxisKind::valid_names()
            ),
        })
    }
}

/// One value of an axis, ready to apply.
#[derive(Clone, Debug, PartialEq)]
pub enum AxisValue {
    Epoch(EpochFile),
    LoraWeight(f64),
    /// A Prompt S/R replacement (the axis' first value is the search term).
    Replace(String),
    Seed(u64),
    Steps(usize),
    Cfg(f64),
    Sampler(SamplerName),
    ClipSkip(usize),
    Width(usize),
    Height(usize),
    Rng(RngSource),
    Prompt(PromptEntry),
}

/// One entry of a prompt set.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptEntry {
    pub name: String,
    pub prompt: String,
    #[serde(default)]
    pub negative: String,
}

/// A resolved axis: kind, raw text, values and their A1111 labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub kind: AxisKind,
    pub raw: String,
    pub values: Vec<AxisValue>,
    pub labels: Vec<String>,
}

impl Axis {
    /// Parses the values of `spec`; `run` is needed by the epochs axis.
    pub fn resolve(spec: &AxisSpec, run: Option<&LoraRun>) -> Result<Axis, GridError> {
        let values = parse_values(spec, run)?;
        if values.is_empty() {
            return Err(GridError::BadAxis {
                axis: spec.kind.id().to_string(),
                reason: format!("no values in {:?}", spec.values),
            });
        }
        let labels = values.iter().map(|v| label(spec, v)).collect();
        Ok(Axis {
            kind: spec.kind,
            raw: spec.values.clone(),
            values,
            labels,
        })
    }

    /// An axis over the entries of a prompt set (labels are the entry names).
    pub fn prompts(entries: Vec<PromptEntry>, raw: &str) -> Axis {
        Axis {
            kind: AxisKind::Prompt,
            raw: raw.to_string(),
            labels: entries.iter().map(|e| e.name.clone()).collect(),
            values: entries.into_iter().map(AxisValue::Prompt).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value as JSON for `grid.json` (numbers stay numbers; epochs give their epoch number or file stem).
    pub fn json_value(&self, index: usize) -> serde_json::Value {
        use serde_json::json;
        match &self.values[index] {
            AxisValue::Epoch(file) => file.epoch.map_or_else(|| json!(file.stem), |e| json!(e)),
            AxisValue::LoraWeight(w) | AxisValue::Cfg(w) => json!(w),
            AxisValue::Replace(text) => json!(text),
            AxisValue::Seed(s) => json!(s),
            AxisValue::Steps(n)
            | AxisValue::ClipSkip(n)
            | AxisValue::Width(n)
            | AxisValue::Height(n) => json!(n),
            AxisValue::Sampler(s) => json!(s.name()),
            AxisValue::Rng(source) => json!(source.name()),
            AxisValue::Prompt(entry) => json!(entry.name),
        }
    }
}

fn value_error(kind: AxisKind) -> impl Fn(ValueError) -> GridError {
    move |e| GridError::BadValue {
        axis: kind.a1111_label().to_string(),
        value: e.value,
        reason: e.reason,
    }
}

fn bad_value(kind: AxisKind, value: impl ToString, reason: impl Into<String>) -> GridError {
    GridError::BadValue {
        axis: kind.a1111_label().to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_values(spec: &AxisSpec, run: Option<&LoraRun>) -> Result<Vec<AxisValue>, GridError> {
    let kind = spec.kind;
    let ints = || parse_int_values(&spec.values).map_err(value_error(kind));
    let floats = || parse_float_values(&spec.values).map_err(value_error(kind));
    let positive =
        |v: i64| usize::try_from(v).map_err(|_| bad_value(kind, v, "must not be negative"));
    Ok(match kind {
        AxisKind::Epochs => epoch_values(spec, run)?,
        AxisKind::LoraWeight => floats()?.into_iter().map(AxisValue::LoraWeight).collect(),
        AxisKind::Cfg => floats()?.into_iter().map(AxisValue::Cfg).collect(),
        AxisKind::PromptSr => split_csv(&spec.values)
            .into_iter()
            .map(AxisValue::Replace)
            .collect(),
        AxisKind::Sampler => sampler_values(&spec.values)?,
        AxisKind::Rng => rng_values(&spec.values)?,
        AxisKind::Seed => seed_values(ints()?)?,
        AxisKind::Steps => map_ints(ints()?, positive, AxisValue::Steps)?,
        AxisKind::ClipSkip => map_ints(ints()?, positive, AxisValue::ClipSkip)?,
        AxisKind::Width => map_ints(ints()?, positive, AxisValue::Width)?,
        AxisKind::Height => map_ints(ints()?, positive, AxisValue::Height)?,
        AxisKind::Prompt => {
            return Err(GridError::BadAxis {
                axis: "prompt".into(),
                reason: "prompt axes come from a prompt set file (--prompts)".into(),
            })
        }
    })
}

fn map_ints(
    values: Vec<i64>,
    convert: impl Fn(i64) -> Result<usize, GridError>,
    wrap: fn(usize) -> AxisValue,
) -> Result<Vec<AxisValue>, GridError> {
    values.into_iter().map(|v| convert(v).map(wrap)).collect()
}

fn seed_values(values: Vec<i64>) -> Result<Vec<AxisValue>, GridError> {
    values
        .into_iter()
        .map(|v| {
            u64::try_from(v).map(AxisValue::Seed).map_err(|_| {
                bad_value(
                    AxisKind::Seed,
                    v,
                    "random seeds (-1) are not allowed on an axis: they would make cells unrepeatable; give explicit seeds",
                )
            })
        })
        .collect()
}

fn sampler_values(text: &str) -> Result<Vec<AxisValue>, GridError> {
    split_csv(text)
        .into_iter()
        .filter(|v| !v.is_empty())
        .map(|v| {
            SamplerName::parse(&v)
                .map(AxisValue::Sampler)
                .map_err(|e| bad_value(AxisKind::Sampler, &v, e.to_string()))
        })
        .collect()
}

fn rng_values(text: &str) -> Result<Vec<AxisValue>, GridError> {
    split_csv(text)
        .into_iter()
        .filter(|v| !v.is_empty())
        .map(|v| {
            RngSource::parse(&v)
                .map(AxisValue::Rng)
                .map_err(|e| bad_value(AxisKind::Rng, &v, e.to_string()))
        })
        .collect()
}

fn epoch_values(spec: &AxisSpec, run: Option<&LoraRun>) -> Result<Vec<AxisValue>, GridError> {
    let Some(run) = run else {
        return Err(GridError::BadAxis {
            axis: "epochs".into(),
            reason: "the epochs axis needs --lora-dir with the epoch files of a training run"
                .into(),
        });
    };
    if spec.values.trim().is_empty() {
        return Ok(run.files.iter().cloned().map(AxisValue::Epoch).collect());
    }
    parse_int_values(&spec.values)
        .map_err(value_error(AxisKind::Epochs))?
        .into_iter()
        .map(|wanted| {
            run.files
                .iter()
                .find(|f| f.epoch.is_some_and(|e| i64::from(e) == wanted))
                .cloned()
                .map(AxisValue::Epoch)
                .ok_or_else(|| {
                    bad_value(
                        AxisKind::Epochs,
                        wanted,
                        format!("run {} has epochs {}", run.name, run.epoch_list()),
                    )
                })
        })
        .collect()
}

/// A1111's `format_value_add_label` (`"Seed: 42"`, `"CFG Scale: 7.0"`, `"RNG source: NV"`), bare values for Prompt S/R and Sampler
/// (`format_value`), "epoch 3 (600 steps)" for epoch files.
fn label(spec: &AxisSpec, value: &AxisValue) -> String {
    let prefixed = |text: String| format!("{}: {text}", spec.kind.a1111_label());
    match value {
        AxisValue::Epoch(file) => file.label(),
        AxisValue::LoraWeight(w) | AxisValue::Cfg(w) => prefixed(float_label(*w)),
        AxisValue::Replace(text) => text.clone(),
        AxisValue::Seed(s) => prefixed(s.to_string()),
        AxisValue::Steps(n)
        | AxisValue::ClipSkip(n)
        | AxisValue::Width(n)
        | AxisValue::Height(n) => prefixed(n.to_string()),
        AxisValue::Sampler(s) => s.display_name().to_string(),
        AxisValue::Rng(source) => prefixed(source.a1111_name().to_string()),
        AxisValue::Prompt(entry) => entry.name.clone(),
    }
}

/// Applies one axis value to a cell's settings, as A1111's `AxisOption.apply` (`axis` = all values of the axis,
/// for Prompt S/R's search term). Epochs and weights rewrite the `<lora:…>` tag of `target`.
pub fn apply(
    value: &AxisValue,
    axis: &Axis,
    settings: &mut Settings,
    target: Option<&LoraTarget>,
) -> Result<(), GridError> {
    match value {
        AxisValue::Replace(replacement) => prompt_sr(axis, replacement, settings)?,
        AxisValue::Epoch(file) => {
            let target = require_target(target, "epochs")?;
            settings.prompt = set_lora_tag(&settings.prompt, target, Some(&file.stem), None);
        }
        AxisValue::LoraWeight(weight) => {
            let target = require_target(target, "LoRA weight")?;
            settings.prompt = set_lora_tag(&settings.prompt, target, None, Some(*weight));
        }
        AxisValue::Seed(seed) => settings.seed = *seed,
        AxisValue::Steps(steps) => settings.steps = *steps,
        AxisValue::Cfg(cfg) => settings.cfg = *cfg,
        AxisValue::Sampler(sampler) => settings.sampler = *sampler,
        AxisValue::ClipSkip(clip_skip) => settings.clip_skip = *clip_skip,
        AxisValue::Width(width) => settings.width = *width,
        AxisValue::Height(height) => settings.height = *height,
        AxisValue::Rng(source) => settings.rng = *source,
        AxisValue::Prompt(entry) => {
            settings.prompt = entry.prompt.clone();
            settings.negative = entry.negative.clone();
        }
    }
    Ok(())
}

fn require_target<'a>(
    target: Option<&'a LoraTarget>,
    axis: &str,
) -> Result<&'a LoraTarget, GridError> {
    target.ok_or_else(|| GridError::LoraTarget {
        reason: format!(
            "the {axis} axis needs a LoRA: give --lora-dir, --lora-name, or a <lora:NAME:W> tag in the prompt"
        ),
    })
}

/// A1111 `apply_prompt`: the axis' first value must occur in the prompt or the negative prompt; every occurrence
/// in both is replaced (plain substring replacement).
fn prompt_sr(axis: &Axis, replacement: &str, settings: &mut Settings) -> Result<(), GridError> {
    let term = match axis.values.first() {
        Some(AxisValue::Replace(term)) => term.as_str(),
        _ => "",
    };
    if !settings.prompt.contains(term) && !settings.negative.contains(term) {
        return Err(GridError::SearchTermMissing {
            term: term.to_string(),
            prompt: settings.prompt.clone(),
            negative: settings.negative.clone(),
        });
    }
    settings.prompt = settings.prompt.replace(term, replacement);
    settings.negative = settings.negative.replace(term, replacement);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(prompt: &str, negative: &str) -> Settings {
        Settings {
            prompt: prompt.into(),
            negative: negative.into(),
            seed: 1,
            steps: 20,
            cfg: 7.0,
            sampler: SamplerName::Euler,
            width: 512,
            height: 512,
            clip_skip: 1,
            rng: RngSource::Gpu,
            ensd: 0,
        }
    }

    fn axis(text: &str) -> Axis {
        Axis::resolve(&AxisSpec::parse(text).unwrap(), None).unwrap()
    }

    #[test]
    fn parses_typed_bare_and_weight_axes() {
        assert_eq!(AxisSpec::parse("epochs").unwrap().kind, AxisKind::Epochs);
        let weights = AxisSpec::parse("0.4,0.6,0.8,1.0").unwrap();
        assert_eq!(weights.kind, AxisKind::LoraWeight);
        assert_eq!(axis("0.4,0.6,0.8,1.0").labels[0], "LoRA weight: 0.4");
        let steps = axis("steps:10-30 (+10)");
        assert_eq!(
            steps.values,
            vec![
                AxisValue::Steps(10),
                AxisValue::Steps(20),
                AxisValue::Steps(30)
            ]
        );
        assert_eq!(steps.labels, vec!["Steps: 10", "Steps: 20", "Steps: 30"]);
        assert_eq!(
            axis("cfg:5,7").labels,
            vec!["CFG Scale: 5.0", "CFG Scale: 7.0"]
        );
        assert_eq!(
            axis("sampler:Euler a,dpmpp_2m_karras").labels,
            vec!["Euler a", "DPM++ 2M Karras"]
        );
        let sr = axis(r#"prompt-sr:smiling,"laughing, eyes closed""#);
        assert_eq!(sr.labels, vec!["smiling", "laughing, eyes closed"]);
    }

    #[test]
    fn rng_axis_sets_the_source_with_a1111_labels() {
        let rng = axis("rng:GPU,cpu,Nv");
        assert_eq!(rng.kind, AxisKind::Rng);
        assert_eq!(
            rng.labels,
            vec!["RNG source: GPU", "RNG source: CPU", "RNG source: NV"]
        );
        assert_eq!(rng.json_value(2), serde_json::json!("nv"));
        let mut cell = settings("photo", "");
        apply(&rng.values[1], &rng, &mut cell, None).unwrap();
        assert_eq!(cell.rng, RngSource::Cpu);
        assert_eq!(
            AxisSpec::parse("rng-source:nv").unwrap().kind,
            AxisKind::Rng
        );
        let bad = Axis::resolve(&AxisSpec::parse("rng:cuda").unwrap(), None).unwrap_err();
        let message = bad.to_string();
        assert!(
            message.starts_with("RNG source value \"cuda\"") && message.contains("gpu, cpu, nv"),
            "{message}"
        );
    }

    #[test]
    fn bad_axes_say_what_is_wrong() {
        let unknown = AxisSpec::parse("colour:red").unwrap_err().to_string();
        assert!(unknown.contains("prompt-sr"), "{unknown}");
        let bad = Axis::resolve(&AxisSpec::parse("steps:10,abc").unwrap(), None).unwrap_err();
        assert!(bad.to_string().starts_with("Steps value \"abc\""), "{bad}");
        let sampler = Axis::resolve(&AxisSpec::parse("sampler:plms").unwrap(), None).unwrap_err();
        assert!(sampler.to_string().contains("unknown sampler"), "{sampler}");
        let seed = Axis::resolve(&AxisSpec::parse("seed:-1").unwrap(), None).unwrap_err();
        assert!(seed.to_string().contains("random seeds"), "{seed}");
        let epochs = Axis::resolve(&AxisSpec::parse("epochs").unwrap(), None).unwrap_err();
        assert!(epochs.to_string().contains("--lora-dir"), "{epochs}");
    }

    #[test]
    fn prompt_sr_replaces_every_occurrence_in_both_prompts() {
        let sr = axis("prompt-sr:red,blue");
        let mut cell = settings("red hat, red scarf", "red eyes");
        apply(&sr.values[1], &sr, &mut cell, None).unwrap();
        assert_eq!(cell.prompt, "blue hat, blue scarf");
        assert_eq!(cell.negative, "blue eyes");
        let mut first = settings("only in negative", "red");
        apply(&sr.values[0], &sr, &mut first, None).unwrap();
        assert_eq!(first.negative, "red");
    }

    #[test]
    fn prompt_sr_term_missing_is_an_error() {
        let sr = axis("prompt-sr:green,blue");
        let mut cell = settings("red hat", "ugly");
        let err = apply(&sr.values[1], &sr, &mut cell, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Prompt S/R did not find \"green\" in prompt \"red hat\" or negative prompt \"ugly\""
        );
    }

    #[test]
    fn weights_without_a_lora_need_a_target() {
        let weights = axis("0.5,1");
        let mut cell = settings("photo", "");
        assert!(apply(&weights.values[0], &weights, &mut cell, None).is_err());
        let target = LoraTarget::single("face");
        apply(&weights.values[0], &weights, &mut cell, Some(&target)).unwrap();
        assert_eq!(cell.prompt, "photo <lora:face:0.5>");
    }
}
