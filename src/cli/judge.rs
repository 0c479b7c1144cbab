//! `nvg-studio train-judge`: the judge of `eval`, trained and measured on its own
//! (src/eval/judge_run.rs).

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use nvg_studio::eval::judge::{JudgeConfig, JudgeTrainOptions};
use nvg_studio::eval::judge_run::{JudgeRunEvent, JudgeSplit, run_judge_training, top_confusions};

/// Arguments of `train-judge`.
#[derive(Args)]
pub struct TrainJudgeArgs {
    /// Emoji label file (.ron) of the dataset (default: the bundled set).
    #[arg(long)]
    pub sheet: Option<PathBuf>,
    /// Output folder (a judge checkpoint, report.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Channels per level, comma-separated; the last is the feature dimension.
    #[arg(long, value_delimiter = ',', default_value = "32,64,128")]
    pub widths: Vec<usize>,
    /// 3×3 convolutions per level.
    #[arg(long, default_value_t = 2)]
    pub convs_per_level: usize,
    /// Identity shortcuts around the convolutions after each level's first.
    #[arg(long)]
    pub residual: bool,
    /// Optimisation steps.
    #[arg(long, default_value_t = 600)]
    pub steps: u64,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Largest random shift in pixels.
    #[arg(long, default_value_t = 2)]
    pub max_shift: u32,
    /// Random zoom: scale drawn log-uniformly from [1/(1+s), 1+s].
    #[arg(long, default_value_t = 0.0)]
    pub max_scale: f32,
    /// Largest random rotation in degrees.
    #[arg(long, default_value_t = 0.0)]
    pub max_rotation: f32,
    /// Dropout on the features before the head.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Label smoothing.
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f32,
    /// Measure held-out accuracy every N steps (0 = only at the end).
    #[arg(long, default_value_t = 200)]
    pub eval_every: u64,
    /// What the judge is measured on: emoji (held-out emoji never seen in any style) or
    /// rendition (one art style of every training emoji held out; the held-out emoji are
    /// measured too).
    #[arg(long, value_enum, default_value = "emoji")]
    pub split: SplitArg,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `--split`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SplitArg {
    /// Held-out emoji.
    Emoji,
    /// Held-out renditions of training emoji.
    Rendition,
}

/// Runs `train-judge`.
pub fn run(a: TrainJudgeArgs, backend: &nvg_studio::model::backend::Backend) -> Result<()> {
    let labels = a.sheet.clone().unwrap_or_else(|| nvg_studio::bundled(std::path::Path::new(nvg_studio::data::BUNDLED_EMOJI_LABELS)));
    let classes = nvg_studio::data::EmojiSheet::open(&labels).map_err(|e| anyhow!("{e}"))?.class_names().len();
    let cfg = JudgeConfig { widths: a.widths.clone(), convs_per_level: a.convs_per_level, residual: a.residual, ..JudgeConfig::new(classes) };
    cfg.validate().map_err(|e| anyhow!("judge shape: {e}"))?;
    let opts = JudgeTrainOptions {
        steps: a.steps,
        batch_size: a.batch,
        lr: a.lr,
        weight_decay: a.weight_decay,
        max_shift: a.max_shift,
        max_scale: a.max_scale,
        max_rotation_deg: a.max_rotation,
        dropout: a.dropout,
        label_smoothing: a.label_smoothing,
        seed: a.seed,
        warmup_steps: JudgeTrainOptions::default().warmup_steps.min(a.steps / 10).max(1),
        ..Default::default()
    };
    // The command as a user would type it (the binary's own path left out).
    let command = std::iter::once("nvg-studio".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ");
    let bar = ProgressBar::new(a.steps);
    bar.set_style(
        ProgressStyle::with_template("judge {pos}/{len} [{elapsed_precise} eta {eta}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = run_judge_training(&labels, &cfg, &opts, a.eval_every, match a.split { SplitArg::Emoji => JudgeSplit::Emoji, SplitArg::Rendition => JudgeSplit::Rendition }, &a.out, &command, &backend.device, &mut |e| match e {
        JudgeRunEvent::Step(s) => {
            bar.set_position(s.step);
            bar.set_message(format!("loss {:.3}, batch accuracy {:.2}", s.loss, s.batch_accuracy));
        }
        JudgeRunEvent::HeldOut(step, acc) => {
            // A hidden bar (stderr not a terminal, e.g. a log file) swallows println.
            let line = format!("step {step}: held-out accuracy {acc:.3} ({})", bar.message());
            if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) }
        }
    })
    .map_err(|e| anyhow!("{e}"))?;
    bar.finish_and_clear();
    println!(
        "judge ({:?} split): held-out accuracy {:.3} on {} images (unseen emoji {:.3}), training accuracy {:.3} on {}, {} parameters, {:.0} s",
        report.split,
        report.heldout_accuracy,
        report.heldout_images,
        report.unseen_emoji_accuracy,
        report.train_accuracy,
        report.train_images,
        report.parameters,
        report.train_seconds
    );
    let names: Vec<&str> = report.per_class.iter().map(|(n, _, _)| n.as_str()).collect();
    for (n, count, recall) in &report.per_class {
        println!("  {n:<16} {count:>3} held out, recall {recall:.2}");
    }
    println!("most frequent confusions (true → predicted):");
    for (t, p, c) in top_confusions(&report.confusion, 10) {
        println!("  {} → {}: {c}", names[t], names[p]);
    }
    println!("saved {}", a.out.display());
    Ok(())
}
