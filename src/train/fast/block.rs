//! Forward (keeping what the backward pass reads) and backward of the parallel block (§4.2) and
//! the final adaLN layer, on a group of `g` sequences of `t` tokens stacked row by row.
//! Parameters are read from, and gradients added to, flat buffers laid out by
//! [`super::layout::GenLayout`].

use super::layout::{BlockAt, LastAt, LinearAt};
use super::ops::{
    gemm, layer_norm_row, layer_norm_row_backward, linear, linear_backward, rm, rms_row, rms_row_backward,
    rope_row, rope_row_backward, silu, silu_grad, tr,
};
use crate::model::host::kernels;
use crate::model::transformer::{HEAD_DIM, NORM_EPS};

const EPS: f32 = NORM_EPS as f32;
/// Attention scale 1/√64.
const ATTN_SCALE: f32 = 0.125;

/// Weight and bias of a Linear in a flat buffer.
pub fn lin(p: &[f32], at: LinearAt) -> (&[f32], &[f32]) {
    (&p[at.w..at.w + at.d_in * at.d_out], &p[at.b..at.b + at.d_out])
}

/// Gradient slots of a Linear's weight and bias (the bias follows the weight in the layout).
pub fn lin_mut(g: &mut [f32], at: LinearAt) -> (&mut [f32], &mut [f32]) {
    debug_assert_eq!(at.b, at.w + at.d_in * at.d_out);
    g[at.w..at.b + at.d_out].split_at_mut(at.d_in * at.d_out)
}

/// What a block's backward pass reads.
pub struct BlockCache {
    sv: Vec<f32>,
    m: Vec<f32>,
    xn: Vec<f32>,
    rstd: Vec<f32>,
    u: Vec<f32>,
    proj: Vec<f32>,
    rq: Vec<f32>,
    rk: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    probs: Vec<f32>,
    cat: Vec<f32>,
    /// GELU′ of the MLP pre-activations `[g·t, mlp]`.
    gelu_grad: Vec<f32>,
    o: Vec<f32>,
}

/// `x` `[g·t, W]` in place through the block; `vec` `[g, W]`; `cos`, `sin` `[g·t, 64]`.
#[allow(clippy::too_many_arguments)]
pub fn block_forward(at: &BlockAt, p: &[f32], x: &mut [f32], g: usize, t: usize, vec: &[f32], cos: &[f32], sin: &[f32]) -> BlockCache {
    let (w, h, mlp) = (at.width, at.heads, at.mlp);
    let (pw, cw, rows) = (3 * w + mlp, w + mlp, g * t);
    assert!(x.len() == rows * w && vec.len() == g * w && cos.len() == rows * HEAD_DIM && sin.len() == rows * HEAD_DIM);

    let sv: Vec<f32> = vec.iter().map(|&v| silu(v)).collect();
    let mut m = vec![0f32; g * 3 * w];
    let (wm, bm) = lin(p, at.modulation);
    linear(&sv, g, wm, bm, w, 3 * w, &mut m);

    let mut xn = vec![0f32; rows * w];
    let mut rstd = vec![0f32; rows];
    let mut u = vec![0f32; rows * w];
    for r in 0..rows {
        let mi = &m[(r / t) * 3 * w..(r / t + 1) * 3 * w];
        let (shift, scale) = (&mi[..w], &mi[w..2 * w]);
        let xr = &mut xn[r * w..(r + 1) * w];
        rstd[r] = layer_norm_row(&x[r * w..(r + 1) * w], EPS, xr);
        for (((o, n), s), b) in u[r * w..(r + 1) * w].iter_mut().zip(xr.iter()).zip(scale).zip(shift) {
            *o = n * (1.0 + s) + b;
        }
    }
    let mut proj = vec![0f32; rows * pw];
    let (w1, b1) = lin(p, at.linear1);
    linear(&u, rows, w1, b1, w, pw, &mut proj);

    // q, k: RMSNorm × scale, then RoPE; the MLP half through GELU into the concat buffer.
    let (qs, ks) = (&p[at.q_scale..at.q_scale + HEAD_DIM], &p[at.k_scale..at.k_scale + HEAD_DIM]);
    let mut q = vec![0f32; rows * w];
    let mut k = vec![0f32; rows * w];
    let mut rq = vec![0f32; rows * h];
    let mut rk = vec![0f32; rows * h];
    let mut cat = vec![0f32; rows * cw];
    let mut gelu_grad = vec![0f32; rows * mlp];
    for r in 0..rows {
        let (cs, sn) = (&cos[r * HEAD_DIM..(r + 1) * HEAD_DIM], &sin[r * HEAD_DIM..(r + 1) * HEAD_DIM]);
        let row = &proj[r * pw..(r + 1) * pw];
        for hh in 0..h {
            let o = hh * HEAD_DIM;
            let qd = &mut q[r * w + o..r * w + o + HEAD_DIM];
            rq[r * h + hh] = rms_row(&row[o..o + HEAD_DIM], qs, EPS, qd);
            rope_row(qd, cs, sn);
            let kd = &mut k[r * w + o..r * w + o + HEAD_DIM];
            rk[r * h + hh] = rms_row(&row[w + o..w + o + HEAD_DIM], ks, EPS, kd);
            rope_row(kd, cs, sn);
        }
        kernels::gelu_tanh_with_grad(&row[3 * w..], &mut cat[r * cw + w..(r + 1) * cw], &mut gelu_grad[r * mlp..(r + 1) * mlp]);
    }

    // Attention per sequence and head: P = softmax(q·kᵀ/8), out = P·v.
    let mut probs = vec![0f32; g * h * t * t];
    for i in 0..g {
        for hh in 0..h {
            let o = hh * HEAD_DIM;
            let base = i * t;
            let pr = &mut probs[(i * h + hh) * t * t..(i * h + hh + 1) * t * t];
            gemm(t, t, HEAD_DIM, pr, t, false, rm(&q[base * w + o..], w), tr(&k[base * w + o..], w), ATTN_SCALE);
            for row in pr.chunks_mut(t) {
                let inv = 1.0 / kernels::exp_shifted_row(row);
                row.iter_mut().for_each(|v| *v *= inv);
            }
            gemm(t, HEAD_DIM, t, &mut cat[base * cw + o..], cw, false, rm(pr, t), rm(&proj[base * pw + 2 * w + o..], pw), 1.0);
        }
    }

    let mut out = vec![0f32; rows * w];
    let (w2, b2) = lin(p, at.linear2);
    linear(&cat, rows, w2, b2, cw, w, &mut out);
    for r in 0..rows {
        let gate = &m[(r / t) * 3 * w + 2 * w..(r / t + 1) * 3 * w];
        for ((xv, ov), gv) in x[r * w..(r + 1) * w].iter_mut().zip(&out[r * w..(r + 1) * w]).zip(gate) {
            *xv += gv * ov;
        }
    }
    BlockCache { sv, m, xn, rstd, u, proj, rq, rk, q, k, probs, cat, gelu_grad, o: out }
}

/// Backward of [`block_forward`]: `dx` holds ∂L/∂output on entry and ∂L/∂input on return;
/// parameter gradients are added to `gr`, ∂L/∂vec to `dvec` `[g, W]`.
#[allow(clippy::too_many_arguments)]
pub fn block_backward(
    at: &BlockAt,
    p: &[f32],
    gr: &mut [f32],
    c: &BlockCache,
    vec: &[f32],
    g: usize,
    t: usize,
    cos: &[f32],
    sin: &[f32],
    dx: &mut [f32],
    dvec: &mut [f32],
) {
    let (w, h, mlp) = (at.width, at.heads, at.mlp);
    let (pw, cw, rows) = (3 * w + mlp, w + mlp, g * t);
    let mut dm = vec![0f32; g * 3 * w];

    // x_out = x + gate ⊙ o.
    let mut dout = vec![0f32; rows * w];
    for r in 0..rows {
        let i = r / t;
        let (dg, gate) = (&mut dm[i * 3 * w + 2 * w..(i + 1) * 3 * w], &c.m[i * 3 * w + 2 * w..(i + 1) * 3 * w]);
        let (d, o, dst) = (&dx[r * w..(r + 1) * w], &c.o[r * w..(r + 1) * w], &mut dout[r * w..(r + 1) * w]);
        for ((((dgj, &gj), &dj), &oj), dsj) in dg.iter_mut().zip(gate).zip(d).zip(o).zip(dst.iter_mut()) {
            *dgj += dj * oj;
            *dsj = dj * gj;
        }
    }
    let mut dcat = vec![0f32; rows * cw];
    {
        let (w2, _) = lin(p, at.linear2);
        let (gw, gb) = lin_mut(gr, at.linear2);
        linear_backward(&c.cat, &dout, rows, w2, cw, w, gw, gb, Some((&mut dcat, false)));
    }
    drop(dout);

    let mut dproj = vec![0f32; rows * pw];
    // GELU.
    for r in 0..rows {
        let (src, g, dst) = (&dcat[r * cw + w..(r + 1) * cw], &c.gelu_grad[r * mlp..(r + 1) * mlp], &mut dproj[r * pw + 3 * w..(r + 1) * pw]);
        for ((o, &a), &b) in dst.iter_mut().zip(src).zip(g) {
            *o = a * b;
        }
    }
    // Attention: dV = Pᵀ·dO, dP = dO·vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)), dq = dS·k/8, dk = dSᵀ·q/8.
    let mut dq = vec![0f32; rows * w];
    let mut dk = vec![0f32; rows * w];
    let mut ds = vec![0f32; t * t];
    for i in 0..g {
        let base = i * t;
        for hh in 0..h {
            let o = hh * HEAD_DIM;
            let pr = &c.probs[(i * h + hh) * t * t..(i * h + hh + 1) * t * t];
            let d_o = rm(&dcat[base * cw + o..], cw);
            gemm(t, HEAD_DIM, t, &mut dproj[base * pw + 2 * w + o..], pw, false, tr(pr, t), d_o, 1.0);
            gemm(t, t, HEAD_DIM, &mut ds, t, false, d_o, tr(&c.proj[base * pw + 2 * w + o..], pw), 1.0);
            for (srow, prow) in ds.chunks_mut(t).zip(pr.chunks(t)) {
                let dot: f32 = srow.iter().zip(prow).map(|(a, b)| a * b).sum();
                for (s, &pv) in srow.iter_mut().zip(prow) {
                    *s = pv * (*s - dot);
                }
            }
            gemm(t, HEAD_DIM, t, &mut dq[base * w + o..], w, false, rm(&ds, t), rm(&c.k[base * w + o..], w), ATTN_SCALE);
            gemm(t, HEAD_DIM, t, &mut dk[base * w + o..], w, false, tr(&ds, t), rm(&c.q[base * w + o..], w), ATTN_SCALE);
        }
    }
    drop(ds);
    // RoPE and RMSNorm back to the projection's q and k columns.
    let (qs, ks) = (&p[at.q_scale..at.q_scale + HEAD_DIM], &p[at.k_scale..at.k_scale + HEAD_DIM]);
    let mut dqs = vec![0f32; HEAD_DIM];
    let mut dks = vec![0f32; HEAD_DIM];
    for r in 0..rows {
        let (cs, sn) = (&cos[r * HEAD_DIM..(r + 1) * HEAD_DIM], &sin[r * HEAD_DIM..(r + 1) * HEAD_DIM]);
        for hh in 0..h {
            let o = hh * HEAD_DIM;
            let dqr = &mut dq[r * w + o..r * w + o + HEAD_DIM];
            rope_row_backward(dqr, cs, sn);
            let (xq, dst) = (&c.proj[r * pw + o..r * pw + o + HEAD_DIM], &mut dproj[r * pw + o..r * pw + o + HEAD_DIM]);
            rms_row_backward(xq, qs, c.rq[r * h + hh], dqr, &mut dqs, dst);
            let dkr = &mut dk[r * w + o..r * w + o + HEAD_DIM];
            rope_row_backward(dkr, cs, sn);
            let (xk, dst) = (&c.proj[r * pw + w + o..r * pw + w + o + HEAD_DIM], &mut dproj[r * pw + w + o..r * pw + w + o + HEAD_DIM]);
            rms_row_backward(xk, ks, c.rk[r * h + hh], dkr, &mut dks, dst);
        }
    }
    gr[at.q_scale..at.q_scale + HEAD_DIM].iter_mut().zip(&dqs).for_each(|(a, b)| *a += b);
    gr[at.k_scale..at.k_scale + HEAD_DIM].iter_mut().zip(&dks).for_each(|(a, b)| *a += b);
    drop((dq, dk, dcat));

    let mut du = vec![0f32; rows * w];
    {
        let (w1, _) = lin(p, at.linear1);
        let (gw, gb) = lin_mut(gr, at.linear1);
        linear_backward(&c.u, &dproj, rows, w1, w, pw, gw, gb, Some((&mut du, false)));
    }
    drop(dproj);
    // u = x̂ ⊙ (1 + scale) + shift, then the LayerNorm; dx keeps the residual's gradient.
    let mut dxn = vec![0f32; w];
    for r in 0..rows {
        let i = r / t;
        let (dshift, rest) = dm[i * 3 * w..i * 3 * w + 2 * w].split_at_mut(w);
        let scale = &c.m[i * 3 * w + w..i * 3 * w + 2 * w];
        let (xn, d) = (&c.xn[r * w..(r + 1) * w], &du[r * w..(r + 1) * w]);
        for (((((ds, dsc), &dj), &xj), &sj), o) in dshift.iter_mut().zip(rest.iter_mut()).zip(d).zip(xn).zip(scale).zip(dxn.iter_mut()) {
            *ds += dj;
            *dsc += dj * xj;
            *o = dj * (1.0 + sj);
        }
        layer_norm_row_backward(xn, c.rstd[r], &dxn, &mut dx[r * w..(r + 1) * w]);
    }
    // Modulation: m = SiLU(vec)·Wm + bm.
    let mut dsv = vec![0f32; g * w];
    let (wm, _) = lin(p, at.modulation);
    let (gw, gb) = lin_mut(gr, at.modulation);
    linear_backward(&c.sv, &dm, g, wm, w, 3 * w, gw, gb, Some((&mut dsv, false)));
    for ((d, s), v) in dvec.iter_mut().zip(&dsv).zip(vec) {
        *d += s * silu_grad(*v);
    }
}

/// What the final layer's backward pass reads.
pub struct LastCache {
    sv: Vec<f32>,
    m: Vec<f32>,
    xn: Vec<f32>,
    rstd: Vec<f32>,
    u: Vec<f32>,
}

/// `x` `[g·n, W]` (n rows per sequence), `vec` `[g, W]` → `[g·n, out]`.
pub fn last_forward(at: &LastAt, p: &[f32], x: &[f32], g: usize, n: usize, vec: &[f32]) -> (Vec<f32>, LastCache) {
    let w = at.ada.d_in;
    let rows = g * n;
    let sv: Vec<f32> = vec.iter().map(|&v| silu(v)).collect();
    let mut m = vec![0f32; g * 2 * w];
    let (wa, ba) = lin(p, at.ada);
    linear(&sv, g, wa, ba, w, 2 * w, &mut m);
    let mut xn = vec![0f32; rows * w];
    let mut rstd = vec![0f32; rows];
    let mut u = vec![0f32; rows * w];
    for r in 0..rows {
        let mi = &m[(r / n) * 2 * w..(r / n + 1) * 2 * w];
        let xr = &mut xn[r * w..(r + 1) * w];
        rstd[r] = layer_norm_row(&x[r * w..(r + 1) * w], EPS, xr);
        for (((o, v), s), b) in u[r * w..(r + 1) * w].iter_mut().zip(xr.iter()).zip(&mi[w..]).zip(&mi[..w]) {
            *o = v * (1.0 + s) + b;
        }
    }
    let out_w = at.linear.d_out;
    let mut y = vec![0f32; rows * out_w];
    let (wl, bl) = lin(p, at.linear);
    linear(&u, rows, wl, bl, w, out_w, &mut y);
    (y, LastCache { sv, m, xn, rstd, u })
}

/// Backward of [`last_forward`]: returns ∂L/∂x `[g·n, W]`, adds to `gr` and `dvec`.
#[allow(clippy::too_many_arguments)]
pub fn last_backward(at: &LastAt, p: &[f32], gr: &mut [f32], c: &LastCache, vec: &[f32], g: usize, n: usize, dy: &[f32], dvec: &mut [f32]) -> Vec<f32> {
    let w = at.ada.d_in;
    let rows = g * n;
    let out_w = at.linear.d_out;
    let mut du = vec![0f32; rows * w];
    {
        let (wl, _) = lin(p, at.linear);
        let (gw, gb) = lin_mut(gr, at.linear);
        linear_backward(&c.u, dy, rows, wl, w, out_w, gw, gb, Some((&mut du, false)));
    }
    let mut dm = vec![0f32; g * 2 * w];
    let mut dx = vec![0f32; rows * w];
    let mut dxn = vec![0f32; w];
    for r in 0..rows {
        let i = r / n;
        let scale = &c.m[i * 2 * w + w..(i + 1) * 2 * w];
        let xn = &c.xn[r * w..(r + 1) * w];
        for j in 0..w {
            let d = du[r * w + j];
            dm[i * 2 * w + j] += d;
            dm[i * 2 * w + w + j] += d * xn[j];
            dxn[j] = d * (1.0 + scale[j]);
        }
        layer_norm_row_backward(xn, c.rstd[r], &dxn, &mut dx[r * w..(r + 1) * w]);
    }
    let mut dsv = vec![0f32; g * w];
    let (wa, _) = lin(p, at.ada);
    let (gw, gb) = lin_mut(gr, at.ada);
    linear_backward(&c.sv, &dm, g, wa, w, 2 * w, gw, gb, Some((&mut dsv, false)));
    for ((d, s), v) in dvec.iter_mut().zip(&dsv).zip(vec) {
        *d += s * silu_grad(*v);
    }
    dx
}
