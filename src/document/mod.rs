//! The editable document: plain serde data (no burn, no egui), the commands that change it and
//! one `apply` that every panel, undo/redo and the tests go through.
//!
//! The document is the *recipe* of an image — class, class map, seeds, locks, a blueprint, the
//! sampler settings — plus the current granularity sequence (structure map and codes of every
//! stage, method §1). An edit at stage k makes stages ≥ k (or > k) *stale*; the app then asks the
//! worker to rerun from there, and each finished stage comes back through [`accept_stage`].
//!
//! Depends only on [`crate::granularity`] and serde (docs/architecture.md).

mod editor;
mod project;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::granularity::{GranularitySequence, SequenceStage};
pub use crate::sampler::job::{ImageJob, Lock};
pub use crate::sampler::settings::{Linear, SamplerSettings};

pub use editor::{Editor, UndoOutcome};
pub use project::{
    AUTOSAVE_SUFFIX, HistoryEntry, PROJECT_FORMAT, PROJECT_VERSION, Project, ProjectError, Recipe, autosave_path, check_state, kept_copy_path,
    write_atomic,
};

/// What a document needs to know about the model it was made with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Human name (the model directory's name).
    pub name: String,
    /// Content hash of the weights (hex SHA-256 of the checkpoint files).
    pub hash: String,
    /// Side of the latent grid (8 → 64 positions).
    pub grid_size: usize,
    /// Number of stages, `log2(grid_size²) + 1`.
    pub num_stages: usize,
    /// Codebook size.
    pub codebook_size: usize,
    /// Class names, index = class id.
    pub class_names: Vec<String>,
    /// Side of the decoded image in pixels.
    pub image_size: usize,
}

impl ModelInfo {
    /// Number of latent positions.
    pub fn num_positions(&self) -> usize {
        self.grid_size * self.grid_size
    }
}

/// Structure borrowed from another image (method §5.4, pose-preserving swap): its structure maps
/// of stages `1..=keep_structure_upto` are forced on every run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blueprint {
    /// Where it came from (a file name or "result of run N").
    pub source: String,
    /// The reference sequence.
    pub sequence: GranularitySequence,
    /// Structure maps of stages 1..=m are kept (0 = none).
    pub keep_structure_upto: usize,
    /// Codes of stages 0..=k are kept too, when set.
    #[serde(default)]
    pub keep_content_upto: Option<usize>,
}

/// The editable state: everything undo/redo restores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Class of the whole image.
    pub class: usize,
    /// Optional class per latent position (method §10.5).
    pub class_map: Option<Vec<usize>>,
    /// Base seed.
    pub seed: u64,
    /// Per-stage seed overrides ("reroll stage k").
    pub stage_seeds: BTreeMap<usize, u64>,
    /// The current result: structure maps and codes of every stage (None before the first run).
    pub sequence: Option<GranularitySequence>,
    /// Stages from this one on do not reflect the edits yet (None = up to date).
    pub stale_from: Option<usize>,
    /// The structure map of stage `stale_from` is left over from an older result (a run stopped
    /// or superseded after finishing stage `stale_from − 1`), not an edit: the next run starts
    /// one stage earlier so that the split regenerates it, and an interrupted run resumed gives
    /// exactly the result the uninterrupted run would have.
    #[serde(default)]
    pub stale_map: bool,
    /// Locked positions.
    pub lock: Option<Lock>,
    /// Structure borrowed from a reference.
    pub blueprint: Option<Blueprint>,
    /// Sampler settings.
    pub settings: SamplerSettings,
}

impl State {
    /// A fresh document: class `class`, seed `seed`, nothing generated yet.
    pub fn new(class: usize, seed: u64) -> Self {
        Self {
            class,
            class_map: None,
            seed,
            stage_seeds: BTreeMap::new(),
            sequence: None,
            stale_from: Some(0),
            stale_map: false,
            lock: None,
            blueprint: None,
            settings: SamplerSettings::editor(),
        }
    }

    /// The seed stage `stage` uses.
    pub fn seed_of_stage(&self, stage: usize) -> u64 {
        self.stage_seeds.get(&stage).copied().unwrap_or(self.seed)
    }

    /// Is stage `stage` up to date with the edits?
    pub fn is_stale(&self, stage: usize) -> bool {
        self.stale_from.is_some_and(|s| stage >= s)
    }

    /// Is `position` locked at `stage`?
    pub fn is_locked(&self, stage: usize, position: usize) -> bool {
        self.lock
            .as_ref()
            .is_some_and(|l| stage >= l.from_stage && l.mask.get(position).copied().unwrap_or(false))
    }

    /// Stages from `from` on need a rerun. An edit before the stale region makes the map at
    /// `from` current (it is kept or edited, not left over).
    fn mark_stale(&mut self, from: usize) {
        if self.stale_from.is_none_or(|s| from < s) {
            self.stale_from = Some(from);
            self.stale_map = false;
        }
    }

    /// The structure map of stage `stage` was just edited by hand: it is current.
    fn map_edited(&mut self, stage: usize) {
        if self.stale_from == Some(stage) {
            self.stale_map = false;
        }
    }
}

/// How a fill changes a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fill {
    /// Every position of the cluster moves to the other child of its parent.
    Flip,
    /// Every position of the cluster's parent goes to child 0 (A) or 1 (B).
    Child(u32),
}

/// One edit. Panels emit these; [`apply`] performs them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Class of the whole image (clears nothing else).
    SetClass {
        /// Class id.
        class: usize,
    },
    /// Paint a class into the class map (created from the image class on first use).
    PaintClass {
        /// Latent positions.
        positions: Vec<usize>,
        /// Class id.
        class: usize,
    },
    /// Drop the class map (back to one class).
    ClearClassMap,
    /// Brush at stage ≥ 1: move positions to child A (0) or B (1) of their parent. Positions
    /// whose parent differs from `parent` are clipped (a stroke stays inside one parent), and
    /// locked positions are skipped.
    PaintStructure {
        /// Stage painted (≥ 1).
        stage: usize,
        /// Parent cluster (label at stage − 1) the stroke started in; None = no clipping.
        parent: Option<u32>,
        /// Latent positions.
        positions: Vec<usize>,
        /// 0 = child A, 1 = child B.
        child: u32,
    },
    /// Shape guidance at stage ≥ 1: inside the shape → child B, the rest of the parent → child A
    /// (the whole grid at stage 1). Locked positions are kept.
    PaintLayout {
        /// Stage (≥ 1).
        stage: usize,
        /// Parent cluster the layout is drawn in; None = every parent.
        parent: Option<u32>,
        /// Positions inside the shape.
        inside: Vec<usize>,
    },
    /// Fill a whole cluster at stage ≥ 1.
    FillCluster {
        /// Stage (≥ 1).
        stage: usize,
        /// Cluster label at that stage.
        cluster: u32,
        /// What to do.
        fill: Fill,
    },
    /// Lock or unlock positions from `from_stage` on.
    SetLock {
        /// First protected stage (a new lock takes it; an existing one keeps the smaller).
        from_stage: usize,
        /// Latent positions.
        positions: Vec<usize>,
        /// Lock (true) or unlock (false).
        locked: bool,
    },
    /// Lock every position from `stage` on.
    LockStage {
        /// First protected stage.
        stage: usize,
    },
    /// Remove all locks.
    ClearLock,
    /// Base seed (reruns everything).
    SetSeed {
        /// Seed.
        seed: u64,
    },
    /// New randomness for one stage only.
    RerollStage {
        /// Stage.
        stage: usize,
        /// Its new seed.
        seed: u64,
    },
    /// Sampler settings.
    SetSettings(SamplerSettings),
    /// Accept one of the "variations from stage k": its seed for stage k and its sequence.
    AcceptVariation {
        /// Stage the variations start at.
        stage: usize,
        /// The variation's stage seed.
        seed: u64,
        /// Its complete result.
        sequence: GranularitySequence,
    },
    /// Replace the sequence (an opened image encoded by the tokenizer).
    SetSequence {
        /// The sequence; nothing is stale afterwards.
        sequence: GranularitySequence,
    },
    /// Keep the current result's structure as a blueprint (locks nothing else).
    UseAsBlueprint {
        /// Where it came from.
        source: String,
        /// Structure kept up to this stage.
        keep_structure_upto: usize,
    },
    /// Change how much of the blueprint's structure is kept.
    SetBlueprintKeep {
        /// Stages 1..=m kept.
        keep_structure_upto: usize,
    },
    /// Drop the blueprint.
    ClearBlueprint,
    /// Restore a state from the run history.
    Restore {
        /// The state to go back to.
        state: Box<State>,
    },
}

impl Command {
    /// A short name for menus, the undo list and messages.
    pub fn label(&self) -> String {
        match self {
            Command::SetClass { class } => format!("class {class}"),
            Command::PaintClass { .. } => "class brush".into(),
            Command::ClearClassMap => "clear class map".into(),
            Command::PaintStructure { stage, .. } => format!("paint stage {stage}"),
            Command::FillCluster { stage, cluster, .. } => format!("fill cluster {cluster} of stage {stage}"),
            Command::PaintLayout { stage, .. } => format!("layout at stage {stage}"),
            Command::SetLock { locked: true, .. } => "lock".into(),
            Command::SetLock { locked: false, .. } => "unlock".into(),
            Command::LockStage { stage } => format!("lock from stage {stage}"),
            Command::ClearLock => "clear locks".into(),
            Command::SetSeed { seed } => format!("seed {seed}"),
            Command::RerollStage { stage, .. } => format!("reroll stage {stage}"),
            Command::SetSettings(_) => "settings".into(),
            Command::AcceptVariation { stage, .. } => format!("variation of stage {stage}"),
            Command::SetSequence { .. } => "open image".into(),
            Command::UseAsBlueprint { .. } => "use as blueprint".into(),
            Command::SetBlueprintKeep { keep_structure_upto } => format!("keep structure to stage {keep_structure_upto}"),
            Command::ClearBlueprint => "clear blueprint".into(),
            Command::Restore { .. } => "restore from history".into(),
        }
    }
}

/// What an applied command changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// The document changed (so an undo point is worth keeping).
    pub changed: bool,
    /// A note for the status bar (e.g. why a stroke was clipped).
    pub note: Option<String>,
}

/// Why a command was refused. The document is unchanged when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// A value does not fit the model.
    #[error("{0}")]
    OutOfRange(String),
    /// The command needs a generated sequence first.
    #[error("nothing generated yet: run the model first")]
    NoSequence,
    /// The sequence does not fit the model or breaks the hierarchy.
    #[error("{0}")]
    Invalid(String),
}

fn check_positions(positions: &[usize], l: usize) -> Result<(), EditError> {
    match positions.iter().find(|&&p| p >= l) {
        Some(p) => Err(EditError::OutOfRange(format!("position {p} is outside the {l}-position grid"))),
        None => Ok(()),
    }
}

fn check_stage(stage: usize, model: &ModelInfo, first: usize) -> Result<(), EditError> {
    if stage < first || stage >= model.num_stages {
        return Err(EditError::OutOfRange(format!(
            "stage {stage} is out of range ({first}..{} for this model)",
            model.num_stages - 1
        )));
    }
    Ok(())
}

fn check_class(class: usize, model: &ModelInfo) -> Result<(), EditError> {
    if class >= model.class_names.len() {
        return Err(EditError::OutOfRange(format!(
            "class {class} is out of range (the model has {} classes)",
            model.class_names.len()
        )));
    }
    Ok(())
}

/// Checks that a sequence fits the model (grid, stage count, codebook) and the hierarchy.
pub fn check_sequence(seq: &GranularitySequence, model: &ModelInfo) -> Result<(), EditError> {
    if seq.grid_size != model.grid_size || seq.stages.len() != model.num_stages {
        return Err(EditError::Invalid(format!(
            "the sequence is for a {0}×{0} grid with {1} stages; the model uses {2}×{2} with {3}",
            seq.grid_size,
            seq.stages.len(),
            model.grid_size,
            model.num_stages
        )));
    }
    if let Some(cb) = seq.codebook_size.filter(|&c| c != model.codebook_size) {
        return Err(EditError::Invalid(format!("the sequence uses a codebook of {cb}; the model has {}", model.codebook_size)));
    }
    seq.validate().map_err(|e| EditError::Invalid(e.to_string()))?;
    seq.check_codes(model.codebook_size).map_err(|e| EditError::Invalid(e.to_string()))
}

/// Applies one command. On error the state is unchanged.
pub fn apply(state: &mut State, model: &ModelInfo, cmd: &Command) -> Result<Effect, EditError> {
    let l = model.num_positions();
    let changed = |note: Option<String>| Ok(Effect { changed: true, note });
    match cmd {
        Command::SetClass { class } => {
            check_class(*class, model)?;
            if state.class == *class && state.class_map.is_none() {
                return Ok(Effect::default());
            }
            state.class = *class;
            state.class_map = None;
            state.mark_stale(0);
            changed(None)
        }
        Command::PaintClass { positions, class } => {
            check_class(*class, model)?;
            check_positions(positions, l)?;
            let base = state.class;
            // A stroke that changes no position leaves the document as it was (no map is
            // created for it: that would be a change without an undo point).
            let current = |p: usize| state.class_map.as_ref().map_or(base, |m| m[p]);
            if positions.iter().all(|&p| current(p) == *class) {
                return Ok(Effect::default());
            }
            let map = state.class_map.get_or_insert_with(|| vec![base; l]);
            for &p in positions {
                map[p] = *class;
            }
            state.mark_stale(0);
            changed(None)
        }
        Command::ClearClassMap => {
            if state.class_map.take().is_none() {
                return Ok(Effect::default());
            }
            state.mark_stale(0);
            changed(None)
        }
        Command::PaintStructure { stage, parent, positions, child } => {
            check_stage(*stage, model, 1)?;
            check_positions(positions, l)?;
            if *child > 1 {
                return Err(EditError::OutOfRange(format!("child {child} must be 0 (A) or 1 (B)")));
            }
            let stage = *stage;
            let locked: Vec<bool> = (0..l).map(|p| state.is_locked(stage, p)).collect();
            let seq = state.sequence.as_mut().ok_or(EditError::NoSequence)?;
            let (before, rest) = seq.stages.split_at_mut(stage);
            let parents = &before[stage - 1].structure;
            let map = &mut rest[0].structure;
            let (mut clipped, mut skipped_locked, mut moved) = (0usize, 0usize, 0usize);
            for &p in positions {
                if parent.is_some_and(|q| parents[p] != q) {
                    clipped += 1;
                    continue;
                }
                if locked[p] {
                    skipped_locked += 1;
                    continue;
                }
                let label = parents[p] * 2 + child;
                if map[p] != label {
                    map[p] = label;
                    moved += 1;
                }
            }
            let mut notes = vec![];
            if clipped > 0 {
                notes.push(format!(
                    "stroke clipped to parent cluster {} of stage {}: a structure map only splits each parent in two",
                    parent.unwrap_or(0),
                    stage - 1
                ));
            }
            if skipped_locked > 0 {
                notes.push(format!("{skipped_locked} locked position(s) kept"));
            }
            let note = (!notes.is_empty()).then(|| notes.join("; "));
            if moved == 0 {
                return Ok(Effect { changed: false, note });
            }
            renest_below(seq, stage);
            if let Some(bp) = state.blueprint.as_mut() {
                // Blueprint maps of later stages may no longer nest inside the painted one.
                bp.keep_structure_upto = bp.keep_structure_upto.min(stage);
            }
            // The painted stage's codes are regenerated too (its clusters changed).
            state.mark_stale(stage);
            state.map_edited(stage);
            changed(note)
        }
        Command::PaintLayout { stage, parent, inside } => {
            check_stage(*stage, model, 1)?;
            check_positions(inside, l)?;
            let seq = state.sequence.as_ref().ok_or(EditError::NoSequence)?;
            let parents = &seq.stages[*stage - 1].structure;
            let mut is_in = vec![false; l];
            for &p in inside {
                is_in[p] = true;
            }
            let in_parent = |p: usize| parent.is_none_or(|q| parents[p] == q);
            let (b, a): (Vec<usize>, Vec<usize>) = (0..l).filter(|&p| in_parent(p)).partition(|&p| is_in[p]);
            let before = state.clone();
            let e1 = apply(state, model, &Command::PaintStructure { stage: *stage, parent: *parent, positions: b, child: 1 })?;
            let e2 = match apply(state, model, &Command::PaintStructure { stage: *stage, parent: *parent, positions: a, child: 0 }) {
                Ok(e) => e,
                Err(e) => {
                    *state = before;
                    return Err(e);
                }
            };
            Ok(Effect { changed: e1.changed || e2.changed, note: e1.note.or(e2.note) })
        }
        Command::FillCluster { stage, cluster, fill } => {
            check_stage(*stage, model, 1)?;
            let seq = state.sequence.as_ref().ok_or(EditError::NoSequence)?;
            let map = &seq.stages[*stage].structure;
            let parents = &seq.stages[*stage - 1].structure;
            let (positions, child, parent): (Vec<usize>, u32, u32) = match fill {
                Fill::Flip => {
                    let ps: Vec<usize> = (0..l).filter(|&p| map[p] == *cluster).collect();
                    (ps, (cluster & 1) ^ 1, cluster >> 1)
                }
                Fill::Child(c) => {
                    let parent = cluster >> 1;
                    ((0..l).filter(|&p| parents[p] == parent).collect(), *c, parent)
                }
            };
            if positions.is_empty() {
                return Err(EditError::OutOfRange(format!("cluster {cluster} of stage {stage} is empty")));
            }
            apply(state, model, &Command::PaintStructure { stage: *stage, parent: Some(parent), positions, child })
        }
        Command::SetLock { from_stage, positions, locked } => {
            check_stage(*from_stage, model, 0)?;
            check_positions(positions, l)?;
            if !locked && state.lock.is_none() {
                return Ok(Effect::default());
            }
            let lock = state.lock.get_or_insert_with(|| Lock { from_stage: *from_stage, mask: vec![false; l] });
            let mut any = false;
            for &p in positions {
                any |= lock.mask[p] != *locked;
                lock.mask[p] = *locked;
            }
            if *locked && *from_stage < lock.from_stage {
                lock.from_stage = *from_stage;
                any = true;
            }
            if !lock.mask.iter().any(|&m| m) {
                state.lock = None;
            }
            // A lock changes no result by itself: it protects the next rerun.
            Ok(Effect { changed: any, note: None })
        }
        Command::LockStage { stage } => {
            check_stage(*stage, model, 0)?;
            let new = Lock { from_stage: *stage, mask: vec![true; l] };
            if state.lock.as_ref() == Some(&new) {
                return Ok(Effect::default());
            }
            state.lock = Some(new);
            changed(None)
        }
        Command::ClearLock => {
            let had = state.lock.take().is_some();
            Ok(Effect { changed: had, note: None })
        }
        Command::SetSeed { seed } => {
            if state.seed == *seed && state.stage_seeds.is_empty() {
                return Ok(Effect::default());
            }
            state.seed = *seed;
            state.stage_seeds.clear();
            state.mark_stale(0);
            changed(None)
        }
        Command::RerollStage { stage, seed } => {
            check_stage(*stage, model, 0)?;
            state.stage_seeds.insert(*stage, *seed);
            // Stage k's randomness is its content and the structure of stage k + 1.
            state.mark_stale(*stage);
            changed(None)
        }
        Command::SetSettings(s) => {
            if s.flow_steps == 0 || !(s.temperature > 0.0) {
                return Err(EditError::OutOfRange("flow steps and temperature must be positive".into()));
            }
            if state.settings == *s {
                return Ok(Effect::default());
            }
            state.settings = s.clone();
            state.mark_stale(0);
            changed(None)
        }
        Command::AcceptVariation { stage, seed, sequence } => {
            check_stage(*stage, model, 0)?;
            check_sequence(sequence, model)?;
            state.stage_seeds.insert(*stage, *seed);
            state.sequence = Some(sequence.clone());
            state.stale_from = None;
            state.stale_map = false;
            changed(None)
        }
        Command::SetSequence { sequence } => {
            check_sequence(sequence, model)?;
            state.sequence = Some(sequence.clone());
            state.stale_from = None;
            state.stale_map = false;
            state.lock = None;
            changed(None)
        }
        Command::UseAsBlueprint { source, keep_structure_upto } => {
            let seq = state.sequence.as_ref().ok_or(EditError::NoSequence)?;
            if let Some(f) = state.stale_from {
                return Err(EditError::Invalid(format!(
                    "stages from {f} are not up to date yet: let the run finish, then use the result as blueprint"
                )));
            }
            check_stage((*keep_structure_upto).max(1), model, 1)?;
            state.blueprint = Some(Blueprint {
                source: source.clone(),
                sequence: seq.clone(),
                keep_structure_upto: *keep_structure_upto,
                keep_content_upto: None,
            });
            // Nothing to rerun: the current result already has this structure.
            changed(None)
        }
        Command::SetBlueprintKeep { keep_structure_upto } => {
            let bp = state.blueprint.as_mut().ok_or_else(|| EditError::Invalid("no blueprint: use a result as blueprint first".into()))?;
            if *keep_structure_upto >= model.num_stages {
                return Err(EditError::OutOfRange(format!(
                    "keep structure up to stage {keep_structure_upto}: the model has stages 0..{}",
                    model.num_stages - 1
                )));
            }
            if bp.keep_structure_upto == *keep_structure_upto {
                return Ok(Effect::default());
            }
            bp.keep_structure_upto = *keep_structure_upto;
            state.mark_stale(0);
            changed(None)
        }
        Command::ClearBlueprint => {
            if state.blueprint.take().is_none() {
                return Ok(Effect::default());
            }
            state.mark_stale(0);
            changed(None)
        }
        Command::Restore { state: s } => {
            project::check_state(s, model).map_err(EditError::Invalid)?;
            if **s == *state {
                return Ok(Effect::default());
            }
            *state = (**s).clone();
            changed(None)
        }
    }
}

/// Keeps stages after `stage` nested inside it after an edit: each position keeps its child bit
/// (which half of its parent it was in) under its new parent. Those stages are stale and will be
/// regenerated; this only keeps the sequence a valid hierarchy meanwhile (and is what a lock
/// keeps, method §10.4).
fn renest_below(seq: &mut GranularitySequence, stage: usize) {
    for s in stage + 1..seq.stages.len() {
        let (before, rest) = seq.stages.split_at_mut(s);
        let parents = &before[s - 1].structure;
        let st = &mut rest[0];
        // Codes are indexed by label: each new cluster takes the code of the old cluster of its
        // first position, so a cluster that only got a new label keeps its code (locks look
        // codes up this way). Labels no position has keep their old entry (never used).
        let old_codes = st.codes.clone();
        let mut taken = vec![false; old_codes.len()];
        for (label, &parent) in st.structure.iter_mut().zip(parents) {
            let old = *label as usize;
            *label = parent * 2 + (*label & 1);
            let new = *label as usize;
            if new < st.codes.len() && !taken[new] {
                taken[new] = true;
                st.codes[new] = old_codes.get(old).copied().unwrap_or(st.codes[new]);
            }
        }
    }
}

/// Takes one finished stage of a run into the document (not an undo point): stage `stage`'s
/// structure map and codes replace the stale ones; stages after it stay stale.
pub fn accept_stage(state: &mut State, model: &ModelInfo, stage: usize, structure: &[u32], codes: &[u32]) -> Result<(), EditError> {
    check_stage(stage, model, 0)?;
    let l = model.num_positions();
    if structure.len() != l || codes.len() != 1 << stage {
        return Err(EditError::Invalid(format!("stage {stage} result has {} labels and {} codes", structure.len(), codes.len())));
    }
    let seq = state.sequence.get_or_insert_with(|| blank_sequence(model));
    seq.stages[stage] = SequenceStage { structure: structure.to_vec(), codes: codes.to_vec() };
    // The stages below still hold the older result: keep them a valid hierarchy under the new
    // stage (for display and edits), and let the next run regenerate the next map.
    renest_below(seq, stage);
    state.stale_from = (stage + 1 < model.num_stages).then_some(stage + 1);
    state.stale_map = state.stale_from.is_some();
    Ok(())
}

/// A placeholder sequence (every position in cluster 0, code 0) that runs fill stage by stage.
pub fn blank_sequence(model: &ModelInfo) -> GranularitySequence {
    let l = model.num_positions();
    let stages = (0..model.num_stages)
        .map(|s| SequenceStage { structure: vec![0; l], codes: vec![0; 1 << s] })
        .collect();
    GranularitySequence::new(model.grid_size, Some(model.codebook_size), stages)
}

/// What the worker needs to run the document from `from_stage`: a plain description the worker
/// turns into a sampler job.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    /// The sampler's job: its `resume_from` is the first stage generated (stages before it, and
    /// the structure of that stage, are kept from `previous`).
    pub job: ImageJob,
    /// Sampler settings.
    pub settings: SamplerSettings,
}

impl RunSpec {
    /// First stage generated.
    pub fn from_stage(&self) -> usize {
        self.job.resume_from
    }
}

/// The run that brings the document up to date (None when nothing is stale).
pub fn run_spec(state: &State) -> Option<RunSpec> {
    let from = state.stale_from?;
    // A left-over map at `from` is regenerated by rerunning the stage before it.
    Some(run_spec_from(state, if state.stale_map { from.saturating_sub(1) } else { from }))
}

/// A run of the document from `from_stage` (a full rerun when there is no sequence yet).
pub fn run_spec_from(state: &State, from_stage: usize) -> RunSpec {
    let from = if state.sequence.is_some() { from_stage } else { 0 };
    // With no sequence yet `from` is 0: a run from scratch.
    let mut job = ImageJob {
        class: state.class,
        class_map: state.class_map.clone(),
        seed: state.seed,
        stage_seeds: state.stage_seeds.clone(),
        lock: state.lock.clone(),
        previous: state.sequence.clone(),
        resume_from: from,
        ..ImageJob::default()
    };
    if let Some(bp) = &state.blueprint {
        job.keep_from(&bp.sequence, bp.keep_structure_upto, bp.keep_content_upto.map(|k| 0..=k), from);
    }
    RunSpec { job, settings: state.settings.clone() }
}

#[cfg(test)]
mod tests;
