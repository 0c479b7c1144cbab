//! Greedy hierarchical pairwise clustering of a latent and the 2P / 2P+1 relabelling.
//!
//! Follows `shared/docs/nvg-method.md` §2.5 (structure construction) and §2.6 (label
//! reorganisation), for any power-of-two grid (§10.1).
//!
//! Input: the continuous encoder latent of one image, position-major `[L, C]`
//! (`features[p · C + c]`, `p = row · side + col`). Output: an exactly balanced [`Hierarchy`].
//!
//! Cost: the finest merge level (M = L clusters) sorts all `L(L−1)/2` pairs, which is
//! O(L² log L) and dominates; the distance computations are O(L² C); each coarser level costs a
//! quarter of the one below. A 16×16×32 latent takes about 2 ms in a release build (measured on
//! a busy 2-core machine; `time_16x16x32` below).

use super::hierarchy::{HierarchyError, check_labels, stages_for_side};
use super::{GranularityError, Hierarchy};

/// Clusters a latent into an exactly balanced hierarchy: [`cluster_latent_raw`] followed by
/// [`relabel_raw_maps`]. Deterministic: the same input always gives the same hierarchy.
pub fn cluster_latent(
    features: &[f32],
    side: usize,
    channels: usize,
) -> Result<Hierarchy, GranularityError> {
    let raw = cluster_latent_raw(features, side, channels)?;
    relabel_raw_maps(side, &raw)
}

/// The raw label maps R_0..R_{S−1} of §2.5 (before relabelling): `R_{S−1}` is the identity,
/// `R_0` is all zero, and at every coarser level the raw label of a cluster is the order in
/// which the greedy pass formed it (the closest pair gets 0).
///
/// Per merge level, with M clusters:
/// - the representative of a cluster is the mean of the *original* features over all of its
///   positions (kept as a sum and a count, in f64);
/// - all pairs `a < b` are sorted by Euclidean distance ascending, ties broken by `(a, b)`
///   lexicographically, and a pair is accepted when both ends are still unmatched — the same
///   result as repeatedly taking the global minimum of the distance matrix. The sort uses the
///   squared distance, which orders pairs exactly as the distance does without `sqrt` rounding.
pub fn cluster_latent_raw(
    features: &[f32],
    side: usize,
    channels: usize,
) -> Result<Vec<Vec<u32>>, GranularityError> {
    let stages = stages_for_side(side)?;
    let positions = side * side;
    if channels == 0 {
        return Err(GranularityError::NoChannels);
    }
    let expected = positions
        .checked_mul(channels)
        .ok_or(GranularityError::Length {
            what: "latent features",
            found: features.len(),
            expected: usize::MAX,
        })?;
    if features.len() != expected {
        return Err(GranularityError::Length {
            what: "latent features",
            found: features.len(),
            expected,
        });
    }
    if let Some((index, &value)) = features.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(GranularityError::NonFinite {
            what: "latent feature",
            index,
            value,
        });
    }

    let mut raw = vec![Vec::new(); stages];
    raw[stages - 1] = (0..positions as u32).collect();

    // Per current cluster: the sum of its members' original features, and its member count.
    let mut sums: Vec<f64> = features.iter().map(|&v| f64::from(v)).collect();
    let mut counts: Vec<f64> = vec![1.0; positions];
    let mut means = vec![0f64; positions * channels];
    let mut pairs: Vec<u128> = Vec::new();

    for level in (1..stages).rev() {
        let clusters = 1usize << level;
        for k in 0..clusters {
            for c in 0..channels {
                means[k * channels + c] = sums[k * channels + c] / counts[k];
            }
        }

        // Sort key: squared distance (non-negative f64, whose bit pattern orders like its
        // value), then a, then b — one u128 per pair, so the sort is plain and deterministic.
        pairs.clear();
        pairs.reserve(clusters * (clusters - 1) / 2);
        for a in 0..clusters {
            let mean_a = &means[a * channels..(a + 1) * channels];
            for b in a + 1..clusters {
                let mean_b = &means[b * channels..(b + 1) * channels];
                let d2: f64 = mean_a
                    .iter()
                    .zip(mean_b)
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum();
                pairs.push((u128::from(d2.to_bits()) << 64) | ((a as u128) << 32) | b as u128);
            }
        }
        pairs.sort_unstable();

        let mut parent_of = vec![u32::MAX; clusters];
        let mut new_sums = vec![0f64; clusters / 2 * channels];
        let mut new_counts = vec![0f64; clusters / 2];
        let mut formed = 0usize;
        for &key in &pairs {
            let a = ((key >> 32) as u32) as usize;
            let b = (key as u32) as usize;
            if parent_of[a] != u32::MAX || parent_of[b] != u32::MAX {
                continue;
            }
            parent_of[a] = formed as u32;
            parent_of[b] = formed as u32;
            for c in 0..channels {
                new_sums[formed * channels + c] = sums[a * channels + c] + sums[b * channels + c];
            }
            new_counts[formed] = counts[a] + counts[b];
            formed += 1;
            if formed == clusters / 2 {
                break;
            }
        }
        // A greedy pass over all pairs of an even number of nodes matches every node.
        debug_assert_eq!(formed, clusters / 2);

        raw[level - 1] = raw[level].iter().map(|&r| parent_of[r as usize]).collect();
        sums = new_sums;
        counts = new_counts;
    }
    Ok(raw)
}

/// The relabelling of §2.6: S_0 ≡ 0, and for each level ℓ = 1..S−1 the raw child labels are
/// sorted by (parent label, raw label) and the child at sorted place k gets label k. With two
/// children per parent, parent P's children become 2P (the smaller raw label) and 2P + 1; at the
/// finest level, where the raw label is the position, the raster-earlier position of each final
/// pair gets the even label.
///
/// Fails with a [`HierarchyError`] when the raw maps do not describe a balanced binary merge
/// tree (wrong shape, labels out of range, a raw cluster split across parents, unequal sizes).
pub fn relabel_raw_maps(side: usize, raw: &[Vec<u32>]) -> Result<Hierarchy, GranularityError> {
    let stages = stages_for_side(side)?;
    let positions = side * side;
    if raw.len() != stages {
        return Err(HierarchyError::StageCount {
            side,
            found: raw.len(),
            expected: stages,
        }
        .into());
    }
    for (stage, map) in raw.iter().enumerate() {
        if map.len() != positions {
            return Err(HierarchyError::MapLength {
                stage,
                found: map.len(),
                expected: positions,
            }
            .into());
        }
        check_labels(map, stage)?;
    }

    let mut maps = vec![vec![0u32; positions]; stages];
    for level in 1..stages {
        let clusters = 1usize << level;
        // Parent of each raw child label: S_{ℓ−1} at the first position carrying it.
        let mut parent_of_raw = vec![u32::MAX; clusters];
        for (p, &r) in raw[level].iter().enumerate() {
            if parent_of_raw[r as usize] == u32::MAX {
                parent_of_raw[r as usize] = maps[level - 1][p];
            }
        }
        let mut order: Vec<(u32, u32)> = parent_of_raw
            .iter()
            .enumerate()
            .filter(|&(_, &parent)| parent != u32::MAX)
            .map(|(r, &parent)| (parent, r as u32))
            .collect();
        // Raw labels are unique, so sorting the (parent, raw) pairs is the stable sort by parent
        // with ties broken by raw label that §2.6 describes.
        order.sort_unstable();
        let mut new_label = vec![u32::MAX; clusters];
        for (k, &(_, r)) in order.iter().enumerate() {
            new_label[r as usize] = k as u32;
        }
        maps[level] = raw[level].iter().map(|&r| new_label[r as usize]).collect();
    }
    // Checks that every parent had exactly two equal children (else the numbering is not 2P /
    // 2P + 1 and a parent mismatch or imbalance shows up here).
    Ok(Hierarchy::from_maps_exact(side, maps)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::granularity::Balance;
    use crate::granularity::test_support::Rng;

    fn latent(rng: &mut Rng, side: usize, channels: usize) -> Vec<f32> {
        rng.uniforms(side * side * channels, -1.0, 1.0)
    }

    /// The literal form of §2.5 (c): repeatedly take the globally smallest entry of the distance
    /// matrix (diagonal and deleted rows/columns excluded), first (a, b) in row-major order on ties.
    fn naive_raw(features: &[f32], side: usize, channels: usize) -> Vec<Vec<u32>> {
        let positions = side * side;
        let stages = stages_for_side(side).unwrap();
        let mut raw = vec![Vec::new(); stages];
        raw[stages - 1] = (0..positions as u32).collect();
        for level in (1..stages).rev() {
            let m = 1usize << level;
            let mean = |k: usize| -> Vec<f64> {
                let members: Vec<usize> = (0..positions)
                    .filter(|&p| raw[level][p] as usize == k)
                    .collect();
                (0..channels)
                    .map(|c| {
                        members
                            .iter()
                            .map(|&p| f64::from(features[p * channels + c]))
                            .sum::<f64>()
                            / members.len() as f64
                    })
                    .collect()
            };
            let means: Vec<Vec<f64>> = (0..m).map(mean).collect();
            let dist = |a: usize, b: usize| -> f64 {
                means[a]
                    .iter()
                    .zip(&means[b])
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum::<f64>()
                    .sqrt()
            };
            let mut alive = vec![true; m];
            let mut parent = vec![0u32; m];
            for new in 0..m / 2 {
                let mut best: Option<(f64, usize, usize)> = None;
                for a in 0..m {
                    for b in 0..m {
                        if a == b || !alive[a] || !alive[b] {
                            continue;
                        }
                        let d = dist(a, b);
                        if best.is_none_or(|(bd, _, _)| d < bd) {
                            best = Some((d, a.min(b), a.max(b)));
                        }
                    }
                }
                let (_, a, b) = best.unwrap();
                alive[a] = false;
                alive[b] = false;
                parent[a] = new as u32;
                parent[b] = new as u32;
            }
            raw[level - 1] = raw[level].iter().map(|&r| parent[r as usize]).collect();
        }
        raw
    }

    #[test]
    fn random_latents_give_exactly_balanced_hierarchies() {
        let mut rng = Rng(1);
        for (side, channels) in [(1, 3), (2, 4), (4, 8), (8, 32), (16, 32), (16, 4)] {
            let features = latent(&mut rng, side, channels);
            let h = cluster_latent(&features, side, channels).unwrap();
            assert_eq!(h.grid_side(), side);
            assert_eq!(h.num_stages(), num_stages(side));
            h.validate(Balance::Exact).unwrap();
            for stage in 0..h.num_stages() {
                assert!(
                    h.cluster_sizes(stage)
                        .iter()
                        .all(|&s| s == (side * side) >> stage)
                );
            }
        }
    }

    fn num_stages(side: usize) -> usize {
        crate::granularity::num_stages_for(side).unwrap()
    }

    #[test]
    fn relabelling_follows_section_2_6() {
        let mut rng = Rng(2);
        for side in [2, 4, 8, 16] {
            let channels = 6;
            let features = latent(&mut rng, side, channels);
            let raw = cluster_latent_raw(&features, side, channels).unwrap();
            let h = relabel_raw_maps(side, &raw).unwrap();
            let stages = h.num_stages();
            let positions = side * side;
            assert_eq!(raw[stages - 1], (0..positions as u32).collect::<Vec<_>>());
            assert!(raw[0].iter().all(|&r| r == 0));

            for (level, raw_level) in raw.iter().enumerate().skip(1) {
                // Relabelling is a bijection of cluster names: same raw ⇔ same new label.
                for p in 0..positions {
                    for q in 0..positions {
                        assert_eq!(
                            raw_level[p] == raw_level[q],
                            h.label(level, p) == h.label(level, q)
                        );
                    }
                }
                // The even child 2P carries the smaller raw label of the two children.
                for parent in 0..(1u32 << (level - 1)) {
                    let raw_of = |label: u32| {
                        let p = (0..positions)
                            .find(|&p| h.label(level, p) == label)
                            .unwrap();
                        raw_level[p]
                    };
                    assert!(raw_of(2 * parent) < raw_of(2 * parent + 1));
                }
            }
            // Finest pairs: the raster-earlier position gets the even label.
            let finest = stages - 1;
            for parent in 0..(positions as u32 / 2) {
                let pair: Vec<usize> = (0..positions)
                    .filter(|&p| h.label(finest - 1, p) == parent)
                    .collect();
                assert_eq!(pair.len(), 2);
                assert_eq!(h.label(finest, pair[0]), 2 * parent);
                assert_eq!(h.label(finest, pair[1]), 2 * parent + 1);
            }
        }
    }

    #[test]
    fn fast_greedy_equals_the_literal_global_minimum_form() {
        let mut rng = Rng(3);
        for (side, channels) in [(2, 2), (4, 3), (8, 5)] {
            for _ in 0..3 {
                let features = latent(&mut rng, side, channels);
                assert_eq!(
                    cluster_latent_raw(&features, side, channels).unwrap(),
                    naive_raw(&features, side, channels)
                );
            }
        }
        // Ties: integer-valued features make many equal distances.
        for _ in 0..3 {
            let features: Vec<f32> = (0..16 * 2).map(|_| (rng.next_u64() % 3) as f32).collect();
            assert_eq!(
                cluster_latent_raw(&features, 4, 2).unwrap(),
                naive_raw(&features, 4, 2)
            );
        }
    }

    #[test]
    fn hand_example_on_a_2x2_grid() {
        // 1-D features 0, 10, 1, 11: pairs (0,2) and (1,3) both at distance 1; (0,2) sorts first.
        let raw = cluster_latent_raw(&[0.0, 10.0, 1.0, 11.0], 2, 1).unwrap();
        assert_eq!(raw, vec![vec![0; 4], vec![0, 1, 0, 1], vec![0, 1, 2, 3]]);
        let h = relabel_raw_maps(2, &raw).unwrap();
        assert_eq!(h.maps(), &[vec![0; 4], vec![0, 1, 0, 1], vec![0, 2, 1, 3]]);
        // Swapping which pair is closer swaps the stage-1 labels.
        let h = cluster_latent(&[0.0, 10.0, 2.0, 11.0], 2, 1).unwrap();
        assert_eq!(h.maps(), &[vec![0; 4], vec![1, 0, 1, 0], vec![2, 0, 3, 1]]);
    }

    #[test]
    fn clustering_is_deterministic() {
        let features = latent(&mut Rng(4), 8, 16);
        let a = cluster_latent(&features, 8, 16).unwrap();
        let b = cluster_latent(&features, 8, 16).unwrap();
        assert_eq!(a, b);
        // Constant latents are all ties and still give a valid hierarchy.
        let h = cluster_latent(&vec![0.25; 64 * 3], 8, 3).unwrap();
        h.validate(Balance::Exact).unwrap();
        assert_eq!(h, cluster_latent(&vec![0.25; 64 * 3], 8, 3).unwrap());
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            cluster_latent(&[0.0; 9], 3, 1),
            Err(GranularityError::Hierarchy(HierarchyError::GridSide {
                side: 3
            }))
        ));
        assert!(matches!(
            cluster_latent(&[], 2, 0),
            Err(GranularityError::NoChannels)
        ));
        assert!(matches!(
            cluster_latent(&[0.0; 7], 2, 2),
            Err(GranularityError::Length {
                found: 7,
                expected: 8,
                ..
            })
        ));
        let mut f = vec![0.0; 8];
        f[5] = f32::NAN;
        assert!(matches!(
            cluster_latent(&f, 2, 2),
            Err(GranularityError::NonFinite { index: 5, .. })
        ));
        f[5] = f32::INFINITY;
        assert!(cluster_latent(&f, 2, 2).is_err());

        // Raw maps that are not a balanced binary merge tree.
        let good = vec![vec![0; 4], vec![0, 1, 0, 1], vec![0, 1, 2, 3]];
        assert!(relabel_raw_maps(2, &good).is_ok());
        assert!(relabel_raw_maps(2, &good[..2]).is_err());
        // Parent 0 with three children: the 2P / 2P + 1 numbering cannot hold.
        let uneven = vec![vec![0; 4], vec![0, 0, 0, 1], vec![0, 1, 2, 3]];
        assert!(matches!(
            relabel_raw_maps(2, &uneven),
            Err(GranularityError::Hierarchy(
                HierarchyError::ParentMismatch { stage: 2, .. }
            ))
        ));
        let out_of_range = vec![vec![0; 4], vec![0, 1, 0, 2], vec![0, 1, 2, 3]];
        assert!(matches!(
            relabel_raw_maps(2, &out_of_range),
            Err(GranularityError::Hierarchy(
                HierarchyError::LabelOutOfRange { stage: 1, .. }
            ))
        ));
    }

    #[test]
    fn matches_the_reference_labels() {
        use crate::granularity::test_support::{read_safetensors, testvectors};
        let Some(dir) = testvectors() else { return };
        let v = read_safetensors(&dir.join("tokenizer_vectors.safetensors"));
        let (f, labels) = (&v["tok.f"], &v["tok.labels"]); // [B, C, H, W], [B, S, L]
        let (images, channels, side) = (f.shape[0], f.shape[1], f.shape[2]);
        let (stages, positions) = (labels.shape[1], side * side);
        for b in 0..images {
            // Channel-major → position-major [L, C].
            let mut features = vec![0f32; positions * channels];
            for c in 0..channels {
                for p in 0..positions {
                    features[p * channels + c] =
                        f.values[(b * channels + c) * positions + p] as f32;
                }
            }
            let h = cluster_latent(&features, side, channels).unwrap();
            assert_eq!(h.num_stages(), stages);
            for stage in 0..stages {
                let start = (b * stages + stage) * positions;
                let reference: Vec<u32> = labels.values[start..start + positions]
                    .iter()
                    .map(|&x| x as u32)
                    .collect();
                assert_eq!(h.map(stage), &reference[..], "image {b} stage {stage}");
            }
        }
    }

    #[test]
    #[ignore = "timing; run with --release -- --ignored --nocapture"]
    fn time_16x16x32() {
        let features = latent(&mut Rng(5), 16, 32);
        let runs = 50;
        let start = std::time::Instant::now();
        for _ in 0..runs {
            std::hint::black_box(cluster_latent(std::hint::black_box(&features), 16, 32).unwrap());
        }
        let per = start.elapsed() / runs;
        println!("cluster_latent 16×16×32: {per:?} per latent (mean of {runs})");
    }
}
