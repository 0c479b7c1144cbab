//! Drawing one code per cluster from its logits (method §5.2): temperature, top-k, top-p, then
//! one multinomial draw. Runs on the host: one row of `V` logits per cluster.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Draws a code from `logits` (one uniform is consumed from `rng`, whatever the settings, so the
/// stream stays aligned across settings).
pub fn sample_code(logits: &[f32], temperature: f32, top_k: usize, top_p: Option<f32>, rng: &mut ChaCha8Rng) -> u32 {
    let u: f64 = rng.random::<f64>();
    if top_k == 1 || logits.len() == 1 {
        return argmax(logits) as u32;
    }
    // Candidates sorted by logit, descending (stable: lower index first on ties).
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if top_k > 0 && top_k < order.len() {
        order.truncate(top_k);
    }
    let t = temperature as f64;
    let max = logits[order[0]] as f64 / t;
    let mut probs: Vec<f64> = order.iter().map(|&i| (logits[i] as f64 / t - max).exp()).collect();
    let sum: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= sum);
    if let Some(p) = top_p {
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (i, &q) in probs.iter().enumerate() {
            cum += q;
            if cum >= p as f64 {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep.max(1));
        order.truncate(keep.max(1));
        let s: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= s);
    }
    let mut cum = 0.0;
    for (i, &q) in probs.iter().enumerate() {
        cum += q;
        if u < cum {
            return order[i] as u32;
        }
    }
    order[probs.len() - 1] as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn greedy_top_k_and_top_p() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let l = [0.0f32, 3.0, 1.0, 3.0];
        assert_eq!(sample_code(&l, 1.0, 1, None, &mut rng), 1);
        // top-k 1 of a sharp distribution, top-p tiny keeps only the top token.
        for _ in 0..50 {
            assert_eq!(sample_code(&[0.0, 9.0, 1.0], 1.0, 0, Some(0.01), &mut rng), 1);
            let c = sample_code(&l, 1.0, 2, None, &mut rng);
            assert!(c == 1 || c == 3);
        }
        // Without filters every code appears with its probability.
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[sample_code(&[0.0, 0.0, (2.0f32).ln()], 1.0, 0, None, &mut rng) as usize] += 1;
        }
        assert!((counts[2] as f64 / 3000.0 - 0.5).abs() < 0.05, "{counts:?}");
    }
}
