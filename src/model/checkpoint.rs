//! Versioned checkpoints: a directory holding `checkpoint.json` (kind, format version,
//! configuration, training state) and `model.bpk` (burnpack weights, which keep parameter ids so
//! that `optimizer.bpk` can resume training exactly).
//!
//! Loading checks the kind and version first, then compares the stored configuration with the
//! expected one and names the first field that differs, before any weight is read.

use crate::granularity::text::one_line;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::first_difference;

/// Current checkpoint format version.
pub const CHECKPOINT_VERSION: u32 = 1;

/// File names inside a checkpoint directory.
pub const META_FILE: &str = "checkpoint.json";
/// Weights file.
pub const MODEL_FILE: &str = "model.bpk";
/// Optimizer state file (only in training checkpoints).
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";

/// The metadata stored next to the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta<C> {
    /// What the weights are ("tokenizer", "generator").
    pub kind: String,
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub version: u32,
    /// Model configuration.
    pub config: C,
    /// Training step at which it was written.
    pub step: u64,
    /// Free-form training state (seed, data description, loss history…).
    #[serde(default)]
    pub extra: serde_json::Value,
    /// SHA-256 of `model.bpk` as written (hex); checked on load when present (checkpoints
    /// written before it existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
}

/// Errors while reading or writing checkpoints; every message names the path.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The directory or a file in it does not exist.
    #[error("checkpoint {path}: not found")]
    Missing {
        /// Path.
        path: PathBuf,
    },
    /// The metadata could not be read or parsed.
    #[error("checkpoint {path}: corrupted metadata ({reason})")]
    BadMeta {
        /// Path.
        path: PathBuf,
        /// Parser message.
        reason: String,
    },
    /// Wrong kind of checkpoint.
    #[error("checkpoint {path}: is a {found} checkpoint, expected a {expected} checkpoint")]
    WrongKind {
        /// Path.
        path: PathBuf,
        /// Kind found.
        found: String,
        /// Kind expected.
        expected: String,
    },
    /// Unsupported version.
    #[error("checkpoint {path}: format version {found} is not supported (this build reads version {supported})")]
    Version {
        /// Path.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version supported.
        supported: u32,
    },
    /// Config differs from the expected one.
    #[error("checkpoint {path}: made for another configuration ({diff})")]
    ConfigMismatch {
        /// Path.
        path: PathBuf,
        /// First differing field.
        diff: String,
    },
    /// The weights could not be read or applied.
    #[error("checkpoint {path}: corrupted or incompatible weights ({reason})")]
    BadWeights {
        /// Path.
        path: PathBuf,
        /// Reason.
        reason: String,
    },
    /// Writing failed.
    #[error("checkpoint {path}: cannot write ({reason})")]
    Write {
        /// Path.
        path: PathBuf,
        /// Reason.
        reason: String,
    },
}

/// Reads and checks the metadata of a checkpoint directory of `kind`.
pub fn read_meta<C: for<'de> Deserialize<'de>>(dir: &Path, kind: &str) -> Result<CheckpointMeta<C>, CheckpointError> {
    let meta_path = dir.join(META_FILE);
    if !dir.exists() {
        return Err(CheckpointError::Missing { path: dir.to_path_buf() });
    }
    if !meta_path.exists() {
        return Err(CheckpointError::Missing { path: meta_path });
    }
    let text = fs::read_to_string(&meta_path)
        .map_err(|e| CheckpointError::BadMeta { path: meta_path.clone(), reason: e.to_string() })?;
    // Check kind and version before the typed parse, so an old or foreign file gets the right message.
    let raw: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CheckpointError::BadMeta { path: meta_path.clone(), reason: e.to_string() })?;
    let found_kind = raw.get("kind").and_then(|v| v.as_str()).unwrap_or("unknown").to_string();
    if found_kind != kind {
        // The file's own text goes into a one-line message: quoted, control characters escaped.
        return Err(CheckpointError::WrongKind { path: dir.to_path_buf(), found: format!("{found_kind:?}"), expected: kind.into() });
    }
    let version = raw.get("version").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
    if version != CHECKPOINT_VERSION {
        return Err(CheckpointError::Version { path: dir.to_path_buf(), found: version, supported: CHECKPOINT_VERSION });
    }
    serde_json::from_value(raw).map_err(|e| CheckpointError::BadMeta { path: meta_path, reason: e.to_string() })
}

/// Checks a stored configuration against the expected one.
pub fn check_config<C: Serialize>(dir: &Path, found: &C, expected: &C) -> Result<(), CheckpointError> {
    match first_difference(found, expected) {
        None => Ok(()),
        Some(diff) => Err(CheckpointError::ConfigMismatch { path: dir.to_path_buf(), diff: one_line(diff) }),
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
/// [`crate::granularity::fsio::write_atomic`], creating the parent folder first (checkpoints
/// and the model card's figures go into folders of their own).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    crate::granularity::fsio::write_atomic(path, bytes)
}

/// Writes the metadata file of a checkpoint directory atomically.
pub fn write_meta<C: Serialize>(dir: &Path, meta: &CheckpointMeta<C>) -> Result<(), CheckpointError> {
    let text = serde_json::to_string_pretty(meta)
        .map_err(|e| CheckpointError::Write { path: dir.to_path_buf(), reason: e.to_string() })?;
    write_atomic(&dir.join(META_FILE), text.as_bytes())
        .map_err(|e| CheckpointError::Write { path: dir.to_path_buf(), reason: e.to_string() })
}


/// Writes a module's weights (`model.bpk`) and its metadata, put in place together
/// ([`Staged`], [`commit_staged`] with the marker `.checkpoint-commit` in `dir`).
pub fn save_module<M: burn::module::Module, C: Serialize>(
    dir: &Path,
    kind: &str,
    config: &C,
    model: &M,
    step: u64,
    extra: serde_json::Value,
) -> Result<(), CheckpointError> {
    let mut staged = Staged::default();
    staged.module(dir, kind, config, model, step, extra)?;
    commit_staged(&dir.join(".checkpoint-commit"), staged)
}

/// The files of one checkpoint written under temporary names, to be renamed into place together
/// by [`commit_staged`]: pairs of (staged file, final path).
#[derive(Debug, Default)]
pub struct Staged {
    pairs: Vec<(PathBuf, PathBuf)>,
}

fn staged_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.staged"))
}

impl Staged {
    /// Stages a module's weights and metadata for `dir` (as [`save_module`] would write them).
    pub fn module<M: burn::module::Module, C: Serialize>(
        &mut self,
        dir: &Path,
        kind: &str,
        config: &C,
        model: &M,
        step: u64,
        extra: serde_json::Value,
    ) -> Result<(), CheckpointError> {
        fs::create_dir_all(dir).map_err(|e| CheckpointError::Write { path: dir.into(), reason: e.to_string() })?;
        let weights = dir.join(MODEL_FILE);
        let staged = staged_name(&weights);
        model
            .clone()
            .save_file(&staged)
            .map_err(|e| CheckpointError::Write { path: staged.clone(), reason: one_line(&format!("{e:?}")) })?;
        let bytes = fs::read(&staged).map_err(|e| CheckpointError::Write { path: staged.clone(), reason: e.to_string() })?;
        self.pairs.push((staged, weights));
        let meta = CheckpointMeta { kind: kind.to_string(), version: CHECKPOINT_VERSION, config, step, extra, weights_sha256: Some(sha256_hex(&bytes)) };
        let text = serde_json::to_string_pretty(&meta).map_err(|e| CheckpointError::Write { path: dir.to_path_buf(), reason: e.to_string() })?;
        self.bytes(&dir.join(META_FILE), text.as_bytes())
    }

    /// Stages `bytes` for `path`.
    pub fn bytes(&mut self, path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
        let staged = staged_name(path);
        fs::write(&staged, bytes).map_err(|e| CheckpointError::Write { path: staged.clone(), reason: e.to_string() })?;
        self.pairs.push((staged, path.to_path_buf()));
        Ok(())
    }

    /// Stages a file another writer produces at the path given to `write`.
    pub fn file(&mut self, path: &Path, write: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), CheckpointError> {
        let staged = staged_name(path);
        write(&staged).map_err(|reason| CheckpointError::Write { path: staged.clone(), reason })?;
        self.pairs.push((staged, path.to_path_buf()));
        Ok(())
    }
}

/// Puts every staged file in place as one step: the staged files are synced, a commit marker
/// (`marker`) listing them is written atomically, the files are renamed, the marker removed. A
/// kill before the marker leaves the previous checkpoint whole; a kill after it is finished by
/// [`recover_staged`] — so a reader after recovery sees either the old or the new checkpoint,
/// never a mix.
pub fn commit_staged(marker: &Path, staged: Staged) -> Result<(), CheckpointError> {
    let w = |path: &Path, e: std::io::Error| CheckpointError::Write { path: path.to_path_buf(), reason: e.to_string() };
    let mut list = String::new();
    for (from, to) in &staged.pairs {
        fs::File::open(from).and_then(|f| f.sync_all()).map_err(|e| w(from, e))?;
        list.push_str(&format!("{}\t{}\n", from.display(), to.display()));
    }
    write_atomic(marker, list.as_bytes()).map_err(|e| w(marker, e))?;
    finish(marker, &list)
}

fn finish(marker: &Path, list: &str) -> Result<(), CheckpointError> {
    for line in list.lines() {
        let Some((from, to)) = line.split_once('\t') else { continue };
        let (from, to) = (Path::new(from), Path::new(to));
        if from.exists() {
            fs::rename(from, to).map_err(|e| CheckpointError::Write { path: to.to_path_buf(), reason: e.to_string() })?;
        }
    }
    fs::remove_file(marker).map_err(|e| CheckpointError::Write { path: marker.to_path_buf(), reason: e.to_string() })
}

/// Completes a commit that a kill interrupted after its marker was written (renaming what is
/// left), or, without a marker, removes staged files of an uncommitted checkpoint in `dirs`.
/// Returns a note when there was something to do.
pub fn recover_staged(marker: &Path, dirs: &[&Path]) -> Result<Option<String>, CheckpointError> {
    if marker.exists() {
        let list = fs::read_to_string(marker).map_err(|e| CheckpointError::BadMeta { path: marker.to_path_buf(), reason: e.to_string() })?;
        finish(marker, &list)?;
        return Ok(Some(format!("completed the checkpoint whose write was interrupted ({})", marker.display())));
    }
    let mut removed = 0;
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".staged") && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    Ok((removed > 0).then(|| format!("removed {removed} files of a checkpoint whose write was interrupted before it was committed")))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The recorded checksum of a checkpoint directory's weights, if its metadata has one.
fn recorded_sha256(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join(META_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("weights_sha256")?.as_str().map(str::to_string)
}

/// Loads `model.bpk` of a checkpoint directory into a freshly built module of the right shape.
pub fn load_weights<M: burn::module::Module>(dir: &Path, model: M) -> Result<M, CheckpointError> {
    let weights = dir.join(MODEL_FILE);
    if !weights.exists() {
        return Err(CheckpointError::Missing { path: weights });
    }
    if let Some(want) = recorded_sha256(dir) {
        let bytes = fs::read(&weights).map_err(|e| CheckpointError::BadWeights { path: weights.clone(), reason: e.to_string() })?;
        if sha256_hex(&bytes) != want {
            return Err(CheckpointError::BadWeights {
                path: weights,
                reason: format!("the file does not match the checksum in {META_FILE} (damaged, or replaced without its metadata)"),
            });
        }
    }
    model
        .try_load_file(&weights)
        .map_err(|e| CheckpointError::BadWeights { path: weights.clone(), reason: one_line(&format!("{e:?}")) })
}
