//! The Fréchet distance between two sets of feature vectors, each summarised by a Gaussian
//! (mean μ, covariance Σ):
//!
//! d² = |μ₁ − μ₂|² + Tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½)
//!
//! Computed in f64 with symmetric eigendecompositions only: Σ₁^½ from the eigenvalues of Σ₁
//! (negative round-off clipped to 0), and the trace of the outer square root as the sum of the
//! square roots of the eigenvalues of the symmetric matrix Σ₁^½ Σ₂ Σ₁^½. This form avoids the
//! non-symmetric matrix square root of Σ₁Σ₂ (and its complex round-off) entirely.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// A set of feature vectors summarised by its mean and (unbiased, n − 1) covariance.
#[derive(Clone, Debug)]
pub struct Gaussian {
    /// Mean, length `dim`.
    pub mean: DVector<f64>,
    /// Covariance, `dim × dim`.
    pub cov: DMatrix<f64>,
    /// Number of vectors it was estimated from.
    pub count: usize,
}

/// Errors of the statistics.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrechetError {
    /// Fewer than two vectors, or a length that is not a multiple of the dimension.
    #[error("feature set: {0}")]
    Shape(String),
    /// The two Gaussians have different dimensions.
    #[error("feature sets of dimension {0} and {1} cannot be compared")]
    Dimension(usize, usize),
    /// A value is NaN or infinite.
    #[error("feature set holds a non-finite value")]
    NonFinite,
}

impl Gaussian {
    /// Mean and covariance of `n = features.len() / dim` row vectors stored one after another.
    pub fn fit(features: &[f32], dim: usize) -> Result<Self, FrechetError> {
        if dim == 0 || features.len() % dim != 0 {
            return Err(FrechetError::Shape(format!("{} values are not rows of {dim}", features.len())));
        }
        let n = features.len() / dim;
        if n < 2 {
            return Err(FrechetError::Shape(format!("{n} vectors; at least 2 are needed for a covariance")));
        }
        if features.iter().any(|v| !v.is_finite()) {
            return Err(FrechetError::NonFinite);
        }
        let x = DMatrix::<f64>::from_iterator(dim, n, features.iter().map(|&v| v as f64)); // column = one vector
        let mean = x.column_mean();
        let mut centred = x;
        for mut col in centred.column_iter_mut() {
            col -= &mean;
        }
        let cov = (&centred * centred.transpose()) / (n as f64 - 1.0);
        Ok(Self { mean, cov, count: n })
    }
}

/// Symmetric part of a square matrix (removes round-off asymmetry before an eigendecomposition).
fn symmetrise(m: DMatrix<f64>) -> DMatrix<f64> {
    (&m + m.transpose()) * 0.5
}

/// The square root of a symmetric positive semi-definite matrix (eigenvalues below 0 → 0).
pub fn psd_sqrt(m: &DMatrix<f64>) -> DMatrix<f64> {
    let eig = SymmetricEigen::new(symmetrise(m.clone()));
    let d = DMatrix::from_diagonal(&eig.eigenvalues.map(|l| l.max(0.0).sqrt()));
    &eig.eigenvectors * d * eig.eigenvectors.transpose()
}

/// The Fréchet distance (squared, as FID reports it) between two Gaussians; never negative.
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> Result<f64, FrechetError> {
    let (da, db) = (a.mean.len(), b.mean.len());
    if da != db {
        return Err(FrechetError::Dimension(da, db));
    }
    let diff = (&a.mean - &b.mean).norm_squared();
    let s1 = psd_sqrt(&a.cov);
    let inner = symmetrise(&s1 * &b.cov * &s1);
    let tr_sqrt: f64 = SymmetricEigen::new(inner).eigenvalues.iter().map(|l| l.max(0.0).sqrt()).sum();
    let d = diff + a.cov.trace() + b.cov.trace() - 2.0 * tr_sqrt;
    if !d.is_finite() {
        return Err(FrechetError::NonFinite);
    }
    Ok(d.max(0.0))
}

/// Fits both feature sets (rows of `dim`) and returns their Fréchet distance.
pub fn frechet_of_features(a: &[f32], b: &[f32], dim: usize) -> Result<f64, FrechetError> {
    frechet_distance(&Gaussian::fit(a, dim)?, &Gaussian::fit(b, dim)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn identical_sets_are_at_distance_zero() {
        let dim = 16;
        let x = noise(200 * dim, 3);
        let d = frechet_of_features(&x, &x, dim).unwrap();
        assert!(d.abs() < 1e-8, "{d}");
    }

    #[test]
    fn shifting_the_mean_adds_its_squared_length() {
        let dim = 8;
        let x = noise(300 * dim, 5);
        let shift: Vec<f32> = (0..dim).map(|i| 0.25 * i as f32 - 0.5).collect();
        let y: Vec<f32> = x.iter().enumerate().map(|(k, v)| v + shift[k % dim]).collect();
        let want: f64 = shift.iter().map(|&s| (s as f64) * (s as f64)).sum();
        let d = frechet_of_features(&x, &y, dim).unwrap();
        assert!((d - want).abs() < 1e-6 * want.max(1.0), "{d} vs {want}");
    }

    #[test]
    fn one_dimensional_gaussians_match_the_closed_form() {
        // d² = (μ₁ − μ₂)² + (σ₁ − σ₂)² in one dimension.
        let g = |mu: f64, var: f64| Gaussian {
            mean: DVector::from_element(1, mu),
            cov: DMatrix::from_element(1, 1, var),
            count: 10,
        };
        let d = frechet_distance(&g(1.0, 4.0), &g(-2.0, 9.0)).unwrap();
        assert!((d - (9.0 + 1.0)).abs() < 1e-12, "{d}");
        // From samples: {0, 2} has mean 1 and variance 2; {10, 14} mean 12, variance 8.
        let d = frechet_of_features(&[0.0, 2.0], &[10.0, 14.0], 1).unwrap();
        let want = 121.0 + (8f64.sqrt() - 2f64.sqrt()).powi(2);
        assert!((d - want).abs() < 1e-9, "{d} vs {want}");
    }

    #[test]
    fn diagonal_covariances_add_per_axis() {
        // Commuting (diagonal) covariances: Σ (√a_i − √b_i)².
        let a = Gaussian { mean: DVector::zeros(3), cov: DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 4.0, 9.0])), count: 5 };
        let b = Gaussian { mean: DVector::zeros(3), cov: DMatrix::from_diagonal(&DVector::from_vec(vec![4.0, 4.0, 1.0])), count: 5 };
        let d = frechet_distance(&a, &b).unwrap();
        assert!((d - (1.0 + 0.0 + 4.0)).abs() < 1e-10, "{d}");
        // Symmetric in its arguments, also for non-commuting covariances.
        let x = noise(50 * 4, 9);
        let y: Vec<f32> = noise(80 * 4, 11).iter().map(|v| v * 3.0 + 0.2).collect();
        let (d1, d2) = (frechet_of_features(&x, &y, 4).unwrap(), frechet_of_features(&y, &x, 4).unwrap());
        assert!((d1 - d2).abs() < 1e-9 * d1.max(1.0), "{d1} vs {d2}");
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        assert!(matches!(Gaussian::fit(&[1.0, 2.0, 3.0], 2), Err(FrechetError::Shape(_))));
        assert!(matches!(Gaussian::fit(&[1.0, 2.0], 2), Err(FrechetError::Shape(_))));
        assert_eq!(Gaussian::fit(&[1.0, f32::NAN, 0.0, 0.0], 2).unwrap_err(), FrechetError::NonFinite);
        let a = Gaussian::fit(&noise(20, 1), 2).unwrap();
        let b = Gaussian::fit(&noise(30, 2), 3).unwrap();
        assert_eq!(frechet_distance(&a, &b).unwrap_err(), FrechetError::Dimension(2, 3));
    }
}
