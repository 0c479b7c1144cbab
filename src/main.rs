//! The `nvg-studio` command line. Every subcommand calls the library; errors end the process
//! with one line naming the file or value at fault and a non-zero exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use nvg_studio::backend::{self, Backend, BackendChoice};
use nvg_studio::data::{self, FolderSource, ImageFolder, ImageSource, SyntheticShapes};
use nvg_studio::model::tokenizer_io::{import_reference_pytorch, import_reference_safetensors, load_tokenizer};
use nvg_studio::model::{Tokenizer, TokenizerConfig};
use nvg_studio::granularity::GranularitySequence;
use nvg_studio::model::generator::GeneratorConfig;
use nvg_studio::pipeline::{encode_images, load_bundle, parse_stage_range, resolve_class, tensor_to_images};
use nvg_studio::sampler::{ImageJob, SamplerSettings};
use nvg_studio::train::generator::{GeneratorTrainOptions, train_generator};
use nvg_studio::train::{TokenizerTrainOptions, train_tokenizer};
use nvg_studio::viz::{stage_strip, structure_map_image};

mod bench_config;
mod cli;
mod bench_generator;
mod cli_eval;
mod cli_sampler;

use cli_sampler::SamplerArgs;

/// Background that transparent images are composited on (white, as the emoji dataset uses).
const BACKGROUND: [u8; 3] = [255, 255, 255];

/// Default model directory (tokenizer/ + generator/) shipped with the project.
const DEFAULT_MODEL: &str = "assets/model";

/// Default tokenizer: the one of the default model.
const DEFAULT_TOKENIZER: &str = "assets/model/tokenizer";

#[derive(Parser)]
#[command(name = "nvg-studio", version, about = "Next Visual Granularity (NVG) generation: editor and tools",
    long_about = "nvg-studio turns images into NVG granularity sequences (a structure map and codes per stage) \
and back. Without a subcommand it opens the editor on the bundled model.")]
struct Cli {
    /// Compute backend: auto (wgpu on a hardware GPU, else CPU), cpu, or wgpu.
    #[arg(long, global = true, default_value = "auto")]
    backend: BackendChoice,
    /// Arithmetic of the generator's matrix products on the CPU: f32, or bf16 (operands rounded
    /// to bfloat16, sums in f32 — faster where the CPU has AMX (Intel Xeon 4th generation on); what it changes
    /// in the outputs is measured in docs/benchmarks.md).
    ///
    /// Example: nvg-studio --precision bf16 generate --class heart --seed 3 --out heart.png
    #[arg(long, global = true, default_value = "f32")]
    precision: nvg_studio::model::host::Precision,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the editor (what running without a subcommand does).
    ///
    /// Example: nvg-studio edit --project flamingo.ron
    Edit {
        #[command(flatten)]
        args: EditArgs,
    },
    /// Encode the sample flamingo and generate a 'bird' on the command line, writing two PNGs.
    ///
    /// Example: nvg-studio demo
    Demo,
    /// Encode an image into its granularity sequence and write a stage strip.
    ///
    /// Example: nvg-studio encode photo.png --strip strip.png --out seq.ron
    Encode {
        /// Image to encode (PNG, JPEG, …; resized: shorter side to the model size, centre crop).
        image: PathBuf,
        /// Tokenizer checkpoint directory.
        #[arg(long, default_value = DEFAULT_TOKENIZER)]
        model: PathBuf,
        /// Load reference weights in the official key layout instead of --model: a .safetensors
        /// file, or the official PyTorch checkpoint (.ckpt/.pt/.pth, `first_stage_model.*` keys).
        #[arg(long)]
        reference_weights: Option<PathBuf>,
        /// Configuration preset for --reference-weights (small, test-tiny, reference-tiny, paper).
        #[arg(long, default_value = "reference-tiny")]
        preset: String,
        /// Where to write the stage strip PNG (decoded canvas above structure map, per stage).
        #[arg(long)]
        strip: Option<PathBuf>,
        /// Where to write the sequence (.ron, or .json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the sequence as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Train a tokenizer on an image folder (sub-folder = class) or synthetic shapes.
    ///
    /// Example: nvg-studio train-tokenizer --data images/ --preset small --out runs/tok --steps 2000
    TrainTokenizer {
        /// Image folder, one sub-folder per class (default: the bundled emoji set).
        #[arg(long, conflicts_with = "synthetic")]
        data: Option<PathBuf>,
        /// Train on N procedurally drawn shape images instead of a folder.
        #[arg(long)]
        synthetic: Option<usize>,
        /// Configuration preset (small, test-tiny, reference-tiny, paper).
        #[arg(long, default_value = "small")]
        preset: String,
        /// Output checkpoint directory.
        #[arg(long)]
        out: PathBuf,
        /// Total optimisation steps.
        #[arg(long, default_value_t = 2000)]
        steps: u64,
        /// Images per step.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Peak learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Checkpoint every N steps.
        #[arg(long, default_value_t = 500)]
        checkpoint_every: u64,
        /// IBQ soft warm-up steps.
        #[arg(long, default_value_t = 200)]
        soft_warmup: u64,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Continue from the checkpoint in --out.
        #[arg(long)]
        resume: bool,
    },
    /// Generate an image of a class, stage by stage, with optional structure/content forcing.
    ///
    /// Examples:
    ///   nvg-studio generate --class 3 --seed 7 --out img.png --stages-out strip.png
    ///   nvg-studio generate --class mammal --structure-from ref.ron --keep-structure 1..3 --out swap.png
    Generate {
        /// Class name (case-insensitive) or id.
        #[arg(long)]
        class: String,
        /// Seed (same seed + inputs + backend = same image, bit for bit).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Model directory (holding tokenizer/ and generator/).
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
        /// Where to write the image (PNG).
        #[arg(long)]
        out: PathBuf,
        /// Also write a stage strip: each stage's decoded canvas above its structure map.
        #[arg(long)]
        stages_out: Option<PathBuf>,
        /// Print the generated sequence as JSON on standard output.
        #[arg(long)]
        json: bool,
        /// A sequence file (.ron/.json, e.g. from `encode`) to take structure maps or codes from.
        #[arg(long)]
        structure_from: Option<PathBuf>,
        /// Stages whose structure maps are taken from --structure-from: M (= 1..M) or A..B.
        #[arg(long, requires = "structure_from")]
        keep_structure: Option<String>,
        /// Stages whose codes are taken from --structure-from: K (= 0..K) or A..B.
        #[arg(long, requires = "structure_from")]
        keep_content: Option<String>,
        #[command(flatten)]
        sampler: SamplerArgs,
        /// A binary layout (black/white PNG, grid- or image-sized) used as the stage-1 structure map;
        /// it may be unbalanced.
        #[arg(long, conflicts_with = "structure_from")]
        layout: Option<PathBuf>,
    },
    /// Pose-preserving class swap: keep a reference's structure (and optionally content), repaint as another class.
    ///
    /// Examples:
    ///   nvg-studio swap --image flamingo.png --to-class mammal --keep-structure 1..3 --out rabbit.png --strip fig.png
    ///   nvg-studio swap --image flamingo.png --to-class mammal --sweep sweep.png --out last.png
    Swap {
        /// Reference image (any size: shorter side resized, centre crop; transparency on white).
        #[arg(long, conflicts_with = "sequence", required_unless_present = "sequence")]
        image: Option<PathBuf>,
        /// Reference sequence file (.ron/.json) instead of an image.
        #[arg(long)]
        sequence: Option<PathBuf>,
        /// Target class name or id.
        #[arg(long)]
        to_class: String,
        /// Keep the structure maps of stages 1..M (M, or 1..M).
        #[arg(long, default_value = "3")]
        keep_structure: String,
        /// Also keep the codes of stages 0..K (K, or 0..K).
        #[arg(long)]
        keep_content: Option<String>,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Model directory.
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
        /// Where to write the result (PNG).
        #[arg(long)]
        out: PathBuf,
        /// Figure: reference and result stage by stage (canvases and structure maps).
        #[arg(long)]
        strip: Option<PathBuf>,
        /// Figure with one row per M = 0..S−1 (structure kept up to stage M), reference on top.
        #[arg(long)]
        sweep: Option<PathBuf>,
        #[command(flatten)]
        sampler: SamplerArgs,
    },
    /// Train the generator of a model directory on its frozen tokenizer (DIR/tokenizer → DIR/generator).
    ///
    /// Example: nvg-studio train-generator --model runs/m --data images/ --steps 4000
    TrainGenerator {
        /// Model directory; its tokenizer/ must exist, generator/ is written.
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        source: cli::GeneratorDataArgs,
        /// Total optimisation steps.
        #[arg(long, default_value_t = 4000)]
        steps: u64,
        /// Images per step.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Peak learning rate.
        #[arg(long, default_value_t = 3e-4)]
        lr: f64,
        /// Content and structure stages trained per step (default: all).
        #[arg(long)]
        stages_per_step: Option<usize>,
        /// EMA decay of the sampling weights (lower for short runs).
        #[arg(long, default_value_t = 0.999)]
        ema_decay: f64,
        /// Linear warm-up steps of the learning rate.
        #[arg(long, default_value_t = 200)]
        warmup: u64,
        /// Checkpoint every N steps.
        #[arg(long, default_value_t = 500)]
        checkpoint_every: u64,
        /// Stop after step N (with a checkpoint), keeping the learning-rate schedule of --steps;
        /// continue later with --resume. Reproduces a run taken at a periodic checkpoint.
        #[arg(long)]
        stop_after: Option<u64>,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Continue from the checkpoint in DIR/generator.
        #[arg(long)]
        resume: bool,
        /// Evaluate the EMA weights on a fixed held-out batch every N steps and log per-stage
        /// losses and their baselines to DIR/generator/train-log.csv (0: never).
        #[arg(long, default_value_t = 100)]
        eval_every: u64,
        /// Images in the held-out batch.
        #[arg(long, default_value_t = 32)]
        eval_images: usize,
        /// Give the structure branch the fixed position table (on/off; default: the preset's —
        /// on for small and test-tiny, off for the paper's shapes; with --resume, the run's own).
        /// Off reproduces the paper's branch, which cannot tell where a token sits
        /// (docs/training.md).
        #[arg(long)]
        structure_positions: Option<OnOff>,
        /// Read the structure head as context logits on top of each bit's own posterior (on/off;
        /// default: the preset's — on for small and test-tiny, off for the paper's shapes; with
        /// --resume, the run's own).
        #[arg(long)]
        structure_context_logits: Option<OnOff>,
    },
    /// Print presets, parameter counts and the backend in use.
    Info {
        /// Only this tokenizer preset.
        #[arg(long)]
        preset: Option<String>,
    },
    /// Draw a run's training curves (per stage and branch, held-out next to the baselines)
    /// from its train-log.csv.
    ///
    /// Example: nvg-studio plot-training runs/m/generator --out curves.png
    PlotTraining {
        /// Run folder holding train-log.csv (a generator folder, or a model folder with generator/).
        run: PathBuf,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
    },
    /// Train the judge of `eval` on the emoji set's training split and measure it on the
    /// held-out emoji (accuracy per class, confusion matrix).
    ///
    /// Example: nvg-studio train-judge --steps 3000 --out runs/judge
    TrainJudge(cli::judge::TrainJudgeArgs),
    /// Diagnostics of training: overfit proofs per branch.
    ///
    /// Example: nvg-studio diagnose overfit --images 16 --branch structure --out runs/overfit
    Diagnose {
        #[command(subcommand)]
        cmd: cli::diagnose::DiagnoseCmd,
    },
    /// Build, describe or preview datasets: the bundled emoji set or an image folder.
    ///
    /// Example: nvg-studio dataset info
    Dataset {
        #[command(subcommand)]
        cmd: DatasetCmd,
    },
    /// Measure speed (results go to docs/benchmarks.md by hand, with this command).
    ///
    /// Example: nvg-studio bench --backend cpu
    Bench {
        /// Repetitions per measurement (median reported).
        #[arg(long, default_value_t = 20)]
        reps: usize,
        /// What to measure: tokenizer, generator, all (both), editor (UI frame time while the
        /// worker runs, edit → first updated thumbnail, memory after many edits; on the bundled
        /// model or --model, with the editor's 10 flow steps unless --flow-steps is given), or
        /// flow-steps (what fewer structure flow steps change, against 25, over --reps seeds), or
        /// precision (what bf16 products change against f32, over --reps seeds, CPU), or
        /// config (training and generation cost of the candidate bundled configurations), or
        /// frame-log (summarise an editor frame log written under NVG_FRAME_LOG: frame intervals
        /// while a run is in flight, fps per run; needs --frame-log).
        #[arg(long, default_value = "all")]
        what: String,
        /// Structure flow steps of the generation benchmark (default 25; the editor's default 10).
        #[arg(long)]
        flow_steps: Option<usize>,
        /// Model folder of the editor, flow-steps and precision benchmarks (default: the bundled model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Number of edits of the editor benchmark's memory measurement.
        #[arg(long, default_value_t = 100)]
        edits: usize,
        /// The frame log `--what frame-log` summarises (written by `NVG_FRAME_LOG=FILE nvg-studio`).
        #[arg(long)]
        frame_log: Option<PathBuf>,
    },
    /// Measure a model (tokenizer PSNR, judge accuracy, Fréchet distances) and write the model card.
    ///
    /// Example: nvg-studio eval --model assets/model --out-dir docs
    Eval(cli_eval::EvalArgs),
    /// Measure the class swap (target class per the judge, structure kept) into the model card.
    ///
    /// Example: nvg-studio eval-swap --references-per-class 3
    EvalSwap(cli_eval::EvalSwapArgs),
}

/// Options of the editor.
#[derive(clap::Args, Default)]
struct EditArgs {
    /// Model directory (tokenizer/ + generator/); default: the bundled model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Project (.ron) to open.
    #[arg(long)]
    project: Option<PathBuf>,
    /// Image to open as editable layers (encoded by the tokenizer).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Do not autosave the open project.
    #[arg(long)]
    no_autosave: bool,
    /// Canvas renderer: wgpu (GPU shader) or glow (CPU compositing); auto takes wgpu on a hardware
    /// GPU adapter and glow otherwise (on software rendering Mesa's OpenGL draws the window 3–4×
    /// faster than its Vulkan, docs/benchmarks.md), and glow if wgpu cannot start.
    #[arg(long, default_value = "auto")]
    renderer: String,
}

#[derive(Subcommand)]
enum DatasetCmd {
    /// Build the emoji sprite sheet and label file from the pinned npm packages (see README, "Data").
    ///
    /// Example: nvg-studio dataset build-emoji --packages /tmp/npm --size 32 --out assets/emoji/
    BuildEmoji {
        /// Folder holding the `npm pack` tarballs (or their unpacked folders).
        #[arg(long)]
        packages: PathBuf,
        /// Tile side in pixels (32 or 64).
        #[arg(long, default_value_t = 32)]
        size: u32,
        /// Output folder for emoji-SIZE.png and emoji-SIZE.ron.
        #[arg(long, default_value = "assets/emoji")]
        out: PathBuf,
        /// Store exact RGB instead of a 256-colour palette (about 3× larger).
        #[arg(long)]
        lossless: bool,
        /// Render threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Print class names and per-class counts of the bundled emoji set, another sheet, or an image folder.
    ///
    /// Example: nvg-studio dataset info --json
    Info {
        /// An image folder (one sub-folder per class) instead of the bundled set.
        #[arg(long, conflicts_with = "sheet")]
        data: Option<PathBuf>,
        /// An emoji label file (.ron) instead of the bundled one.
        #[arg(long)]
        sheet: Option<PathBuf>,
        /// Print JSON: { "classes": [names], "class_counts": { name: count }, ... }.
        #[arg(long)]
        json: bool,
    },
    /// Write a contact sheet PNG: one row per class (class id and name), N samples each.
    ///
    /// Example: nvg-studio dataset show --out contact.png --per-class 12
    Show {
        /// Where to write the PNG.
        #[arg(long)]
        out: PathBuf,
        /// Samples per class, spread evenly over the class.
        #[arg(long, default_value_t = 8)]
        per_class: usize,
        /// An image folder (one sub-folder per class) instead of the bundled set.
        #[arg(long, conflicts_with = "sheet")]
        data: Option<PathBuf>,
        /// An emoji label file (.ron) instead of the bundled one.
        #[arg(long)]
        sheet: Option<PathBuf>,
        /// Cell size for --data images (emoji sheets use their tile size).
        #[arg(long, default_value_t = 32)]
        size: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `NVG_HOST_PATH=off`: run the generator through burn op by op on the CPU backend too (for
    // comparisons; the host path is the default there, see src/model/host.rs).
    if std::env::var("NVG_HOST_PATH").is_ok_and(|v| v.eq_ignore_ascii_case("off") || v == "0") {
        nvg_studio::model::host::set_enabled(false);
    }
    nvg_studio::model::host::set_precision(cli.precision);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn pick_backend(choice: BackendChoice) -> Result<Backend> {
    let b = backend::select(choice)?;
    use nvg_studio::model::{bf16, host};
    if b.is_cpu && host::enabled() {
        eprintln!("backend: {b}; generator inference through {}", host::label());
        if host::precision() == host::Precision::Bf16 {
            match bf16::kernel() {
                bf16::Kernel::Amx => {}
                bf16::Kernel::Avx512 => eprintln!("note: no AMX on this CPU; bf16 products on AVX-512 BF16 measured slower than f32 on our test machine"),
                bf16::Kernel::Scalar => eprintln!("note: this CPU has neither AMX nor AVX-512 BF16; bf16 runs as a scalar emulation, slower than f32"),
            }
        }
    } else {
        eprintln!("backend: {b}");
        if host::precision() == host::Precision::Bf16 {
            eprintln!("note: --precision bf16 applies to the CPU host path only; this backend computes in f32");
        }
    }
    Ok(b)
}

fn preset(name: &str) -> Result<TokenizerConfig> {
    TokenizerConfig::preset(name).ok_or_else(|| {
        anyhow!("unknown preset '{name}': expected one of {}", TokenizerConfig::PRESETS.join(", "))
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => edit(cli.backend, EditArgs::default()),
        Some(Command::Edit { args }) => edit(cli.backend, args),
        Some(Command::Demo) => demo(cli.backend),
        Some(Command::Info { preset: p }) => info(cli.backend, p),
        Some(Command::Encode { image, model, reference_weights, preset: p, strip, out, json }) => {
            let model = nvg_studio::bundled(&model);
            let b = pick_backend(cli.backend)?;
            let (cfg, tok) = match reference_weights {
                Some(w) => {
                    let cfg = preset(&p)?;
                    // .safetensors, or the official PyTorch checkpoint (.ckpt / .pt / .pth).
                    let torch = w.extension().is_some_and(|e| ["ckpt", "pt", "pth"].iter().any(|x| e.eq_ignore_ascii_case(x)));
                    let tok = if torch { import_reference_pytorch(&w, &cfg, &b.device)? } else { import_reference_safetensors(&w, &cfg, &b.device)? };
                    (cfg.clone(), tok)
                }
                None => {
                    let (meta, t) = load_tokenizer(&model, None, &b.device)
                        .map_err(|e| anyhow!("{e} (restore {DEFAULT_TOKENIZER} or pass --model DIR)"))?;
                    (meta.config, t)
                }
            };
            encode(&tok, &cfg, &image, strip.as_deref(), out.as_deref(), json, &b)
        }
        Some(Command::TrainTokenizer {
            data,
            synthetic,
            preset: p,
            out,
            steps,
            batch,
            lr,
            checkpoint_every,
            soft_warmup,
            seed,
            resume,
        }) => {
            let b = pick_backend(cli.backend)?;
            let cfg = preset(&p)?;
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
            let pb = ProgressBar::new(steps);
            pb.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let report = train_tokenizer(&cfg, source.as_ref(), &out, &opts, resume, &b.device, &mut |s| {
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
        Some(Command::Bench { reps, what, flow_steps, model, edits, frame_log }) => match what.as_str() {
            "tokenizer" => bench(cli.backend, reps),
            "generator" => bench_generator::generator(cli.backend, reps, flow_steps.unwrap_or(25)),
            "all" => {
                bench(cli.backend, reps)?;
                bench_generator::generator(cli.backend, reps, flow_steps.unwrap_or(25))
            }
            "flow-steps" => bench_generator::flow_steps(cli.backend, model.unwrap_or_else(default_model_dir), reps),
            "precision" => bench_generator::precision(cli.backend, model.unwrap_or_else(default_model_dir), reps),
            "editor" => nvg_studio::app::bench::bench_editor(
                model.unwrap_or_else(default_model_dir),
                cli.backend,
                edits,
                flow_steps.unwrap_or(10),
            )
            .map_err(|e| anyhow::anyhow!("editor bench: {e}")),
            "config" => bench_config::bench_config(&pick_backend(cli.backend)?, reps),
            "frame-log" => match frame_log {
                Some(p) => nvg_studio::app::frame_log::bench_frame_log(&p).map_err(|e| anyhow::anyhow!("frame log {e}")),
                None => bail!("--what frame-log needs --frame-log FILE (a log written with NVG_FRAME_LOG=FILE nvg-studio)"),
            },
            other => bail!("--what {other}: expected tokenizer, generator, all, editor, flow-steps, precision, config or frame-log"),
        },
        Some(Command::Eval(a)) => cli_eval::eval(a, &pick_backend(cli.backend)?),
        Some(Command::EvalSwap(a)) => cli_eval::eval_swap(a, &pick_backend(cli.backend)?),
        Some(Command::Generate {
            class,
            seed,
            model,
            out,
            stages_out,
            json,
            structure_from,
            keep_structure,
            keep_content,
            sampler,
            layout,
        }) => {
            let b = pick_backend(cli.backend)?;
            let settings = sampler.settings()?;
            let bundle = load_bundle(&nvg_studio::bundled(&model), &b.device)
                .map_err(|e| anyhow!("{e} (restore {DEFAULT_MODEL} or pass --model DIR)"))?;
            let class_id = resolve_class(&bundle.class_names, &class).map_err(|e| anyhow!("--class: {e}"))?;
            let mut job = ImageJob::new(class_id, seed);
            if let Some(mask) = &layout {
                let map = nvg_studio::swap::layout_from_mask(mask, bundle.gcfg.grid_side, bundle.tcfg.image_size)?;
                job.forced_structure.insert(1, map);
            }
            if let Some(path) = &structure_from {
                let seq = GranularitySequence::load(path)?;
                seq.validate().with_context(|| format!("sequence {}", path.display()))?;
                let s_count = bundle.gcfg.num_stages();
                if seq.grid_size != bundle.gcfg.grid_side || seq.stages.len() != s_count {
                    bail!(
                        "sequence {}: made for a {}×{} grid with {} stages; this model has {}×{} and {}",
                        path.display(), seq.grid_size, seq.grid_size, seq.stages.len(),
                        bundle.gcfg.grid_side, bundle.gcfg.grid_side, s_count
                    );
                }
                if let Some(r) = &keep_structure {
                    let r = parse_stage_range(r, 1).map_err(|e| anyhow!("--keep-structure: {e}"))?;
                    if *r.start() != 1 {
                        bail!("--keep-structure {}..{}: structure is kept from stage 1 up to M (a later map needs its parents)", r.start(), r.end());
                    }
                    if *r.end() >= s_count {
                        bail!("--keep-structure {}..{}: structure maps of stages 1..{} can be kept", r.start(), r.end(), s_count - 1);
                    }
                    for s in r {
                        job.forced_structure.insert(s, seq.stages[s].structure.clone());
                    }
                }
                if let Some(r) = &keep_content {
                    let r = parse_stage_range(r, 0).map_err(|e| anyhow!("--keep-content: {e}"))?;
                    if *r.end() >= s_count {
                        bail!("--keep-content ..{}: the model has stages 0..{}", r.end(), s_count - 1);
                    }
                    // Codes belong to clusters, so the maps of every stage up to the last kept one come too.
                    for s in 1..=*r.end() {
                        job.forced_structure.insert(s, seq.stages[s].structure.clone());
                    }
                    for s in r {
                        job.forced_codes.insert(s, seq.stages[s].codes.clone());
                    }
                }
            }
            let mut stage_images = Vec::new();
            let tok = &bundle.tokenizer;
            let want_strip = stages_out.is_some();
            let pb = ProgressBar::new(bundle.gcfg.num_stages() as u64);
            let result = bundle.sample(&[job], &settings, &mut |d| {
                if want_strip {
                    stage_images.push(tensor_to_images(tok.decode(d.canvas.clone())).remove(0));
                }
                pb.inc(1);
                true
            }, &|| false).map_err(|e| anyhow!("generate: {e}"))?;
            pb.finish_and_clear();
            let image = tensor_to_images(tok.decode(result.canvas)).remove(0);
            save_png(&image, &out)?;
            eprintln!("image: {} ({}, seed {seed})", out.display(), bundle.class_names[class_id]);
            let seq = &result.sequences[0];
            if let Some(p) = &stages_out {
                let maps: Vec<Vec<u32>> = seq.stages.iter().map(|s| s.structure.clone()).collect();
                save_png(&stage_strip(&stage_images, &maps, bundle.gcfg.grid_side), p)?;
                eprintln!("stage strip: {}", p.display());
            }
            if json {
                println!("{}", seq.to_json_string()?);
            }
            Ok(())
        }
        Some(Command::Swap { image, sequence, to_class, keep_structure, keep_content, seed, model, out, strip, sweep, sampler }) => {
            use nvg_studio::swap::{Keep, grid_figure, render, swap_job};
            let model = nvg_studio::bundled(&model);
            let b = pick_backend(cli.backend)?;
            let bundle = load_bundle(&model, &b.device)
                .map_err(|e| anyhow!("{e} (restore {DEFAULT_MODEL} or pass --model DIR)"))?;
            let class_id = resolve_class(&bundle.class_names, &to_class).map_err(|e| anyhow!("--to-class: {e}"))?;
            let s_count = bundle.gcfg.num_stages();
            let reference = match (&image, &sequence) {
                (Some(p), _) => {
                    let img = data::load_rgb(p, bundle.tcfg.image_size as u32, BACKGROUND)?;
                    encode_images(&bundle.tokenizer, &bundle.tcfg, &[img], &b.device).remove(0).sequence
                }
                (None, Some(p)) => {
                    let seq = GranularitySequence::load(p)?;
                    if seq.grid_size != bundle.gcfg.grid_side || seq.stages.len() != s_count {
                        bail!("sequence {}: made for a {}×{} grid; this model has {}×{}", p.display(), seq.grid_size, seq.grid_size, bundle.gcfg.grid_side, bundle.gcfg.grid_side);
                    }
                    seq
                }
                (None, None) => bail!("give --image IN.png or --sequence IN.ron"),
            };
            let r = parse_stage_range(&keep_structure, 1).map_err(|e| anyhow!("--keep-structure: {e}"))?;
            if *r.start() > 1 {
                bail!("--keep-structure {keep_structure}: structure is kept from stage 1 up to M");
            }
            let content_upto = match &keep_content {
                Some(k) => {
                    let r = parse_stage_range(k, 0).map_err(|e| anyhow!("--keep-content: {e}"))?;
                    if *r.start() != 0 {
                        bail!("--keep-content {k}: content is kept from stage 0 up to K");
                    }
                    Some(*r.end())
                }
                None => None,
            };
            let settings = sampler.settings()?;
            let keep = Keep { structure_upto: *r.end(), content_upto };
            let result = render(&bundle, swap_job(&reference, &keep, class_id, seed)?, &settings)?;
            save_png(result.stages.last().context("no stage")?, &out)?;
            eprintln!("swap: {} → {} keeping structure 1..{}: {}", image.as_ref().or(sequence.as_ref()).map(|p| p.display().to_string()).unwrap_or_default(), bundle.class_names[class_id], keep.structure_upto, out.display());
            let side = bundle.gcfg.grid_side;
            let tile = bundle.tcfg.image_size as u32;
            let cell = (tile / side as u32).max(1);
            let maps_row = |seq: &GranularitySequence| -> Vec<image::RgbImage> {
                seq.stages.iter().enumerate().map(|(i, s)| {
                    let m = structure_map_image(&s.structure, side, i, cell);
                    image::imageops::resize(&m, tile, tile, image::imageops::FilterType::Nearest)
                }).collect()
            };
            let ref_stages = {
                let keep_all = Keep { structure_upto: s_count - 1, content_upto: Some(s_count - 1) };
                render(&bundle, swap_job(&reference, &keep_all, 0, 0)?, &settings)?.stages
            };
            if let Some(p) = &strip {
                let fig = grid_figure(&[ref_stages.clone(), maps_row(&reference), result.stages.clone(), maps_row(&result.sequence)], 3);
                save_png(&fig, p)?;
                eprintln!("figure (rows: reference canvases, reference maps, result canvases, result maps): {}", p.display());
            }
            if let Some(p) = &sweep {
                let mut rows = vec![ref_stages.clone()];
                for m in 0..s_count {
                    let k = Keep { structure_upto: m, content_upto: None };
                    rows.push(render(&bundle, swap_job(&reference, &k, class_id, seed)?, &settings)?.stages);
                }
                save_png(&grid_figure(&rows, 3), p)?;
                eprintln!("sweep (row 0: reference; row m+1: structure kept up to stage m): {}", p.display());
            }
            Ok(())
        }
        Some(Command::TrainGenerator {
            model,
            source: cli::GeneratorDataArgs { data, synthetic, preset: p },
            steps,
            batch,
            lr,
            stages_per_step,
            ema_decay,
            warmup,
            checkpoint_every,
            stop_after,
            seed,
            resume,
            eval_every,
            eval_images,
            structure_positions,
            structure_context_logits,
        }) => {
            let b = pick_backend(cli.backend)?;
            let mut shape = GeneratorConfig::preset(&p).ok_or_else(|| {
                anyhow!("unknown generator preset '{p}': expected one of {}", GeneratorConfig::PRESETS.join(", "))
            })?;
            // Resuming without the switches keeps the run's own choice (checkpoints written
            // before the switches existed have both off).
            let resumed = resume
                .then(|| {
                    let dir = model.join("generator").join(nvg_studio::train::generator::TRAIN_STATE_DIR);
                    nvg_studio::model::checkpoint::read_meta::<GeneratorConfig>(&dir, nvg_studio::train::generator::GENERATOR_KIND).ok()
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
                ..Default::default()
            };
            let pb = ProgressBar::new(steps);
            pb.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let out = model.join("generator");
            let cfg = train_generator(&shape, &tok, &tcfg, source.as_ref(), &out, &opts, resume, &b.device, &mut |s| {
                pb.set_position(s.step);
                let msg = step_message(s);
                log_if_hidden(&pb, s.step, s.total, &msg);
                pb.set_message(msg);
            })?;
            pb.finish();
            println!("generator: {} ({} classes, {} stages)", out.display(), cfg.num_classes, cfg.num_stages());
            Ok(())
        }
        Some(Command::Dataset { cmd }) => dataset(cmd),
        Some(Command::PlotTraining { run, out }) => {
            let log = [run.join(nvg_studio::train::monitor::LOG_FILE), run.join("generator").join(nvg_studio::train::monitor::LOG_FILE)]
                .into_iter()
                .find(|p| p.exists())
                .ok_or_else(|| anyhow!("{}: no {} there or in its generator/ folder", run.display(), nvg_studio::train::monitor::LOG_FILE))?;
            nvg_studio::eval::curves::plot_log_file(&log, &out).map_err(|e| anyhow!(e))?;
            println!("curves: {} (from {})", out.display(), log.display());
            Ok(())
        }
        Some(Command::TrainJudge(a)) => cli::judge::run(a, &pick_backend(cli.backend)?),
        Some(Command::Diagnose { cmd }) => cli::diagnose::run(cmd, &pick_backend(cli.backend)?),
    }
}

/// A switch given as `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// The progress line of a generator training step: losses, speed, and the latest held-out
/// ratios (structure loss / context-free baseline, content CE / unigram baseline).
fn step_message(s: &nvg_studio::train::generator::GeneratorStep) -> String {
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

fn dataset(cmd: DatasetCmd) -> Result<()> {
    match cmd {
        DatasetCmd::BuildEmoji { packages, size, out, lossless, threads } => {
            let opts = data::BuildOptions {
                packages,
                out_dir: out,
                tile_size: size,
                encoding: if lossless { data::SheetEncoding::Lossless } else { data::SheetEncoding::Palette },
                threads,
            };
            let pb = ProgressBar::new(0);
            pb.set_style(
                ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed_precise}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let report = data::build_emoji_sheet(&opts, &mut |p| match p {
                data::BuildProgress::Reading => pb.set_message("reading packages"),
                data::BuildProgress::Rendering { done, total } => {
                    pb.set_message("rendering");
                    pb.set_length(total as u64);
                    pb.set_position(done as u64);
                }
                data::BuildProgress::Writing => pb.set_message("writing"),
            })?;
            pb.finish_and_clear();
            let labels = &report.labels;
            println!(
                "{} tiles of {}×{} px in {} classes, {:.1} s",
                labels.count, labels.tile_size, labels.tile_size, labels.classes.len(), report.elapsed.as_secs_f64()
            );
            println!("sheet:  {} ({} bytes{})", report.sheet_path.display(), report.sheet_bytes,
                if report.palette_colours > 0 {
                    format!(", {} colours, {:.1} dB PSNR vs lossless", report.palette_colours, report.psnr_db)
                } else {
                    ", lossless".to_string()
                });
            println!("labels: {} ({} bytes)", report.labels_path.display(), report.labels_bytes);
            let vendors: Vec<String> = report.vendor_counts.iter().map(|(v, n)| format!("{v} {n}")).collect();
            println!("per vendor: {}", vendors.join(", "));
            if !report.unmatched_emoji.is_empty() {
                println!("emoji drawn by no vendor: {}", report.unmatched_emoji.join(" "));
            }
            Ok(())
        }
        DatasetCmd::Info { data: folder, sheet, json } => {
            let summary = match folder {
                Some(dir) => {
                    let f = ImageFolder::open(&dir)?;
                    data::DatasetSummary::of_counts(&dir.display().to_string(), f.class_names(), &f.class_counts())
                }
                None => data::DatasetSummary::of_sheet(&open_sheet(sheet.as_deref())?),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.to_text());
            }
            Ok(())
        }
        DatasetCmd::Show { out, per_class, data: folder, sheet, size } => {
            let img = match folder {
                Some(dir) => {
                    let f = std::sync::Arc::new(ImageFolder::open(&dir)?);
                    let items: Vec<Vec<usize>> =
                        (0..f.class_names().len()).map(|c| f.class_range(c).collect()).collect();
                    data::contact_sheet(&FolderSource::new(f, size, BACKGROUND)?, &items, per_class)?
                }
                None => {
                    let sheet = std::sync::Arc::new(open_sheet(sheet.as_deref())?);
                    let items: Vec<Vec<usize>> =
                        (0..sheet.class_names().len()).map(|c| sheet.items_of_class(c).to_vec()).collect();
                    let tile = sheet.tile_size();
                    data::contact_sheet(&data::EmojiSource::new(sheet, tile)?, &items, per_class)?
                }
            };
            save_png(&img, &out)?;
            println!("contact sheet: {} ({}×{} px)", out.display(), img.width(), img.height());
            Ok(())
        }
    }
}

/// The training images: an image folder, synthetic shapes, or (by default) the bundled emoji set.
fn training_source(data: Option<PathBuf>, synthetic: Option<usize>, size: u32, seed: u64) -> Result<Box<dyn ImageSource>> {
    Ok(match (data, synthetic) {
        (Some(dir), _) => {
            let folder = ImageFolder::open(&dir)?;
            eprintln!("data: {} images in {} classes from {}", folder.len(), folder.class_names().len(), dir.display());
            Box::new(FolderSource::new(folder, size, BACKGROUND)?)
        }
        (None, Some(n)) => Box::new(SyntheticShapes::new(n, size, seed)?),
        (None, None) => bundled_emoji(size)?,
    })
}

/// The bundled emoji dataset as a training source (the default when neither --data nor
/// --synthetic is given).
fn bundled_emoji(size: u32) -> Result<Box<dyn ImageSource>> {
    let sheet = open_sheet(None)?;
    eprintln!("data: bundled emoji set, {} images in {} classes", sheet.len(), sheet.class_names().len());
    Ok(Box::new(data::EmojiSource::new(sheet, size)?))
}

/// The emoji sheet at `labels` (a .ron file), or the bundled one.
fn open_sheet(labels: Option<&Path>) -> Result<data::EmojiSheet> {
    let bundled = nvg_studio::bundled(Path::new(data::BUNDLED_EMOJI_LABELS));
    let path = labels.unwrap_or(&bundled);
    data::EmojiSheet::open(path).map_err(|e| {
        if labels.is_none() { anyhow!("{e} (run from the repository root, or pass --sheet FILE.ron)") } else { e.into() }
    })
}

fn encode(
    tok: &Tokenizer,
    cfg: &TokenizerConfig,
    image: &Path,
    strip: Option<&Path>,
    out: Option<&Path>,
    json: bool,
    b: &Backend,
) -> Result<()> {
    let img = data::load_rgb(image, cfg.image_size as u32, BACKGROUND)?;
    let enc = encode_images(tok, cfg, &[img], &b.device).into_iter().next().context("nothing encoded")?;
    if let Some(p) = strip {
        let maps: Vec<Vec<u32>> = enc.sequence.stages.iter().map(|s| s.structure.clone()).collect();
        let fig = stage_strip(&enc.stage_images, &maps, cfg.grid_side());
        save_png(&fig, p)?;
        eprintln!("stage strip: {}", p.display());
    }
    if let Some(p) = out {
        enc.sequence.save_atomic(p).with_context(|| format!("sequence {}", p.display()))?;
        eprintln!("sequence: {}", p.display());
    }
    if json {
        println!("{}", enc.sequence.to_json_string()?);
    }
    Ok(())
}

/// Where no terminal shows the progress bar (logs, CI), print a plain line every 2% of the run.
fn log_if_hidden(pb: &ProgressBar, step: u64, total: u64, msg: &str) {
    if pb.is_hidden() && (step % (total / 50).max(1) == 0 || step == total) {
        // The bar's own [elapsed<ETA] is not drawn when stderr is not a terminal (a log file);
        // indicatif's ETA follows the recent step rate, so a resumed run's is right too.
        eprintln!("step {step}/{total} [{}<{}]: {msg}", hms(pb.elapsed().as_secs_f64()), hms(pb.eta().as_secs_f64()));
    }
}

/// Seconds as h:mm:ss.
fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .with_context(|| format!("image {}", path.display()))?;
    nvg_studio::model::checkpoint::write_atomic(path, &bytes)
        .with_context(|| format!("image {}: cannot write", path.display()))
}

/// The bundled model: `assets/model` under the working directory, else under the source tree
/// this binary was built from (so `cargo run` works from any folder).
fn default_model_dir() -> PathBuf {
    nvg_studio::bundled(Path::new(DEFAULT_MODEL))
}

fn edit(choice: BackendChoice, args: EditArgs) -> Result<()> {
    let opts = nvg_studio::app::AppOptions {
        model_dir: args.model.unwrap_or_else(default_model_dir),
        backend: choice,
        project: args.project,
        image: args.image,
        autosave: !args.no_autosave,
        fallback_model: Some(default_model_dir()),
    };
    let title = "nvg-studio";
    let native = |renderer| eframe::NativeOptions {
        renderer,
        viewport: eframe::egui::ViewportBuilder::default().with_inner_size([1280.0, 860.0]).with_title(title),
        ..Default::default()
    };
    let start = |renderer, opts: nvg_studio::app::AppOptions| {
        eframe::run_native(
            title,
            native(renderer),
            Box::new(move |cc| Ok(Box::new(nvg_studio::app::NvgApp::from_creation_context(cc, opts)))),
        )
    };
    match args.renderer.as_str() {
        "wgpu" => start(eframe::Renderer::Wgpu, opts).map_err(|e| anyhow!("editor (wgpu renderer): {e}")),
        "glow" => start(eframe::Renderer::Glow, opts).map_err(|e| anyhow!("editor (glow renderer): {e}")),
        "auto" | "" if nvg_studio::backend::hardware_wgpu_adapter() == Some(false) => {
            // No hardware adapter: software Vulkan (lavapipe) drew the window at ~9 fps while a
            // run was in flight here, software OpenGL at a median of ~36 fps (docs/benchmarks.md).
            eprintln!("no hardware GPU adapter for wgpu; using the glow renderer with the CPU canvas");
            start(eframe::Renderer::Glow, opts).map_err(|e| anyhow!("editor (glow renderer): {e}"))
        }
        "auto" | "" => match start(eframe::Renderer::Wgpu, opts.clone()) {
            Ok(()) => Ok(()),
            Err(e) => {
                // No wgpu adapter: the canvas falls back to CPU compositing on the glow renderer.
                eprintln!("wgpu renderer unavailable ({e}); using glow with the CPU canvas");
                start(eframe::Renderer::Glow, opts).map_err(|e| anyhow!("editor: no renderer could start ({e})"))
            }
        },
        other => bail!("--renderer {other}: expected auto, wgpu or glow"),
    }
}

fn demo(choice: BackendChoice) -> Result<()> {
    let b = pick_backend(choice)?;
    let model = &default_model_dir();
    // 1. Encode a sample image into its stages with the bundled tokenizer.
    let (meta, tok) = load_tokenizer(&model.join("tokenizer"), None, &b.device)
        .map_err(|e| anyhow!("{e} (restore {DEFAULT_MODEL} from git, or train one with train-tokenizer)"))?;
    let input = &nvg_studio::bundled(Path::new("assets/samples/flamingo.png"));
    let out = Path::new("nvg-demo-encode.png");
    encode(&tok, &meta.config, input, Some(out), None, false, &b)?;
    println!(
        "Encoded {} into {} stages: {} shows each stage's decoded canvas above its structure map.",
        input.display(),
        meta.config.num_stages(),
        out.display()
    );
    // 2. Generate an image stage by stage with the bundled generator.
    let bundle = load_bundle(model, &b.device).map_err(|e| anyhow!("{e} (restore {DEFAULT_MODEL} from git)"))?;
    let class = resolve_class(&bundle.class_names, "bird").unwrap_or(0);
    let mut images = Vec::new();
    let settings = SamplerSettings::default();
    let result = bundle.sample(&[ImageJob::new(class, 1)], &settings, &mut |d| {
        images.push(tensor_to_images(bundle.tokenizer.decode(d.canvas.clone())).remove(0));
        true
    }, &|| false)
    .map_err(|e| anyhow!("generate: {e}"))?;
    let maps: Vec<Vec<u32>> = result.sequences[0].stages.iter().map(|s| s.structure.clone()).collect();
    let out = Path::new("nvg-demo-generate.png");
    save_png(&stage_strip(&images, &maps, bundle.gcfg.grid_side), out)?;
    println!("Generated class '{}' (seed 1) stage by stage: {}", bundle.class_names[class], out.display());
    Ok(())
}

fn info(choice: BackendChoice, only: Option<String>) -> Result<()> {
    let b = pick_backend(choice)?;
    let (tok_names, gen_names): (Vec<String>, Vec<String>) = match only {
        Some(n) => {
            let t = TokenizerConfig::preset(&n).map(|_| n.clone());
            let g = GeneratorConfig::preset(&n).map(|_| n.clone());
            if t.is_none() && g.is_none() {
                let mut all: Vec<&str> = TokenizerConfig::PRESETS.to_vec();
                all.extend(GeneratorConfig::PRESETS.iter().filter(|p| !TokenizerConfig::PRESETS.contains(p)));
                bail!("unknown preset '{n}': expected one of {}", all.join(", "));
            }
            (t.into_iter().collect(), g.into_iter().collect())
        }
        None => (
            TokenizerConfig::PRESETS.iter().map(|s| s.to_string()).collect(),
            GeneratorConfig::PRESETS.iter().map(|s| s.to_string()).collect(),
        ),
    };
    for n in tok_names {
        let cfg = preset(&n)?;
        let params = if cfg.image_size <= 64 { Tokenizer::new(&cfg, &b.device).num_params() } else { 0 };
        println!(
            "tokenizer preset {n}: {}×{} images, {}×{} grid, {} stages, codebook {}×{}{}",
            cfg.image_size,
            cfg.image_size,
            cfg.grid_side(),
            cfg.grid_side(),
            cfg.num_stages(),
            cfg.codebook_size,
            cfg.latent_channels,
            if params > 0 { format!(", {params} parameters") } else { String::new() }
        );
    }
    for n in gen_names {
        let cfg = GeneratorConfig::preset(&n).context("preset")?;
        let pc = cfg.param_count();
        println!(
            "generator preset {n}: depth {}, content {}/{} heads, structure {}/{} heads, {} classes, codebook {}, {}×{} grid; \
parameters: content {} ({:.1}M), structure {} ({:.1}M), total {} ({:.1}M)",
            cfg.depth,
            cfg.content_width,
            cfg.content_heads,
            cfg.structure_width,
            cfg.structure_heads,
            cfg.num_classes,
            cfg.vocab_size,
            cfg.grid_side,
            cfg.grid_side,
            pc.content,
            pc.content as f64 / 1e6,
            pc.structure,
            pc.structure as f64 / 1e6,
            pc.total(),
            pc.total() as f64 / 1e6
        );
    }
    Ok(())
}

/// Median of timings (NaN when there are none).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}


fn bench(choice: BackendChoice, reps: usize) -> Result<()> {
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
    let t = bench_config::step_times(&mut |cb| {
        train_tokenizer(&cfg, &src, &dir, &opts, false, &b.device, &mut |s| cb(s.step)).map(|_| ()).map_err(|e| anyhow!("{e}"))
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    println!("tokenizer training step, small preset, batch 16: median {:.1} ms", 1e3 * t);
    Ok(())
}
