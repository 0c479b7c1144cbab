//! Per-stage random streams (method §10.6): every random number of stage i comes from a stream
//! derived from (seed of stage i, stage, purpose), so re-running or re-seeding one stage never
//! shifts the numbers of another.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a stream is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// Multinomial draws of content codes.
    Content = 1,
    /// Initial noise of the structure flow (and the noise-only last split).
    StructureNoise = 2,
    /// Gumbel noise of a Gumbel-top-k Split.
    Gumbel = 3,
}

use crate::granularity::rng::splitmix64 as splitmix;

/// The stream of (seed, stage, purpose).
pub fn stream(seed: u64, stage: usize, purpose: Purpose) -> ChaCha8Rng {
    let key = splitmix(splitmix(splitmix(seed) ^ stage as u64) ^ purpose as u64);
    ChaCha8Rng::seed_from_u64(key)
}

/// A standard normal draw (Box–Muller on two uniforms; deterministic given the stream).
pub fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// A standard Gumbel draw.
pub fn gumbel(rng: &mut ChaCha8Rng) -> f32 {
    let u: f64 = rng.random::<f64>().clamp(1e-12, 1.0 - 1e-12);
    (-(-u.ln()).ln()) as f32
}

/// `n` standard normal values from the stream of (seed, stage, purpose).
pub fn normals(seed: u64, stage: usize, purpose: Purpose, n: usize) -> Vec<f32> {
    let mut rng = stream(seed, stage, purpose);
    (0..n).map(|_| normal(&mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_independent_and_reproducible() {
        assert_eq!(normals(1, 3, Purpose::Content, 5), normals(1, 3, Purpose::Content, 5));
        assert_ne!(normals(1, 3, Purpose::Content, 5), normals(1, 4, Purpose::Content, 5));
        assert_ne!(normals(1, 3, Purpose::Content, 5), normals(2, 3, Purpose::Content, 5));
        assert_ne!(normals(1, 3, Purpose::Content, 5), normals(1, 3, Purpose::StructureNoise, 5));
        let v = normals(9, 0, Purpose::StructureNoise, 20000);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{mean} {var}");
    }
}
