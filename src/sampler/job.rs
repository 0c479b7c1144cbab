//! What one image run asks for, as plain data (no burn types): the class (or a class per
//! position), seeds, forced structure maps and codes, a lock, and the result it resumes from.
//! The document builds these and stores its lock as one; the worker passes them to the sampler
//! unconverted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::granularity::GranularitySequence;

/// A lock (§10.4): positions whose structure bits and codes are kept from `ImageJob::previous`
/// at stages `from_stage..`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// First stage the lock applies to.
    pub from_stage: usize,
    /// Locked latent positions (length L).
    pub mask: Vec<bool>,
}

/// One image to generate and the controls that steer it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageJob {
    /// Class of the whole image.
    pub class: usize,
    /// Optional class per latent position (§10.5); a cluster takes its majority class.
    pub class_map: Option<Vec<usize>>,
    /// Base seed; stage i uses `stage_seeds[i]` when present, else this.
    pub seed: u64,
    /// Per-stage seed overrides ("reroll stage k").
    pub stage_seeds: BTreeMap<usize, u64>,
    /// Structure maps imposed for chosen stages (stage ≥ 1 → N·N labels).
    pub forced_structure: BTreeMap<usize, Vec<u32>>,
    /// Codes imposed for chosen stages (stage → one code per cluster).
    pub forced_codes: BTreeMap<usize, Vec<u32>>,
    /// Lock of positions against `previous`.
    pub lock: Option<Lock>,
    /// The result that `lock` and `resume_from` refer to.
    pub previous: Option<GranularitySequence>,
    /// Keep the structure maps of stages ≤ k and the codes of stages < k from `previous`, and
    /// generate from the content of stage k on (0 = from scratch).
    pub resume_from: usize,
    /// An explicit structure noise `[L, S−1]` shared by every stage (the paper's single ε_s);
    /// by default each stage draws its own from its stream, so stages stay independent.
    pub shared_noise: Option<Vec<f32>>,
}

impl ImageJob {
    /// A plain class-conditional job.
    pub fn new(class: usize, seed: u64) -> Self {
        Self { class, seed, ..Default::default() }
    }
    pub(crate) fn stage_seed(&self, stage: usize) -> u64 {
        self.stage_seeds.get(&stage).copied().unwrap_or(self.seed)
    }
}
