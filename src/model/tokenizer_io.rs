//! Saving and loading tokenizers: our versioned checkpoints, and reference weights in the
//! official key layout (safetensors, or a PyTorch checkpoint through burn's store).

use crate::granularity::text::one_line;
use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore};
use burn::tensor::Device;

use super::checkpoint::{CheckpointError, CheckpointMeta, check_config, load_weights, read_meta, save_module};
use super::config::TokenizerConfig;
use super::tokenizer::Tokenizer;

/// Kind string of tokenizer checkpoints.
pub const TOKENIZER_KIND: &str = "tokenizer";

/// Loads a tokenizer checkpoint directory. With `expected`, the stored configuration must equal it.
pub fn load_tokenizer(
    dir: &Path,
    expected: Option<&TokenizerConfig>,
    device: &Device,
) -> Result<(CheckpointMeta<TokenizerConfig>, Tokenizer), CheckpointError> {
    let meta: CheckpointMeta<TokenizerConfig> = read_meta(dir, TOKENIZER_KIND)?;
    if let Some(exp) = expected {
        check_config(dir, &meta.config, exp)?;
    }
    meta.config
        .validate()
        .map_err(|reason| CheckpointError::BadMeta { path: dir.join(super::checkpoint::META_FILE), reason })?;
    let model = load_weights(dir, Tokenizer::new(&meta.config, device))?;
    Ok((meta, model))
}

/// Saves a tokenizer checkpoint directory (weights first, then the metadata, each atomically).
pub fn save_tokenizer(
    dir: &Path,
    config: &TokenizerConfig,
    model: &Tokenizer,
    step: u64,
    extra: serde_json::Value,
) -> Result<(), CheckpointError> {
    save_module(dir, TOKENIZER_KIND, config, model, step, extra)
}

/// Errors while importing reference weights.
#[derive(Debug, thiserror::Error)]
#[error("weights {path}: {reason}")]
pub struct ImportError {
    /// File.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}


fn check_result(path: &Path, r: burn::store::ApplyResult) -> Result<(), ImportError> {
    if !r.errors.is_empty() {
        return Err(ImportError { path: path.into(), reason: one_line(&format!("{:?}", r.errors)) });
    }
    if !r.missing.is_empty() {
        let names: Vec<&str> = r.missing.iter().take(5).map(|(p, _)| p.as_str()).collect();
        return Err(ImportError {
            path: path.into(),
            reason: format!("{} tensors missing, e.g. {}", r.missing.len(), names.join(", ")),
        });
    }
    Ok(())
}

/// Loads reference tokenizer weights stored as safetensors with the official key names
/// (no prefix), e.g. `testvectors/official-tiny/tokenizer.safetensors`.
pub fn import_reference_safetensors(path: &Path, cfg: &TokenizerConfig, device: &Device) -> Result<Tokenizer, ImportError> {
    if !path.exists() {
        return Err(ImportError { path: path.into(), reason: "not found".into() });
    }
    let mut model = Tokenizer::new(cfg, device);
    let mut store = SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter).allow_partial(true);
    let r = model
        .load_from(&mut store)
        .map_err(|e| ImportError { path: path.into(), reason: one_line(&e.to_string()) })?;
    check_result(path, r)?;
    Ok(model)
}

/// Loads the tokenizer part (`first_stage_model.*`) of an official PyTorch checkpoint
/// (`{'state_dict': …}`), through burn's PyTorch store.
pub fn import_reference_pytorch(path: &Path, cfg: &TokenizerConfig, device: &Device) -> Result<Tokenizer, ImportError> {
    if !path.exists() {
        return Err(ImportError { path: path.into(), reason: "not found".into() });
    }
    let mut model = Tokenizer::new(cfg, device);
    let mut store = PytorchStore::from_file(path)
        .with_top_level_key("state_dict")
        .with_key_remapping(r"^first_stage_model\.", "")
        .allow_partial(true);
    let r = model
        .load_from(&mut store)
        .map_err(|e| ImportError { path: path.into(), reason: one_line(&e.to_string()) })?;
    check_result(path, r)?;
    Ok(model)
}
