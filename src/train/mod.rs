//! Training loops with progress, periodic checkpoints and `--resume`.

pub mod generator;
pub mod monitor;
pub mod tokenizer;

pub use tokenizer::{StepInfo, TokenizerReport, TokenizerTrainOptions, TrainError, train_tokenizer};
