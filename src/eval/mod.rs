//! Evaluation: a judge classifier trained by the project, Fréchet distances of its features,
//! the adjusted Rand index of structure maps, and the model card (`nvg-studio eval`,
//! `nvg-studio eval-swap`). See `docs/model-card.md` for a run on the bundled model.

pub mod ari;
pub mod card;
pub mod coherence;
pub mod curves;
pub mod figures;
pub mod frechet;
pub mod judge;
pub mod judge_run;
pub mod manifold;
pub mod markdown;
pub mod overfit;
pub mod run;
pub mod swap_eval;

pub use ari::adjusted_rand_index;
pub use frechet::{Gaussian, frechet_distance, frechet_of_features};
pub use judge::{Judge, JudgeConfig, JudgeTrainOptions, load_judge};
pub use run::{EvalCommon, EvalError, EvalEvent, EvalOptions, EvalOutcome, class_list_difference, run_eval};
