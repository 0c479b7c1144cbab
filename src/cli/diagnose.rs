//! `nvg-studio diagnose overfit`: the overfit proofs of issue 18 (src/eval/overfit.rs).

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::{Subcommand, ValueEnum};

use nvg_studio::eval::overfit::{OverfitOptions, OverfitReport, run_overfit};
use nvg_studio::model::generator::GeneratorConfig;
use nvg_studio::model::tokenizer_io::load_tokenizer;
use nvg_studio::train::generator::Branches;

/// Which branch an overfit run trains.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BranchArg {
    /// The structure branch alone, given the true content.
    Structure,
    /// The content branch alone, given the true structure.
    Content,
    /// Both branches.
    Both,
}

impl From<BranchArg> for Branches {
    fn from(b: BranchArg) -> Self {
        match b {
            BranchArg::Structure => Branches::Structure,
            BranchArg::Content => Branches::Content,
            BranchArg::Both => Branches::Both,
        }
    }
}

/// Diagnostics of the model and its training.
#[derive(Subcommand)]
pub enum DiagnoseCmd {
    /// Train a branch on a few images and check that it memorises them: structure loss against
    /// its baselines, stage maps regenerated from the true content (ARI), codes reproduced.
    ///
    /// Example: nvg-studio diagnose overfit --images 16 --branch structure --out runs/overfit-s16
    Overfit {
        /// Model directory (its tokenizer/ is used, frozen) and seed.
        #[command(flatten)]
        model: super::ModelArgs,
        #[command(flatten)]
        source: super::GeneratorDataArgs,
        /// Images to memorise.
        #[arg(long, default_value_t = 16)]
        images: usize,
        /// Branch to train.
        #[arg(long, value_enum, default_value = "structure")]
        branch: BranchArg,
        /// Optimisation steps.
        #[arg(long, default_value_t = 600)]
        steps: u64,
        /// Images per step.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Euler steps of the structure flow when maps are regenerated.
        #[arg(long, default_value_t = 25)]
        flow_steps: usize,
        /// Run folder (weights, train-log.csv, report.json).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs a diagnose subcommand.
pub fn run(cmd: DiagnoseCmd, backend: &nvg_studio::model::backend::Backend) -> Result<()> {
    match cmd {
        DiagnoseCmd::Overfit { model: super::ModelArgs { model, seed }, source, images, branch, steps, batch, lr, flow_steps, out } => {
            let super::GeneratorDataArgs { images: super::DataArgs { data, synthetic }, preset } = source;
            if images == 0 {
                return Err(anyhow!("--images 0: need at least 1 image to overfit"));
            }
            if steps == 0 || batch == 0 {
                return Err(anyhow!("--steps and --batch must be at least 1"));
            }
            if !(lr.is_finite() && lr > 0.0) {
                return Err(anyhow!("--lr {lr}: must be a positive number"));
            }
            let shape = GeneratorConfig::preset(&preset).ok_or_else(|| {
                anyhow!("unknown generator preset '{preset}': expected one of {}", GeneratorConfig::PRESETS.join(", "))
            })?;
            let (tmeta, tok) = load_tokenizer(&model.join("tokenizer"), None, &backend.device)?;
            let tcfg = tmeta.config;
            let source = super::training_source(data, synthetic, tcfg.image_size as u32, seed)?;
            let opts = OverfitOptions { images, steps, batch_size: batch, lr, branches: branch.into(), flow_steps, seed };
            let pb = super::step_bar(steps);
            let report = run_overfit(&shape, &tok, &tcfg, source.as_ref(), &out, &opts, &backend.device, &mut |s| {
                pb.set_position(s.step);
                let msg = super::train::step_message(s);
                super::log_if_hidden(&pb, s.step, s.total, &msg);
                pb.set_message(msg);
            })?;
            pb.finish();
            let text = describe(&report);
            println!("{text}");
            let json = serde_json::to_string_pretty(&report_json(&report))?;
            nvg_studio::model::checkpoint::write_atomic(&out.join("report.json"), json.as_bytes())
                .map_err(|e| anyhow!("{}: cannot write ({e})", out.join("report.json").display()))?;
            if let Some(sheet) = &report.sheet {
                let path = out.join("regenerated.png");
                let mut bytes = Vec::new();
                sheet.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
                nvg_studio::model::checkpoint::write_atomic(&path, &bytes).map_err(|e| anyhow!("{}: cannot write ({e})", path.display()))?;
                println!("regenerated images: {}", path.display());
            }
            println!("run folder: {} (train-log.csv, report.json)", out.display());
            Ok(())
        }
    }
}

/// The report as text, one line per stage.
pub fn describe(r: &OverfitReport) -> String {
    let mut s = format!("overfit {:?} on {} images, {} steps, {:.0} s\n", r.branches, r.images, r.steps, r.seconds);
    if r.branches.structure() {
        s.push_str("structure (velocity MSE on the images; baselines on the same samples):\n");
        for &(k, v, m, c) in &r.structure {
            s.push_str(&format!(
                "  stage {k}: {v:.4}  mean baseline {m:.4} ({:.1} %)  context-free {c:.4} ({:.1} %)\n",
                100.0 * v / m.max(1e-12),
                100.0 * v / c.max(1e-12)
            ));
        }
        s.push_str("maps regenerated from the true content (ARI against the tokenizer's):\n");
        for &(st, a, n) in &r.ari {
            s.push_str(&format!("  stage {st}: ARI {a:.3}  (noise Split {n:.3})\n"));
        }
        s.push_str(&format!("  mean ARI stages 1-4: {:.3} (noise {:.3})\n", r.mean_ari(4), r.mean_noise_ari(4)));
    }
    if r.branches.content() {
        s.push_str("content codes reproduced (top-1, true structure and canvas):\n");
        for &(i, a) in &r.top1 {
            s.push_str(&format!("  stage {i}: {:.1} %\n", 100.0 * a));
        }
        s.push_str(&format!("  all clusters: {:.1} %\n", 100.0 * r.codes_reproduced()));
    }
    s.trim_end().to_string()
}

fn report_json(r: &OverfitReport) -> serde_json::Value {
    serde_json::json!({
        "branches": format!("{:?}", r.branches),
        "images": r.images,
        "steps": r.steps,
        "seconds": r.seconds,
        "structure": r.structure.iter().map(|&(k, v, m, c)| serde_json::json!({"stage": k, "loss": v, "baseline_mean": m, "baseline_ctxfree": c})).collect::<Vec<_>>(),
        "ari": r.ari.iter().map(|&(k, a, n)| serde_json::json!({"stage": k, "ari": a, "noise_ari": n})).collect::<Vec<_>>(),
        "mean_ari_1_4": r.mean_ari(4),
        "top1": r.top1.iter().map(|&(i, a)| serde_json::json!({"stage": i, "top1": a})).collect::<Vec<_>>(),
        "codes_reproduced": r.codes_reproduced(),
    })
}
