//! `bench`: every speed measurement (results go to docs/benchmarks.md with their command).

pub mod config;
pub mod editor;
pub mod frame_log;
pub mod generator;
pub mod train;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};

use nvg_studio::model::backend::BackendChoice;
use nvg_studio::data::{ImageSource, SyntheticShapes};
use nvg_studio::model::{Tokenizer, TokenizerConfig};
use nvg_studio::model::images::encode_images;
use nvg_studio::train::{TokenizerTrainOptions, train_tokenizer};
use super::{default_model_dir, pick_backend};


/// Arguments of `bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Repetitions per measurement (median reported).
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// What to measure: tokenizer, generator, all (both), editor (UI frame time while the
    /// worker runs, edit → first updated thumbnail, memory after many edits; on the bundled
    /// model or --model, with the editor's 10 flow steps unless --flow-steps is given), or
    /// flow-steps (what fewer structure flow steps change, against 25, over --reps seeds), or
    /// precision (what bf16 products change against f32, over --reps seeds, CPU), or
    /// config (training and generation cost of the candidate bundled configurations), or
    /// train (where a generator training step of --model's shape spends its time, with its
    /// matmul GFLOP/s and share of the f32 peak), or
    /// frame-log (summarise an editor frame log written under NVG_FRAME_LOG: frame intervals
    /// while a run is in flight, fps per run; needs --frame-log).
    #[arg(long, default_value = "all")]
    pub what: String,
    /// Structure flow steps of the generation benchmark (default 25; the editor's default 10).
    #[arg(long)]
    pub flow_steps: Option<usize>,
    /// Model folder of the editor, flow-steps, precision and train benchmarks (default: the bundled model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Number of edits of the editor benchmark's memory measurement.
    #[arg(long, default_value_t = 100)]
    pub edits: usize,
    /// The frame log `--what frame-log` summarises (written by `NVG_FRAME_LOG=FILE nvg-studio`).
    #[arg(long)]
    pub frame_log: Option<PathBuf>,
}

/// Runs `bench`.
pub fn run(args: BenchArgs, choice: BackendChoice) -> Result<()> {
    let BenchArgs { reps, what, flow_steps, model, edits, frame_log } = args;
    match what.as_str() {
        "tokenizer" => bench(choice, reps),
        "generator" => generator::generator(choice, reps, flow_steps.unwrap_or(25)),
        "all" => {
            bench(choice, reps)?;
            generator::generator(choice, reps, flow_steps.unwrap_or(25))
        }
        "flow-steps" => generator::flow_steps(choice, model.unwrap_or_else(default_model_dir), reps),
        "precision" => generator::precision(choice, model.unwrap_or_else(default_model_dir), reps),
        "editor" => editor::bench_editor(
            model.unwrap_or_else(default_model_dir),
            choice,
            edits,
            flow_steps.unwrap_or(10),
        )
        .map_err(|e| anyhow::anyhow!("editor bench: {e}")),
        "train" => train::bench_train(&pick_backend(choice)?, &model.unwrap_or_else(default_model_dir), reps),
        "config" => config::bench_config(&pick_backend(choice)?, reps),
        "frame-log" => match frame_log {
            Some(p) => frame_log::bench_frame_log(&p).map_err(|e| anyhow::anyhow!("frame log {e}")),
            None => bail!("--what frame-log needs --frame-log FILE (a log written with NVG_FRAME_LOG=FILE nvg-studio)"),
        },
        other => bail!("--what {other}: expected tokenizer, generator, all, train, editor, flow-steps, precision, config or frame-log"),
    }
}

/// Median of timings (NaN when there are none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}


pub fn bench(choice: BackendChoice, reps: usize) -> Result<()> {
    use nvg_studio::granularity::cluster_latent;
    let b = pick_backend(choice)?;
    let reps = reps.max(1);
    // Clustering one 16×16×32 latent.
    let mut state = 1u64;
    let feats: Vec<f32> = (0..256 * 32)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    let mut t = Vec::new();
    for _ in 0..reps {
        let s = Instant::now();
        let h = cluster_latent(&feats, 16, 32)?;
        std::hint::black_box(h);
        t.push(s.elapsed().as_secs_f64());
    }
    println!("clustering 16x16x32 latent: median {:.3} ms", 1e3 * median(t));
    // Encode + decode of one image, small preset.
    let cfg = TokenizerConfig::small();
    let tok = Tokenizer::new(&cfg, &b.device);
    let src = SyntheticShapes::new(4, cfg.image_size as u32, 0)?;
    let img = src.get(0)?.0;
    let mut t = Vec::new();
    for _ in 0..reps {
        let s = Instant::now();
        let enc = encode_images(&tok, &cfg, std::slice::from_ref(&img), &b.device);
        std::hint::black_box(enc);
        t.push(s.elapsed().as_secs_f64());
    }
    println!(
        "encode + decode of every stage, small preset, batch 1: median {:.2} ms",
        1e3 * median(t)
    );
    // One training step, small preset, batch 16.
    let dir = std::env::temp_dir().join(format!("nvg-bench-{}", std::process::id()));
    let src = SyntheticShapes::new(64, cfg.image_size as u32, 0)?;
    let steps = (reps as u64).min(10) + 2;
    let opts = TokenizerTrainOptions { steps, batch_size: 16, checkpoint_every: 0, eval_images: 2, ..Default::default() };
    let t = config::step_times(&mut |cb| {
        train_tokenizer(&cfg, &src, &dir, &opts, false, &b.device, &mut |s| cb(s.step)).map(|_| ()).map_err(|e| anyhow!("{e}"))
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    println!("tokenizer training step, small preset, batch 16: median {:.1} ms", 1e3 * t);
    Ok(())
}

