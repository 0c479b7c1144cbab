//! Generator checkpoints: the kind string and loading the usable (EMA) weights. Saving happens
//! in training (src/train/generator.rs), which writes the same layout.

use std::path::Path;

use burn::tensor::Device;

use crate::model::checkpoint::{CheckpointError, CheckpointMeta, load_weights, read_meta};
use crate::model::generator::{GeneratorConfig, NvgGenerator};

/// Kind string of generator checkpoints.
pub const GENERATOR_KIND: &str = "generator";

/// Loads a generator checkpoint (its usable, EMA weights).
pub fn load_generator(dir: &Path, device: &Device) -> Result<(CheckpointMeta<GeneratorConfig>, NvgGenerator), CheckpointError> {
    let meta: CheckpointMeta<GeneratorConfig> = read_meta(dir, GENERATOR_KIND)?;
    meta.config.validate().map_err(|reason| CheckpointError::BadMeta { path: dir.join(crate::model::checkpoint::META_FILE), reason })?;
    let model = load_weights(dir, NvgGenerator::new(&meta.config, device))?;
    Ok((meta, model))
}
