//! The `nvg-studio` command line. Every subcommand calls the library; errors end the process
//! with one line naming the file or value at fault and a non-zero exit code.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use nvg_studio::model::backend::BackendChoice;

mod cli;


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
        args: cli::app::EditArgs,
    },
    /// Encode the sample flamingo and generate a 'bird' on the command line, writing two PNGs.
    ///
    /// Example: nvg-studio demo
    Demo,
    /// Encode an image into its granularity sequence and write a stage strip.
    ///
    /// Example: nvg-studio encode photo.png --strip strip.png --out seq.ron
    Encode(cli::generate::EncodeArgs),
    /// Train a tokenizer on an image folder (sub-folder = class) or synthetic shapes.
    ///
    /// Example: nvg-studio train-tokenizer --data images/ --preset small --out runs/tok --steps 2000
    TrainTokenizer(cli::train::TrainTokenizerArgs),
    /// Generate an image of a class, stage by stage, with optional structure/content forcing.
    ///
    /// Examples:
    ///   nvg-studio generate --class 3 --seed 7 --out img.png --stages-out strip.png
    ///   nvg-studio generate --class mammal --structure-from ref.ron --keep-structure 1..3 --out swap.png
    Generate(cli::generate::GenerateArgs),
    /// Pose-preserving class swap: keep a reference's structure (and optionally content), repaint as another class.
    ///
    /// Examples:
    ///   nvg-studio swap --image flamingo.png --to-class mammal --keep-structure 1..3 --out rabbit.png --strip fig.png
    ///   nvg-studio swap --image flamingo.png --to-class mammal --sweep sweep.png --out last.png
    Swap(cli::generate::SwapArgs),
    /// Train the generator of a model directory on its frozen tokenizer (DIR/tokenizer → DIR/generator).
    ///
    /// Example: nvg-studio train-generator --model runs/m --data images/ --steps 4000
    TrainGenerator(cli::train::TrainGeneratorArgs),
    /// Print presets, parameter counts and the backend in use.
    Info(cli::app::InfoArgs),
    /// Draw a run's training curves (per stage and branch, held-out next to the baselines)
    /// from its train-log.csv.
    ///
    /// Example: nvg-studio plot-training runs/m/generator --out curves.png
    PlotTraining(cli::train::PlotTrainingArgs),
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
        cmd: cli::dataset::DatasetCmd,
    },
    /// Measure speed (results go to docs/benchmarks.md by hand, with this command).
    ///
    /// Example: nvg-studio bench --backend cpu
    Bench(cli::bench::BenchArgs),
    /// Measure a model (tokenizer PSNR, judge accuracy, Fréchet distances) and write the model card.
    ///
    /// Example: nvg-studio eval --model assets/model --out-dir docs
    Eval(cli::eval::EvalArgs),
    /// Measure the class swap (target class per the judge, structure kept) into the model card.
    ///
    /// Example: nvg-studio eval-swap --references-per-class 3
    EvalSwap(cli::eval::EvalSwapArgs),
}


fn main() -> ExitCode {
    let cli = Cli::parse();
    // `NVG_HOST_PATH=off`: run the generator through burn op by op on the CPU backend too (for
    // comparisons; the host path is the default there, see src/model/host/mod.rs).
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

fn run(cli: Cli) -> Result<()> {
    use cli::*;
    let choice = cli.backend;
    match cli.command {
        None => app::edit(choice, app::EditArgs::default()),
        Some(Command::Edit { args }) => app::edit(choice, args),
        Some(Command::Demo) => app::demo(choice),
        Some(Command::Info(a)) => app::info(choice, a.preset),
        Some(Command::Encode(a)) => generate::encode(a, choice),
        Some(Command::Generate(a)) => generate::generate(a, choice),
        Some(Command::Swap(a)) => generate::swap(a, choice),
        Some(Command::TrainTokenizer(a)) => train::train_tokenizer(a, choice),
        Some(Command::TrainGenerator(a)) => train::train_generator(a, choice),
        Some(Command::PlotTraining(a)) => train::plot_training(a, choice),
        Some(Command::Bench(a)) => bench::run(a, choice),
        Some(Command::Dataset { cmd }) => dataset::dataset(cmd),
        Some(Command::Eval(a)) => eval::eval(a, &pick_backend(choice)?),
        Some(Command::EvalSwap(a)) => eval::eval_swap(a, &pick_backend(choice)?),
        Some(Command::TrainJudge(a)) => judge::run(a, &pick_backend(choice)?),
        Some(Command::Diagnose { cmd }) => diagnose::run(cmd, &pick_backend(choice)?),
    }
}
