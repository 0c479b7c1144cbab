//! The generator's inference path on the host CPU: both branches of [`NvgGenerator`] evaluated on
//! plain `f32` buffers with the `gemm` crate's kernels and the fused kernels of
//! [`kernels`], instead of one burn-flex operation at a time.
//!
//! Why: burn-flex reaches ≈ 47 GFLOP/s on the structure block's fused projection (513 × 128 ·
//! 128 × 896) and runs GELU's `exp` one element at a time, while `gemm` itself reaches ≈ 160
//! GFLOP/s on the same shape with the rows split over the two cores (docs/benchmarks.md). The
//! arithmetic is the burn path's (same formulas, f32 throughout); only the rounding order differs,
//! and the parity tests hold this path to the reference vectors too. [`Precision::Bf16`] instead
//! rounds the blocks' matrix-product operands to bfloat16 ([`bf16`]).
//!
//! Determinism: every image of a batch is computed alone, and every row split is a fixed function
//! of the shape (two halves, whichever thread runs them), so a result does not depend on the batch
//! it was computed in, the thread count or scheduling.
//!
//! Used by the sampler on the CPU backend (burn's flex device, without autodiff); the burn path
//! stays for training, the GPU and as the reference (`set_enabled(false)`).

pub mod bf16;
pub mod kernels;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use self::bf16::PackedB;
use super::generator::{NvgGenerator, context_logit_velocity, structure_position_table, time_embedding_values};
use super::tokenizer::to_vec_f32;
use super::transformer::{HEAD_DIM, LastLayer, NORM_EPS, ParallelBlock, rope_tables};

static ENABLED: AtomicBool = AtomicBool::new(true);
static BF16: AtomicBool = AtomicBool::new(false);

/// Arithmetic of the transformer blocks' matrix products on the host path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout (the default; the parity tests hold it to the reference vectors).
    #[default]
    F32,
    /// Operands of the blocks' products (projections, attention scores, attention · v) rounded
    /// to bfloat16, sums in f32 ([`bf16`]); everything else stays f32.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision '{other}' (expected f32 or bf16)")),
        }
    }
}

/// Sets the precision of host paths built from now on (process-wide, like [`set_enabled`]).
pub fn set_precision(p: Precision) {
    BF16.store(p == Precision::Bf16, Ordering::SeqCst);
}

/// The precision [`HostGenerator::new`] uses.
pub fn precision() -> Precision {
    if BF16.load(Ordering::SeqCst) { Precision::Bf16 } else { Precision::F32 }
}

/// Turns the host path on or off for the whole process (on by default; benchmarks and tests
/// switch it off to time or check the burn path).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
}

/// Whether the sampler uses the host path on the CPU backend.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

/// How the status bar and the CLI name this path: "host kernels (AVX-512)", "(AVX2)" or
/// "(scalar)", and with bf16 the kernel of its products ("host kernels (AVX-512) · bf16 (AMX)").
pub fn label() -> String {
    label_for(precision())
}

/// [`label`] for a given precision.
pub fn label_for(precision: Precision) -> String {
    let base = format!("host kernels ({})", kernels::instruction_set());
    match precision {
        Precision::F32 => base,
        Precision::Bf16 => format!("{base} · bf16 ({})", bf16::kernel().name()),
    }
}

/// Rows below this count are not split over the two halves.
const SPLIT_MIN_ROWS: usize = 16;

/// Runs `f` on a thread of rayon's pool, so that the row splits inside it are forks of a worker
/// (a deque push) rather than cold injections from outside the pool, each of which parks and
/// wakes the calling thread (~14 of them per velocity evaluation; measured ~0.5 ms in all).
fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Runs `one(b, workspace)` for the images `0..n` of a batch inside the pool, concurrently (a
/// guided batch has at least two), and concatenates the results in order. Each image is computed
/// exactly as it would be alone (same fixed row halves), so the bits do not depend on the batch.
fn per_image(n: usize, one: impl Fn(usize, &mut Workspace) -> Vec<f32> + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    in_pool(|| {
        let parts: Vec<Vec<f32>> = (0..n).into_par_iter().map(|b| with_workspace(|ws| one(b, ws))).collect();
        parts.concat()
    })
}

/// Runs `f(first_row, rows)` on two fixed halves of `m` rows in parallel (one call for few rows).
fn for_row_halves(m: usize, f: impl Fn(usize, usize) + Sync) {
    if m >= SPLIT_MIN_ROWS {
        let h = m.div_ceil(2);
        rayon::join(|| f(0, h), || f(h, m - h));
    } else {
        f(0, m);
    }
}

/// A raw pointer that closures running on two threads may share; every use writes disjoint rows.
#[derive(Clone, Copy)]
struct Ptr(*mut f32);
// SAFETY: the pointer is only dereferenced for disjoint row ranges (see `for_row_halves`), and the
// buffer outlives the parallel region.
unsafe impl Send for Ptr {}
// SAFETY: as above.
unsafe impl Sync for Ptr {}

impl Ptr {
    fn of(v: &mut [f32]) -> Self {
        Self(v.as_mut_ptr())
    }
    /// # Safety
    /// `off + len` must be within the buffer and the range not aliased by another live slice.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, off: usize, len: usize) -> &mut [f32] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(off), len) }
    }
    fn at(&self, off: usize) -> *mut f32 {
        self.0.wrapping_add(off)
    }
}

/// `dst = [dst +] beta · lhs · rhs` for an `m × k` lhs with unit column stride and row stride
/// `lhs_rs`, rhs element `(i, j)` at `rhs[i·rhs_rs + j·rhs_cs]`, dst with row stride `dst_rs`.
///
/// # Safety
/// Every addressed element must lie inside its buffer; `dst` must not overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
    beta: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the caller's contract; gemm reads/writes exactly the described strided views.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            1,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

/// A Linear layer's weight `[d_in, d_out]` (burn's layout: `y = x·W + b`) and bias.
struct HostLinear {
    w: Vec<f32>,
    b: Vec<f32>,
    d_in: usize,
    d_out: usize,
}

impl HostLinear {
    fn new(l: &Linear) -> Self {
        let [d_in, d_out] = l.weight.val().dims();
        let w = to_vec_f32(l.weight.val());
        let b = l.bias.as_ref().map(|b| to_vec_f32(b.val())).unwrap_or_else(|| vec![0.0; d_out]);
        Self { w, b, d_in, d_out }
    }

    /// `out[m × d_out] = x[m × d_in]·W + b` on the calling thread.
    fn rows(&self, x: &[f32], m: usize, out: &mut [f32]) {
        assert!(x.len() >= m * self.d_in && out.len() >= m * self.d_out, "host linear: buffers too small");
        for r in 0..m {
            out[r * self.d_out..(r + 1) * self.d_out].copy_from_slice(&self.b);
        }
        // SAFETY: the sizes were checked above; `out` is a distinct buffer.
        unsafe {
            matmul(m, self.d_out, self.d_in, out.as_mut_ptr(), self.d_out, true, x.as_ptr(), self.d_in, self.w.as_ptr(), self.d_out, 1, 1.0)
        };
    }

    fn apply(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * self.d_out];
        self.rows(x, m, &mut out);
        out
    }

    /// [`Self::rows`] with the rows split over two threads.
    fn apply_par(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * self.d_out];
        let op = Ptr::of(&mut out);
        for_row_halves(m, |r0, n| {
            // SAFETY: the halves cover disjoint rows of `out`.
            let o = unsafe { op.slice(r0 * self.d_out, n * self.d_out) };
            self.rows(&x[r0 * self.d_in..(r0 + n) * self.d_in], n, o);
        });
        out
    }
}

/// Scratch buffers of one block evaluation, reused across blocks.
#[derive(Default)]
struct Workspace {
    u: Vec<f32>,
    proj: Vec<f32>,
    cat: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    o: Vec<f32>,
    scores: Vec<f32>,
    /// bf16: each head's kᵀ and v in tile layout.
    k_packed: Vec<PackedB>,
    v_packed: Vec<PackedB>,
    /// bf16: the concat buffer of each row half (attention output | GELU), written in bf16 by
    /// its producers — the left side of the output projection.
    cat16: [bf16::PackedA; 2],
}

/// The two row halves' bf16 concat buffers, shared by the closures of both halves.
#[derive(Clone, Copy)]
struct Halves(*mut bf16::PackedA);
// SAFETY: each half only touches its own buffer (see `get`), and the array outlives the regions.
unsafe impl Send for Halves {}
// SAFETY: as above.
unsafe impl Sync for Halves {}

impl Halves {
    /// The buffer of the half starting at row `r0` (the first half starts at 0).
    ///
    /// # Safety
    /// Only the task of that half may hold it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self, r0: usize) -> &mut bf16::PackedA {
        // SAFETY: the array has two elements; the caller's contract excludes aliasing.
        unsafe { &mut *self.0.add(usize::from(r0 != 0)) }
    }
}

thread_local! {
    /// bf16: the calling thread's softmax weights, the left side of attention's ·v.
    static PROBS: std::cell::RefCell<bf16::PackedA> = std::cell::RefCell::new(bf16::PackedA::default());
    /// The calling thread's workspace, kept between calls: fresh multi-megabyte buffers on every
    /// velocity evaluation cost ~1 ms of page faults each (measured).
    static WORKSPACE: std::cell::RefCell<Workspace> = std::cell::RefCell::new(Workspace::default());
}

/// Runs `f` with this thread's workspace.
fn with_workspace<R>(f: impl FnOnce(&mut Workspace) -> R) -> R {
    let mut ws = WORKSPACE.with(|w| std::mem::take(&mut *w.borrow_mut()));
    let r = f(&mut ws);
    WORKSPACE.with(|w| *w.borrow_mut() = ws);
    r
}

fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// One parallel block (§4.2) on the host.
struct HostBlock {
    modulation: HostLinear,
    linear1: HostLinear,
    linear2: HostLinear,
    q_scale: Vec<f32>,
    k_scale: Vec<f32>,
    heads: usize,
    width: usize,
    mlp: usize,
    /// bf16: linear1's and linear2's weights in tile layout.
    packed: Option<(PackedB, PackedB)>,
}

impl HostBlock {
    fn new(b: &ParallelBlock, precision: Precision) -> Self {
        let linear1 = HostLinear::new(&b.linear1);
        let width = b.heads * HEAD_DIM;
        let (modulation, linear2) = (HostLinear::new(&b.modulation.lin), HostLinear::new(&b.linear2));
        let (q_scale, k_scale) = (to_vec_f32(b.norm.query_norm.scale.val()), to_vec_f32(b.norm.key_norm.scale.val()));
        // The unsafe matmuls of `forward` rely on these shapes; a module whose weights disagree
        // with its head count stops here instead of reading out of bounds.
        assert!(
            linear1.d_in == width && linear1.d_out > 3 * width,
            "host block: linear1 is {}×{}, expected {width}×(3·{width} + mlp)",
            linear1.d_in,
            linear1.d_out
        );
        let mlp = linear1.d_out - 3 * width;
        assert!(
            linear2.d_in == width + mlp && linear2.d_out == width,
            "host block: linear2 is {}×{}, expected {}×{width}",
            linear2.d_in,
            linear2.d_out,
            width + mlp
        );
        assert!(
            modulation.d_in == width && modulation.d_out == 3 * width,
            "host block: modulation is {}×{}, expected {width}×{}",
            modulation.d_in,
            modulation.d_out,
            3 * width
        );
        assert!(q_scale.len() == HEAD_DIM && k_scale.len() == HEAD_DIM, "host block: q/k norm scales must have {HEAD_DIM} entries");
        let packed = (precision == Precision::Bf16).then(|| {
            (PackedB::from_rows(&linear1.w, linear1.d_in, linear1.d_out), PackedB::from_rows(&linear2.w, linear2.d_in, linear2.d_out))
        });
        Self { modulation, linear1, linear2, q_scale, k_scale, heads: b.heads, width, mlp, packed }
    }

    /// `x` `[T, W]` of one image in place; `vec` `[W]`; `cos`, `sin` `[T, 64]`.
    fn forward(&self, x: &mut [f32], t: usize, vec: &[f32], cos: &[f32], sin: &[f32], ws: &mut Workspace) {
        let (w, h, mlp) = (self.width, self.heads, self.mlp);
        let (p, c) = (3 * w + mlp, w + mlp);
        let eps = NORM_EPS as f32;
        assert!(x.len() == t * w && vec.len() == w && cos.len() == t * HEAD_DIM && sin.len() == t * HEAD_DIM);

        // 1. Modulation: (shift, scale, gate) = Linear(SiLU(vec)).
        let sv: Vec<f32> = vec.iter().map(|&v| silu(v)).collect();
        let m = self.modulation.apply(&sv, 1);
        let (shift, scale, gate) = (&m[..w], &m[w..2 * w], &m[2 * w..3 * w]);
        let scale1p: Vec<f32> = scale.iter().map(|s| 1.0 + s).collect();

        grow(&mut ws.u, t * w);
        grow(&mut ws.proj, t * p);
        grow(&mut ws.cat, t * c);
        grow(&mut ws.q, t * w);
        grow(&mut ws.k, t * w);
        grow(&mut ws.o, t * w);
        grow(&mut ws.scores, t * t);
        let (xp, up, pp, cp) = (Ptr::of(x), Ptr::of(&mut ws.u), Ptr::of(&mut ws.proj), Ptr::of(&mut ws.cat));
        let (qp, kp, op, sp) = (Ptr::of(&mut ws.q), Ptr::of(&mut ws.k), Ptr::of(&mut ws.o), Ptr::of(&mut ws.scores));
        let c16 = Halves(ws.cat16.as_mut_ptr());

        // 2–4 and 6, row-local: modulated LayerNorm, the fused projection, q/k RMSNorm + RoPE
        // (token-major, head h at columns h·64..), GELU of the MLP part into the concat buffer.
        for_row_halves(t, |r0, n| {
            // SAFETY: each half touches rows r0..r0+n of every buffer only; `x` is read here.
            let (xr, u, proj) = unsafe { (xp.slice(r0 * w, n * w), up.slice(r0 * w, n * w), pp.slice(r0 * p, n * p)) };
            let (q, k, cat) = unsafe { (qp.slice(r0 * w, n * w), kp.slice(r0 * w, n * w), cp.slice(r0 * c, n * c)) };
            for r in 0..n {
                kernels::layer_norm_modulate(&xr[r * w..(r + 1) * w], &scale1p, shift, eps, &mut u[r * w..(r + 1) * w]);
            }
            // The projection without its bias: the kernels below add it where they read it.
            // SAFETY: u is n×W, proj n×P, distinct buffers.
            match &self.packed {
                Some((w1, _)) => unsafe { bf16::matmul(n, u.as_ptr(), w, w1, proj.as_mut_ptr(), p, false, 1.0) },
                None => unsafe { matmul(n, p, w, proj.as_mut_ptr(), p, false, u.as_ptr(), w, self.linear1.w.as_ptr(), p, 1, 1.0) },
            }
            let b1 = &self.linear1.b;
            // SAFETY: this half's own buffer.
            let mut cat16 = self.packed.as_ref().map(|_| unsafe { c16.get(r0) });
            if let Some(cb) = cat16.as_deref_mut() {
                cb.reset(n, c);
            }
            for r in 0..n {
                let tok = r0 + r;
                let (cs, sn) = (&cos[tok * HEAD_DIM..(tok + 1) * HEAD_DIM], &sin[tok * HEAD_DIM..(tok + 1) * HEAD_DIM]);
                let row = &proj[r * p..(r + 1) * p];
                for hh in 0..h {
                    let o = hh * HEAD_DIM;
                    let qb = &b1[o..o + HEAD_DIM];
                    kernels::rms_rope(&row[o..o + HEAD_DIM], qb, &self.q_scale, cs, sn, eps, &mut q[r * w + o..r * w + o + HEAD_DIM]);
                    let ko = w + o;
                    let kb = &b1[ko..ko + HEAD_DIM];
                    kernels::rms_rope(&row[ko..ko + HEAD_DIM], kb, &self.k_scale, cs, sn, eps, &mut k[r * w + o..r * w + o + HEAD_DIM]);
                }
                match cat16.as_deref_mut() {
                    Some(cb) => kernels::gelu_tanh_bf16(&row[3 * w..], &b1[3 * w..], &mut cb.row_mut(r)[w..]),
                    None => kernels::gelu_tanh(&row[3 * w..], &b1[3 * w..], &mut cat[r * c + w..(r + 1) * c]),
                }
            }
        });

        // 5. Attention, head by head: S = q·kᵀ/8, exp(S − max) row by row, S·v into the concat
        // buffer's first W columns (v read in place from the projection), then each output row
        // divided by its softmax sum; each thread takes half the query rows. (Splitting by heads
        // instead, so that each thread packs only its own heads' k and v, measured no faster.)
        // bf16: every head's kᵀ and v packed once (heads spread over the pool), read by both halves.
        if self.packed.is_some() {
            use rayon::prelude::*;
            ws.k_packed.resize_with(h, PackedB::default);
            ws.v_packed.resize_with(h, PackedB::default);
            ws.k_packed.par_iter_mut().zip(ws.v_packed.par_iter_mut()).enumerate().for_each(|(hh, (kb, vb))| {
                let o = hh * HEAD_DIM;
                // SAFETY: kᵀ (i, j) = k[j·W + o + i] and v (i, j) = proj[i·P + 2W + o + j] lie inside
                // their T×W and T×P buffers, which nothing writes during this region.
                unsafe {
                    kb.pack(kp.at(o), HEAD_DIM, t, 1, w);
                    vb.pack(pp.at(2 * w + o), t, HEAD_DIM, p, 1);
                }
            });
        }
        let (k_packed, v_packed) = (&ws.k_packed, &ws.v_packed);
        let attend = |heads: std::ops::Range<usize>, r0: usize, n: usize, s: &mut [f32]| {
            let mut sums = vec![0f32; n];
            for hh in heads {
                let o = hh * HEAD_DIM;
                // SAFETY: q rows r0..r0+n and all k rows lie inside their T×W buffers (read only
                // in this region); the score block is n×T.
                // SAFETY (both arms): v = proj columns 2W + o.., all T rows (read only here); dst
                // rows r0..r0+n of the concat buffer, columns o..o+64, written by this task only.
                match self.packed {
                    Some(_) => {
                        unsafe { bf16::matmul(n, qp.at(r0 * w + o), w, &k_packed[hh], s.as_mut_ptr(), t, false, 0.125) };
                        // The exponentials go straight into the bf16 left side of ·v.
                        PROBS.with(|pa| {
                            let mut pa = pa.borrow_mut();
                            pa.reset(n, t);
                            for r in 0..n {
                                sums[r] = kernels::exp_shifted_row_bf16(&mut s[r * t..(r + 1) * t], pa.row_mut(r));
                            }
                            unsafe { bf16::matmul_packed(&pa, &v_packed[hh], cp.at(r0 * c + o), c, false) };
                        });
                    }
                    None => {
                        unsafe { matmul(n, t, HEAD_DIM, s.as_mut_ptr(), t, false, qp.at(r0 * w + o), w, kp.at(o), 1, w, 0.125) };
                        for r in 0..n {
                            sums[r] = kernels::exp_shifted_row(&mut s[r * t..(r + 1) * t]);
                        }
                        unsafe { matmul(n, HEAD_DIM, t, cp.at(r0 * c + o), c, false, s.as_ptr(), t, pp.at(2 * w + o), p, 1, 1.0) };
                    }
                }
                // v's bias: the weights of a softmax row sum to one, so it adds to the output.
                let vb = &self.linear1.b[2 * w + o..2 * w + o + HEAD_DIM];
                for (r, &sum) in sums.iter().enumerate() {
                    // SAFETY: as above.
                    let out = unsafe { cp.slice((r0 + r) * c + o, HEAD_DIM) };
                    let inv = 1.0 / sum;
                    out.iter_mut().zip(vb).for_each(|(v, b)| *v = *v * inv + b);
                    if self.packed.is_some() {
                        // SAFETY: this half's own buffer, sized in the row-local pass.
                        bf16::convert(out, &mut unsafe { c16.get(r0) }.row_mut(r)[o..o + HEAD_DIM]);
                    }
                }
            }
        };
        // SAFETY: each half's score rows are its own.
        for_row_halves(t, |r0, n| attend(0..h, r0, n, unsafe { sp.slice(r0 * t, n * t) }));

        // 7. Output projection and gated residual: x += gate ⊙ (concat·W2 + b2).
        for_row_halves(t, |r0, n| {
            // SAFETY: rows r0..r0+n of `o` and `x`; the concat rows are read only.
            let (o, xr) = unsafe { (op.slice(r0 * w, n * w), xp.slice(r0 * w, n * w)) };
            match &self.packed {
                // SAFETY: this half's own buffer, complete after attention.
                Some((_, w2)) => unsafe { bf16::matmul_packed(c16.get(r0), w2, o.as_mut_ptr(), w, false) },
                None => unsafe { matmul(n, w, c, o.as_mut_ptr(), w, false, cp.at(r0 * c), c, self.linear2.w.as_ptr(), w, 1, 1.0) },
            }
            for r in 0..n {
                kernels::gated_residual(&mut xr[r * w..(r + 1) * w], &o[r * w..(r + 1) * w], gate, &self.linear2.b);
            }
        });
    }
}

/// The final adaLN layer on the host.
struct HostLast {
    ada: HostLinear,
    linear: HostLinear,
}

impl HostLast {
    fn new(l: &LastLayer) -> Self {
        Self { ada: HostLinear::new(&l.ada_ln_modulation), linear: HostLinear::new(&l.linear) }
    }

    /// `x` `[rows, W]`, `vec` `[W]` → `[rows, out]`.
    fn forward(&self, x: &[f32], rows: usize, vec: &[f32]) -> Vec<f32> {
        let w = self.ada.d_in;
        let sv: Vec<f32> = vec.iter().map(|&v| silu(v)).collect();
        let m = self.ada.apply(&sv, 1);
        let shift = &m[..w];
        let scale1p: Vec<f32> = m[w..2 * w].iter().map(|s| 1.0 + s).collect();
        let mut u = vec![0.0; rows * w];
        for r in 0..rows {
            kernels::layer_norm_modulate(&x[r * w..(r + 1) * w], &scale1p, shift, NORM_EPS as f32, &mut u[r * w..(r + 1) * w]);
        }
        self.linear.apply_par(&u, rows)
    }
}

fn embedding_rows(table: &Tensor<2>) -> Vec<f32> {
    to_vec_f32(table.clone())
}

/// What the structure flow of one stage keeps across its flow steps: per image the class, the
/// canvas-condition tokens and the RoPE tables.
pub struct StructurePrep {
    stage: usize,
    classes: Vec<usize>,
    /// Per image `[L, W_s]`.
    cond_tokens: Vec<Vec<f32>>,
    /// Per image `[1 + 2L, 64]`.
    cos: Vec<Vec<f32>>,
    sin: Vec<Vec<f32>>,
}

/// Host copies of a generator's weights (see the module docs).
pub struct HostGenerator {
    num_stages: usize,
    positions: usize,
    channels: usize,
    bits: usize,
    scale_factors: Vec<f32>,
    content_width: usize,
    structure_width: usize,
    // content branch
    start: Vec<f32>,
    content_embed: HostLinear,
    content_class: Vec<f32>,
    content_stage: Vec<f32>,
    content_blocks: Vec<HostBlock>,
    x0_head: HostLast,
    cls_head: HostLinear,
    // structure branch
    structure_embed: HostLinear,
    structure_class: Vec<f32>,
    cond_embed: HostLinear,
    structure_stage: Vec<f32>,
    time_in: HostLinear,
    time_out: HostLinear,
    structure_blocks: Vec<HostBlock>,
    structure_head: HostLast,
    /// The fixed position table added to the canvas-condition and flow tokens, `[L × W_s]`.
    structure_positions: Option<Vec<f32>>,
    /// Whether the structure head gives context logits (`structure_context_logits`).
    context_logits: bool,
    precision: Precision,
}

impl HostGenerator {
    /// The precision of this copy's products.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Copies the weights of `g` to the host, at the process-wide [`precision`].
    pub fn new(g: &NvgGenerator) -> Self {
        Self::with_precision(g, precision())
    }

    /// Copies the weights of `g` to the host, for products at `precision`.
    pub fn with_precision(g: &NvgGenerator, precision: Precision) -> Self {
        let cfg = g.config();
        Self {
            num_stages: cfg.num_stages(),
            positions: cfg.num_positions(),
            channels: cfg.latent_channels,
            bits: cfg.num_bits(),
            scale_factors: cfg.scale_factors.clone(),
            content_width: cfg.content_width,
            structure_width: cfg.structure_width,
            start: to_vec_f32(g.content_start_embed.val()),
            content_embed: HostLinear::new(&g.content_embed),
            content_class: embedding_rows(&g.content_class_embed.weight.val()),
            content_stage: embedding_rows(&g.content_stage_embed.weight.val()),
            content_blocks: g.content_blocks.iter().map(|b| HostBlock::new(b, precision)).collect(),
            x0_head: HostLast::new(&g.x0_head),
            cls_head: HostLinear::new(&g.cls_head.linear),
            structure_embed: HostLinear::new(&g.structure_embed),
            structure_class: embedding_rows(&g.structure_class_embed.weight.val()),
            cond_embed: HostLinear::new(&g.structure_content_cond_embed),
            structure_stage: embedding_rows(&g.structure_stage_embed.weight.val()),
            time_in: HostLinear::new(&g.structure_time_embed.in_layer),
            time_out: HostLinear::new(&g.structure_time_embed.out_layer),
            structure_blocks: g.structure_blocks.iter().map(|b| HostBlock::new(b, precision)).collect(),
            structure_head: HostLast::new(&g.structure_head),
            structure_positions: structure_position_table(cfg),
            context_logits: cfg.structure_context_logits,
            precision,
        }
    }

    /// The host path for `g` when tensors live on `device` and the path applies there: burn's
    /// flex CPU device without autodiff, and [`enabled`].
    pub fn for_device(g: &NvgGenerator, device: &Device) -> Option<Self> {
        Self::for_device_at(g, device, precision())
    }

    /// [`HostGenerator::for_device`] with products at `precision` instead of the process-wide one.
    pub fn for_device_at(g: &NvgGenerator, device: &Device, precision: Precision) -> Option<Self> {
        (enabled() && *device == Device::flex()).then(|| Self::with_precision(g, precision))
    }

    /// Content branch at `stage` (§4.4) for a batch: `canvas` `[B, L, C]` unscaled (not read at
    /// stage 0), `labels` each image's stage map. Returns the per-cluster logits `[B, 2^stage, V]`
    /// — what the sampler needs (x̂ is computed on the way).
    pub fn content_logits(&self, g: &NvgGenerator, stage: usize, classes: &[usize], canvas: &[f32], labels: &[&[u32]]) -> Vec<f32> {
        let (l, ch, w) = (self.positions, self.channels, self.content_width);
        let k = 1usize << stage;
        assert!(stage < self.num_stages, "content stage {stage} out of range");
        assert!(canvas.len() == classes.len() * l * ch && labels.len() == classes.len(), "content_logits: batch shapes differ");
        let ids = g.rope_ids(stage, labels, false);
        let layout = g.config().rope_layout();
        let t = 1 + l;
        let one = |b: usize, ws: &mut Workspace| -> Vec<f32> {
            let y = classes[b];
            let cv = &canvas[b * l * ch..(b + 1) * l * ch];
            let class_row = &self.content_class[y * w..(y + 1) * w];
            let vec: Vec<f32> = class_row.iter().zip(&self.content_stage[stage * w..(stage + 1) * w]).map(|(a, s)| a + s).collect();
            let z: Vec<f32> = if stage == 0 {
                self.start.clone()
            } else {
                let sf = self.scale_factors[stage];
                cv.iter().map(|x| x * sf).collect()
            };
            let mut x = Vec::with_capacity(t * w);
            x.extend_from_slice(class_row);
            x.extend(self.content_embed.apply_par(&z, l));
            let (cos, sin, _) = rope_tables(&layout, std::slice::from_ref(&ids[b]));
            for blk in &self.content_blocks {
                blk.forward(&mut x, t, &vec, &cos, &sin, ws);
            }
            let mut x0 = self.x0_head.forward(&x[w..], l, &vec);
            let out_scale = self.scale_factors[self.num_stages];
            x0.iter_mut().for_each(|e| *e /= out_scale);
            if stage > 0 {
                x0.iter_mut().zip(cv).for_each(|(e, c)| *e -= c);
            }
            // Cluster means of the residual (empty clusters → 0, §10.3).
            let mut counts = vec![0usize; k];
            labels[b].iter().for_each(|&lab| counts[lab as usize] += 1);
            let mut means = vec![0f32; k * ch];
            for (p, &lab) in labels[b].iter().enumerate() {
                let wgt = 1.0 / counts[lab as usize].max(1) as f32;
                let m = &mut means[lab as usize * ch..(lab as usize + 1) * ch];
                m.iter_mut().zip(&x0[p * ch..(p + 1) * ch]).for_each(|(a, r)| *a += wgt * r);
            }
            self.cls_head.apply_par(&means, k)
        };
        per_image(classes.len(), one)
    }

    /// Adds the structure position table (when the model has one) to `L` tokens.
    fn add_positions(&self, tokens: &mut [f32]) {
        if let Some(table) = &self.structure_positions {
            tokens.iter_mut().zip(table).for_each(|(t, p)| *t += p);
        }
    }

    /// What the structure flow at `stage` keeps across its steps: `cond` is the canvas after the
    /// content stage `[B, L, C]` (unscaled), `labels` each image's stage map.
    pub fn structure_prep(&self, g: &NvgGenerator, stage: usize, classes: &[usize], cond: &[f32], labels: &[&[u32]]) -> StructurePrep {
        let (l, ch) = (self.positions, self.channels);
        assert!(stage + 2 < self.num_stages, "structure stage {stage} out of range");
        assert!(cond.len() == classes.len() * l * ch && labels.len() == classes.len(), "structure_prep: batch shapes differ");
        let ids = g.rope_ids(stage, labels, true);
        let layout = g.config().rope_layout();
        let mut cos = Vec::new();
        let mut sin = Vec::new();
        for id in &ids {
            let (c, s, _) = rope_tables(&layout, std::slice::from_ref(id));
            cos.push(c);
            sin.push(s);
        }
        let cond_tokens = (0..classes.len())
            .map(|b| {
                let mut tokens = self.cond_embed.apply_par(&cond[b * l * ch..(b + 1) * l * ch], l);
                self.add_positions(&mut tokens);
                tokens
            })
            .collect();
        StructurePrep { stage, classes: classes.to_vec(), cond_tokens, cos, sin }
    }

    /// Structure velocity `[B, L, S − 1]` (§4.5) at flow time `t` for the flow state `z`
    /// `[B, L, S − 1]`.
    pub fn structure_velocity(&self, prep: &StructurePrep, z: &[f32], t: f32) -> Vec<f32> {
        let (l, bits, w) = (self.positions, self.bits, self.structure_width);
        let b_count = prep.classes.len();
        assert_eq!(z.len(), b_count * l * bits, "structure_velocity: z must be [B, L, S − 1]");
        let tt = 1 + 2 * l;
        let te = time_embedding_values(&[t]);
        let hidden: Vec<f32> = self.time_in.apply(&te, 1).into_iter().map(silu).collect();
        let time = self.time_out.apply(&hidden, 1);
        let stage_row = &self.structure_stage[prep.stage * w..(prep.stage + 1) * w];
        let one = |b: usize, ws: &mut Workspace| -> Vec<f32> {
            let y = prep.classes[b];
            let class_row = &self.structure_class[y * w..(y + 1) * w];
            let vec: Vec<f32> = (0..w).map(|i| class_row[i] + time[i] + stage_row[i]).collect();
            let mut x = Vec::with_capacity(tt * w);
            x.extend_from_slice(class_row);
            x.extend_from_slice(&prep.cond_tokens[b]);
            let mut flow = self.structure_embed.apply_par(&z[b * l * bits..(b + 1) * l * bits], l);
            self.add_positions(&mut flow);
            x.extend(flow);
            for blk in &self.structure_blocks {
                blk.forward(&mut x, tt, &vec, &prep.cos[b], &prep.sin[b], ws);
            }
            let mut v = self.structure_head.forward(&x[(1 + l) * w..], l, &vec);
            if self.context_logits {
                context_logit_velocity(&mut v, &z[b * l * bits..(b + 1) * l * bits], &[t], prep.stage, bits);
            }
            v
        };
        per_image(b_count, one)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::model::generator::GeneratorConfig;

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(worst <= 2e-4 * scale, "{what}: max |host − burn| = {worst} (max |burn| = {scale})");
    }

    /// A generator with non-trivial weights everywhere (the zero-initialised biases and unit
    /// scales of a fresh model would hide mistakes in those terms).
    fn perturbed(cfg: &GeneratorConfig, dev: &Device) -> NvgGenerator {
        use burn::module::{Module, ModuleMapper, Param};
        struct Noise;
        impl ModuleMapper for Noise {
            fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let t = p.val();
                let dims = t.dims();
                let noise = Tensor::<D>::random(dims, Distribution::Normal(0.0, 0.05), &t.device());
                Param::from_tensor(t + noise)
            }
        }
        NvgGenerator::new(cfg, dev).map(&mut Noise)
    }

    /// The tiny test preset with the anchor's structure width (two 64-dim heads).
    fn tiny_wide() -> GeneratorConfig {
        let mut cfg = GeneratorConfig::test_tiny();
        cfg.structure_width = 128;
        cfg.structure_heads = 2;
        cfg
    }

    #[test]
    fn host_path_matches_the_burn_path() {
        let dev = Device::flex();
        let mut cfg = tiny_wide();
        cfg.scale_factors = vec![1.0, 2.0, 1.5, 1.2, 1.1, 0.9];
        let g = perturbed(&cfg, &dev);
        let host = HostGenerator::with_precision(&g, Precision::F32);
        let (l, c, bits) = (cfg.num_positions(), cfg.latent_channels, cfg.num_bits());
        for stage in 0..cfg.num_stages() {
            // Two images: one balanced map, one unbalanced with an empty cluster.
            let k = 1u32 << stage;
            let a: Vec<u32> = (0..l as u32).map(|p| p * k / l as u32).collect();
            let bm: Vec<u32> = (0..l as u32).map(|p| if p < 3 { 0 } else { (p % k).min(k.saturating_sub(2)) }).collect();
            let labels = [a.as_slice(), bm.as_slice()];
            let canvas = Tensor::<3>::random([2, l, c], Distribution::Normal(0.0, 1.0), &dev);
            let classes = [1, cfg.null_class()];
            let (_, logits) = g.content_forward(stage, &classes, canvas.clone(), &labels);
            let host_logits = host.content_logits(&g, stage, &classes, &to_vec_f32(canvas.clone()), &labels);
            close(&host_logits, &to_vec_f32(logits), &format!("content logits, stage {stage}"));
            if stage + 2 < cfg.num_stages() {
                let z = Tensor::<3>::random([2, l, bits], Distribution::Normal(0.0, 1.0), &dev);
                let v = g.structure_forward(stage, &classes, canvas.clone(), &labels, z.clone(), &[0.37]);
                let prep = host.structure_prep(&g, stage, &classes, &to_vec_f32(canvas), &labels);
                let hv = host.structure_velocity(&prep, &to_vec_f32(z), 0.37);
                close(&hv, &to_vec_f32(v), &format!("structure velocity, stage {stage}"));
            }
        }
    }

    /// Relative RMS difference of `a` from `b`.
    fn rel_rms(a: &[f32], b: &[f32]) -> f32 {
        let d: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        let r: f32 = b.iter().map(|y| y * y).sum();
        (d / r.max(1e-12)).sqrt()
    }

    /// bf16 products change the outputs by about bf16's resolution (2⁻⁸ relative), not more, and
    /// they do change them (the path really runs).
    #[test]
    fn bf16_path_stays_close_to_f32() {
        let dev = Device::flex();
        let cfg = tiny_wide();
        let g = perturbed(&cfg, &dev);
        let (f, h) = (HostGenerator::with_precision(&g, Precision::F32), HostGenerator::with_precision(&g, Precision::Bf16));
        let (l, c, bits) = (cfg.num_positions(), cfg.latent_channels, cfg.num_bits());
        for stage in [0, 2] {
            let k = 1u32 << stage;
            let labels: Vec<u32> = (0..l as u32).map(|p| p * k / l as u32).collect();
            let canvas = to_vec_f32(Tensor::<3>::random([1, l, c], Distribution::Normal(0.0, 1.0), &dev));
            let (lf, lh) = (f.content_logits(&g, stage, &[1], &canvas, &[&labels]), h.content_logits(&g, stage, &[1], &canvas, &[&labels]));
            let e = rel_rms(&lh, &lf);
            assert!(e > 0.0 && e < 2e-2, "content logits, stage {stage}: relative RMS difference {e}");
            let z = to_vec_f32(Tensor::<3>::random([1, l, bits], Distribution::Normal(0.0, 1.0), &dev));
            let (pf, ph) = (f.structure_prep(&g, stage, &[1], &canvas, &[&labels]), h.structure_prep(&g, stage, &[1], &canvas, &[&labels]));
            let (vf, vh) = (f.structure_velocity(&pf, &z, 0.6), h.structure_velocity(&ph, &z, 0.6));
            let e = rel_rms(&vh, &vf);
            assert!(e > 0.0 && e < 2e-2, "structure velocity, stage {stage}: relative RMS difference {e}");
            assert!(vh.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn host_results_do_not_depend_on_the_batch() {
        for precision in [Precision::F32, Precision::Bf16] {
            batch_invariance(precision);
        }
    }

    fn batch_invariance(precision: Precision) {
        let dev = Device::flex();
        let cfg = GeneratorConfig::test_tiny();
        let g = perturbed(&cfg, &dev);
        let host = HostGenerator::with_precision(&g, precision);
        let (l, c, bits) = (cfg.num_positions(), cfg.latent_channels, cfg.num_bits());
        let stage = 2;
        let labels: Vec<u32> = (0..l as u32).map(|p| p * 4 / l as u32).collect();
        let canvas = to_vec_f32(Tensor::<3>::random([2, l, c], Distribution::Normal(0.0, 1.0), &dev));
        let z = to_vec_f32(Tensor::<3>::random([2, l, bits], Distribution::Normal(0.0, 1.0), &dev));
        let both = host.content_logits(&g, stage, &[0, 3], &canvas, &[&labels, &labels]);
        let second = host.content_logits(&g, stage, &[3], &canvas[l * c..], &[&labels]);
        assert_eq!(&both[both.len() / 2..], second.as_slice());
        let prep2 = host.structure_prep(&g, stage, &[0, 3], &canvas, &[&labels, &labels]);
        let prep1 = host.structure_prep(&g, stage, &[3], &canvas[l * c..], &[&labels]);
        let v2 = host.structure_velocity(&prep2, &z, 0.5);
        let v1 = host.structure_velocity(&prep1, &z[l * bits..], 0.5);
        assert_eq!(&v2[v2.len() / 2..], v1.as_slice());
        // And twice the same call gives the same bits.
        assert_eq!(v1, host.structure_velocity(&prep1, &z[l * bits..], 0.5));
    }
}
