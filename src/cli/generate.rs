//! The image commands: `encode`, `generate` and `swap`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use indicatif::ProgressBar;

use nvg_studio::model::backend::{Backend, BackendChoice};
use nvg_studio::data;
use nvg_studio::model::tokenizer_io::{import_reference_pytorch, import_reference_safetensors, load_tokenizer};
use nvg_studio::model::{Tokenizer, TokenizerConfig};
use nvg_studio::granularity::GranularitySequence;
use nvg_studio::model::images::{encode_images, tensor_to_images};
use nvg_studio::sampler::{load_bundle, resolve_class};
use nvg_studio::sampler::ImageJob;
use nvg_studio::granularity::viz::{stage_strip, structure_map_image};
use super::sampler::SamplerArgs;
use super::{BACKGROUND, DEFAULT_MODEL, DEFAULT_TOKENIZER, pick_backend, preset, save_png};


/// Arguments of `encode`.
#[derive(clap::Args)]
pub struct EncodeArgs {
    /// Image to encode (PNG, JPEG, …; resized: shorter side to the model size, centre crop).
    pub image: PathBuf,
    /// Tokenizer checkpoint directory.
    #[arg(long, default_value = DEFAULT_TOKENIZER)]
    pub model: PathBuf,
    /// Load reference weights in the official key layout instead of --model: a .safetensors
    /// file, or the official PyTorch checkpoint (.ckpt/.pt/.pth, `first_stage_model.*` keys).
    #[arg(long)]
    pub reference_weights: Option<PathBuf>,
    /// Configuration preset for --reference-weights (small, test-tiny, reference-tiny, paper).
    #[arg(long, default_value = "reference-tiny")]
    pub preset: String,
    /// Where to write the stage strip PNG (decoded canvas above structure map, per stage).
    #[arg(long)]
    pub strip: Option<PathBuf>,
    /// Where to write the sequence (.ron, or .json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the sequence as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Class name (case-insensitive) or id.
    #[arg(long)]
    pub class: String,
    #[command(flatten)]
    pub model: super::ModelArgs,
    /// Where to write the image (PNG).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write a stage strip: each stage's decoded canvas above its structure map.
    #[arg(long)]
    pub stages_out: Option<PathBuf>,
    /// Print the generated sequence as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// A sequence file (.ron/.json, e.g. from `encode`) to take structure maps or codes from.
    #[arg(long)]
    pub structure_from: Option<PathBuf>,
    /// Stages whose structure maps are taken from --structure-from: M (= 1..M) or A..B.
    #[arg(long, requires = "structure_from")]
    pub keep_structure: Option<String>,
    /// Stages whose codes are taken from --structure-from: K (= 0..K) or A..B.
    #[arg(long, requires = "structure_from")]
    pub keep_content: Option<String>,
    #[command(flatten)]
    pub sampler: SamplerArgs,
    /// A binary layout (black/white PNG, grid- or image-sized) used as the stage-1 structure map;
    /// it may be unbalanced.
    #[arg(long, conflicts_with = "structure_from")]
    pub layout: Option<PathBuf>,
    /// A contact sheet instead of one image: N seeds (--seed, --seed + 1, …) of every class in
    /// --class (a comma-separated list, or `all`), one row per class, written to --out.
    #[arg(long, value_name = "N", conflicts_with_all = ["structure_from", "layout", "stages_out"])]
    pub grid: Option<usize>,
}

/// Arguments of `swap`.
#[derive(clap::Args)]
pub struct SwapArgs {
    /// Reference image (any size: shorter side resized, centre crop; transparency on white).
    #[arg(long, conflicts_with = "sequence", required_unless_present = "sequence")]
    pub image: Option<PathBuf>,
    /// Reference sequence file (.ron/.json) instead of an image.
    #[arg(long)]
    pub sequence: Option<PathBuf>,
    /// Target class name or id.
    #[arg(long)]
    pub to_class: String,
    /// Keep the structure maps of stages 1..M (M, or 1..M).
    #[arg(long, default_value = "3")]
    pub keep_structure: String,
    /// Also keep the codes of stages 0..K (K, or 0..K).
    #[arg(long)]
    pub keep_content: Option<String>,
    #[command(flatten)]
    pub model: super::ModelArgs,
    /// Where to write the result (PNG).
    #[arg(long)]
    pub out: PathBuf,
    /// Figure: reference and result stage by stage (canvases and structure maps).
    #[arg(long)]
    pub strip: Option<PathBuf>,
    /// Figure with one row per M = 0..S−1 (structure kept up to stage M), reference on top.
    #[arg(long)]
    pub sweep: Option<PathBuf>,
    #[command(flatten)]
    pub sampler: SamplerArgs,
}

/// `encode`: an image to its granularity sequence.
pub fn encode(args: EncodeArgs, choice: BackendChoice) -> Result<()> {
    let EncodeArgs { image, model, reference_weights, preset: p, strip, out, json } = args;
    // A sequence file name we cannot write is refused before anything is computed or written.
    if let Some(o) = &out {
        let ok = o.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("ron") || e.eq_ignore_ascii_case("json"));
        if !ok {
            bail!("--out {}: unknown extension; granularity sequences are .ron or .json files", o.display());
        }
    }
    let model = nvg_studio::bundled(&model);
    let b = pick_backend(choice)?;
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
    encode_outputs(&tok, &cfg, &image, strip.as_deref(), out.as_deref(), json, &b)
}

/// `generate`: one image of a class, optionally steered by a sequence or a layout.
pub fn generate(args: GenerateArgs, choice: BackendChoice) -> Result<()> {
    let GenerateArgs { class, model: super::ModelArgs { model, seed }, out, stages_out, json, structure_from, keep_structure, keep_content, sampler, layout, grid } = args;
    if let Some(n) = grid {
        if n == 0 || n > nvg_studio::data::contact::MAX_PER_CLASS {
            bail!("--grid {n}: expected 1 to {} seeds per class", nvg_studio::data::contact::MAX_PER_CLASS);
        }
    }
    let b = pick_backend(choice)?;
    let settings = sampler.settings()?;
    let bundle = load_bundle(&nvg_studio::bundled(&model), &b.device)
        .map_err(|e| anyhow!("{e} (restore {DEFAULT_MODEL} or pass --model DIR)"))?;
    if let Some(n) = grid {
        return generate_grid(&bundle, &class, seed, n, &settings, &out, json);
    }
    let class_id = resolve_class(&bundle.class_names, &class).map_err(|e| anyhow!("--class: {e}"))?;
    let mut job = ImageJob::new(class_id, seed);
    if let Some(mask) = &layout {
        let map = nvg_studio::sampler::swap::layout_from_mask(mask, bundle.gcfg.grid_side, bundle.tcfg.image_size)?;
        job.forced_structure.insert(1, map);
    }
    if let Some(path) = &structure_from {
        let seq = GranularitySequence::load(path)?;
        seq.validate().with_context(|| format!("sequence {}", path.display()))?;
        seq.check_codes(bundle.gcfg.vocab_size).with_context(|| format!("sequence {}", path.display()))?;
        let s_count = bundle.gcfg.num_stages();
        if seq.grid_size != bundle.gcfg.grid_side || seq.stages.len() != s_count {
            bail!(
                "sequence {}: made for a {}×{} grid with {} stages; this model has {}×{} and {}",
                path.display(), seq.grid_size, seq.grid_size, seq.stages.len(),
                bundle.gcfg.grid_side, bundle.gcfg.grid_side, s_count
            );
        }
        let mut structure_upto = 0;
        if let Some(r) = &keep_structure {
            let r = parse_stage_range(r, 1).map_err(|e| anyhow!("--keep-structure: {e}"))?;
            if *r.start() != 1 {
                bail!("--keep-structure {}..{}: structure is kept from stage 1 up to M (a later map needs its parents)", r.start(), r.end());
            }
            if *r.end() >= s_count {
                bail!("--keep-structure {}..{}: structure maps of stages 1..{} can be kept", r.start(), r.end(), s_count - 1);
            }
            structure_upto = *r.end();
        }
        let mut content = None;
        if let Some(r) = &keep_content {
            let r = parse_stage_range(r, 0).map_err(|e| anyhow!("--keep-content: {e}"))?;
            if *r.end() >= s_count {
                bail!("--keep-content ..{}: the model has stages 0..{}", r.end(), s_count - 1);
            }
            content = Some(r);
        }
        // Codes belong to clusters, so the maps of every stage up to the last kept code come too.
        job.keep_from(&seq, structure_upto, content, 0);
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

/// `generate --grid N`: N seeds of each class, one row per class, as a contact sheet; `json`
/// prints every sequence (one JSON document per line, in row order).
fn generate_grid(
    bundle: &nvg_studio::sampler::Bundle,
    classes: &str,
    seed: u64,
    n: usize,
    settings: &nvg_studio::sampler::SamplerSettings,
    out: &std::path::Path,
    json: bool,
) -> Result<()> {
    let ids: Vec<usize> = if classes.trim() == "all" {
        (0..bundle.class_names.len()).collect()
    } else {
        classes.split(',').map(|c| resolve_class(&bundle.class_names, c.trim()).map_err(|e| anyhow!("--class: {e}"))).collect::<Result<_>>()?
    };
    let pb = ProgressBar::new((ids.len() * bundle.gcfg.num_stages()) as u64);
    let mut items = Vec::with_capacity(ids.len() * n);
    for &c in &ids {
        let jobs: Vec<ImageJob> = (0..n as u64).map(|k| ImageJob::new(c, seed.wrapping_add(k))).collect();
        let result = bundle.sample(&jobs, settings, &mut |_| { pb.inc(1); true }, &|| false).map_err(|e| anyhow!("generate: {e}"))?;
        for img in tensor_to_images(bundle.tokenizer.decode(result.canvas)) {
            let img = nvg_studio::data::RgbImageF::from_rgb8(&img).ok_or_else(|| anyhow!("generate: a decoded image is not square"))?;
            items.push((img, c));
        }
        if json {
            for s in &result.sequences {
                println!("{}", serde_json::to_string(s)?);
            }
        }
    }
    pb.finish_and_clear();
    let rows: Vec<Vec<usize>> = (0..ids.len()).map(|r| (r * n..(r + 1) * n).collect()).collect();
    let names: Vec<String> = ids.iter().map(|&c| bundle.class_names[c].clone()).collect();
    let source = nvg_studio::data::MemorySource::new(names, items.into_iter().map(|(img, c)| (img, ids.iter().position(|&i| i == c).unwrap_or(0))).collect());
    let sheet = nvg_studio::data::contact_sheet(&source, &rows, n)?;
    save_png(&sheet, out)?;
    eprintln!("grid: {} ({} classes × {n} seeds from {seed})", out.display(), ids.len());
    Ok(())
}

/// `swap`: keep a reference's structure, repaint it as another class.
pub fn swap(args: SwapArgs, choice: BackendChoice) -> Result<()> {
    let SwapArgs { image, sequence, to_class, keep_structure, keep_content, model: super::ModelArgs { model, seed }, out, strip, sweep, sampler } = args;
    use nvg_studio::granularity::viz::grid_figure;
    use nvg_studio::sampler::swap::{Keep, render, swap_job};
    let model = nvg_studio::bundled(&model);
    let b = pick_backend(choice)?;
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
            seq.check_codes(bundle.gcfg.vocab_size).with_context(|| format!("sequence {}", p.display()))?;
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

/// Encodes one image and writes what was asked for (strip, sequence file, JSON).
pub fn encode_outputs(
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

/// Parses a stage range: `3` (= 1..3 for structure, 0..3 for content, via `first`), `a..b`
/// (inclusive) or `a..=b`.
pub fn parse_stage_range(s: &str, first: usize) -> Result<std::ops::RangeInclusive<usize>, String> {
    let bad = || format!("stage range '{s}': expected N, A..B or A..=B");
    if let Some((a, b)) = s.split_once("..") {
        let b = b.trim_start_matches('=');
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        if a > b {
            return Err(format!("stage range '{s}' is empty"));
        }
        Ok(a..=b)
    } else {
        let m: usize = s.trim().parse().map_err(|_| bad())?;
        Ok(first..=m)
    }
}
