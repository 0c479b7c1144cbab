//! `nvg-studio bench --what config`: what each candidate configuration of the bundled model costs
//! on this machine (issue: choose the bundled configuration by measurement). For each candidate
//! (image size, latent grid) with the small widths: one tokenizer training step (batch 8), one
//! generator training step (batch 16, 3 stages per step), and one generation at the `generate`
//! defaults (25 flow steps, guidance on), with random weights — cost does not depend on them — and
//! the wall time of the shipped recipe ([`RECIPE_STEPS`]) that follows.

use std::time::Instant;

use anyhow::{Result, anyhow};

use nvg_studio::model::backend::Backend;
use nvg_studio::data::SyntheticShapes;
use nvg_studio::model::generator::{GeneratorConfig, NvgGenerator};
use nvg_studio::model::{Tokenizer, TokenizerConfig};
use nvg_studio::sampler::{ImageJob, SamplerSettings, sample};
use nvg_studio::train::generator::{GeneratorTrainOptions, fit_config, train_generator};
use nvg_studio::train::{TokenizerTrainOptions, train_tokenizer};

use super::median;

/// Tokenizer and generator steps of the shipped recipe (docs/model-card.md), for the wall-time
/// column.
const RECIPE_STEPS: (u64, u64) = (4000, 2400);

/// Median seconds per step of a training run (its first two steps are warm-up, not counted).
pub fn step_times(run: &mut dyn FnMut(&mut dyn FnMut(u64)) -> Result<()>) -> Result<f64> {
    let mut times = Vec::new();
    let mut last = Instant::now();
    run(&mut |step| {
        if step > 2 {
            times.push(last.elapsed().as_secs_f64());
        }
        last = Instant::now();
    })?;
    Ok(median(times))
}

/// Runs the configuration bench.
pub fn bench_config(b: &Backend, reps: usize) -> Result<()> {
    let (tokenizer_steps, generator_steps) = RECIPE_STEPS;
    let reps = reps.max(1) as u64;
    let candidates: [(&str, usize, Vec<usize>); 3] = [
        ("32×32 px, 8×8 grid (7 stages)", 32, vec![1, 2, 2]),
        ("32×32 px, 16×16 grid (9 stages)", 32, vec![1, 2]),
        ("64×64 px, 16×16 grid (9 stages)", 64, vec![1, 2, 2]),
    ];
    println!("config bench: small widths (tokenizer base 32, 32 latent channels, codebook 1024; generator depth 4, 256/128), {} timed steps each", reps);
    println!(
        "| configuration | tokenizer step (batch 8) | generator step (batch 16, 3 stages) | generation + decode (25 flow steps, CFG) | recipe: {tokenizer_steps} tokenizer + {generator_steps} generator steps |"
    );
    println!("|---|---|---|---|---|");
    for (name, size, mult) in candidates {
        let tcfg = TokenizerConfig { image_size: size, channel_mult: mult, ..TokenizerConfig::small() };
        let dir = std::env::temp_dir().join(format!("nvg-bench-config-{}-{size}-{}", std::process::id(), tcfg.grid_side()));
        let src = SyntheticShapes::new(64, size as u32, 0)?;
        // Tokenizer training step.
        let topts = TokenizerTrainOptions { steps: reps + 2, batch_size: 8, checkpoint_every: 0, eval_images: 2, ..Default::default() };
        let t_tok = step_times(&mut |cb| {
            train_tokenizer(&tcfg, &src, &dir.join("tokenizer"), &topts, false, &b.device, &mut |s| cb(s.step))
                .map(|_| ())
                .map_err(|e| anyhow!("{e}"))
        })?;
        // Generator training step on a (random) tokenizer.
        b.device.seed(0);
        let tok = Tokenizer::new(&tcfg, &b.device);
        let gopts = GeneratorTrainOptions {
            steps: reps + 2,
            batch_size: 16,
            stages_per_step: Some(3),
            checkpoint_every: 0,
            scale_images: 16,
            ..Default::default()
        };
        let t_gen = step_times(&mut |cb| {
            train_generator(&GeneratorConfig::small(), &tok, &tcfg, &src, &dir.join("generator"), &gopts, false, &b.device, &mut |s| cb(s.step))
                .map(|_| ())
                .map_err(|e| anyhow!("{e}"))
        })?;
        // One generation at the `generate` defaults.
        let gcfg = fit_config(&GeneratorConfig::small(), &tcfg, 32, vec![1.0; tcfg.num_stages() + 1]);
        let g = NvgGenerator::new(&gcfg, &b.device);
        let settings = SamplerSettings::default();
        let mut gen_times = Vec::new();
        for i in 0..=reps.min(3) {
            let t = Instant::now();
            let out = sample(&g, &tok, tcfg.phi_weight, &[ImageJob::new(3, i)], &settings, &mut |_| true, &|| false).map_err(|e| anyhow!("{e}"))?;
            std::hint::black_box(tok.decode(out.canvas).into_data());
            if i > 0 {
                gen_times.push(t.elapsed().as_secs_f64());
            }
        }
        let t_sample = median(gen_times);
        let _ = std::fs::remove_dir_all(&dir);
        let hours = (tokenizer_steps as f64 * t_tok + generator_steps as f64 * t_gen) / 3600.0;
        println!("| {name} | {:.2} s | {:.2} s | {:.2} s | {:.1} h |", t_tok, t_gen, t_sample, hours);
    }
    Ok(())
}
