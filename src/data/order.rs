//! Deterministic orderings: seeded shuffles for splits and epochs.
//!
//! Everything here depends only on ChaCha8's output stream (a fixed algorithm) and on code in this file,
//! not on `rand`'s shuffle or range-sampling algorithms, which may change between `rand` releases. So a
//! seed gives the same split and the same epoch order on every platform, run and dependency update.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 64-bit FNV-1a of `bytes`: a tiny hash that, unlike std's `DefaultHasher`, is the same in every run
/// and every Rust release. Used to give each class its own shuffle stream.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Stream tags, so that e.g. `(seed, epoch 3)` and `(seed, index 3)` never share random numbers.
pub(crate) const TAG_SPLIT: u64 = 0x7370_6c69_7400_0001; // "split"
pub(crate) const TAG_EPOCH: u64 = 0x6570_6f63_6800_0002; // "epoch"
pub(crate) const TAG_SHAPES: u64 = 0x7368_6170_6500_0003; // "shape"

/// A ChaCha8 generator whose 256-bit seed is `a ‖ b ‖ tag ‖ 0`, each little-endian.
pub(crate) fn seeded_rng(a: u64, b: u64, tag: u64) -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    seed[0..8].copy_from_slice(&a.to_le_bytes());
    seed[8..16].copy_from_slice(&b.to_le_bytes());
    seed[16..24].copy_from_slice(&tag.to_le_bytes());
    ChaCha8Rng::from_seed(seed)
}

/// A uniform integer in `0..n` (`n ≥ 1`), without modulo bias (rejection sampling).
pub(crate) fn below(rng: &mut impl RngCore, n: u64) -> u64 {
    debug_assert!(n > 0);
    let n = n.max(1);
    // Largest multiple of n that fits; values at or above it are redrawn.
    let zone = u64::MAX - (u64::MAX % n + 1) % n;
    loop {
        let x = rng.next_u64();
        if x <= zone {
            return x % n;
        }
    }
}

/// A uniform `f32` in `[0, 1)` with 24 random bits.
pub(crate) fn unit_f32(rng: &mut impl RngCore) -> f32 {
    (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32
}

/// Fisher–Yates shuffle driven by [`below`].
pub(crate) fn shuffle<T>(items: &mut [T], rng: &mut impl RngCore) {
    fisher_yates(items, |n| below(rng, n as u64) as usize);
}

/// The one Fisher–Yates loop: `index_below(n)` draws the partner of position `n − 1`.
fn fisher_yates<T>(items: &mut [T], mut index_below: impl FnMut(usize) -> usize) {
    for i in (1..items.len()).rev() {
        let j = index_below(i + 1);
        items.swap(i, j);
    }
}

/// Fisher–Yates shuffle with rand's uniform ranges: the tokenizer's split and epoch orders and
/// the judge's batches use it. It differs from [`shuffle`] only in how an index below `i + 1`
/// is drawn; both stay, because each fixes splits that trained checkpoints and the model card
/// depend on (changing either would move images between training and held-out sets).
pub fn shuffle_uniform<T>(items: &mut [T], rng: &mut impl rand::Rng) {
    fisher_yates(items, |n| rng.random_range(0..=n - 1));
}

/// The order in which to visit `indices` during `epoch`: a permutation of `indices` that depends only
/// on `(seed, epoch)` and on `indices` itself. Each epoch gets a fresh order; the same `(seed, epoch)`
/// always gives the same one, so a resumed training run sees the same batches.
///
/// Batches are then `order.chunks(batch_size)`.
pub fn epoch_order(indices: &[usize], epoch: u64, seed: u64) -> Vec<usize> {
    let mut order = indices.to_vec();
    shuffle(&mut order, &mut seeded_rng(seed, epoch, TAG_EPOCH));
    order
}

/// A deterministic train / holdout split, stratified by class: `(train, holdout)`, each sorted.
///
/// Each class is `(name, groups)`: its items partitioned into groups that must stay on one side (one
/// item per group for independent images; every rendition of one emoji for the emoji sheet, so that a
/// held-out emoji is never seen in another style during training). Groups are given in a canonical
/// order and shuffled by a ChaCha8 generator seeded from `seed` and the FNV-1a hash of the class
/// name. The class's target is `max(1, round(fraction · n))` of its `n` items (none when `n < 2`);
/// going through the groups in shuffled order, each group is held out if that brings the held-out
/// count closer to the target (ties hold out; the first group always is), and at least one group is
/// always left for training. With one item per group this holds out exactly the target.
/// Because each class has its own stream, adding or removing a class does not change the split of the
/// others. A `fraction` of 0 or less (or NaN) holds nothing out.
pub fn stratified_split<'a>(
    classes: impl IntoIterator<Item = (&'a str, Vec<Vec<usize>>)>,
    holdout_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut train = Vec::new();
    let mut holdout = Vec::new();
    for (name, mut groups) in classes {
        let n: usize = groups.iter().map(Vec::len).sum();
        let target = if n >= 2 && holdout_fraction > 0.0 {
            let wanted = (holdout_fraction.min(1.0) * n as f64).round() as usize;
            wanted.max(1).min(n - 1)
        } else {
            0
        };
        shuffle(
            &mut groups,
            &mut seeded_rng(seed, fnv1a64(name.as_bytes()), TAG_SPLIT),
        );
        let mut held = 0;
        let mut held_groups = 0;
        for group in &groups {
            let wanted = held < target && {
                let overshoot = (held + group.len()).saturating_sub(target);
                held == 0 || overshoot <= target - held
            };
            if wanted && held_groups + 1 < groups.len() {
                held += group.len();
                held_groups += 1;
                holdout.extend_from_slice(group);
            } else {
                train.extend_from_slice(group);
            }
        }
    }
    train.sort_unstable();
    holdout.sort_unstable();
    (train, holdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn epoch_order_is_a_deterministic_permutation() {
        let indices: Vec<usize> = (10..60).collect();
        let a = epoch_order(&indices, 0, 7);
        assert_eq!(a, epoch_order(&indices, 0, 7));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, indices);
        assert_ne!(a, indices, "50 items should not stay in order");
        assert_ne!(a, epoch_order(&indices, 1, 7), "epochs differ");
        assert_ne!(a, epoch_order(&indices, 0, 8), "seeds differ");
        assert!(epoch_order(&[], 3, 3).is_empty());
        assert_eq!(epoch_order(&[5], 3, 3), vec![5]);
    }

    #[test]
    fn grouped_split_keeps_groups_whole() {
        // One class of 5 groups of 4 items: 20% = 4 items = exactly one group held out.
        let groups: Vec<Vec<usize>> = (0..5).map(|g| (4 * g..4 * g + 4).collect()).collect();
        let (train, holdout) = stratified_split([("c", groups.clone())], 0.2, 1);
        assert_eq!(holdout.len(), 4);
        assert_eq!(train.len(), 16);
        assert!(
            groups.iter().any(|g| *g == holdout),
            "one whole group: {holdout:?}"
        );
        assert_eq!(
            stratified_split([("c", groups.clone())], 0.2, 1),
            (train, holdout)
        );
        // Even a fraction of 1 leaves one group for training.
        let (train, _) = stratified_split([("c", groups.clone())], 1.0, 1);
        assert_eq!(train.len(), 4);
        // A group that would overshoot more than it helps stays in training, but the first never does.
        let (_, holdout) = stratified_split([("c", groups.clone())], 0.05, 1);
        assert_eq!(
            holdout.len(),
            4,
            "target 1: one group of 4 is held out anyway"
        );
        let mixed = vec![
            vec![0, 1, 2, 3, 4, 5, 6, 7],
            vec![8],
            vec![9],
            vec![10],
            vec![11],
        ];
        for seed in 0..20 {
            let (_, holdout) = stratified_split([("m", mixed.clone())], 0.25, seed);
            // Target 3: either three singletons, or the big group alone when it comes first.
            assert!(
                holdout.len() == 3 || holdout.len() == 8,
                "seed {seed}: {holdout:?}"
            );
        }
    }

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut rng = seeded_rng(1, 2, 3);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let v = below(&mut rng, 7);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(below(&mut rng, 1), 0);
        let u = unit_f32(&mut rng);
        assert!((0.0..1.0).contains(&u));
    }
}
