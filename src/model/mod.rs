//! burn modules, device-agnostic: tensors carry their `Device`, chosen once at start-up.

pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod generator;
pub mod generator_io;
pub mod host;
pub mod images;
pub mod run_lock;
pub mod tokenizer;
pub mod tokenizer_io;
pub mod transformer;

pub use config::TokenizerConfig;
pub use tokenizer::{CodeSelection, Encoded, Quantized, Tokenizer};
