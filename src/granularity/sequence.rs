//! The granularity sequence: the structure map and the codes of every stage of one image — what
//! the tokenizer produces, the sampler fills in, and the editor saves.
//!
//! Follows `shared/docs/nvg-method.md` §1 (notation: S_i and c_i per stage) and §10.3 (user maps
//! may be unbalanced, and are checked whenever they come from outside).
//!
//! The document is stable and versioned (`format = "nvg-sequence"`, `version = 1`) and is stored
//! as RON or JSON:
//!
//! ```ron
//! (
//!     format: "nvg-sequence",
//!     version: 1,
//!     grid_size: 2,               // side N of the N×N latent grid
//!     codebook_size: Some(4096),  // optional; codes must be below it when given
//!     stages: [                   // S = log2(N·N) + 1 stages
//!         (structure: [0, 0, 0, 0], codes: [17]),           // N·N labels, row-major
//!         (structure: [0, 1, 0, 1], codes: [3, 9]),         // 2^stage codes, one per cluster
//!         (structure: [0, 2, 1, 3], codes: [1, 2, 3, 4]),
//!     ],
//! )
//! ```

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::hierarchy::validate_maps;
use super::{Balance, GranularityError, Hierarchy};

/// The value of [`GranularitySequence::format`].
pub const SEQUENCE_FORMAT: &str = "nvg-sequence";
/// The document version this build writes and reads.
pub const SEQUENCE_VERSION: u32 = 1;

/// Structure maps and codes of every stage of one image. Plain data; check it with
/// [`GranularitySequence::validate`] (the `from_*`/`load` functions do so).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GranularitySequence {
    /// Always [`SEQUENCE_FORMAT`].
    pub format: String,
    /// Document version, [`SEQUENCE_VERSION`].
    pub version: u32,
    /// Side N of the N×N latent grid (a power of two).
    pub grid_size: usize,
    /// Size of the codebook the codes index, when known.
    #[serde(default)]
    pub codebook_size: Option<usize>,
    /// One entry per stage, `S = log2(N·N) + 1` of them.
    pub stages: Vec<SequenceStage>,
}

/// One stage of a [`GranularitySequence`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceStage {
    /// Cluster label of each position, N·N labels in row-major order (S_i of the method).
    pub structure: Vec<u32>,
    /// Codebook index of each cluster, `2^stage` of them (c_i of the method). Codes of empty
    /// clusters (unbalanced maps) are kept but never used.
    pub codes: Vec<u32>,
}

/// File format, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Ron,
    Json,
}

impl FileFormat {
    fn of(path: &Path) -> Result<Self, GranularityError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("ron") => Ok(Self::Ron),
            Some("json") => Ok(Self::Json),
            _ => Err(GranularityError::UnknownExtension {
                path: path.to_path_buf(),
            }),
        }
    }
}

fn field(field: impl Into<String>, problem: impl Into<String>) -> GranularityError {
    GranularityError::SequenceField {
        field: field.into(),
        problem: problem.into(),
    }
}

impl GranularitySequence {
    /// A sequence of the current format and version from its parts, unchecked (call
    /// [`GranularitySequence::validate`] when the parts come from outside).
    pub fn new(grid_size: usize, codebook_size: Option<usize>, stages: Vec<SequenceStage>) -> Self {
        Self {
            format: SEQUENCE_FORMAT.to_owned(),
            version: SEQUENCE_VERSION,
            grid_size,
            codebook_size,
            stages,
        }
    }

    /// A sequence from a hierarchy and the codes of each stage (`codes[stage][cluster]`),
    /// validated.
    pub fn from_hierarchy(
        hierarchy: &Hierarchy,
        codes: Vec<Vec<u32>>,
        codebook_size: Option<usize>,
    ) -> Result<Self, GranularityError> {
        if codes.len() != hierarchy.num_stages() {
            return Err(GranularityError::Length {
                what: "codes (one list per stage)",
                found: codes.len(),
                expected: hierarchy.num_stages(),
            });
        }
        let stages = hierarchy
            .maps()
            .iter()
            .zip(codes)
            .map(|(structure, codes)| SequenceStage {
                structure: structure.clone(),
                codes,
            })
            .collect();
        let sequence = Self::new(hierarchy.grid_side(), codebook_size, stages);
        sequence.validate()?;
        Ok(sequence)
    }

    /// The number of stages stored.
    pub fn num_stages(&self) -> usize {
        self.stages.len()
    }

    fn structure_maps(&self) -> Vec<Vec<u32>> {
        self.stages.iter().map(|s| s.structure.clone()).collect()
    }

    /// The structure maps as a [`Hierarchy`] (checked with [`Balance::Any`]: user maps may be
    /// unbalanced).
    pub fn hierarchy(&self) -> Result<Hierarchy, GranularityError> {
        Ok(Hierarchy::from_maps(self.grid_size, self.structure_maps())?)
    }

    /// Checks the whole document: format and version, the structure maps (every hierarchy
    /// invariant except balance), `2^stage` codes per stage, and codes below `codebook_size`
    /// when it is given. The error names the field.
    pub fn validate(&self) -> Result<(), GranularityError> {
        if self.format != SEQUENCE_FORMAT {
            return Err(field(
                "format",
                format!("is {:?}, expected {SEQUENCE_FORMAT:?}", self.format),
            ));
        }
        if self.version != SEQUENCE_VERSION {
            return Err(field(
                "version",
                format!(
                    "is {}, but this build reads only version {SEQUENCE_VERSION}",
                    self.version
                ),
            ));
        }
        validate_maps(self.grid_size, &self.structure_maps(), Balance::Any)?;
        for (stage, s) in self.stages.iter().enumerate() {
            let clusters = 1usize << stage; // stage count is checked above, so this fits
            if s.codes.len() != clusters {
                return Err(field(
                    format!("stages[{stage}].codes"),
                    format!(
                        "has {} codes, expected {clusters} (one per cluster of stage {stage})",
                        s.codes.len()
                    ),
                ));
            }
            if let Some(size) = self.codebook_size
                && let Some((cluster, &code)) = s
                    .codes
                    .iter()
                    .enumerate()
                    .find(|&(_, &c)| c as usize >= size)
            {
                return Err(field(
                    format!("stages[{stage}].codes[{cluster}]"),
                    format!("is {code}, but codebook_size is {size}"),
                ));
            }
        }
        Ok(())
    }

    /// Checks every code against a model's codebook (a sequence need not state its
    /// `codebook_size`; the model it is used with decides). The error names the stage, the
    /// cluster and the value.
    pub fn check_codes(&self, codebook_size: usize) -> Result<(), GranularityError> {
        for (stage, s) in self.stages.iter().enumerate() {
            if let Some((cluster, &code)) = s.codes.iter().enumerate().find(|&(_, &c)| c as usize >= codebook_size) {
                return Err(field(
                    format!("stages[{stage}].codes[{cluster}]"),
                    format!("is {code}, but the model's codebook has {codebook_size} codes (0 to {})", codebook_size.saturating_sub(1)),
                ));
            }
        }
        Ok(())
    }

    /// The code of each position at `stage` (`codes[structure[p]]`), row-major — the map
    /// a(c_i, S_i) of §1 as indices.
    pub fn per_position_codes(&self, stage: usize) -> Result<Vec<u32>, GranularityError> {
        let s = self.stages.get(stage).ok_or_else(|| {
            field(
                "stages",
                format!(
                    "has {} stages; stage {stage} does not exist",
                    self.stages.len()
                ),
            )
        })?;
        s.structure
            .iter()
            .enumerate()
            .map(|(position, &label)| {
                s.codes.get(label as usize).copied().ok_or_else(|| {
                    field(
                        format!("stages[{stage}].codes"),
                        format!(
                            "has {} codes, none for cluster {label} of position {position}",
                            s.codes.len()
                        ),
                    )
                })
            })
            .collect()
    }

    /// RON text (pretty, arrays on one line).
    pub fn to_ron_string(&self) -> Result<String, GranularityError> {
        let config = ron::ser::PrettyConfig::new().compact_arrays(true);
        ron::ser::to_string_pretty(self, config).map_err(|e| GranularityError::Serialize {
            format: "RON",
            message: e.to_string(),
        })
    }

    /// JSON text (pretty).
    pub fn to_json_string(&self) -> Result<String, GranularityError> {
        serde_json::to_string_pretty(self).map_err(|e| GranularityError::Serialize {
            format: "JSON",
            message: e.to_string(),
        })
    }

    /// Parses RON text and validates it.
    pub fn from_ron_str(text: &str) -> Result<Self, GranularityError> {
        let sequence: Self = ron::from_str(text).map_err(|e| GranularityError::Parse {
            format: "RON",
            message: e.to_string(),
        })?;
        sequence.validate()?;
        Ok(sequence)
    }

    /// Parses JSON text and validates it.
    pub fn from_json_str(text: &str) -> Result<Self, GranularityError> {
        let sequence: Self = serde_json::from_str(text).map_err(|e| GranularityError::Parse {
            format: "JSON",
            message: e.to_string(),
        })?;
        sequence.validate()?;
        Ok(sequence)
    }

    /// Reads and validates a `.ron` or `.json` file (by extension, any case). Every error names
    /// the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, GranularityError> {
        let path = path.as_ref();
        let format = FileFormat::of(path)?;
        let text = fs::read_to_string(path).map_err(|error| GranularityError::Io {
            action: "read",
            path: path.to_path_buf(),
            error,
        })?;
        match format {
            FileFormat::Ron => Self::from_ron_str(&text),
            FileFormat::Json => Self::from_json_str(&text),
        }
        .map_err(|error| in_file(path, error))
    }

    /// Validates, then writes a `.ron` or `.json` file atomically: the text goes to a temporary
    /// file in the same directory, is synced, and is renamed over `path`, so a crash leaves
    /// either the old file or the new one, never half of one.
    pub fn save_atomic(&self, path: impl AsRef<Path>) -> Result<(), GranularityError> {
        let path = path.as_ref();
        let format = FileFormat::of(path)?;
        self.validate().map_err(|error| in_file(path, error))?;
        let text = match format {
            FileFormat::Ron => self.to_ron_string(),
            FileFormat::Json => self.to_json_string(),
        }
        .map_err(|error| in_file(path, error))?;
        write_atomic(path, text.as_bytes())
    }
}

fn in_file(path: &Path, error: GranularityError) -> GranularityError {
    GranularityError::InFile {
        path: path.to_path_buf(),
        error: Box::new(error),
    }
}

/// Replaces `path` with `bytes` ([`super::fsio::write_atomic`]).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), GranularityError> {
    super::fsio::write_atomic(path, bytes).map_err(|error| GranularityError::Io { action: "write", path: path.to_path_buf(), error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::granularity::test_support::Rng;
    use crate::granularity::{HierarchyError, cluster_latent};

    fn random_sequence(side: usize, seed: u64) -> GranularitySequence {
        let mut rng = Rng(seed);
        let features: Vec<f32> = (0..side * side * 4)
            .map(|_| (rng.next_u64() % 1000) as f32 / 100.0)
            .collect();
        let h = cluster_latent(&features, side, 4).unwrap();
        let codes = (0..h.num_stages())
            .map(|stage| {
                (0..1usize << stage)
                    .map(|_| (rng.next_u64() % 4096) as u32)
                    .collect()
            })
            .collect();
        GranularitySequence::from_hierarchy(&h, codes, Some(4096)).unwrap()
    }

    /// A hand-made unbalanced 2×2 sequence: cluster 0 of stage 1 holds one position.
    fn unbalanced() -> GranularitySequence {
        GranularitySequence::new(
            2,
            None,
            vec![
                SequenceStage {
                    structure: vec![0; 4],
                    codes: vec![7],
                },
                SequenceStage {
                    structure: vec![0, 1, 1, 1],
                    codes: vec![1, 2],
                },
                SequenceStage {
                    structure: vec![0, 2, 3, 3],
                    codes: vec![5, 6, 7, 8],
                },
            ],
        )
    }

    #[test]
    fn ron_and_json_round_trip() {
        for seq in [
            random_sequence(4, 1),
            random_sequence(8, 2),
            random_sequence(1, 3),
            unbalanced(),
        ] {
            seq.validate().unwrap();
            let ron = seq.to_ron_string().unwrap();
            assert_eq!(GranularitySequence::from_ron_str(&ron).unwrap(), seq);
            let json = seq.to_json_string().unwrap();
            assert_eq!(GranularitySequence::from_json_str(&json).unwrap(), seq);
            assert!(ron.contains("format: \"nvg-sequence\""), "{ron}");
            assert!(ron.contains("version: 1"), "{ron}");
            assert!(json.contains("\"format\": \"nvg-sequence\""), "{json}");
        }
    }

    #[test]
    fn the_documented_format_parses() {
        let ron = r#"(
            format: "nvg-sequence",
            version: 1,
            grid_size: 2,
            codebook_size: Some(4096),
            stages: [
                (structure: [0, 0, 0, 0], codes: [17]),
                (structure: [0, 1, 0, 1], codes: [3, 9]),
                (structure: [0, 2, 1, 3], codes: [1, 2, 3, 4]),
            ],
        )"#;
        let seq = GranularitySequence::from_ron_str(ron).unwrap();
        assert_eq!(seq.per_position_codes(1).unwrap(), vec![3, 9, 3, 9]);
        assert_eq!(seq.per_position_codes(2).unwrap(), vec![1, 3, 2, 4]);
        assert!(seq.hierarchy().unwrap().is_exactly_balanced());

        let json = r#"{"format": "nvg-sequence", "version": 1, "grid_size": 1,
                       "stages": [{"structure": [0], "codes": [5]}]}"#;
        let seq = GranularitySequence::from_json_str(json).unwrap();
        assert_eq!(seq.codebook_size, None);
        assert_eq!(seq.per_position_codes(0).unwrap(), vec![5]);
        assert!(seq.per_position_codes(1).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let good = random_sequence(4, 4);
        let message = |seq: &GranularitySequence| seq.validate().unwrap_err().to_string();

        let mut s = good.clone();
        s.format = "png".into();
        assert!(
            message(&s).contains("field `format` is \"png\""),
            "{}",
            message(&s)
        );

        let mut s = good.clone();
        s.version = 2;
        assert!(
            message(&s).contains("field `version` is 2"),
            "{}",
            message(&s)
        );

        let mut s = good.clone();
        s.stages[3].codes.pop();
        assert!(
            message(&s).contains("`stages[3].codes` has 7 codes, expected 8"),
            "{}",
            message(&s)
        );

        let mut s = good.clone();
        s.stages[2].codes[1] = 4096;
        assert!(
            message(&s).contains("`stages[2].codes[1]` is 4096"),
            "{}",
            message(&s)
        );
        s.codebook_size = None;
        s.validate().unwrap();

        let mut s = good.clone();
        s.stages[2].structure[0] ^= 2; // flip the parent bit
        assert!(matches!(
            s.validate(),
            Err(GranularityError::Hierarchy(
                HierarchyError::ParentMismatch {
                    stage: 2,
                    position: 0,
                    ..
                }
            ))
        ));

        let mut s = good.clone();
        s.grid_size = 8;
        assert!(matches!(
            s.validate(),
            Err(GranularityError::Hierarchy(
                HierarchyError::StageCount { .. }
            ))
        ));

        let h = good.hierarchy().unwrap();
        assert!(matches!(
            GranularitySequence::from_hierarchy(&h, vec![vec![0]], None),
            Err(GranularityError::Length {
                found: 1,
                expected: 5,
                ..
            })
        ));
        let mut codes: Vec<Vec<u32>> = good.stages.iter().map(|s| s.codes.clone()).collect();
        codes[1].push(3);
        assert!(GranularitySequence::from_hierarchy(&h, codes, None).is_err());

        let mut s = good;
        s.stages.pop();
        assert!(s.validate().is_err());
        assert!(s.hierarchy().is_err());
        // Parse errors and invalid documents from text are errors, not panics.
        assert!(matches!(
            GranularitySequence::from_json_str("{"),
            Err(GranularityError::Parse { format: "JSON", .. })
        ));
        assert!(matches!(
            GranularitySequence::from_ron_str("(format: 3)"),
            Err(GranularityError::Parse { format: "RON", .. })
        ));
        let mut bad = unbalanced();
        bad.stages[1].codes.push(0);
        let json = serde_json::to_string(&bad).unwrap();
        assert!(GranularitySequence::from_json_str(&json).is_err());
    }

    #[test]
    fn files_are_written_atomically_and_errors_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let seq = random_sequence(4, 5);
        for name in ["a.ron", "b.json", "C.RON"] {
            let path = dir.path().join(name);
            seq.save_atomic(&path).unwrap();
            assert_eq!(GranularitySequence::load(&path).unwrap(), seq);
        }
        // Overwrite in place.
        let path = dir.path().join("a.ron");
        let other = unbalanced();
        other.save_atomic(&path).unwrap();
        assert_eq!(GranularitySequence::load(&path).unwrap(), other);
        // No temporary files are left behind.
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["C.RON", "a.ron", "b.json"]);

        let err = GranularitySequence::load(dir.path().join("x.txt"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.txt") && err.contains("unknown extension"),
            "{err}"
        );
        let err = GranularitySequence::load(dir.path().join("missing.ron"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("could not read") && err.contains("missing.ron"),
            "{err}"
        );

        let broken = dir.path().join("broken.json");
        fs::write(&broken, "{\"format\": ").unwrap();
        let err = GranularitySequence::load(&broken).unwrap_err().to_string();
        assert!(
            err.contains("broken.json") && err.contains("not a valid JSON"),
            "{err}"
        );

        let mut invalid = seq.clone();
        invalid.version = 9;
        fs::write(dir.path().join("v9.ron"), invalid.to_ron_string().unwrap()).unwrap();
        let err = GranularitySequence::load(dir.path().join("v9.ron"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("v9.ron") && err.contains("`version` is 9"),
            "{err}"
        );
        assert!(!err.contains('\n'));

        // Saving an invalid document writes nothing.
        let target = dir.path().join("never.ron");
        let err = invalid.save_atomic(&target).unwrap_err().to_string();
        assert!(err.contains("never.ron"), "{err}");
        assert!(!target.exists());
        // A missing directory is an error naming the file.
        let err = seq
            .save_atomic(dir.path().join("no/such/dir/s.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("could not write") && err.contains("s.json"),
            "{err}"
        );
    }
}
