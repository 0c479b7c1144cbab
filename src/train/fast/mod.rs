//! The host training path of the generator (issue 19): forward and backward of both branches
//! written out on flat `f32` buffers over the `gemm` crate's kernels, and AdamW, gradient
//! clipping and the EMA on those buffers — next to the burn-autodiff path, which stays the one
//! for GPUs and the reference the gradient checks compare against.
//!
//! The arithmetic is the burn path's (same formulas and f32 throughout; only the rounding order
//! differs), and the optimizer is burn's AdamW as configured by
//! [`super::generator::optimizer`]: every parameter tensor's gradient clipped to norm 1
//! separately, decoupled weight decay `p ← p·(1 − lr·wd)`, bias-corrected moments, ε = 1e-5.
//!
//! Determinism: a batch is split into two fixed halves, each computed on its own thread into its
//! own gradient buffer, and the halves are added in order, so the result does not depend on
//! scheduling or the thread count.

pub mod block;
pub mod branches;
pub mod layout;
pub mod ops;

use crate::model::generator::{GeneratorConfig, NvgGenerator, structure_position_table};
use crate::model::tokenizer::to_vec_f32;

use self::branches::{Flow, Group, HostBatch, Sums};
use self::layout::{GenLayout, flatten, unflatten};
use super::monitor::{FlowSample, StageValues, TeacherBatch};

/// How gradients are clipped before the AdamW update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clip {
    /// Each parameter tensor's gradient to at most the norm on its own (burn's `GradientClipping::Norm`).
    PerTensor,
    /// All gradients together to at most the norm (the method's, §4.8).
    Global,
}

/// AdamW settings.
#[derive(Clone, Copy, Debug)]
pub struct AdamW {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    /// The clipping norm.
    pub clip_norm: f32,
    /// Per tensor or global clipping.
    pub clip: Clip,
    /// Decay 1-dimensional tensors (biases, norm scales) too.
    pub decay_vectors: bool,
}

impl AdamW {
    /// burn's AdamW as the generator trainer configures it (the burn path's optimizer): β (0.9,
    /// 0.95), ε 1e-5, every tensor clipped to norm 1 on its own, decay on every tensor.
    pub fn generator(wd: f64) -> Self {
        Self { beta_1: 0.9, beta_2: 0.95, epsilon: 1e-5, weight_decay: wd as f32, clip_norm: 1.0, clip: Clip::PerTensor, decay_vectors: true }
    }

    /// The method's optimizer (§4.8): the same AdamW, but the global gradient norm clipped to 1
    /// and no weight decay on biases and norm scales (tensors of fewer than two dimensions).
    pub fn paper(wd: f64) -> Self {
        Self { clip: Clip::Global, decay_vectors: false, ..Self::generator(wd) }
    }
}

/// Parameters, optimizer moments and EMA of a generator, on flat host buffers.
pub struct HostTrainer {
    cfg: GeneratorConfig,
    layout: GenLayout,
    positions: Option<Vec<f32>>,
    /// The raw (trained) weights.
    pub params: Vec<f32>,
    /// AdamW first moments.
    pub moment_1: Vec<f32>,
    /// AdamW second moments.
    pub moment_2: Vec<f32>,
    /// AdamW steps taken.
    pub time: u32,
    /// The EMA weights.
    pub ema: Vec<f32>,
    adam: AdamW,
}

/// The losses of one step and the gradient of the objective.
pub struct StepResult {
    /// Per-stage values, as `BranchLosses::values` reports them.
    pub values: StageValues,
    /// ∂ objective / ∂ params, flat.
    pub grads: Vec<f32>,
}

impl HostTrainer {
    /// Takes the weights of `model` (raw) and `ema`, fresh moments.
    pub fn new(model: &NvgGenerator, ema: &NvgGenerator, adam: AdamW) -> Self {
        keep_freed_memory();
        let cfg = model.config().clone();
        let layout = GenLayout::new(&cfg);
        let params = flatten(model, &layout);
        let ema = flatten(ema, &layout);
        let n = params.len();
        Self {
            positions: structure_position_table(&cfg),
            cfg,
            layout,
            params,
            moment_1: vec![0.0; n],
            moment_2: vec![0.0; n],
            time: 0,
            ema,
            adam,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.cfg
    }

    /// The layout of the flat buffers.
    pub fn layout(&self) -> &GenLayout {
        &self.layout
    }

    /// `template` (any generator of this configuration) with the raw weights.
    pub fn model(&self, template: NvgGenerator) -> NvgGenerator {
        unflatten(template, &self.params)
    }

    /// `template` with the EMA weights.
    pub fn ema_model(&self, template: NvgGenerator) -> NvgGenerator {
        unflatten(template, &self.ema)
    }

    /// The objective (mean over content stages of x̂ MSE + code CE, plus the mean over
    /// structure samples of the velocity MSE, §4.7) and its gradient.
    pub fn loss_and_grads(&self, batch: &HostBatch, content: &[usize], flows: &[FlowSample]) -> StepResult {
        let b = batch.len();
        assert!(b > 0, "empty batch");
        let (l, c, bits) = (self.cfg.num_positions(), self.cfg.latent_channels, self.cfg.num_bits());
        let flows: Vec<Flow> = flows.iter().map(|f| Flow { stage: f.stage, z: &f.z, target: &f.target, t: &f.t }).collect();
        let wc = if content.is_empty() { 0.0 } else { 1.0 / content.len() as f32 };
        let ws = if flows.is_empty() { 0.0 } else { 1.0 / flows.len() as f32 };
        let half = b.div_ceil(2);
        let run = |first: usize, count: usize| -> (Vec<f32>, Vec<Sums>, Vec<Sums>) {
            let mut gr = vec![0f32; self.layout.total];
            if count == 0 {
                return (gr, vec![Sums::default(); content.len()], vec![Sums::default(); flows.len()]);
            }
            let group = Group { cfg: &self.cfg, layout: &self.layout, params: &self.params, batch, first, count };
            let cs = content.iter().map(|&i| group.content(i, wc, &mut gr)).collect();
            let ss = flows.iter().map(|f| group.structure(f, ws, &mut gr, self.positions.as_deref())).collect();
            (gr, cs, ss)
        };
        let ((mut grads, c0, s0), (g1, c1, s1)) = rayon::join(|| run(0, half), || run(half, b - half));
        grads.iter_mut().zip(&g1).for_each(|(a, b)| *a += b);
        let mut values = StageValues::default();
        for ((&i, a), bb) in content.iter().zip(&c0).zip(&c1) {
            let mse = (a.sq + bb.sq) / (b * l * c) as f64;
            let ce = (a.other + bb.other) / (b << i) as f64;
            values.content.push((i, mse, ce));
        }
        for ((f, a), bb) in flows.iter().zip(&s0).zip(&s1) {
            values.structure.push((f.stage, (a.sq + bb.sq) / (b * l * bits) as f64, (a.other + bb.other) / (b * l) as f64));
        }
        StepResult { values, grads }
    }

    /// One AdamW step at learning rate `lr` with `grads` (clipped here, tensor by tensor). The
    /// tensors are split into two runs of about equal size, one per thread; every element's
    /// arithmetic is independent of the split.
    pub fn apply(&mut self, mut grads: Vec<f32>, lr: f64) {
        let a = self.adam;
        self.time += 1;
        let time = self.time as i32;
        let tensors = &self.layout.tensors;
        let mid_tensor = tensors.iter().position(|t| t.offset >= self.layout.total / 2).unwrap_or(tensors.len());
        let mid = tensors.get(mid_tensor).map_or(self.layout.total, |t| t.offset);
        let global = match a.clip {
            Clip::PerTensor => None,
            Clip::Global => {
                // Sums of squares of the two halves, each on its own thread, added in order.
                let sq = |g: &[f32]| g.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
                let (a0, a1) = rayon::join(|| sq(&grads[..mid]), || sq(&grads[mid..]));
                let norm = (a0 + a1).sqrt() as f32;
                Some((a.clip_norm / (norm + f32::MIN_POSITIVE)).min(1.0))
            }
        };
        let step = Step {
            a,
            c1: 1.0 - a.beta_1.powi(time),
            c2: 1.0 - a.beta_2.powi(time),
            decay: (1.0 - lr * a.weight_decay as f64) as f32,
            lr: lr as f32,
            global,
        };
        let (g0, g1) = grads.split_at_mut(mid);
        let (p0, p1) = self.params.split_at_mut(mid);
        let (m0, m1) = self.moment_1.split_at_mut(mid);
        let (v0, v1) = self.moment_2.split_at_mut(mid);
        let (t0, t1) = tensors.split_at(mid_tensor);
        rayon::join(|| step.run(t0, 0, g0, p0, m0, v0), || step.run(t1, mid, g1, p1, m1, v1));
    }

    /// `ema ← decay·ema + (1 − decay)·params`.
    pub fn update_ema(&mut self, decay: f64) {
        let (d, e) = (decay as f32, (1.0 - decay) as f32);
        self.ema.iter_mut().zip(&self.params).for_each(|(a, p)| *a = *a * d + p * e);
    }
}

/// One AdamW update's constants.
#[derive(Clone, Copy)]
struct Step {
    a: AdamW,
    c1: f32,
    c2: f32,
    decay: f32,
    lr: f32,
    /// The global clipping factor (`None`: clip each tensor).
    global: Option<f32>,
}

impl Step {
    /// Updates `tensors` (whose offsets start at `base`) with the slices of their run.
    fn run(&self, tensors: &[layout::TensorAt], base: usize, g: &mut [f32], p: &mut [f32], m: &mut [f32], v: &mut [f32]) {
        let a = self.a;
        for t in tensors {
            let r = t.offset - base..t.offset - base + t.len();
            let g = &mut g[r.clone()];
            let coef = self.global.unwrap_or_else(|| {
                let norm = g.iter().map(|v| v * v).sum::<f32>().sqrt();
                (a.clip_norm / (norm + f32::MIN_POSITIVE)).min(1.0)
            });
            if coef < 1.0 {
                g.iter_mut().for_each(|v| *v *= coef);
            }
            let decay = if a.decay_vectors || t.shape.len() >= 2 { self.decay } else { 1.0 };
            let (p, m, v) = (&mut p[r.clone()], &mut m[r.clone()], &mut v[r]);
            for i in 0..g.len() {
                m[i] = m[i] * a.beta_1 + g[i] * (1.0 - a.beta_1);
                v[i] = v[i] * a.beta_2 + g[i] * g[i] * (1.0 - a.beta_2);
                let delta = (m[i] / self.c1) / ((v[i] / self.c2).sqrt() + a.epsilon);
                p[i] = p[i] * decay - delta * self.lr;
            }
        }
    }
}

/// Asks glibc to keep freed memory instead of returning it to the system: a step allocates and
/// frees the same few hundred megabytes of activations, and fresh pages from the kernel cost
/// a page fault and a zeroing each (measured ~4 % of a step).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds; any value is valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// The host copy of a teacher batch (canvases read back once).
pub fn host_batch(batch: &TeacherBatch) -> HostBatch {
    let enc = &batch.enc;
    HostBatch {
        classes: batch.classes.clone(),
        canvases: enc.quantized.canvases.iter().map(|t| to_vec_f32(t.clone())).collect(),
        labels: enc.hierarchies.iter().map(|h| (0..h.num_stages()).map(|s| h.map(s).to_vec()).collect()).collect(),
        codes: enc.quantized.codes.clone(),
    }
}

#[cfg(test)]
mod tests;

/// File of the host path's optimizer state in a run's `train-state/` folder.
pub const HOST_OPTIMIZER_FILE: &str = "host-optimizer.bin";
const STATE_MAGIC: &[u8; 8] = b"NVGADAM2";
const HEADER: usize = 28;
/// The first format: no step recorded (20-byte header).
const STATE_MAGIC_V1: &[u8; 8] = b"NVGADAM1";

impl HostTrainer {
    /// Writes the AdamW moments and step count to `path` atomically (a temporary file renamed
    /// over it): `NVGADAM2`, u64 parameter count, u64 training step of the checkpoint they
    /// belong to, u32 AdamW steps, then both moments as f32, all little-endian.
    pub fn save_state(&self, path: &std::path::Path, run_step: u64) -> Result<(), String> {
        let mut bytes = Vec::with_capacity(HEADER + 8 * self.moment_1.len());
        bytes.extend_from_slice(STATE_MAGIC);
        bytes.extend_from_slice(&(self.moment_1.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&run_step.to_le_bytes());
        bytes.extend_from_slice(&self.time.to_le_bytes());
        for v in self.moment_1.iter().chain(&self.moment_2) {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        crate::granularity::fsio::write_atomic(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Reads what [`Self::save_state`] wrote and returns the training step it belongs to (`None`
    /// for the first format, which did not record it); the message names the file and the
    /// problem. Nothing changes on an error.
    pub fn load_state(&mut self, path: &std::path::Path) -> Result<Option<u64>, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let n = self.moment_1.len();
        let bad = |what: &str| format!("{}: {what}", path.display());
        let (header, run_step) = match bytes.get(..8) {
            Some(m) if m == STATE_MAGIC && bytes.len() >= HEADER => {
                (HEADER, Some(u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"))))
            }
            Some(m) if m == STATE_MAGIC_V1 && bytes.len() >= 20 => (20, None),
            _ => return Err(bad("not a host optimizer state (bad header)")),
        };
        let count = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        if count != n as u64 {
            return Err(bad(&format!("holds {count} parameters, the generator has {n}")));
        }
        if bytes.len() != header + 8 * n {
            return Err(bad(&format!("{} bytes, expected {}", bytes.len(), header + 8 * n)));
        }
        self.time = u32::from_le_bytes(bytes[header - 4..header].try_into().expect("4 bytes"));
        for (i, chunk) in bytes[header..].chunks_exact(4).enumerate() {
            let v = f32::from_le_bytes(chunk.try_into().expect("4 bytes"));
            if i < n { self.moment_1[i] = v } else { self.moment_2[i - n] = v }
        }
        Ok(run_step)
    }
}
