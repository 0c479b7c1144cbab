//! Training loops with progress, periodic checkpoints and `--resume`.

pub mod fast;
pub mod generator;
pub mod monitor;
pub mod tokenizer;

pub use tokenizer::{StepInfo, TokenizerReport, TokenizerTrainOptions, TrainError, train_tokenizer};

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// The flag a running training loop polls after every step: when set, it writes a checkpoint
/// of the step just finished and returns (the command line sets it on Ctrl+C and SIGTERM).
pub fn stop_flag() -> Arc<AtomicBool> {
    STOP.clone()
}

/// Whether a stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Clears a stop request (before a new run in the same process).
pub fn clear_stop() {
    STOP.store(false, Ordering::SeqCst);
}

/// The largest batch a trainer accepts (beyond it the step's buffers do not fit in memory here).
pub const MAX_BATCH: usize = 4096;

/// One-line range checks of the options both trainers share.
pub(crate) fn check_common(steps: u64, batch: usize, lr: f64, holdout: f64) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::Options(m));
    if steps == 0 {
        return bad("--steps must be at least 1".into());
    }
    if batch == 0 || batch > MAX_BATCH {
        return bad(format!("--batch {batch}: expected 1 to {MAX_BATCH}"));
    }
    if !(lr.is_finite() && lr > 0.0 && lr <= 1.0) {
        return bad(format!("--lr {lr}: expected a number above 0 and at most 1"));
    }
    if !(0.0..1.0).contains(&holdout) {
        return bad(format!("held-out fraction {holdout}: expected 0 to below 1"));
    }
    Ok(())
}

/// Locks a run folder for a trainer (a stale lock is taken over with a note on stderr).
pub(crate) fn lock_run_folder(dir: &Path, what: &str) -> Result<crate::model::run_lock::RunLock, TrainError> {
    let (lock, note) = crate::model::run_lock::RunLock::acquire(dir, what)?;
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    Ok(lock)
}
