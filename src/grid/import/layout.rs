//! The grid a set of imported images forms, from their settings alone (the rules are in the module doc of
//! `import`): the LoRA run being judged, X = its epoch files, Y = its weights, Z = the other settings that vary,
//! seeds, the "None" images as controls; images that break a rule are left out with the reason.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use super::epochs::{EpochValue, LoraFiles};
use super::read::Format;
use super::settings::{ImageSettings, TagLora};
use super::{ImportError, SkipReason};

/// One image to place: where it came from, where its bytes are now, what it was made with.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The cell key (hash of the original file's bytes).
    pub key: String,
    /// The original file as recorded in `grid.json`.
    pub original: String,
    /// Where the bytes are read now: the original, or `cells/<key>.png` of an earlier import.
    pub path: PathBuf,
    pub format: Format,
    /// Read from a ComfyUI graph (else A1111's infotext).
    pub comfy: bool,
    /// Already in the run folder (an earlier import).
    pub stored: bool,
    pub settings: ImageSettings,
    /// A1111's infotext as read (written into the PNG a JPEG or WebP becomes).
    pub infotext: Option<String>,
}

/// An image's place in the grid (`index` into the candidates).
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub index: usize,
    pub x: usize,
    pub y: usize,
    pub z: usize,
    pub seed: usize,
    /// Cells: the key of the control of the same Z level and seed.
    pub control: Option<String>,
}

/// The grid: axes, placed cells and controls, and what was left out.
#[derive(Debug)]
pub struct Layout {
    /// The LoRA run judged (its name without kohya's suffix, or `ss_output_name`).
    pub subject: String,
    pub x: Vec<EpochValue>,
    /// (text encoder, UNet) multipliers.
    pub y: Vec<(f64, f64)>,
    /// Each Z level's settings, as (name, value).
    pub levels: Vec<Fields>,
    pub seeds: Vec<u64>,
    pub cells: Vec<Placed>,
    pub controls: Vec<Placed>,
    /// Left out: (candidate index, why).
    pub skipped: Vec<(usize, SkipReason)>,
    pub notes: Vec<String>,
}

/// A Z level's (or an image's) settings, as (name, value).
type Fields = Vec<(String, String)>;

/// Per LoRA run: its distinct (name, weights) and its number of tags.
type RunTally = BTreeMap<String, (HashSet<(String, u64, u64)>, usize)>;

/// The axes cells are placed on.
struct Grid<'g> {
    x: &'g [EpochValue],
    y: &'g [(f64, f64)],
    levels: &'g [Fields],
    fields: &'g [Fields],
    seeds: &'g [u64],
}

/// What a candidate is, once classified.
#[derive(Clone, Debug)]
enum Role {
    Cell(TagLora),
    Control,
}

/// The state of the placement: each candidate's role (None: left out).
struct Planner<'a> {
    candidates: &'a [Candidate],
    files: &'a LoraFiles,
    subject: String,
    roles: Vec<Option<Role>>,
    skipped: Vec<(usize, SkipReason)>,
    notes: Vec<String>,
}

/// Places `candidates` (earlier imports first, then by original path: the first of two images at one place
/// wins). `lora_name` names the run to judge when the images name several.
pub fn plan(
    candidates: &[Candidate],
    files: &LoraFiles,
    lora_name: Option<&str>,
) -> Result<Layout, ImportError> {
    let mut notes = Vec::new();
    let subject = choose_subject(candidates, files, lora_name, &mut notes)?;
    let mut planner = Planner {
        candidates,
        files,
        subject,
        roles: Vec::new(),
        skipped: Vec::new(),
        notes,
    };
    planner.classify();
    planner.check_fixed();
    planner.check_hashes();
    Ok(planner.place())
}

/// The run whose epochs and weights vary most among the images (ties: more images, then the name), or the one
/// `lora_name` names.
fn choose_subject(
    candidates: &[Candidate],
    files: &LoraFiles,
    lora_name: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<String, ImportError> {
    let mut runs: RunTally = BTreeMap::new();
    for lora in candidates.iter().flat_map(|c| &c.settings.loras) {
        let entry = runs.entry(files.run_of(&lora.name)).or_default();
        entry
            .0
            .insert((lora.name.clone(), lora.te.to_bits(), lora.unet.to_bits()));
        entry.1 += 1;
    }
    let listed = || {
        runs.iter()
            .map(|(name, (_, n))| format!("{name} ({n} images)"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = lora_name {
        let run = files.run_of(name);
        let known = runs.contains_key(name) || runs.contains_key(&run);
        let chosen = if runs.contains_key(name) {
            name.to_string()
        } else {
            run
        };
        return match known {
            true => Ok(chosen),
            false => Err(ImportError::NoSuchLora {
                name: name.to_string(),
                found: listed(),
            }),
        };
    }
    let best = runs
        .iter()
        .max_by(|a, b| {
            (a.1 .0.len(), a.1 .1, std::cmp::Reverse(a.0)).cmp(&(
                b.1 .0.len(),
                b.1 .1,
                std::cmp::Reverse(b.0),
            ))
        })
        .map(|(name, _)| name.clone())
        .ok_or(ImportError::NoLoraTags {
            images: candidates.len(),
            skipped: String::new(),
        })?;
    if runs.len() > 1 {
        notes.push(format!(
            "the images name {} LoRA runs: {}; judging {best}, whose epochs and weights vary most (--lora-name picks another)",
            runs.len(),
            listed()
        ));
    }
    Ok(best)
}

impl Planner<'_> {
    fn is_subject(&self, name: &str) -> bool {
        self.files.run_of(name) == self.subject
    }

    fn skip(&mut self, index: usize, reason: SkipReason) {
        self.roles[index] = None;
        self.skipped.push((index, reason));
    }

    /// One tag of the run: a cell; none: a control candidate; several: left out.
    fn classify(&mut self) {
        self.roles = vec![None; self.candidates.len()];
        for (i, candidate) in self.candidates.iter().enumerate() {
            let tags: Vec<&TagLora> = candidate
                .settings
                .loras
                .iter()
                .filter(|l| self.is_subject(&l.name))
                .collect();
            match tags.as_slice() {
                [] => self.roles[i] = Some(Role::Control),
                [tag] => self.roles[i] = Some(Role::Cell((*tag).clone())),
                many => {
                    let names = many.iter().map(|t| t.name.clone()).collect();
                    self.skip(i, SkipReason::SeveralTags(names));
                }
            }
        }
    }

    /// Base model, size and VAE: those of the earlier import, else of most LoRA images; others are left out.
    fn check_fixed(&mut self) {
        let fixed: Vec<_> = self
            .candidates
            .iter()
            .map(|c| c.settings.fixed_fields())
            .collect();
        let any_stored = self.candidates.iter().any(|c| c.stored);
        let voters = (0..self.candidates.len()).filter(|&i| match any_stored {
            true => self.candidates[i].stored && self.roles[i].is_some(),
            false => matches!(self.roles[i], Some(Role::Cell(_))),
        });
        let Some(reference) = most_common(voters.map(|i| &fixed[i])).cloned() else {
            return;
        };
        let others = reference_count(&fixed, &reference, &self.roles);
        for (i, own) in fixed.iter().enumerate() {
            if self.roles[i].is_none() || *own == reference {
                continue;
            }
            let (name, found) = own
                .iter()
                .zip(&reference)
                .find(|(a, b)| a != b)
                .map_or_else(|| own[0].clone(), |(a, _)| a.clone());
            let expected = reference
                .iter()
                .find(|(n, _)| *n == name)
                .map_or_else(|| reference[0].1.clone(), |(_, v)| v.clone());
            let reason = SkipReason::Fixed {
                field: name.to_string(),
                found,
                expected,
                others,
            };
            self.skip(i, reason);
        }
    }

    /// `Lora hashes` against the file in `--lora-dir`, else against the hash most images give for the name.
    fn check_hashes(&mut self) {
        let expected = self.expected_hashes();
        for i in 0..self.candidates.len() {
            let Some(Role::Cell(tag)) = &self.roles[i] else {
                continue;
            };
            let found = self.candidates[i].settings.lora_hash(&tag.name);
            let (Some(found), Some((want, file))) = (found, expected.get(&tag.name)) else {
                continue;
            };
            if !same_hash(found, want) {
                let reason = SkipReason::LoraHash {
                    name: tag.name.clone(),
                    found: found.to_string(),
                    expected: want.clone(),
                    file: file.clone(),
                };
                self.skip(i, reason);
            }
        }
    }

    /// Per tag name that has `Lora hashes`: the file's short hash (and the file), else the most common one.
    fn expected_hashes(&mut self) -> HashMap<String, (String, Option<PathBuf>)> {
        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        for (candidate, role) in self.candidates.iter().zip(&self.roles) {
            if let Some(Role::Cell(tag)) = role {
                if let Some(hash) = candidate.settings.lora_hash(&tag.name) {
                    let hashes = seen.entry(tag.name.clone()).or_default();
                    hashes.push(hash.to_lowercase());
                }
            }
        }
        let mut expected = HashMap::new();
        for (name, hashes) in seen {
            let file = self.files.epoch_value(&name).file;
            let from_file = file.as_ref().map(|p| self.files.short_hash(p));
            let value = match (from_file, file) {
                (Some(Ok(hash)), file) => (hash, file),
                (Some(Err(reason)), Some(path)) => {
                    self.notes.push(format!(
                        "{}: cannot hash it ({reason}); its Lora hashes are compared between images only",
                        path.display()
                    ));
                    (
                        most_common(hashes.iter()).cloned().unwrap_or_default(),
                        None,
                    )
                }
                _ => (
                    most_common(hashes.iter()).cloned().unwrap_or_default(),
                    None,
                ),
            };
            expected.insert(name, value);
        }
        expected
    }

    /// Axes, levels, seeds; cells and controls placed; duplicates left out.
    fn place(mut self) -> Layout {
        let is_subject = |name: &str| self.files.run_of(name) == self.subject;
        let fields: Vec<Fields> = self
            .candidates
            .iter()
            .map(|c| c.settings.level_fields(&is_subject))
            .collect();
        let cells: Vec<(usize, TagLora)> = self
            .roles
            .iter()
            .enumerate()
            .filter_map(|(i, role)| match role {
                Some(Role::Cell(tag)) => Some((i, tag.clone())),
                _ => None,
            })
            .collect();
        let mut levels: Vec<Fields> = Vec::new();
        for (i, _) in &cells {
            if !levels.contains(&fields[*i]) {
                levels.push(fields[*i].clone());
            }
        }
        let controls = self.match_controls(&fields, &levels);
        let x = self.epoch_values(&cells);
        let y = weights(&cells);
        let mut seeds: Vec<u64> = cells
            .iter()
            .map(|(i, _)| *i)
            .chain(controls.iter().map(|(i, _)| *i))
            .map(|i| self.candidates[i].settings.seed)
            .collect();
        seeds.sort_unstable();
        seeds.dedup();
        let placed_controls = self.place_controls(&controls, &seeds);
        let grid = Grid {
            x: &x,
            y: &y,
            levels: &levels,
            fields: &fields,
            seeds: &seeds,
        };
        let placed_cells = self.place_cells(&cells, &grid, &placed_controls);
        Layout {
            subject: self.subject.clone(),
            x,
            y,
            levels,
            seeds,
            cells: placed_cells,
            controls: placed_controls,
            skipped: self.skipped,
            notes: self.notes,
        }
    }

    /// Each cell at its (x, y, z, seed), with the control of its level and seed; a second image at a place is
    /// left out.
    fn place_cells(
        &mut self,
        cells: &[(usize, TagLora)],
        grid: &Grid,
        controls: &[Placed],
    ) -> Vec<Placed> {
        let control_keys: HashMap<(usize, usize), String> = controls
            .iter()
            .map(|p| ((p.z, p.seed), self.candidates[p.index].key.clone()))
            .collect();
        let mut taken: HashMap<(usize, usize, usize, usize), usize> = HashMap::new();
        let mut placed = Vec::new();
        for (i, tag) in cells {
            let x = grid.x.iter().position(|v| v.name == tag.name).unwrap_or(0);
            let y = grid
                .y
                .iter()
                .position(|w| same_weight(*w, (tag.te, tag.unet)))
                .unwrap_or(0);
            let z = grid
                .levels
                .iter()
                .position(|l| *l == grid.fields[*i])
                .unwrap_or(0);
            let seed = seed_index(grid.seeds, self.candidates[*i].settings.seed);
            if let Some(&first) = taken.get(&(x, y, z, seed)) {
                let of = self.candidates[first].original.clone();
                self.skipped.push((*i, SkipReason::Duplicate { of }));
                continue;
            }
            taken.insert((x, y, z, seed), *i);
            let control = control_keys.get(&(z, seed)).cloned();
            placed.push(Placed {
                index: *i,
                x,
                y,
                z,
                seed,
                control,
            });
        }
        placed
    }

    /// Control candidates whose settings are those of a Z level: (candidate, level).
    fn match_controls(&mut self, fields: &[Fields], levels: &[Fields]) -> Vec<(usize, usize)> {
        let mut matched = Vec::new();
        for (i, own) in fields.iter().enumerate() {
            if !matches!(self.roles[i], Some(Role::Control)) {
                continue;
            }
            match levels.iter().position(|l| l == own) {
                Some(z) => matched.push((i, z)),
                None => {
                    let loras: Vec<String> = self.candidates[i]
                        .settings
                        .loras
                        .iter()
                        .map(|l| l.name.clone())
                        .collect();
                    let reason = match loras.is_empty() {
                        true => SkipReason::NoMatchingLevel,
                        false => SkipReason::OtherLora {
                            names: loras,
                            subject: self.subject.clone(),
                        },
                    };
                    self.skip(i, reason);
                }
            }
        }
        matched
    }

    /// One control per (level, seed); later ones are duplicates.
    fn place_controls(&mut self, controls: &[(usize, usize)], seeds: &[u64]) -> Vec<Placed> {
        let mut taken: HashMap<(usize, usize), usize> = HashMap::new();
        let mut placed = Vec::new();
        for &(i, z) in controls {
            let seed = seed_index(seeds, self.candidates[i].settings.seed);
            if let Some(&first) = taken.get(&(z, seed)) {
                let of = self.candidates[first].original.clone();
                self.skipped.push((i, SkipReason::Duplicate { of }));
                continue;
            }
            taken.insert((z, seed), i);
            placed.push(Placed {
                index: i,
                x: 0,
                y: 0,
                z,
                seed,
                control: None,
            });
        }
        placed
    }

    /// The epoch files the cells name, in epoch order.
    fn epoch_values(&mut self, cells: &[(usize, TagLora)]) -> Vec<EpochValue> {
        let mut values: Vec<EpochValue> = Vec::new();
        for (_, tag) in cells {
            if values.iter().any(|v| v.name == tag.name) {
                continue;
            }
            let value = self.files.epoch_value(&tag.name);
            if let (Some(dir), None) = (self.files.dir(), &value.file) {
                self.notes.push(format!(
                    "{} is not in {}; its epoch comes from its name",
                    tag.name,
                    dir.display()
                ));
            }
            values.push(value);
        }
        values.sort_by_key(EpochValue::order);
        values
    }
}

/// The distinct (text encoder, UNet) weights of the cells, in order.
fn weights(cells: &[(usize, TagLora)]) -> Vec<(f64, f64)> {
    let mut y: Vec<(f64, f64)> = Vec::new();
    for (_, tag) in cells {
        if !y.iter().any(|w| same_weight(*w, (tag.te, tag.unet))) {
            y.push((tag.te, tag.unet));
        }
    }
    y.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    y
}

/// The index of `seed` in the sorted `seeds`.
fn seed_index(seeds: &[u64], seed: u64) -> usize {
    seeds.partition_point(|&s| s < seed)
}

fn same_weight(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0.to_bits() == b.0.to_bits() && a.1.to_bits() == b.1.to_bits()
}

/// A1111 writes 12 hex digits; compare case-insensitively on the shorter.
fn same_hash(a: &str, b: &str) -> bool {
    let n = a.len().min(b.len());
    n > 0 && a[..n].eq_ignore_ascii_case(&b[..n])
}

/// The most frequent item (ties: the first seen).
fn most_common<'v, T: PartialEq + 'v>(items: impl Iterator<Item = &'v T>) -> Option<&'v T> {
    let mut counts: Vec<(&T, usize)> = Vec::new();
    for item in items {
        match counts.iter_mut().find(|(v, _)| *v == item) {
            Some(entry) => entry.1 += 1,
            None => counts.push((item, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(v, _)| v)
}

/// How many placed candidates have the reference's fixed settings.
fn reference_count<T: PartialEq>(fixed: &[T], reference: &T, roles: &[Option<Role>]) -> usize {
    fixed
        .iter()
        .zip(roles)
        .filter(|(f, r)| r.is_some() && *f == reference)
        .count()
}
