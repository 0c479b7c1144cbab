//! Sampling settings and their per-stage schedules (method §5.2).

use serde::{Deserialize, Serialize};

/// The most structure flow steps a run accepts (the paper uses 25; beyond this the run takes
/// hours and gains nothing measurable; the editor tests use 4,000 to make a stage take a while).
pub const MAX_FLOW_STEPS: usize = 10_000;

/// A value that changes linearly over the stages: `start` at stage 0, `end` at the last stage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    /// Value at stage 0.
    pub start: f32,
    /// Value at the last stage.
    pub end: f32,
}

impl Linear {
    /// Value at `stage` of `num_stages`.
    pub fn at(&self, stage: usize, num_stages: usize) -> f32 {
        if num_stages <= 1 {
            return self.start;
        }
        self.start + (self.end - self.start) * stage as f32 / (num_stages - 1) as f32
    }
}

/// Everything that shapes sampling apart from the controls. The defaults are the paper's settings
/// (§5.2, [`SamplerSettings::paper`]) with stronger guidance, chosen by measurement on the bundled
/// model (docs/model-card.md, "Choosing the guidance"): content CFG 12→20 (paper: 1→3.5),
/// structure CFG 4 at every stage (paper: 1→2.5); everything else as the paper.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerSettings {
    /// Classifier-free guidance of the content logits; `None` runs no unconditional pass.
    pub content_cfg: Option<Linear>,
    /// Classifier-free guidance of the structure velocity; `None` runs no unconditional pass.
    pub structure_cfg: Option<Linear>,
    /// Top-p from `start` (stage 0) to `end` (last stage) on the log schedule of §5.2;
    /// `None` disables top-p.
    pub top_p: Option<Linear>,
    /// Keep only the k most likely codes (0 = off, 1 = greedy).
    pub top_k: usize,
    /// Softmax temperature of the content logits.
    pub temperature: f32,
    /// Euler steps of the structure flow (the editor previews with fewer).
    pub flow_steps: usize,
    /// Gumbel-top-k Split (sampling) instead of the deterministic top-k.
    pub gumbel: bool,
}

impl Default for SamplerSettings {
    fn default() -> Self {
        Self {
            content_cfg: Some(Linear { start: 12.0, end: 20.0 }),
            structure_cfg: Some(Linear { start: 4.0, end: 4.0 }),
            ..Self::paper()
        }
    }
}

impl SamplerSettings {
    /// The settings of the paper's reported results (§5.2): content CFG 1→3.5, structure CFG
    /// 1→2.5, top-p 1→0.5 on the log schedule, temperature 1, no top-k, 25 flow steps,
    /// deterministic Split.
    pub fn paper() -> Self {
        Self {
            content_cfg: Some(Linear { start: 1.0, end: 3.5 }),
            structure_cfg: Some(Linear { start: 1.0, end: 2.5 }),
            top_p: Some(Linear { start: 1.0, end: 0.5 }),
            top_k: 0,
            temperature: 1.0,
            flow_steps: 25,
            gumbel: false,
        }
    }

    /// What the editor previews with: the defaults, with 10 structure flow steps instead of 25
    /// (docs/benchmarks.md, "Fewer flow steps").
    pub fn editor() -> Self {
        Self { flow_steps: 10, ..Self::default() }
    }

    /// Greedy content, no guidance: what the reference vectors' `gen_nocfg` run uses.
    pub fn greedy() -> Self {
        Self { content_cfg: None, structure_cfg: None, top_p: None, top_k: 1, ..Self::default() }
    }

    /// Top-p at `stage` of `num_stages`: with K = S − 1, v = K^(stage/K) and
    /// p = end + (start − end)·(K − v)/(K − 1) — for S = 9 exactly the table of §5.2.
    pub fn top_p_at(&self, stage: usize, num_stages: usize) -> Option<f32> {
        let s = self.top_p?;
        let k = (num_stages.saturating_sub(1)).max(1) as f64;
        if k <= 1.0 {
            return Some(s.start);
        }
        let v = k.powf(stage as f64 / k);
        Some((s.end as f64 + (s.start - s.end) as f64 * (k - v) / (k - 1.0)) as f32)
    }

    /// Checks the settings; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.flow_steps == 0 || self.flow_steps > MAX_FLOW_STEPS {
            return Err(format!("flow_steps {} must be 1 to {MAX_FLOW_STEPS}", self.flow_steps));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature {} must be positive", self.temperature));
        }
        for (name, sched) in [("content_cfg", self.content_cfg), ("structure_cfg", self.structure_cfg)] {
            if let Some(g) = sched {
                if !(g.start.is_finite() && g.end.is_finite() && g.start.abs() <= 1000.0 && g.end.abs() <= 1000.0) {
                    return Err(format!("{name} {}:{} must be finite, at most 1000 in size", g.start, g.end));
                }
            }
        }
        if let Some(p) = self.top_p {
            for v in [p.start, p.end] {
                if !(v > 0.0 && v <= 1.0) {
                    return Err(format!("top_p {v} must be in (0, 1]"));
                }
            }
        }
        Ok(())
    }
}

/// The flow's time grid (§5.3): t_j = 1 − j/n in float32, shifted by μ = 0.5:
/// t' = e^μ / (e^μ + 1/t − 1), computed in f64 and rounded to f32. Returns n + 1 times from 1 to 0.
pub fn flow_times(steps: usize) -> Vec<f32> {
    let mu = 0.5f64.exp();
    (0..=steps)
        .map(|j| {
            let tau = 1.0f32 - j as f32 / steps as f32;
            let tau = if j == steps { 0.0 } else { tau };
            if tau <= 0.0 { 0.0 } else { (mu / (mu + (1.0 / tau as f64 - 1.0))) as f32 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_match_the_method_table() {
        let s = SamplerSettings::paper();
        let g: Vec<f32> = (0..9).map(|i| s.content_cfg.unwrap().at(i, 9)).collect();
        assert!((g[1] - 1.3125).abs() < 1e-6 && (g[8] - 3.5).abs() < 1e-6);
        let p: Vec<f32> = (0..9).map(|i| s.top_p_at(i, 9).unwrap()).collect();
        for (a, b) in p.iter().zip([1.0, 0.9788, 0.9513, 0.9156, 0.8694, 0.8094, 0.7317, 0.6308, 0.5]) {
            assert!((a - b).abs() < 1e-4, "{p:?}");
        }
        let t = flow_times(25);
        assert_eq!(t.len(), 26);
        assert_eq!(t[0], 1.0);
        assert_eq!(t[25], 0.0);
        assert!((t[1] - 0.9754).abs() < 1e-4 && (t[24] - 0.0643).abs() < 1e-4, "{t:?}");
    }
}
