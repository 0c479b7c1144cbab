//! Tokenizer training (method §2.8 as adapted in §10.7): L1 + MSE reconstruction, the VQ terms
//! averaged over stages, straight-through to the encoder, and the IBQ soft warm-up for codebook
//! use. No pretrained LPIPS/DINO networks exist here, so those terms are left out.
//!
//! One addition [I]: each step also decodes the canvas after one random intermediate stage
//! (weight `stage_decode_weight`), so partial canvases decode to meaningful images and the
//! per-stage reconstruction quality rises stage by stage — the editor shows every stage.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::tensor::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::ImageSource;
use crate::model::checkpoint::{CheckpointError, OPTIMIZER_FILE, Staged, commit_staged, recover_staged};
use crate::model::tokenizer_io::TOKENIZER_KIND;
use super::generator::COMMIT_MARKER;
use crate::model::tokenizer::to_vec_f32;
use crate::model::tokenizer_io::load_tokenizer;
use crate::model::{CodeSelection, Tokenizer, TokenizerConfig};
use crate::model::images::images_to_tensor;

/// Options of a tokenizer training run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenizerTrainOptions {
    /// Total optimisation steps.
    pub steps: u64,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate (AdamW, betas 0.9/0.95, no weight decay, §2.8).
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Steps of IBQ soft code selection at the start (§2.8, "epoch 0").
    pub soft_warmup_steps: u64,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Seed of data order, flips and initialisation.
    pub seed: u64,
    /// Weight of the random intermediate-stage reconstruction term.
    pub stage_decode_weight: f64,
    /// Fraction of the data held out for the final report.
    pub holdout_fraction: f64,
    /// Held-out images used for the report (at most).
    pub eval_images: usize,
    /// Random horizontal flips.
    pub flip: bool,
}

impl Default for TokenizerTrainOptions {
    fn default() -> Self {
        Self {
            steps: 2000,
            batch_size: 16,
            lr: 1e-3,
            warmup_steps: 100,
            soft_warmup_steps: 200,
            checkpoint_every: 500,
            seed: 0,
            stage_decode_weight: 0.5,
            holdout_fraction: 0.1,
            eval_images: 64,
            flip: true,
        }
    }
}

/// Progress of one step, for progress bars.
#[derive(Clone, Debug)]
pub struct StepInfo {
    /// Step just finished (1-based).
    pub step: u64,
    /// Total steps.
    pub total: u64,
    /// Total loss.
    pub loss: f64,
    /// Reconstruction part (L1 + MSE of the final canvas).
    pub recon: f64,
    /// VQ part.
    pub vq: f64,
    /// Images per second over this run so far.
    pub images_per_sec: f64,
}

/// Final report of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenizerReport {
    /// Steps done in total (including resumed ones).
    pub steps: u64,
    /// Loss of the last step.
    pub final_loss: f64,
    /// Mean PSNR (dB) on held-out images of the decoded canvas after each stage 0..S−1.
    pub psnr_per_stage: Vec<f64>,
    /// Fraction of the codebook used per stage on the held-out images.
    pub codebook_usage_per_stage: Vec<f64>,
    /// Held-out images evaluated.
    pub eval_images: usize,
    /// Training throughput (images per second) of this run.
    pub images_per_sec: f64,
}

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Checkpoint problem.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Data problem.
    #[error("{0}")]
    Data(String),
    /// Bad option.
    #[error("{0}")]
    Options(String),
    /// The run folder is in use by another process.
    #[error(transparent)]
    Locked(#[from] crate::model::run_lock::LockError),
}

/// Deterministic held-out split of `n` items: (train, held_out).
pub fn split_indices(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    shuffle(&mut idx, seed ^ 0x5eed_0f_5011);
    let hold = if n >= 2 { ((n as f64 * fraction).round() as usize).clamp(1, n - 1) } else { 0 };
    let held = idx[..hold].to_vec();
    let mut train = idx[hold..].to_vec();
    train.sort_unstable();
    let mut held = held;
    held.sort_unstable();
    (train, held)
}

fn shuffle(v: &mut [usize], seed: u64) {
    crate::data::order::shuffle_uniform(v, &mut ChaCha8Rng::seed_from_u64(seed));
}

/// The training sample at global position `g` (epoch-wise reshuffled order, resumable).
fn sample_at(train: &[usize], g: u64, seed: u64) -> usize {
    let n = train.len() as u64;
    let epoch = g / n;
    let mut order: Vec<usize> = (0..train.len()).collect();
    shuffle(&mut order, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(epoch));
    train[order[(g % n) as usize]]
}

fn l1_mse(a: Tensor<4>, b: Tensor<4>) -> Tensor<1> {
    let d = a - b;
    d.clone().abs().mean() + d.powi_scalar(2).mean()
}

fn lr_at(opts: &TokenizerTrainOptions, step: u64) -> f64 {
    if step < opts.warmup_steps {
        opts.lr * (0.005 + 0.995 * step as f64 / opts.warmup_steps as f64)
    } else {
        opts.lr
    }
}

fn optimizer() -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_2(0.95)
        .with_weight_decay(0.0)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init()
}

/// Trains (or resumes training of) a tokenizer and writes checkpoints to `out`.
pub fn train_tokenizer(
    cfg: &TokenizerConfig,
    data: &dyn ImageSource,
    out: &Path,
    opts: &TokenizerTrainOptions,
    resume: bool,
    device: &Device,
    progress: &mut dyn FnMut(&StepInfo),
) -> Result<TokenizerReport, TrainError> {
    cfg.validate().map_err(TrainError::Options)?;
    super::check_common(opts.steps, opts.batch_size, opts.lr, opts.holdout_fraction)?;
    if !(opts.stage_decode_weight.is_finite() && opts.stage_decode_weight >= 0.0) {
        return Err(TrainError::Options(format!("stage decode weight {}: expected a number ≥ 0", opts.stage_decode_weight)));
    }
    if data.len() < 2 {
        return Err(TrainError::Data(format!("need at least 2 images to train, found {}", data.len())));
    }
    let _lock = super::lock_run_folder(out, "train-tokenizer")?;
    if let Some(note) = recover_staged(&out.join(COMMIT_MARKER), &[out])? {
        eprintln!("note: {note}");
    }
    let ad = device.clone().autodiff();
    let (train, held) = split_indices(data.len(), opts.holdout_fraction, opts.seed);
    let (mut model, mut optim, start) = if resume {
        let (meta, m) = load_tokenizer(out, Some(cfg), &ad)?;
        let mut o = optimizer();
        let opt_path = out.join(OPTIMIZER_FILE);
        if opt_path.exists() {
            o = o.load(&opt_path).map_err(|e| {
                TrainError::Checkpoint(CheckpointError::BadWeights { path: opt_path.clone(), reason: format!("{e:?}") })
            })?;
        }
        (m, o, meta.step)
    } else {
        device.seed(opts.seed);
        ad.seed(opts.seed);
        (Tokenizer::new(cfg, &ad), optimizer(), 0)
    };
    let phi_w = cfg.phi_weight;
    let stages = cfg.num_stages();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ start.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let t0 = Instant::now();
    let mut last_loss = f64::NAN;
    let mut done_images = 0usize;
    for step in start..opts.steps {
        let mut imgs = Vec::with_capacity(opts.batch_size);
        for j in 0..opts.batch_size {
            let i = sample_at(&train, step * opts.batch_size as u64 + j as u64, opts.seed);
            let (mut img, _) = data.get(i).map_err(|e| TrainError::Data(e.to_string()))?;
            if opts.flip && rng.random_bool(0.5) {
                img.flip_horizontal();
            }
            imgs.push(img);
        }
        let x = images_to_tensor(&imgs, &ad);
        let latent = model.encode_latent(x.clone());
        if to_vec_f32(latent.clone().detach()).iter().any(|v| !v.is_finite()) {
            return Err(TrainError::Options(format!(
                "the encoder's latent became non-finite at step {} (damaged weights?); lower --lr or start from a sound checkpoint",
                step + 1
            )));
        }
        let hier = Tokenizer::cluster(&latent);
        let mode = if step < opts.soft_warmup_steps { CodeSelection::SoftWarmup } else { CodeSelection::Hard };
        let q = model.quantize(latent.clone(), &hier, phi_w, mode);
        let fin = q.canvases[stages].clone();
        let st = latent.clone() + (fin - latent.clone()).detach();
        let recon = l1_mse(model.decode_raw(st), x.clone());
        let mut vq: Tensor<1> = Tensor::zeros([1], &ad);
        for f_i in &q.canvases[1..] {
            vq = vq
                + (f_i.clone().detach() - latent.clone()).powi_scalar(2).mean().mul_scalar(0.25)
                + (f_i.clone() - latent.clone().detach()).powi_scalar(2).mean();
        }
        let vq = vq.div_scalar(stages as f64);
        let mut loss = recon.clone() + vq.clone();
        if opts.stage_decode_weight > 0.0 && stages > 2 {
            let s = rng.random_range(1..stages);
            let part = l1_mse(model.decode_raw(q.canvases[s].clone()), x);
            loss = loss + part.mul_scalar(opts.stage_decode_weight);
        }
        let vals = to_vec_f32(Tensor::cat(vec![loss.clone().detach(), recon.detach(), vq.detach()], 0));
        last_loss = vals[0] as f64;
        // Checked before the update, so no non-finite weights ever reach a checkpoint.
        if !last_loss.is_finite() {
            return Err(TrainError::Options(format!(
                "loss became {last_loss} at step {}; lower --lr",
                step + 1
            )));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr_at(opts, step), model, grads);
        done_images += opts.batch_size;
        let ips = done_images as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        progress(&StepInfo {
            step: step + 1,
            total: opts.steps,
            loss: last_loss,
            recon: vals[1] as f64,
            vq: vals[2] as f64,
            images_per_sec: ips,
        });
        let at_end = step + 1 == opts.steps;
        if at_end || (opts.checkpoint_every > 0 && (step + 1) % opts.checkpoint_every == 0) {
            save_checkpoint(out, cfg, &model, &optim, step + 1, opts)?;
        }
    }
    if start >= opts.steps {
        save_checkpoint(out, cfg, &model, &optim, start, opts)?;
    }
    let ips = done_images as f64 / t0.elapsed().as_secs_f64().max(1e-9);
    let eval_model = model.valid();
    let held: Vec<usize> = held.into_iter().take(opts.eval_images).collect();
    let (psnr, usage) = evaluate(&eval_model, cfg, data, &held, device)?;
    let report = TokenizerReport {
        steps: opts.steps.max(start),
        final_loss: last_loss,
        psnr_per_stage: psnr,
        codebook_usage_per_stage: usage,
        eval_images: held.len(),
        images_per_sec: ips,
    };
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    crate::model::checkpoint::write_atomic(&out.join("report.json"), text.as_bytes())
        .map_err(|e| TrainError::Data(format!("{}: cannot write ({e})", out.join("report.json").display())))?;
    Ok(report)
}

fn save_checkpoint(
    out: &Path,
    cfg: &TokenizerConfig,
    model: &Tokenizer,
    optim: &ModuleOptimizer,
    step: u64,
    opts: &TokenizerTrainOptions,
) -> Result<(), TrainError> {
    // Weights, metadata and optimizer put in place as one step (see `commit_staged`).
    let mut staged = Staged::default();
    let extra = serde_json::json!({ "train_options": opts });
    staged.module(out, TOKENIZER_KIND, cfg, model, step, extra)?;
    staged.file(&out.join(OPTIMIZER_FILE), |p| optim.save(p).map_err(|e| format!("{e:?}")))?;
    commit_staged(&out.join(COMMIT_MARKER), staged)?;
    Ok(())
}

/// PSNR (dB, images in [-1, 1] compared in [0, 1] units) per stage and codebook usage per stage.
pub fn evaluate(
    model: &Tokenizer,
    cfg: &TokenizerConfig,
    data: &dyn ImageSource,
    indices: &[usize],
    device: &Device,
) -> Result<(Vec<f64>, Vec<f64>), TrainError> {
    let stages = cfg.num_stages();
    let mut psnr_sum = vec![0f64; stages];
    let mut used: Vec<std::collections::BTreeSet<u32>> = vec![Default::default(); stages];
    let mut count = 0usize;
    for chunk in indices.chunks(16) {
        let mut imgs = Vec::new();
        for &i in chunk {
            imgs.push(data.get(i).map_err(|e| TrainError::Data(e.to_string()))?.0);
        }
        let x = images_to_tensor(&imgs, device);
        let enc = model.encode(x.clone(), cfg.phi_weight);
        for (b, codes) in enc.quantized.codes.iter().enumerate() {
            for (s, c) in codes.iter().enumerate() {
                let hist = enc.hierarchies[b].cluster_sizes(s);
                for (k, &code) in c.iter().enumerate() {
                    if hist[k] > 0 {
                        used[s].insert(code);
                    }
                }
            }
        }
        for s in 0..stages {
            let dec = model.decode(enc.quantized.canvases[s + 1].clone());
            let err = to_vec_f32((dec - x.clone()).powi_scalar(2));
            let per = err.len() / chunk.len();
            for b in 0..chunk.len() {
                let mse = err[b * per..(b + 1) * per].iter().map(|&v| v as f64).sum::<f64>() / per as f64 / 4.0;
                psnr_sum[s] += 10.0 * (1.0 / mse.max(1e-12)).log10();
            }
        }
        count += chunk.len();
    }
    let n = count.max(1) as f64;
    Ok((
        psnr_sum.iter().map(|v| v / n).collect(),
        used.iter().map(|u| u.len() as f64 / cfg.codebook_size as f64).collect(),
    ))
}
