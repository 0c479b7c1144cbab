//! The `eval` and `eval-swap` subcommands: argument parsing and progress display around
//! [`nvg_studio::eval`].

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::sampler::SamplerArgs;
use nvg_studio::model::backend::Backend;
use nvg_studio::eval::run::EvalEvent;
use nvg_studio::eval::swap_eval::{SwapEvalOptions, run_swap_eval};
use nvg_studio::eval::{EvalOptions, JudgeTrainOptions, run_eval};

/// Arguments `eval` and `eval-swap` share.
#[derive(Args)]
pub struct CommonEvalArgs {
    /// Model directory and the base seed of the generated images (the judge lives in
    /// MODEL/judge unless --judge).
    #[command(flatten)]
    pub model: super::ModelArgs,
    /// Where model-card.md, model-card.json and images/model-card/ are written (each command
    /// rewrites only its own section).
    #[arg(long, default_value = "docs")]
    pub out_dir: PathBuf,
    /// Judge checkpoint directory (default: MODEL/judge).
    #[arg(long)]
    pub judge: Option<PathBuf>,
    /// Emoji label file (.ron) of the dataset (default: the bundled set).
    #[arg(long)]
    pub sheet: Option<PathBuf>,
    /// Images per sampler call (on the flex CPU backend batching measured slower per image:
    /// 4.2 / 4.9 / 6.8 s at batch 1 / 4 / 16, so the default is 1).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Sampler settings of the generated images (the `generate` defaults).
    #[command(flatten)]
    pub sampler: SamplerArgs,
}

/// Arguments of `nvg-studio eval`.
#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub common: CommonEvalArgs,
    /// Generated images per class (default 50; 4 with --quick).
    #[arg(long)]
    pub samples_per_class: Option<usize>,
    /// Judge training steps when a judge is trained (default 600; 60 with --quick).
    #[arg(long)]
    pub judge_steps: Option<u64>,
    /// Train a new judge even if DIR/judge exists.
    #[arg(long)]
    pub retrain_judge: bool,
    /// A reduced run for smoke tests: few samples, few judge steps, subsets of the held-out images.
    #[arg(long)]
    pub quick: bool,
}

/// Arguments of `nvg-studio eval-swap`.
#[derive(Args)]
pub struct EvalSwapArgs {
    #[command(flatten)]
    pub common: CommonEvalArgs,
    /// Held-out reference images per source class.
    #[arg(long, default_value_t = 3)]
    pub references_per_class: usize,
    /// Source classes (names or ids, comma-separated; default: 6 spread over the class list).
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Keep the structure maps of stages 1..M.
    #[arg(long, default_value_t = 3)]
    pub keep_structure: usize,
    /// Judge training steps if a judge has to be trained.
    #[arg(long, default_value_t = 600)]
    pub judge_steps: u64,
}

fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // The backend flag is global and printed separately.
    if let Some(i) = args.iter().position(|a| a == "--backend") {
        if i + 1 < args.len() {
            args.drain(i..=i + 1);
        }
    }
    format!("nvg-studio {}", args.join(" "))
}

fn bar(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// Progress display shared by both commands: phases as lines, judge steps and sampling as bars
/// (plain lines every 10% where no terminal shows a bar).
fn progress() -> impl FnMut(EvalEvent) {
    let mut pb: Option<ProgressBar> = None;
    move |ev| match ev {
        EvalEvent::Phase(p) => {
            if let Some(b) = pb.take() {
                b.finish_and_clear();
            }
            eprintln!("eval: {p}");
        }
        EvalEvent::JudgeStep(s) => {
            let b = pb.get_or_insert_with(|| bar(s.total));
            b.set_position(s.step);
            let msg = format!("judge loss {:.3}, batch accuracy {:.2}", s.loss, s.batch_accuracy);
            if b.is_hidden() && (s.step % (s.total / 10).max(1) == 0 || s.step == s.total) {
                eprintln!("judge step {}/{}: {msg}", s.step, s.total);
            }
            b.set_message(msg);
        }
        EvalEvent::Sampled { done, total } => {
            let b = pb.get_or_insert_with(|| bar(total as u64));
            b.set_position(done as u64);
            if b.is_hidden() && done > 0 && (done % (total / 20).max(1) == 0 || done == total) {
                eprintln!("generated {done}/{total}");
            }
        }
    }
}

/// The options both eval commands take from their shared flags.
fn eval_common(c: CommonEvalArgs, b: &Backend) -> Result<nvg_studio::eval::EvalCommon> {
    let mut o = nvg_studio::eval::EvalCommon::new(&nvg_studio::bundled(&c.model.model));
    if let Some(j) = c.judge {
        o.judge_dir = j;
    }
    if let Some(s) = c.sheet {
        o.labels = s;
    }
    o.out_dir = c.out_dir;
    o.seed = c.model.seed;
    o.batch = c.batch;
    o.settings = c.sampler.settings()?;
    o.command = command_line();
    o.backend = b.to_string();
    Ok(o)
}

/// `nvg-studio eval`.
pub fn eval(a: EvalArgs, b: &Backend) -> Result<()> {
    let mut o = EvalOptions::new(&nvg_studio::bundled(&a.common.model.model));
    o.common = eval_common(a.common, b)?;
    o.samples_per_class = a.samples_per_class.unwrap_or(if a.quick { 4 } else { 50 });
    o.retrain_judge = a.retrain_judge;
    o.common.judge_train = JudgeTrainOptions { steps: a.judge_steps.unwrap_or(if a.quick { 60 } else { 600 }), ..Default::default() };
    if a.quick {
        o.psnr_images = 32;
        o.heldout_images = 96;
        o.grid_per_class = o.grid_per_class.min(o.samples_per_class);
        o.strips = 2;
    }
    let out = run_eval(&o, &b.device, &mut progress()).map_err(|e| anyhow!("{e}"))?;
    let r = &out.json;
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    println!("judge accuracy: held-out real {:.3}, generated {:.3} (chance {:.3})", f("judge_accuracy_real"), f("judge_accuracy_generated"), f("chance_accuracy"));
    println!(
        "Fréchet distance to held-out real: generated {:.2}, reconstruction floor {:.2}, trivial baseline {:.2}, real training images {:.2}",
        f("fd_generated"),
        f("fd_reconstruction_floor"),
        f("fd_trivial_baseline"),
        f("fd_real_train_vs_heldout")
    );
    let psnr: Vec<String> = r["tokenizer_psnr_per_stage"].as_array().map(|a| a.iter().map(|v| format!("{:.2}", v.as_f64().unwrap_or(f64::NAN))).collect()).unwrap_or_default();
    println!("tokenizer PSNR per stage (dB): {}", psnr.join(", "));
    println!("model card: {} and {} ({} figures); eval took {:.0} s", out.markdown.display(), out.json_path.display(), out.figures.len(), f("eval_wall_seconds"));
    Ok(())
}

/// `nvg-studio eval-swap`.
pub fn eval_swap(a: EvalSwapArgs, b: &Backend) -> Result<()> {
    let judge_steps = a.judge_steps;
    let mut o = SwapEvalOptions::new(&nvg_studio::bundled(&a.common.model.model));
    o.common = eval_common(a.common, b)?;
    o.references_per_class = a.references_per_class;
    o.classes = a.classes;
    o.keep_structure = a.keep_structure;
    o.common.judge_train = JudgeTrainOptions { steps: judge_steps, ..Default::default() };
    let out = run_swap_eval(&o, &b.device, &mut progress()).map_err(|e| anyhow!("{e}"))?;
    let r = &out.json;
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "judge assigns the target class: swaps {:.3}, unconditioned generations {:.3}",
        f("judge_target_accuracy_swap"),
        f("judge_target_accuracy_baseline")
    );
    let list = |k: &str| r[k].as_array().map(|a| a.iter().map(|v| format!("{:.3}", v.as_f64().unwrap_or(f64::NAN))).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    println!("structure kept (ARI per stage 1..): swaps {}; baseline {}; re-encoding ceiling {}", list("ari_per_stage_swap"), list("ari_per_stage_baseline"), list("ari_per_stage_reencode_ceiling"));
    println!("model card: {} and {} (swap section); took {:.0} s", out.markdown.display(), out.json_path.display(), f("wall_seconds"));
    Ok(())
}
