//! Granularity: the plain-data core of NVG — structure maps, their bit codes, the clustering that
//! builds them from a latent, the Split that grows them during sampling, and the granularity
//! sequence document (structure maps + codes per stage).
//!
//! Follows `shared/docs/nvg-method.md` §2.5–2.6 (clustering and relabelling), §3 (bit code σ),
//! §5.3 (Split) and §10.1, §10.3–10.4 (any power-of-two grid, unbalanced maps, locks).
//! No burn, no egui: everything here is `std` + serde and can be unit-tested without a model.
//!
//! Notation used throughout:
//! - the latent grid is `side × side`, `L = side²` positions in raster order (`p = row·side + col`);
//! - there are `S = log2(L) + 1` stages `0..S`; stage `i` has `2^i` clusters (labels `0..2^i`);
//! - the children of cluster `P` at stage `i` are `2P` and `2P + 1` at stage `i + 1`, so
//!   `S_{i+1}(p) >> 1 == S_i(p)` always holds.

pub mod clustering;
pub mod fsio;
pub mod hierarchy;
pub mod sequence;
pub mod rng;
pub mod split;
pub mod text;
pub mod viz;

use std::path::PathBuf;

pub use clustering::{cluster_latent, cluster_latent_raw, relabel_raw_maps};
pub use hierarchy::{
    Balance, Hierarchy, HierarchyError, MAX_GRID_SIDE, label_from_sigma, num_clusters,
    num_stages_for, sigma_of_label, validate_maps,
};
pub use sequence::{GranularitySequence, SEQUENCE_FORMAT, SEQUENCE_VERSION, SequenceStage};
pub use split::{SplitOptions, split_balanced, split_general, split_gumbel};

/// Every error of the granularity module. Each message is one line that names the value and
/// what is wrong with it; wrapped errors are part of the message (no separate `source()` chain),
/// so printing the error once says everything.
#[derive(Debug, thiserror::Error)]
pub enum GranularityError {
    /// A structure-map invariant is broken (see [`HierarchyError`]).
    #[error("{0}")]
    Hierarchy(#[from] HierarchyError),

    /// A slice has the wrong number of elements.
    #[error("{what} has {found} values, expected {expected}")]
    Length {
        what: &'static str,
        found: usize,
        expected: usize,
    },

    /// A latent has no channels, so there is nothing to cluster on.
    #[error("latent has 0 channels; clustering needs at least 1")]
    NoChannels,

    /// A NaN or infinite value where a finite number is required.
    #[error("{what} at index {index} is {value}, expected a finite number")]
    NonFinite {
        what: &'static str,
        index: usize,
        value: f32,
    },

    /// The stage is too deep for `u32` labels (its children would not fit).
    #[error(
        "stage {stage} cannot be split: labels are u32, so the deepest splittable stage is {max}"
    )]
    StageTooDeep { stage: usize, max: usize },

    /// A balanced split needs every cluster to have the same even size.
    #[error(
        "stage {stage} has {positions} positions in {clusters} clusters; a balanced split needs every cluster to hold the same even number (≥ 2) of positions"
    )]
    NotEvenlySplittable {
        stage: usize,
        positions: usize,
        clusters: usize,
    },

    /// One cluster is bigger or smaller than the others in a balanced split.
    #[error(
        "stage {stage} cluster {label} has {size} positions; a balanced split needs exactly {expected} in every cluster"
    )]
    UnbalancedParent {
        stage: usize,
        label: u32,
        size: usize,
        expected: usize,
    },

    /// `SplitOptions::odd_counts` asks for more odd children than the parent has positions.
    #[error(
        "odd_counts asks for {count} odd children of cluster {label}, which has only {size} positions"
    )]
    OddCountTooLarge {
        label: u32,
        count: usize,
        size: usize,
    },

    /// Locks were given without the previous child map they refer to.
    #[error("position {position} is locked but no previous child map was given")]
    LockWithoutPrevious { position: usize },

    /// A locked position's previous child is not a child of its parent.
    #[error(
        "previous child map gives position {position} label {previous}, which is not a child of its parent {parent} (expected {} or {})",
        2 * *parent as u64,
        2 * *parent as u64 + 1
    )]
    PreviousNotChild {
        position: usize,
        previous: u32,
        parent: u32,
    },

    /// A σ vector (§3) that is not a valid bit code.
    #[error("σ value {value} at channel {channel} is invalid for stage {stage}: {reason}")]
    BadSigma {
        stage: usize,
        channel: usize,
        value: u8,
        reason: &'static str,
    },

    /// A granularity-sequence field has a value this version cannot use.
    #[error("granularity sequence field `{field}` {problem}")]
    SequenceField { field: String, problem: String },

    /// A file could not be read or written.
    #[error("could not {action} {}: {error}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },

    /// Text is not a valid document of the given format.
    #[error("not a valid {format} granularity sequence: {message}")]
    Parse {
        format: &'static str,
        message: String,
    },

    /// A document could not be serialised.
    #[error("could not write the granularity sequence as {format}: {message}")]
    Serialize {
        format: &'static str,
        message: String,
    },

    /// The file name does not say which format to use.
    #[error("{}: unknown extension; granularity sequences are .ron or .json files", path.display())]
    UnknownExtension { path: PathBuf },

    /// Any other error, while loading or saving the named file.
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<GranularityError>,
    },
}

/// Helpers shared by the unit tests of this module: a tiny deterministic PRNG and a reader for
/// the reference vectors (`$NVG_TESTVECTORS`, else `../shared/testvectors/official-tiny`).
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    /// splitmix64.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            let out = super::rng::splitmix64(self.0);
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            out
        }

        /// Uniform in `[lo, hi)`.
        pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
            lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
        }

        pub fn uniforms(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
            (0..n).map(|_| self.uniform(lo, hi)).collect()
        }
    }

    /// The reference vector folder, or None (with a message) when it is absent.
    pub fn testvectors() -> Option<PathBuf> {
        let dir = match std::env::var_os("NVG_TESTVECTORS") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/testvectors/official-tiny"),
        };
        if dir.join("tokenizer_vectors.safetensors").exists() {
            Some(dir)
        } else {
            eprintln!(
                "parity vectors not found at {} — parity test skipped",
                dir.display()
            );
            None
        }
    }

    /// A tensor of a safetensors file, as f64 values (F32, F64 and I64 only).
    pub struct Tensor {
        pub shape: Vec<usize>,
        pub values: Vec<f64>,
    }

    /// Reads a safetensors file by hand (8-byte header length, JSON header, raw little-endian
    /// data), so that these tests need no extra crate.
    pub fn read_safetensors(path: &Path) -> HashMap<String, Tensor> {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
        let data = &bytes[8 + header_len..];
        let mut out = HashMap::new();
        for (name, info) in header.as_object().unwrap() {
            if name == "__metadata__" {
                continue;
            }
            let shape: Vec<usize> = info["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let start = info["data_offsets"][0].as_u64().unwrap() as usize;
            let end = info["data_offsets"][1].as_u64().unwrap() as usize;
            let raw = &data[start..end];
            let values = match info["dtype"].as_str().unwrap() {
                "F32" => raw
                    .chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
                    .collect(),
                "F64" => raw
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                "I64" => raw
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                _ => continue,
            };
            out.insert(name.clone(), Tensor { shape, values });
        }
        out
    }
}
