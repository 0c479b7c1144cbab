//! The judge: a small convolutional classifier of 32×32 RGB images, trained from scratch on the
//! training split of the dataset. Its held-out accuracy tells how well it recognises real
//! images; its accuracy on generated images tells whether the generator draws the class asked
//! for; its penultimate-layer features (global average of the last convolution level) are the
//! space in which the Fréchet distances are measured.
//!
//! Architecture (default widths 32/64/128, ~0.29 M parameters, ~1.2 MB): per level two 3×3
//! convolutions with batch norm and ReLU, then 2×2 max pooling (not after the last level); a
//! global average pool gives the features; one linear layer gives the logits. Training: AdamW,
//! label smoothing 0.1, linear warm-up then cosine decay, random horizontal flips and shifts of
//! up to 2 pixels (the vacated border is white, the dataset's background).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{RgbImageF, fit_square};
use crate::model::checkpoint::{CheckpointError, CheckpointMeta, META_FILE, load_weights, read_meta, save_module};
use crate::model::tokenizer::{to_vec_f32, to_vec_i64};

/// Kind string of judge checkpoints.
pub const JUDGE_KIND: &str = "judge";

/// Shape of the judge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeConfig {
    /// Input side in pixels (other sizes are resized to it).
    pub image_size: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Channels of each level; the last one is the feature dimension.
    pub widths: Vec<usize>,
    /// 3×3 convolutions per level.
    pub convs_per_level: usize,
    /// Identity shortcuts around every convolution after a level's first (same width in and
    /// out): `h + relu(bn(conv(h)))`. Off in judges saved before the option existed.
    #[serde(default)]
    pub residual: bool,
}

impl JudgeConfig {
    /// The default judge for `num_classes` classes of 32×32 images.
    pub fn new(num_classes: usize) -> Self {
        Self { image_size: 32, num_classes, widths: vec![32, 64, 128], convs_per_level: 2, residual: false }
    }

    /// Dimension of the features.
    pub fn feature_dim(&self) -> usize {
        self.widths.last().copied().unwrap_or(0)
    }

    /// Checks the shape; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.widths.is_empty() || self.widths.contains(&0) {
            return Err(format!("widths {:?}: need at least one level, none of width 0", self.widths));
        }
        if self.convs_per_level == 0 || self.num_classes < 2 {
            return Err(format!(
                "convs_per_level {} and num_classes {} must be at least 1 and 2",
                self.convs_per_level, self.num_classes
            ));
        }
        let pools = self.widths.len() - 1;
        if self.image_size == 0 || self.image_size % (1 << pools) != 0 {
            return Err(format!("image_size {} is not divisible by 2^{pools}", self.image_size));
        }
        Ok(())
    }
}

/// 3×3 convolution, batch norm, ReLU.
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    fn new(cin: usize, cout: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([cin, cout], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device),
            bn: BatchNormConfig::new(cout).init(device),
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.bn.forward(self.conv.forward(x)))
    }
}

/// The classifier.
#[derive(Module, Debug)]
pub struct Judge {
    layers: Vec<ConvBn>,
    head: Linear,
    per_level: usize,
    residual: bool,
}

impl Judge {
    /// A freshly initialised judge (seed the device first for reproducible weights).
    pub fn new(cfg: &JudgeConfig, device: &Device) -> Self {
        let mut layers = Vec::new();
        let mut cin = 3;
        for &w in &cfg.widths {
            for _ in 0..cfg.convs_per_level {
                layers.push(ConvBn::new(cin, w, device));
                cin = w;
            }
        }
        Self {
            layers,
            head: LinearConfig::new(cin, cfg.num_classes).init(device),
            per_level: cfg.convs_per_level,
            residual: cfg.residual,
        }
    }

    /// Penultimate features `[B, F]` of images `[B, 3, S, S]` in [-1, 1].
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let levels = self.layers.len() / self.per_level.max(1);
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = if self.residual && i % self.per_level.max(1) != 0 { h.clone() + layer.forward(h) } else { layer.forward(h) };
            let level = i / self.per_level.max(1);
            if (i + 1) % self.per_level.max(1) == 0 && level + 1 < levels {
                h = MaxPool2dConfig::new([2, 2]).init().forward(h);
            }
        }
        let [b, c, _, _] = h.dims();
        h.mean_dim(3).mean_dim(2).reshape([b, c])
    }

    /// Class logits `[B, K]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.features(x))
    }
}

/// Options of judge training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeTrainOptions {
    /// Optimisation steps.
    pub steps: u64,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f32,
    /// Random horizontal flips.
    pub flip: bool,
    /// Largest random shift in pixels (0 = none).
    pub max_shift: u32,
    /// Random zoom: the scale is drawn log-uniformly from [1/(1+s), 1+s] (0 = none).
    #[serde(default)]
    pub max_scale: f32,
    /// Largest random rotation in degrees (0 = none).
    #[serde(default)]
    pub max_rotation_deg: f32,
    /// Dropout on the features before the linear head during training (0 = none).
    #[serde(default)]
    pub dropout: f64,
    /// Seed of initialisation, batches and augmentation.
    pub seed: u64,
}

impl Default for JudgeTrainOptions {
    fn default() -> Self {
        Self {
            steps: 600,
            batch_size: 64,
            lr: 2e-3,
            weight_decay: 5e-4,
            warmup_steps: 50,
            label_smoothing: 0.1,
            flip: true,
            max_shift: 2,
            max_scale: 0.0,
            max_rotation_deg: 0.0,
            dropout: 0.0,
            seed: 0,
        }
    }
}

/// Errors of the judge.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// Checkpoint missing, damaged or of another kind.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Bad data or options.
    #[error("{0}")]
    Invalid(String),
}

/// A loaded (or freshly trained) judge with what is known about it.
pub struct LoadedJudge {
    /// Shape.
    pub config: JudgeConfig,
    /// Weights (inference mode).
    pub model: Judge,
    /// Class names, index = class id.
    pub class_names: Vec<String>,
    /// Training steps taken.
    pub steps: u64,
    /// The checkpoint's free-form metadata (options, held-out accuracy, data).
    pub extra: serde_json::Value,
    /// Directory it lives in.
    pub dir: PathBuf,
}

/// Images (any size; resized to `size` with the data loader's rule) as `[-1, 1]` CHW floats.
pub fn prepare(images: &[RgbImage], size: u32) -> Vec<RgbImageF> {
    images
        .iter()
        .map(|img| {
            let img = if img.width() == size && img.height() == size { img.clone() } else { fit_square(img.clone(), size) };
            // from_rgb8 only fails on an empty image; a blank one keeps indices aligned.
            RgbImageF::from_rgb8(&img).unwrap_or_else(|| RgbImageF::filled(size, [1.0, 1.0, 1.0]))
        })
        .collect()
}

/// One random augmentation: flip, then zoom by `scale` and rotate by `angle` (radians) about the
/// centre, then shift by whole pixels.
#[derive(Clone, Copy, Debug)]
struct Warp {
    flip: bool,
    scale: f32,
    angle: f32,
    dx: i32,
    dy: i32,
}

impl Warp {
    fn draw(opts: &JudgeTrainOptions, rng: &mut ChaCha8Rng) -> Self {
        let flip = opts.flip && rng.random_bool(0.5);
        let m = opts.max_shift as i32;
        let (dx, dy) = if m > 0 { (rng.random_range(-m..=m), rng.random_range(-m..=m)) } else { (0, 0) };
        let s = opts.max_scale.max(0.0);
        let scale = if s > 0.0 { (rng.random_range(-1.0f32..=1.0) * (1.0 + s).ln()).exp() } else { 1.0 };
        let r = opts.max_rotation_deg.max(0.0).to_radians();
        let angle = if r > 0.0 { rng.random_range(-r..=r) } else { 0.0 };
        Self { flip, scale, angle, dx, dy }
    }

    fn apply(&self, img: &RgbImageF) -> RgbImageF {
        if self.scale == 1.0 && self.angle == 0.0 {
            return augment(img, self.flip, self.dx, self.dy);
        }
        // Inverse map from output pixel centres to source coordinates, bilinear, white outside.
        let s = img.size as usize;
        let c = (s as f32 - 1.0) / 2.0;
        let (sin, cos) = self.angle.sin_cos();
        let plane = s * s;
        let mut out = RgbImageF::filled(img.size, [1.0, 1.0, 1.0]);
        let at = |ch: usize, x: i64, y: i64| -> f32 {
            if x < 0 || y < 0 || x >= s as i64 || y >= s as i64 { 1.0 } else { img.data[ch * plane + y as usize * s + x as usize] }
        };
        for y in 0..s {
            for x in 0..s {
                let ox = (x as f32 - self.dx as f32) - c;
                let oy = (y as f32 - self.dy as f32) - c;
                let mut sx = (cos * ox + sin * oy) / self.scale + c;
                let sy = (-sin * ox + cos * oy) / self.scale + c;
                if self.flip {
                    sx = s as f32 - 1.0 - sx;
                }
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let (x0, y0) = (x0 as i64, y0 as i64);
                for ch in 0..3 {
                    let top = at(ch, x0, y0) * (1.0 - fx) + at(ch, x0 + 1, y0) * fx;
                    let bottom = at(ch, x0, y0 + 1) * (1.0 - fx) + at(ch, x0 + 1, y0 + 1) * fx;
                    out.data[ch * plane + y * s + x] = top * (1.0 - fy) + bottom * fy;
                }
            }
        }
        out
    }
}

/// Flip and shift one image (white fills the border that moves in).
fn augment(img: &RgbImageF, flip: bool, dx: i32, dy: i32) -> RgbImageF {
    let s = img.size as i32;
    let mut out = RgbImageF::filled(img.size, [1.0, 1.0, 1.0]);
    let plane = (s * s) as usize;
    for y in 0..s {
        let sy = y - dy;
        if !(0..s).contains(&sy) {
            continue;
        }
        for x in 0..s {
            let mut sx = x - dx;
            if !(0..s).contains(&sx) {
                continue;
            }
            if flip {
                sx = s - 1 - sx;
            }
            for c in 0..3 {
                out.data[c * plane + (y * s + x) as usize] = img.data[c * plane + (sy * s + sx) as usize];
            }
        }
    }
    out
}

fn to_tensor(imgs: &[&RgbImageF], device: &Device) -> Tensor<4> {
    let s = imgs.first().map(|i| i.size as usize).unwrap_or(0);
    let mut v = Vec::with_capacity(imgs.len() * 3 * s * s);
    for img in imgs {
        v.extend_from_slice(&img.data);
    }
    Tensor::from_data(TensorData::new(v, [imgs.len(), 3, s, s]), device)
}

fn lr_at(opts: &JudgeTrainOptions, step: u64) -> f64 {
    let w = opts.warmup_steps.max(1);
    if step < w {
        return opts.lr * (step + 1) as f64 / w as f64;
    }
    let t = (step - w) as f64 / (opts.steps.saturating_sub(w)).max(1) as f64;
    opts.lr * (0.02 + 0.98 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

/// Progress of judge training.
#[derive(Clone, Debug)]
pub struct JudgeStep {
    /// Step just finished (1-based).
    pub step: u64,
    /// Total steps.
    pub total: u64,
    /// Loss of this step.
    pub loss: f64,
    /// Accuracy on this step's (augmented) batch.
    pub batch_accuracy: f64,
}

/// Trains a judge on `images` (already at the judge's size) with `labels`.
pub fn train_judge(
    cfg: &JudgeConfig,
    images: &[RgbImageF],
    labels: &[usize],
    opts: &JudgeTrainOptions,
    device: &Device,
    progress: &mut dyn FnMut(&JudgeStep),
) -> Result<Judge, JudgeError> {
    train_judge_monitored(cfg, images, labels, opts, device, progress, 0, &mut |_, _| {})
}

/// [`train_judge`] that also hands the current weights (inference mode) to `checkpoint` after
/// every `every` steps (never when `every` is 0), e.g. to measure held-out accuracy on the way.
#[allow(clippy::too_many_arguments)]
pub fn train_judge_monitored(
    cfg: &JudgeConfig,
    images: &[RgbImageF],
    labels: &[usize],
    opts: &JudgeTrainOptions,
    device: &Device,
    progress: &mut dyn FnMut(&JudgeStep),
    every: u64,
    checkpoint: &mut dyn FnMut(u64, &Judge),
) -> Result<Judge, JudgeError> {
    cfg.validate().map_err(JudgeError::Invalid)?;
    if images.len() != labels.len() || images.is_empty() {
        return Err(JudgeError::Invalid(format!("{} images for {} labels", images.len(), labels.len())));
    }
    if let Some(bad) = labels.iter().find(|&&l| l >= cfg.num_classes) {
        return Err(JudgeError::Invalid(format!("label {bad} is out of range for {} classes", cfg.num_classes)));
    }
    if let Some(img) = images.iter().find(|i| i.size as usize != cfg.image_size) {
        return Err(JudgeError::Invalid(format!("image of size {} given to a {}-pixel judge", img.size, cfg.image_size)));
    }
    if opts.batch_size == 0 {
        return Err(JudgeError::Invalid("judge batch size must be at least 1".into()));
    }
    if !(0.0..1.0).contains(&opts.dropout) {
        return Err(JudgeError::Invalid(format!("judge dropout {} is not in [0, 1)", opts.dropout)));
    }
    let ad = device.clone().autodiff();
    ad.seed(opts.seed);
    let mut model = Judge::new(cfg, &ad);
    let mut optim: ModuleOptimizer = AdamWConfig::new().with_weight_decay(opts.weight_decay as f32).init();
    let loss_fn = CrossEntropyLossConfig::new().with_smoothing(Some(opts.label_smoothing)).init(&ad);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x1d6e);
    let mut order: Vec<usize> = (0..images.len()).collect();
    let mut pos = order.len();
    for step in 0..opts.steps {
        let mut batch = Vec::with_capacity(opts.batch_size);
        let mut targets = Vec::with_capacity(opts.batch_size);
        for _ in 0..opts.batch_size {
            if pos == order.len() {
                crate::data::order::shuffle_uniform(&mut order, &mut rng);
                pos = 0;
            }
            let i = order[pos];
            pos += 1;
            batch.push(Warp::draw(opts, &mut rng).apply(&images[i]));
            targets.push(labels[i] as i64);
        }
        let refs: Vec<&RgbImageF> = batch.iter().collect();
        let x = to_tensor(&refs, &ad);
        let b = targets.len();
        let y: Tensor<1, Int> = Tensor::from_data(TensorData::new(targets.clone(), [b]), &ad);
        let logits = if opts.dropout > 0.0 {
            // Inverted dropout with a mask from the run's own stream (same seed ⇒ same mask).
            let f = model.features(x);
            let dim = cfg.feature_dim();
            let keep = 1.0 - opts.dropout;
            let mask: Vec<f32> =
                (0..b * dim).map(|_| if rng.random_bool(keep) { (1.0 / keep) as f32 } else { 0.0 }).collect();
            model.head.forward(f * Tensor::<2>::from_data(TensorData::new(mask, [b, dim]), &ad))
        } else {
            model.forward(x)
        };
        let pred = to_vec_i64(logits.clone().detach().argmax(1));
        let loss = loss_fn.forward(logits, y);
        let loss_v = to_vec_f32(loss.clone().detach()).first().copied().unwrap_or(f32::NAN) as f64;
        if !loss_v.is_finite() {
            return Err(JudgeError::Invalid(format!("judge loss became {loss_v} at step {}", step + 1)));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr_at(opts, step), model, grads);
        let hits = pred.iter().zip(&targets).filter(|(p, t)| p == t).count();
        progress(&JudgeStep { step: step + 1, total: opts.steps, loss: loss_v, batch_accuracy: hits as f64 / b as f64 });
        if every > 0 && (step + 1) % every == 0 && step + 1 < opts.steps {
            checkpoint(step + 1, &model.valid());
        }
    }
    Ok(model.valid())
}

/// Predicted classes and features of `images` (at the judge's size), in chunks of 128.
pub fn predict(model: &Judge, images: &[RgbImageF], device: &Device) -> (Vec<usize>, Vec<f32>) {
    let mut preds = Vec::with_capacity(images.len());
    let mut feats = Vec::new();
    for chunk in images.chunks(128) {
        let refs: Vec<&RgbImageF> = chunk.iter().collect();
        let f = model.features(to_tensor(&refs, device));
        let logits = model.head.forward(f.clone());
        preds.extend(to_vec_i64(logits.argmax(1)).into_iter().map(|v| v.max(0) as usize));
        feats.extend(to_vec_f32(f));
    }
    (preds, feats)
}

/// Fraction of `preds` equal to `labels`.
pub fn accuracy(preds: &[usize], labels: &[usize]) -> f64 {
    if preds.is_empty() {
        return 0.0;
    }
    preds.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / preds.len() as f64
}

/// Confusion matrix `m[true][predicted]` of `k` classes (labels or predictions ≥ `k` are skipped).
pub fn confusion(preds: &[usize], labels: &[usize], k: usize) -> Vec<Vec<u32>> {
    let mut m = vec![vec![0u32; k]; k];
    for (&p, &l) in preds.iter().zip(labels) {
        if p < k && l < k {
            m[l][p] += 1;
        }
    }
    m
}

/// Saves a judge checkpoint directory (kind "judge").
pub fn save_judge(dir: &Path, cfg: &JudgeConfig, model: &Judge, steps: u64, extra: serde_json::Value) -> Result<(), JudgeError> {
    save_module(dir, JUDGE_KIND, cfg, model, steps, extra)?;
    Ok(())
}

/// Loads a judge checkpoint directory.
pub fn load_judge(dir: &Path, device: &Device) -> Result<LoadedJudge, JudgeError> {
    let meta: CheckpointMeta<JudgeConfig> = read_meta(dir, JUDGE_KIND)?;
    meta.config
        .validate()
        .map_err(|reason| CheckpointError::BadMeta { path: dir.join(META_FILE), reason })?;
    let model = load_weights(dir, Judge::new(&meta.config, device))?;
    let class_names: Vec<String> = meta.extra["class_names"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    if class_names.len() != meta.config.num_classes {
        return Err(CheckpointError::BadMeta {
            path: dir.join(META_FILE),
            reason: format!("{} class names for {} classes", class_names.len(), meta.config.num_classes),
        }
        .into());
    }
    Ok(LoadedJudge { config: meta.config, model, class_names, steps: meta.step, extra: meta.extra, dir: dir.to_path_buf() })
}

/// Trains, times and returns a judge; `elapsed` is the wall time of training in seconds.
pub fn train_timed(
    cfg: &JudgeConfig,
    images: &[RgbImageF],
    labels: &[usize],
    opts: &JudgeTrainOptions,
    device: &Device,
    progress: &mut dyn FnMut(&JudgeStep),
) -> Result<(Judge, f64), JudgeError> {
    let t = Instant::now();
    let m = train_judge(cfg, images, labels, opts, device, progress)?;
    Ok((m, t.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_params_and_augmentation() {
        let dev = Device::flex();
        let cfg = JudgeConfig::new(5);
        cfg.validate().unwrap();
        let m = Judge::new(&cfg, &dev);
        assert!(m.num_params() < 500_000, "{} parameters", m.num_params());
        let x = Tensor::<4>::zeros([2, 3, 32, 32], &dev);
        assert_eq!(m.features(x.clone()).dims(), [2, 128]);
        assert_eq!(m.forward(x).dims(), [2, 5]);
        // Shift right by one: column 0 becomes white, column 1 is the old column 0.
        let mut img = RgbImageF::filled(4, [0.0, 0.0, 0.0]);
        img.data[0] = -1.0; // red channel at (0, 0)
        let s = augment(&img, false, 1, 0);
        assert_eq!(s.data[0], 1.0);
        assert_eq!(s.data[1], -1.0);
        let f = augment(&img, true, 0, 0);
        assert_eq!(f.data[3], -1.0);
        assert!(JudgeConfig { image_size: 30, ..cfg.clone() }.validate().is_err());
        // The affine path agrees with the integer one for a pure shift and flip…
        let mut grad = RgbImageF::filled(8, [0.0, 0.0, 0.0]);
        for (i, v) in grad.data.iter_mut().enumerate() {
            *v = (i % 61) as f32 / 30.0 - 1.0;
        }
        let w = Warp { flip: true, scale: 1.0 + 1e-7, angle: 0.0, dx: 2, dy: -1 };
        let (a, b) = (w.apply(&grad), augment(&grad, true, 2, -1));
        assert!(a.data.iter().zip(&b.data).all(|(x, y)| (x - y).abs() < 1e-4));
        // …a quarter turn moves the top-left corner to the bottom-left or top-right…
        let q = Warp { flip: false, scale: 1.0, angle: std::f32::consts::FRAC_PI_2, dx: 0, dy: 0 }.apply(&img);
        let corner = [q.data[12], q.data[3]];
        assert!(corner.iter().any(|v| (v + 1.0).abs() < 1e-4), "{corner:?}");
        // …and zooming out brings in white.
        let z = Warp { flip: false, scale: 0.5, angle: 0.0, dx: 0, dy: 0 }.apply(&grad);
        assert_eq!(z.data[0], 1.0);
    }
}
