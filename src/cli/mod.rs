//! Command bodies, one file per command family (the layout step of issue 21 moves the rest
//! of `main.rs` here).

pub mod diagnose;
pub mod judge;

use std::path::PathBuf;

/// What a generator is trained on and its shape: the flags `train-generator` and
/// `diagnose overfit` share.
#[derive(clap::Args, Clone, Debug)]
pub struct GeneratorDataArgs {
    /// Image folder, one sub-folder per class (default: the bundled emoji set).
    #[arg(long, conflicts_with = "synthetic")]
    pub data: Option<PathBuf>,
    /// Train on N procedurally drawn shape images instead of a folder.
    #[arg(long)]
    pub synthetic: Option<usize>,
    /// Generator shape preset (small, test-tiny, reference-tiny, d16, d20, d24).
    #[arg(long, default_value = "small")]
    pub preset: String,
}
