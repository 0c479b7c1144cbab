//! `nvg-studio bench --what train`: where a generator training step spends its time, at the
//! shipped model's shape and batch, on the burn (autodiff) path: the batch and its teacher
//! targets (data, the frozen tokenizer's encoding), the forward pass with the losses, the
//! backward pass, the AdamW step and the EMA update. The matmul FLOPs of the step are counted
//! with the formula below, so the speed can be read as a share of the CPU's f32 peak.
//!
//! FLOPs of one forward pass of the generator's blocks (what dominates; embeddings, heads,
//! norms and the adaLN modulation are left out, < 3 % at the shipped shape):
//!
//! ```text
//! per branch:  images · stages · T · depth · 2 · ((4 + 2·r)·w² + 2·T·w)
//! content:     T = 1 + L,   w = content width        (class token + L positions)
//! structure:   T = 1 + 2L,  w = structure width      (class token + condition + flow tokens)
//! ```
//!
//! with r the MLP ratio (QKV 3w², output w², MLP 2·r·w² multiply-adds per token, and q·kᵀ
//! and ·v 2·T·w per token), 2 FLOPs per multiply-add. A training step is counted as 3 forward
//! passes (the backward pass costs two).

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, anyhow};
use burn::module::Module;
use burn::optim::GradientsParams;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use nvg_studio::data::{EmojiSheet, EmojiSource, ImageSource};
use nvg_studio::model::backend::Backend;
use nvg_studio::model::checkpoint::{CheckpointMeta, read_meta};
use nvg_studio::model::ema::ema_update;
use nvg_studio::model::generator::{GeneratorConfig, NvgGenerator};
use nvg_studio::model::generator_io::GENERATOR_KIND;
use nvg_studio::model::tokenizer_io::load_tokenizer;
use nvg_studio::sampler::streams::normal;
use nvg_studio::train::fast::{AdamW, HostTrainer, host_batch};
use nvg_studio::train::generator::{GeneratorTrainOptions, optimizer};
use nvg_studio::train::monitor::{FlowSample, TeacherBatch, batch_losses};

use super::median;

/// f32 peak of this machine's CPU cores: cores × f32 FLOP per cycle × clock. FLOP per cycle:
/// 64 where AVX-512 runs on two full-width FMA units (Intel Xeon, AMD Zen 5), 32 where the FMA
/// units are 256 bits wide (AMD Zen 3 and Zen 4 — Zen 4 splits an AVX-512 FMA in two halves —
/// and AVX2 machines). The clock is the nominal one, so the share is an upper bound on headroom.
fn f32_peak_gflops() -> (f64, String) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| info.lines().find(|l| l.starts_with(name)).and_then(|l| l.split(':').nth(1)).map(|v| v.trim().to_string());
    let ghz = field("cpu MHz").and_then(|v| v.parse::<f64>().ok()).map_or(2.6, |mhz| mhz / 1000.0);
    let amd = field("vendor_id").is_some_and(|v| v == "AuthenticAMD");
    let family = field("cpu family").and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    let avx512 = field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "avx512f"));
    let (per_cycle, why) = match (amd, family, avx512) {
        (true, f, _) if f < 26 => (32.0, "two 256-bit FMA pipes (AMD family 25: Zen 3/4)"),
        (_, _, true) => (64.0, "two 512-bit FMA units"),
        _ => (32.0, "two 256-bit FMA units"),
    };
    (cores * per_cycle * ghz, format!("{cores:.0} cores × {per_cycle:.0} FLOP/cycle ({why}) × {ghz:.2} GHz"))
}

/// Forward FLOPs of one branch pass: `images · stages` sequences of `t` tokens.
pub fn branch_flops(sequences: usize, t: usize, depth: usize, w: usize, mlp_ratio: usize) -> f64 {
    let (t, w) = (t as f64, w as f64);
    sequences as f64 * t * depth as f64 * 2.0 * ((4.0 + 2.0 * mlp_ratio as f64) * w * w + 2.0 * t * w)
}

/// Runs the training-step benchmark on the model at `model_dir` (its tokenizer, its generator's
/// shape and training options) with `reps` timed steps after two warm-up steps.
pub fn bench_train(b: &Backend, model_dir: &Path, reps: usize) -> Result<()> {
    let (tmeta, tok) = load_tokenizer(&model_dir.join("tokenizer"), None, &b.device).map_err(|e| anyhow!("{e}"))?;
    let tcfg = tmeta.config;
    let gmeta: CheckpointMeta<GeneratorConfig> =
        read_meta(&model_dir.join("generator"), GENERATOR_KIND).map_err(|e| anyhow!("{e}"))?;
    let cfg = gmeta.config;
    let o = &gmeta.extra["train_options"];
    let batch = o["batch_size"].as_u64().unwrap_or(16) as usize;
    let per_step = o["stages_per_step"].as_u64().map(|v| v as usize);
    let sheet = EmojiSheet::open(nvg_studio::bundled(Path::new(nvg_studio::data::BUNDLED_EMOJI_LABELS)))?;
    let data = EmojiSource::new(sheet, tcfg.image_size as u32)?;
    let (s_count, bits, l, net) = (cfg.num_stages(), cfg.num_bits(), cfg.num_positions(), cfg.num_structure_stages());
    let (kc, ks) = (per_step.map_or(s_count, |k| k.min(s_count)), per_step.map_or(net, |k| k.min(net)));

    // One step's batch, its teacher targets and its stage samples: the same for both paths.
    let make_batch = |rng: &mut ChaCha8Rng, dev: &burn::tensor::Device| -> Result<(TeacherBatch, Vec<usize>, Vec<FlowSample>)> {
        let mut imgs = Vec::with_capacity(batch);
        let mut classes = Vec::with_capacity(batch);
        for _ in 0..batch {
            let (img, c) = data.get(rng.random_range(0..data.len()))?;
            imgs.push(img);
            classes.push(c);
        }
        let tb = TeacherBatch::encode(&tok, &tcfg, &imgs, classes, dev);
        let full = tb.full_bits(bits);
        let eps: Vec<f32> = (0..batch * l * bits).map(|_| normal(rng)).collect();
        let c_stages: Vec<usize> = (0..kc).map(|i| (i * s_count) / kc).collect();
        let flows = (0..ks).map(|i| FlowSample::new((i * net) / ks, &full, &eps, FlowSample::times(rng, batch), l, bits)).collect();
        Ok((tb, c_stages, flows))
    };
    let ad = b.device.clone().autodiff();
    ad.seed(0);
    let mut model = NvgGenerator::new(&cfg, &ad);
    let mut ema = model.valid();
    let mut optim = optimizer(&GeneratorTrainOptions::default());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let phases = ["batch + teacher targets", "forward + losses", "backward", "AdamW step", "EMA update"];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); phases.len()];
    for rep in 0..reps.max(1) + 2 {
        let mut t = Instant::now();
        let mut lap = |times: &mut Vec<Vec<f64>>, k: usize| {
            if rep >= 2 {
                times[k].push(t.elapsed().as_secs_f64());
            }
            t = Instant::now();
        };
        let (tb, c_stages, flows) = make_batch(&mut rng, &ad)?;
        lap(&mut times, 0);
        let losses = batch_losses(&model, &tb, &c_stages, &flows);
        let loss = losses.objective(&ad);
        let _ = losses.values(bits); // reads the values back: the forward pass is done
        lap(&mut times, 1);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        lap(&mut times, 2);
        model = optim.step(1e-4, model, grads);
        lap(&mut times, 3);
        ema = ema_update(ema, &model, 0.99);
        lap(&mut times, 4);
    }
    let med: Vec<f64> = times.into_iter().map(median).collect();
    let step: f64 = med.iter().sum();

    // The host path on the same batches (same seed), from the same weights.
    let mut trainer = HostTrainer::new(&model.valid(), &ema, AdamW::generator(GeneratorTrainOptions::default().weight_decay));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let host_phases = ["batch + teacher targets", "targets to host buffers", "forward + losses + backward", "AdamW step", "EMA update"];
    let mut host_times: Vec<Vec<f64>> = vec![Vec::new(); host_phases.len()];
    let device = b.device.clone();
    for rep in 0..reps.max(1) + 2 {
        let mut t = Instant::now();
        let mut lap = |times: &mut Vec<Vec<f64>>, k: usize| {
            if rep >= 2 {
                times[k].push(t.elapsed().as_secs_f64());
            }
            t = Instant::now();
        };
        let (tb, c_stages, flows) = make_batch(&mut rng, &device)?;
        lap(&mut host_times, 0);
        let hb = host_batch(&tb);
        lap(&mut host_times, 1);
        let r = trainer.loss_and_grads(&hb, &c_stages, &flows);
        lap(&mut host_times, 2);
        trainer.apply(r.grads, 1e-4);
        lap(&mut host_times, 3);
        trainer.update_ema(0.99);
        lap(&mut host_times, 4);
    }
    let host_med: Vec<f64> = host_times.into_iter().map(median).collect();
    let host_step: f64 = host_med.iter().sum();
    let fwd = branch_flops(batch * kc, 1 + l, cfg.depth, cfg.content_width, cfg.mlp_ratio)
        + branch_flops(batch * ks, 1 + 2 * l, cfg.depth, cfg.structure_width, cfg.mlp_ratio);
    let step_flops = 3.0 * fwd;
    let (peak, peak_how) = f32_peak_gflops();
    let gflops = step_flops / step / 1e9;
    println!(
        "train bench: generator at the shape of {} (depth {}, widths {}/{}, {}×{} grid, {} stages), batch {batch}, {kc} content and {ks} structure stages per step, backend {b}, median of {} steps",
        model_dir.display(),
        cfg.depth,
        cfg.content_width,
        cfg.structure_width,
        cfg.grid_side,
        cfg.grid_side,
        s_count,
        reps.max(1)
    );
    println!("| path | phase | s/step | share |\n|---|---|---|---|");
    for (p, t) in phases.iter().zip(&med) {
        println!("| burn (autodiff, flex) | {p} | {t:.3} | {:.0} % |", 100.0 * t / step);
    }
    println!(
        "| burn (autodiff, flex) | **whole step** | **{step:.3}** | {:.1} img/s, {:.1} GFLOP of block matmuls ({:.1} GFLOP/s, {:.0} % of the f32 peak {peak:.0} GFLOP/s: {peak_how}) |",
        batch as f64 / step,
        step_flops / 1e9,
        gflops,
        100.0 * gflops / peak
    );
    for (p, t) in host_phases.iter().zip(&host_med) {
        println!("| host (fused f32) | {p} | {t:.3} | {:.0} % |", 100.0 * t / host_step);
    }
    let host_gflops = step_flops / host_step / 1e9;
    println!(
        "| host (fused f32) | **whole step** | **{host_step:.3}** | {:.1} img/s, {host_gflops:.1} GFLOP/s, {:.0} % of the f32 peak; **{:.2}×** the burn path |",
        batch as f64 / host_step,
        100.0 * host_gflops / peak,
        step / host_step
    );
    println!("| tokenizer step | – | burn path only | no fast path: the generator step is the cost of a run (issue 19) |");
    Ok(())
}
