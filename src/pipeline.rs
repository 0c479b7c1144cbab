//! Glue used by the command line and (later) the editor's worker: images ⇄ tensors, and an
//! image encoded into its granularity sequence plus the decoded canvas of every stage.

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

use crate::data::RgbImageF;
use crate::granularity::{GranularitySequence, SequenceStage};
use crate::model::tokenizer::to_vec_f32;
use crate::model::{Tokenizer, TokenizerConfig};

/// Stacks images (CHW, [-1, 1]) into a `[B, 3, S, S]` tensor.
pub fn images_to_tensor(imgs: &[RgbImageF], device: &Device) -> Tensor<4> {
    let s = imgs.first().map(|i| i.size as usize).unwrap_or(0);
    let mut v = Vec::with_capacity(imgs.len() * 3 * s * s);
    for img in imgs {
        v.extend_from_slice(&img.data);
    }
    Tensor::from_data(TensorData::new(v, [imgs.len(), 3, s, s]), device)
}

/// Converts a `[B, 3, S, S]` tensor in [-1, 1] to 8-bit images.
pub fn tensor_to_images(t: Tensor<4>) -> Vec<RgbImage> {
    let [b, _, h, w] = t.dims();
    let v = to_vec_f32(t);
    (0..b)
        .map(|i| {
            let img = RgbImageF { size: h as u32, data: v[i * 3 * h * w..(i + 1) * 3 * h * w].to_vec() };
            debug_assert_eq!(h, w);
            crate::data::to_rgb8(&img).unwrap_or_else(|_| RgbImage::new(w as u32, h as u32))
        })
        .collect()
}

/// One image encoded: its sequence and the decoded canvas after every stage.
pub struct EncodedImage {
    /// Structure maps and codes per stage.
    pub sequence: GranularitySequence,
    /// `stage_images[i]`: decoded canvas after stages 0..=i.
    pub stage_images: Vec<RgbImage>,
}

/// Encodes images with the tokenizer and decodes the canvas after every stage.
pub fn encode_images(tok: &Tokenizer, cfg: &TokenizerConfig, imgs: &[RgbImageF], device: &Device) -> Vec<EncodedImage> {
    let x = images_to_tensor(imgs, device);
    let enc = tok.encode(x, cfg.phi_weight);
    let stages = cfg.num_stages();
    let mut per_stage: Vec<Vec<RgbImage>> = Vec::with_capacity(stages);
    for s in 0..stages {
        per_stage.push(tensor_to_images(tok.decode(enc.quantized.canvases[s + 1].clone())));
    }
    (0..imgs.len())
        .map(|b| {
            let stages_v = (0..stages)
                .map(|s| SequenceStage {
                    structure: enc.hierarchies[b].map(s).to_vec(),
                    codes: enc.quantized.codes[b][s].clone(),
                })
                .collect();
            EncodedImage {
                sequence: GranularitySequence::new(cfg.grid_side(), Some(cfg.codebook_size), stages_v),
                stage_images: per_stage.iter().map(|v| v[b].clone()).collect(),
            }
        })
        .collect()
}

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
    let (gmeta, generator) = crate::train::generator::load_generator(&dir.join("generator"), device)?;
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

/// Parses a stage range: `3` (= 1..3 for structure, 0..3 for content, via `first`), `a..b`
/// (inclusive) or `a..=b`.
pub fn parse_stage_range(s: &str, first: usize) -> Result<std::ops::RangeInclusive<usize>, String> {
    let bad = || format!("stage range '{s}': expected N, A..B or A..=B");
    if let Some((a, b)) = s.split_once("..") {
        let b = b.trim_start_matches('=');
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        if a > b {
            return Err(format!("stage range '{s}' is empty"));
        }
        Ok(a..=b)
    } else {
        let m: usize = s.trim().parse().map_err(|_| bad())?;
        Ok(first..=m)
    }
}
