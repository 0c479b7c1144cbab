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
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
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
