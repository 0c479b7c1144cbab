//! The project file: a versioned `.ron` document holding the model identity, the editable state
//! and the run history. Written atomically (temporary file + rename), read with one-line errors
//! that name the file and the problem.

use crate::granularity::text::one_line;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ModelInfo, State, check_sequence};

/// The value of [`Project::format`].
pub const PROJECT_FORMAT: &str = "nvg-project";
/// The version this build writes. Version 1 is the only one so far; a reader for an older
/// version would convert here, a newer version is refused with a message.
pub const PROJECT_VERSION: u32 = 1;
/// Suffix of autosave files next to a project (`name.ron` → `.name.autosave.ron`).
pub const AUTOSAVE_SUFFIX: &str = "autosave.ron";

/// One finished run kept in the history panel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Increasing id within the project.
    pub id: u64,
    /// What produced it ("run 3 · class bird · seed 7").
    pub label: String,
    /// The complete state of that run (restorable).
    pub state: State,
    /// Final image, `side × side` RGB, hex-encoded.
    pub thumbnail_side: u32,
    /// Hex of the RGB bytes.
    pub thumbnail_hex: String,
}

impl HistoryEntry {
    /// Makes an entry, encoding the thumbnail.
    pub fn new(id: u64, label: String, state: State, side: u32, rgb: &[u8]) -> Self {
        let mut hex = String::with_capacity(rgb.len() * 2);
        for b in rgb {
            hex.push_str(&format!("{b:02x}"));
        }
        Self { id, label, state, thumbnail_side: side, thumbnail_hex: hex }
    }

    /// The thumbnail's RGB bytes (None if the hex is damaged).
    pub fn thumbnail(&self) -> Option<Vec<u8>> {
        let h = self.thumbnail_hex.as_bytes();
        let side = self.thumbnail_side as usize;
        if side.checked_mul(side).and_then(|n| n.checked_mul(6)) != Some(h.len()) {
            return None;
        }
        h.chunks(2)
            .map(|c| std::str::from_utf8(c).ok().and_then(|s| u8::from_str_radix(s, 16).ok()))
            .collect()
    }
}

/// A saved project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Always [`PROJECT_FORMAT`].
    pub format: String,
    /// [`PROJECT_VERSION`] of the writer.
    pub version: u32,
    /// The model it was made with.
    pub model: ModelInfo,
    /// The editable state.
    pub state: State,
    /// Finished runs, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// Why a project could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// Reading or writing failed.
    #[error("project {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a project, damaged, or an unsupported version.
    #[error("project {path}: {reason}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Made for a model this one cannot stand in for.
    #[error("project {path} was made for model '{project_model}' ({detail}); the loaded model is '{loaded_model}' — open it with that model (--model DIR)")]
    OtherModel {
        /// File.
        path: PathBuf,
        /// Model the project names.
        project_model: String,
        /// Model loaded now.
        loaded_model: String,
        /// What differs.
        detail: String,
    },
}

/// A recipe: what made an image, stored in exported PNGs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// "nvg-recipe".
    pub format: String,
    /// Model name and hash.
    pub model: String,
    /// Model content hash.
    pub model_hash: String,
    /// Class name.
    pub class: String,
    /// The editable state (seeds, class map, locks, blueprint, settings, sequence).
    pub state: State,
    /// Which image this is ("final", "stage 3", "stage strip").
    pub image: String,
}

impl Project {
    /// A project of `state` for `model`.
    pub fn new(model: ModelInfo, state: State, history: Vec<HistoryEntry>) -> Self {
        Self { format: PROJECT_FORMAT.into(), version: PROJECT_VERSION, model, state, history }
    }

    /// The RON text.
    pub fn to_ron(&self) -> Result<String, String> {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default().depth_limit(4)).map_err(|e| e.to_string())
    }

    /// Writes atomically: a temporary file in the same folder, then a rename, so a crash or a
    /// full disk never leaves half a project (the old file stays intact).
    pub fn save(&self, path: &Path) -> Result<(), ProjectError> {
        let text = self.to_ron().map_err(|reason| ProjectError::Invalid { path: path.into(), reason })?;
        write_atomic(path, text.as_bytes()).map_err(|source| ProjectError::Io { path: path.into(), source })
    }

    /// Reads and checks a project (format, version, and that its sequences are well formed).
    pub fn load(path: &Path) -> Result<Self, ProjectError> {
        let bytes = std::fs::read(path).map_err(|source| ProjectError::Io { path: path.into(), source })?;
        let invalid = |reason: String| ProjectError::Invalid { path: path.into(), reason };
        let text = String::from_utf8(bytes).map_err(|_| invalid("not a text file (is it a project .ron?)".into()))?;
        Self::from_ron(&text).map_err(invalid)
    }

    /// Parses RON text (errors without the file name).
    pub fn from_ron(text: &str) -> Result<Self, String> {
        // Look at format/version first, so a newer or foreign file gets a precise message
        // rather than a parse error about some field.
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            format: String,
            #[serde(default)]
            version: u32,
        }
        let head: Head = ron::Options::default().from_str(text).map_err(|e| {
            if text.contains(&format!("format: \"{PROJECT_FORMAT}\"")) {
                format!("damaged or truncated ({})", one_line(&e.to_string()))
            } else {
                format!("not an nvg-studio project ({})", one_line(&e.to_string()))
            }
        })?;
        if head.format != PROJECT_FORMAT {
            return Err(format!("not an nvg-studio project (format is {:?}, expected \"{PROJECT_FORMAT}\")", head.format));
        }
        match head.version {
            v if v > PROJECT_VERSION => {
                return Err(format!(
                    "made by a newer nvg-studio (project version {v}); this build reads versions up to {PROJECT_VERSION}"
                ));
            }
            0 => return Err("project has no valid version".into()),
            _ => {}
        }
        let p: Project = ron::Options::default()
            .from_str(text)
            .map_err(|e| format!("damaged or truncated ({})", one_line(&e.to_string())))?;
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<(), String> {
        let m = &self.model;
        if m.grid_size == 0 || !m.grid_size.is_power_of_two() || m.class_names.is_empty() {
            return Err("damaged model description".into());
        }
        check_state(&self.state, m)?;
        for h in &self.history {
            check_state(&h.state, m).map_err(|e| format!("history entry {}: {e}", h.id))?;
        }
        Ok(())
    }

    /// Checks the project against the loaded model. `Ok(Some(note))` when only the weights
    /// differ (same grid and classes: the project opens, results may differ).
    pub fn check_model(&self, path: &Path, loaded: &ModelInfo) -> Result<Option<String>, ProjectError> {
        let p = &self.model;
        let other = |detail: String| ProjectError::OtherModel {
            path: path.into(),
            project_model: p.name.clone(),
            loaded_model: loaded.name.clone(),
            detail,
        };
        if p.grid_size != loaded.grid_size || p.num_stages != loaded.num_stages {
            return Err(other(format!("{0}×{0} grid, loaded model {1}×{1}", p.grid_size, loaded.grid_size)));
        }
        if p.codebook_size != loaded.codebook_size {
            return Err(other(format!("codebook {}, loaded model {}", p.codebook_size, loaded.codebook_size)));
        }
        if p.class_names != loaded.class_names {
            return Err(other(format!("{} classes, loaded model {} with other names", p.class_names.len(), loaded.class_names.len())));
        }
        if p.hash != loaded.hash {
            return Ok(Some(format!(
                "project was made with other weights of the same shape ('{}'); reruns will differ",
                p.name
            )));
        }
        Ok(None)
    }
}



impl Recipe {
    /// The recipe an exported PNG carries in its `nvg-recipe` text chunk: `None` when the file is
    /// not a PNG or has no recipe, an error when the recipe is there but damaged.
    pub fn from_png(bytes: &[u8]) -> Option<Result<Recipe, String>> {
        let reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().ok()?;
        let chunk = reader.info().uncompressed_latin1_text.iter().find(|t| t.keyword == "nvg-recipe")?;
        Some(
            ron::Options::default()
                .from_str::<Recipe>(&chunk.text)
                .map_err(|e| format!("its nvg-recipe is damaged ({})", one_line(e.to_string())))
                .and_then(|r| if r.format == "nvg-recipe" { Ok(r) } else { Err(format!("unknown recipe format {:?}", r.format)) }),
        )
    }
}

/// Checks that a state fits a model: its sequence and blueprint, class, class map and lock.
pub fn check_state(s: &State, m: &ModelInfo) -> Result<(), String> {
    let l = m.num_positions();
    if let Some(seq) = &s.sequence {
        check_sequence(seq, m).map_err(|e| format!("sequence: {e}"))?;
    }
    if s.class >= m.class_names.len() {
        return Err(format!("class {} is out of range", s.class));
    }
    if let Some(cm) = &s.class_map {
        if cm.len() != l || cm.iter().any(|&c| c >= m.class_names.len()) {
            return Err("class map does not fit the grid or the class list".into());
        }
    }
    if let Some(lock) = &s.lock {
        if lock.mask.len() != l || lock.from_stage >= m.num_stages {
            return Err("lock does not fit the grid".into());
        }
    }
    if let Some(bp) = &s.blueprint {
        check_sequence(&bp.sequence, m).map_err(|e| format!("blueprint: {e}"))?;
    }
    Ok(())
}

pub use crate::granularity::fsio::write_atomic;

/// Where the open project is autosaved: next to it (`.name.autosave.ron`), or for an untitled
/// project in the user's data folder, one slot per model (`untitled-<model hash>.autosave.ron`),
/// so switching models never overwrites another model's untitled document.
pub fn autosave_path(project: Option<&Path>, model_hash: &str) -> PathBuf {
    match project {
        Some(p) => {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "project".into());
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            dir.join(format!(".{stem}.{AUTOSAVE_SUFFIX}"))
        }
        None => {
            let tag: String = model_hash.chars().filter(|c| c.is_ascii_alphanumeric()).take(32).collect();
            data_dir().join(format!("untitled-{tag}.{AUTOSAVE_SUFFIX}"))
        }
    }
}

/// A place to keep an untitled document that is being replaced (New, Open, another model, an
/// autosave that could not be recovered): `untitled-<model hash>-<unix seconds>.kept.ron` in the
/// user's data folder, never overwritten by autosaves.
pub fn kept_copy_path(model_hash: &str) -> PathBuf {
    let tag: String = model_hash.chars().filter(|c| c.is_ascii_alphanumeric()).take(32).collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    data_dir().join(format!("untitled-{tag}-{now}.kept.ron"))
}

fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NVG_STUDIO_DATA").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("nvg-studio");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/nvg-studio"),
        None => std::env::temp_dir().join("nvg-studio"),
    }
}
