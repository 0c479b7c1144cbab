//! The training commands: `train-tokenizer`, `train-generator` and `plot-training`.

use std::path::PathBuf;

use anyhow::{Result, anyhow};

use nvg_studio::model::backend::BackendChoice;
use nvg_studio::model::tokenizer_io::load_tokenizer;
use nvg_studio::model::generator::GeneratorConfig;
use nvg_studio::train::generator::GeneratorTrainOptions;
use nvg_studio::train::TokenizerTrainOptions;
use super::{OnOff, log_if_hidden, pick_backend, preset, training_source};


/// Arguments of `train-tokenizer`.
#[derive(clap::Args)]
pub struct TrainTokenizerArgs {
    #[command(flatten)]
    pub images: super::DataArgs,
    /// Configuration preset (small, test-tiny, reference-tiny, paper).
    #[arg(long, default_value = "small")]
    pub preset: String,
    /// Output checkpoint directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Total optimisation steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: u64,
    /// Images per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Checkpoint every N steps.
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// IBQ soft warm-up steps.
    #[arg(long, default_value_t = 200)]
    pub soft_warmup: u64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue from the checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Start over in a folder that already holds a trained tokenizer, replacing it.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
}

/// Arguments of `train-generator`.
#[derive(clap::Args)]
pub struct TrainGeneratorArgs {
    /// Model directory; its tokenizer/ must exist, generator/ is written.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub source: super::GeneratorDataArgs,
    /// Total optimisation steps.
    #[arg(long, default_value_t = 4000)]
    pub steps: u64,
    /// Images per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    /// Content and structure stages trained per step (default: all).
    #[arg(long)]
    pub stages_per_step: Option<usize>,
    /// EMA decay of the sampling weights (lower for short runs).
    #[arg(long, default_value_t = 0.999)]
    pub ema_decay: f64,
    /// Linear warm-up steps of the learning rate.
    #[arg(long, default_value_t = 200)]
    pub warmup: u64,
    /// Checkpoint every N steps.
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Stop after step N (with a checkpoint), keeping the learning-rate schedule of --steps;
    /// continue later with --resume. Reproduces a run taken at a periodic checkpoint.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Who computes the steps: auto (the fused host path on the CPU backend, burn autodiff on a
    /// GPU), burn, or host. Both write the same checkpoints; --resume works across them.
    #[arg(long, default_value = "auto")]
    pub path: nvg_studio::train::generator::TrainPath,
    /// AdamW variant: burn (each tensor's gradient clipped on its own, decay on every tensor —
    /// what the burn path does) or paper (global norm clipping, no decay on biases and norm
    /// scales, method §4.8; host path only).
    #[arg(long, default_value = "burn")]
    pub optimizer: nvg_studio::train::generator::TrainOptimizer,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue from the checkpoint in DIR/generator.
    #[arg(long)]
    pub resume: bool,
    /// Start over although DIR/generator holds a trained generator, replacing it.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Evaluate the EMA weights on a fixed held-out batch every N steps and log per-stage
    /// losses and their baselines to DIR/generator/train-log.csv (0: never).
    #[arg(long, default_value_t = 100)]
    pub eval_every: u64,
    /// Images in the held-out batch.
    #[arg(long, default_value_t = 32)]
    pub eval_images: usize,
    /// Give the structure branch the fixed position table (on/off; default: the preset's —
    /// on for small and test-tiny, off for the paper's shapes; with --resume, the run's own).
    /// Off reproduces the paper's branch, which cannot tell where a token sits
    /// (docs/training.md).
    #[arg(long)]
    pub structure_positions: Option<OnOff>,
    /// Read the structure head as context logits on top of each bit's own posterior (on/off;
    /// default: the preset's — on for small and test-tiny, off for the paper's shapes; with
    /// --resume, the run's own).
    #[arg(long)]
    pub structure_context_logits: Option<OnOff>,
}

/// Arguments of `plot-training`.
#[derive(clap::Args)]
pub struct PlotTrainingArgs {
    /// Run folder holding train-log.csv (a generator folder, or a model folder with generator/).
    pub run: PathBuf,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// A second run folder whose held-out curves are drawn short-dashed on the same axes.
    #[arg(long)]
    pub compare: Option<PathBuf>,
}

/// A training run without `--resume` would start from scratch and replace the checkpoint in
/// `dir`: refused (one line naming the folder and its step) unless `--force`.
fn refuse_to_replace(dir: &std::path::Path, what: &str, resume: bool, force: bool) -> Result<()> {
    if resume || force {
        return Ok(());
    }
    let meta = dir.join("checkpoint.json");
    if !meta.exists() {
        return Ok(());
    }
    let step = std::fs::read_to_string(&meta)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("step").and_then(|s| s.as_u64()));
    let at = step.map_or(String::new(), |s| format!(" (step {s})"));
    Err(anyhow!(
        "{} already holds a trained {what}{at}: continue it with --resume, or start over and replace it with --force",
        dir.display()
    ))
}

/// `train-tokenizer`.
pub fn train_tokenizer(args: TrainTokenizerArgs, choice: BackendChoice) -> Result<()> {
    let TrainTokenizerArgs { images: super::DataArgs { data, synthetic }, preset: p, out, steps, batch, lr, checkpoint_every, soft_warmup, seed, resume, force } = args;
    let b = pick_backend(choice)?;
    let cfg = preset(&p)?;
    refuse_to_replace(&out, "tokenizer", resume, force)?;
    let size = cfg.image_size as u32;
    let source = training_source(data, synthetic, size, seed)?;
    let opts = TokenizerTrainOptions {
        steps,
        batch_size: batch,
        lr,
        checkpoint_every,
        soft_warmup_steps: soft_warmup,
        seed,
        ..Default::default()
    };
    let pb = super::step_bar(steps);
    let report = nvg_studio::train::train_tokenizer(&cfg, source.as_ref(), &out, &opts, resume, &b.device, &mut |s| {
        pb.set_position(s.step);
        let msg = format!("loss {:.4} (recon {:.4}, vq {:.4}) {:.1} img/s", s.loss, s.recon, s.vq, s.images_per_sec);
        log_if_hidden(&pb, s.step, s.total, &msg);
        pb.set_message(msg);
    })?;
    pb.finish();
    println!("held-out PSNR per stage (dB), {} images:", report.eval_images);
    for (i, p) in report.psnr_per_stage.iter().enumerate() {
        println!(
            "  stage {i}: {p:6.2} dB   codebook use {:5.1}%",
            100.0 * report.codebook_usage_per_stage[i]
        );
    }
    println!("checkpoint: {}", out.display());
    Ok(())
}

/// `train-generator`.
pub fn train_generator(args: TrainGeneratorArgs, choice: BackendChoice) -> Result<()> {
    let TrainGeneratorArgs { model, source: super::GeneratorDataArgs { images: super::DataArgs { data, synthetic }, preset: p }, steps, batch, lr, stages_per_step, ema_decay, warmup, checkpoint_every, stop_after, path, optimizer, seed, resume, force, eval_every, eval_images, structure_positions, structure_context_logits } = args;
    let b = pick_backend(choice)?;
    let mut shape = GeneratorConfig::preset(&p).ok_or_else(|| {
        anyhow!("unknown generator preset '{p}': expected one of {}", GeneratorConfig::PRESETS.join(", "))
    })?;
    refuse_to_replace(&model.join("generator"), "generator", resume, force)?;
    // Resuming without the switches keeps the run's own choice (checkpoints written
    // before the switches existed have both off).
    let resumed = resume
        .then(|| {
            let dir = model.join("generator").join(nvg_studio::train::generator::TRAIN_STATE_DIR);
            nvg_studio::model::checkpoint::read_meta::<GeneratorConfig>(&dir, nvg_studio::model::generator_io::GENERATOR_KIND).ok()
        })
        .flatten();
    if let Some(meta) = &resumed {
        shape.structure_positions = meta.config.structure_positions;
        shape.structure_context_logits = meta.config.structure_context_logits;
    }
    if let Some(on) = structure_positions {
        shape.structure_positions = on == OnOff::On;
    }
    if let Some(on) = structure_context_logits {
        shape.structure_context_logits = on == OnOff::On;
    }
    let (tmeta, tok) = load_tokenizer(&model.join("tokenizer"), None, &b.device)
        .map_err(|e| anyhow!("{e} (train one first: train-tokenizer --out {}/tokenizer)", model.display()))?;
    let tcfg = tmeta.config;
    let size = tcfg.image_size as u32;
    let source = training_source(data, synthetic, size, seed)?;
    let opts = GeneratorTrainOptions {
        steps,
        batch_size: batch,
        lr,
        stages_per_step,
        ema_decay,
        warmup_steps: warmup,
        checkpoint_every,
        stop_after,
        seed,
        eval_every,
        eval_images,
        path,
        optimizer,
        ..Default::default()
    };
    super::stop_on_signals()?;
    eprintln!("training steps: {}", if path.host_on(&b.device) { "host path (fused f32 forward/backward, gemm kernels)" } else { "burn autodiff" });
    let pb = super::step_bar(steps);
    let out = model.join("generator");
    let cfg = nvg_studio::train::generator::train_generator(&shape, &tok, &tcfg, source.as_ref(), &out, &opts, resume, &b.device, &mut |s| {
        pb.set_position(s.step);
        let msg = step_message(s);
        log_if_hidden(&pb, s.step, s.total, &msg);
        pb.set_message(msg);
    })?;
    let reached = pb.position();
    pb.finish();
    if nvg_studio::train::stop_requested() {
        println!("stopped on request; checkpoint written at step {reached} — continue with the same command and --resume");
    }
    println!("generator: {} ({} classes, {} stages)", out.display(), cfg.num_classes, cfg.num_stages());
    Ok(())
}

/// `plot-training`.
pub fn plot_training(args: PlotTrainingArgs, _choice: BackendChoice) -> Result<()> {
    let PlotTrainingArgs { run, out, compare } = args;
    let find = |run: &PathBuf| {
        [run.join(nvg_studio::train::monitor::LOG_FILE), run.join("generator").join(nvg_studio::train::monitor::LOG_FILE)]
            .into_iter()
            .find(|p| p.exists())
            .ok_or_else(|| anyhow!("{}: no {} there or in its generator/ folder", run.display(), nvg_studio::train::monitor::LOG_FILE))
    };
    let log = find(&run)?;
    let other = compare.as_ref().map(find).transpose()?;
    nvg_studio::eval::curves::plot_log_file(&log, other.as_deref(), &out).map_err(|e| anyhow!(e))?;
    println!("curves: {} (from {})", out.display(), log.display());
    Ok(())
}


/// The progress line of a generator training step: losses, speed, and the latest held-out
/// ratios (structure loss / context-free baseline, content CE / unigram baseline).
pub fn step_message(s: &nvg_studio::train::generator::GeneratorStep) -> String {
    let mut msg = format!("content {:.4} structure {:.4} {:.1} img/s", s.content, s.structure, s.images_per_sec);
    let fmt = |v: &[(usize, f64)]| v.iter().map(|(_, r)| format!("{r:.2}")).collect::<Vec<_>>().join("/");
    if !s.heldout_structure_ratio.is_empty() {
        msg.push_str(&format!(" | held-out structure/ctx-free {}", fmt(&s.heldout_structure_ratio)));
    }
    if !s.heldout_content_ratio.is_empty() {
        msg.push_str(&format!(" content CE/unigram {}", fmt(&s.heldout_content_ratio)));
    }
    msg
}
