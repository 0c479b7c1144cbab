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
    /// Keeps parts of a `reference` result (a blueprint, a swap's source, `--structure-from`):
    /// its structure maps of stages `from + 1 ..= structure_upto` (stage 0 has none) and, with
    /// `content`, its codes of the stages in that range from `from` on together with the maps
    /// they belong to (codes are per cluster). Stages past the reference's last are ignored.
    pub fn keep_from(
        &mut self,
        reference: &GranularitySequence,
        structure_upto: usize,
        content: Option<std::ops::RangeInclusive<usize>>,
        from: usize,
    ) {
        let last = reference.stages.len().saturating_sub(1);
        let maps_upto = structure_upto.max(content.as_ref().map_or(0, |r| *r.end())).min(last);
        for s in (from + 1).max(1)..=maps_upto {
            if s <= structure_upto || content.as_ref().is_some_and(|r| s <= *r.end()) {
                self.forced_structure.insert(s, reference.stages[s].structure.clone());
            }
        }
        if let Some(r) = content {
            for s in (*r.start()).max(from)..=(*r.end()).min(last) {
                self.forced_codes.insert(s, reference.stages[s].codes.clone());
            }
        }
    }

    pub(crate) fn stage_seed(&self, stage: usize) -> u64 {
        self.stage_seeds.get(&stage).copied().unwrap_or(self.seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::granularity::SequenceStage;

    fn reference(stages: usize) -> GranularitySequence {
        let stages = (0..stages)
            .map(|s| SequenceStage { structure: vec![s as u32; 4], codes: vec![100 + s as u32; 1 << s] })
            .collect();
        GranularitySequence::new(2, None, stages)
    }

    #[test]
    fn keeping_a_reference_takes_maps_with_their_codes_and_respects_the_first_stage() {
        let r = reference(4);
        let keys = |m: &BTreeMap<usize, Vec<u32>>| m.keys().copied().collect::<Vec<_>>();
        // A swap: maps 1..=2, codes 0..=1 (their maps come along anyway).
        let mut j = ImageJob::new(0, 0);
        j.keep_from(&r, 2, Some(0..=1), 0);
        assert_eq!((keys(&j.forced_structure), keys(&j.forced_codes)), (vec![1, 2], vec![0, 1]));
        assert_eq!(j.forced_structure[&2], r.stages[2].structure);
        // Codes past the kept maps bring their maps; stages past the last are ignored.
        let mut j = ImageJob::new(0, 0);
        j.keep_from(&r, 1, Some(2..=9), 0);
        assert_eq!((keys(&j.forced_structure), keys(&j.forced_codes)), (vec![1, 2, 3], vec![2, 3]));
        // A rerun from stage 2 keeps only what it generates: maps after 2, codes from 2.
        let mut j = ImageJob::new(0, 0);
        j.keep_from(&r, 3, Some(0..=2), 2);
        assert_eq!((keys(&j.forced_structure), keys(&j.forced_codes)), (vec![3], vec![2]));
        // Structure only.
        let mut j = ImageJob::new(0, 0);
        j.keep_from(&r, 0, None, 0);
        assert!(j.forced_structure.is_empty() && j.forced_codes.is_empty());
    }
}
