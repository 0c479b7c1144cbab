//! The NVG generator ("NVGformer", method §4.1, §4.4–4.5): a content branch that predicts the
//! final canvas and per-cluster code logits, and a structure branch that predicts the velocity
//! of the rectified flow over the bit code of the hierarchy.
//!
//! Shapes (`B` batch, `L = side²` positions, `C` latent channels, `S` stages, `V` codebook size):
//! - content: canvas `[B, L, C]` (unscaled) → x̂ `[B, L, C]` and logits `[B, 2^stage, V]`;
//! - structure: canvas after the content stage `[B, L, C]` (unscaled), flow state `[B, L, S − 1]`
//!   → velocity `[B, L, S − 1]`.
//!
//! Field names follow the reference key layout (`content_blocks.0.linear1.weight`,
//! `structure_time_embed.in_layer.weight`, …) so that the official weights load through burn's
//! PyTorch adapter; `*.adaLN_modulation.1.*` is remapped to `*.ada_ln_modulation.*`.
//! The reference buffers `rope_ids` and `scale_factors` are not parameters here: RoPE ids are
//! computed from the structure maps, and the scale factors live in [`GeneratorConfig`].

use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear};
use burn::store::{ApplyResult, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::transformer::{HEAD_DIM, LastLayer, ParallelBlock, Rope, RopeLayout, xavier_linear};
use crate::granularity::text::one_line;
use crate::granularity::{num_stages_for, sigma_of_label};

/// Dimension of the sinusoidal time embedding fed to the structure branch's time MLP (§4.5).
pub const TIME_EMBED_DIM: usize = 64;
/// Flow time t ∈ [0, 1] is multiplied by this before the sinusoidal embedding (§4.5).
pub const TIME_FACTOR: f32 = 1000.0;
/// Longest period of the time embedding (§4.5).
pub const TIME_MAX_PERIOD: f64 = 10_000.0;

/// The content scale factors of the paper's tokenizer (§4.4): index i multiplies the canvas input
/// of stage i, the last value is the output scale. Only valid for that tokenizer (and the
/// reference test vectors, which reuse it); recompute for any other tokenizer (§10.8).
const PAPER_SCALE_FACTORS: [f32; 10] = [1.0, 4.1993, 3.4706, 3.0520, 2.7430, 2.4842, 2.2407, 2.0088, 1.7954, 1.6080];

/// The most parameters a generator may have (8 GB of f32 weights; the paper's d24 has 1.07 G).
pub const MAX_PARAMETERS: usize = 2_000_000_000;

/// Shape of the generator (§4.1, §10.1–10.2), stored with every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratorConfig {
    /// Number of blocks d, the same in both branches.
    pub depth: usize,
    /// Content branch width w.
    pub content_width: usize,
    /// Content branch heads (width / 64).
    pub content_heads: usize,
    /// Structure branch width w_s.
    pub structure_width: usize,
    /// Structure branch heads (width / 64).
    pub structure_heads: usize,
    /// MLP hidden = mlp_ratio × width, in both branches.
    pub mlp_ratio: usize,
    /// Codebook size V (classification head outputs).
    pub vocab_size: usize,
    /// Number of real classes; the null class used by CFG is `num_classes`.
    pub num_classes: usize,
    /// Latent channels C of the canvas.
    pub latent_channels: usize,
    /// Latent grid side (a power of two); `S = log2(side²) + 1` stages.
    pub grid_side: usize,
    /// Content scale factors, length `S + 1`: entry i scales the canvas input of stage i, the
    /// last entry is the output scale (§4.4, §10.8).
    pub scale_factors: Vec<f32>,
    /// Add a fixed 2-D sine-cosine embedding of each position's row and column to the structure
    /// branch's canvas-condition and flow tokens ([`structure_position_table`]). Not in the
    /// paper (off for its shapes and the reference vectors): there, RoPE carries only relative
    /// positions and the canvas at the first split is one code everywhere, so the branch cannot
    /// tell where on the grid a token sits and cannot learn even one image's first map
    /// (docs/training.md). Checkpoints written before it existed read as off.
    #[serde(default)]
    pub structure_positions: bool,
    /// Read the structure head as per-bit context logits λ instead of the velocity itself
    /// ([`context_logit_velocity`]): v = (z − tanh(z(1 − t)/t² + λ))/t, 0 on known channels.
    /// λ = 0 is exactly the best predictor that sees only each bit's own flow value (which the
    /// plain head has to learn first, and on the emoji set did not within a short run); the
    /// network only learns what the image, the class and the other positions add. Not in the
    /// paper (off for its shapes and the reference vectors; docs/training.md, finding 2).
    #[serde(default)]
    pub structure_context_logits: bool,
}

impl GeneratorConfig {
    /// The shape of `../shared/testvectors/official-tiny/README.md` §1.2: depth 2, content 128
    /// (2 heads), structure 64 (1 head), vocab 512, 10 classes, 16×16 grid, 32 channels.
    pub fn reference_tiny() -> Self {
        Self {
            depth: 2,
            content_width: 128,
            content_heads: 2,
            structure_width: 64,
            structure_heads: 1,
            mlp_ratio: 4,
            vocab_size: 512,
            num_classes: 10,
            latent_channels: 32,
            grid_side: 16,
            scale_factors: PAPER_SCALE_FACTORS.to_vec(),
            structure_positions: false,
            structure_context_logits: false,
        }
    }

    /// The bundled model's generator: 8×8 grid (7 stages). Its scale factors are placeholders
    /// (all 1) until they are measured on the trained tokenizer (§10.8).
    pub fn small() -> Self {
        Self {
            depth: 4,
            content_width: 256,
            content_heads: 4,
            structure_width: 128,
            structure_heads: 2,
            mlp_ratio: 4,
            vocab_size: 1024,
            num_classes: 32,
            latent_channels: 32,
            grid_side: 8,
            scale_factors: vec![1.0; 8],
            structure_positions: true,
            structure_context_logits: true,
        }
    }

    /// A very small generator for tests: 4×4 grid (5 stages), 8 channels.
    pub fn test_tiny() -> Self {
        Self {
            depth: 1,
            content_width: 64,
            content_heads: 1,
            structure_width: 64,
            structure_heads: 1,
            mlp_ratio: 4,
            vocab_size: 64,
            num_classes: 4,
            latent_channels: 8,
            grid_side: 4,
            scale_factors: vec![1.0; 6],
            structure_positions: true,
            structure_context_logits: true,
        }
    }

    /// The paper's shape at depth d (§4.1): content w = 64d with d heads, structure w/2 with d/2
    /// heads, 1000 classes, codebook 4096, 16×16 grid, 32 channels, the paper's scale factors.
    pub fn paper(depth: usize) -> Self {
        Self {
            depth,
            content_width: 64 * depth,
            content_heads: depth,
            structure_width: 32 * depth,
            structure_heads: depth / 2,
            mlp_ratio: 4,
            vocab_size: 4096,
            num_classes: 1000,
            latent_channels: 32,
            grid_side: 16,
            scale_factors: PAPER_SCALE_FACTORS.to_vec(),
            structure_positions: false,
            structure_context_logits: false,
        }
    }

    /// d16: 255.2M content + 64.4M structure parameters.
    pub fn d16() -> Self {
        Self::paper(16)
    }

    /// d20: 496.6M + 125.0M.
    pub fn d20() -> Self {
        Self::paper(20)
    }

    /// d24: 856.3M + 215.2M.
    pub fn d24() -> Self {
        Self::paper(24)
    }

    /// Names accepted by [`GeneratorConfig::preset`].
    pub const PRESETS: [&'static str; 6] = ["small", "test-tiny", "reference-tiny", "d16", "d20", "d24"];

    /// Looks a shape preset up by name.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "small" => Some(Self::small()),
            "test-tiny" => Some(Self::test_tiny()),
            "reference-tiny" => Some(Self::reference_tiny()),
            "d16" => Some(Self::d16()),
            "d20" => Some(Self::d20()),
            "d24" => Some(Self::d24()),
            _ => None,
        }
    }


    /// Number of stages S (9 for 16×16).
    pub fn num_stages(&self) -> usize {
        num_stages_for(self.grid_side).expect("grid side is validated to be a power of two")
    }

    /// Number of structure bits S − 1 (the flow variable's channels).
    pub fn num_bits(&self) -> usize {
        self.num_stages() - 1
    }

    /// Number of stages that run the structure network, S − 2 (stages 0..S−3; the last split
    /// is made from noise alone, §5.1).
    pub fn num_structure_stages(&self) -> usize {
        self.num_stages() - 2
    }

    /// Latent positions L.
    pub fn num_positions(&self) -> usize {
        self.grid_side * self.grid_side
    }

    /// Class id of the unconditional (CFG) class.
    pub fn null_class(&self) -> usize {
        self.num_classes
    }

    /// The RoPE axis layout of both branches.
    pub fn rope_layout(&self) -> RopeLayout {
        RopeLayout::new(self.num_bits())
    }

    /// Checks the configuration; the message names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        let stages = num_stages_for(self.grid_side).map_err(|e| format!("grid_side: {e}"))?;
        if stages < 3 {
            return Err(format!("grid_side {} is too small: the structure branch needs at least 2×2", self.grid_side));
        }
        if 8 + 2 * (stages - 1) + 4 > HEAD_DIM {
            return Err(format!("grid_side {}: {} structure bits do not fit the {HEAD_DIM}-dim RoPE", self.grid_side, stages - 1));
        }
        for (name, w, h) in [
            ("content", self.content_width, self.content_heads),
            ("structure", self.structure_width, self.structure_heads),
        ] {
            if h == 0 || h.checked_mul(HEAD_DIM) != Some(w) {
                return Err(format!("{name}_width {w} must equal {name}_heads {h} × head dim {HEAD_DIM}"));
            }
        }
        for (name, v) in [
            ("depth", self.depth),
            ("mlp_ratio", self.mlp_ratio),
            ("vocab_size", self.vocab_size),
            ("num_classes", self.num_classes),
            ("latent_channels", self.latent_channels),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.scale_factors.len() != stages + 1 {
            return Err(format!(
                "scale_factors has {} values, expected S + 1 = {} for a {}×{} grid",
                self.scale_factors.len(),
                stages + 1,
                self.grid_side,
                self.grid_side
            ));
        }
        if let Some(i) = self.scale_factors.iter().position(|s| !s.is_finite() || *s == 0.0) {
            return Err(format!("scale_factors[{i}] = {} must be finite and non-zero", self.scale_factors[i]));
        }
        // Bounds far above any real shape, so that a damaged or hostile configuration is refused
        // instead of asking for more memory than exists (the paper's d24 has width 1536).
        for (name, v, max) in [
            ("depth", self.depth, 256),
            ("content_width", self.content_width, 16_384),
            ("structure_width", self.structure_width, 16_384),
            ("mlp_ratio", self.mlp_ratio, 16),
            ("vocab_size", self.vocab_size, 1 << 20),
            ("num_classes", self.num_classes, 1 << 20),
            ("latent_channels", self.latent_channels, 4096),
        ] {
            if v > max {
                return Err(format!("{name} {v} is out of range (at most {max})"));
            }
        }
        let params = self.param_count().total();
        if params > MAX_PARAMETERS {
            return Err(format!("the configuration has {params} parameters, more than the {MAX_PARAMETERS} this build loads"));
        }
        Ok(())
    }

    /// Parameter counts of both branches, computed from the shape alone (§4.1).
    pub fn param_count(&self) -> ParamCount {
        let (s, l, c) = (self.num_stages(), self.num_positions(), self.latent_channels);
        let classes = self.num_classes + 1;
        let w = self.content_width;
        let content = l * c // E_start
            + c * w + w // canvas embedding
            + classes * w
            + s * w // stage embedding
            + self.depth * ParallelBlock::param_count(w, self.mlp_ratio * w)
            + LastLayer::param_count(w, c)
            + c * self.vocab_size + self.vocab_size; // classification head
        let ws = self.structure_width;
        let bits = s - 1;
        let structure = bits * ws + ws // structure embedding
            + classes * ws
            + c * ws + ws // canvas-condition embedding
            + (s - 2) * ws // stage embedding
            + TIME_EMBED_DIM * ws + ws + ws * ws + ws // time MLP
            + self.depth * ParallelBlock::param_count(ws, self.mlp_ratio * ws)
            + LastLayer::param_count(ws, bits);
        ParamCount { content, structure }
    }
}

/// Parameters per branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCount {
    /// Content branch.
    pub content: usize,
    /// Structure branch.
    pub structure: usize,
}

impl ParamCount {
    /// Both branches.
    pub fn total(&self) -> usize {
        self.content + self.structure
    }
}

/// The classification head `Linear_{C→V}` applied to cluster-mean residuals (reference `cls_head.linear`).
#[derive(Module, Debug)]
pub struct ClsHead {
    pub(super) linear: Linear,
}

/// Time MLP: `Linear_{64→w_s} → SiLU → Linear_{w_s→w_s}` (§4.5).
#[derive(Module, Debug)]
pub struct TimeEmbed {
    pub(super) in_layer: Linear,
    pub(super) out_layer: Linear,
}

/// The generator: content branch (§4.4) and structure branch (§4.5).
#[derive(Module, Debug)]
pub struct NvgGenerator {
    // ---- content branch (§4.4)
    /// The learned "empty canvas" E_start `[1, L, C]`, used as the stage-0 input.
    pub(super) content_start_embed: Param<Tensor<3>>,
    pub(super) content_embed: Linear,
    pub(super) content_class_embed: Embedding,
    pub(super) content_stage_embed: Embedding,
    pub(super) content_blocks: Vec<ParallelBlock>,
    pub(super) x0_head: LastLayer,
    pub(super) cls_head: ClsHead,
    // ---- structure branch (§4.5)
    pub(super) structure_embed: Linear,
    pub(super) structure_class_embed: Embedding,
    pub(super) structure_content_cond_embed: Linear,
    pub(super) structure_stage_embed: Embedding,
    pub(super) structure_time_embed: TimeEmbed,
    pub(super) structure_blocks: Vec<ParallelBlock>,
    pub(super) structure_head: LastLayer,
    #[module(skip)]
    config: GeneratorConfig,
}

fn normal_embedding(rows: usize, width: usize, device: &Device) -> Embedding {
    EmbeddingConfig::new(rows, width)
        .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
        .init(device)
}

/// Sinusoidal embedding of flow times (§4.5): τ = 1000·t, frequencies exp(−ln(10⁴)·k/32),
/// features `[cos(τ f_k)…, sin(τ f_k)…]` (cos first). `[B]` → `[B, 64]`.
/// The arithmetic is float32, as in the reference, so that τ·f_k rounds the same way.
pub fn time_embedding(t: &[f32], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(time_embedding_values(t), [t.len(), TIME_EMBED_DIM]), device)
}

/// The values of [`time_embedding`], `[B, 64]` row-major on the host.
pub fn time_embedding_values(t: &[f32]) -> Vec<f32> {
    let half = TIME_EMBED_DIM / 2;
    let neg_log = -(TIME_MAX_PERIOD.ln()) as f32;
    let freqs: Vec<f32> = (0..half).map(|k| (neg_log * k as f32 / half as f32).exp()).collect();
    let mut out = Vec::with_capacity(t.len() * TIME_EMBED_DIM);
    for &ti in t {
        let tau = TIME_FACTOR * ti;
        let args: Vec<f32> = freqs.iter().map(|f| tau * f).collect();
        out.extend(args.iter().map(|a| (*a as f64).cos() as f32));
        out.extend(args.iter().map(|a| (*a as f64).sin() as f32));
    }
    out
}

/// Per-image cluster-averaging matrices `[B, K, L]` of a stage: row k of image b holds
/// `1 / max(count_k, 1)` at the positions labelled k, so empty clusters get a zero mean (§10.3).
fn cluster_mean_matrix(labels: &[&[u32]], k: usize, l: usize, device: &Device) -> Tensor<3> {
    let b = labels.len();
    let mut a = vec![0f32; b * k * l];
    for (bi, map) in labels.iter().enumerate() {
        let mut counts = vec![0usize; k];
        for &lab in map.iter() {
            counts[lab as usize] += 1;
        }
        for (p, &lab) in map.iter().enumerate() {
            a[(bi * k + lab as usize) * l + p] = 1.0 / counts[lab as usize].max(1) as f32;
        }
    }
    Tensor::from_data(TensorData::new(a, [b, k, l]), device)
}

/// The structure branch's absolute position embedding `[L × W_s]` (row-major positions) when
/// `cfg.structure_positions` is on, else `None`: the first half of each row holds the grid row,
/// the second half the column, each as `[sin(r·ω_k) …, cos(r·ω_k) …]` with ω_k = 10000^(−k/(D/4))
/// for k < D/4 and D = W_s (the usual 2-D sine-cosine table). Fixed, so it adds no weights and
/// the host path and burn path build the same values.
pub fn structure_position_table(cfg: &GeneratorConfig) -> Option<Vec<f32>> {
    if !cfg.structure_positions {
        return None;
    }
    let (side, w) = (cfg.grid_side, cfg.structure_width);
    let quarter = w / 4;
    let mut out = vec![0f32; side * side * w];
    for p in 0..side * side {
        let row = &mut out[p * w..(p + 1) * w];
        for (axis, pos) in [(0, p / side), (1, p % side)] {
            let half = &mut row[axis * 2 * quarter..(axis + 1) * 2 * quarter];
            for k in 0..quarter {
                let omega = 10_000f64.powf(-(k as f64) / quarter as f64);
                let a = pos as f64 * omega;
                half[k] = a.sin() as f32;
                half[quarter + k] = a.cos() as f32;
            }
        }
    }
    Some(out)
}

/// Smallest flow time the context-logit head divides by (t is never below it in sampling; in
/// training a logit-normal t under 1e-4 is vanishingly rare).
pub const CONTEXT_LOGIT_MIN_T: f32 = 1e-4;

/// The velocity of the context-logit structure head (`structure_context_logits`), on the host:
/// for unknown channels j ≥ `stage`, with λ the head's output,
/// v = (z − tanh(z·(1 − t)/t² + λ))/t — the posterior mean of a ±1 bit whose own noisy value
/// is z = tε + (1 − t)b, shifted by the log-odds λ the context adds; known channels get 0.
/// `out` holds λ on entry and v on return, `[B, L, bits]`; `t` has one value per image.
pub fn context_logit_velocity(out: &mut [f32], z: &[f32], t: &[f32], stage: usize, bits: usize) {
    assert!(
        !t.is_empty() && out.len() == z.len() && out.len() % (t.len() * bits.max(1)) == 0,
        "context_logit_velocity: {} outputs, {} flow values, {} times, {bits} bits do not fit",
        out.len(),
        z.len(),
        t.len()
    );
    let per_image = out.len() / t.len();
    for (bi, &tb) in t.iter().enumerate() {
        let tb = tb.max(CONTEXT_LOGIT_MIN_T);
        let gain = (1.0 - tb) / (tb * tb);
        let range = bi * per_image..(bi + 1) * per_image;
        for (i, (o, &zv)) in out[range.clone()].iter_mut().zip(&z[range]).enumerate() {
            *o = if i % bits < stage { 0.0 } else { (zv - (zv * gain + *o).tanh()) / tb };
        }
    }
}

fn int_ids(ids: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(v, [ids.len()]), device)
}

impl NvgGenerator {
    /// A randomly initialised generator (§4.8): xavier-uniform Linears with zero bias (adaLN and
    /// modulation included), embedding tables N(0, 0.02²), E_start N(0, 1), norm scales 1.
    ///
    /// # Panics
    /// If the configuration is invalid ([`GeneratorConfig::validate`]).
    pub fn new(cfg: &GeneratorConfig, device: &Device) -> Self {
        if let Err(e) = cfg.validate() {
            panic!("invalid generator config: {e}");
        }
        let (s, l, c) = (cfg.num_stages(), cfg.num_positions(), cfg.latent_channels);
        let (w, ws, bits) = (cfg.content_width, cfg.structure_width, cfg.num_bits());
        let classes = cfg.num_classes + 1;
        Self {
            content_start_embed: Initializer::Normal { mean: 0.0, std: 1.0 }.init([1, l, c], device),
            content_embed: xavier_linear(c, w, device),
            content_class_embed: normal_embedding(classes, w, device),
            content_stage_embed: normal_embedding(s, w, device),
            content_blocks: (0..cfg.depth)
                .map(|_| ParallelBlock::new(w, cfg.content_heads, cfg.mlp_ratio, device))
                .collect(),
            x0_head: LastLayer::new(w, c, device),
            cls_head: ClsHead { linear: xavier_linear(c, cfg.vocab_size, device) },
            structure_embed: xavier_linear(bits, ws, device),
            structure_class_embed: normal_embedding(classes, ws, device),
            structure_content_cond_embed: xavier_linear(c, ws, device),
            structure_stage_embed: normal_embedding(cfg.num_structure_stages(), ws, device),
            structure_time_embed: TimeEmbed {
                in_layer: xavier_linear(TIME_EMBED_DIM, ws, device),
                out_layer: xavier_linear(ws, ws, device),
            },
            structure_blocks: (0..cfg.depth)
                .map(|_| ParallelBlock::new(ws, cfg.structure_heads, cfg.mlp_ratio, device))
                .collect(),
            structure_head: LastLayer::new(ws, bits, device),
            config: cfg.clone(),
        }
    }

    /// The configuration this generator was built with.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// The device its parameters live on.
    pub fn device(&self) -> Device {
        self.content_start_embed.val().device()
    }

    /// The content blocks, in order (for inspecting intermediate activations).
    pub fn content_blocks(&self) -> &[ParallelBlock] {
        &self.content_blocks
    }

    /// The structure blocks, in order.
    pub fn structure_blocks(&self) -> &[ParallelBlock] {
        &self.structure_blocks
    }

    fn check_batch(&self, what: &str, classes: &[usize], x: &Tensor<3>, channels: usize, labels: &[&[u32]], stage: usize) {
        let [b, l, ch] = x.dims();
        let cfg = &self.config;
        assert_eq!(b, classes.len(), "{what}: {} classes for a batch of {b}", classes.len());
        assert_eq!(b, labels.len(), "{what}: {} label maps for a batch of {b}", labels.len());
        assert_eq!(l, cfg.num_positions(), "{what}: {l} positions, expected {}", cfg.num_positions());
        assert_eq!(ch, channels, "{what}: {ch} channels, expected {channels}");
        if let Some(&y) = classes.iter().find(|&&y| y > cfg.num_classes) {
            panic!("{what}: class {y} out of range (null class is {})", cfg.num_classes);
        }
        for map in labels {
            assert_eq!(map.len(), l, "{what}: label map has {} entries, expected {l}", map.len());
            if let Some(&lab) = map.iter().find(|&&lab| (lab as usize) >> stage != 0) {
                panic!("{what}: label {lab} out of range for stage {stage}");
            }
        }
    }

    /// RoPE tables of the content sequences of `stage` (§4.3).
    pub fn content_rope(&self, stage: usize, labels: &[&[u32]], device: &Device) -> Rope {
        Rope::new(&self.config.rope_layout(), &self.rope_ids(stage, labels, false), device)
    }

    /// RoPE tables of the structure sequences of `stage` (§4.3).
    pub fn structure_rope(&self, stage: usize, labels: &[&[u32]], device: &Device) -> Rope {
        Rope::new(&self.config.rope_layout(), &self.rope_ids(stage, labels, true), device)
    }

    /// Position ids of each image's content (`structure = false`) or structure sequence at `stage`.
    pub fn rope_ids(&self, stage: usize, labels: &[&[u32]], structure: bool) -> Vec<Vec<u32>> {
        let layout = self.config.rope_layout();
        let bits = self.config.num_bits();
        labels
            .iter()
            .map(|map| {
                let sigma: Vec<u8> = map.iter().flat_map(|&lab| sigma_of_label(lab, stage, bits)).collect();
                if structure {
                    layout.structure_ids(&sigma, self.config.grid_side)
                } else {
                    layout.content_ids(&sigma, self.config.grid_side)
                }
            })
            .collect()
    }

    /// Content input tokens `[B, 1 + L, W]` and conditioning vector `[B, W]` of `stage`
    /// (§4.4 steps 1–2): `[ClassEmb(y) ; Linear(z)]` with z = E_start at stage 0, else σ[i]·x_i;
    /// `vec = ClassEmb(y) + StageEmb(i)`.
    pub fn content_inputs(&self, stage: usize, classes: &[usize], canvas: Tensor<3>) -> (Tensor<3>, Tensor<2>) {
        let [b, l, c] = canvas.dims();
        let device = canvas.device();
        let class_emb = self.content_class_embed.weight.val().select(0, int_ids(classes, &device)); // [B, W]
        let z = if stage == 0 {
            self.content_start_embed.val().expand([b, l, c])
        } else {
            canvas.mul_scalar(self.config.scale_factors[stage])
        };
        let tokens = Tensor::cat(vec![class_emb.clone().unsqueeze_dim::<3>(1), self.content_embed.forward(z)], 1);
        let stage_emb = self.content_stage_embed.weight.val().select(0, int_ids(&[stage], &device)); // [1, W]
        (tokens, class_emb + stage_emb)
    }

    /// Content branch at `stage` (§4.4).
    ///
    /// - `classes`: one class id per image (`num_classes` is the null class);
    /// - `canvas`: the canvas input x_stage `[B, L, C]`, unscaled (zeros at stage 0; it is not
    ///   read there: the input is E_start and the residual is x̂ − 0);
    /// - `labels`: each image's stage-`stage` label map (values in `0..2^stage`; clusters may be
    ///   empty or unbalanced).
    ///
    /// Returns x̂ `[B, L, C]`, the predicted final canvas (unscaled), and the per-cluster logits
    /// `[B, 2^stage, V]` of the cluster-mean residual x̂ − x_stage (row k = cluster label k).
    pub fn content_forward(
        &self,
        stage: usize,
        classes: &[usize],
        canvas: Tensor<3>,
        labels: &[&[u32]],
    ) -> (Tensor<3>, Tensor<3>) {
        let cfg = &self.config;
        assert!(stage < cfg.num_stages(), "content stage {stage} out of range (S = {})", cfg.num_stages());
        self.check_batch("content_forward", classes, &canvas, cfg.latent_channels, labels, stage);
        let device = canvas.device();
        let l = cfg.num_positions();

        let (mut tokens, vec) = self.content_inputs(stage, classes, canvas.clone());
        let rope = self.content_rope(stage, labels, &device);
        for block in &self.content_blocks {
            tokens = block.forward(tokens, vec.clone(), &rope);
        }
        let h = tokens.narrow(1, 1, l); // drop the class token
        let x0_hat = self.x0_head.forward(h, vec).div_scalar(cfg.scale_factors[cfg.num_stages()]);

        let residual = if stage == 0 { x0_hat.clone() } else { x0_hat.clone() - canvas };
        let means = cluster_mean_matrix(labels, 1 << stage, l, &device).matmul(residual); // [B, K, C]
        let logits = self.cls_head.linear.forward(means);
        (x0_hat, logits)
    }

    /// Structure conditioning vector `[B, W_s]` (§4.5 step 2):
    /// `ClassEmb_s(y) + TimeMLP(emb(t)) + StageEmb_s(i)`. `t` has one entry, or one per image.
    pub fn structure_vec(&self, stage: usize, classes: &[usize], t: &[f32], device: &Device) -> Tensor<2> {
        let b = classes.len();
        let t: Vec<f32> = match t.len() {
            1 => vec![t[0]; b],
            n if n == b => t.to_vec(),
            n => panic!("structure time: {n} values for a batch of {b}"),
        };
        let class_emb = self.structure_class_embed.weight.val().select(0, int_ids(classes, device));
        let te = &self.structure_time_embed;
        let time = te.out_layer.forward(silu(te.in_layer.forward(time_embedding(&t, device))));
        let stage_emb = self.structure_stage_embed.weight.val().select(0, int_ids(&[stage], device));
        class_emb + time + stage_emb
    }

    /// Structure input tokens `[B, 1 + 2L, W_s]` (§4.5 step 1):
    /// `[ClassEmb_s(y) ; Linear(x_{i+1}) ; Linear(z)]`, plus the position table on the last
    /// 2L tokens when `structure_positions` is on.
    pub fn structure_tokens(&self, classes: &[usize], canvas_next: Tensor<3>, z: Tensor<3>) -> Tensor<3> {
        let device = canvas_next.device();
        let class_emb = self.structure_class_embed.weight.val().select(0, int_ids(classes, &device));
        let mut cond = self.structure_content_cond_embed.forward(canvas_next);
        let mut flow = self.structure_embed.forward(z);
        if let Some(table) = structure_position_table(&self.config) {
            let (l, w) = (self.config.num_positions(), self.config.structure_width);
            let pos: Tensor<3> = Tensor::<2>::from_data(TensorData::new(table, [l, w]), &device).unsqueeze_dim(0);
            cond = cond + pos.clone();
            flow = flow + pos;
        }
        Tensor::cat(vec![class_emb.unsqueeze_dim::<3>(1), cond, flow], 1)
    }

    /// Structure branch at structure stage `stage` (0 ≤ stage < S − 2), §4.5.
    ///
    /// - `canvas_next`: the canvas after content stage `stage`, x_{stage+1} `[B, L, C]`, unscaled;
    /// - `labels`: each image's stage-`stage` label map (the known structure, used by RoPE);
    /// - `z`: the flow state `[B, L, S − 1]` (known bits ±1, padding 0, unknown bits noisy);
    /// - `t`: the flow time (1 = noise), one value or one per image.
    ///
    /// Returns the predicted velocity `[B, L, S − 1]`.
    pub fn structure_forward(
        &self,
        stage: usize,
        classes: &[usize],
        canvas_next: Tensor<3>,
        labels: &[&[u32]],
        z: Tensor<3>,
        t: &[f32],
    ) -> Tensor<3> {
        let cfg = &self.config;
        assert!(
            stage < cfg.num_structure_stages(),
            "structure stage {stage} out of range (the network runs at stages 0..{})",
            cfg.num_structure_stages()
        );
        self.check_batch("structure_forward", classes, &canvas_next, cfg.latent_channels, labels, stage);
        assert_eq!(z.dims(), [classes.len(), cfg.num_positions(), cfg.num_bits()], "structure_forward: z must be [B, L, S − 1]");
        let device = canvas_next.device();
        let l = cfg.num_positions();

        let vec = self.structure_vec(stage, classes, t, &device);
        let mut tokens = self.structure_tokens(classes, canvas_next, z.clone());
        let rope = self.structure_rope(stage, labels, &device);
        for block in &self.structure_blocks {
            tokens = block.forward(tokens, vec.clone(), &rope);
        }
        let head = self.structure_head.forward(tokens.narrow(1, 1 + l, l), vec);
        if !cfg.structure_context_logits {
            return head;
        }
        // The context-logit head (see `context_logit_velocity`, its host twin).
        let b = classes.len();
        let bits = cfg.num_bits();
        let ts: Vec<f32> = (0..b).map(|i| t[if t.len() == 1 { 0 } else { i }].max(CONTEXT_LOGIT_MIN_T)).collect();
        let gain: Vec<f32> = ts.iter().map(|&t| (1.0 - t) / (t * t)).collect();
        let inv_t: Vec<f32> = ts.iter().map(|&t| 1.0 / t).collect();
        let gain: Tensor<3> = Tensor::from_data(TensorData::new(gain, [b, 1, 1]), &device);
        let inv_t: Tensor<3> = Tensor::from_data(TensorData::new(inv_t, [b, 1, 1]), &device);
        let unknown: Vec<f32> = (0..bits).map(|j| if j < stage { 0.0 } else { 1.0 }).collect();
        let unknown: Tensor<3> = Tensor::from_data(TensorData::new(unknown, [1, 1, bits]), &device);
        let posterior = (z.clone() * gain + head).tanh();
        (z - posterior) * inv_t * unknown
    }

    /// Loads reference weights stored as safetensors with the official key names (no prefix),
    /// e.g. `testvectors/official-tiny/generator.safetensors`. Every parameter must be present;
    /// when the file holds the `scale_factors` buffer it must equal the configuration's.
    pub fn from_reference_safetensors(path: &Path, cfg: &GeneratorConfig, device: &Device) -> Result<Self, GeneratorImportError> {
        let err = |reason: String| GeneratorImportError { path: path.into(), reason };
        if !path.exists() {
            return Err(err("not found".into()));
        }
        cfg.validate().map_err(|e| err(format!("invalid config: {e}")))?;
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .with_key_remapping(r"adaLN_modulation\.\d+\.", "ada_ln_modulation.")
            .allow_partial(true);
        Self::load_reference(&mut store, path, cfg, device)
    }

    /// Loads the generator part (`nvgformer.*`) of an official PyTorch checkpoint
    /// (`{'state_dict': …}`, e.g. `nvg_official_layout.ckpt`), through burn's PyTorch store.
    pub fn from_reference_pytorch(path: &Path, cfg: &GeneratorConfig, device: &Device) -> Result<Self, GeneratorImportError> {
        let err = |reason: String| GeneratorImportError { path: path.into(), reason };
        if !path.exists() {
            return Err(err("not found".into()));
        }
        cfg.validate().map_err(|e| err(format!("invalid config: {e}")))?;
        let mut store = PytorchStore::from_file(path)
            .with_top_level_key("state_dict")
            .with_key_remapping(r"^nvgformer\.", "")
            .with_key_remapping(r"adaLN_modulation\.\d+\.", "ada_ln_modulation.")
            .allow_partial(true);
        Self::load_reference(&mut store, path, cfg, device)
    }

    fn load_reference<St: ModuleStore>(
        store: &mut St,
        path: &Path,
        cfg: &GeneratorConfig,
        device: &Device,
    ) -> Result<Self, GeneratorImportError>
    where
        St::Error: std::fmt::Display,
    {
        let err = |reason: String| GeneratorImportError { path: path.into(), reason };
        if let Some(found) = read_scale_factors(store).map_err(err)? {
            let same = found.len() == cfg.scale_factors.len()
                && found.iter().zip(&cfg.scale_factors).all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0));
            if !same {
                return Err(err(format!(
                    "the file's scale_factors {found:?} differ from the configuration's {:?}",
                    cfg.scale_factors
                )));
            }
        }
        let mut model = Self::new(cfg, device);
        let result = model.load_from(store).map_err(|e| err(one_line(&e.to_string())))?;
        check_apply(&result).map_err(err)?;
        Ok(model)
    }
}

/// Reads the reference `scale_factors` buffer of a store, if present.
fn read_scale_factors<St: ModuleStore>(store: &mut St) -> Result<Option<Vec<f32>>, String>
where
    St::Error: std::fmt::Display,
{
    let Some(t) = store.get_tensor("scale_factors").map_err(|e| one_line(&e.to_string()))? else {
        return Ok(None);
    };
    let data = burn::store::bridge::to_data(t).map_err(|e| one_line(&format!("scale_factors: {e:?}")))?;
    let v = data.convert::<f32>().try_into_vec::<f32>().map_err(|e| format!("scale_factors: {e:?}"))?;
    Ok(Some(v))
}

/// Reads the `scale_factors` buffer of a reference safetensors file (`None` when absent).
pub fn reference_scale_factors(path: &Path) -> Result<Option<Vec<f32>>, GeneratorImportError> {
    let mut store = SafetensorsStore::from_file(path);
    read_scale_factors(&mut store).map_err(|reason| GeneratorImportError { path: path.into(), reason })
}

/// Reference tensors that are not parameters here (buffers) or belong to another model.
fn is_ignored_reference_key(key: &str) -> bool {
    key == "rope_ids" || key == "scale_factors" || key.starts_with("first_stage_model.")
}

fn check_apply(r: &ApplyResult) -> Result<(), String> {
    if !r.errors.is_empty() {
        return Err(one_line(&format!("{:?}", r.errors)));
    }
    if !r.missing.is_empty() {
        let names: Vec<&str> = r.missing.iter().take(5).map(|(p, _)| p.as_str()).collect();
        return Err(format!("{} tensors missing, e.g. {}", r.missing.len(), names.join(", ")));
    }
    let unexpected: Vec<&str> = r.unused.iter().map(|s| s.as_str()).filter(|k| !is_ignored_reference_key(k)).collect();
    if !unexpected.is_empty() {
        return Err(format!(
            "{} unexpected tensors, e.g. {}",
            unexpected.len(),
            unexpected.iter().take(5).copied().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}

/// Errors while importing reference generator weights; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("generator weights {path}: {reason}")]
pub struct GeneratorImportError {
    /// File.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}


#[cfg(test)]
mod tests {
    use super::*;

    fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    fn presets() -> Vec<(&'static str, GeneratorConfig)> {
        vec![
            ("reference_tiny", GeneratorConfig::reference_tiny()),
            ("small", GeneratorConfig::small()),
            ("test_tiny", GeneratorConfig::test_tiny()),
            ("d16", GeneratorConfig::d16()),
            ("d20", GeneratorConfig::d20()),
            ("d24", GeneratorConfig::d24()),
        ]
    }

    #[test]
    fn presets_are_valid_and_roundtrip() {
        for (name, cfg) in presets() {
            cfg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(cfg.scale_factors.len(), cfg.num_stages() + 1, "{name}");
            let json = serde_json::to_string(&cfg).unwrap();
            assert_eq!(serde_json::from_str::<GeneratorConfig>(&json).unwrap(), cfg, "{name}");
        }
        let r = GeneratorConfig::reference_tiny();
        assert_eq!((r.num_stages(), r.num_structure_stages(), r.num_bits()), (9, 7, 8));
        assert_eq!(GeneratorConfig::small().num_stages(), 7);
        assert_eq!(GeneratorConfig::test_tiny().num_stages(), 5);
        let mut bad = GeneratorConfig::test_tiny();
        bad.scale_factors.pop();
        assert!(bad.validate().unwrap_err().contains("scale_factors"));
        let mut bad = GeneratorConfig::test_tiny();
        bad.content_heads = 2;
        assert!(bad.validate().unwrap_err().contains("content_width"));
    }

    /// Checkpoints written before the position table existed read as "off", the paper's shapes
    /// keep it off, and the table tells every position apart (rows and columns both vary).
    #[test]
    fn structure_positions_default_off_and_table_separates_positions() {
        let mut v = serde_json::to_value(GeneratorConfig::small()).unwrap();
        v.as_object_mut().unwrap().remove("structure_positions");
        let old: GeneratorConfig = serde_json::from_value(v).unwrap();
        assert!(!old.structure_positions);
        assert!(structure_position_table(&old).is_none());
        assert!(!GeneratorConfig::d16().structure_positions && !GeneratorConfig::reference_tiny().structure_positions);
        let cfg = GeneratorConfig::small();
        let t = structure_position_table(&cfg).unwrap();
        let w = cfg.structure_width;
        let l = cfg.num_positions();
        assert_eq!(t.len(), l * w);
        for p in 0..l {
            for q in 0..p {
                let d: f32 = (0..w).map(|i| (t[p * w + i] - t[q * w + i]).powi(2)).sum();
                assert!(d > 0.1, "positions {p} and {q} differ by only {d}");
            }
        }
        // Row p/side lives in the first half, the column in the second.
        let side = cfg.grid_side;
        assert_eq!(t[..w / 2], t[(side - 1) * w..(side - 1) * w + w / 2], "same row, same first half");
        assert_eq!(t[w / 2..w], t[side * w + w / 2..(side + 1) * w], "same column, same second half");
    }

    #[test]
    fn paper_parameter_counts() {
        // §4.1: content / structure parameters in millions.
        for (cfg, content, structure) in [
            (GeneratorConfig::d16(), 255.2, 64.4),
            (GeneratorConfig::d20(), 496.6, 125.0),
            (GeneratorConfig::d24(), 856.3, 215.2),
        ] {
            let n = cfg.param_count();
            let (c, s) = (n.content as f64 / 1e6, n.structure as f64 / 1e6);
            assert!((c - content).abs() <= 0.1, "d{}: content {c:.3}M, paper {content}M", cfg.depth);
            assert!((s - structure).abs() <= 0.1, "d{}: structure {s:.3}M, paper {structure}M", cfg.depth);
        }
    }

    #[test]
    fn analytic_count_matches_instantiated_models() {
        let dev = Device::flex();
        for cfg in [GeneratorConfig::test_tiny(), GeneratorConfig::reference_tiny()] {
            let m = NvgGenerator::new(&cfg, &dev);
            assert_eq!(m.num_params(), cfg.param_count().total());
        }
        // README §1.2 of the reference vectors: 709,160 parameters.
        assert_eq!(GeneratorConfig::reference_tiny().param_count().total(), 709_160);
    }

    fn balanced_labels(side: usize, stage: usize) -> Vec<u32> {
        (0..side * side).map(|p| (p * (1 << stage) / (side * side)) as u32).collect()
    }

    #[test]
    fn forward_shapes() {
        let dev = Device::flex();
        let cfg = GeneratorConfig::test_tiny();
        let m = NvgGenerator::new(&cfg, &dev);
        let (l, c, bits) = (cfg.num_positions(), cfg.latent_channels, cfg.num_bits());
        for stage in 0..cfg.num_stages() {
            let labels = balanced_labels(cfg.grid_side, stage);
            let canvas = Tensor::<3>::random([2, l, c], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
            let (x0, logits) = m.content_forward(stage, &[0, cfg.null_class()], canvas.clone(), &[&labels, &labels]);
            assert_eq!(x0.dims(), [2, l, c]);
            assert_eq!(logits.dims(), [2, 1 << stage, cfg.vocab_size]);
            if stage < cfg.num_structure_stages() {
                let z = Tensor::<3>::random([2, l, bits], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
                let v = m.structure_forward(stage, &[1, 2], canvas, &[&labels, &labels], z, &[0.3, 0.9]);
                assert_eq!(v.dims(), [2, l, bits]);
                assert!(to_vec(v).iter().all(|x| x.is_finite()));
            }
        }
    }

    #[test]
    fn empty_cluster_gives_no_nan() {
        let dev = Device::flex();
        let cfg = GeneratorConfig::test_tiny();
        let m = NvgGenerator::new(&cfg, &dev);
        let (l, c) = (cfg.num_positions(), cfg.latent_channels);
        // Stage 2: cluster 3 empty, cluster 0 a single position (unbalanced, §10.3).
        let mut labels = vec![2u32; l];
        labels[0] = 0;
        labels[1] = 1;
        labels[2] = 1;
        let canvas = Tensor::<3>::random([1, l, c], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
        let (_, logits) = m.content_forward(2, &[1], canvas, &[&labels]);
        let v = to_vec(logits);
        assert!(v.iter().all(|x| x.is_finite()));
        // The empty cluster's mean is zero, so its logits are the head's bias.
        let bias = to_vec(m.cls_head.linear.bias.as_ref().unwrap().val());
        assert_eq!(&v[3 * cfg.vocab_size..], bias.as_slice());
    }

    #[test]
    fn time_embedding_is_cos_then_sin() {
        let dev = Device::flex();
        let e = to_vec(time_embedding(&[0.0, 0.5], &dev));
        assert_eq!(e.len(), 2 * TIME_EMBED_DIM);
        assert!(e[..32].iter().all(|&v| v == 1.0) && e[32..64].iter().all(|&v| v == 0.0));
        assert!((e[64] - 500f64.cos() as f32).abs() < 1e-6);
        assert!((e[96] - 500f64.sin() as f32).abs() < 1e-6);
    }
}
