//! The adjusted Rand index (Hubert & Arabie) of two partitions of the same items: 1 for the
//! same partition (whatever the label names), about 0 for independent ones, negative when they
//! agree less than chance. Used to compare structure maps, whose labels are cluster ids.

use std::collections::HashMap;

/// n choose 2, as f64.
fn pairs(n: u64) -> f64 {
    n as f64 * (n as f64 - 1.0) / 2.0
}

/// The adjusted Rand index of the labelings `a` and `b` (one label per item).
///
/// Degenerate cases, where the index is 0/0 (both labelings put everything in one cluster, or
/// both put every item in its own cluster, or fewer than two items): 1.0. Different lengths
/// are an error.
pub fn adjusted_rand_index(a: &[u32], b: &[u32]) -> Result<f64, String> {
    if a.len() != b.len() {
        return Err(format!("labelings of {} and {} items cannot be compared", a.len(), b.len()));
    }
    let n = a.len() as u64;
    if n < 2 {
        return Ok(1.0);
    }
    let mut joint: HashMap<(u32, u32), u64> = HashMap::new();
    let mut rows: HashMap<u32, u64> = HashMap::new();
    let mut cols: HashMap<u32, u64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *joint.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let index: f64 = joint.values().map(|&c| pairs(c)).sum();
    let sum_a: f64 = rows.values().map(|&c| pairs(c)).sum();
    let sum_b: f64 = cols.values().map(|&c| pairs(c)).sum();
    let expected = sum_a * sum_b / pairs(n);
    let max = 0.5 * (sum_a + sum_b);
    if (max - expected).abs() < 1e-12 {
        return Ok(1.0);
    }
    Ok((index - expected) / (max - expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_partition_under_any_names_is_one() {
        let a = [0, 0, 1, 1, 2, 2, 2];
        assert_eq!(adjusted_rand_index(&a, &a).unwrap(), 1.0);
        let renamed = [5, 5, 9, 9, 0, 0, 0];
        assert!((adjusted_rand_index(&a, &renamed).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn known_values() {
        // Contingency {2}, {1, 1}: index 1, expected 2·1/6, max 3/2 → (2/3)/(7/6) = 4/7.
        let v = adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]).unwrap();
        assert!((v - 4.0 / 7.0).abs() < 1e-12, "{v}");
        // One cluster against all singletons: no agreement beyond chance.
        assert_eq!(adjusted_rand_index(&[0, 0, 0, 0], &[0, 1, 2, 3]).unwrap(), 0.0);
        // Crossed halves: worse than chance. Contingency all ones: index 0, expected 2·2/6, max 2.
        let v = adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1]).unwrap();
        assert!((v - (-(2.0 / 3.0) / (2.0 - 2.0 / 3.0))).abs() < 1e-12, "{v}");
        assert!(v < 0.0);
    }

    #[test]
    fn independent_labelings_are_near_zero() {
        // Two balanced 8-way partitions of 4096 items that share nothing systematic.
        let a: Vec<u32> = (0..4096u32).map(|i| i % 8).collect();
        let b: Vec<u32> = (0..4096u32).map(|i| (i / 8) % 8).collect();
        let v = adjusted_rand_index(&a, &b).unwrap();
        assert!(v.abs() < 0.01, "{v}");
    }

    #[test]
    fn degenerate_and_bad_inputs() {
        assert_eq!(adjusted_rand_index(&[], &[]).unwrap(), 1.0);
        assert_eq!(adjusted_rand_index(&[3, 3, 3], &[1, 1, 1]).unwrap(), 1.0);
        assert!(adjusted_rand_index(&[1, 2], &[1]).is_err());
    }
}
