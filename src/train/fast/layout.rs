//! Where every parameter of an [`NvgGenerator`] lives in one flat `f32` buffer.
//!
//! The order is burn's module visiting order (the fields in declaration order, a Linear's weight
//! before its bias), so [`flatten`] and [`unflatten`] need nothing but the public `Module` API;
//! [`GenLayout::new`] computes the same offsets from the configuration and [`flatten`] checks
//! the two agree tensor by tensor.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

use crate::model::generator::{GeneratorConfig, NvgGenerator, TIME_EMBED_DIM};
use crate::model::transformer::HEAD_DIM;

/// A Linear layer `y = x·W + b`, W `[d_in, d_out]` row-major at `w`, b at `b`.
#[derive(Clone, Copy, Debug)]
pub struct LinearAt {
    /// Offset of the weight.
    pub w: usize,
    /// Offset of the bias.
    pub b: usize,
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
}

/// A parallel block's parameters.
#[derive(Clone, Copy, Debug)]
pub struct BlockAt {
    /// `Linear_{W→3W}` of SiLU(vec): shift, scale, gate.
    pub modulation: LinearAt,
    /// `Linear_{W→3W+mlp}`: q, k, v, MLP.
    pub linear1: LinearAt,
    /// `Linear_{W+mlp→W}`.
    pub linear2: LinearAt,
    /// q RMSNorm scale `[64]`.
    pub q_scale: usize,
    /// k RMSNorm scale `[64]`.
    pub k_scale: usize,
    /// Width W.
    pub width: usize,
    /// Heads (W / 64).
    pub heads: usize,
    /// MLP hidden width.
    pub mlp: usize,
}

/// The final adaLN layer's parameters.
#[derive(Clone, Copy, Debug)]
pub struct LastAt {
    /// `Linear_{W→2W}` of SiLU(vec): shift, scale.
    pub ada: LinearAt,
    /// `Linear_{W→out}`.
    pub linear: LinearAt,
}

/// One tensor of the layout: its name (for messages), offset and shape.
#[derive(Clone, Debug)]
pub struct TensorAt {
    /// Dotted name as in the checkpoint (`content_blocks.0.linear1.weight`).
    pub name: String,
    /// Offset in the flat buffer.
    pub offset: usize,
    /// Shape.
    pub shape: Vec<usize>,
}

impl TensorAt {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Its index range in the flat buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Offsets of every parameter of a generator of one configuration.
#[derive(Clone, Debug)]
pub struct GenLayout {
    /// E_start `[L, C]`.
    pub start: usize,
    /// Canvas embedding `C → W`.
    pub content_embed: LinearAt,
    /// Class table `[classes + 1, W]`.
    pub content_class: usize,
    /// Stage table `[S, W]`.
    pub content_stage: usize,
    /// Content blocks.
    pub content_blocks: Vec<BlockAt>,
    /// x̂ head.
    pub x0_head: LastAt,
    /// Classification head `C → V`.
    pub cls_head: LinearAt,
    /// Flow-state embedding `bits → W_s`.
    pub structure_embed: LinearAt,
    /// Class table `[classes + 1, W_s]`.
    pub structure_class: usize,
    /// Canvas-condition embedding `C → W_s`.
    pub structure_cond: LinearAt,
    /// Stage table `[S − 2, W_s]`.
    pub structure_stage: usize,
    /// Time MLP, first layer `64 → W_s`.
    pub time_in: LinearAt,
    /// Time MLP, second layer `W_s → W_s`.
    pub time_out: LinearAt,
    /// Structure blocks.
    pub structure_blocks: Vec<BlockAt>,
    /// Velocity (or context-logit) head.
    pub structure_head: LastAt,
    /// Every tensor in order.
    pub tensors: Vec<TensorAt>,
    /// Total parameters.
    pub total: usize,
}

struct Builder {
    tensors: Vec<TensorAt>,
    next: usize,
}

impl Builder {
    fn tensor(&mut self, name: String, shape: Vec<usize>) -> usize {
        let offset = self.next;
        self.next += shape.iter().product::<usize>();
        self.tensors.push(TensorAt { name, offset, shape });
        offset
    }
    fn linear(&mut self, name: &str, d_in: usize, d_out: usize) -> LinearAt {
        let w = self.tensor(format!("{name}.weight"), vec![d_in, d_out]);
        let b = self.tensor(format!("{name}.bias"), vec![d_out]);
        LinearAt { w, b, d_in, d_out }
    }
    fn block(&mut self, name: &str, width: usize, heads: usize, mlp: usize) -> BlockAt {
        let modulation = self.linear(&format!("{name}.modulation.lin"), width, 3 * width);
        let linear1 = self.linear(&format!("{name}.linear1"), width, 3 * width + mlp);
        let linear2 = self.linear(&format!("{name}.linear2"), width + mlp, width);
        let q_scale = self.tensor(format!("{name}.norm.query_norm.scale"), vec![HEAD_DIM]);
        let k_scale = self.tensor(format!("{name}.norm.key_norm.scale"), vec![HEAD_DIM]);
        BlockAt { modulation, linear1, linear2, q_scale, k_scale, width, heads, mlp }
    }
    fn last(&mut self, name: &str, width: usize, out: usize) -> LastAt {
        let ada = self.linear(&format!("{name}.ada_ln_modulation"), width, 2 * width);
        let linear = self.linear(&format!("{name}.linear"), width, out);
        LastAt { ada, linear }
    }
}

impl GenLayout {
    /// The layout of a generator of configuration `cfg`, in burn's visiting order.
    pub fn new(cfg: &GeneratorConfig) -> Self {
        let (s, l, c) = (cfg.num_stages(), cfg.num_positions(), cfg.latent_channels);
        let (w, ws, bits) = (cfg.content_width, cfg.structure_width, cfg.num_bits());
        let classes = cfg.num_classes + 1;
        let mut b = Builder { tensors: Vec::new(), next: 0 };
        let start = b.tensor("content_start_embed".into(), vec![1, l, c]);
        let content_embed = b.linear("content_embed", c, w);
        let content_class = b.tensor("content_class_embed.weight".into(), vec![classes, w]);
        let content_stage = b.tensor("content_stage_embed.weight".into(), vec![s, w]);
        let content_blocks = (0..cfg.depth)
            .map(|i| b.block(&format!("content_blocks.{i}"), w, cfg.content_heads, cfg.mlp_ratio * w))
            .collect();
        let x0_head = b.last("x0_head", w, c);
        let cls_head = b.linear("cls_head.linear", c, cfg.vocab_size);
        let structure_embed = b.linear("structure_embed", bits, ws);
        let structure_class = b.tensor("structure_class_embed.weight".into(), vec![classes, ws]);
        let structure_cond = b.linear("structure_content_cond_embed", c, ws);
        let structure_stage = b.tensor("structure_stage_embed.weight".into(), vec![cfg.num_structure_stages(), ws]);
        let time_in = b.linear("structure_time_embed.in_layer", TIME_EMBED_DIM, ws);
        let time_out = b.linear("structure_time_embed.out_layer", ws, ws);
        let structure_blocks = (0..cfg.depth)
            .map(|i| b.block(&format!("structure_blocks.{i}"), ws, cfg.structure_heads, cfg.mlp_ratio * ws))
            .collect();
        let structure_head = b.last("structure_head", ws, bits);
        Self {
            start,
            content_embed,
            content_class,
            content_stage,
            content_blocks,
            x0_head,
            cls_head,
            structure_embed,
            structure_class,
            structure_cond,
            structure_stage,
            time_in,
            time_out,
            structure_blocks,
            structure_head,
            total: b.next,
            tensors: b.tensors,
        }
    }
}

struct Collect {
    values: Vec<f32>,
    shapes: Vec<Vec<usize>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        self.shapes.push(t.dims().to_vec());
        let v = t.into_data().convert::<f32>().try_into_vec::<f32>().expect("float parameters read as f32");
        self.values.extend(v);
    }
}

/// All parameters of `g` in the order of `layout`, checked tensor by tensor against it.
///
/// # Panics
/// If the module's tensors do not match the layout (a bug, not an input error: the layout is
/// computed from the same configuration).
pub fn flatten<M: Module>(g: &M, layout: &GenLayout) -> Vec<f32> {
    let mut c = Collect { values: Vec::with_capacity(layout.total), shapes: Vec::new() };
    g.visit(&mut c);
    assert_eq!(c.shapes.len(), layout.tensors.len(), "generator has {} tensors, layout {}", c.shapes.len(), layout.tensors.len());
    for (shape, t) in c.shapes.iter().zip(&layout.tensors) {
        assert_eq!(shape, &t.shape, "{}: module shape {shape:?}, layout {:?}", t.name, t.shape);
    }
    c.values
}

struct Write<'a> {
    flat: &'a [f32],
    next: usize,
}

impl ModuleMapper for Write<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (flat, start) = (self.flat, self.next);
        let n = param.val().shape().num_elements();
        self.next += n;
        param.map(|t| {
            let (dims, grad) = (t.dims(), t.is_require_grad());
            Tensor::from_data(TensorData::new(flat[start..start + n].to_vec(), dims), &t.device()).set_require_grad(grad)
        })
    }
}

/// `g` with every parameter replaced by the values of `flat` (same order as [`flatten`]);
/// parameter ids are kept.
pub fn unflatten(g: NvgGenerator, flat: &[f32]) -> NvgGenerator {
    let mut w = Write { flat, next: 0 };
    let g = g.map(&mut w);
    assert_eq!(w.next, flat.len(), "flat buffer has {} values, the generator {}", flat.len(), w.next);
    g
}
