//! A model directory loaded for sampling: tokenizer, generator (and its host copy), class names,
//! and class lookup by name or id.

use burn::tensor::Device;

use crate::model::{Tokenizer, TokenizerConfig};

/// A complete model: tokenizer and generator, as laid out on disk in one directory
/// (`DIR/tokenizer/`, `DIR/generator/`).
pub struct Bundle {
    /// Tokenizer configuration.
    pub tcfg: TokenizerConfig,
    /// Tokenizer.
    pub tokenizer: Tokenizer,
    /// Generator configuration.
    pub gcfg: crate::model::generator::GeneratorConfig,
    /// Generator (EMA weights).
    pub generator: crate::model::generator::NvgGenerator,
    /// Class names, index = class id.
    pub class_names: Vec<String>,
    /// Host copy of the generator for the CPU backend's inference path (made once at load).
    pub host: Option<crate::model::host::HostGenerator>,
}

impl Bundle {
    /// [`crate::sampler::sample`] on this model, with its host copy of the generator.
    pub fn sample(
        &self,
        jobs: &[crate::sampler::ImageJob],
        settings: &crate::sampler::SamplerSettings,
        on_stage: &mut dyn FnMut(&crate::sampler::StageDone) -> bool,
        cancel: &dyn Fn() -> bool,
    ) -> Result<crate::sampler::SampleOutput, crate::sampler::SampleError> {
        crate::sampler::sample_with(&self.generator, self.host.as_ref(), &self.tokenizer, self.tcfg.phi_weight, jobs, settings, on_stage, cancel)
    }
}

/// Errors of loading a model directory.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A checkpoint is missing or damaged.
    #[error(transparent)]
    Checkpoint(#[from] crate::model::checkpoint::CheckpointError),
    /// The two parts do not fit together.
    #[error("model {path}: {reason}")]
    Mismatch {
        /// Directory.
        path: std::path::PathBuf,
        /// What does not fit.
        reason: String,
    },
}

/// Loads `dir/tokenizer` and `dir/generator` and checks that they fit together.
pub fn load_bundle(dir: &std::path::Path, device: &Device) -> Result<Bundle, BundleError> {
    load_bundle_at(dir, device, crate::model::host::precision())
}

/// [`load_bundle`] with the host copy's products at `precision` (the editor's Run menu choice
/// survives a model switch without building the copy twice).
pub fn load_bundle_at(dir: &std::path::Path, device: &Device, precision: crate::model::host::Precision) -> Result<Bundle, BundleError> {
    let (tmeta, tokenizer) = crate::model::tokenizer_io::load_tokenizer(&dir.join("tokenizer"), None, device)?;
    let (gmeta, generator) = crate::model::generator_io::load_generator(&dir.join("generator"), device)?;
    let (tcfg, gcfg) = (tmeta.config, gmeta.config);
    let mismatch = |reason: String| BundleError::Mismatch { path: dir.to_path_buf(), reason };
    if gcfg.vocab_size != tcfg.codebook_size || gcfg.grid_side != tcfg.grid_side() || gcfg.latent_channels != tcfg.latent_channels {
        return Err(mismatch(format!(
            "generator expects codebook {} / grid {} / {} channels, tokenizer has {} / {} / {}",
            gcfg.vocab_size,
            gcfg.grid_side,
            gcfg.latent_channels,
            tcfg.codebook_size,
            tcfg.grid_side(),
            tcfg.latent_channels
        )));
    }
    let class_names: Vec<String> = gmeta.extra["class_names"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_else(|| (0..gcfg.num_classes).map(|i| format!("class {i}")).collect());
    if class_names.len() != gcfg.num_classes {
        return Err(mismatch(format!("{} class names for {} classes", class_names.len(), gcfg.num_classes)));
    }
    let host = crate::model::host::HostGenerator::for_device_at(&generator, device, precision);
    Ok(Bundle { tcfg, tokenizer, gcfg, generator, class_names, host })
}

/// Resolves a class given by name (case-insensitive) or id; the error lists the valid names.
pub fn resolve_class(names: &[String], given: &str) -> Result<usize, String> {
    if let Ok(i) = given.parse::<usize>() {
        if i < names.len() {
            return Ok(i);
        }
        return Err(format!("class id {i} is out of range (0..{})", names.len()));
    }
    names.iter().position(|n| n.eq_ignore_ascii_case(given)).ok_or_else(|| {
        format!("unknown class '{given}'; valid classes: {}", names.join(", "))
    })
}
