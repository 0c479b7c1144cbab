//! `nvg-studio eval-swap`: how well the pose-preserving class swap (method §5.4,
//! [`crate::sampler::swap`]) does what it promises, measured over held-out references of several source
//! classes and every target class.
//!
//! * **Class**: how often the judge assigns the target class to the swapped image, against
//!   unconditioned generations of the target class (the same sampler, nothing kept).
//! * **Structure**: the swapped image is encoded again with the tokenizer and its structure maps
//!   of stages 1..3 are compared with the reference's by the adjusted Rand index (ARI: 1 = the
//!   same partition of the grid, 0 = chance). Baseline: the same comparison for unconditioned
//!   generations of the target class against every reference. Ceiling: the reference's own
//!   reconstruction encoded again (what re-encoding loses even with nothing changed).

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use serde_json::{Value, json};

use super::ari::adjusted_rand_index;
use super::card::{read_json_object, write_json, write_markdown_section};
use super::figures::{GridRow, sample_grid};
use super::judge::{accuracy, predict, prepare};
use super::markdown::{num, pct};
use super::run::{EvalCommon, EvalError, EvalEvent, FIGURE_DIR, hardware, load_images, obtain_judge, open_model_and_data, rel, save_png, spread};
use crate::data::EmojiSource;
use crate::granularity::GranularitySequence;
use crate::model::images::{encode_images, images_to_tensor, tensor_to_images};
use crate::sampler::{Bundle, resolve_class};
use crate::sampler::ImageJob;
use crate::sampler::swap::{Keep, swap_job};
use crate::granularity::viz::{structure_map_image, upscale};

/// Options of a swap evaluation.
#[derive(Clone, Debug)]
pub struct SwapEvalOptions {
    /// Model, judge, data, output and sampling.
    pub common: EvalCommon,
    /// Held-out references per source class.
    pub references_per_class: usize,
    /// Source classes (names or ids); empty = 6 spread over the class list.
    pub classes: Vec<String>,
    /// Structure maps of stages 1..=M are kept.
    pub keep_structure: usize,
    /// Best and worst swaps shown in the gallery (each).
    pub gallery: usize,
}

impl SwapEvalOptions {
    /// Defaults: 3 references of 6 classes, structure 1..3 kept, `generate`'s sampler settings.
    pub fn new(model_dir: &Path) -> Self {
        Self {
            common: EvalCommon::new(model_dir),
            references_per_class: 3,
            classes: Vec::new(),
            keep_structure: 3,
            gallery: 6,
        }
    }
}

/// The files written and the numbers.
pub struct SwapEvalOutcome {
    /// The `"swap"` object of model-card.json.
    pub json: Value,
    /// model-card.md.
    pub markdown: PathBuf,
    /// model-card.json.
    pub json_path: PathBuf,
    /// The gallery PNG.
    pub gallery: PathBuf,
}

/// Generates `jobs` in batches and decodes the final canvases.
fn generate(bundle: &Bundle, jobs: &[ImageJob], opts: &SwapEvalOptions, done: &mut usize, total: usize, on: &mut dyn FnMut(EvalEvent)) -> Result<Vec<RgbImage>, EvalError> {
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(opts.common.batch.max(1)) {
        let r = bundle.sample(chunk, &opts.common.settings, &mut |_| true, &|| false)?;
        out.extend(tensor_to_images(bundle.tokenizer.decode(r.canvas)));
        *done += chunk.len();
        on(EvalEvent::Sampled { done: *done, total });
    }
    Ok(out)
}

/// Structure maps of stages `1..=last` of `images` (at the tokenizer's size), encoded again.
fn reencode_maps(bundle: &Bundle, images: &[RgbImage], last: usize, device: &burn::tensor::Device) -> Vec<Vec<Vec<u32>>> {
    let size = bundle.tcfg.image_size as u32;
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(32) {
        let imgs = prepare(chunk, size);
        let enc = bundle.tokenizer.encode(images_to_tensor(&imgs, device), bundle.tcfg.phi_weight);
        for h in &enc.hierarchies {
            out.push((1..=last).map(|s| h.map(s).to_vec()).collect());
        }
    }
    out
}

/// ARI of `maps` (stages 1..=last) against the reference's.
fn ari_per_stage(maps: &[Vec<u32>], reference: &GranularitySequence) -> Vec<f64> {
    maps.iter()
        .enumerate()
        .map(|(i, m)| reference.stages.get(i + 1).and_then(|st| adjusted_rand_index(m, &st.structure).ok()).unwrap_or(f64::NAN))
        .collect()
}

fn mean_per_stage(rows: &[Vec<f64>], stages: usize) -> Vec<f64> {
    (0..stages)
        .map(|s| {
            let v: Vec<f64> = rows.iter().filter_map(|r| r.get(s).copied()).filter(|x| x.is_finite()).collect();
            if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
        })
        .collect()
}

/// Runs the swap evaluation and updates the swap section of the model card.
pub fn run_swap_eval(opts: &SwapEvalOptions, device: &burn::tensor::Device, on: &mut dyn FnMut(EvalEvent)) -> Result<SwapEvalOutcome, EvalError> {
    let t0 = Instant::now();
    on(EvalEvent::Phase("loading the model"));
    let (bundle, sheet) = open_model_and_data(&opts.common.model_dir, &opts.common.labels, device)?;
    let k = bundle.class_names.len();
    let s_count = bundle.gcfg.num_stages();
    if opts.keep_structure >= s_count || opts.references_per_class == 0 {
        return Err(EvalError::Invalid(format!(
            "--keep-structure {} must be below the model's {s_count} stages and --references-per-class at least 1",
            opts.keep_structure
        )));
    }
    let last = 3.min(s_count - 1);
    let sources: Vec<usize> = if opts.classes.is_empty() {
        let n = 6.min(k);
        (0..n).map(|i| i * k / n).collect()
    } else {
        opts.classes.iter().map(|c| resolve_class(&bundle.class_names, c.trim())).collect::<Result<_, _>>().map_err(|e| EvalError::Invalid(format!("--classes: {e}")))?
    };
    let (train, held) = sheet.default_split();
    let (judge, _) = obtain_judge(&opts.common.judge_dir, false, &opts.common.judge_train, &sheet, &train, device, on)?;
    let jsize = judge.config.image_size as u32;

    // ---- references: held-out images of each source class, encoded ----
    on(EvalEvent::Phase("encoding the references"));
    let tsource = EmojiSource::new(sheet.clone(), bundle.tcfg.image_size as u32).map_err(|e| EvalError::Data(e.to_string()))?;
    let mut refs: Vec<(usize, usize)> = Vec::new(); // (tile index, source class)
    for &c in &sources {
        let of_c: Vec<usize> = held.iter().copied().filter(|&i| sheet.class_of(i) == Some(c)).collect();
        if of_c.is_empty() {
            return Err(EvalError::Invalid(format!("class '{}' has no held-out images to use as references", bundle.class_names[c])));
        }
        refs.extend(spread(&of_c, opts.references_per_class).into_iter().map(|i| (i, c)));
    }
    let ref_imgs = load_images(&tsource, &refs.iter().map(|r| r.0).collect::<Vec<_>>())?;
    let encoded = encode_images(&bundle.tokenizer, &bundle.tcfg, &ref_imgs, device);

    // ---- swaps and baseline ----
    on(EvalEvent::Phase("generating swaps and unconditioned baselines"));
    let keep = Keep { structure_upto: opts.keep_structure, content_upto: None };
    let mut jobs = Vec::with_capacity(refs.len() * k);
    let mut pairs = Vec::with_capacity(refs.len() * k); // (reference index, target)
    for (ri, e) in encoded.iter().enumerate() {
        for t in 0..k {
            let seed = opts.common.seed + (ri * k + t) as u64;
            jobs.push(swap_job(&e.sequence, &keep, t, seed).map_err(|e| EvalError::Invalid(e.to_string()))?);
            pairs.push((ri, t));
        }
    }
    let per_target = opts.references_per_class;
    let base_jobs: Vec<ImageJob> = (0..k)
        .flat_map(|t| (0..per_target).map(move |j| (t, j)))
        .map(|(t, j)| ImageJob::new(t, opts.common.seed + 1_000_000 + (t * per_target + j) as u64))
        .collect();
    let total = jobs.len() + base_jobs.len();
    let mut done = 0;
    let t_gen = Instant::now();
    let swapped = generate(&bundle, &jobs, opts, &mut done, total, on)?;
    let baseline = generate(&bundle, &base_jobs, opts, &mut done, total, on)?;
    let sampling_s = t_gen.elapsed().as_secs_f64();

    // ---- structure ----
    on(EvalEvent::Phase("re-encoding and comparing structure maps"));
    let swap_maps = reencode_maps(&bundle, &swapped, last, device);
    let base_maps = reencode_maps(&bundle, &baseline, last, device);
    let recon: Vec<RgbImage> = encoded.iter().filter_map(|e| e.stage_images.last().cloned()).collect();
    let ceil_maps = reencode_maps(&bundle, &recon, last, device);
    let swap_ari: Vec<Vec<f64>> = pairs.iter().zip(&swap_maps).map(|(&(ri, _), m)| ari_per_stage(m, &encoded[ri].sequence)).collect();
    let mut base_ari = Vec::new();
    for m in &base_maps {
        for e in &encoded {
            base_ari.push(ari_per_stage(m, &e.sequence));
        }
    }
    let ceil_ari: Vec<Vec<f64>> = ceil_maps.iter().zip(&encoded).map(|(m, e)| ari_per_stage(m, &e.sequence)).collect();

    // ---- class ----
    let (swap_pred, _) = predict(&judge.model, &prepare(&swapped, jsize), device);
    let (base_pred, _) = predict(&judge.model, &prepare(&baseline, jsize), device);
    let cross: Vec<usize> = (0..pairs.len()).filter(|&i| pairs[i].1 != refs[pairs[i].0].1).collect();
    let hit = |i: usize| swap_pred[i] == pairs[i].1;
    let target_acc = cross.iter().filter(|&&i| hit(i)).count() as f64 / cross.len().max(1) as f64;
    let source_kept = cross.iter().filter(|&&i| swap_pred[i] == refs[pairs[i].0].1).count() as f64 / cross.len().max(1) as f64;
    let base_labels: Vec<usize> = base_jobs.iter().map(|j| j.class).collect();
    let base_acc = accuracy(&base_pred, &base_labels);
    let cross_ari: Vec<Vec<f64>> = cross.iter().map(|&i| swap_ari[i].clone()).collect();

    let per_source: Vec<Value> = sources
        .iter()
        .map(|&c| {
            let idx: Vec<usize> = cross.iter().copied().filter(|&i| refs[pairs[i].0].1 == c).collect();
            let rows: Vec<Vec<f64>> = idx.iter().map(|&i| swap_ari[i].clone()).collect();
            json!({
                "class": bundle.class_names[c],
                "references": refs.iter().filter(|r| r.1 == c).count(),
                "judge_target_accuracy": idx.iter().filter(|&&i| hit(i)).count() as f64 / idx.len().max(1) as f64,
                "judge_kept_source_class": idx.iter().filter(|&&i| swap_pred[i] == c).count() as f64 / idx.len().max(1) as f64,
                "ari_per_stage": mean_per_stage(&rows, last),
            })
        })
        .collect();

    // ---- gallery: best and worst swaps (score = judge hit + mean ARI) ----
    let score = |i: usize| {
        let a: Vec<f64> = swap_ari[i].iter().copied().filter(|x| x.is_finite()).collect();
        f64::from(u8::from(hit(i))) + a.iter().sum::<f64>() / a.len().max(1) as f64
    };
    let mut order = cross.clone();
    order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
    let g = opts.gallery.min(order.len() / 2).max(1).min(order.len());
    let tile = 64u32;
    let side = bundle.gcfg.grid_side;
    let cell = (tile / side as u32).max(1);
    let stage_shown = opts.keep_structure.clamp(1, last.max(1));
    let up = |img: &RgbImage| upscale(img, (tile / img.width().max(1)).max(1));
    let row = |label: &str, i: usize| {
        let (ri, t) = pairs[i];
        let rmap = &encoded[ri].sequence.stages[stage_shown].structure;
        let tiles = vec![
            (up(&recon[ri]), None),
            (structure_map_image(rmap, side, stage_shown, cell), None),
            (up(&swapped[i]), Some(if hit(i) { [40, 170, 60] } else { [210, 50, 40] })),
            (structure_map_image(&swap_maps[i][stage_shown - 1], side, stage_shown, cell), None),
        ];
        GridRow { label: format!("{label} {} to {}", bundle.class_names[refs[ri].1], bundle.class_names[t]), tiles, references: vec![] }
    };
    let mut rows: Vec<GridRow> = order.iter().take(g).map(|&i| row("best", i)).collect();
    rows.extend(order.iter().rev().take(g).map(|&i| row("worst", i)));
    let fig_dir = opts.common.out_dir.join(FIGURE_DIR);
    let gallery = fig_dir.join("swap-gallery.png");
    save_png(&sample_grid(&rows, 1), &gallery)?;

    // ---- outputs ----
    let wall = t0.elapsed().as_secs_f64();
    let result = json!({
        "keep_structure": format!("1..{}", opts.keep_structure),
        "source_classes": sources.iter().map(|&c| bundle.class_names[c].clone()).collect::<Vec<_>>(),
        "references_per_class": opts.references_per_class,
        "references": refs.len(),
        "target_classes": k,
        "swaps": jobs.len(),
        "swaps_to_another_class": cross.len(),
        "baseline_images": baseline.len(),
        "judge_target_accuracy_swap": target_acc,
        "judge_target_accuracy_baseline": base_acc,
        "judge_kept_source_class_swap": source_kept,
        "ari_stages": (1..=last).collect::<Vec<_>>(),
        "ari_per_stage_swap": mean_per_stage(&cross_ari, last),
        "ari_per_stage_baseline": mean_per_stage(&base_ari, last),
        "ari_per_stage_reencode_ceiling": mean_per_stage(&ceil_ari, last),
        "per_source_class": per_source,
        "seed": opts.common.seed,
        "sampler_settings": opts.common.settings,
        "judge_dir": judge.dir.display().to_string(),
        "hardware": hardware(),
        "backend": opts.common.backend,
        "sampling_seconds": sampling_s,
        "wall_seconds": wall,
        "command": opts.common.command,
    });
    std::fs::create_dir_all(&opts.common.out_dir).map_err(|e| EvalError::Write { path: opts.common.out_dir.clone(), reason: e.to_string() })?;
    let json_path = opts.common.out_dir.join("model-card.json");
    let mut obj = read_json_object(&json_path);
    obj.insert("swap".into(), result.clone());
    write_json(&json_path, &obj).map_err(|e| EvalError::Write { path: json_path.clone(), reason: e.to_string() })?;
    let md_path = opts.common.out_dir.join("model-card.md");
    let md = markdown(&result, &rel(&opts.common.out_dir, &gallery), stage_shown);
    write_markdown_section(&md_path, "eval-swap", &md).map_err(|e| EvalError::Write { path: md_path.clone(), reason: e.to_string() })?;
    Ok(SwapEvalOutcome { json: result, markdown: md_path, json_path, gallery })
}

fn markdown(r: &Value, gallery: &str, stage_shown: usize) -> String {
    let arr = |k: &str| r[k].as_array().cloned().unwrap_or_default();
    let stages = arr("ari_stages");
    let mut m = String::new();
    m += "## Class swap (`eval-swap`)\n\n";
    m += &format!(
        "*Written by `{}`; regenerated between the `eval-swap` markers.*\n\n",
        r["command"].as_str().unwrap_or("nvg-studio eval-swap")
    );
    m += &format!(
        "{} held-out references ({} per class of {}) were each swapped to all {} classes, keeping the structure maps of stages {} \
(`swap --keep-structure`), {} swaps in all, {} of them to another class. Baseline: {} unconditioned generations of the target classes.\n\n",
        r["references"],
        r["references_per_class"],
        r["source_classes"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
        r["target_classes"],
        r["keep_structure"].as_str().unwrap_or("?"),
        r["swaps"],
        r["swaps_to_another_class"],
        r["baseline_images"]
    );
    m += "| | swaps | unconditioned generation of the target class |\n|---|---|---|\n";
    m += &format!(
        "| judge assigns the target class | {} | {} |\n| judge still assigns the source class | {} | – |\n",
        pct(&r["judge_target_accuracy_swap"]),
        pct(&r["judge_target_accuracy_baseline"]),
        pct(&r["judge_kept_source_class_swap"])
    );
    let (sw, base, ceil) = (arr("ari_per_stage_swap"), arr("ari_per_stage_baseline"), arr("ari_per_stage_reencode_ceiling"));
    for (i, s) in stages.iter().enumerate() {
        m += &format!(
            "| structure kept: ARI of stage {s} maps with the reference's | {} | {} |\n",
            sw.get(i).map(|v| num(v, 3)).unwrap_or_default(),
            base.get(i).map(|v| num(v, 3)).unwrap_or_default()
        );
    }
    m += &format!(
        "\nARI ceiling (the reference's own reconstruction encoded again), stages {}: {}.\n\n",
        stages.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "),
        ceil.iter().map(|v| num(v, 3)).collect::<Vec<_>>().join(", ")
    );
    m += "| source class | references | judge: target class | judge: source class | ARI per stage |\n|---|---|---|---|---|\n";
    for c in arr("per_source_class") {
        m += &format!(
            "| {} | {} | {} | {} | {} |\n",
            c["class"].as_str().unwrap_or("?"),
            c["references"],
            pct(&c["judge_target_accuracy"]),
            pct(&c["judge_kept_source_class"]),
            c["ari_per_stage"].as_array().map(|a| a.iter().map(|v| num(v, 3)).collect::<Vec<_>>().join(" / ")).unwrap_or_default()
        );
    }
    m += &format!(
        "\nBest and worst swaps (score: judge assigns the target + mean ARI). Columns: the reference (its reconstruction), its \
stage-{stage_shown} structure map, the swap (bar green when the judge assigns the target class), the swap's stage-{stage_shown} map \
after encoding it again.\n\n![swap gallery]({gallery})\n\n"
    );
    m += &format!("Sampling took {} s; the whole run {} s.\n", num(&r["sampling_seconds"], 0), num(&r["wall_seconds"], 0));
    m
}
