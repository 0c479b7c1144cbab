//! What the editor and the worker say to each other: [`Request`]s in, [`Event`]s out, and the
//! plain types they carry. The editor reaches the model only through these (it imports nothing
//! of `model`): the compute choices it offers are re-exported here, and what the CPU can do is
//! reported in [`Event::Loaded`].

use std::path::PathBuf;

use image::RgbImage;

use crate::document::{ModelInfo, RunSpec};
use crate::granularity::GranularitySequence;

pub use crate::model::backend::BackendChoice;
pub use crate::model::host::Precision;

/// How this CPU computes bf16 products (the Run menu says whether switching pays).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Support {
    /// Intel AMX tiles: faster than f32.
    Amx,
    /// AVX-512 BF16 without AMX: measured slower than f32 on our test machine.
    Avx512,
    /// Neither: a scalar emulation, slower than f32.
    Emulated,
}

impl Bf16Support {
    /// What this machine has.
    pub fn detect() -> Self {
        use crate::model::host::bf16::{Kernel, kernel};
        match kernel() {
            Kernel::Amx => Self::Amx,
            Kernel::Avx512 => Self::Avx512,
            Kernel::Scalar => Self::Emulated,
        }
    }
}

/// "No revision wanted": set by Stop so any running job cancels.
pub const NOTHING: u64 = u64::MAX;

/// A request to the worker.
#[derive(Debug)]
pub enum Request {
    /// Bring the document up to date: generate from `spec.from_stage`.
    Run {
        /// Document revision.
        revision: u64,
        /// What to run.
        spec: Box<RunSpec>,
    },
    /// Decode every stage of an existing sequence (after undo, open, restore).
    Render {
        /// Document revision.
        revision: u64,
        /// The sequence.
        sequence: Box<GranularitySequence>,
    },
    /// `seeds.len()` alternatives of the document from `spec.from_stage`, each with its own
    /// seed for that stage.
    Variations {
        /// Document revision.
        revision: u64,
        /// The run (its `from_stage` is the varied stage).
        spec: Box<RunSpec>,
        /// One stage seed per variation.
        seeds: Vec<u64>,
    },
    /// Encode an image file into a sequence with the tokenizer.
    Encode {
        /// Document revision the request was made at.
        revision: u64,
        /// Image file.
        path: PathBuf,
    },
    /// Compute the generator's products at this precision from the next run on (CPU host path
    /// only; answered with [`Event::BackendChanged`]).
    SetPrecision(Precision),
    /// Stop the thread.
    Shutdown,
}

/// One decoded image, plain RGB.
pub type StageImage = RgbImage;

/// One alternative of a variations request.
#[derive(Clone, Debug)]
pub struct Variation {
    /// Its stage seed.
    pub seed: u64,
    /// The complete sequence.
    pub sequence: GranularitySequence,
    /// Final image.
    pub image: StageImage,
}

/// What the worker reports.
#[derive(Clone, Debug)]
pub enum Event {
    /// The model is loaded.
    Loaded {
        /// Its identity.
        info: ModelInfo,
        /// The folder it was loaded from.
        model_dir: PathBuf,
        /// Set when the requested model failed and the fallback was loaded instead: why, in one line.
        fallback_note: Option<String>,
        /// Compute backend in use.
        backend: String,
        /// The generator's products now (the Run menu shows it).
        precision: Precision,
        /// How this CPU computes bf16 products, for the Run menu's label.
        bf16_support: Bf16Support,
        /// Load time.
        millis: u128,
    },
    /// The compute description changed (after [`Request::SetPrecision`]).
    BackendChanged {
        /// What the status bar shows, e.g. "cpu (flex) · host kernels (AVX-512) · bf16 (AMX)".
        backend: String,
    },
    /// The model could not be loaded (the message says how to fix it).
    LoadFailed {
        /// One line.
        message: String,
    },
    /// A run started.
    Started {
        /// Revision.
        revision: u64,
        /// First generated stage.
        from_stage: usize,
    },
    /// A flow step of `stage` is done.
    Progress {
        /// Revision.
        revision: u64,
        /// Stage being computed.
        stage: usize,
        /// Steps done in this stage.
        step: usize,
        /// Steps this stage takes.
        steps: usize,
    },
    /// A stage finished: its structure map, codes and decoded canvas.
    Stage {
        /// Revision.
        revision: u64,
        /// Stage.
        stage: usize,
        /// Structure map (N·N labels).
        structure: Vec<u32>,
        /// Codes (2^stage).
        codes: Vec<u32>,
        /// Decoded canvas after this stage.
        image: StageImage,
    },
    /// The run finished.
    Finished {
        /// Revision.
        revision: u64,
        /// Complete sequence.
        sequence: GranularitySequence,
        /// Wall time of the run.
        millis: u128,
    },
    /// The run was superseded or stopped.
    Cancelled {
        /// Revision.
        revision: u64,
    },
    /// The run failed.
    Failed {
        /// Revision.
        revision: u64,
        /// One line.
        message: String,
    },
    /// Every stage of a sequence decoded.
    Rendered {
        /// Revision.
        revision: u64,
        /// One image per stage.
        images: Vec<StageImage>,
    },
    /// Variations finished.
    Variations {
        /// Revision.
        revision: u64,
        /// The varied stage.
        stage: usize,
        /// The alternatives.
        results: Vec<Variation>,
    },
    /// An image was encoded.
    Encoded {
        /// Revision the request was made at.
        revision: u64,
        /// The file.
        path: PathBuf,
        /// Its sequence.
        sequence: GranularitySequence,
        /// Decoded canvas per stage.
        images: Vec<StageImage>,
        /// What was done to fit it (resized, alpha composited).
        note: Option<String>,
    },
    /// An image could not be encoded.
    EncodeFailed {
        /// One line naming the file.
        message: String,
    },
}
