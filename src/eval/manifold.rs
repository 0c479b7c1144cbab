//! Precision and recall of a generated set against a real one, in a feature space, by k-nearest-
//! neighbour manifold estimates (improved precision and recall, Kynkäänniemi et al. 2019):
//!
//! * each real feature vector gets a ball whose radius is the distance to its k-th nearest real
//!   neighbour; the union of the balls estimates the real manifold;
//! * **precision** = share of generated vectors inside at least one real ball (are the samples
//!   realistic?);
//! * **recall** = share of real vectors inside at least one ball of the generated set (radii from
//!   the generated set's own k-th neighbours): how much of the real variety is covered.
//!
//! A set that collapses to a few good images has high precision and low recall; a blurry set
//! spread everywhere has the opposite. Both are reported next to the Fréchet distance, which mixes
//! the two.

use serde::Serialize;

/// The neighbour rank the paper recommends.
pub const DEFAULT_K: usize = 3;

/// Precision and recall of one set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PrecisionRecall {
    /// Share of the evaluated set inside the reference manifold.
    pub precision: f64,
    /// Share of the reference set inside the evaluated set's manifold.
    pub recall: f64,
}

fn dist2(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(x - y) * f64::from(x - y)).sum()
}

/// Squared radius of every row of `set` (`[n, dim]` row-major): the squared distance to its k-th
/// nearest other row (k clamped to n − 1; 0 for a set of one).
fn radii2(set: &[f32], dim: usize, k: usize) -> Vec<f64> {
    let n = set.len() / dim.max(1);
    let k = k.min(n.saturating_sub(1));
    (0..n)
        .map(|i| {
            if k == 0 {
                return 0.0;
            }
            let a = &set[i * dim..(i + 1) * dim];
            let mut d: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| dist2(a, &set[j * dim..(j + 1) * dim])).collect();
            let (_, kth, _) = d.select_nth_unstable_by(k - 1, |x, y| x.total_cmp(y));
            *kth
        })
        .collect()
}

/// Share of rows of `query` inside at least one ball (centre row of `manifold`, squared radius).
fn coverage(query: &[f32], manifold: &[f32], r2: &[f64], dim: usize) -> f64 {
    let nq = query.len() / dim.max(1);
    if nq == 0 {
        return 0.0;
    }
    let inside = (0..nq)
        .filter(|&i| {
            let q = &query[i * dim..(i + 1) * dim];
            r2.iter().enumerate().any(|(j, &r)| dist2(q, &manifold[j * dim..(j + 1) * dim]) <= r)
        })
        .count();
    inside as f64 / nq as f64
}

/// Precision and recall of `generated` against `real` (both `[n, dim]` row-major features).
pub fn precision_recall(generated: &[f32], real: &[f32], dim: usize, k: usize) -> Result<PrecisionRecall, String> {
    if dim == 0 || generated.len() % dim != 0 || real.len() % dim != 0 {
        return Err(format!("feature sets of {} and {} values do not split into rows of {dim}", generated.len(), real.len()));
    }
    if generated.len() / dim < 2 || real.len() / dim < 2 {
        return Err("precision and recall need at least two images in each set".into());
    }
    let real_r2 = radii2(real, dim, k);
    let gen_r2 = radii2(generated, dim, k);
    Ok(PrecisionRecall { precision: coverage(generated, real, &real_r2, dim), recall: coverage(real, generated, &gen_r2, dim) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize, offset: f32, spacing: f32) -> Vec<f32> {
        (0..n * n).flat_map(|i| [offset + (i % n) as f32 * spacing, offset + (i / n) as f32 * spacing]).collect()
    }

    #[test]
    fn identical_sets_are_perfect_and_disjoint_sets_score_zero() {
        let real = grid(6, 0.0, 1.0);
        let pr = precision_recall(&real, &real, 2, DEFAULT_K).unwrap();
        assert_eq!(pr, PrecisionRecall { precision: 1.0, recall: 1.0 });
        let far = grid(6, 100.0, 1.0);
        let pr = precision_recall(&far, &real, 2, DEFAULT_K).unwrap();
        assert_eq!(pr, PrecisionRecall { precision: 0.0, recall: 0.0 });
    }

    #[test]
    fn collapse_keeps_precision_and_loses_recall() {
        let real = grid(8, 0.0, 1.0);
        // Generated: a tight cluster inside one corner of the real grid.
        let collapsed = grid(4, 0.2, 0.1);
        let pr = precision_recall(&collapsed, &real, 2, DEFAULT_K).unwrap();
        assert_eq!(pr.precision, 1.0);
        assert!(pr.recall < 0.1, "{pr:?}");
        // Spread far beyond the real grid: recall stays, precision drops.
        let spread = grid(8, -28.0, 8.0);
        let pr = precision_recall(&spread, &real, 2, DEFAULT_K).unwrap();
        assert!(pr.precision < 0.2 && pr.recall > 0.9, "{pr:?}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(precision_recall(&[0.0; 5], &[0.0; 4], 2, 3).is_err());
        assert!(precision_recall(&[0.0; 2], &[0.0; 4], 2, 3).is_err());
    }
}
