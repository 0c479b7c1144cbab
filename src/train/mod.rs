//! Training loops with progress, periodic checkpoints and `--resume`.

pub mod tokenizer;

pub use tokenizer::{StepInfo, TokenizerReport, TokenizerTrainOptions, TrainError, train_tokenizer};
