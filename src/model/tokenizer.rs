//! The multi-granularity quantized autoencoder (method §2.2–2.7).
//!
//! `encode(image) → (hierarchy, codes, canvases)`; `decode(canvas after any stage) → image`.
//!
//! Field names follow the reference key layout (`encoder.down.1.block.0.nin_shortcut.conv.weight`,
//! `quantize.quant_resi.3.weight`, …) so that reference weights load without remapping; burn's
//! PyTorch adapter renames GroupNorm `weight/bias` to `gamma/beta`.
//!
//! Shapes: images `[batch, 3, H, W]` in [-1, 1]; latents and canvases `[batch, L, C]` (BLC, position
//! `p = row·side + col`), or `[batch, C, side, side]` inside the convolutional parts.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::TokenizerConfig;
use crate::granularity::{Hierarchy, cluster_latent};

/// A convolution wrapped as in the reference layout (`*.conv.weight`).
#[derive(Module, Debug)]
pub struct Conv {
    conv: Conv2d,
}

impl Conv {
    fn new(cin: usize, cout: usize, k: usize, stride: usize, padding: PaddingConfig2d, device: &Device) -> Self {
        let conv = Conv2dConfig::new([cin, cout], [k, k])
            .with_stride([stride, stride])
            .with_padding(padding)
            .init(device);
        Self { conv }
    }
    fn k3(cin: usize, cout: usize, device: &Device) -> Self {
        Self::new(cin, cout, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1), device)
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

/// A GroupNorm wrapped as in the reference layout (`*.norm.weight`).
#[derive(Module, Debug)]
pub struct Norm {
    norm: GroupNorm,
}

impl Norm {
    fn new(groups: usize, ch: usize, device: &Device) -> Self {
        Self { norm: GroupNormConfig::new(groups, ch).with_epsilon(1e-6).init(device) }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.norm.forward(x)
    }
}

/// Res(a→b) of §2.2: GN → SiLU → conv3×3 → GN → SiLU → conv3×3, plus a 1×1 shortcut when a≠b.
#[derive(Module, Debug)]
pub struct ResBlock {
    norm1: Norm,
    conv1: Conv,
    norm2: Norm,
    conv2: Conv,
    nin_shortcut: Option<Conv>,
}

impl ResBlock {
    fn new(cin: usize, cout: usize, groups: usize, device: &Device) -> Self {
        Self {
            norm1: Norm::new(groups, cin, device),
            conv1: Conv::k3(cin, cout, device),
            norm2: Norm::new(groups, cout, device),
            conv2: Conv::k3(cout, cout, device),
            nin_shortcut: (cin != cout).then(|| Conv::new(cin, cout, 1, 1, PaddingConfig2d::Valid, device)),
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        let h = self.conv2.forward(silu(self.norm2.forward(h)));
        let skip = match &self.nin_shortcut {
            Some(c) => c.forward(x),
            None => x,
        };
        skip + h
    }
}

/// Down: zero-pad right and bottom by one, then conv3×3 stride 2 without padding (§2.2).
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv,
}

/// Up: nearest-neighbour ×2, then conv3×3 with padding 1 (§2.3).
#[derive(Module, Debug)]
pub struct Upsample {
    conv: Conv,
}

/// Nearest-neighbour ×2 upsampling by repetition (exact on every backend).
fn upsample_nearest2(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1]).expand([b, c, h, 2, w, 2]).reshape([b, c, 2 * h, 2 * w])
}

/// One encoder level: residual blocks, then an optional downsampling.
#[derive(Module, Debug)]
pub struct DownLevel {
    block: Vec<ResBlock>,
    downsample: Option<Downsample>,
}

/// One decoder level: residual blocks, then an optional upsampling.
#[derive(Module, Debug)]
pub struct UpLevel {
    block: Vec<ResBlock>,
    upsample: Option<Upsample>,
}

/// Two residual blocks at the lowest resolution.
#[derive(Module, Debug)]
pub struct Mid {
    block_1: ResBlock,
    block_2: ResBlock,
}

impl Mid {
    fn new(ch: usize, groups: usize, device: &Device) -> Self {
        Self { block_1: ResBlock::new(ch, ch, groups, device), block_2: ResBlock::new(ch, ch, groups, device) }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.block_2.forward(self.block_1.forward(x))
    }
}

/// Image `[B,3,H,W]` → continuous latent f `[B,C,side,side]` (§2.2).
#[derive(Module, Debug)]
pub struct Encoder {
    conv_in: Conv,
    down: Vec<DownLevel>,
    mid: Mid,
    norm_out: Norm,
    conv_out: Conv,
}

impl Encoder {
    fn new(cfg: &TokenizerConfig, device: &Device) -> Self {
        let g = cfg.norm_groups;
        let levels = cfg.channel_mult.len();
        let mut cin = cfg.base_channels;
        let mut down = Vec::with_capacity(levels);
        for (i, m) in cfg.channel_mult.iter().enumerate() {
            let cout = cfg.base_channels * m;
            let mut block = Vec::new();
            for _ in 0..cfg.num_res_blocks {
                block.push(ResBlock::new(cin, cout, g, device));
                cin = cout;
            }
            let downsample = (i + 1 < levels).then(|| Downsample {
                conv: Conv::new(cout, cout, 3, 2, PaddingConfig2d::Explicit(0, 0, 1, 1), device),
            });
            down.push(DownLevel { block, downsample });
        }
        Self {
            conv_in: Conv::k3(3, cfg.base_channels, device),
            down,
            mid: Mid::new(cin, g, device),
            norm_out: Norm::new(g, cin, device),
            conv_out: Conv::k3(cin, cfg.latent_channels, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = self.conv_in.forward(x);
        for level in &self.down {
            for b in &level.block {
                h = b.forward(h);
            }
            if let Some(d) = &level.downsample {
                h = d.conv.forward(h);
            }
        }
        let h = self.mid.forward(h);
        self.conv_out.forward(silu(self.norm_out.forward(h)))
    }
}

/// Canvas `[B,C,side,side]` → image `[B,3,H,W]`, not clamped (§2.3).
#[derive(Module, Debug)]
pub struct Decoder {
    conv_in: Conv,
    mid: Mid,
    up: Vec<UpLevel>,
    norm_out: Norm,
    conv_out: Conv,
}

impl Decoder {
    fn new(cfg: &TokenizerConfig, device: &Device) -> Self {
        let g = cfg.norm_groups;
        let levels = cfg.channel_mult.len();
        let top = cfg.base_channels * cfg.channel_mult[levels - 1];
        // Levels are stored in index order (up.0 … up.n−1) but run from the last to the first.
        let mut up: Vec<Option<UpLevel>> = (0..levels).map(|_| None).collect();
        let mut cin = top;
        for i in (0..levels).rev() {
            let cout = cfg.base_channels * cfg.channel_mult[i];
            let mut block = Vec::new();
            for _ in 0..=cfg.num_res_blocks {
                block.push(ResBlock::new(cin, cout, g, device));
                cin = cout;
            }
            let upsample = (i != 0).then(|| Upsample { conv: Conv::k3(cout, cout, device) });
            up[i] = Some(UpLevel { block, upsample });
        }
        Self {
            conv_in: Conv::k3(cfg.latent_channels, top, device),
            mid: Mid::new(top, g, device),
            up: up.into_iter().flatten().collect(),
            norm_out: Norm::new(g, cin, device),
            conv_out: Conv::k3(cin, 3, device),
        }
    }

    fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let mut h = self.mid.forward(self.conv_in.forward(z));
        for level in self.up.iter().rev() {
            for b in &level.block {
                h = b.forward(h);
            }
            if let Some(u) = &level.upsample {
                h = u.conv.forward(upsample_nearest2(h));
            }
        }
        self.conv_out.forward(silu(self.norm_out.forward(h)))
    }
}

/// Codebook V and one Φ_i per stage (§2.4).
#[derive(Module, Debug)]
pub struct Quantizer {
    embedding: Embedding,
    quant_resi: Vec<Conv2d>,
}

/// How codes are selected during residual quantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeSelection {
    /// Hard nearest code (inference, and training after the warm-up).
    Hard,
    /// IBQ warm-up (§2.8): forward value is the hard one-hot, the gradient flows through the
    /// softmax over −distance to every codebook entry.
    SoftWarmup,
}

/// Result of residual quantization of a batch.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// `codes[b][stage][cluster]`: code index per cluster (empty clusters get the code of their
    /// zero mean; they are never broadcast anywhere).
    pub codes: Vec<Vec<Vec<u32>>>,
    /// `canvases[i]` is the canvas *input* to stage i, `[B, L, C]`; `canvases[0] = 0`,
    /// `canvases[S]` is the final quantized latent X.
    pub canvases: Vec<Tensor<3>>,
}

/// The tokenizer: encoder, decoder and quantizer.
#[derive(Module, Debug)]
pub struct Tokenizer {
    /// Image → latent.
    pub encoder: Encoder,
    /// Canvas → image.
    pub decoder: Decoder,
    /// Codebook and Φ convolutions.
    pub quantize: Quantizer,
}

/// A fully encoded batch: the granularity sequence of every image plus its canvases.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Continuous encoder output f, `[B, L, C]`.
    pub latent: Tensor<3>,
    /// Label maps per image.
    pub hierarchies: Vec<Hierarchy>,
    /// Codes and canvases.
    pub quantized: Quantized,
}

/// Reads a float tensor back to the host.
pub fn to_vec_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

/// Reads an int tensor back to the host.
pub fn to_vec_i64<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().try_into_vec::<i64>().unwrap_or_default()
}

impl Tokenizer {
    /// Builds a randomly initialised tokenizer. The configuration must be valid
    /// ([`TokenizerConfig::validate`]).
    pub fn new(cfg: &TokenizerConfig, device: &Device) -> Self {
        let n = cfg.codebook_size;
        let stages = cfg.num_stages();
        let embedding = EmbeddingConfig::new(n, cfg.latent_channels)
            .with_initializer(Initializer::Uniform { min: -1.0 / n as f64, max: 1.0 / n as f64 })
            .init(device);
        let quant_resi = (0..stages)
            .map(|_| {
                Conv2dConfig::new([cfg.latent_channels, cfg.latent_channels], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device)
            })
            .collect();
        Self {
            encoder: Encoder::new(cfg, device),
            decoder: Decoder::new(cfg, device),
            quantize: Quantizer { embedding, quant_resi },
        }
    }

    /// Number of stages S (one Φ per stage).
    pub fn num_stages(&self) -> usize {
        self.quantize.quant_resi.len()
    }

    /// Codebook `[V, C]`.
    pub fn codebook(&self) -> Tensor<2> {
        self.quantize.embedding.weight.val()
    }

    /// Continuous latent f of images `[B,3,H,W]`, as BLC `[B, L, C]`.
    pub fn encode_latent(&self, images: Tensor<4>) -> Tensor<3> {
        let f = self.encoder.forward(images);
        let [b, c, h, w] = f.dims();
        f.reshape([b, c, h * w]).swap_dims(1, 2)
    }

    /// Greedy pairwise clustering of every image's latent (host side, §2.5–2.6).
    pub fn cluster(latent: &Tensor<3>) -> Vec<Hierarchy> {
        let [b, l, c] = latent.dims();
        let side = (l as f64).sqrt().round() as usize;
        let data = to_vec_f32(latent.clone().detach());
        (0..b)
            .map(|i| {
                cluster_latent(&data[i * l * c..(i + 1) * l * c], side, c)
                    .expect("latent grid side is a power of two by construction of the config")
            })
            .collect()
    }

    /// Φ_i applied to a broadcast map `[B, L, C]` (§2.4): h + w·conv3×3(h).
    pub fn phi(&self, stage: usize, h: Tensor<3>, phi_weight: f64) -> Tensor<3> {
        let [b, l, c] = h.dims();
        let side = (l as f64).sqrt().round() as usize;
        let img = h.clone().swap_dims(1, 2).reshape([b, c, side, side]);
        let conv = self.quantize.quant_resi[stage].forward(img);
        h + conv.reshape([b, c, l]).swap_dims(1, 2).mul_scalar(phi_weight)
    }

    /// Broadcast of per-cluster vectors `[B, K, C]` to positions through the assignment matrix.
    fn assignment(hier: &[Hierarchy], stage: usize, device: &Device) -> (Tensor<3>, Tensor<3>) {
        let b = hier.len();
        let l = hier[0].map(stage).len();
        let k = 1usize << stage;
        let mut a = vec![0f32; b * k * l];
        let mut inv = vec![0f32; b * k];
        for (bi, h) in hier.iter().enumerate() {
            let mut counts = vec![0usize; k];
            for (p, &lab) in h.map(stage).iter().enumerate() {
                a[bi * k * l + lab as usize * l + p] = 1.0;
                counts[lab as usize] += 1;
            }
            for (ki, &n) in counts.iter().enumerate() {
                inv[bi * k + ki] = 1.0 / n.max(1) as f32;
            }
        }
        (
            Tensor::from_data(TensorData::new(a, [b, k, l]), device),
            Tensor::from_data(TensorData::new(inv, [b, k, 1]), device),
        )
    }

    /// Residual quantization along the hierarchy (§2.7). Code selection runs on detached values;
    /// the canvases are built from the codebook and Φ, so they carry gradients in training.
    pub fn quantize(&self, latent: Tensor<3>, hier: &[Hierarchy], phi_weight: f64, mode: CodeSelection) -> Quantized {
        let device = latent.device();
        let [b, l, c] = latent.dims();
        let stages = self.num_stages();
        let codebook = self.codebook();
        let n = codebook.dims()[0];
        let cb_det = codebook.clone().detach();
        let cb_sq = cb_det.clone().powi_scalar(2).sum_dim(1).reshape([1, 1, n]);
        let f_det = latent.detach();
        let mut canvas: Tensor<3> = Tensor::zeros([b, l, c], &device);
        let mut canvases = vec![canvas.clone()];
        let mut codes = vec![Vec::with_capacity(stages); b];
        for stage in 0..stages {
            let k = 1usize << stage;
            let (a, inv) = Self::assignment(hier, stage, &device);
            let resid = f_det.clone() - canvas.clone().detach();
            let mu = a.clone().matmul(resid).mul(inv); // [B,K,C]
            let dist = mu.clone().powi_scalar(2).sum_dim(2) + cb_sq.clone()
                - mu.matmul(cb_det.clone().transpose().unsqueeze::<3>()).mul_scalar(2.0); // [B,K,N]
            let idx = dist.clone().argmin(2).reshape([b * k]);
            let idx_host = to_vec_i64(idx.clone());
            for bi in 0..b {
                codes[bi].push(idx_host[bi * k..(bi + 1) * k].iter().map(|&v| v as u32).collect());
            }
            let q = match mode {
                CodeSelection::Hard => codebook.clone().select(0, idx).reshape([b, k, c]),
                CodeSelection::SoftWarmup => {
                    let soft = softmax(dist.neg(), 2);
                    let hard: Tensor<3> = idx_to_one_hot(&idx_host, b, k, n, &device);
                    (hard - soft.clone().detach() + soft).matmul(codebook.clone().unsqueeze::<3>())
                }
            };
            let broadcast = a.swap_dims(1, 2).matmul(q); // [B,L,C]
            canvas = canvas + self.phi(stage, broadcast, phi_weight);
            canvases.push(canvas.clone());
        }
        Quantized { codes, canvases }
    }

    /// Encodes images `[B,3,H,W]` into their granularity sequences and canvases.
    pub fn encode(&self, images: Tensor<4>, phi_weight: f64) -> Encoded {
        let latent = self.encode_latent(images);
        let hierarchies = Self::cluster(&latent);
        let quantized = self.quantize(latent.clone(), &hierarchies, phi_weight, CodeSelection::Hard);
        Encoded { latent, hierarchies, quantized }
    }

    /// Φ_stage of the broadcast codes of one stage: position p of image b gets
    /// `V[codes[b][labels[b][p]]]`, then Φ_stage is applied (§2.7). This is the amount a content
    /// stage adds to the canvas; the sampler and [`Tokenizer::canvas_from_codes`] both use it, so
    /// a canvas rebuilt from codes is bit-identical to the one generated.
    pub fn stage_delta(&self, stage: usize, labels: &[&[u32]], codes: &[&[u32]], phi_weight: f64) -> Tensor<3> {
        let device = self.codebook().device();
        let b = labels.len();
        let l = labels.first().map(|m| m.len()).unwrap_or(0);
        let codebook = self.codebook();
        let c = codebook.dims()[1];
        let mut idx = Vec::with_capacity(b * l);
        for bi in 0..b {
            for &lab in labels[bi] {
                idx.push(codes[bi][lab as usize] as i64);
            }
        }
        let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(idx, [b * l]), &device);
        let h = codebook.select(0, idx).reshape([b, l, c]);
        self.phi(stage, h, phi_weight)
    }

    /// Rebuilds the canvas after stages `0..upto` from per-image hierarchies and codes:
    /// Σ_{i<upto} Φ_i(V[code_i(p)]) (§2.7, "decoding from indices").
    pub fn canvas_from_codes(&self, hier: &[Hierarchy], codes: &[Vec<Vec<u32>>], upto: usize, phi_weight: f64) -> Tensor<3> {
        let maps: Vec<Vec<&[u32]>> = (0..upto.min(self.num_stages()))
            .map(|s| hier.iter().map(|h| h.map(s)).collect())
            .collect();
        let codes: Vec<Vec<&[u32]>> =
            (0..maps.len()).map(|s| codes.iter().map(|c| c[s].as_slice()).collect()).collect();
        let l = hier.first().map(|h| h.num_positions()).unwrap_or(0);
        self.canvas_from_maps(hier.len(), l, &maps, &codes, phi_weight)
    }

    /// Canvas `[b, l, C]` after the given stages: `maps[s][i]` and `codes[s][i]` of image i for
    /// s = 0..n (n may be 0, giving the empty canvas).
    pub fn canvas_from_maps(&self, b: usize, l: usize, maps: &[Vec<&[u32]>], codes: &[Vec<&[u32]>], phi_weight: f64) -> Tensor<3> {
        let device = self.codebook().device();
        let c = self.codebook().dims()[1];
        let mut canvas: Tensor<3> = Tensor::zeros([b, l, c], &device);
        for (s, (m, k)) in maps.iter().zip(codes).enumerate() {
            canvas = canvas + self.stage_delta(s, m, k, phi_weight);
        }
        canvas
    }

    /// Decodes a canvas `[B, L, C]` to an image `[B,3,H,W]` without clamping.
    pub fn decode_raw(&self, canvas: Tensor<3>) -> Tensor<4> {
        let [b, l, c] = canvas.dims();
        let side = (l as f64).sqrt().round() as usize;
        self.decoder.forward(canvas.swap_dims(1, 2).reshape([b, c, side, side]))
    }

    /// Decodes a canvas `[B, L, C]` to an image clamped to [-1, 1].
    pub fn decode(&self, canvas: Tensor<3>) -> Tensor<4> {
        self.decode_raw(canvas).clamp(-1.0, 1.0)
    }
}

fn idx_to_one_hot(idx: &[i64], b: usize, k: usize, n: usize, device: &Device) -> Tensor<3> {
    let mut v = vec![0f32; b * k * n];
    for (i, &c) in idx.iter().enumerate() {
        v[i * n + c as usize] = 1.0;
    }
    Tensor::from_data(TensorData::new(v, [b, k, n]), device)
}
