//! Structure maps S_0..S_{S−1} of one latent grid, their invariants, and the bit code σ of §3.
//!
//! Follows `shared/docs/nvg-method.md` §1 (notation), §2.6 (the 2P / 2P+1 numbering), §3 (σ) and
//! §10.1 / §10.3 (any power-of-two grid; unbalanced user maps).
//!
//! `maps[stage][position]` is the cluster label of `position` (raster order, `row·side + col`) at
//! `stage`. Invariants of every hierarchy ([`Balance::Any`]):
//! - there are `S = log2(side²) + 1` maps of `side²` labels each;
//! - stage 0 is all zero;
//! - labels of stage `i` lie in `[0, 2^i)`;
//! - `maps[i + 1][p] >> 1 == maps[i][p]` (each child sits under its parent).
//!
//! A hierarchy built by the tokenizer (§2.5–2.6) is also *exactly balanced* ([`Balance::Exact`]):
//! every cluster of stage `i` holds exactly `L / 2^i` positions, so the last stage is a
//! permutation of `0..L`. User-painted maps (§10.3) need only the first set.

use serde::{Deserialize, Serialize};

use super::GranularityError;

/// The largest supported grid side. Finest labels must fit in `u32` and `L = side²` positions
/// must stay allocatable; `2^15` (L = 2^30, 31 stages) is far beyond any real latent.
pub const MAX_GRID_SIDE: usize = 1 << 15;

/// Which balance [`Hierarchy::validate`] demands on top of the structural invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Balance {
    /// Every cluster of stage `i` has exactly `L / 2^i` positions (tokenizer output, §2.5).
    Exact,
    /// Any cluster sizes, including empty clusters (user-painted maps, §10.3).
    Any,
}

/// A broken hierarchy invariant: which one, and where (stage, position, label).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HierarchyError {
    #[error("grid side {side} is not a power of two between 1 and {max}", max = MAX_GRID_SIDE)]
    GridSide { side: usize },

    #[error("a {side}×{side} grid needs {expected} stages of structure maps, found {found}")]
    StageCount {
        side: usize,
        found: usize,
        expected: usize,
    },

    #[error(
        "stage {stage} structure map has {found} labels, expected {expected} (one per position)"
    )]
    MapLength {
        stage: usize,
        found: usize,
        expected: usize,
    },

    #[error("stage 0 must be all zero, but position {position} has label {label}")]
    RootNotZero { position: usize, label: u32 },

    #[error(
        "stage {stage} position {position} has label {label}, outside [0, {clusters}) (stage {stage} has {clusters} clusters)"
    )]
    LabelOutOfRange {
        stage: usize,
        position: usize,
        label: u32,
        clusters: u64,
    },

    #[error(
        "stage {stage} position {position} has label {label}, whose parent is {}, but stage {} gives that position label {parent}",
        label >> 1,
        stage.saturating_sub(1)
    )]
    ParentMismatch {
        stage: usize,
        position: usize,
        label: u32,
        parent: u32,
    },

    #[error(
        "stage {stage} (the finest) gives label {label} to positions {first} and {second}; an exactly balanced hierarchy gives every position its own label"
    )]
    NotPermutation {
        stage: usize,
        label: u32,
        first: usize,
        second: usize,
    },

    #[error(
        "stage {stage} cluster {label} has {size} positions; an exactly balanced hierarchy needs {expected}"
    )]
    Unbalanced {
        stage: usize,
        label: u32,
        size: usize,
        expected: usize,
    },
}

/// The number of stages `S = log2(side²) + 1` of a `side × side` grid (9 for 16×16, 7 for 8×8).
pub fn num_stages_for(side: usize) -> Result<usize, GranularityError> {
    Ok(stages_for_side(side)?)
}

pub(crate) fn stages_for_side(side: usize) -> Result<usize, HierarchyError> {
    if !side.is_power_of_two() || side > MAX_GRID_SIDE {
        return Err(HierarchyError::GridSide { side });
    }
    Ok(2 * side.trailing_zeros() as usize + 1)
}

/// The number of clusters of a stage, `2^stage`.
///
/// # Panics
/// If `2^stage` does not fit in `usize`.
pub fn num_clusters(stage: usize) -> usize {
    assert!(
        stage < usize::BITS as usize,
        "stage {stage} is too deep to count its clusters"
    );
    1 << stage
}

/// σ of §3 for a cluster label at `stage`, with `num_bits = S − 1` channels: channel `j < stage`
/// holds `2 · bit_{stage−1−j}(label)` (most significant bit first), channels `j ≥ stage` hold the
/// padding value 1. E.g. stage 2, label 3 → `[2, 2, 1, 1, 1, 1, 1, 1]` on a 16×16 grid.
///
/// # Panics
/// In debug builds, if `stage > num_bits` (the bits would not fit).
pub fn sigma_of_label(label: u32, stage: usize, num_bits: usize) -> Vec<u8> {
    debug_assert!(
        stage <= num_bits,
        "stage {stage} has more bits than {num_bits} channels"
    );
    (0..num_bits)
        .map(|j| {
            if j < stage {
                let shift = (stage - 1 - j) as u32;
                // Bits above bit 31 of a u32 label are zero.
                let bit = label.checked_shr(shift).unwrap_or(0) & 1;
                2 * bit as u8
            } else {
                1
            }
        })
        .collect()
}

/// The inverse of [`sigma_of_label`]: `S_i = Σ_{j<i} (σ[j]/2) · 2^{i−1−j}`. Checks that the bit
/// channels are 0 or 2 and the padding channels are 1.
pub fn label_from_sigma(sigma: &[u8], stage: usize) -> Result<u32, GranularityError> {
    if sigma.len() < stage {
        return Err(GranularityError::Length {
            what: "σ",
            found: sigma.len(),
            expected: stage,
        });
    }
    let mut label: u64 = 0;
    for (channel, &value) in sigma.iter().enumerate() {
        let bad = |reason| GranularityError::BadSigma {
            stage,
            channel,
            value,
            reason,
        };
        if channel < stage {
            if stage - 1 - channel >= 32 && value != 0 {
                return Err(bad(
                    "labels are u32, so only the last 32 bit channels may be 2",
                ));
            }
            match value {
                0 => label <<= 1,
                2 => label = (label << 1) | 1,
                _ => return Err(bad("bit channels (before the stage) must be 0 or 2")),
            }
        } else if value != 1 {
            return Err(bad("padding channels (from the stage on) must be 1"));
        }
    }
    // The check above keeps every set bit within the last 32 channels.
    Ok(label as u32)
}

/// Structure maps of every stage of one grid; always satisfies the invariants of [`Balance::Any`]
/// (it can only be built through a validating constructor). See the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "HierarchyData")]
pub struct Hierarchy {
    grid_side: usize,
    maps: Vec<Vec<u32>>,
}

/// Unvalidated form used to deserialise a [`Hierarchy`].
#[derive(Deserialize)]
struct HierarchyData {
    grid_side: usize,
    maps: Vec<Vec<u32>>,
}

impl TryFrom<HierarchyData> for Hierarchy {
    type Error = HierarchyError;
    fn try_from(data: HierarchyData) -> Result<Self, Self::Error> {
        Hierarchy::from_maps(data.grid_side, data.maps)
    }
}

/// Checks the invariants of the module doc on raw maps, reporting the first broken one in the
/// order: grid side, stage count, map lengths, stage 0, then per stage (coarse to fine, positions
/// in raster order) label range and parent; with [`Balance::Exact`] finally cluster sizes of the
/// inner stages (coarse to fine) and the finest stage being a permutation.
pub fn validate_maps(
    grid_side: usize,
    maps: &[Vec<u32>],
    balance: Balance,
) -> Result<(), HierarchyError> {
    let stages = stages_for_side(grid_side)?;
    let positions = grid_side * grid_side;
    if maps.len() != stages {
        return Err(HierarchyError::StageCount {
            side: grid_side,
            found: maps.len(),
            expected: stages,
        });
    }
    for (stage, map) in maps.iter().enumerate() {
        if map.len() != positions {
            return Err(HierarchyError::MapLength {
                stage,
                found: map.len(),
                expected: positions,
            });
        }
    }
    if let Some((position, &label)) = maps[0].iter().enumerate().find(|&(_, &l)| l != 0) {
        return Err(HierarchyError::RootNotZero { position, label });
    }
    for stage in 1..stages {
        let clusters = 1u64 << stage;
        for (position, (&label, &parent)) in maps[stage].iter().zip(&maps[stage - 1]).enumerate() {
            if u64::from(label) >= clusters {
                return Err(HierarchyError::LabelOutOfRange {
                    stage,
                    position,
                    label,
                    clusters,
                });
            }
            if label >> 1 != parent {
                return Err(HierarchyError::ParentMismatch {
                    stage,
                    position,
                    label,
                    parent,
                });
            }
        }
    }
    if balance == Balance::Exact {
        // Inner stages by size; the finest stage (size 1) as a permutation, which names the two
        // positions that share a label.
        for (stage, map) in maps.iter().enumerate().take(stages - 1) {
            let expected = positions >> stage;
            let sizes = sizes_of(map, stage);
            if let Some((label, &size)) = sizes.iter().enumerate().find(|&(_, &s)| s != expected) {
                return Err(HierarchyError::Unbalanced {
                    stage,
                    label: label as u32,
                    size,
                    expected,
                });
            }
        }
        let stage = stages - 1;
        let mut first_with = vec![usize::MAX; positions];
        for (position, &label) in maps[stage].iter().enumerate() {
            let first = first_with[label as usize];
            if first != usize::MAX {
                return Err(HierarchyError::NotPermutation {
                    stage,
                    label,
                    first,
                    second: position,
                });
            }
            first_with[label as usize] = position;
        }
    }
    Ok(())
}

/// Cluster sizes of a map whose labels are known to lie in `[0, 2^stage)`.
fn sizes_of(map: &[u32], stage: usize) -> Vec<usize> {
    let mut sizes = vec![0usize; num_clusters(stage)];
    for &label in map {
        sizes[label as usize] += 1;
    }
    sizes
}

impl Hierarchy {
    /// Builds a hierarchy from `maps[stage][position]`, checking the invariants every hierarchy
    /// must hold ([`Balance::Any`]: unbalanced and empty clusters are allowed).
    pub fn from_maps(grid_side: usize, maps: Vec<Vec<u32>>) -> Result<Self, HierarchyError> {
        validate_maps(grid_side, &maps, Balance::Any)?;
        Ok(Self { grid_side, maps })
    }

    /// Like [`Hierarchy::from_maps`], but also demands exact balance ([`Balance::Exact`]).
    pub fn from_maps_exact(grid_side: usize, maps: Vec<Vec<u32>>) -> Result<Self, HierarchyError> {
        validate_maps(grid_side, &maps, Balance::Exact)?;
        Ok(Self { grid_side, maps })
    }

    /// Re-checks every invariant, with the given balance requirement. [`Balance::Any`] always
    /// holds for a constructed hierarchy; [`Balance::Exact`] tells whether it is exactly balanced.
    pub fn validate(&self, balance: Balance) -> Result<(), HierarchyError> {
        validate_maps(self.grid_side, &self.maps, balance)
    }

    /// Whether every cluster of every stage has exactly `L / 2^stage` positions.
    pub fn is_exactly_balanced(&self) -> bool {
        self.validate(Balance::Exact).is_ok()
    }

    /// The side of the square latent grid.
    pub fn grid_side(&self) -> usize {
        self.grid_side
    }

    /// The number of positions, `L = side²`.
    pub fn num_positions(&self) -> usize {
        self.grid_side * self.grid_side
    }

    /// The number of stages, `S = log2(L) + 1`.
    pub fn num_stages(&self) -> usize {
        self.maps.len()
    }

    /// The number of clusters of `stage`, `2^stage`.
    pub fn num_clusters(&self, stage: usize) -> usize {
        num_clusters(stage)
    }

    /// All structure maps, `maps()[stage][position]`.
    pub fn maps(&self) -> &[Vec<u32>] {
        &self.maps
    }

    /// The structure map of one stage.
    ///
    /// # Panics
    /// If `stage >= self.num_stages()`.
    pub fn map(&self, stage: usize) -> &[u32] {
        &self.maps[stage]
    }

    /// The label of `position` at `stage`.
    ///
    /// # Panics
    /// If `stage` or `position` is out of range.
    pub fn label(&self, stage: usize, position: usize) -> u32 {
        self.maps[stage][position]
    }

    /// Gives the maps back, `maps[stage][position]`.
    pub fn into_maps(self) -> Vec<Vec<u32>> {
        self.maps
    }

    /// The number of positions of each cluster of `stage` (length `2^stage`; empty clusters of
    /// unbalanced maps count 0).
    ///
    /// # Panics
    /// If `stage >= self.num_stages()`.
    pub fn cluster_sizes(&self, stage: usize) -> Vec<usize> {
        sizes_of(&self.maps[stage], stage)
    }

    /// σ_stage(position) of §3: `S − 1` channels, `2 · bit` most-significant first for channels
    /// before `stage`, padding 1 from `stage` on. Stage 0 is all ones; the last stage is in
    /// `{0, 2}^{S−1}`.
    ///
    /// # Panics
    /// If `stage` or `position` is out of range.
    pub fn sigma(&self, stage: usize, position: usize) -> Vec<u8> {
        sigma_of_label(self.maps[stage][position], stage, self.num_stages() - 1)
    }

    /// σ of every position at `stage`, position-major: `[L, S − 1]` flattened
    /// (`out[p · (S − 1) + j]`), ready to be used as RoPE ids or the structure-flow variable.
    ///
    /// # Panics
    /// If `stage >= self.num_stages()`.
    pub fn sigma_map(&self, stage: usize) -> Vec<u8> {
        let bits = self.num_stages() - 1;
        let mut out = Vec::with_capacity(self.num_positions() * bits);
        for &label in &self.maps[stage] {
            out.extend(sigma_of_label(label, stage, bits));
        }
        out
    }
}

/// Every label of a stage-`stage` map is below 2^stage (the check clustering and Split share).
pub fn check_labels(map: &[u32], stage: usize) -> Result<(), HierarchyError> {
    let clusters = 1u64 << stage;
    match map.iter().enumerate().find(|&(_, &l)| u64::from(l) >= clusters) {
        Some((position, &label)) => Err(HierarchyError::LabelOutOfRange { stage, position, label, clusters }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "raster" hierarchy: finest label = position, stage i label = p >> (S − 1 − i).
    fn raster_maps(side: usize) -> Vec<Vec<u32>> {
        let stages = stages_for_side(side).unwrap();
        (0..stages)
            .map(|i| {
                (0..side * side)
                    .map(|p| (p >> (stages - 1 - i)) as u32)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn stage_counts_follow_the_grid_side() {
        assert_eq!(num_stages_for(1).unwrap(), 1);
        assert_eq!(num_stages_for(2).unwrap(), 3);
        assert_eq!(num_stages_for(4).unwrap(), 5);
        assert_eq!(num_stages_for(8).unwrap(), 7);
        assert_eq!(num_stages_for(16).unwrap(), 9);
        assert_eq!(num_stages_for(32).unwrap(), 11);
        for side in [0, 3, 6, 12, MAX_GRID_SIDE * 2] {
            assert!(matches!(
                num_stages_for(side),
                Err(GranularityError::Hierarchy(HierarchyError::GridSide { side: s })) if s == side
            ));
        }
        assert_eq!(num_clusters(0), 1);
        assert_eq!(num_clusters(8), 256);
    }

    #[test]
    fn raster_hierarchies_are_exactly_balanced() {
        for side in [1, 2, 4, 8, 16] {
            let h = Hierarchy::from_maps_exact(side, raster_maps(side)).unwrap();
            assert!(h.is_exactly_balanced());
            assert_eq!(h.num_stages(), num_stages_for(side).unwrap());
            for stage in 0..h.num_stages() {
                let sizes = h.cluster_sizes(stage);
                assert_eq!(sizes.len(), h.num_clusters(stage));
                assert!(sizes.iter().all(|&s| s == (side * side) >> stage));
            }
        }
    }

    #[test]
    fn validation_names_each_broken_invariant() {
        use HierarchyError as E;
        let good = raster_maps(4);
        let check = |maps: Vec<Vec<u32>>, balance| validate_maps(4, &maps, balance).unwrap_err();

        assert_eq!(
            validate_maps(3, &good, Balance::Any).unwrap_err(),
            E::GridSide { side: 3 }
        );

        let mut m = good.clone();
        m.pop();
        assert_eq!(
            check(m, Balance::Any),
            E::StageCount {
                side: 4,
                found: 4,
                expected: 5
            }
        );

        let mut m = good.clone();
        m[2].push(0);
        assert_eq!(
            check(m, Balance::Any),
            E::MapLength {
                stage: 2,
                found: 17,
                expected: 16
            }
        );

        let mut m = good.clone();
        m[0][5] = 1;
        assert_eq!(
            check(m, Balance::Any),
            E::RootNotZero {
                position: 5,
                label: 1
            }
        );

        let mut m = good.clone();
        m[2][7] = 4;
        assert_eq!(
            check(m, Balance::Any),
            E::LabelOutOfRange {
                stage: 2,
                position: 7,
                label: 4,
                clusters: 4
            }
        );

        // Position 7 has stage-1 label 0, so stage-2 label 2 (parent 1) is inconsistent.
        let mut m = good.clone();
        m[2][7] = 2;
        assert_eq!(
            check(m, Balance::Any),
            E::ParentMismatch {
                stage: 2,
                position: 7,
                label: 2,
                parent: 0
            }
        );

        // Finest stage not a permutation, but still hierarchical: fine for Any, not for Exact.
        let mut m = good.clone();
        m[4][1] = 0;
        assert!(validate_maps(4, &m, Balance::Any).is_ok());
        assert_eq!(
            check(m, Balance::Exact),
            E::NotPermutation {
                stage: 4,
                label: 0,
                first: 0,
                second: 1
            }
        );

        // Move position 8 (raster cluster 1 at stage 1) into cluster 0 all the way down.
        let mut m = good.clone();
        for (stage, label) in [(1, 0), (2, 1), (3, 3), (4, 7)] {
            m[stage][8] = label;
        }
        assert!(validate_maps(4, &m, Balance::Any).is_ok());
        assert_eq!(
            check(m, Balance::Exact),
            E::Unbalanced {
                stage: 1,
                label: 0,
                size: 9,
                expected: 8
            }
        );
    }

    #[test]
    fn errors_print_one_line_naming_the_place() {
        let e = HierarchyError::ParentMismatch {
            stage: 3,
            position: 12,
            label: 5,
            parent: 3,
        };
        let text = e.to_string();
        assert!(!text.contains('\n'));
        assert!(
            text.contains("stage 3 position 12 has label 5, whose parent is 2"),
            "{text}"
        );
        assert!(
            text.contains("stage 2 gives that position label 3"),
            "{text}"
        );
    }

    #[test]
    fn sigma_matches_the_method_examples() {
        let h = Hierarchy::from_maps_exact(16, raster_maps(16)).unwrap();
        // Raster hierarchy: S_2(p) = p >> 6, so p = 192 has S_2 = 3 and p = 128 has S_2 = 2.
        assert_eq!(h.label(2, 192), 3);
        assert_eq!(h.sigma(2, 192), vec![2, 2, 1, 1, 1, 1, 1, 1]);
        assert_eq!(h.label(2, 128), 2);
        assert_eq!(h.sigma(2, 128), vec![2, 0, 1, 1, 1, 1, 1, 1]);
        for p in 0..256 {
            assert_eq!(h.sigma(0, p), vec![1; 8]);
            assert!(h.sigma(8, p).iter().all(|&v| v == 0 || v == 2));
        }
        // Channel j is the decision from stage j to j + 1, so it never changes with the stage.
        for p in [0, 77, 255] {
            let full = h.sigma(8, p);
            for stage in 0..9 {
                assert_eq!(h.sigma(stage, p)[..stage], full[..stage]);
            }
        }
        let flat = h.sigma_map(2);
        assert_eq!(flat.len(), 256 * 8);
        assert_eq!(&flat[192 * 8..193 * 8], &[2, 2, 1, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn sigma_inverse_round_trips_and_rejects_bad_codes() {
        let h = Hierarchy::from_maps_exact(8, raster_maps(8)).unwrap();
        for stage in 0..h.num_stages() {
            for p in 0..h.num_positions() {
                assert_eq!(
                    label_from_sigma(&h.sigma(stage, p), stage).unwrap(),
                    h.label(stage, p)
                );
            }
        }
        assert_eq!(label_from_sigma(&[2, 2, 1, 1], 2).unwrap(), 3);
        assert_eq!(label_from_sigma(&[2, 0, 1], 2).unwrap(), 2);
        assert!(matches!(
            label_from_sigma(&[2, 1, 1], 2),
            Err(GranularityError::BadSigma {
                channel: 1,
                value: 1,
                ..
            })
        ));
        assert!(matches!(
            label_from_sigma(&[2, 0, 0], 2),
            Err(GranularityError::BadSigma {
                channel: 2,
                value: 0,
                ..
            })
        ));
        assert!(matches!(
            label_from_sigma(&[2], 2),
            Err(GranularityError::Length {
                found: 1,
                expected: 2,
                ..
            })
        ));
        let mut long = vec![0u8; 33];
        long[0] = 2;
        assert!(label_from_sigma(&long, 33).is_err());
        long[0] = 0;
        long[32] = 2;
        assert_eq!(label_from_sigma(&long, 33).unwrap(), 1);
    }

    #[test]
    fn serde_validates_hierarchies() {
        let h = Hierarchy::from_maps_exact(2, raster_maps(2)).unwrap();
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Hierarchy>(&json).unwrap(), h);
        let bad = r#"{"grid_side":2,"maps":[[0,0,0,0],[0,0,1,1],[0,1,2,2]]}"#;
        assert!(serde_json::from_str::<Hierarchy>(bad).is_ok()); // Any balance
        let bad = r#"{"grid_side":2,"maps":[[0,0,0,0],[0,0,1,1],[0,1,2,4]]}"#;
        let err = serde_json::from_str::<Hierarchy>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("stage 2 position 3 has label 4"), "{err}");
    }
}
