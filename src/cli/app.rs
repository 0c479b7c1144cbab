//! The editor and the commands around it: `edit` (the default), `demo` and `info`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;

use nvg_studio::model::backend::BackendChoice;
use nvg_studio::model::tokenizer_io::load_tokenizer;
use nvg_studio::model::{Tokenizer, TokenizerConfig};
use nvg_studio::model::generator::GeneratorConfig;
use nvg_studio::model::images::tensor_to_images;
use nvg_studio::sampler::{load_bundle, resolve_class};
use nvg_studio::sampler::{ImageJob, SamplerSettings};
use nvg_studio::granularity::viz::stage_strip;
use super::{DEFAULT_MODEL, default_model_dir, pick_backend, preset, save_png};


/// Options of the editor.
#[derive(clap::Args, Default)]
pub struct EditArgs {
    /// Model directory (tokenizer/ + generator/); default: the bundled model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Project (.ron) to open.
    #[arg(long)]
    pub project: Option<PathBuf>,
    /// Image to open as editable layers (encoded by the tokenizer).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Do not autosave the open project.
    #[arg(long)]
    pub no_autosave: bool,
    /// Canvas renderer: wgpu (GPU shader) or glow (CPU compositing); auto takes wgpu on a hardware
    /// GPU adapter and glow otherwise (on software rendering Mesa's OpenGL draws the window 3–4×
    /// faster than its Vulkan, docs/benchmarks.md), and glow if wgpu cannot start.
    #[arg(long, default_value = "auto")]
    pub renderer: String,
}

/// Arguments of `info`.
#[derive(clap::Args)]
pub struct InfoArgs {
    /// Only this tokenizer preset.
    #[arg(long)]
    pub preset: Option<String>,
}

pub fn edit(choice: BackendChoice, args: EditArgs) -> Result<()> {
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
        "auto" | "" if nvg_studio::model::backend::hardware_wgpu_adapter() == Some(false) => {
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

pub fn demo(choice: BackendChoice) -> Result<()> {
    let b = pick_backend(choice)?;
    let model = &default_model_dir();
    // 1. Encode a sample image into its stages with the bundled tokenizer.
    let (meta, tok) = load_tokenizer(&model.join("tokenizer"), None, &b.device)
        .map_err(|e| anyhow!("{e} (restore {DEFAULT_MODEL} from git, or train one with train-tokenizer)"))?;
    let input = &nvg_studio::bundled(Path::new("assets/samples/flamingo.png"));
    let out = Path::new("nvg-demo-encode.png");
    super::generate::encode_outputs(&tok, &meta.config, input, Some(out), None, false, &b)?;
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

pub fn info(choice: BackendChoice, only: Option<String>) -> Result<()> {
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
