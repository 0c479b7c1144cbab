//! Both branches' training losses and their gradients for a group of images (§4.4–4.7): the
//! content branch (x̂ MSE + code cross-entropy) at one stage, the structure branch (velocity MSE,
//! plain or context-logit head) at one flow sample.

use super::block::{BlockCache, block_backward, block_forward, last_backward, last_forward, lin, lin_mut};
use super::layout::GenLayout;
use super::ops::{linear, linear_backward, silu, silu_grad};
use crate::granularity::sigma_of_label;
use crate::model::generator::{CONTEXT_LOGIT_MIN_T, GeneratorConfig, TIME_EMBED_DIM, time_embedding_values};
use crate::model::transformer::rope_tables;

/// One batch on the host: classes, every stage's canvas, label maps and codes.
pub struct HostBatch {
    /// Class per image (the null class where dropped).
    pub classes: Vec<usize>,
    /// `canvases[i]` `[B·L·C]`: the canvas input of stage i; `canvases[S]` the final canvas X.
    pub canvases: Vec<Vec<f32>>,
    /// `labels[b][stage]` `[L]`.
    pub labels: Vec<Vec<Vec<u32>>>,
    /// `codes[b][stage][cluster]`.
    pub codes: Vec<Vec<Vec<u32>>>,
}

impl HostBatch {
    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.classes.len()
    }
    /// Whether it has no image.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

/// One structure sample on the host (see `monitor::FlowSample`): `z`, `target` `[B·L·bits]`,
/// `t` per image.
pub struct Flow<'a> {
    /// Structure stage.
    pub stage: usize,
    /// Flow state.
    pub z: &'a [f32],
    /// Velocity target.
    pub target: &'a [f32],
    /// Time per image.
    pub t: &'a [f32],
}

/// The images `first..first + count` of a batch, and how the losses are normalised.
pub struct Group<'a> {
    pub cfg: &'a GeneratorConfig,
    pub layout: &'a GenLayout,
    pub params: &'a [f32],
    pub batch: &'a HostBatch,
    pub first: usize,
    pub count: usize,
}

/// Loss sums of one group at one stage (divide by the batch's element counts for means).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sums {
    /// Σ squared error (x̂ or velocity).
    pub sq: f64,
    /// Content: Σ cross-entropy. Structure: Σ squared error on the decision channel.
    pub other: f64,
}

fn rope_for(cfg: &GeneratorConfig, labels: &[&[u32]], stage: usize, structure: bool) -> (Vec<f32>, Vec<f32>) {
    let layout = cfg.rope_layout();
    let bits = cfg.num_bits();
    let ids: Vec<Vec<u32>> = labels
        .iter()
        .map(|map| {
            let sigma: Vec<u8> = map.iter().flat_map(|&lab| sigma_of_label(lab, stage, bits)).collect();
            if structure { layout.structure_ids(&sigma, cfg.grid_side) } else { layout.content_ids(&sigma, cfg.grid_side) }
        })
        .collect();
    let (cos, sin, _) = rope_tables(&layout, &ids);
    (cos, sin)
}

impl Group<'_> {
    fn labels(&self, stage: usize) -> Vec<&[u32]> {
        (self.first..self.first + self.count).map(|b| self.batch.labels[b][stage].as_slice()).collect()
    }

    fn rows<'b>(&self, per_image: &'b [f32], width: usize) -> &'b [f32] {
        let l = self.cfg.num_positions();
        &per_image[self.first * l * width..(self.first + self.count) * l * width]
    }

    /// Content stage `stage`: adds `weight ×` the gradient of (x̂ MSE over the whole batch +
    /// code CE over the whole batch) to `gr`, returns this group's loss sums.
    pub fn content(&self, stage: usize, weight: f32, gr: &mut [f32]) -> Sums {
        let (cfg, lay, p) = (self.cfg, self.layout, self.params);
        let (g, l, c, w, v) = (self.count, cfg.num_positions(), cfg.latent_channels, cfg.content_width, cfg.vocab_size);
        let s = cfg.num_stages();
        let t = 1 + l;
        let kc = 1usize << stage;
        let b_total = self.batch.len() as f32;
        let classes = &self.batch.classes[self.first..self.first + g];
        let labels = self.labels(stage);
        let (cos, sin) = rope_for(cfg, &labels, stage, false);

        let class_row = |y: usize| &p[lay.content_class + y * w..lay.content_class + (y + 1) * w];
        let stage_row = &p[lay.content_stage + stage * w..lay.content_stage + (stage + 1) * w];
        let mut vec = vec![0f32; g * w];
        for (i, &y) in classes.iter().enumerate() {
            for ((o, a), b) in vec[i * w..(i + 1) * w].iter_mut().zip(class_row(y)).zip(stage_row) {
                *o = a + b;
            }
        }
        let canvas = self.rows(&self.batch.canvases[stage], c);
        let z: Vec<f32> = if stage == 0 {
            let start = &p[lay.start..lay.start + l * c];
            (0..g).flat_map(|_| start.iter().copied()).collect()
        } else {
            canvas.iter().map(|x| x * cfg.scale_factors[stage]).collect()
        };
        let mut emb = vec![0f32; g * l * w];
        let (we, be) = lin(p, lay.content_embed);
        linear(&z, g * l, we, be, c, w, &mut emb);
        let mut x = vec![0f32; g * t * w];
        for (i, &y) in classes.iter().enumerate() {
            x[i * t * w..(i * t + 1) * w].copy_from_slice(class_row(y));
            x[(i * t + 1) * w..(i + 1) * t * w].copy_from_slice(&emb[i * l * w..(i + 1) * l * w]);
        }
        let caches: Vec<BlockCache> =
            lay.content_blocks.iter().map(|at| block_forward(at, p, &mut x, g, t, &vec, &cos, &sin)).collect();
        let mut h = vec![0f32; g * l * w];
        for i in 0..g {
            h[i * l * w..(i + 1) * l * w].copy_from_slice(&x[(i * t + 1) * w..(i + 1) * t * w]);
        }
        let (mut x0, lc) = last_forward(&lay.x0_head, p, &h, g, l, &vec);
        let out_scale = cfg.scale_factors[s];
        x0.iter_mut().for_each(|v| *v /= out_scale);

        // Cluster means of the residual x̂ − x_i (x̂ at stage 0), then the code logits.
        let mut means = vec![0f32; g * kc * c];
        let mut counts = vec![0usize; g * kc];
        for i in 0..g {
            for (pos, &lab) in labels[i].iter().enumerate() {
                let k = i * kc + lab as usize;
                counts[k] += 1;
                for ch in 0..c {
                    let r = x0[(i * l + pos) * c + ch] - if stage == 0 { 0.0 } else { canvas[(i * l + pos) * c + ch] };
                    means[k * c + ch] += r;
                }
            }
        }
        for (k, &n) in counts.iter().enumerate() {
            let inv = 1.0 / n.max(1) as f32;
            means[k * c..(k + 1) * c].iter_mut().for_each(|m| *m *= inv);
        }
        let mut logits = vec![0f32; g * kc * v];
        let (wc, bc) = lin(p, lay.cls_head);
        linear(&means, g * kc, wc, bc, c, v, &mut logits);

        let mut sums = Sums::default();
        let ce_scale = weight / (b_total * kc as f32);
        for i in 0..g {
            let codes = &self.batch.codes[self.first + i][stage];
            for k in 0..kc {
                let row = &mut logits[(i * kc + k) * v..(i * kc + k + 1) * v];
                let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let sum: f32 = row.iter().map(|x| (x - max).exp()).sum();
                let lse = max + sum.ln();
                let target = codes[k] as usize;
                sums.other += (lse - row[target]) as f64;
                for (j, x) in row.iter_mut().enumerate() {
                    let pj = (*x - lse).exp();
                    *x = (pj - if j == target { 1.0 } else { 0.0 }) * ce_scale;
                }
            }
        }
        let dlogits = logits;
        let mut dmeans = vec![0f32; g * kc * c];
        {
            let (gw, gb) = lin_mut(gr, lay.cls_head);
            linear_backward(&means, &dlogits, g * kc, wc, c, v, gw, gb, Some((&mut dmeans, false)));
        }
        let target = self.rows(&self.batch.canvases[s], c);
        let mse_scale = 2.0 * weight / (b_total * (l * c) as f32);
        let mut dx0 = vec![0f32; g * l * c];
        for i in 0..g {
            for (pos, &lab) in labels[i].iter().enumerate() {
                let k = i * kc + lab as usize;
                let inv = 1.0 / counts[k].max(1) as f32;
                for ch in 0..c {
                    let idx = (i * l + pos) * c + ch;
                    let d = x0[idx] - target[idx];
                    sums.sq += (d * d) as f64;
                    // x̂ enters the MSE and, divided by the output scale, the cluster means.
                    dx0[idx] = (mse_scale * d + dmeans[k * c + ch] * inv) / out_scale;
                }
            }
        }
        let mut dvec = vec![0f32; g * w];
        let dh = last_backward(&lay.x0_head, p, gr, &lc, &vec, g, l, &dx0, &mut dvec);
        let mut dx = vec![0f32; g * t * w];
        for i in 0..g {
            dx[(i * t + 1) * w..(i + 1) * t * w].copy_from_slice(&dh[i * l * w..(i + 1) * l * w]);
        }
        for (at, cache) in lay.content_blocks.iter().zip(&caches).rev() {
            block_backward(at, p, gr, cache, &vec, g, t, &cos, &sin, &mut dx, &mut dvec);
        }
        for (i, &y) in classes.iter().enumerate() {
            let cr = lay.content_class + y * w;
            for j in 0..w {
                gr[cr + j] += dx[i * t * w + j] + dvec[i * w + j];
                gr[lay.content_stage + stage * w + j] += dvec[i * w + j];
            }
        }
        let mut demb = vec![0f32; g * l * w];
        for i in 0..g {
            demb[i * l * w..(i + 1) * l * w].copy_from_slice(&dx[(i * t + 1) * w..(i + 1) * t * w]);
        }
        let mut dz = if stage == 0 { vec![0f32; g * l * c] } else { Vec::new() };
        {
            let (gw, gb) = lin_mut(gr, lay.content_embed);
            let dzo = (stage == 0).then_some((dz.as_mut_slice(), false));
            linear_backward(&z, &demb, g * l, we, c, w, gw, gb, dzo);
        }
        if stage == 0 {
            let gs = &mut gr[lay.start..lay.start + l * c];
            for i in 0..g {
                gs.iter_mut().zip(&dz[i * l * c..(i + 1) * l * c]).for_each(|(a, b)| *a += b);
            }
        }
        sums
    }

    /// Structure sample `f`: adds `weight ×` the gradient of the velocity MSE over the whole
    /// batch to `gr`, returns this group's sums (all channels, decision channel).
    pub fn structure(&self, f: &Flow, weight: f32, gr: &mut [f32], positions: Option<&[f32]>) -> Sums {
        let (cfg, lay, p) = (self.cfg, self.layout, self.params);
        let (g, l, c, w, bits) = (self.count, cfg.num_positions(), cfg.latent_channels, cfg.structure_width, cfg.num_bits());
        let k = f.stage;
        let t = 1 + 2 * l;
        let b_total = self.batch.len() as f32;
        let classes = &self.batch.classes[self.first..self.first + g];
        let labels = self.labels(k);
        let (cos, sin) = rope_for(cfg, &labels, k, true);
        let times = &f.t[self.first..self.first + g];

        // vec = ClassEmb(y) + TimeMLP(emb(t)) + StageEmb(k).
        let temb = time_embedding_values(times);
        let (wi, bi) = lin(p, lay.time_in);
        let mut h1 = vec![0f32; g * w];
        linear(&temb, g, wi, bi, TIME_EMBED_DIM, w, &mut h1);
        let a1: Vec<f32> = h1.iter().map(|&x| silu(x)).collect();
        let (wo, bo) = lin(p, lay.time_out);
        let mut vec = vec![0f32; g * w];
        linear(&a1, g, wo, bo, w, w, &mut vec);
        let class_row = |y: usize| &p[lay.structure_class + y * w..lay.structure_class + (y + 1) * w];
        let stage_row = &p[lay.structure_stage + k * w..lay.structure_stage + (k + 1) * w];
        for (i, &y) in classes.iter().enumerate() {
            for ((o, a), b) in vec[i * w..(i + 1) * w].iter_mut().zip(class_row(y)).zip(stage_row) {
                *o += a + b;
            }
        }
        let cond_in = self.rows(&self.batch.canvases[k + 1], c);
        let z = &f.z[self.first * l * bits..(self.first + g) * l * bits];
        let mut cond = vec![0f32; g * l * w];
        let (wcc, bcc) = lin(p, lay.structure_cond);
        linear(cond_in, g * l, wcc, bcc, c, w, &mut cond);
        let mut flow = vec![0f32; g * l * w];
        let (wse, bse) = lin(p, lay.structure_embed);
        linear(z, g * l, wse, bse, bits, w, &mut flow);
        let mut x = vec![0f32; g * t * w];
        for (i, &y) in classes.iter().enumerate() {
            let base = i * t * w;
            x[base..base + w].copy_from_slice(class_row(y));
            x[base + w..base + (1 + l) * w].copy_from_slice(&cond[i * l * w..(i + 1) * l * w]);
            x[base + (1 + l) * w..base + t * w].copy_from_slice(&flow[i * l * w..(i + 1) * l * w]);
            if let Some(pos) = positions {
                for half in [base + w, base + (1 + l) * w] {
                    x[half..half + l * w].iter_mut().zip(pos).for_each(|(a, b)| *a += b);
                }
            }
        }
        drop((cond, flow));
        let caches: Vec<BlockCache> =
            lay.structure_blocks.iter().map(|at| block_forward(at, p, &mut x, g, t, &vec, &cos, &sin)).collect();
        let mut h = vec![0f32; g * l * w];
        for i in 0..g {
            h[i * l * w..(i + 1) * l * w].copy_from_slice(&x[(i * t + 1 + l) * w..(i + 1) * t * w]);
        }
        let (head, hc) = last_forward(&lay.structure_head, p, &h, g, l, &vec);

        // The velocity and d loss / d head.
        let target = &f.target[self.first * l * bits..(self.first + g) * l * bits];
        let scale = 2.0 * weight / (b_total * (l * bits) as f32);
        let mut sums = Sums::default();
        let mut dhead = vec![0f32; g * l * bits];
        for i in 0..g {
            let tb = times[i].max(CONTEXT_LOGIT_MIN_T);
            let (gain, inv_t) = ((1.0 - tb) / (tb * tb), 1.0 / tb);
            for e in i * l * bits..(i + 1) * l * bits {
                let j = e % bits;
                let (v, dv_dhead) = if !cfg.structure_context_logits {
                    (head[e], 1.0)
                } else if j < k {
                    (0.0, 0.0)
                } else {
                    let th = (z[e] * gain + head[e]).tanh();
                    ((z[e] - th) * inv_t, -(1.0 - th * th) * inv_t)
                };
                let d = v - target[e];
                sums.sq += (d * d) as f64;
                if j == k {
                    sums.other += (d * d) as f64;
                }
                dhead[e] = scale * d * dv_dhead;
            }
        }
        let mut dvec = vec![0f32; g * w];
        let dh = last_backward(&lay.structure_head, p, gr, &hc, &vec, g, l, &dhead, &mut dvec);
        let mut dx = vec![0f32; g * t * w];
        for i in 0..g {
            dx[(i * t + 1 + l) * w..(i + 1) * t * w].copy_from_slice(&dh[i * l * w..(i + 1) * l * w]);
        }
        for (at, cache) in lay.structure_blocks.iter().zip(&caches).rev() {
            block_backward(at, p, gr, cache, &vec, g, t, &cos, &sin, &mut dx, &mut dvec);
        }
        let mut dcond = vec![0f32; g * l * w];
        let mut dflow = vec![0f32; g * l * w];
        for (i, &y) in classes.iter().enumerate() {
            let base = i * t * w;
            let cr = lay.structure_class + y * w;
            for j in 0..w {
                gr[cr + j] += dx[base + j] + dvec[i * w + j];
                gr[lay.structure_stage + k * w + j] += dvec[i * w + j];
            }
            dcond[i * l * w..(i + 1) * l * w].copy_from_slice(&dx[base + w..base + (1 + l) * w]);
            dflow[i * l * w..(i + 1) * l * w].copy_from_slice(&dx[base + (1 + l) * w..base + t * w]);
        }
        {
            let (gw, gb) = lin_mut(gr, lay.structure_cond);
            linear_backward(cond_in, &dcond, g * l, wcc, c, w, gw, gb, None);
        }
        {
            let (gw, gb) = lin_mut(gr, lay.structure_embed);
            linear_backward(z, &dflow, g * l, wse, bits, w, gw, gb, None);
        }
        // Time MLP.
        let mut da1 = vec![0f32; g * w];
        {
            let (gw, gb) = lin_mut(gr, lay.time_out);
            linear_backward(&a1, &dvec, g, wo, w, w, gw, gb, Some((&mut da1, false)));
        }
        let dh1: Vec<f32> = da1.iter().zip(&h1).map(|(d, &x)| d * silu_grad(x)).collect();
        let (gw, gb) = lin_mut(gr, lay.time_in);
        linear_backward(&temb, &dh1, g, wi, TIME_EMBED_DIM, w, gw, gb, None);
        sums
    }
}
