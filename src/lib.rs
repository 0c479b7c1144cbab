#![recursion_limit = "256"]
//! nvg-studio: an editor and toolkit for Next Visual Granularity (NVG) generation.
//!
//! Layers, lower to higher: [`granularity`] (plain data and algorithms) ← [`model`] (burn
//! modules) ← [`data`], [`train`] ← the command line. See `docs/architecture.md`.

pub mod app;
pub mod data;
pub mod eval;
pub mod document;
pub mod granularity;
pub mod model;
pub mod sampler;
pub mod train;
pub mod ui;
pub mod worker;

/// A bundled asset path such as `assets/model`: as given when it exists (relative to the working
/// directory, or absolute), else the same path under the source tree this binary was built from,
/// so the commands work from any folder (`cargo run` in a subfolder, an installed binary).
pub fn bundled(path: &std::path::Path) -> std::path::PathBuf {
    if path.exists() || path.is_absolute() {
        return path.to_path_buf();
    }
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if built.exists() { built } else { path.to_path_buf() }
}
