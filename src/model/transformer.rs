//! The NVGformer's building blocks (method §4.2–4.3, generalised by §10.1): the FLUX-style
//! parallel transformer block shared by both branches, the adaLN final layer ("LastLayer"), and
//! the structure-aware rotary position embedding.
//!
//! Shapes: tokens `[batch, tokens, width]`, conditioning vector `[batch, width]`, per-head
//! tensors `[batch, heads, tokens, head_dim]`. The head dimension is always [`HEAD_DIM`] = 64.
//!
//! Field names follow the reference key layout (`content_blocks.0.linear1.weight`,
//! `content_blocks.0.modulation.lin.weight`, `content_blocks.0.norm.query_norm.scale`,
//! `x0_head.linear.weight`) so that reference weights load through burn's PyTorch adapter; the
//! one exception is the final layer's `adaLN_modulation.1`, stored here as `ada_ln_modulation`
//! (the loader remaps it, see `generator.rs`).

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor, TensorData};

/// Dimension of every attention head, in both branches (§4.1).
pub const HEAD_DIM: usize = 64;
/// RoPE base θ (§4.3).
pub const ROPE_THETA: f64 = 10_000.0;
/// Epsilon of the non-affine LayerNorms and of the q/k RMSNorm (§4.2).
pub const NORM_EPS: f64 = 1e-6;
/// RoPE dimensions of axis 0, the token type (§4.3).
pub const TOKEN_TYPE_DIMS: usize = 8;

/// RoPE axis-0 id of canvas tokens (content branch) and structure tokens (structure branch).
pub const TOKEN_CANVAS: u32 = 0;
/// RoPE axis-0 id of the class token; the class token has this id on *every* axis (§4.3).
pub const TOKEN_CLASS: u32 = 1;
/// RoPE axis-0 id of the canvas-condition tokens of the structure branch (§4.3).
pub const TOKEN_CONDITION: u32 = 2;

// ---------------------------------------------------------------------------------------------
// Small functions
// ---------------------------------------------------------------------------------------------

/// LayerNorm over the last dimension without affine parameters, eps 1e-6 (§4.2 step 2).
/// Goes through burn's fused `layer_norm` (one pass per row on the CPU backend) with a unit gain.
pub fn layer_norm<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let w = x.dims()[D - 1];
    let ones = Tensor::<1>::ones([w], &x.device());
    burn::tensor::module::layer_norm(x, ones, None, NORM_EPS)
}

/// GELU with the tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (§4.2 step 6).
/// Written out with `x·x·x` so that negative inputs never go through a `powf`, and computed as
/// `x·σ(2u)` (= `0.5·x·(1 + tanh u)`): the CPU backend's sigmoid is one `exp` per element, its
/// tanh a much slower libm call (15 % of a generation's time before this change).
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let two_sqrt_2_over_pi = 2.0 * (2.0 / std::f64::consts::PI).sqrt();
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube.mul_scalar(0.044715)).mul_scalar(two_sqrt_2_over_pi);
    x.mul(burn::tensor::activation::sigmoid(inner))
}

/// A Linear layer initialised as the reference does (§4.8): xavier-uniform weight, zero bias.
pub fn xavier_linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let mut lin = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device);
    lin.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    lin
}

// ---------------------------------------------------------------------------------------------
// Structure-aware RoPE (§4.3, §10.1)
// ---------------------------------------------------------------------------------------------

/// How the 64 dims of a head are split between the rotary axes (§4.3, §10.1):
/// `[token type (8) | one 2-dim axis per structure bit (S − 1 of them) | row | column]`,
/// with the rest split equally (even sizes) between row and column. 16×16 → `[8 | 2×8 | 20 | 20]`,
/// 8×8 → `[8 | 2×6 | 22 | 22]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RopeLayout {
    axes_dim: Vec<usize>,
}

impl RopeLayout {
    /// The layout for `num_bits = S − 1` structure bits.
    ///
    /// # Panics
    /// If the axes do not fit in [`HEAD_DIM`] with at least 2 dims each for row and column.
    pub fn new(num_bits: usize) -> Self {
        let fixed = TOKEN_TYPE_DIMS + 2 * num_bits;
        assert!(
            fixed + 4 <= HEAD_DIM,
            "{num_bits} structure bits leave no room for the row/column RoPE axes in a {HEAD_DIM}-dim head"
        );
        let rest = HEAD_DIM - fixed; // even, since every term is even
        let row = 2 * (rest / 4); // an even half, rounded down
        let col = rest - row;
        let mut axes_dim = vec![TOKEN_TYPE_DIMS];
        axes_dim.extend(std::iter::repeat_n(2, num_bits));
        axes_dim.push(row);
        axes_dim.push(col);
        Self { axes_dim }
    }

    /// Dimensions per axis, in feature order; they sum to [`HEAD_DIM`].
    pub fn axes_dim(&self) -> &[usize] {
        &self.axes_dim
    }

    /// Number of axes `A = S − 1 + 3` (11 for 16×16).
    pub fn num_axes(&self) -> usize {
        self.axes_dim.len()
    }

    /// Number of structure bits `S − 1`.
    pub fn num_bits(&self) -> usize {
        self.axes_dim.len() - 3
    }

    /// For each rotated pair of feature dims `(2k, 2k+1)`: its axis and frequency θ^(−2k'/D)
    /// (k' counted inside the axis, D the axis dimension). Structure axes get frequency 1.
    pub fn pair_frequencies(&self) -> Vec<(usize, f64)> {
        let mut out = Vec::with_capacity(HEAD_DIM / 2);
        for (axis, &d) in self.axes_dim.iter().enumerate() {
            for k in 0..d / 2 {
                out.push((axis, ROPE_THETA.powf(-((2 * k) as f64) / d as f64)));
            }
        }
        out
    }

    /// Position ids of a content sequence `[1 + L, A]`, flattened token-major (§4.3): the class
    /// token is all ones; canvas token p is `[0, σ_i(p), row, col]`.
    /// `sigma` is position-major `[L, S − 1]` as from `Hierarchy::sigma_map`.
    pub fn content_ids(&self, sigma: &[u8], side: usize) -> Vec<u32> {
        let mut ids = vec![TOKEN_CLASS; self.num_axes()];
        self.push_grid_ids(&mut ids, TOKEN_CANVAS, sigma, side);
        ids
    }

    /// Position ids of a structure sequence `[1 + 2L, A]` (§4.3): the class token (all ones),
    /// the canvas-condition tokens `[2, σ_i(p), row, col]`, then the structure tokens
    /// `[0, σ_i(p), row, col]`.
    pub fn structure_ids(&self, sigma: &[u8], side: usize) -> Vec<u32> {
        let mut ids = vec![TOKEN_CLASS; self.num_axes()];
        self.push_grid_ids(&mut ids, TOKEN_CONDITION, sigma, side);
        self.push_grid_ids(&mut ids, TOKEN_CANVAS, sigma, side);
        ids
    }

    fn push_grid_ids(&self, ids: &mut Vec<u32>, token_type: u32, sigma: &[u8], side: usize) {
        let bits = self.num_bits();
        assert_eq!(sigma.len(), side * side * bits, "σ map must be [L, S − 1] = [{}, {bits}]", side * side);
        for p in 0..side * side {
            ids.push(token_type);
            ids.extend(sigma[p * bits..(p + 1) * bits].iter().map(|&s| s as u32));
            ids.push((p / side) as u32);
            ids.push((p % side) as u32);
        }
    }
}

/// Full-width rotation tables of a batch of sequences, `(cos, sin, T)` with `cos`, `sin` laid out
/// `[B, T, HEAD_DIM]`: `cos` holds each pair's cosine twice, `sin` the pair's sine as `(−sin, +sin)`.
/// Angles are computed in f64 on the host. Shared by [`Rope`] and the host inference path.
pub fn rope_tables(layout: &RopeLayout, ids: &[Vec<u32>]) -> (Vec<f32>, Vec<f32>, usize) {
    let a = layout.num_axes();
    let t = ids.first().map_or(0, |s| s.len() / a);
    let freqs = layout.pair_frequencies();
    let mut cos = Vec::with_capacity(ids.len() * t * 2 * freqs.len());
    let mut sin = Vec::with_capacity(ids.len() * t * 2 * freqs.len());
    for seq in ids {
        assert_eq!(seq.len(), t * a, "every sequence needs {t}×{a} position ids");
        for tok in 0..t {
            for &(axis, f) in &freqs {
                let angle = seq[tok * a + axis] as f64 * f;
                let (c, s) = (angle.cos() as f32, angle.sin() as f32);
                cos.extend([c, c]);
                sin.extend([-s, s]);
            }
        }
    }
    (cos, sin, t)
}

/// Rotation tables of one batch of sequences, full head width `[B, 1, T, HEAD_DIM]`: `cos` with
/// each pair's cosine twice, `sin` with the pair's sine as `(−sin, +sin)`. Each frequency rotates
/// the adjacent feature pair `(2k, 2k+1)` by `[cos −sin; sin cos]`.
#[derive(Clone, Debug)]
pub struct Rope {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl Rope {
    /// Builds the tables from per-sequence position ids (each `[T, A]` flattened, as from
    /// [`RopeLayout::content_ids`]). Angles are computed in f64 on the host.
    pub fn new(layout: &RopeLayout, ids: &[Vec<u32>], device: &Device) -> Self {
        assert!(!ids.is_empty(), "RoPE needs at least one sequence");
        let (cos, sin, t) = rope_tables(layout, ids);
        let b = ids.len();
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [b, 1, t, HEAD_DIM]), device),
            sin: Tensor::from_data(TensorData::new(sin, [b, 1, t, HEAD_DIM]), device),
        }
    }

    /// Cosine of every pair's angle, `[B, 1, T, HEAD_DIM/2]`.
    pub fn cos(&self) -> Tensor<4> {
        let [b, _, t, d] = self.cos.dims();
        self.cos.clone().reshape([b, 1, t, d / 2, 2]).narrow(4, 0, 1).reshape([b, 1, t, d / 2])
    }

    /// Sine of every pair's angle, `[B, 1, T, HEAD_DIM/2]`.
    pub fn sin(&self) -> Tensor<4> {
        let [b, _, t, d] = self.sin.dims();
        self.sin.clone().reshape([b, 1, t, d / 2, 2]).narrow(4, 1, 1).reshape([b, 1, t, d / 2])
    }

    /// Rotates `x` `[B, H, T, HEAD_DIM]` pairwise (interleaved pairs, §4.3):
    /// `(x0, x1) → (x0·cos − x1·sin, x1·cos + x0·sin)`, computed as `x·cos + swap(x)·(−sin, sin)`
    /// with `swap` exchanging the two members of every pair (three elementwise passes and one
    /// copy instead of narrow/narrow/cat).
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        debug_assert_eq!(self.cos.dims(), [b, 1, t, d], "RoPE tables do not match the tokens");
        let swapped = x.clone().reshape([b, h, t, d / 2, 2]).flip([4]).reshape([b, h, t, d]);
        x * self.cos.clone() + swapped * self.sin.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// The parallel block (§4.2)
// ---------------------------------------------------------------------------------------------

/// (shift, scale, gate) = split₃(Linear_{W→3W}(SiLU(vec))) (§4.2 step 1).
#[derive(Module, Debug)]
pub struct Modulation {
    pub(super) lin: Linear,
}

/// A learnable per-dimension scale of an RMSNorm (`*.norm.query_norm.scale`).
#[derive(Module, Debug)]
pub struct QkScale {
    pub(super) scale: Param<Tensor<1>>,
}

impl QkScale {
    fn new(device: &Device) -> Self {
        Self { scale: Param::from_tensor(Tensor::ones([HEAD_DIM], device)) }
    }

    /// RMSNorm over the head dimension, eps 1e-6, times the learnable scale (§4.2 step 4).
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let ms = x.clone().powi_scalar(2).mean_dim(3);
        let normed = x.div(ms.add_scalar(NORM_EPS).sqrt());
        normed * self.scale.val().reshape([1, 1, 1, HEAD_DIM])
    }
}

/// RMSNorm of queries and keys (`*.norm.query_norm`, `*.norm.key_norm`).
#[derive(Module, Debug)]
pub struct QkNorm {
    pub(super) query_norm: QkScale,
    pub(super) key_norm: QkScale,
}

/// FLUX-style single-stream parallel block (§4.2):
/// `x + gate ⊙ Linear_{5W→W}(concat(attn(q, k, v), GELU_tanh(m)))`, with
/// `[q|k|v|m] = Linear_{W→3W+4W}((1 + scale) ⊙ LN(x) + shift)`. No drop-path at inference.
#[derive(Module, Debug)]
pub struct ParallelBlock {
    pub(super) modulation: Modulation,
    pub(super) linear1: Linear,
    pub(super) linear2: Linear,
    pub(super) norm: QkNorm,
    pub(super) heads: usize,
}

impl ParallelBlock {
    /// A randomly initialised block (§4.8) of width `heads · 64` and MLP hidden `mlp_ratio · width`.
    pub fn new(width: usize, heads: usize, mlp_ratio: usize, device: &Device) -> Self {
        assert_eq!(width, heads * HEAD_DIM, "block width must be heads × {HEAD_DIM}");
        let mlp = mlp_ratio * width;
        Self {
            modulation: Modulation { lin: xavier_linear(width, 3 * width, device) },
            linear1: xavier_linear(width, 3 * width + mlp, device),
            linear2: xavier_linear(width + mlp, width, device),
            norm: QkNorm { query_norm: QkScale::new(device), key_norm: QkScale::new(device) },
            heads,
        }
    }

    /// Parameters of one block of width `w` and MLP hidden `mlp` (used by the analytic count).
    pub fn param_count(width: usize, mlp: usize) -> usize {
        let modulation = width * 3 * width + 3 * width;
        let linear1 = width * (3 * width + mlp) + 3 * width + mlp;
        let linear2 = (width + mlp) * width + width;
        modulation + linear1 + linear2 + 2 * HEAD_DIM
    }

    /// `x` `[B, T, W]`, `vec` `[B, W]` → `[B, T, W]`.
    pub fn forward(&self, x: Tensor<3>, vec: Tensor<2>, rope: &Rope) -> Tensor<3> {
        let [b, t, w] = x.dims();
        debug_assert_eq!(vec.dims(), [b, w], "vec must be [batch, width]");
        let (h, d) = (self.heads, HEAD_DIM);

        // 1–2. Modulated, non-affine LayerNorm.
        let m = self.modulation.lin.forward(silu(vec)).reshape([b, 1, 3 * w]);
        let shift = m.clone().narrow(2, 0, w);
        let scale = m.clone().narrow(2, w, w);
        let gate = m.narrow(2, 2 * w, w);
        let u = layer_norm(x.clone()) * scale.add_scalar(1.0) + shift;

        // 3. Fused projection; qkv laid out as (3, heads, 64).
        let proj = self.linear1.forward(u);
        let mlp_hidden = proj.dims()[2] - 3 * w;
        let qkv = proj.clone().narrow(2, 0, 3 * w).reshape([b, t, 3, h, d]);
        let mlp = proj.narrow(2, 3 * w, mlp_hidden);
        let head = |i: usize| qkv.clone().narrow(2, i, 1).reshape([b, t, h, d]).swap_dims(1, 2);
        let (q, k, v) = (head(0), head(1), head(2)); // [B, H, T, 64]

        // 4. RMSNorm on q and k, then RoPE.
        let q = rope.apply(self.norm.query_norm.forward(q));
        let k = rope.apply(self.norm.key_norm.forward(k));

        // 5. Full bidirectional attention, scale 1/√64 (burn's fused attention: tiled with an
        // online softmax on the CPU backend, the plain composition under autodiff).
        // `scale: None` is 1/√head_dim = 1/√64 (and lets GPU backends use their flash kernel).
        debug_assert_eq!(d, HEAD_DIM);
        let opts = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let attn = attention(q, k, v, None, None, opts).swap_dims(1, 2).reshape([b, t, w]);

        // 6–7. Fused output projection and gated residual.
        let o = self.linear2.forward(Tensor::cat(vec![attn, gelu_tanh(mlp)], 2));
        x + gate * o
    }
}

// ---------------------------------------------------------------------------------------------
// Final adaLN layer (§4.2, "LastLayer")
// ---------------------------------------------------------------------------------------------

/// `y = Linear_{W→out}((1 + scale) ⊙ LN(x) + shift)` with `(shift, scale) = Linear_{W→2W}(SiLU(vec))`.
#[derive(Module, Debug)]
pub struct LastLayer {
    /// Reference key `adaLN_modulation.1` (a Sequential of SiLU and this Linear).
    pub(super) ada_ln_modulation: Linear,
    pub(super) linear: Linear,
}

impl LastLayer {
    /// A randomly initialised final layer (§4.8: xavier, not zero-initialised).
    pub fn new(width: usize, out: usize, device: &Device) -> Self {
        Self { ada_ln_modulation: xavier_linear(width, 2 * width, device), linear: xavier_linear(width, out, device) }
    }

    /// Parameters of a final layer `width → out`.
    pub fn param_count(width: usize, out: usize) -> usize {
        width * 2 * width + 2 * width + width * out + out
    }

    /// `x` `[B, T, W]`, `vec` `[B, W]` → `[B, T, out]`.
    pub fn forward(&self, x: Tensor<3>, vec: Tensor<2>) -> Tensor<3> {
        let [b, _, w] = x.dims();
        let m = self.ada_ln_modulation.forward(silu(vec)).reshape([b, 1, 2 * w]);
        let shift = m.clone().narrow(2, 0, w);
        let scale = m.narrow(2, w, w);
        self.linear.forward(layer_norm(x) * scale.add_scalar(1.0) + shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn rope_layout_16x16_is_the_papers() {
        let l = RopeLayout::new(8); // 16×16: S = 9
        let mut expected = vec![8];
        expected.extend([2; 8]);
        expected.extend([20, 20]);
        assert_eq!(l.axes_dim(), expected.as_slice());
        assert_eq!(l.axes_dim().iter().sum::<usize>(), HEAD_DIM);
        assert_eq!(l.num_axes(), 11);
        // Structure axes rotate by exactly the bit value: frequency 1.
        let f = l.pair_frequencies();
        assert_eq!(f.len(), HEAD_DIM / 2);
        for (axis, freq) in &f[4..12] {
            assert!((1..=8).contains(axis));
            assert_eq!(*freq, 1.0);
        }
        assert_eq!(f[0], (0, 1.0));
        assert!((f[1].1 - 10_000f64.powf(-0.25)).abs() < 1e-15);
        assert_eq!(f[12].0, 9);
        assert_eq!(f[22].0, 10);
    }

    #[test]
    fn rope_layout_8x8_and_4x4() {
        let l = RopeLayout::new(6); // 8×8: S = 7
        let mut expected = vec![8];
        expected.extend([2; 6]);
        expected.extend([22, 22]);
        assert_eq!(l.axes_dim(), expected.as_slice());
        assert_eq!(l.axes_dim().iter().sum::<usize>(), HEAD_DIM);
        let l4 = RopeLayout::new(4); // 4×4: S = 5
        assert_eq!(l4.axes_dim().iter().sum::<usize>(), HEAD_DIM);
        assert!(l4.axes_dim().iter().all(|d| d % 2 == 0));
        assert_eq!(&l4.axes_dim()[5..], &[24, 24]);
    }

    #[test]
    fn position_ids_follow_the_table() {
        let l = RopeLayout::new(4); // 4×4 grid, 4 bits
        let side = 4;
        let sigma: Vec<u8> = (0..16).flat_map(|p| [if p % 2 == 0 { 0 } else { 2 }, 1, 1, 1]).collect();
        let c = l.content_ids(&sigma, side);
        let a = l.num_axes();
        assert_eq!(c.len(), 17 * a);
        assert!(c[..a].iter().all(|&v| v == 1), "class token is all ones");
        // Canvas token p = 6: row 1, col 2, σ = [0,1,1,1].
        assert_eq!(&c[7 * a..8 * a], &[0, 0, 1, 1, 1, 1, 2]);
        let s = l.structure_ids(&sigma, side);
        assert_eq!(s.len(), 33 * a);
        assert_eq!(&s[2 * a..3 * a], &[2, 2, 1, 1, 1, 0, 1], "condition token p = 1");
        assert_eq!(&s[18 * a..19 * a], &[0, 2, 1, 1, 1, 0, 1], "structure token p = 1");
    }

    #[test]
    fn rope_is_identity_at_zero_and_relative() {
        let dev = Device::flex();
        let l = RopeLayout::new(4);
        let a = l.num_axes();
        let x = Tensor::<4>::random([1, 1, 1, HEAD_DIM], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
        let zero = Rope::new(&l, &[vec![0; a]], &dev);
        let d = to_vec((zero.apply(x.clone()) - x.clone()).abs().max());
        assert!(d[0] < 1e-7);
        // <R(p)q, R(p')k> depends only on p − p'.
        let ids = |shift: u32| (0..a).map(|i| shift + i as u32).collect::<Vec<_>>();
        let y = Tensor::<4>::random([1, 1, 1, HEAD_DIM], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
        let dot = |p: u32, q: u32| {
            let rp = Rope::new(&l, &[ids(p)], &dev).apply(x.clone());
            let rq = Rope::new(&l, &[ids(q)], &dev).apply(y.clone());
            to_vec((rp * rq).sum())[0]
        };
        assert!((dot(3, 1) - dot(7, 5)).abs() < 1e-4);
        // Rotation keeps norms.
        let r = Rope::new(&l, &[ids(5)], &dev).apply(x.clone());
        let n0 = to_vec(x.powi_scalar(2).sum())[0];
        let n1 = to_vec(r.powi_scalar(2).sum())[0];
        assert!((n0 - n1).abs() < 1e-4 * n0);
    }

    #[test]
    fn rope_rotates_each_pair_counter_clockwise() {
        // Token type 1 on axis 0 rotates the first pair by angle 1·θ⁰ = 1 rad:
        // (x0, x1) → (x0·cos 1 − x1·sin 1, x1·cos 1 + x0·sin 1).
        let dev = Device::flex();
        let l = RopeLayout::new(4);
        let mut ids = vec![0u32; l.num_axes()];
        ids[0] = 1;
        let rope = Rope::new(&l, &[ids], &dev);
        let mut v = vec![0f32; HEAD_DIM];
        v[0] = 1.0;
        v[3] = 1.0; // second pair (x0 = 0, x1 = 1), also axis 0 but another frequency
        let y = to_vec(rope.apply(Tensor::<4>::from_data(TensorData::new(v, [1, 1, 1, HEAD_DIM]), &dev)));
        let (c, s) = (1f32.cos(), 1f32.sin());
        assert!((y[0] - c).abs() < 1e-6 && (y[1] - s).abs() < 1e-6, "{:?}", &y[..4]);
        let f = 10_000f32.powf(-2.0 / 8.0);
        assert!((y[2] + f.sin()).abs() < 1e-6 && (y[3] - f.cos()).abs() < 1e-6, "{:?}", &y[..4]);
        assert!(y[4..].iter().all(|v| *v == 0.0));
    }

    #[test]
    fn gelu_tanh_and_layer_norm_values() {
        let dev = Device::flex();
        let x = Tensor::<1>::from_floats([-3.0, -1.0, 0.0, 0.5, 2.0], &dev);
        let g = to_vec(gelu_tanh(x.clone()));
        for (xi, gi) in [-3.0f64, -1.0, 0.0, 0.5, 2.0].iter().zip(&g) {
            let want = 0.5 * xi * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (xi + 0.044715 * xi.powi(3))).tanh());
            assert!((want as f32 - gi).abs() < 1e-6, "gelu({xi}) = {gi}, want {want}");
        }
        let n = to_vec(layer_norm(x.reshape([1, 5])));
        let mean: f32 = n.iter().sum::<f32>() / 5.0;
        let var: f32 = n.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 5.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-4);
    }

    #[test]
    fn block_and_last_layer_shapes() {
        let dev = Device::flex();
        let blk = ParallelBlock::new(128, 2, 4, &dev);
        assert_eq!(blk.num_params(), ParallelBlock::param_count(128, 512));
        let l = RopeLayout::new(4);
        let sigma = vec![1u8; 16 * 4];
        let ids = l.content_ids(&sigma, 4);
        let rope = Rope::new(&l, &[ids.clone(), ids], &dev);
        let x = Tensor::<3>::random([2, 17, 128], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
        let vec = Tensor::<2>::random([2, 128], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
        let y = blk.forward(x.clone(), vec.clone(), &rope);
        assert_eq!(y.dims(), [2, 17, 128]);
        let last = LastLayer::new(128, 8, &dev);
        assert_eq!(last.num_params(), LastLayer::param_count(128, 8));
        let o = last.forward(y, vec);
        assert_eq!(o.dims(), [2, 17, 8]);
        assert!(to_vec(o).iter().all(|v| v.is_finite()));
    }
}
