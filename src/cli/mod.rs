//! The command line's bodies, one file per command family; `main.rs` only parses and
//! dispatches. What several commands share (backend choice, training sources, small output
//! helpers) lives here.

pub mod app;
pub mod bench;
pub mod dataset;
pub mod diagnose;
pub mod eval;
pub mod generate;
pub mod judge;
pub mod sampler;
pub mod train;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use indicatif::ProgressBar;

use nvg_studio::model::backend::{self, Backend, BackendChoice};
use nvg_studio::data::{self, FolderSource, ImageFolder, ImageSource, SyntheticShapes};
use nvg_studio::model::TokenizerConfig;

/// The model and seed flags of the commands that run a model directory (`generate`, `swap`,
/// `eval`, `eval-swap`, `diagnose overfit`).
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Model directory (tokenizer/ and generator/; the bundled model by default).
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Seed (same seed + inputs + backend = same result, bit for bit).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The training images of `train-tokenizer`, `train-generator` and `diagnose overfit`: an image
/// folder, synthetic shapes, or the bundled emoji set (see [`training_source`]).
#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// Image folder, one sub-folder per class (default: the bundled emoji set).
    #[arg(long, conflicts_with = "synthetic")]
    pub data: Option<PathBuf>,
    /// Train on N procedurally drawn shape images instead of a folder.
    #[arg(long)]
    pub synthetic: Option<usize>,
}

/// What a generator is trained on and its shape: the flags `train-generator` and
/// `diagnose overfit` share.
#[derive(clap::Args, Clone, Debug)]
pub struct GeneratorDataArgs {
    #[command(flatten)]
    pub images: DataArgs,
    /// Generator shape preset (small, test-tiny, reference-tiny, d16, d20, d24).
    #[arg(long, default_value = "small")]
    pub preset: String,
}

/// Background that transparent images are composited on (white, as the emoji dataset uses).
pub const BACKGROUND: [u8; 3] = [255, 255, 255];

/// Default model directory (tokenizer/ + generator/) shipped with the project.
pub const DEFAULT_MODEL: &str = "assets/model";

/// Default tokenizer: the one of the default model.
pub const DEFAULT_TOKENIZER: &str = "assets/model/tokenizer";

pub fn pick_backend(choice: BackendChoice) -> Result<Backend> {
    let b = backend::select(choice)?;
    use nvg_studio::model::host::{self, bf16};
    if b.is_cpu && host::enabled() {
        eprintln!("backend: {b}; generator inference through {}", host::label());
        if host::precision() == host::Precision::Bf16 {
            match bf16::kernel() {
                bf16::Kernel::Amx => {}
                bf16::Kernel::Avx512 => eprintln!("note: no AMX on this CPU; bf16 products on AVX-512 BF16 measured slower than f32 on our test machine"),
                bf16::Kernel::Scalar => eprintln!("note: this CPU has neither AMX nor AVX-512 BF16; bf16 runs as a scalar emulation, slower than f32"),
            }
        }
    } else {
        eprintln!("backend: {b}");
        if host::precision() == host::Precision::Bf16 {
            eprintln!("note: --precision bf16 applies to the CPU host path only; this backend computes in f32");
        }
    }
    Ok(b)
}

pub fn preset(name: &str) -> Result<TokenizerConfig> {
    TokenizerConfig::preset(name).ok_or_else(|| {
        anyhow!("unknown preset '{name}': expected one of {}", TokenizerConfig::PRESETS.join(", "))
    })
}


/// A switch given as `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}


/// The training images: an image folder, synthetic shapes, or (by default) the bundled emoji set.
pub fn training_source(data: Option<PathBuf>, synthetic: Option<usize>, size: u32, seed: u64) -> Result<Box<dyn ImageSource>> {
    Ok(match (data, synthetic) {
        (Some(dir), _) => {
            let folder = ImageFolder::open(&dir)?;
            eprintln!("data: {} images in {} classes from {}", folder.len(), folder.class_names().len(), dir.display());
            Box::new(FolderSource::new(folder, size, BACKGROUND)?)
        }
        (None, Some(n)) => Box::new(SyntheticShapes::new(n, size, seed)?),
        (None, None) => bundled_emoji(size)?,
    })
}

/// The bundled emoji dataset as a training source (the default when neither --data nor
/// --synthetic is given).
pub fn bundled_emoji(size: u32) -> Result<Box<dyn ImageSource>> {
    let sheet = open_sheet(None)?;
    eprintln!("data: bundled emoji set, {} images in {} classes", sheet.len(), sheet.class_names().len());
    Ok(Box::new(data::EmojiSource::new(sheet, size)?))
}

/// The emoji sheet at `labels` (a .ron file), or the bundled one.
pub fn open_sheet(labels: Option<&Path>) -> Result<data::EmojiSheet> {
    let bundled = nvg_studio::bundled(Path::new(data::BUNDLED_EMOJI_LABELS));
    let path = labels.unwrap_or(&bundled);
    data::EmojiSheet::open(path).map_err(|e| {
        if labels.is_none() { anyhow!("{e} (run from the repository root, or pass --sheet FILE.ron)") } else { e.into() }
    })
}

/// The progress bar of a training run: bar, steps, elapsed time and ETA, the step's message.
pub fn step_bar(steps: u64) -> ProgressBar {
    let pb = ProgressBar::new(steps);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// Where no terminal shows the progress bar (logs, CI), print a plain line every 2% of the run.
/// Ctrl+C or SIGTERM during training: the loop checkpoints the step it is on and stops
/// (resume with --resume); a second Ctrl+C exits at once.
pub fn stop_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = nvg_studio::train::stop_flag();
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())
            .and_then(|_| signal_hook::flag::register(sig, flag.clone()))
            .map_err(|e| anyhow!("cannot install the Ctrl+C handler: {e}"))?;
    }
    Ok(())
}

pub fn log_if_hidden(pb: &ProgressBar, step: u64, total: u64, msg: &str) {
    if pb.is_hidden() && (step % (total / 50).max(1) == 0 || step == total) {
        // The bar's own [elapsed<ETA] is not drawn when stderr is not a terminal (a log file);
        // indicatif's ETA follows the recent step rate, so a resumed run's is right too.
        eprintln!("step {step}/{total} [{}<{}]: {msg}", hms(pb.elapsed().as_secs_f64()), hms(pb.eta().as_secs_f64()));
    }
}

/// Seconds as h:mm:ss.
pub fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

pub fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .with_context(|| format!("image {}", path.display()))?;
    nvg_studio::model::checkpoint::write_atomic(path, &bytes)
        .with_context(|| format!("image {}: cannot write", path.display()))
}

/// The bundled model: `assets/model` under the working directory, else under the source tree
/// this binary was built from (so `cargo run` works from any folder).
pub fn default_model_dir() -> PathBuf {
    nvg_studio::bundled(Path::new(DEFAULT_MODEL))
}
