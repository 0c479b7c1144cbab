//! Split: grow the structure map of stage `i` into stage `i + 1` from a per-position score.
//!
//! Follows `shared/docs/nvg-method.md` §5.3 ("Split(S_i, score) → S_{i+1}") and, for the
//! generalised form, §10.3 (unbalanced parents) and §10.4 (locks).
//!
//! Every split keeps the hierarchy: position `p` with parent label `P` gets child `2P` or
//! `2P + 1`, so `child[p] >> 1 == parent[p]`. A higher score means the odd child `2P + 1`
//! (bit 1, σ value 2, flow value +1).
//!
//! Ranking within a parent is by `q = clamp(score, −1, 1)` descending; clamping makes confident
//! positions tie, and ties (equal `q`, including `−0.0` vs `0.0`) go to the **earlier position**
//! (lower raster index), which gets the odd child first. The reference leaves ties to its top-k
//! routine; fixing them makes Split deterministic and reproducible across backends.

use super::GranularityError;
use super::hierarchy::check_labels;

/// Deepest stage that can be split: children of stage 31 use all 32 bits of a `u32` label.
const MAX_SPLIT_STAGE: usize = 31;

/// Options of [`split_general`]. The default (all `None`) is the plain split with `⌊n/2⌋` odd
/// children per parent of size `n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitOptions {
    /// Per parent label (length `2^stage`): how many of its positions become the odd child
    /// `2P + 1`. Default `⌊n/2⌋`, so a parent of size 1 keeps its only position in `2P` and
    /// `2P + 1` stays empty.
    pub odd_counts: Option<Vec<usize>>,
    /// Per position (length `L`): locked positions keep their child from `previous` (§10.4).
    pub locked: Option<Vec<bool>>,
    /// The previous child map (length `L`, labels of stage `stage + 1`); read only at locked
    /// positions, where it must be a child of the parent.
    pub previous: Option<Vec<u32>>,
}

/// The balanced Split of §5.3, deterministic mode: every parent of the (exactly balanced) map
/// `parent` at `stage` has `E` positions; the `E/2` with the highest `clamp(score, −1, 1)`
/// become `2P + 1`, the rest `2P`. Equal clamped scores go to the earlier position.
///
/// `score` has one finite value per position. Errors when the map is not exactly balanced with
/// an even cluster size, when a label is outside `[0, 2^stage)`, or on a bad score.
pub fn split_balanced(
    parent: &[u32],
    stage: usize,
    score: &[f32],
) -> Result<Vec<u32>, GranularityError> {
    check_common(parent, stage, score)?;
    let half = balanced_half(parent, stage)?;
    let q: Vec<f64> = score.iter().map(|&s| clamped(s)).collect();
    Ok(split_groups(parent, |members, odd| {
        select_top(members, half, &q, odd)
    }))
}

/// The balanced Split of §5.3 in Gumbel-top-k mode: per parent, `q = clamp(score, −1, 1) + 1`,
/// `p = q / Σ_group q`, `key = ln(p + 1e-8) + G`, and the `E/2` largest keys become `2P + 1`
/// (sampling without replacement in proportion to `p`). `gumbel` holds one standard Gumbel
/// sample `G = −ln(−ln U)` per position, drawn by the caller so that the caller owns the random
/// stream. A parent whose `q` are all 0 uses the uniform `p = 1/E` (the reference would divide
/// by zero). Equal keys go to the earlier position.
pub fn split_gumbel(
    parent: &[u32],
    stage: usize,
    score: &[f32],
    gumbel: &[f32],
) -> Result<Vec<u32>, GranularityError> {
    check_common(parent, stage, score)?;
    check_values("gumbel", gumbel, parent.len())?;
    let half = balanced_half(parent, stage)?;
    let q: Vec<f64> = score.iter().map(|&s| clamped(s) + 1.0).collect();
    let mut key = vec![0f64; parent.len()];
    Ok(split_groups(parent, |members, odd| {
        let total: f64 = members.iter().map(|&p| q[p]).sum();
        for &p in members {
            let prob = if total > 0.0 {
                q[p] / total
            } else {
                1.0 / members.len() as f64
            };
            key[p] = (prob + 1e-8).ln() + f64::from(gumbel[p]);
        }
        select_top(members, half, &key, odd);
    }))
}

/// The generalised Split of §10.3–10.4: parents of any size `n ≥ 0`.
///
/// Per parent `P` with `n` positions, the target number of odd children is
/// `opts.odd_counts[P]` or `⌊n/2⌋`. Locked positions keep `opts.previous[p]` exactly; the
/// remaining odd slots, `target − (locked positions that are odd)` clamped to
/// `[0, unlocked positions]`, go to the unlocked positions with the highest
/// `clamp(score, −1, 1)` (earlier position on ties). With an exactly balanced map and default
/// options this is exactly [`split_balanced`].
pub fn split_general(
    parent: &[u32],
    stage: usize,
    score: &[f32],
    opts: &SplitOptions,
) -> Result<Vec<u32>, GranularityError> {
    check_common(parent, stage, score)?;
    let positions = parent.len();
    let clusters = 1usize << stage;

    if let Some(counts) = &opts.odd_counts
        && counts.len() != clusters
    {
        return Err(GranularityError::Length {
            what: "odd_counts",
            found: counts.len(),
            expected: clusters,
        });
    }
    if let Some(locked) = &opts.locked
        && locked.len() != positions
    {
        return Err(GranularityError::Length {
            what: "locked",
            found: locked.len(),
            expected: positions,
        });
    }
    if let Some(previous) = &opts.previous
        && previous.len() != positions
    {
        return Err(GranularityError::Length {
            what: "previous",
            found: previous.len(),
            expected: positions,
        });
    }
    let locked: Vec<bool> = opts
        .locked
        .clone()
        .unwrap_or_else(|| vec![false; positions]);
    for (position, _) in locked.iter().enumerate().filter(|&(_, &l)| l) {
        let previous = opts
            .previous
            .as_ref()
            .ok_or(GranularityError::LockWithoutPrevious { position })?[position];
        if previous >> 1 != parent[position] {
            return Err(GranularityError::PreviousNotChild {
                position,
                previous,
                parent: parent[position],
            });
        }
    }

    // Group sizes, to check odd_counts (empty parents included).
    if let Some(counts) = &opts.odd_counts {
        let mut sizes = vec![0usize; clusters];
        for &label in parent {
            sizes[label as usize] += 1;
        }
        for (label, (&count, &size)) in counts.iter().zip(&sizes).enumerate() {
            if count > size {
                return Err(GranularityError::OddCountTooLarge {
                    label: label as u32,
                    count,
                    size,
                });
            }
        }
    }

    let q: Vec<f64> = score.iter().map(|&s| clamped(s)).collect();
    let mut unlocked = Vec::new();
    Ok(split_groups(parent, |members, odd| {
        let label = parent[members[0]] as usize;
        let target = opts
            .odd_counts
            .as_ref()
            .map_or(members.len() / 2, |c| c[label]);
        let mut locked_odd = 0usize;
        unlocked.clear();
        for &p in members {
            if locked[p] {
                // Checked above: previous exists and is a child of this parent.
                let child = opts.previous.as_ref().map_or(0, |prev| prev[p]);
                odd[p] = child & 1 == 1;
                locked_odd += usize::from(odd[p]);
            } else {
                unlocked.push(p);
            }
        }
        let wanted = target.saturating_sub(locked_odd).min(unlocked.len());
        select_top(&unlocked, wanted, &q, odd);
    }))
}

/// `clamp(score, −1, 1)` as f64; `+ 0.0` turns `−0.0` into `0.0` so both rank equal.
fn clamped(score: f32) -> f64 {
    f64::from(score.clamp(-1.0, 1.0)) + 0.0
}

fn check_values(
    what: &'static str,
    values: &[f32],
    expected: usize,
) -> Result<(), GranularityError> {
    if values.len() != expected {
        return Err(GranularityError::Length {
            what,
            found: values.len(),
            expected,
        });
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(GranularityError::NonFinite { what, index, value });
    }
    Ok(())
}

/// Stage depth, label range and score checks shared by every split.
fn check_common(parent: &[u32], stage: usize, score: &[f32]) -> Result<(), GranularityError> {
    if stage > MAX_SPLIT_STAGE {
        return Err(GranularityError::StageTooDeep {
            stage,
            max: MAX_SPLIT_STAGE,
        });
    }
    check_labels(parent, stage)?;
    check_values("score", score, parent.len())
}

/// For a balanced split: checks that every cluster of `stage` has the same even size `E ≥ 2`
/// and returns `E / 2`.
fn balanced_half(parent: &[u32], stage: usize) -> Result<usize, GranularityError> {
    let positions = parent.len();
    let clusters = 1usize << stage;
    let uneven = GranularityError::NotEvenlySplittable {
        stage,
        positions,
        clusters,
    };
    if !positions.is_multiple_of(clusters)
        || !(positions / clusters).is_multiple_of(2)
        || positions < 2 * clusters
    {
        return Err(uneven);
    }
    let expected = positions / clusters;
    let mut sizes = vec![0usize; clusters];
    for &label in parent {
        sizes[label as usize] += 1;
    }
    if let Some((label, &size)) = sizes.iter().enumerate().find(|&(_, &s)| s != expected) {
        return Err(GranularityError::UnbalancedParent {
            stage,
            label: label as u32,
            size,
            expected,
        });
    }
    Ok(expected / 2)
}

/// Groups positions by parent label (each group in raster order), lets `choose` mark the odd
/// ones, and builds the child map `2P + odd`. Labels are known to be in range.
fn split_groups(parent: &[u32], mut choose: impl FnMut(&[usize], &mut [bool])) -> Vec<u32> {
    let mut order: Vec<usize> = (0..parent.len()).collect();
    order.sort_by_key(|&p| parent[p]); // stable: raster order within a parent
    let mut odd = vec![false; parent.len()];
    for members in order.chunk_by(|&a, &b| parent[a] == parent[b]) {
        choose(members, &mut odd);
    }
    parent
        .iter()
        .zip(&odd)
        .map(|(&p, &o)| 2 * p + u32::from(o))
        .collect()
}

/// Marks the `count` members with the largest `key` as odd; equal keys prefer the earlier
/// position. `members` is in raster order and keys are finite.
fn select_top(members: &[usize], count: usize, key: &[f64], odd: &mut [bool]) {
    let mut ranked = members.to_vec();
    // Stable sort by key descending keeps raster order among equal keys.
    ranked.sort_by(|&a, &b| {
        key[b]
            .partial_cmp(&key[a])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    for &p in &ranked[..count] {
        odd[p] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::granularity::test_support::Rng;
    use crate::granularity::{Balance, Hierarchy, HierarchyError, cluster_latent, num_stages_for};

    /// Scores uniform in [−1.5, 1.5): some fall outside the clamp range and tie.
    fn scores(rng: &mut Rng, n: usize) -> Vec<f32> {
        rng.uniforms(n, -1.5, 1.5)
    }

    /// Standard Gumbel samples, −ln(−ln U).
    fn gumbels(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                (-(-u.ln()).ln()) as f32
            })
            .collect()
    }

    fn odd_count(child: &[u32], parent: &[u32], label: u32) -> usize {
        child
            .iter()
            .zip(parent)
            .filter(|&(&c, &p)| p == label && c & 1 == 1)
            .count()
    }

    #[test]
    fn balanced_splits_grow_a_balanced_hierarchy() {
        let mut rng = Rng(11);
        for side in [1, 2, 4, 8, 16] {
            let positions = side * side;
            let stages = num_stages_for(side).unwrap();
            for gumbel in [false, true] {
                let mut maps = vec![vec![0u32; positions]];
                for stage in 0..stages - 1 {
                    let score = scores(&mut rng, positions);
                    let child = if gumbel {
                        split_gumbel(&maps[stage], stage, &score, &gumbels(&mut rng, positions))
                    } else {
                        split_balanced(&maps[stage], stage, &score)
                    }
                    .unwrap();
                    for label in 0..(1u32 << stage) {
                        assert_eq!(
                            odd_count(&child, &maps[stage], label),
                            positions >> (stage + 1)
                        );
                    }
                    maps.push(child);
                }
                Hierarchy::from_maps_exact(side, maps).unwrap();
            }
        }
    }

    #[test]
    fn higher_scores_become_the_odd_child() {
        assert_eq!(
            split_balanced(&[0; 4], 0, &[0.1, 0.9, -0.5, 0.3]).unwrap(),
            vec![0, 1, 0, 1]
        );
        // Stage 1, parents [0, 1, 1, 0]: per parent one odd child.
        assert_eq!(
            split_balanced(&[0, 1, 1, 0], 1, &[0.2, -0.3, 0.4, 0.5]).unwrap(),
            vec![0, 2, 3, 1]
        );
    }

    #[test]
    fn clamped_ties_go_to_the_earlier_position() {
        // All clamp to 1: the first two positions win.
        assert_eq!(
            split_balanced(&[0; 4], 0, &[2.0, 5.0, 1.0, 1.5]).unwrap(),
            vec![1, 1, 0, 0]
        );
        // Order of equal values in the input does not matter, only position.
        assert_eq!(
            split_balanced(&[0; 4], 0, &[-3.0, -1.0, -2.0, -9.0]).unwrap(),
            vec![1, 1, 0, 0]
        );
        // −0.0 and 0.0 are equal.
        assert_eq!(
            split_balanced(&[0; 4], 0, &[-0.5, 0.0, -0.0, -0.7]).unwrap(),
            vec![0, 1, 1, 0]
        );
        assert_eq!(
            split_balanced(&[0; 4], 0, &[-0.5, -0.0, 0.0, -0.7]).unwrap(),
            vec![0, 1, 1, 0]
        );
    }

    #[test]
    fn gumbel_mode() {
        let mut rng = Rng(12);
        // With G = 0 the keys rank like q, so it equals the deterministic mode.
        let h = cluster_latent(&scores(&mut rng, 64 * 4), 8, 4).unwrap();
        for stage in 0..h.num_stages() - 1 {
            let score = scores(&mut rng, 64);
            assert_eq!(
                split_gumbel(h.map(stage), stage, &score, &[0.0; 64]).unwrap(),
                split_balanced(h.map(stage), stage, &score).unwrap()
            );
        }
        // Large noise dominates.
        assert_eq!(
            split_gumbel(&[0; 4], 0, &[1.0, 0.0, 1.0, 0.0], &[0.0, 50.0, 0.0, 50.0]).unwrap(),
            vec![0, 1, 0, 1]
        );
        // All q = 0 (scores ≤ −1): uniform p, no NaN; the noise decides.
        assert_eq!(
            split_gumbel(&[0; 4], 0, &[-2.0; 4], &[0.5, -0.1, 0.3, 0.9]).unwrap(),
            vec![1, 0, 0, 1]
        );
        assert!(matches!(
            split_gumbel(&[0; 4], 0, &[0.0; 4], &[0.0; 3]),
            Err(GranularityError::Length {
                what: "gumbel",
                found: 3,
                expected: 4
            })
        ));
        assert!(matches!(
            split_gumbel(&[0; 4], 0, &[0.0; 4], &[0.0, f32::NAN, 0.0, 0.0]),
            Err(GranularityError::NonFinite {
                what: "gumbel",
                index: 1,
                ..
            })
        ));
    }

    #[test]
    fn general_equals_balanced_on_balanced_maps() {
        let mut rng = Rng(13);
        for side in [2, 4, 8, 16] {
            let positions = side * side;
            let h = cluster_latent(&scores(&mut rng, positions * 3), side, 3).unwrap();
            for stage in 0..h.num_stages() - 1 {
                let score = scores(&mut rng, positions);
                assert_eq!(
                    split_general(h.map(stage), stage, &score, &SplitOptions::default()).unwrap(),
                    split_balanced(h.map(stage), stage, &score).unwrap()
                );
            }
        }
    }

    #[test]
    fn unbalanced_parents_of_size_0_1_and_3() {
        // Stage 2 (labels 0..4): cluster 0 has 1 position, 2 has 3, clusters 1 and 3 are empty.
        let parent = [0, 2, 2, 2];
        let score = [0.9, 0.1, 0.8, -0.2];
        let child = split_general(&parent, 2, &score, &SplitOptions::default()).unwrap();
        // Size 1 → ⌊1/2⌋ = 0 odd children: child 1 stays empty. Size 3 → 1 odd child.
        assert_eq!(child, vec![0, 4, 5, 4]);
        assert!(child.iter().zip(&parent).all(|(&c, &p)| c >> 1 == p));

        // User-chosen odd counts, including all and none.
        let opts = SplitOptions {
            odd_counts: Some(vec![1, 0, 3, 0]),
            ..Default::default()
        };
        assert_eq!(
            split_general(&parent, 2, &score, &opts).unwrap(),
            vec![1, 5, 5, 5]
        );
        let opts = SplitOptions {
            odd_counts: Some(vec![0, 0, 0, 0]),
            ..Default::default()
        };
        assert_eq!(
            split_general(&parent, 2, &score, &opts).unwrap(),
            vec![0, 4, 4, 4]
        );
        // Asking an empty or small parent for too many odd children is an error.
        let opts = SplitOptions {
            odd_counts: Some(vec![0, 1, 0, 0]),
            ..Default::default()
        };
        assert!(matches!(
            split_general(&parent, 2, &score, &opts),
            Err(GranularityError::OddCountTooLarge {
                label: 1,
                count: 1,
                size: 0
            })
        ));
        let opts = SplitOptions {
            odd_counts: Some(vec![0, 0, 4, 0]),
            ..Default::default()
        };
        assert!(matches!(
            split_general(&parent, 2, &score, &opts),
            Err(GranularityError::OddCountTooLarge {
                label: 2,
                count: 4,
                size: 3
            })
        ));
        let opts = SplitOptions {
            odd_counts: Some(vec![0; 3]),
            ..Default::default()
        };
        assert!(matches!(
            split_general(&parent, 2, &score, &opts),
            Err(GranularityError::Length {
                what: "odd_counts",
                found: 3,
                expected: 4
            })
        ));
        // The balanced split refuses the same map.
        assert!(matches!(
            split_balanced(&parent, 2, &score),
            Err(GranularityError::NotEvenlySplittable { .. })
        ));
        assert!(matches!(
            split_balanced(&[0, 0, 0, 1], 1, &score),
            Err(GranularityError::UnbalancedParent {
                stage: 1,
                label: 0,
                size: 3,
                expected: 2
            })
        ));
    }

    #[test]
    fn locked_positions_keep_their_previous_child() {
        let mut rng = Rng(14);
        let side = 8;
        let positions = side * side;
        let h = cluster_latent(&scores(&mut rng, positions * 4), side, 4).unwrap();
        for stage in 0..h.num_stages() - 1 {
            let parent = h.map(stage);
            let previous = h.map(stage + 1).to_vec();
            for _ in 0..5 {
                let locked: Vec<bool> = (0..positions)
                    .map(|_| rng.next_u64().is_multiple_of(3))
                    .collect();
                let score = scores(&mut rng, positions);
                let opts = SplitOptions {
                    odd_counts: None,
                    locked: Some(locked.clone()),
                    previous: Some(previous.clone()),
                };
                let child = split_general(parent, stage, &score, &opts).unwrap();
                for p in 0..positions {
                    assert_eq!(child[p] >> 1, parent[p]);
                    if locked[p] {
                        assert_eq!(child[p], previous[p]);
                    }
                }
                // The previous map is balanced, so locked odd ≤ half and locked even ≤ half:
                // the target is met exactly and the result stays balanced.
                for label in 0..(1u32 << stage) {
                    assert_eq!(odd_count(&child, parent, label), positions >> (stage + 1));
                }
                // Locking everything reproduces the previous map.
                let all = SplitOptions {
                    locked: Some(vec![true; positions]),
                    ..opts.clone()
                };
                assert_eq!(
                    split_general(parent, stage, &score, &all).unwrap(),
                    previous
                );
            }
        }
    }

    #[test]
    fn locks_beyond_the_target_win() {
        // One parent of 4; positions 0, 1 and 2 locked odd: 3 odd children although the default
        // target is 2, and the unlocked position stays even.
        let opts = SplitOptions {
            odd_counts: None,
            locked: Some(vec![true, true, true, false]),
            previous: Some(vec![1, 1, 1, 0]),
        };
        assert_eq!(
            split_general(&[0; 4], 0, &[0.0, 0.0, 0.0, 1.0], &opts).unwrap(),
            vec![1, 1, 1, 0]
        );
        // Locked even children leave the odd slots to unlocked ones.
        let opts = SplitOptions {
            odd_counts: None,
            locked: Some(vec![true, true, false, false]),
            previous: Some(vec![0, 0, 7, 7]),
        };
        assert_eq!(
            split_general(&[0; 4], 0, &[1.0, 1.0, -1.0, -1.0], &opts).unwrap(),
            vec![0, 0, 1, 1]
        );
    }

    /// The reference's generated structures: labels[s + 1] = Split(labels[s], scores[s]). The
    /// reference breaks clamped ties arbitrarily, so positions may differ only where the clamped
    /// score equals its parent's selection threshold.
    #[test]
    fn matches_the_reference_split_up_to_ties() {
        use crate::granularity::test_support::{read_safetensors, testvectors};
        let Some(dir) = testvectors() else { return };
        let v = read_safetensors(&dir.join("generator_vectors.safetensors"));
        let mut tie_differences = 0;
        for run in ["gen_nocfg", "gen_cfg"] {
            let labels = &v[&format!("{run}.labels")]; // [B, S, L]
            let scores = &v[&format!("{run}.cluster_scores_in")]; // [B, S − 1, L]
            let (images, stages, positions) = (labels.shape[0], labels.shape[1], labels.shape[2]);
            let map = |b: usize, s: usize| -> Vec<u32> {
                let start = (b * stages + s) * positions;
                labels.values[start..start + positions]
                    .iter()
                    .map(|&x| x as u32)
                    .collect()
            };
            for b in 0..images {
                for stage in 0..stages - 1 {
                    let start = (b * (stages - 1) + stage) * positions;
                    let score: Vec<f32> = scores.values[start..start + positions]
                        .iter()
                        .map(|&x| x as f32)
                        .collect();
                    let parent = map(b, stage);
                    let reference = map(b, stage + 1);
                    let ours = split_balanced(&parent, stage, &score).unwrap();
                    for p in 0..positions {
                        if ours[p] == reference[p] {
                            continue;
                        }
                        // The threshold: the smallest clamped score among our odd children.
                        let threshold = (0..positions)
                            .filter(|&r| parent[r] == parent[p] && ours[r] & 1 == 1)
                            .map(|r| clamped(score[r]))
                            .fold(f64::INFINITY, f64::min);
                        assert_eq!(
                            clamped(score[p]),
                            threshold,
                            "{run} image {b} stage {stage} position {p} differs without a tie"
                        );
                        tie_differences += 1;
                    }
                }
            }
        }
        eprintln!("positions decided differently on clamped ties: {tie_differences}");
    }

    #[test]
    fn bad_split_inputs_are_errors() {
        assert!(matches!(
            split_balanced(&[0, 0, 1, 2], 1, &[0.0; 4]),
            Err(GranularityError::Hierarchy(
                HierarchyError::LabelOutOfRange {
                    stage: 1,
                    position: 3,
                    label: 2,
                    ..
                }
            ))
        ));
        assert!(matches!(
            split_balanced(&[0; 4], 0, &[0.0; 5]),
            Err(GranularityError::Length {
                what: "score",
                found: 5,
                expected: 4
            })
        ));
        assert!(matches!(
            split_general(
                &[0; 4],
                0,
                &[0.0, f32::INFINITY, 0.0, 0.0],
                &SplitOptions::default()
            ),
            Err(GranularityError::NonFinite {
                what: "score",
                index: 1,
                ..
            })
        ));
        assert!(matches!(
            split_balanced(&[0], 0, &[0.0]),
            Err(GranularityError::NotEvenlySplittable {
                stage: 0,
                positions: 1,
                clusters: 1
            })
        ));
        assert!(matches!(
            split_balanced(&[], 0, &[]),
            Err(GranularityError::NotEvenlySplittable { .. })
        ));
        assert!(matches!(
            split_general(&[0; 4], 32, &[0.0; 4], &SplitOptions::default()),
            Err(GranularityError::StageTooDeep { stage: 32, max: 31 })
        ));
        let locked_only = SplitOptions {
            locked: Some(vec![false, true, false, false]),
            ..Default::default()
        };
        assert!(matches!(
            split_general(&[0; 4], 0, &[0.0; 4], &locked_only),
            Err(GranularityError::LockWithoutPrevious { position: 1 })
        ));
        let wrong_parent = SplitOptions {
            locked: Some(vec![false, true, false, false]),
            previous: Some(vec![0, 2, 0, 0]),
            ..Default::default()
        };
        let err = split_general(&[0; 4], 0, &[0.0; 4], &wrong_parent).unwrap_err();
        assert!(matches!(
            err,
            GranularityError::PreviousNotChild {
                position: 1,
                previous: 2,
                parent: 0
            }
        ));
        assert!(err.to_string().contains("expected 0 or 1"), "{err}");
        let short = SplitOptions {
            locked: Some(vec![true]),
            ..Default::default()
        };
        assert!(matches!(
            split_general(&[0; 4], 0, &[0.0; 4], &short),
            Err(GranularityError::Length {
                what: "locked",
                found: 1,
                expected: 4
            })
        ));
        // Empty input is fine for the general split.
        assert_eq!(
            split_general(&[], 3, &[], &SplitOptions::default()).unwrap(),
            Vec::<u32>::new()
        );
        // An unbalanced map that validates with Balance::Any splits with the general form.
        let h =
            Hierarchy::from_maps(2, vec![vec![0; 4], vec![0, 1, 1, 1], vec![1, 2, 2, 3]]).unwrap();
        assert!(h.validate(Balance::Exact).is_err());
        let child = split_general(h.map(1), 1, &[0.0; 4], &SplitOptions::default()).unwrap();
        assert_eq!(child, vec![0, 3, 2, 2]);
    }
}
