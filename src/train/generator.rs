//! Generator training (method §4.6–4.8) with a frozen tokenizer: teacher forcing over the
//! stages, CFG label dropout, AdamW with the warm-up / hold / decay schedule, EMA weights,
//! gradient clipping, periodic checkpoints and `--resume`. Content scale factors are computed
//! from the data (1/std of each stage's canvas) and stored with the checkpoint (§10.8).
//!
//! CPU feasibility [I]: each step trains a random subset of `stages_per_step` content stages and
//! as many structure stages (all stages when `None`); every stage is still seen equally often.
//! REPA (needs a pretrained DINOv2) is left out.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::ImageSource;
use crate::model::checkpoint::{
    CheckpointError, CheckpointMeta, OPTIMIZER_FILE, Staged, check_config, commit_staged, load_weights, read_meta, recover_staged,
};
use crate::model::ema::ema_update;
use crate::model::generator::{GeneratorConfig, NvgGenerator};
use crate::model::generator_io::GENERATOR_KIND;
use crate::model::tokenizer::to_vec_f32;
use crate::model::{Tokenizer, TokenizerConfig};
use crate::model::images::images_to_tensor;
use crate::sampler::streams::normal;

use super::fast::{AdamW, HOST_OPTIMIZER_FILE, HostTrainer, host_batch};
use super::monitor::{Accumulator, FlowSample, HeldOut, TeacherBatch, TrainLog, TrainStats, batch_losses, structure_ratios};
use super::tokenizer::{TrainError, split_indices};

/// Sub-directory of a generator checkpoint holding the raw (non-EMA) weights and optimizer state.
pub const TRAIN_STATE_DIR: &str = "train-state";
/// The marker of a checkpoint being put in place (`train-state/.checkpoint-commit`).
pub const COMMIT_MARKER: &str = ".checkpoint-commit";

/// Options of a generator training run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GeneratorTrainOptions {
    /// Total optimisation steps.
    pub steps: u64,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps (from 0.005·lr).
    pub warmup_steps: u64,
    /// Fraction of the steps after which the learning rate decays linearly …
    pub decay_start: f64,
    /// … to this fraction of the peak.
    pub final_lr_fraction: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// EMA decay of the weights used for sampling.
    pub ema_decay: f64,
    /// Probability that a label is replaced by the null class (CFG dropout).
    pub label_dropout: f64,
    /// Content (and structure) stages trained per step; `None` = all.
    pub stages_per_step: Option<usize>,
    /// Checkpoint every N steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Stop (with a checkpoint) after this step, keeping the learning-rate schedule of `steps`;
    /// `--resume` continues the same run later.
    #[serde(default)]
    pub stop_after: Option<u64>,
    /// Seed.
    pub seed: u64,
    /// Images used to compute the content scale factors.
    pub scale_images: usize,
    /// Fraction of the data held out (not trained on; used by evaluation).
    pub holdout_fraction: f64,
    /// Random horizontal flips.
    pub flip: bool,
    /// Evaluate the EMA weights on the fixed held-out batch every N steps (0: never); the
    /// per-stage losses go to `train-log.csv` next to their baselines.
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// Images in the held-out batch.
    #[serde(default = "default_eval_images")]
    pub eval_images: usize,
    /// Which branches are trained (both by default; one alone for the overfit diagnostics).
    #[serde(default)]
    pub branches: Branches,
    /// Train on N training images only, of as many classes as possible ([`overfit_subset`];
    /// the overfit diagnostics); the held-out batch is then those same images.
    #[serde(default)]
    pub subset: Option<usize>,
    /// Which implementation computes the steps.
    #[serde(default)]
    pub path: TrainPath,
    /// Which AdamW variant (the method's needs the host path).
    #[serde(default)]
    pub optimizer: TrainOptimizer,
}

/// The AdamW variant of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrainOptimizer {
    /// What burn's AdamW does as configured here: every tensor's gradient clipped to norm 1 on
    /// its own, weight decay on every tensor. Both paths.
    #[default]
    Burn,
    /// The method's (§4.8): the global gradient norm clipped to 1, no decay on biases and norm
    /// scales. Host path only.
    Paper,
}

impl TrainOptimizer {
    /// The host path's settings for weight decay `wd`.
    pub fn adamw(self, wd: f64) -> AdamW {
        match self {
            TrainOptimizer::Burn => AdamW::generator(wd),
            TrainOptimizer::Paper => AdamW::paper(wd),
        }
    }
}

impl std::str::FromStr for TrainOptimizer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "burn" => Ok(Self::Burn),
            "paper" => Ok(Self::Paper),
            other => Err(format!("unknown optimizer '{other}': expected burn or paper")),
        }
    }
}

/// The implementation of a training step: burn autodiff or the host path ([`super::fast`]).
/// Both write the same checkpoints, so a run may resume on either (the optimizer moments
/// carry over only within one path; the other starts them afresh and says so).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrainPath {
    /// The host path on burn's CPU (flex) device, burn autodiff on any other (GPU) device.
    #[default]
    Auto,
    /// burn autodiff on the chosen device.
    Burn,
    /// The host path (CPU), whatever the device the tokenizer runs on.
    Host,
}

impl TrainPath {
    /// Whether `device` gets the host path.
    pub fn host_on(self, device: &Device) -> bool {
        match self {
            TrainPath::Auto => *device == Device::flex(),
            TrainPath::Burn => false,
            TrainPath::Host => true,
        }
    }
}

impl std::str::FromStr for TrainPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "burn" => Ok(Self::Burn),
            "host" => Ok(Self::Host),
            other => Err(format!("unknown training path '{other}': expected auto, burn or host")),
        }
    }
}

fn default_eval_every() -> u64 {
    100
}

fn default_eval_images() -> usize {
    32
}

/// The branches a run trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Branches {
    /// Content and structure (the normal objective).
    Both,
    /// The content branch alone (teacher-forced on the true structure).
    Content,
    /// The structure branch alone (conditioned on the true content).
    Structure,
}

impl Default for Branches {
    fn default() -> Self {
        Self::Both
    }
}

impl Branches {
    /// Whether the content branch is trained.
    pub fn content(self) -> bool {
        self != Self::Structure
    }
    /// Whether the structure branch is trained.
    pub fn structure(self) -> bool {
        self != Self::Content
    }
}

impl Default for GeneratorTrainOptions {
    fn default() -> Self {
        Self {
            steps: 4000,
            batch_size: 16,
            lr: 3e-4,
            warmup_steps: 200,
            decay_start: 0.8,
            final_lr_fraction: 0.1,
            weight_decay: 0.05,
            ema_decay: 0.999,
            label_dropout: 0.1,
            stages_per_step: None,
            checkpoint_every: 500,
            stop_after: None,
            seed: 0,
            scale_images: 256,
            holdout_fraction: 0.1,
            flip: true,
            eval_every: default_eval_every(),
            eval_images: default_eval_images(),
            branches: Branches::Both,
            subset: None,
            path: TrainPath::Auto,
            optimizer: TrainOptimizer::Burn,
        }
    }
}

/// One step's progress.
#[derive(Clone, Debug)]
pub struct GeneratorStep {
    /// Step just finished (1-based).
    pub step: u64,
    /// Total steps.
    pub total: u64,
    /// Content loss (x0 MSE + CE, averaged over the stages trained).
    pub content: f64,
    /// Structure loss (velocity MSE, averaged over the stages trained).
    pub structure: f64,
    /// Images per second in this run.
    pub images_per_sec: f64,
    /// The latest held-out evaluation: held-out structure loss / context-free baseline, per
    /// structure stage (empty before the first evaluation).
    pub heldout_structure_ratio: Vec<(usize, f64)>,
    /// The latest held-out content cross-entropy / unigram baseline, per content stage.
    pub heldout_content_ratio: Vec<(usize, f64)>,
}

/// What a step's update needs: burn's loss (to differentiate) or the host path's gradients.
enum Update {
    Burn(burn::tensor::Tensor<1>),
    Host(Vec<f32>),
}

/// Learning rate at `step`: linear warm-up from 0.005·lr, hold, linear decay (§4.8).
pub fn lr_at(opts: &GeneratorTrainOptions, step: u64) -> f64 {
    let w = opts.warmup_steps.max(1);
    if step < w {
        return opts.lr * (0.005 + 0.995 * step as f64 / w as f64);
    }
    let d0 = (opts.decay_start * opts.steps as f64) as u64;
    if step < d0 || opts.steps <= d0 {
        return opts.lr;
    }
    let f = (step - d0) as f64 / (opts.steps - d0) as f64;
    opts.lr * (1.0 - f * (1.0 - opts.final_lr_fraction))
}

/// 1/std of every stage's canvas input (index i, i ≥ 1), 1.0 at stage 0 (E_start is used
/// there), and 1/std of the final canvas as the output scale (index S), over `indices`.
pub fn content_scale_factors(
    tokenizer: &Tokenizer,
    tcfg: &TokenizerConfig,
    data: &dyn ImageSource,
    indices: &[usize],
    device: &Device,
) -> Result<Vec<f32>, TrainError> {
    let s = tcfg.num_stages();
    let mut sum = vec![0f64; s + 1];
    let mut sq = vec![0f64; s + 1];
    let mut n = 0f64;
    for chunk in indices.chunks(32) {
        let imgs: Vec<_> = chunk
            .iter()
            .map(|&i| data.get(i).map(|x| x.0))
            .collect::<Result<_, _>>()
            .map_err(|e| TrainError::Data(e.to_string()))?;
        let enc = tokenizer.encode(images_to_tensor(&imgs, device), tcfg.phi_weight);
        for (i, c) in enc.quantized.canvases.iter().enumerate() {
            for v in to_vec_f32(c.clone()) {
                sum[i] += v as f64;
                sq[i] += (v as f64) * (v as f64);
            }
        }
        n += (imgs.len() * tcfg.grid_side() * tcfg.grid_side() * tcfg.latent_channels) as f64;
    }
    Ok((0..=s)
        .map(|i| {
            if i == 0 {
                return 1.0;
            }
            let mean = sum[i] / n;
            let var = (sq[i] / n - mean * mean).max(1e-12);
            (1.0 / var.sqrt()) as f32
        })
        .collect())
}

/// The generator's AdamW (β₂ 0.95, global-norm clipping 1.0); `bench --what train` uses it too.
pub fn optimizer(opts: &GeneratorTrainOptions) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_2(0.95)
        .with_weight_decay(opts.weight_decay as f32)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init()
}

/// The `n` training images an overfit run memorises: as many classes as possible, spread over
/// the class list (n ≤ classes: classes i·k/n, each its first image in the split), then round
/// after round one more image per class. Distinct classes matter: at the first split the only
/// things that tell two images apart are the class and one code, so two images of one class
/// whose codes are close are ambiguous, and memorising them is not what the proof is about.
pub fn overfit_subset(train: &[usize], n: usize, data: &dyn ImageSource) -> Result<Vec<usize>, TrainError> {
    let mut by_class: std::collections::BTreeMap<usize, Vec<usize>> = std::collections::BTreeMap::new();
    for &i in train {
        let (_, c) = data.get(i).map_err(|e| TrainError::Data(e.to_string()))?;
        by_class.entry(c).or_default().push(i);
    }
    let classes: Vec<&Vec<usize>> = by_class.values().collect();
    let k = classes.len();
    if n <= k {
        return Ok((0..n).map(|i| classes[i * k / n][0]).collect());
    }
    let mut out = Vec::with_capacity(n);
    let mut round = 0;
    while out.len() < n {
        for items in &classes {
            if let Some(&i) = items.get(round).filter(|_| out.len() < n) {
                out.push(i);
            }
        }
        round += 1;
    }
    Ok(out)
}

/// Derives the generator configuration for a tokenizer and a data set from a shape preset.
pub fn fit_config(shape: &GeneratorConfig, tcfg: &TokenizerConfig, num_classes: usize, scale: Vec<f32>) -> GeneratorConfig {
    GeneratorConfig {
        vocab_size: tcfg.codebook_size,
        latent_channels: tcfg.latent_channels,
        grid_side: tcfg.grid_side(),
        num_classes,
        scale_factors: scale,
        ..shape.clone()
    }
}

/// Trains (or resumes) a generator on `data` with a frozen `tokenizer`; writes `out/` (EMA
/// weights, for sampling) and `out/train-state/` (raw weights and optimizer, for `--resume`).
#[allow(clippy::too_many_arguments)]
pub fn train_generator(
    shape: &GeneratorConfig,
    tokenizer: &Tokenizer,
    tcfg: &TokenizerConfig,
    data: &dyn ImageSource,
    out: &Path,
    opts: &GeneratorTrainOptions,
    resume: bool,
    device: &Device,
    progress: &mut dyn FnMut(&GeneratorStep),
) -> Result<GeneratorConfig, TrainError> {
    super::check_common(opts.steps, opts.batch_size, opts.lr, opts.holdout_fraction)?;
    let unit = |name: &str, v: f64, top_open: bool| -> Result<(), TrainError> {
        let ok = v.is_finite() && v >= 0.0 && if top_open { v < 1.0 } else { v <= 1.0 };
        if ok { Ok(()) } else { Err(TrainError::Options(format!("{name} {v}: expected 0 to {}1", if top_open { "below " } else { "" }))) }
    };
    unit("--ema-decay", opts.ema_decay, true)?;
    unit("weight decay", opts.weight_decay, false)?;
    unit("label dropout", opts.label_dropout, false)?;
    unit("final learning-rate fraction", opts.final_lr_fraction, false)?;
    unit("decay start", opts.decay_start, false)?;
    if data.len() < 2 {
        return Err(TrainError::Data(format!("need at least 2 images to train, found {}", data.len())));
    }
    let _lock = super::lock_run_folder(out, "train-generator")?;
    let state_dir_early = out.join(TRAIN_STATE_DIR);
    if let Some(note) = recover_staged(&state_dir_early.join(COMMIT_MARKER), &[out, &state_dir_early])? {
        eprintln!("note: {note}");
    }
    let class_names = data.class_names().to_vec();
    let ad = device.clone().autodiff();
    let (train, held) = split_indices(data.len(), opts.holdout_fraction, opts.seed);
    let state_dir = out.join(TRAIN_STATE_DIR);

    let (cfg, mut model, mut ema, mut optim, start) = if resume {
        let meta: CheckpointMeta<GeneratorConfig> = read_meta(&state_dir, GENERATOR_KIND)?;
        let expected = fit_config(shape, tcfg, class_names.len(), meta.config.scale_factors.clone());
        check_config(&state_dir, &meta.config, &expected)?;
        let model = load_weights(&state_dir, NvgGenerator::new(&meta.config, &ad))?;
        let ema = load_weights(out, NvgGenerator::new(&meta.config, device))?;
        let ema_step = read_meta::<GeneratorConfig>(out, GENERATOR_KIND).map(|m| m.step).unwrap_or(meta.step);
        if ema_step != meta.step {
            let m = ema_step;
            eprintln!("note: the EMA weights in {} are from step {m}, the training weights from step {} (a checkpoint write was interrupted); training goes on from both", out.display(), meta.step);
        }
        let mut o = optimizer(opts);
        let p = state_dir.join(OPTIMIZER_FILE);
        if p.exists() {
            o = o.load(&p).map_err(|e| CheckpointError::BadWeights { path: p.clone(), reason: format!("{e:?}") })?;
        }
        (meta.config, model, ema, o, meta.step)
    } else {
        let take: Vec<usize> = train.iter().copied().take(opts.scale_images.max(1)).collect();
        let scale = content_scale_factors(tokenizer, tcfg, data, &take, device)?;
        let cfg = fit_config(shape, tcfg, class_names.len(), scale);
        cfg.validate().map_err(TrainError::Options)?;
        ad.seed(opts.seed);
        let model = NvgGenerator::new(&cfg, &ad);
        let ema = model.valid();
        (cfg, model, ema, optimizer(opts), 0)
    };

    if opts.optimizer == TrainOptimizer::Paper && !opts.path.host_on(device) {
        return Err(TrainError::Options("--optimizer paper needs the host path (--path host, or auto on the CPU backend)".into()));
    }
    let adamw = opts.optimizer.adamw(opts.weight_decay);
    let mut host = if opts.path.host_on(device) {
        let mut h = HostTrainer::new(&model.valid(), &ema, adamw);
        let p = state_dir.join(HOST_OPTIMIZER_FILE);
        if resume && p.exists() {
            let at = h.load_state(&p).map_err(|reason| CheckpointError::BadWeights { path: p.clone(), reason })?;
            if at.is_some_and(|at| at != start) {
                // A save was cut short between the files of one checkpoint: the moments belong
                // to another step than the weights. The weights win; the moments start afresh.
                eprintln!("note: {} is from step {}, the weights from step {start} (a checkpoint write was interrupted); AdamW moments start afresh", p.display(), at.unwrap_or(0));
                h = HostTrainer::new(&model.valid(), &ema, adamw);
            }
        } else if resume {
            eprintln!("note: {} has no host optimizer state (the run was trained on the burn path); AdamW moments start afresh", state_dir.display());
        }
        Some(h)
    } else {
        if resume && !state_dir.join(OPTIMIZER_FILE).exists() && state_dir.join(HOST_OPTIMIZER_FILE).exists() {
            eprintln!("note: {} holds the host path's optimizer state only; burn's AdamW moments start afresh", state_dir.display());
        }
        None
    };
    // The host path keeps its own weights; this copy (on the plain device) receives them for
    // evaluations and checkpoints.
    let template = model.valid();

    let s_count = cfg.num_stages();
    let bits = cfg.num_bits();
    let l = cfg.num_positions();
    let net_stages = cfg.num_structure_stages();
    let null = cfg.null_class();
    let train: Vec<usize> = match opts.subset {
        Some(0) => return Err(TrainError::Options("--images must be at least 1".into())),
        Some(n) if n > train.len() => {
            return Err(TrainError::Options(format!("--images {n}: the training split has only {} images", train.len())));
        }
        Some(n) => overfit_subset(&train, n, data)?,
        None => train,
    };
    // The held-out batch: fixed images (the training subset itself in the overfit runs), fixed
    // flow samples, baselines on exactly those samples.
    let held_idx: Vec<usize> = match opts.subset {
        Some(_) => train.clone(),
        None => held.iter().copied().take(opts.eval_images).collect(),
    };
    let heldout = if opts.eval_every > 0 && !held_idx.is_empty() {
        let take: Vec<usize> = train.iter().copied().take(opts.scale_images.max(1)).collect();
        let stats = TrainStats::measure(tokenizer, tcfg, data, &take, device)?;
        Some(HeldOut::new(tokenizer, tcfg, data, &held_idx, &stats, net_stages, opts.seed, device)?)
    } else {
        None
    };
    let mut log = TrainLog::open(out, start)?;
    if let Some(h) = &heldout {
        if start == 0 || !log.has_baseline() {
            log.write(0, "baseline", &h.baselines.rows)?;
        }
    }
    let mut acc = Accumulator::default();
    let mut last_ratio = (Vec::new(), Vec::new());
    let t0 = Instant::now();
    let mut seen = 0usize;
    let extra = serde_json::json!({ "class_names": class_names, "train_options": opts });
    let end = opts.stop_after.map_or(opts.steps, |s| s.min(opts.steps));
    for step in start..end {
        // A stream of its own per step, so that a run resumed from any checkpoint draws exactly
        // what the uninterrupted run drew from there.
        let mut rng = ChaCha8Rng::seed_from_u64(crate::granularity::rng::splitmix64(opts.seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        // ---- batch and its teacher-forcing targets (frozen tokenizer, no autodiff) ----
        let mut imgs = Vec::with_capacity(opts.batch_size);
        let mut classes = Vec::with_capacity(opts.batch_size);
        for _ in 0..opts.batch_size {
            let i = train[rng.random_range(0..train.len())];
            let (mut img, c) = data.get(i).map_err(|e| TrainError::Data(e.to_string()))?;
            if opts.flip && rng.random_bool(0.5) {
                img.flip_horizontal();
            }
            imgs.push(img);
            classes.push(if rng.random_bool(opts.label_dropout) { null } else { c });
        }
        let b = imgs.len();
        let batch = TeacherBatch::encode(tokenizer, tcfg, &imgs, classes, device);

        let pick = |rng: &mut ChaCha8Rng, n: usize| -> Vec<usize> {
            let mut all: Vec<usize> = (0..n).collect();
            if let Some(k) = opts.stages_per_step.filter(|&k| k < n) {
                for i in 0..k {
                    let j = rng.random_range(i..n);
                    all.swap(i, j);
                }
                all.truncate(k);
            }
            all
        };
        let c_stages = pick(&mut rng, s_count);
        let s_stages = pick(&mut rng, net_stages);
        let c_stages = if opts.branches.content() { c_stages } else { Vec::new() };
        let s_stages = if opts.branches.structure() { s_stages } else { Vec::new() };
        // One noise tensor per image shared by its structure sequences, an independent
        // logit-normal t per sequence (§4.6).
        let full = batch.full_bits(bits);
        let eps: Vec<f32> = (0..b * l * bits).map(|_| normal(&mut rng)).collect();
        let flows: Vec<FlowSample> = s_stages
            .iter()
            .map(|&k| {
                let ts = FlowSample::times(&mut rng, b);
                FlowSample::new(k, &full, &eps, ts, l, bits)
            })
            .collect();

        let (vals, update) = match &host {
            Some(h) => {
                let r = h.loss_and_grads(&host_batch(&batch), &c_stages, &flows);
                (r.values, Update::Host(r.grads))
            }
            None => {
                let losses = batch_losses(&model, &batch, &c_stages, &flows);
                let loss = losses.objective(&ad);
                (losses.values(bits), Update::Burn(loss))
            }
        };
        if !vals.all_finite() {
            return Err(TrainError::Options(format!(
                "loss became non-finite at step {} (content {:.4}, structure {:.4}); lower --lr",
                step + 1,
                vals.content_mean(),
                vals.structure_mean()
            )));
        }
        acc.push(&vals);
        let decay = if step < opts.warmup_steps { 0.0 } else { opts.ema_decay };
        match (update, host.as_mut()) {
            (Update::Host(grads), Some(h)) => {
                h.apply(grads, lr_at(opts, step));
                h.update_ema(decay);
            }
            (Update::Burn(loss), _) => {
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(lr_at(opts, step), model, grads);
                ema = ema_update(ema, &model, decay);
            }
            (Update::Host(_), None) => unreachable!("host gradients come from the host trainer"),
        }
        seen += b;
        let evaluate_now = opts.eval_every > 0 && (step + 1 == end || (step + 1) % opts.eval_every == 0);
        let interrupted = super::stop_requested();
        let save_now = interrupted || step + 1 == end || (opts.checkpoint_every > 0 && (step + 1) % opts.checkpoint_every == 0);
        if let Some(h) = &host {
            if evaluate_now || save_now {
                ema = h.ema_model(template.clone());
            }
        }
        let done = step + 1;
        if opts.eval_every > 0 && (done % opts.eval_every == 0 || done == end) {
            log.write(done, "train", &acc.take())?;
            if let Some(h) = &heldout {
                let v = h.evaluate(&ema, opts.branches.content(), opts.branches.structure());
                log.write(done, "heldout", &TrainLog::heldout_rows(&v))?;
                last_ratio.0 = structure_ratios(&v, &h.baselines);
                last_ratio.1 = v
                    .content
                    .iter()
                    .filter_map(|&(i, _, ce)| h.baselines.get("content_ce_baseline_unigram", i).map(|b| (i, ce / b.max(1e-12))))
                    .collect();
            }
        }
        progress(&GeneratorStep {
            step: done,
            total: opts.steps,
            content: vals.content_mean(),
            structure: vals.structure_mean(),
            images_per_sec: seen as f64 / t0.elapsed().as_secs_f64().max(1e-9),
            heldout_structure_ratio: last_ratio.0.clone(),
            heldout_content_ratio: last_ratio.1.clone(),
        });
        if save_now {
            // Every file of the checkpoint is staged, then all are put in place as one step.
            let mut staged = Staged::default();
            match &host {
                Some(h) => {
                    staged.module(&state_dir, GENERATOR_KIND, &cfg, &h.model(template.clone()), done, extra.clone())?;
                    staged.file(&state_dir.join(HOST_OPTIMIZER_FILE), |p| h.save_state(p, done))?;
                }
                None => {
                    staged.module(&state_dir, GENERATOR_KIND, &cfg, &model, done, extra.clone())?;
                    staged.file(&state_dir.join(OPTIMIZER_FILE), |p| optim.save(p).map_err(|e| format!("{e:?}")))?;
                }
            }
            staged.module(out, GENERATOR_KIND, &cfg, &ema, done, extra.clone())?;
            commit_staged(&state_dir.join(COMMIT_MARKER), staged)?;
            // The other path's moments, if any, are older than these weights now.
            let stale = if host.is_some() { OPTIMIZER_FILE } else { HOST_OPTIMIZER_FILE };
            let _ = std::fs::remove_file(state_dir.join(stale));
        }
        if interrupted {
            break;
        }
    }
    Ok(cfg)
}
