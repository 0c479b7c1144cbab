//! Overfit proofs (issue 18): train one branch (or both) on a handful of images with nothing
//! that hides memorisation (no label dropout, no flips, EMA = raw weights) and measure whether
//! it reproduces those images:
//! - structure: the velocity loss against its context-free baseline, and the stage maps that
//!   sampling the flow regenerates from the true content of each stage (teacher forcing: the
//!   true map S_k and canvas x_{k+1} in, the flow and Split give S_{k+1}), scored by the
//!   adjusted Rand index against the tokenizer's S_{k+1}, next to the ARI of a Split on pure
//!   noise (what a branch that learnt nothing gives);
//! - content: top-1 agreement of the cluster codes given the true structure and canvas.
//!
//! A branch that cannot memorise 16 images has a bug, not a lack of compute.

use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::ImageSource;
use crate::granularity::split_balanced;
use crate::model::generator::{GeneratorConfig, NvgGenerator};
use crate::model::{Tokenizer, TokenizerConfig};
use crate::sampler::streams::normal;
use crate::model::images::tensor_to_images;
use crate::sampler::{ImageJob, SamplerSettings, sample, structure_flow};
use crate::model::generator_io::load_generator;
use crate::train::generator::{Branches, GeneratorStep, GeneratorTrainOptions, overfit_subset, train_generator};
use crate::train::monitor::{HeldOut, StageValues, TrainStats, content_top1};
use crate::train::tokenizer::{TrainError, split_indices};

use super::ari::adjusted_rand_index;
use super::figures::{GridRow, sample_grid};

/// Options of an overfit run.
#[derive(Clone, Debug)]
pub struct OverfitOptions {
    /// Images to memorise.
    pub images: usize,
    /// Optimisation steps.
    pub steps: u64,
    /// Images per step (drawn with replacement from the subset).
    pub batch_size: usize,
    /// Learning rate (constant after a short warm-up).
    pub lr: f64,
    /// Branches trained.
    pub branches: Branches,
    /// Euler steps when the structure flow is sampled.
    pub flow_steps: usize,
    /// Seed.
    pub seed: u64,
}

impl Default for OverfitOptions {
    fn default() -> Self {
        Self { images: 16, steps: 600, batch_size: 16, lr: 1e-3, branches: Branches::Structure, flow_steps: 25, seed: 0 }
    }
}

impl OverfitOptions {
    /// The training options this run uses.
    pub fn train_options(&self) -> GeneratorTrainOptions {
        GeneratorTrainOptions {
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            warmup_steps: (self.steps / 20).clamp(1, 100),
            // Hold, then decay over the last 40 % so the run settles on what it memorised.
            decay_start: 0.6,
            final_lr_fraction: 0.05,
            ema_decay: 0.0,
            label_dropout: 0.0,
            stages_per_step: None,
            checkpoint_every: 0,
            flip: false,
            eval_every: (self.steps / 10).max(1),
            branches: self.branches,
            subset: Some(self.images),
            seed: self.seed,
            ..GeneratorTrainOptions::default()
        }
    }
}

/// What an overfit run measured on its own training images.
#[derive(Clone, Debug)]
pub struct OverfitReport {
    /// Branches trained.
    pub branches: Branches,
    /// Images memorised.
    pub images: usize,
    /// Steps trained.
    pub steps: u64,
    /// Training time.
    pub seconds: f64,
    /// Per-stage losses on the images.
    pub values: StageValues,
    /// Per structure stage k: (k, loss, mean baseline, context-free baseline).
    pub structure: Vec<(usize, f64, f64, f64)>,
    /// Per structure stage k: (k + 1, ARI of the regenerated S_{k+1}, ARI of a noise Split).
    pub ari: Vec<(usize, f64, f64)>,
    /// Per content stage: (stage, top-1 agreement).
    pub top1: Vec<(usize, f64)>,
    /// Both branches: the images generated from scratch for each memorised image's class
    /// (greedy codes, no guidance, its own seed) above the tokenizer's reconstructions of the
    /// images themselves.
    pub sheet: Option<RgbImage>,
}

impl OverfitReport {
    /// Mean ARI over the regenerated stages `1..=upto`.
    pub fn mean_ari(&self, upto: usize) -> f64 {
        let v: Vec<f64> = self.ari.iter().filter(|a| a.0 <= upto).map(|a| a.1).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }
    /// Mean ARI of noise Splits over stages `1..=upto`.
    pub fn mean_noise_ari(&self, upto: usize) -> f64 {
        let v: Vec<f64> = self.ari.iter().filter(|a| a.0 <= upto).map(|a| a.2).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }
    /// Largest structure loss / mean-baseline ratio over the stages.
    pub fn worst_structure_ratio(&self) -> f64 {
        self.structure.iter().map(|s| s.1 / s.2.max(1e-12)).fold(0.0, f64::max)
    }
    /// Share of all clusters (every stage) whose code is reproduced.
    pub fn codes_reproduced(&self) -> f64 {
        let (hit, n) = self.top1.iter().fold((0.0, 0.0), |(h, n), &(i, a)| {
            let k = (1usize << i) as f64;
            (h + a * k, n + k)
        });
        if n == 0.0 { 0.0 } else { hit / n }
    }
}

/// Trains `shape` on `opts.images` training images into `out` and measures the result.
#[allow(clippy::too_many_arguments)]
pub fn run_overfit(
    shape: &GeneratorConfig,
    tokenizer: &Tokenizer,
    tcfg: &TokenizerConfig,
    data: &dyn ImageSource,
    out: &Path,
    opts: &OverfitOptions,
    device: &Device,
    progress: &mut dyn FnMut(&GeneratorStep),
) -> Result<OverfitReport, TrainError> {
    if opts.images == 0 {
        return Err(TrainError::Options("--images must be at least 1".into()));
    }
    if opts.flow_steps == 0 {
        return Err(TrainError::Options("--flow-steps must be at least 1".into()));
    }
    let topts = opts.train_options();
    let t0 = Instant::now();
    train_generator(shape, tokenizer, tcfg, data, out, &topts, false, device, progress)?;
    let seconds = t0.elapsed().as_secs_f64();
    let (_, model) = load_generator(out, device)?;

    // The same images the run trained on (train_generator's subset rule).
    let (train, _) = split_indices(data.len(), topts.holdout_fraction, topts.seed);
    let subset = overfit_subset(&train, opts.images, data)?;
    // Baseline statistics from the subset, as train_generator logged them.
    let take: Vec<usize> = subset.iter().copied().take(topts.scale_images.max(1)).collect();
    let stats = TrainStats::measure(tokenizer, tcfg, data, &take, device)?;
    let cfg = model.config().clone();
    let held = HeldOut::new(tokenizer, tcfg, data, &subset, &stats, cfg.num_structure_stages(), opts.seed, device)?;
    let values = held.evaluate(&model, true, true);
    let structure = values
        .structure
        .iter()
        .map(|&(k, v, _)| {
            let b = &held.baselines;
            (k, v, b.get("structure_baseline_mean", k).unwrap_or(f64::NAN), b.get("structure_baseline_ctxfree", k).unwrap_or(f64::NAN))
        })
        .collect();
    // Score only what was trained: an untrained branch's figures mean nothing.
    let top1 = if opts.branches.content() {
        let stages: Vec<usize> = (0..cfg.num_stages()).collect();
        content_top1(&model, &held.batch, &stages)?
    } else {
        Vec::new()
    };
    let ari = if opts.branches.structure() { regenerate_maps(&model, &held, opts.flow_steps, opts.seed)? } else { Vec::new() };
    let sheet = if opts.branches == Branches::Both { Some(regenerated_sheet(&model, tokenizer, tcfg, &held, opts.flow_steps, opts.seed)?) } else { None };
    Ok(OverfitReport { branches: opts.branches, images: opts.images, steps: opts.steps, seconds, values, structure, ari, top1, sheet })
}

/// Generates every held image's class from scratch (greedy codes, no guidance: the overfit run
/// never dropped a label) and lays the results out above the tokenizer's reconstructions of the
/// images themselves: a model that memorised them draws the row below again.
pub fn regenerated_sheet(
    model: &NvgGenerator,
    tokenizer: &Tokenizer,
    tcfg: &TokenizerConfig,
    held: &HeldOut,
    flow_steps: usize,
    seed: u64,
) -> Result<RgbImage, TrainError> {
    let settings = SamplerSettings { flow_steps, ..SamplerSettings::greedy() };
    let jobs: Vec<ImageJob> = held.batch.classes.iter().enumerate().map(|(i, &c)| ImageJob::new(c, seed + i as u64)).collect();
    let out = sample(model, tokenizer, tcfg.phi_weight, &jobs, &settings, &mut |_| true, &|| false)
        .map_err(|e| TrainError::Options(format!("sampling the memorised classes: {e}")))?;
    let generated = tensor_to_images(tokenizer.decode(out.canvas));
    let last = held.batch.enc.quantized.canvases.last().cloned().ok_or_else(|| TrainError::Options("the tokenizer produced no canvas".into()))?;
    let real = tensor_to_images(tokenizer.decode(last));
    let rows = [
        GridRow { label: "generated".into(), tiles: generated.into_iter().map(|t| (t, None)).collect(), references: Vec::new() },
        GridRow { label: "memorised".into(), tiles: real.into_iter().map(|t| (t, None)).collect(), references: Vec::new() },
    ];
    Ok(sample_grid(&rows, 3))
}

/// Teacher-forced regeneration of every learnt split: (k + 1, mean ARI of the flow's S_{k+1},
/// mean ARI of a Split on the noise alone), averaged over the images.
pub fn regenerate_maps(model: &NvgGenerator, held: &HeldOut, flow_steps: usize, seed: u64) -> Result<Vec<(usize, f64, f64)>, TrainError> {
    let cfg = model.config();
    let (l, bits) = (cfg.num_positions(), cfg.num_bits());
    let settings = SamplerSettings { structure_cfg: None, content_cfg: None, flow_steps, ..SamplerSettings::default() };
    let enc = &held.batch.enc;
    let b = held.batch.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa71);
    let mut out = Vec::new();
    for k in 0..cfg.num_structure_stages() {
        let labels: Vec<&[u32]> = enc.hierarchies.iter().map(|h| h.map(k)).collect();
        let noise: Vec<Vec<f32>> = (0..b).map(|_| (0..l * bits).map(|_| normal(&mut rng)).collect()).collect();
        let z = structure_flow(model, &settings, k, &held.batch.classes, &labels, &enc.quantized.canvases[k + 1], &noise)
            .map_err(|e| TrainError::Options(format!("structure flow at stage {k}: {e}")))?;
        let (mut a_model, mut a_noise) = (0.0, 0.0);
        for bi in 0..b {
            let truth = enc.hierarchies[bi].map(k + 1);
            let split = |score: Vec<f32>| -> Result<f64, TrainError> {
                let m = split_balanced(labels[bi], k, &score).map_err(|e| TrainError::Options(format!("split at stage {k}: {e}")))?;
                adjusted_rand_index(&m, truth).map_err(TrainError::Options)
            };
            a_model += split((0..l).map(|p| z[bi][p * bits + k]).collect())?;
            a_noise += split((0..l).map(|p| noise[bi][p * bits + k]).collect())?;
        }
        out.push((k + 1, a_model / b as f64, a_noise / b as f64));
    }
    Ok(out)
}
