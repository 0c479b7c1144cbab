//! `nvg-studio train-judge`: trains a judge on the emoji set's training split, measures it on
//! the held-out split (whole emoji never seen in any art style) on the way and at the end, and
//! saves it with its confusion matrix. `eval` then loads it (`--judge DIR`).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;
use serde_json::json;

use super::judge::{
    Judge, JudgeConfig, JudgeError, JudgeStep, JudgeTrainOptions, accuracy, confusion, predict, save_judge,
    train_judge_monitored,
};
use super::run::load_images;
use crate::data::{EmojiSheet, EmojiSource};

/// What the judge is measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JudgeSplit {
    /// Trained on the default training split, measured on its held-out emoji (emoji never seen
    /// in any art style: recognising a new design of the class).
    Emoji,
    /// One rendition (art style) of every training emoji with several is held out of the judge's
    /// training and measured: recognising a known emoji drawn anew, which is what a generator
    /// trained on the same split is asked to do. The held-out emoji are measured too.
    Rendition,
}

/// One rendition of every emoji that has several in `indices`, chosen by `seed`: `(rest, held)`.
pub fn rendition_split(sheet: &EmojiSheet, indices: &[usize], seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut by_emoji: std::collections::BTreeMap<&str, Vec<usize>> = std::collections::BTreeMap::new();
    for &i in indices {
        by_emoji.entry(sheet.emoji_of(i).unwrap_or("")).or_default().push(i);
    }
    let (mut rest, mut held) = (Vec::new(), Vec::new());
    for (emoji, group) in by_emoji {
        if group.len() < 2 {
            rest.extend(group);
            continue;
        }
        let h = crate::granularity::rng::splitmix64(seed ^ crate::data::order::fnv1a64(emoji.as_bytes())) as usize % group.len();
        for (k, i) in group.into_iter().enumerate() {
            if k == h { held.push(i) } else { rest.push(i) }
        }
    }
    rest.sort_unstable();
    held.sort_unstable();
    (rest, held)
}

/// What a judge training run measured.
#[derive(Clone, Debug, Serialize)]
pub struct JudgeRunReport {
    /// What `heldout_accuracy` is measured on.
    pub split: JudgeSplit,
    /// Held-out accuracy of the final weights (on the split's held-out images).
    pub heldout_accuracy: f64,
    /// Accuracy on the default split's held-out emoji (the same as `heldout_accuracy` for the
    /// emoji split).
    pub unseen_emoji_accuracy: f64,
    /// Accuracy on the (unaugmented) training images.
    pub train_accuracy: f64,
    /// Held-out images and training images.
    pub heldout_images: usize,
    /// Training images.
    pub train_images: usize,
    /// Held-out accuracy measured every `eval_every` steps: (step, accuracy).
    pub curve: Vec<(u64, f64)>,
    /// Per class: (name, held-out images, recall).
    pub per_class: Vec<(String, usize, f64)>,
    /// `confusion[true][predicted]` on the held-out images.
    pub confusion: Vec<Vec<u32>>,
    /// Parameters of the judge.
    pub parameters: usize,
    /// Seconds of training.
    pub train_seconds: f64,
}

/// Events of a judge run.
pub enum JudgeRunEvent<'a> {
    /// A training step finished.
    Step(&'a JudgeStep),
    /// Held-out accuracy at a step.
    HeldOut(u64, f64),
}

/// Trains a judge of shape `cfg` on the default split of the emoji set at `labels`, saves it in
/// `out` (with the report in its metadata and `report.json` beside it) and returns the report.
pub fn run_judge_training(
    labels: &Path,
    cfg: &JudgeConfig,
    opts: &JudgeTrainOptions,
    eval_every: u64,
    split: JudgeSplit,
    out: &Path,
    command: &str,
    device: &Device,
    on: &mut dyn FnMut(JudgeRunEvent),
) -> Result<JudgeRunReport, JudgeError> {
    let invalid = |m: String| JudgeError::Invalid(m);
    let sheet = Arc::new(EmojiSheet::open(labels).map_err(|e| invalid(e.to_string()))?);
    let names = sheet.class_names().to_vec();
    if cfg.num_classes != names.len() {
        return Err(invalid(format!("judge for {} classes, dataset {} has {}", cfg.num_classes, labels.display(), names.len())));
    }
    let source = EmojiSource::new(sheet.clone(), cfg.image_size as u32).map_err(|e| invalid(e.to_string()))?;
    let (train_all, unseen) = sheet.default_split();
    let (train, held) = match split {
        JudgeSplit::Emoji => (train_all, unseen.clone()),
        JudgeSplit::Rendition => rendition_split(&sheet, &train_all, opts.seed),
    };
    let load = |idx: &[usize]| load_images(&source, idx).map_err(|e| invalid(e.to_string()));
    let (train_x, held_x) = (load(&train)?, load(&held)?);
    let label_of = |idx: &[usize]| -> Vec<usize> { idx.iter().map(|&i| sheet.class_of(i).unwrap_or(0)).collect() };
    let (train_y, held_y) = (label_of(&train), label_of(&held));
    let mut curve = Vec::new();
    let on = std::cell::RefCell::new(on);
    let t = Instant::now();
    let model = train_judge_monitored(
        cfg,
        &train_x,
        &train_y,
        opts,
        device,
        &mut |s| (on.borrow_mut())(JudgeRunEvent::Step(s)),
        eval_every,
        &mut |step, m: &Judge| {
            let acc = accuracy(&predict(m, &held_x, device).0, &held_y);
            curve.push((step, acc));
            (on.borrow_mut())(JudgeRunEvent::HeldOut(step, acc));
        },
    )?;
    let train_seconds = t.elapsed().as_secs_f64();
    let held_pred = predict(&model, &held_x, device).0;
    let heldout_accuracy = accuracy(&held_pred, &held_y);
    curve.push((opts.steps, heldout_accuracy));
    (on.into_inner())(JudgeRunEvent::HeldOut(opts.steps, heldout_accuracy));
    let train_accuracy = accuracy(&predict(&model, &train_x, device).0, &train_y);
    let unseen_emoji_accuracy = match split {
        JudgeSplit::Emoji => heldout_accuracy,
        JudgeSplit::Rendition => accuracy(&predict(&model, &load(&unseen)?, device).0, &label_of(&unseen)),
    };
    let conf = confusion(&held_pred, &held_y, names.len());
    let per_class = names
        .iter()
        .enumerate()
        .map(|(c, n)| {
            let total: u32 = conf[c].iter().sum();
            (n.clone(), total as usize, if total == 0 { 0.0 } else { f64::from(conf[c][c]) / f64::from(total) })
        })
        .collect();
    let report = JudgeRunReport {
        split,
        heldout_accuracy,
        unseen_emoji_accuracy,
        train_accuracy,
        heldout_images: held.len(),
        train_images: train.len(),
        curve,
        per_class,
        confusion: conf,
        parameters: model.num_params(),
        train_seconds,
    };
    let extra = json!({
        "class_names": names,
        "train_options": opts,
        "data": sheet.labels_path().display().to_string(),
        "split": match split {
            JudgeSplit::Emoji => "EmojiSheet::default_split (about 10% of each class held out as whole emoji, seed 0); trained on the rest".to_string(),
            JudgeSplit::Rendition => format!("the default split's training emoji minus one rendition of each emoji with several (judge_run::rendition_split, seed {}); measured on those and on the held-out emoji", opts.seed),
        },
        "judge_split": split,
        "unseen_emoji_accuracy": unseen_emoji_accuracy,
        "train_images": train.len(),
        "train_seconds": train_seconds,
        // `heldout_accuracy` is the default split's (unseen emoji), as `eval` records it.
        "heldout_accuracy": unseen_emoji_accuracy,
        "split_heldout_accuracy": heldout_accuracy,
        "train_accuracy": train_accuracy,
        "command": command,
    });
    save_judge(out, cfg, &model, opts.steps, extra)?;
    let text = serde_json::to_string_pretty(&report).map_err(|e| invalid(e.to_string()))?;
    crate::model::checkpoint::write_atomic(&out.join("report.json"), text.as_bytes())
        .map_err(|e| invalid(format!("{}: {e}", out.join("report.json").display())))?;
    Ok(report)
}

/// The most frequent confusions (true, predicted, count), largest first, at most `n`.
pub fn top_confusions(conf: &[Vec<u32>], n: usize) -> Vec<(usize, usize, u32)> {
    let mut v: Vec<(usize, usize, u32)> = conf
        .iter()
        .enumerate()
        .flat_map(|(t, row)| row.iter().enumerate().filter(move |&(p, &c)| p != t && c > 0).map(move |(p, &c)| (t, p, c)))
        .collect();
    v.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    v.truncate(n);
    v
}
