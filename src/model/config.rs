//! Model configurations and their named presets (method §2.2–2.4, §10.1–10.2).
//!
//! A configuration is plain serde data stored with every checkpoint; loading a checkpoint
//! compares it field by field against the expected one (see `checkpoint.rs`).

use serde::{Deserialize, Serialize};

use crate::granularity::num_stages_for;

/// Shape of the multi-granularity tokenizer (encoder, decoder, codebook, Φ per stage).
///
/// The encoder has one level per entry of `channel_mult`; every level but the last halves the
/// resolution, so the latent grid side is `image_size / 2^(levels−1)`. The decoder mirrors it
/// with `num_res_blocks + 1` residual blocks per level, as in the reference (§2.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenizerConfig {
    /// Input/output image side in pixels.
    pub image_size: usize,
    /// Channels of the first encoder level.
    pub base_channels: usize,
    /// Channel multiplier per level (encoder order; the decoder uses the same list).
    pub channel_mult: Vec<usize>,
    /// Residual blocks per encoder level (the decoder uses one more).
    pub num_res_blocks: usize,
    /// Latent channels e (= codebook vector size).
    pub latent_channels: usize,
    /// Codebook entries V.
    pub codebook_size: usize,
    /// GroupNorm groups (32 in the reference).
    pub norm_groups: usize,
    /// Φ(h) = h + phi_weight · conv3×3(h); 0.5 in the reference (§2.4).
    pub phi_weight: f64,
}

impl TokenizerConfig {
    /// The bundled model's tokenizer: 32×32 images on an 8×8 latent grid (7 stages), sized to
    /// train on two CPU cores. Provisional until the bundled-model issue measures alternatives.
    pub fn small() -> Self {
        Self {
            image_size: 32,
            base_channels: 32,
            channel_mult: vec![1, 2, 2],
            num_res_blocks: 1,
            latent_channels: 32,
            codebook_size: 1024,
            norm_groups: 32,
            phi_weight: 0.5,
        }
    }

    /// A very small tokenizer for tests: 16×16 images, 4×4 grid (5 stages).
    pub fn test_tiny() -> Self {
        Self {
            image_size: 16,
            base_channels: 8,
            channel_mult: vec![1, 2, 2],
            num_res_blocks: 1,
            latent_channels: 8,
            codebook_size: 64,
            norm_groups: 4,
            phi_weight: 0.5,
        }
    }

    /// The reference shape of `../shared/testvectors/official-tiny/README.md` §1.1:
    /// 64×64 images, 16×16 grid, base 32, mult [1,2,1], codebook 512.
    pub fn reference_tiny() -> Self {
        Self {
            image_size: 64,
            base_channels: 32,
            channel_mult: vec![1, 2, 1],
            num_res_blocks: 1,
            latent_channels: 32,
            codebook_size: 512,
            norm_groups: 32,
            phi_weight: 0.5,
        }
    }

    /// The paper's tokenizer (§2.2–2.4): 256×256 images, 16×16 grid, base 128,
    /// mult [1,2,4,4,4], 2 residual blocks per level, codebook 4096.
    pub fn paper() -> Self {
        Self {
            image_size: 256,
            base_channels: 128,
            channel_mult: vec![1, 2, 4, 4, 4],
            num_res_blocks: 2,
            latent_channels: 32,
            codebook_size: 4096,
            norm_groups: 32,
            phi_weight: 0.5,
        }
    }

    /// Looks a preset up by name.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "small" => Some(Self::small()),
            "test-tiny" => Some(Self::test_tiny()),
            "reference-tiny" => Some(Self::reference_tiny()),
            "paper" => Some(Self::paper()),
            _ => None,
        }
    }

    /// Names accepted by [`TokenizerConfig::preset`].
    pub const PRESETS: [&'static str; 4] = ["small", "test-tiny", "reference-tiny", "paper"];

    /// Side of the latent grid.
    pub fn grid_side(&self) -> usize {
        self.image_size >> (self.channel_mult.len().saturating_sub(1))
    }

    /// Number of granularity stages S = log2(grid²) + 1.
    pub fn num_stages(&self) -> usize {
        num_stages_for(self.grid_side()).unwrap_or(0)
    }

    /// Checks that the shape is buildable; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.channel_mult.is_empty() {
            return Err("channel_mult must have at least one level".into());
        }
        let downs = self.channel_mult.len() - 1;
        if self.image_size == 0 || self.image_size % (1 << downs) != 0 {
            return Err(format!(
                "image_size {} is not divisible by 2^{} (one halving per level but the last)",
                self.image_size, downs
            ));
        }
        num_stages_for(self.grid_side())
            .map_err(|e| format!("latent grid {}: {e}", self.grid_side()))?;
        for (name, v) in [
            ("base_channels", self.base_channels),
            ("latent_channels", self.latent_channels),
            ("codebook_size", self.codebook_size),
            ("norm_groups", self.norm_groups),
        ] {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.base_channels > 4096 || self.latent_channels > 4096 || self.codebook_size > 1 << 20 {
            return Err(format!(
                "base_channels {}, latent_channels {} (each at most 4096) or codebook_size {} (at most 2^20) is out of range",
                self.base_channels, self.latent_channels, self.codebook_size
            ));
        }
        for m in &self.channel_mult {
            let ch = m.checked_mul(self.base_channels).filter(|&c| c <= 1 << 16).ok_or_else(|| {
                format!("channel multiplier {m} × base_channels {} is out of range", self.base_channels)
            })?;
            if ch == 0 || ch % self.norm_groups != 0 {
                return Err(format!(
                    "channel count {ch} (base_channels × {m}) is not divisible by norm_groups {}",
                    self.norm_groups
                ));
            }
        }
        Ok(())
    }
}

/// Compares two serialisable configurations and names the first field that differs
/// ("codebook_size: checkpoint has 512, expected 1024").
pub fn first_difference<T: Serialize>(found: &T, expected: &T) -> Option<String> {
    let a = serde_json::to_value(found).ok()?;
    let b = serde_json::to_value(expected).ok()?;
    diff_values("", &a, &b)
}

fn diff_values(path: &str, a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => {
                        if let Some(d) = diff_values(&p, va, vb) {
                            return Some(d);
                        }
                    }
                    (Some(va), None) => return Some(format!("{p}: checkpoint has {va}, expected no such field")),
                    (None, Some(vb)) => return Some(format!("{p}: checkpoint lacks it, expected {vb}")),
                    (None, None) => {}
                }
            }
            None
        }
        _ if a == b => None,
        _ => Some(format!("{path}: checkpoint has {a}, expected {b}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_derive_stage_counts() {
        for name in TokenizerConfig::PRESETS {
            let c = TokenizerConfig::preset(name).unwrap();
            c.validate().unwrap();
        }
        assert_eq!(TokenizerConfig::small().grid_side(), 8);
        assert_eq!(TokenizerConfig::small().num_stages(), 7);
        assert_eq!(TokenizerConfig::reference_tiny().grid_side(), 16);
        assert_eq!(TokenizerConfig::reference_tiny().num_stages(), 9);
        assert_eq!(TokenizerConfig::paper().grid_side(), 16);
        assert_eq!(TokenizerConfig::test_tiny().num_stages(), 5);
    }

    #[test]
    fn difference_names_the_field() {
        let a = TokenizerConfig::small();
        let mut b = a.clone();
        assert_eq!(first_difference(&a, &b), None);
        b.codebook_size = 512;
        let d = first_difference(&a, &b).unwrap();
        assert!(d.starts_with("codebook_size"), "{d}");
        assert!(d.contains("1024") && d.contains("512"), "{d}");
    }

    #[test]
    fn invalid_shapes_are_refused() {
        let mut c = TokenizerConfig::small();
        c.image_size = 30;
        assert!(c.validate().unwrap_err().contains("image_size"));
        let mut c = TokenizerConfig::small();
        c.image_size = 24; // grid 6 is not a power of two
        assert!(c.validate().unwrap_err().contains("grid"));
        let mut c = TokenizerConfig::small();
        c.norm_groups = 5;
        assert!(c.validate().unwrap_err().contains("norm_groups"));
    }
}
