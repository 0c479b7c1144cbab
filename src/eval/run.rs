//! `nvg-studio eval`: measures a model directory on the emoji set and writes the model card.
//!
//! What is measured (all on the dataset the model's class list must match):
//!
//! * the tokenizer: PSNR of the decoded canvas after every stage and codebook use per stage,
//!   on the images its training run held out (recomputed from its checkpoint's options);
//! * the judge ([`super::judge`]): its accuracy on the held-out split (whole emoji never seen);
//! * generation: `samples_per_class` images of every class with the sampler's default settings
//!   (those of `generate`), seeded `seed + index`; the judge's accuracy on them (does it see the
//!   class asked for?) and the Fréchet distance of their judge features to the held-out real
//!   images, next to three reference rows: tokenizer reconstructions of the held-out images
//!   (the floor a generator on this tokenizer can reach), a class-balanced subset of the real
//!   training images, and a trivial baseline (every class drawn as the mean of its training
//!   images).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use image::RgbImage;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::coherence::stage_coherence;
use super::card::{read_json_object, write_json, write_markdown_section};
use super::frechet::frechet_of_features;
use super::figures::{GridRow, line_plot, sample_grid};
use super::judge::{
    JudgeConfig, JudgeError, JudgeStep, JudgeTrainOptions, LoadedJudge, accuracy, load_judge, predict, prepare,
    save_judge, train_timed,
};
use crate::data::{EmojiSheet, EmojiSource, ImageSource, RgbImageF};
use crate::model::TokenizerConfig;
use crate::model::checkpoint::{CheckpointMeta, META_FILE, read_meta, write_atomic};
use crate::model::generator::GeneratorConfig;
use crate::model::images::{images_to_tensor, tensor_to_images};
use crate::sampler::{Bundle, load_bundle};
use crate::sampler::{ImageJob, SampleError, SamplerSettings};
use crate::sampler::swap::render;
use crate::granularity::viz::stage_strip;

/// Figures go to `<out_dir>/` + this.
pub const FIGURE_DIR: &str = "images/model-card";

/// What every evaluation command needs: the model and its judge, the data, where the card goes,
/// how images are generated, and what to write about the run.
#[derive(Clone, Debug)]
pub struct EvalCommon {
    /// Model directory (tokenizer/ + generator/).
    pub model_dir: PathBuf,
    /// Judge checkpoint directory (default `<model_dir>/judge`).
    pub judge_dir: PathBuf,
    /// Emoji label file (.ron) of the dataset.
    pub labels: PathBuf,
    /// Where model-card.md/json and the figures go.
    pub out_dir: PathBuf,
    /// Judge training options (used when a judge is trained).
    pub judge_train: JudgeTrainOptions,
    /// Base seed of the generated images.
    pub seed: u64,
    /// Images per sampler call.
    pub batch: usize,
    /// Sampler settings.
    pub settings: SamplerSettings,
    /// The command line, for the card.
    pub command: String,
    /// The backend in words, for the card.
    pub backend: String,
}

impl EvalCommon {
    /// Defaults for a model directory: its judge, the bundled emoji set, docs/, the `generate`
    /// sampler settings, seed 0, one image per sampler call.
    pub fn new(model_dir: &Path) -> Self {
        Self {
            model_dir: model_dir.to_path_buf(),
            judge_dir: model_dir.join("judge"),
            labels: crate::bundled(std::path::Path::new(crate::data::BUNDLED_EMOJI_LABELS)),
            out_dir: PathBuf::from("docs"),
            judge_train: JudgeTrainOptions::default(),
            seed: 0,
            batch: 1,
            settings: SamplerSettings::default(),
            command: String::new(),
            backend: String::new(),
        }
    }
}

/// Options of an evaluation run.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Model, judge, data, output and sampling.
    pub common: EvalCommon,
    /// Generated images per class.
    pub samples_per_class: usize,
    /// Train a new judge even if one exists.
    pub retrain_judge: bool,
    /// Held-out images used for the tokenizer's PSNR (0 = all).
    pub psnr_images: usize,
    /// Held-out real images used as the reference set (0 = all).
    pub heldout_images: usize,
    /// Generated samples per class shown in the grid.
    pub grid_per_class: usize,
    /// Stage-by-stage strips written.
    pub strips: usize,
}

impl EvalOptions {
    /// Defaults for a model directory: 50 samples per class, the `generate` sampler settings.
    pub fn new(model_dir: &Path) -> Self {
        Self {
            common: EvalCommon::new(model_dir),
            samples_per_class: 50,
            retrain_judge: false,
            psnr_images: 0,
            heldout_images: 0,
            grid_per_class: 8,
            strips: 4,
        }
    }
}

/// Errors of an evaluation; every message is one line that names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The model directory is missing or damaged.
    #[error("{reason} (restore assets/model/ from git, or pass --model DIR)")]
    Model {
        /// What is wrong.
        reason: String,
    },
    /// The model's classes are not the dataset's.
    #[error("{0}")]
    ClassMismatch(String),
    /// The judge checkpoint is damaged or does not fit.
    #[error("judge {}: {reason} (pass --retrain-judge to train a new one)", .dir.display())]
    Judge {
        /// Judge directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The dataset could not be read.
    #[error("{0}")]
    Data(String),
    /// Sampling failed.
    #[error("generate: {0}")]
    Sample(#[from] SampleError),
    /// A bad option.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be written.
    #[error("{}: cannot write ({reason})", .path.display())]
    Write {
        /// File.
        path: PathBuf,
        /// Reason.
        reason: String,
    },
}

/// What happens during a run, for progress display.
pub enum EvalEvent<'a> {
    /// A new phase starts.
    Phase(&'a str),
    /// One judge training step finished.
    JudgeStep(&'a JudgeStep),
    /// Images generated so far.
    Sampled {
        /// Done.
        done: usize,
        /// Total.
        total: usize,
    },
}

/// The files written and the numbers.
pub struct EvalOutcome {
    /// Everything in model-card.json (the `eval` keys).
    pub json: Value,
    /// model-card.md.
    pub markdown: PathBuf,
    /// model-card.json.
    pub json_path: PathBuf,
    /// The PNG figures.
    pub figures: Vec<PathBuf>,
}

/// One line naming how two class lists differ, or None when they are equal.
pub fn class_list_difference(model: &[String], data: &[String]) -> Option<String> {
    if model == data {
        return None;
    }
    let short = |v: Vec<&String>| {
        let mut s: Vec<String> = v.iter().take(4).map(|x| format!("'{x}'")).collect();
        if v.len() > 4 {
            s.push(format!("… {} more", v.len() - 4));
        }
        s.join(", ")
    };
    let only_model: Vec<&String> = model.iter().filter(|c| !data.contains(c)).collect();
    let only_data: Vec<&String> = data.iter().filter(|c| !model.contains(c)).collect();
    let mut parts = vec![format!("{} classes vs {}", model.len(), data.len())];
    if !only_model.is_empty() {
        parts.push(format!("only in the model: {}", short(only_model)));
    }
    if !only_data.is_empty() {
        parts.push(format!("only in the dataset: {}", short(only_data)));
    }
    if parts.len() == 1 {
        if let Some(i) = model.iter().zip(data).position(|(a, b)| a != b) {
            parts.push(format!("same names in another order (id {i}: '{}' vs '{}')", model[i], data[i]));
        }
    }
    Some(parts.join("; "))
}

fn model_err(e: impl std::fmt::Display) -> EvalError {
    EvalError::Model { reason: e.to_string() }
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Write { path: path.to_path_buf(), reason: e.to_string() }
}

pub(crate) fn save_png(img: &RgbImage, path: &Path) -> Result<(), EvalError> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(|e| write_err(path, e))?;
    write_atomic(path, &bytes).map_err(|e| write_err(path, e))
}

/// First 16 hex digits of the SHA-256 of the tokenizer's and the generator's weights.
fn model_id(dir: &Path) -> Result<String, EvalError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in ["tokenizer", "generator"] {
        let p = dir.join(part).join(crate::model::checkpoint::MODEL_FILE);
        let bytes = std::fs::read(&p).map_err(|e| model_err(format!("{}: cannot read ({e})", p.display())))?;
        h.update(&bytes);
    }
    Ok(h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

fn tokenizer_preset(cfg: &TokenizerConfig) -> Option<&'static str> {
    TokenizerConfig::PRESETS.into_iter().find(|p| TokenizerConfig::preset(p).as_ref() == Some(cfg))
}

fn generator_preset(cfg: &GeneratorConfig) -> Option<&'static str> {
    GeneratorConfig::PRESETS.into_iter().find(|p| {
        GeneratorConfig::preset(p).is_some_and(|s| {
            (s.depth, s.content_width, s.content_heads, s.structure_width, s.structure_heads, s.mlp_ratio)
                == (cfg.depth, cfg.content_width, cfg.content_heads, cfg.structure_width, cfg.structure_heads, cfg.mlp_ratio)
        })
    })
}

/// Images of `indices` at `size`.
pub(crate) fn load_images(source: &EmojiSource, indices: &[usize]) -> Result<Vec<RgbImageF>, EvalError> {
    indices.iter().map(|&i| source.get(i).map(|x| x.0).map_err(|e| EvalError::Data(e.to_string()))).collect()
}

/// An evenly spaced subset of at most `n` items (all when `n` is 0 or larger than the list).
pub(crate) fn spread(items: &[usize], n: usize) -> Vec<usize> {
    if n == 0 || n >= items.len() {
        return items.to_vec();
    }
    (0..n).map(|k| items[k * items.len() / n]).collect()
}

pub(crate) fn hardware() -> Value {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    json!({ "cores": cores, "cpu": cpu })
}

/// Loads the judge at `dir`, or (when missing, or with `retrain`) trains one on the training
/// split and saves it there. Returns the judge and, when trained now, the training seconds.
pub(crate) fn obtain_judge(
    dir: &Path,
    retrain: bool,
    train_opts: &JudgeTrainOptions,
    sheet: &Arc<EmojiSheet>,
    train: &[usize],
    device: &Device,
    on: &mut dyn FnMut(EvalEvent),
) -> Result<(LoadedJudge, Option<f64>), EvalError> {
    let names = sheet.class_names().to_vec();
    let judge_err = |reason: String| EvalError::Judge { dir: dir.to_path_buf(), reason };
    if !retrain && dir.join(META_FILE).exists() {
        on(EvalEvent::Phase("loading the judge"));
        let j = load_judge(dir, device).map_err(|e| judge_err(e.to_string()))?;
        if let Some(diff) = class_list_difference(&j.class_names, &names) {
            return Err(judge_err(format!("trained for other classes ({diff})")));
        }
        return Ok((j, None));
    }
    let cfg = JudgeConfig::new(names.len());
    on(EvalEvent::Phase("training the judge on the training split"));
    let source = EmojiSource::new(sheet.clone(), cfg.image_size as u32).map_err(|e| EvalError::Data(e.to_string()))?;
    let images = load_images(&source, train)?;
    let labels: Vec<usize> = train.iter().map(|&i| sheet.class_of(i).unwrap_or(0)).collect();
    let (model, secs) = train_timed(&cfg, &images, &labels, train_opts, device, &mut |s| on(EvalEvent::JudgeStep(s)))
        .map_err(|e| match e {
            JudgeError::Invalid(m) => EvalError::Invalid(format!("judge training: {m}")),
            other => judge_err(other.to_string()),
        })?;
    let extra = json!({
        "class_names": names,
        "train_options": train_opts,
        "data": sheet.labels_path().display().to_string(),
        "split": "EmojiSheet::default_split (about 10% of each class held out as whole emoji, seed 0); trained on the rest",
        "train_images": images.len(),
        "train_seconds": secs,
        "command": "nvg-studio eval --retrain-judge",
    });
    save_judge(dir, &cfg, &model, train_opts.steps, extra.clone()).map_err(|e| judge_err(e.to_string()))?;
    let j = LoadedJudge { config: cfg, model, class_names: names, steps: train_opts.steps, extra, dir: dir.to_path_buf() };
    Ok((j, Some(secs)))
}

/// Writes the judge's held-out accuracy into its checkpoint metadata (after it was measured).
fn record_judge_accuracy(j: &LoadedJudge, acc: f64) -> Result<(), EvalError> {
    let mut meta: CheckpointMeta<JudgeConfig> =
        read_meta(&j.dir, super::judge::JUDGE_KIND).map_err(|e| EvalError::Judge { dir: j.dir.clone(), reason: e.to_string() })?;
    if meta.extra.get("heldout_accuracy").and_then(Value::as_f64) == Some(acc) {
        return Ok(());
    }
    if let Some(o) = meta.extra.as_object_mut() {
        o.insert("heldout_accuracy".into(), json!(acc));
    }
    crate::model::checkpoint::write_meta(&j.dir, &meta).map_err(|e| EvalError::Judge { dir: j.dir.clone(), reason: e.to_string() })
}

/// Runs the evaluation and writes `model-card.md`, `model-card.json` and the figures.
pub fn run_eval(opts: &EvalOptions, device: &Device, on: &mut dyn FnMut(EvalEvent)) -> Result<EvalOutcome, EvalError> {
    let t0 = Instant::now();
    if opts.samples_per_class < 2 || opts.common.batch == 0 {
        return Err(EvalError::Invalid(format!(
            "--samples-per-class {} must be at least 2 (a covariance needs two images) and the batch at least 1",
            opts.samples_per_class
        )));
    }
    opts.common.settings.validate().map_err(EvalError::Invalid)?;
    let mut timings = serde_json::Map::new();

    // ---- model and data ----
    on(EvalEvent::Phase("loading the model"));
    let bundle = load_bundle(&opts.common.model_dir, device).map_err(model_err)?;
    let tmeta: CheckpointMeta<TokenizerConfig> = read_meta(&opts.common.model_dir.join("tokenizer"), "tokenizer").map_err(model_err)?;
    let gmeta: CheckpointMeta<GeneratorConfig> = read_meta(&opts.common.model_dir.join("generator"), "generator").map_err(model_err)?;
    let id = model_id(&opts.common.model_dir)?;
    let sheet = Arc::new(EmojiSheet::open(&opts.common.labels).map_err(|e| EvalError::Data(e.to_string()))?);
    if let Some(diff) = class_list_difference(&bundle.class_names, sheet.class_names()) {
        return Err(EvalError::ClassMismatch(format!(
            "model {} does not fit dataset {}: {diff}",
            opts.common.model_dir.display(),
            sheet.labels_path().display()
        )));
    }
    let k = bundle.class_names.len();
    let (train, held_all) = sheet.default_split();
    let held = spread(&held_all, opts.heldout_images);
    let held_labels: Vec<usize> = held.iter().map(|&i| sheet.class_of(i).unwrap_or(0)).collect();

    // ---- judge ----
    let t = Instant::now();
    let (judge, trained_secs) =
        obtain_judge(&opts.common.judge_dir, opts.retrain_judge, &opts.common.judge_train, &sheet, &train, device, on)?;
    let jsize = judge.config.image_size as u32;
    let jsource = EmojiSource::new(sheet.clone(), jsize).map_err(|e| EvalError::Data(e.to_string()))?;
    let held_j = load_images(&jsource, &held)?;
    let (held_pred, held_feat) = predict(&judge.model, &held_j, device);
    let judge_acc_real = accuracy(&held_pred, &held_labels);
    if held.len() == held_all.len() {
        record_judge_accuracy(&judge, judge_acc_real)?;
    }
    // A judge trained with one rendition of every training emoji held out (train-judge --split
    // rendition) is also measured on those: known emoji drawn anew, what a generator trained on
    // the same split is asked for.
    let judge_acc_renditions = match (judge.extra["judge_split"].as_str(), judge.extra["train_options"]["seed"].as_u64()) {
        (Some("rendition"), Some(seed)) => {
            let (_, held_r) = super::judge_run::rendition_split(&sheet, &train, seed);
            let labels: Vec<usize> = held_r.iter().map(|&i| sheet.class_of(i).unwrap_or(0)).collect();
            let imgs = load_images(&jsource, &held_r)?;
            let pred = predict(&judge.model, &imgs, device).0;
            Some((accuracy(&pred, &labels), held_r.len(), super::judge::confusion(&pred, &labels, k)))
        }
        _ => None,
    };
    timings.insert("judge_s".into(), json!(t.elapsed().as_secs_f64()));
    let dim = judge.config.feature_dim();

    // ---- tokenizer: PSNR per stage on its own held-out images ----
    on(EvalEvent::Phase("tokenizer: PSNR per stage"));
    let t = Instant::now();
    let tcfg = bundle.tcfg.clone();
    let tsource = EmojiSource::new(sheet.clone(), tcfg.image_size as u32).map_err(|e| EvalError::Data(e.to_string()))?;
    let topts = &tmeta.extra["train_options"];
    let (psnr_indices, psnr_split) = match (topts["holdout_fraction"].as_f64(), topts["seed"].as_u64()) {
        (Some(f), Some(s)) => (
            crate::train::tokenizer::split_indices(sheet.len(), f, s).1,
            format!("the tokenizer run's own held-out images (split_indices(n, {f}, seed {s}))"),
        ),
        _ => (held_all.clone(), "the default held-out split (the tokenizer checkpoint records no split)".to_string()),
    };
    let psnr_indices = spread(&psnr_indices, opts.psnr_images);
    let (psnr, usage) = crate::train::tokenizer::evaluate(&bundle.tokenizer, &tcfg, &tsource, &psnr_indices, device)
        .map_err(|e| EvalError::Data(e.to_string()))?;
    // Reconstructions of the held-out reference images.
    let held_t = load_images(&tsource, &held)?;
    let mut recon: Vec<RgbImage> = Vec::with_capacity(held_t.len());
    let mut real_maps: Vec<Vec<Vec<u32>>> = Vec::with_capacity(held_t.len());
    for chunk in held_t.chunks(32) {
        let enc = bundle.tokenizer.encode(images_to_tensor(chunk, device), tcfg.phi_weight);
        real_maps.extend(enc.hierarchies.iter().map(|h| h.maps().to_vec()));
        let last = enc.quantized.canvases.last().cloned().ok_or_else(|| model_err("tokenizer produced no canvas"))?;
        recon.extend(tensor_to_images(bundle.tokenizer.decode(last)));
    }
    let (recon_pred, recon_feat) = predict(&judge.model, &prepare(&recon, jsize), device);
    timings.insert("tokenizer_s".into(), json!(t.elapsed().as_secs_f64()));

    // ---- generation ----
    on(EvalEvent::Phase("generating"));
    let t = Instant::now();
    let n = opts.samples_per_class;
    let jobs: Vec<ImageJob> =
        (0..k).flat_map(|c| (0..n).map(move |j| (c, j))).map(|(c, j)| ImageJob::new(c, opts.common.seed + (c * n + j) as u64)).collect();
    let gen_labels: Vec<usize> = jobs.iter().map(|j| j.class).collect();
    let mut generated: Vec<RgbImage> = Vec::with_capacity(jobs.len());
    let mut gen_maps: Vec<Vec<Vec<u32>>> = Vec::with_capacity(jobs.len());
    on(EvalEvent::Sampled { done: 0, total: jobs.len() });
    for chunk in jobs.chunks(opts.common.batch) {
        let out = bundle.sample(chunk, &opts.common.settings, &mut |_| true, &|| false)?;
        gen_maps.extend(out.sequences.iter().map(|s| s.stages.iter().map(|st| st.structure.clone()).collect()));
        generated.extend(tensor_to_images(bundle.tokenizer.decode(out.canvas)));
        on(EvalEvent::Sampled { done: generated.len(), total: jobs.len() });
    }
    let sampling_s = t.elapsed().as_secs_f64();
    timings.insert("sampling_s".into(), json!(sampling_s));
    let (gen_pred, gen_feat) = predict(&judge.model, &prepare(&generated, jsize), device);
    // Structure coherence: components per cluster of generated maps next to the tokenizer's
    // maps of the held-out real images.
    let side = bundle.gcfg.grid_side;
    let coherence_gen = stage_coherence(&gen_maps, side).map_err(EvalError::Invalid)?;
    let coherence_real = stage_coherence(&real_maps, side).map_err(EvalError::Invalid)?;
    let coherence: Vec<Value> = coherence_gen
        .iter()
        .zip(&coherence_real)
        .map(|(&(s, g), &(_, r))| json!({"stage": s, "generated": g, "real": r, "ratio": g / r.max(1e-12)}))
        .collect();

    // ---- reference sets: trivial baseline and real training images ----
    on(EvalEvent::Phase("judge features and Fréchet distances"));
    let mut means: Vec<RgbImageF> = Vec::with_capacity(k);
    let mut train_subset: Vec<usize> = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.common.seed ^ 0x7ea1);
    for c in 0..k {
        let mut of_c: Vec<usize> = train.iter().copied().filter(|&i| sheet.class_of(i) == Some(c)).collect();
        let imgs = load_images(&jsource, &of_c)?;
        let mut mean = RgbImageF::filled(jsize, [1.0, 1.0, 1.0]);
        if !imgs.is_empty() {
            for (v, slot) in mean.data.iter_mut().enumerate() {
                *slot = (imgs.iter().map(|im| im.data[v] as f64).sum::<f64>() / imgs.len() as f64) as f32;
            }
        }
        means.push(mean);
        of_c.shuffle(&mut rng);
        train_subset.extend(of_c.into_iter().take(n));
    }
    let (mean_pred, mean_feat) = predict(&judge.model, &means, device);
    let mut trivial_feat: Vec<f32> = Vec::with_capacity(k * n * dim);
    for c in 0..k {
        for _ in 0..n {
            trivial_feat.extend_from_slice(&mean_feat[c * dim..(c + 1) * dim]);
        }
    }
    let trivial_acc = accuracy(&mean_pred, &(0..k).collect::<Vec<_>>());
    let train_labels: Vec<usize> = train_subset.iter().map(|&i| sheet.class_of(i).unwrap_or(0)).collect();
    let (train_pred, train_feat) = predict(&judge.model, &load_images(&jsource, &train_subset)?, device);

    let fd = |a: &[f32]| frechet_of_features(a, &held_feat, dim).map_err(|e| EvalError::Invalid(e.to_string()));
    let fd_generated = fd(&gen_feat)?;
    let fd_recon = fd(&recon_feat)?;
    let fd_trivial = fd(&trivial_feat)?;
    let fd_train = fd(&train_feat)?;
    let pr = |a: &[f32]| {
        super::manifold::precision_recall(a, &held_feat, dim, super::manifold::DEFAULT_K).map_err(EvalError::Invalid)
    };
    let pr_sets = json!({
        "generated": pr(&gen_feat)?,
        "reconstruction": pr(&recon_feat)?,
        "trivial_baseline": pr(&trivial_feat)?,
        "real_train": pr(&train_feat)?,
        "k": super::manifold::DEFAULT_K,
        "reference_set": "held-out real images (judge features)",
    });
    let judge_acc_gen = accuracy(&gen_pred, &gen_labels);
    let judge_acc_recon = accuracy(&recon_pred, &held_labels);
    let judge_acc_train = accuracy(&train_pred, &train_labels);

    // Per class: judge accuracy on held-out real and generated images, most common judge label.
    let mut per_class = Vec::with_capacity(k);
    for c in 0..k {
        let real: Vec<usize> = (0..held.len()).filter(|&i| held_labels[i] == c).collect();
        let real_acc = if real.is_empty() { None } else { Some(real.iter().filter(|&&i| held_pred[i] == c).count() as f64 / real.len() as f64) };
        let gen_idx: Vec<usize> = (c * n..(c + 1) * n).collect();
        let hits = gen_idx.iter().filter(|&&i| gen_pred[i] == c).count();
        let mut counts = vec![0usize; k];
        for &i in &gen_idx {
            if let Some(slot) = counts.get_mut(gen_pred[i]) {
                *slot += 1;
            }
        }
        let top = (0..k).max_by_key(|&j| (counts[j], std::cmp::Reverse(j))).unwrap_or(0);
        per_class.push(json!({
            "class": bundle.class_names[c],
            "heldout_real_images": real.len(),
            "judge_accuracy_real": real_acc,
            "judge_accuracy_generated": hits as f64 / n as f64,
            "most_common_judge_label_generated": bundle.class_names[top],
            "most_common_share": counts[top] as f64 / n as f64,
        }));
    }

    // ---- figures ----
    on(EvalEvent::Phase("figures"));
    let fig_dir = opts.common.out_dir.join(FIGURE_DIR);
    let mut figures = Vec::new();
    let psnr_png = fig_dir.join("psnr-per-stage.png");
    save_png(&line_plot(&psnr, "stage", "psnr db"), &psnr_png)?;
    figures.push(psnr_png);
    let rows: Vec<GridRow> = (0..k)
        .map(|c| {
            let tiles = (c * n..c * n + opts.grid_per_class.min(n))
                .map(|i| (generated[i].clone(), Some(if gen_pred[i] == c { [40, 170, 60] } else { [210, 50, 40] })))
                .collect();
            let refs = held.iter().filter(|&&i| sheet.class_of(i) == Some(c)).take(2).filter_map(|&i| sheet.tile(i).ok()).collect();
            GridRow { label: format!("{c} {}", bundle.class_names[c]), tiles, references: refs }
        })
        .collect();
    let grid_png = fig_dir.join("samples-per-class.png");
    let scale = (64 / tcfg.image_size as u32).max(1);
    save_png(&sample_grid(&rows, scale), &grid_png)?;
    figures.push(grid_png);
    let strip_classes: Vec<usize> = (0..opts.strips.min(k)).map(|i| i * k / opts.strips.min(k).max(1)).collect();
    let mut strips = Vec::new();
    for &c in &strip_classes {
        let job = ImageJob::new(c, opts.common.seed + (c * n) as u64);
        let r = render(&bundle, job, &opts.common.settings).map_err(|e| EvalError::Invalid(format!("strip: {e}")))?;
        let maps: Vec<Vec<u32>> = r.sequence.stages.iter().map(|s| s.structure.clone()).collect();
        let p = fig_dir.join(format!("strip-{}.png", bundle.class_names[c]));
        save_png(&stage_strip(&r.stages, &maps, bundle.gcfg.grid_side), &p)?;
        strips.push((c, p.clone()));
        figures.push(p);
    }

    // ---- JSON and markdown ----
    let wall = t0.elapsed().as_secs_f64();
    timings.insert("total_s".into(), json!(wall));
    let num_gen = generated.len();
    let result = json!({
        "model_id": id,
        "model_dir": opts.common.model_dir.display().to_string(),
        "num_classes": k,
        "class_names": bundle.class_names,
        "tokenizer": {
            "config": tmeta.config,
            "preset": tokenizer_preset(&tmeta.config),
            "step": tmeta.step,
            "train_options": tmeta.extra.get("train_options"),
            "parameters": bundle.tokenizer.num_params(),
        },
        "generator": {
            "config": gmeta.config,
            "preset": generator_preset(&gmeta.config),
            "step": gmeta.step,
            "train_options": gmeta.extra.get("train_options"),
            "parameters": bundle.generator.num_params(),
        },
        "dataset": {
            "labels": sheet.labels_path().display().to_string(),
            "images": sheet.len(),
            "train_images": train.len(),
            "heldout_images": held_all.len(),
            "heldout_images_used": held.len(),
            "split": "EmojiSheet::default_split: about 10% of each class held out as whole emoji (seed 0)",
        },
        "tokenizer_psnr_per_stage": psnr,
        "codebook_usage_per_stage": usage,
        "tokenizer_eval_images": psnr_indices.len(),
        "tokenizer_eval_split": psnr_split,
        "judge": {
            "dir": judge.dir.display().to_string(),
            "config": judge.config,
            "parameters": judge.model.num_params(),
            "feature_dim": dim,
            "steps": judge.steps,
            "train_options": judge.extra.get("train_options"),
            "trained_in_this_run": trained_secs.is_some(),
            "train_seconds": trained_secs.or_else(|| judge.extra.get("train_seconds").and_then(Value::as_f64)),
        },
        "judge_accuracy_real": judge_acc_real,
        "judge_accuracy_real_renditions": judge_acc_renditions.as_ref().map(|(a, _, _)| *a),
        "judge_renditions_images": judge_acc_renditions.as_ref().map(|(_, n, _)| *n),
        // confusion[true][predicted] of the judge on the held-out real images (and renditions).
        "judge_confusion_heldout": super::judge::confusion(&held_pred, &held_labels, k),
        "judge_confusion_renditions": judge_acc_renditions.as_ref().map(|(_, _, c)| c),
        "judge_split": judge.extra.get("judge_split"),
        "judge_accuracy_real_train_subset": judge_acc_train,
        "judge_accuracy_reconstructed": judge_acc_recon,
        "judge_accuracy_generated": judge_acc_gen,
        "judge_accuracy_trivial_baseline": trivial_acc,
        "chance_accuracy": 1.0 / k as f64,
        "fd_generated": fd_generated,
        "structure_coherence": coherence,
        "fd_reconstruction_floor": fd_recon,
        "fd_trivial_baseline": fd_trivial,
        "fd_trivial_baseline_kind": "per-class mean images: every class drawn as the pixel mean of its training images, repeated samples_per_class times",
        "fd_real_train_vs_heldout": fd_train,
        "fd_reference_set": "held-out real images (judge features)",
        "precision_recall": pr_sets,
        "fd_set_sizes": {
            "reference": held.len(), "generated": num_gen, "reconstruction": recon.len(),
            "trivial": k * n, "real_train": train_subset.len(),
        },
        "per_class": per_class,
        "samples_per_class": n,
        "generated_images": num_gen,
        "seed": opts.common.seed,
        "sampler_settings": opts.common.settings,
        "batch": opts.common.batch,
        "hardware": hardware(),
        "backend": opts.common.backend,
        "timings": timings,
        "eval_wall_seconds": wall,
        "sampling_images_per_second": num_gen as f64 / sampling_s.max(1e-9),
        "command": opts.common.command,
    });
    std::fs::create_dir_all(&opts.common.out_dir).map_err(|e| write_err(&opts.common.out_dir, e))?;
    let json_path = opts.common.out_dir.join("model-card.json");
    let mut obj = read_json_object(&json_path);
    let swap = obj.remove("swap");
    let mut fresh = result.as_object().cloned().unwrap_or_default();
    if let Some(s) = swap {
        fresh.insert("swap".into(), s);
    }
    obj = fresh;
    write_json(&json_path, &obj).map_err(|e| write_err(&json_path, e))?;
    let md_path = opts.common.out_dir.join("model-card.md");
    let md = super::markdown::eval_section(&result, &strips.iter().map(|(c, p)| (bundle.class_names[*c].clone(), rel(&opts.common.out_dir, p))).collect::<Vec<_>>());
    write_markdown_section(&md_path, "eval", &md).map_err(|e| write_err(&md_path, e))?;
    Ok(EvalOutcome { json: result, markdown: md_path, json_path, figures })
}

/// `path` relative to `base` when it lies under it (for links in the markdown).
pub fn rel(base: &Path, path: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

/// Reads a bundle for `eval-swap` with the same checks as `eval` (model present, classes match).
pub fn open_model_and_data(model_dir: &Path, labels: &Path, device: &Device) -> Result<(Bundle, Arc<EmojiSheet>), EvalError> {
    let bundle = load_bundle(model_dir, device).map_err(model_err)?;
    let sheet = Arc::new(EmojiSheet::open(labels).map_err(|e| EvalError::Data(e.to_string()))?);
    if let Some(diff) = class_list_difference(&bundle.class_names, sheet.class_names()) {
        return Err(EvalError::ClassMismatch(format!(
            "model {} does not fit dataset {}: {diff}",
            model_dir.display(),
            sheet.labels_path().display()
        )));
    }
    Ok((bundle, sheet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_differences_are_one_line() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(class_list_difference(&s(&["a", "b"]), &s(&["a", "b"])), None);
        let d = class_list_difference(&s(&["disc", "ring"]), &s(&["accessory", "bird", "ring"])).unwrap();
        assert_eq!(d, "2 classes vs 3; only in the model: 'disc'; only in the dataset: 'accessory', 'bird'");
        let d = class_list_difference(&s(&["a", "b"]), &s(&["b", "a"])).unwrap();
        assert!(d.contains("another order") && d.contains("id 0"), "{d}");
        let many: Vec<String> = (0..9).map(|i| format!("c{i}")).collect();
        let d = class_list_difference(&many, &s(&["x"])).unwrap();
        assert!(d.contains("… 5 more") && !d.contains('\n'), "{d}");
        assert_eq!(spread(&[1, 2, 3, 4], 2), vec![1, 3]);
        assert_eq!(spread(&[1, 2], 0), vec![1, 2]);
    }
}
