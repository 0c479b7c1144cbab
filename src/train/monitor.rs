//! What generator training reports (issue 18): per-stage, per-branch losses on the training
//! batches and on a fixed held-out batch, each next to a trivial baseline, written as a long
//! CSV (`train-log.csv`) in the run folder.
//!
//! The per-stage loss terms are the ones training optimises (method §4.7):
//! - content stage i: `content_mse` = MSE(x̂_i, X) and `content_ce` = CE of the cluster codes;
//! - structure stage k: `structure` = MSE(v̂, ε − b) over all S − 1 channels, and
//!   `structure_decision` = the same MSE on channel k only, the one Split reads at stage k.
//!
//! Baselines (scored on exactly the held-out samples the model is scored on; the unigram code
//! frequencies and the mean canvas are counted on training images):
//! - `structure_baseline_mean`: a constant per (stage, channel) — the mean velocity target;
//! - `structure_baseline_ctxfree`: the best predictor that looks at nothing but its own flow
//!   value and t — no image, no class, no neighbour. For an unknown bit b ∈ {−1, +1} with a
//!   uniform prior and z = t·ε + (1 − t)·b, E[b | z] = tanh(z·(1 − t)/t²) and the best
//!   velocity is (z − E[b | z])/t; known channels get 0. A structure branch that has learnt
//!   nothing about shapes converges to this, and sampling it gives speckle (every position's
//!   bit is the sign of its own noise);
//! - `content_mse_baseline_copy`: x̂ = x_i (keep the current canvas), and
//!   `content_mse_baseline_mean`: x̂ = the mean final canvas of the training images;
//! - `content_ce_baseline_unigram`: the stage's code frequencies on training images
//!   (add-0.1 smoothing), ignoring image and class.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::ImageSource;
use crate::granularity::Hierarchy;
use crate::model::generator::{NvgGenerator, context_logit_velocity};
use crate::model::tokenizer::{Encoded, to_vec_f32};
use crate::model::{Tokenizer, TokenizerConfig};
use crate::model::images::images_to_tensor;
use crate::sampler::streams::normal;

use super::tokenizer::TrainError;

/// Name of the training log in a generator run folder.
pub const LOG_FILE: &str = "train-log.csv";
/// Header of the training log.
pub const LOG_HEADER: &str = "step,split,metric,stage,value";

/// A batch with its teacher-forcing targets from the frozen tokenizer.
pub struct TeacherBatch {
    /// Class per image (the null class where the label was dropped).
    pub classes: Vec<usize>,
    /// The tokenizer's encoding: hierarchies, codes, canvases.
    pub enc: Encoded,
}

impl TeacherBatch {
    /// Encodes `imgs` with the frozen tokenizer.
    pub fn encode(tokenizer: &Tokenizer, tcfg: &TokenizerConfig, imgs: &[crate::data::RgbImageF], classes: Vec<usize>, device: &Device) -> Self {
        let enc = tokenizer.encode(images_to_tensor(imgs, device), tcfg.phi_weight);
        Self { classes, enc }
    }

    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// Full-depth bit codes b = σ_{S−1} − 1 of every image, `[B·L·(S−1)]`, position-major.
    pub fn full_bits(&self, bits: usize) -> Vec<f32> {
        self.enc.hierarchies.iter().flat_map(|h| full_bits(h, bits)).collect()
    }
}

/// b = σ_{S−1} − 1 ∈ {−1, +1}^(L×(S−1)), position-major.
pub fn full_bits(h: &Hierarchy, bits: usize) -> Vec<f32> {
    let last = h.num_stages() - 1;
    h.sigma_map(last).iter().map(|&v| v as f32 - 1.0).take(h.num_positions() * bits).collect()
}

/// One structure training sample of stage `stage` for a batch (§4.5–4.6): flow state, target
/// velocity and time per image; known channels (< stage) hold the truth, target 0.
#[derive(Clone, Debug)]
pub struct FlowSample {
    /// Structure stage k.
    pub stage: usize,
    /// z_t `[B·L·bits]`.
    pub z: Vec<f32>,
    /// ε − b `[B·L·bits]`.
    pub target: Vec<f32>,
    /// t per image.
    pub t: Vec<f32>,
}

impl FlowSample {
    /// Mixes the shared noise `eps` with the truth `full` at times `t` (one per image).
    pub fn new(stage: usize, full: &[f32], eps: &[f32], t: Vec<f32>, l: usize, bits: usize) -> Self {
        let n = full.len();
        let mut z = vec![0f32; n];
        let mut target = vec![0f32; n];
        for (bi, &tb) in t.iter().enumerate() {
            for p in 0..l {
                for j in 0..bits {
                    let i = (bi * l + p) * bits + j;
                    let e = if j < stage { full[i] } else { eps[i] };
                    z[i] = tb * e + (1.0 - tb) * full[i];
                    target[i] = e - full[i];
                }
            }
        }
        Self { stage, z, target, t }
    }

    /// Logit-normal times t = sigmoid(N(0, 1)), one per image (§4.6).
    pub fn times(rng: &mut ChaCha8Rng, b: usize) -> Vec<f32> {
        (0..b).map(|_| 1.0 / (1.0 + (-normal(rng)).exp())).collect()
    }

    /// The context-free denoiser's velocity for this sample (see the module docs): the
    /// context-logit head with λ = 0 ([`context_logit_velocity`]).
    pub fn ctxfree_prediction(&self, bits: usize) -> Vec<f32> {
        let mut v = vec![0f32; self.z.len()];
        context_logit_velocity(&mut v, &self.z, &self.t, self.stage, bits);
        v
    }
}

/// Per-stage loss tensors of one batch (scalars `[1]`), in the order they were computed.
pub struct BranchLosses {
    /// (content stage, x0 MSE, code CE).
    pub content: Vec<(usize, Tensor<1>, Tensor<1>)>,
    /// (structure stage, velocity MSE over all channels, per-channel MSE `[bits]`, detached).
    pub structure: Vec<(usize, Tensor<1>, Tensor<1>)>,
}

/// Host values of [`BranchLosses`].
#[derive(Clone, Debug, Default)]
pub struct StageValues {
    /// (stage, mse, ce).
    pub content: Vec<(usize, f64, f64)>,
    /// (stage, all-channel MSE, decision-channel MSE).
    pub structure: Vec<(usize, f64, f64)>,
}

impl StageValues {
    /// Mean of the content terms (MSE + CE per stage), as in the objective; 0 when none.
    pub fn content_mean(&self) -> f64 {
        mean(self.content.iter().map(|c| c.1 + c.2))
    }
    /// Mean of the structure terms; 0 when none.
    pub fn structure_mean(&self) -> f64 {
        mean(self.structure.iter().map(|s| s.1))
    }
    /// Whether every value is finite.
    pub fn all_finite(&self) -> bool {
        self.content.iter().all(|c| c.1.is_finite() && c.2.is_finite()) && self.structure.iter().all(|s| s.1.is_finite() && s.2.is_finite())
    }
}

fn mean(it: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = it.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { s / n as f64 }
}

impl BranchLosses {
    /// The training objective: mean content term + mean structure term (§4.7, per branch
    /// averaged over the stages present).
    pub fn objective(&self, device: &Device) -> Tensor<1> {
        let mut total: Tensor<1> = Tensor::zeros([1], device);
        if !self.content.is_empty() {
            let mut c: Tensor<1> = Tensor::zeros([1], device);
            for (_, mse, ce) in &self.content {
                c = c + mse.clone() + ce.clone();
            }
            total = total + c.div_scalar(self.content.len() as f64);
        }
        if !self.structure.is_empty() {
            let mut s: Tensor<1> = Tensor::zeros([1], device);
            for (_, all, _) in &self.structure {
                s = s + all.clone();
            }
            total = total + s.div_scalar(self.structure.len() as f64);
        }
        total
    }

    /// Reads every per-stage value back in one transfer.
    pub fn values(&self, bits: usize) -> StageValues {
        let mut parts = Vec::new();
        for (_, mse, ce) in &self.content {
            parts.push(mse.clone().detach());
            parts.push(ce.clone().detach());
        }
        for (_, all, per) in &self.structure {
            parts.push(all.clone().detach());
            parts.push(per.clone());
        }
        if parts.is_empty() {
            return StageValues::default();
        }
        let v = to_vec_f32(Tensor::cat(parts, 0));
        let mut out = StageValues::default();
        let mut i = 0;
        for (k, _, _) in &self.content {
            out.content.push((*k, v[i] as f64, v[i + 1] as f64));
            i += 2;
        }
        for (k, _, _) in &self.structure {
            out.structure.push((*k, v[i] as f64, v[i + 1 + k] as f64));
            i += 1 + bits;
        }
        out
    }
}

/// Per-stage losses of `model` on `batch`: the content stages `content` and the structure
/// samples `flows`. `model` may live on an autodiff device (training) or not (evaluation).
pub fn batch_losses(model: &NvgGenerator, batch: &TeacherBatch, content: &[usize], flows: &[FlowSample]) -> BranchLosses {
    let cfg = model.config();
    let s_count = cfg.num_stages();
    let (l, bits) = (cfg.num_positions(), cfg.num_bits());
    let b = batch.len();
    let enc = &batch.enc;
    let device = model.device();
    let target_x = enc.quantized.canvases[s_count].clone();
    let mut out = BranchLosses { content: Vec::new(), structure: Vec::new() };
    for &i in content {
        let labels: Vec<&[u32]> = enc.hierarchies.iter().map(|h| h.map(i)).collect();
        let (x0, logits) = model.content_forward(i, &batch.classes, enc.quantized.canvases[i].clone(), &labels);
        let mse = (x0 - target_x.clone()).powi_scalar(2).mean();
        let ce = log_softmax(logits, 2).gather(2, code_targets(batch, i, &device)).neg().mean();
        out.content.push((i, mse, ce));
    }
    for f in flows {
        let k = f.stage;
        let labels: Vec<&[u32]> = enc.hierarchies.iter().map(|h| h.map(k)).collect();
        let zt = Tensor::<3>::from_data(TensorData::new(f.z.clone(), [b, l, bits]), &device);
        let tt = Tensor::<3>::from_data(TensorData::new(f.target.clone(), [b, l, bits]), &device);
        let v = model.structure_forward(k, &batch.classes, enc.quantized.canvases[k + 1].clone(), &labels, zt, &f.t);
        let e2 = (v - tt).powi_scalar(2);
        let per = e2.clone().detach().mean_dim(0).mean_dim(1).reshape([bits]);
        out.structure.push((k, e2.mean(), per));
    }
    out
}

fn code_targets(batch: &TeacherBatch, stage: usize, device: &Device) -> Tensor<3, Int> {
    let b = batch.len();
    let k = 1usize << stage;
    let tgt: Vec<i64> = batch.enc.quantized.codes.iter().flat_map(|c| c[stage].iter().map(|&x| x as i64)).collect();
    Tensor::from_data(TensorData::new(tgt, [b, k, 1]), device)
}

/// Top-1 accuracy of the content logits per stage: the share of clusters (over the batch)
/// whose most likely code is the tokenizer's code. Clusters of stage i count 2^i each.
pub fn content_top1(model: &NvgGenerator, batch: &TeacherBatch, stages: &[usize]) -> Result<Vec<(usize, f64)>, TrainError> {
    let enc = &batch.enc;
    stages
        .iter()
        .map(|&i| {
            let labels: Vec<&[u32]> = enc.hierarchies.iter().map(|h| h.map(i)).collect();
            let (_, logits) = model.content_forward(i, &batch.classes, enc.quantized.canvases[i].clone(), &labels);
            let dims = logits.dims();
            let pred = logits
                .argmax(2)
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .map_err(|e| TrainError::Options(format!("reading the content predictions of stage {i}: {e:?}")))?;
            let truth: Vec<i64> = enc.quantized.codes.iter().flat_map(|c| c[i].iter().map(|&x| x as i64)).collect();
            let hits = pred.iter().zip(&truth).filter(|(a, b)| a == b).count();
            Ok((i, hits as f64 / (dims[0] * dims[1]).max(1) as f64))
        })
        .collect()
}

/// What the training images look like to an image-ignoring predictor: per-stage code counts
/// and the mean final canvas.
#[derive(Clone, Debug)]
pub struct TrainStats {
    /// `counts[stage][code]` over the clusters of the measured images.
    pub counts: Vec<Vec<u64>>,
    /// Mean final canvas `[L·C]`.
    pub mean_x: Vec<f32>,
}

impl TrainStats {
    /// Encodes `indices` of `data` (in chunks of 32) and counts.
    pub fn measure(tokenizer: &Tokenizer, tcfg: &TokenizerConfig, data: &dyn ImageSource, indices: &[usize], device: &Device) -> Result<Self, TrainError> {
        let s = tcfg.num_stages();
        let lc = tcfg.grid_side() * tcfg.grid_side() * tcfg.latent_channels;
        let mut counts = vec![vec![0u64; tcfg.codebook_size]; s];
        let mut sum = vec![0f64; lc];
        let mut n = 0usize;
        for chunk in indices.chunks(32) {
            let imgs: Vec<_> = chunk.iter().map(|&i| data.get(i).map(|x| x.0)).collect::<Result<_, _>>().map_err(|e| TrainError::Data(e.to_string()))?;
            let enc = tokenizer.encode(images_to_tensor(&imgs, device), tcfg.phi_weight);
            for codes in &enc.quantized.codes {
                for (st, c) in codes.iter().enumerate() {
                    for &x in c {
                        counts[st][x as usize] += 1;
                    }
                }
            }
            let x = to_vec_f32(enc.quantized.canvases[s].clone());
            for img in x.chunks(lc) {
                for (a, &v) in sum.iter_mut().zip(img) {
                    *a += v as f64;
                }
            }
            n += imgs.len();
        }
        let mean_x = sum.iter().map(|&v| (v / n.max(1) as f64) as f32).collect();
        Ok(Self { counts, mean_x })
    }

    /// Smoothed code probabilities of a stage.
    fn unigram(&self, stage: usize) -> Vec<f64> {
        let c = &self.counts[stage];
        let total: u64 = c.iter().sum();
        let alpha = 0.1;
        c.iter().map(|&x| (x as f64 + alpha) / (total as f64 + alpha * c.len() as f64)).collect()
    }
}

/// Baselines of every logged metric on the held-out samples, `metric → [(stage, value)]`.
#[derive(Clone, Debug, Default)]
pub struct Baselines {
    /// (metric name, stage, value).
    pub rows: Vec<(&'static str, usize, f64)>,
}

impl Baselines {
    /// The value of `metric` at `stage`.
    pub fn get(&self, metric: &str, stage: usize) -> Option<f64> {
        self.rows.iter().find(|r| r.0 == metric && r.1 == stage).map(|r| r.2)
    }
}

/// A fixed evaluation set: images, their targets, and fixed flow samples for every structure
/// stage (drawn once from `seed`), with the baselines on exactly these samples.
pub struct HeldOut {
    /// The encoded images (true classes, no flips).
    pub batch: TeacherBatch,
    /// One flow sample per structure stage.
    pub flows: Vec<FlowSample>,
    /// Baselines on these samples.
    pub baselines: Baselines,
}

impl HeldOut {
    /// Builds the held-out set from `indices` of `data`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tokenizer: &Tokenizer,
        tcfg: &TokenizerConfig,
        data: &dyn ImageSource,
        indices: &[usize],
        stats: &TrainStats,
        net_stages: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let mut imgs = Vec::with_capacity(indices.len());
        let mut classes = Vec::with_capacity(indices.len());
        for &i in indices {
            let (img, c) = data.get(i).map_err(|e| TrainError::Data(e.to_string()))?;
            imgs.push(img);
            classes.push(c);
        }
        let batch = TeacherBatch::encode(tokenizer, tcfg, &imgs, classes, device);
        let s_count = tcfg.num_stages();
        let bits = s_count - 1;
        let l = tcfg.grid_side() * tcfg.grid_side();
        let b = batch.len();
        let full = batch.full_bits(bits);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4e1d_0u64);
        let eps: Vec<f32> = (0..full.len()).map(|_| normal(&mut rng)).collect();
        let flows: Vec<FlowSample> = (0..net_stages)
            .map(|k| {
                let t = FlowSample::times(&mut rng, b);
                FlowSample::new(k, &full, &eps, t, l, bits)
            })
            .collect();
        let mut rows = Vec::new();
        for f in &flows {
            let k = f.stage;
            // Constant per channel: the mean target over these samples.
            let mut all = 0.0;
            let mut decision = 0.0;
            for j in 0..bits {
                let vals: Vec<f64> = (0..b * l).map(|q| f.target[q * bits + j] as f64).collect();
                let m = vals.iter().sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / vals.len() as f64;
                all += var / bits as f64;
                if j == k {
                    decision = var;
                }
            }
            rows.push(("structure_baseline_mean", k, all));
            rows.push(("structure_decision_baseline_mean", k, decision));
            let pred = f.ctxfree_prediction(bits);
            let (mut all, mut decision) = (0.0, 0.0);
            for (i, (p, t)) in pred.iter().zip(&f.target).enumerate() {
                let e = (*p as f64 - *t as f64).powi(2);
                all += e;
                if i % bits == k {
                    decision += e;
                }
            }
            rows.push(("structure_baseline_ctxfree", k, all / (b * l * bits) as f64));
            rows.push(("structure_decision_baseline_ctxfree", k, decision / (b * l) as f64));
        }
        let x = to_vec_f32(batch.enc.quantized.canvases[s_count].clone());
        let lc = stats.mean_x.len();
        for i in 0..s_count {
            let xi = to_vec_f32(batch.enc.quantized.canvases[i].clone());
            let copy = x.iter().zip(&xi).map(|(a, c)| ((a - c) as f64).powi(2)).sum::<f64>() / x.len() as f64;
            let mean = x.iter().enumerate().map(|(q, a)| ((a - stats.mean_x[q % lc]) as f64).powi(2)).sum::<f64>() / x.len() as f64;
            rows.push(("content_mse_baseline_copy", i, copy));
            rows.push(("content_mse_baseline_mean", i, mean));
            let p = stats.unigram(i);
            let codes: Vec<u32> = batch.enc.quantized.codes.iter().flat_map(|c| c[i].iter().copied()).collect();
            let ce = codes.iter().map(|&c| -p[c as usize].ln()).sum::<f64>() / codes.len().max(1) as f64;
            rows.push(("content_ce_baseline_unigram", i, ce));
        }
        Ok(Self { batch, flows, baselines: Baselines { rows } })
    }

    /// Per-stage losses of `model`: every content stage when `content`, every structure
    /// sample when `structure`.
    pub fn evaluate(&self, model: &NvgGenerator, content: bool, structure: bool) -> StageValues {
        let cfg = model.config();
        let stages: Vec<usize> = if content { (0..cfg.num_stages()).collect() } else { Vec::new() };
        let flows: &[FlowSample] = if structure { &self.flows } else { &[] };
        batch_losses(model, &self.batch, &stages, flows).values(cfg.num_bits())
    }
}

/// Ratio of the held-out structure loss to its context-free baseline, per stage.
pub fn structure_ratios(values: &StageValues, baselines: &Baselines) -> Vec<(usize, f64)> {
    values
        .structure
        .iter()
        .filter_map(|&(k, v, _)| baselines.get("structure_baseline_ctxfree", k).map(|b| (k, v / b.max(1e-12))))
        .collect()
}

/// Running sums of the training batches' per-stage values between two log points.
#[derive(Default)]
pub struct Accumulator {
    sums: Vec<(&'static str, usize, f64, usize)>,
}

impl Accumulator {
    fn add(&mut self, metric: &'static str, stage: usize, v: f64) {
        match self.sums.iter_mut().find(|s| s.0 == metric && s.1 == stage) {
            Some(s) => {
                s.2 += v;
                s.3 += 1;
            }
            None => self.sums.push((metric, stage, v, 1)),
        }
    }
    /// Adds one step's values.
    pub fn push(&mut self, v: &StageValues) {
        for &(i, mse, ce) in &v.content {
            self.add("content_mse", i, mse);
            self.add("content_ce", i, ce);
        }
        for &(k, all, d) in &v.structure {
            self.add("structure", k, all);
            self.add("structure_decision", k, d);
        }
    }
    /// The means so far, and a reset.
    pub fn take(&mut self) -> Vec<(&'static str, usize, f64)> {
        let mut out: Vec<_> = self.sums.drain(..).map(|(m, s, v, n)| (m, s, v / n.max(1) as f64)).collect();
        out.sort_by(|a, b| a.0.cmp(b.0).then(a.1.cmp(&b.1)));
        out
    }
}

/// The CSV training log of a run folder (`step,split,metric,stage,value`), appended to as
/// training goes; a resumed run first drops the rows past its starting step.
pub struct TrainLog {
    path: PathBuf,
    file: File,
    has_baseline: bool,
}

impl TrainLog {
    /// Opens (or creates) `dir/train-log.csv`; rows with a step after `start` are removed.
    pub fn open(dir: &Path, start: u64) -> Result<Self, TrainError> {
        let path = dir.join(LOG_FILE);
        let io = |e: std::io::Error| TrainError::Options(format!("training log {}: {e}", path.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut keep = Vec::new();
        if start > 0 && path.exists() {
            for line in BufReader::new(File::open(&path).map_err(io)?).lines() {
                let line = line.map_err(io)?;
                let step = line.split(',').next().and_then(|s| s.parse::<u64>().ok());
                if step.is_some_and(|s| s <= start) {
                    keep.push(line);
                }
            }
        }
        let mut text = format!("{LOG_HEADER}\n");
        for l in &keep {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(&path, text).map_err(io)?;
        let file = OpenOptions::new().append(true).open(&path).map_err(io)?;
        let has_baseline = keep.iter().any(|l| l.split(',').nth(1) == Some("baseline"));
        Ok(Self { path, file, has_baseline })
    }

    /// Whether the log (as kept on opening) holds baseline rows; a run resumed from a log
    /// written before baselines existed writes them again.
    pub fn has_baseline(&self) -> bool {
        self.has_baseline
    }

    /// Appends rows `(metric, stage, value)` of one split at `step`.
    pub fn write(&mut self, step: u64, split: &str, rows: &[(&str, usize, f64)]) -> Result<(), TrainError> {
        let mut s = String::new();
        for (m, st, v) in rows {
            s.push_str(&format!("{step},{split},{m},{st},{v:.6}\n"));
        }
        self.file
            .write_all(s.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::Options(format!("training log {}: {e}", self.path.display())))
    }

    /// Held-out values as log rows.
    pub fn heldout_rows(v: &StageValues) -> Vec<(&'static str, usize, f64)> {
        let mut rows = Vec::new();
        for &(i, mse, ce) in &v.content {
            rows.push(("content_mse", i, mse));
            rows.push(("content_ce", i, ce));
        }
        for &(k, all, d) in &v.structure {
            rows.push(("structure", k, all));
            rows.push(("structure_decision", k, d));
        }
        rows
    }
}

/// One row of a training log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    /// Step.
    pub step: u64,
    /// `train`, `heldout` or `baseline`.
    pub split: String,
    /// Metric name.
    pub metric: String,
    /// Stage.
    pub stage: usize,
    /// Value.
    pub value: f64,
}

/// Reads a training log; the error names the file and line.
pub fn read_log(path: &Path) -> Result<Vec<LogRow>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.trim() == LOG_HEADER => {}
        _ => return Err(format!("{}: not a training log (the first line must be '{LOG_HEADER}')", path.display())),
    }
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let bad = || format!("{} line {}: expected step,split,metric,stage,value, found '{line}'", path.display(), n + 2);
        if f.len() != 5 {
            return Err(bad());
        }
        rows.push(LogRow {
            step: f[0].parse().map_err(|_| bad())?,
            split: f[1].to_string(),
            metric: f[2].to_string(),
            stage: f[3].parse().map_err(|_| bad())?,
            value: f[4].parse().map_err(|_| bad())?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_bits(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        use rand::Rng;
        (0..n).map(|_| if rng.random_bool(0.5) { 1.0 } else { -1.0 }).collect()
    }

    #[test]
    fn flow_sample_clamps_known_channels() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (b, l, bits) = (2, 4, 3);
        let full = random_bits(b * l * bits, &mut rng);
        let eps: Vec<f32> = (0..full.len()).map(|_| normal(&mut rng)).collect();
        let f = FlowSample::new(1, &full, &eps, vec![0.3, 0.8], l, bits);
        for i in 0..full.len() {
            let (bi, j) = (i / (l * bits), i % bits);
            if j < 1 {
                assert_eq!(f.z[i], full[i], "known channel holds the truth");
                assert_eq!(f.target[i], 0.0, "and has no velocity");
            } else {
                let t = f.t[bi];
                assert!((f.z[i] - (t * eps[i] + (1.0 - t) * full[i])).abs() < 1e-6);
                assert_eq!(f.target[i], eps[i] - full[i]);
            }
        }
    }

    /// The context-free denoiser is the best predictor from (z, t) alone: scaling its posterior
    /// mean either way, or predicting the constant mean, does worse on fresh samples.
    #[test]
    fn ctxfree_baseline_is_the_best_context_free_predictor() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (b, l, bits) = (400, 16, 4);
        let full = random_bits(b * l * bits, &mut rng);
        let eps: Vec<f32> = (0..full.len()).map(|_| normal(&mut rng)).collect();
        let t = FlowSample::times(&mut rng, b);
        let f = FlowSample::new(1, &full, &eps, t, l, bits);
        let loss = |pred: &[f32]| pred.iter().zip(&f.target).map(|(p, t)| ((p - t) as f64).powi(2)).sum::<f64>() / pred.len() as f64;
        let best = loss(&f.ctxfree_prediction(bits));
        let constant = loss(&vec![0.0; f.target.len()]);
        assert!(best < 0.8 * constant, "denoiser {best} vs constant {constant}");
        for scale in [0.8f64, 1.2] {
            let mut p = vec![0f32; f.z.len()];
            for (bi, &t) in f.t.iter().enumerate() {
                let t = t as f64;
                for q in 0..l {
                    for j in 1..bits {
                        let i = (bi * l + q) * bits + j;
                        let z = f.z[i] as f64;
                        let m = scale * (z * (1.0 - t) / (t * t)).tanh();
                        p[i] = ((z - m) / t) as f32;
                    }
                }
            }
            assert!(loss(&p) > best, "scaled posterior ×{scale}: {} ≤ {best}", loss(&p));
        }
    }

    #[test]
    fn log_resume_drops_later_rows_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TrainLog::open(dir.path(), 0).unwrap();
        log.write(0, "baseline", &[("structure_baseline_ctxfree", 0, 0.5)]).unwrap();
        log.write(10, "heldout", &[("structure", 0, 0.4), ("structure", 1, 0.3)]).unwrap();
        log.write(20, "heldout", &[("structure", 0, 0.2)]).unwrap();
        drop(log);
        let rows = read_log(&dir.path().join(LOG_FILE)).unwrap();
        assert_eq!(rows.len(), 4);
        // A run resumed from step 10 forgets what came after it.
        let mut log = TrainLog::open(dir.path(), 10).unwrap();
        log.write(15, "heldout", &[("structure", 0, 0.25)]).unwrap();
        let rows = read_log(&dir.path().join(LOG_FILE)).unwrap();
        let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
        assert_eq!(steps, vec![0, 10, 10, 15]);
        assert_eq!(rows[3], LogRow { step: 15, split: "heldout".into(), metric: "structure".into(), stage: 0, value: 0.25 });
        // A fresh run starts a fresh log.
        drop(TrainLog::open(dir.path(), 0).unwrap());
        assert!(read_log(&dir.path().join(LOG_FILE)).unwrap().is_empty());
        std::fs::write(dir.path().join("bad.csv"), "step,split,metric,stage,value\n1,train,x,zero,1\n").unwrap();
        let e = read_log(&dir.path().join("bad.csv")).unwrap_err();
        assert!(e.contains("bad.csv line 2"), "{e}");
    }
}
