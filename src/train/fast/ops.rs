//! The small kernels of the host training path: a bounds-checked strided matrix product over
//! the `gemm` crate, and the forward and backward formulas of LayerNorm, RMSNorm, RoPE and SiLU
//! on rows of `f32` (GELU and the softmax exponentials come from the inference path's vector
//! kernels, `model::host::kernels`).

/// A matrix view: element `(i, j)` at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// Row-major `rows × ld` (row stride `ld`, unit column stride).
pub fn rm(data: &[f32], ld: usize) -> View<'_> {
    View { data, rs: ld, cs: 1 }
}

/// The transpose of a row-major matrix with row stride `ld`: element `(i, j)` = `data[j·ld + i]`.
pub fn tr(data: &[f32], ld: usize) -> View<'_> {
    View { data, rs: 1, cs: ld }
}

fn last_index(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    (rows - 1) * rs + (cols - 1) * cs
}

/// `dst[m × n] (+)= beta · a[m × k] · b[k × n]`, `dst` row-major with row stride `ldc`.
/// `accumulate` adds to `dst` instead of overwriting it. Single-threaded (the callers split
/// work between threads themselves, so the rounding never depends on the thread count).
///
/// # Panics
/// If a view addresses an element outside its slice.
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, n: usize, k: usize, dst: &mut [f32], ldc: usize, accumulate: bool, a: View, b: View, beta: f32) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(last_index(m, n, ldc, 1) < dst.len(), "gemm: dst too small");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * ldc..i * ldc + n].fill(0.0);
            }
        }
        return;
    }
    assert!(last_index(m, k, a.rs, a.cs) < a.data.len(), "gemm: lhs too small");
    assert!(last_index(k, n, b.rs, b.cs) < b.data.len(), "gemm: rhs too small");
    // SAFETY: every addressed element was checked to lie inside its slice; `dst` is a unique
    // borrow, so it overlaps neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `out[rows × d_out] = x[rows × d_in]·W + b`.
pub fn linear(x: &[f32], rows: usize, w: &[f32], b: &[f32], d_in: usize, d_out: usize, out: &mut [f32]) {
    for r in 0..rows {
        out[r * d_out..(r + 1) * d_out].copy_from_slice(&b[..d_out]);
    }
    gemm(rows, d_out, d_in, out, d_out, true, rm(x, d_in), rm(w, d_out), 1.0);
}

/// Backward of [`linear`]: `gw += xᵀ·dy`, `gb += Σ_rows dy`, and `dx (+)= dy·Wᵀ` when asked.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    x: &[f32],
    dy: &[f32],
    rows: usize,
    w: &[f32],
    d_in: usize,
    d_out: usize,
    gw: &mut [f32],
    gb: &mut [f32],
    dx: Option<(&mut [f32], bool)>,
) {
    gemm(d_in, d_out, rows, gw, d_out, true, tr(x, d_in), rm(dy, d_out), 1.0);
    col_sums_into(dy, rows, d_out, gb);
    if let Some((dx, accumulate)) = dx {
        gemm(rows, d_in, d_out, dx, d_in, accumulate, rm(dy, d_out), tr(w, d_out), 1.0);
    }
}

/// `acc[j] += Σ_r m[r·cols + j]`, as a product with a row of ones (the gemm crate's vector
/// kernels; our crate's loops are not vectorised in the dev profile).
pub fn col_sums_into(m: &[f32], rows: usize, cols: usize, acc: &mut [f32]) {
    thread_local! {
        static ONES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    ONES.with(|o| {
        let mut ones = o.borrow_mut();
        if ones.len() < rows {
            ones.resize(rows, 1.0);
        }
        gemm(1, cols, rows, acc, cols, true, rm(&ones, rows), rm(m, cols), 1.0);
    });
}

/// σ(x).
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// SiLU(x) = x·σ(x).
pub fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

/// d SiLU / dx = σ(x)·(1 + x·(1 − σ(x))).
pub fn silu_grad(x: f32) -> f32 {
    let s = sigmoid(x);
    s * (1.0 + x * (1.0 - s))
}

/// Non-affine LayerNorm of one row: writes x̂ and returns 1/σ.
pub fn layer_norm_row(x: &[f32], eps: f32, xn: &mut [f32]) -> f32 {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let rstd = 1.0 / (var + eps).sqrt();
    for (o, v) in xn.iter_mut().zip(x) {
        *o = (v - mean) * rstd;
    }
    rstd
}

/// Backward of [`layer_norm_row`]: `dx += rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))`.
pub fn layer_norm_row_backward(xn: &[f32], rstd: f32, dxn: &[f32], dx: &mut [f32]) {
    let n = xn.len() as f32;
    let mean_d = dxn.iter().sum::<f32>() / n;
    let mean_dx = dxn.iter().zip(xn).map(|(d, x)| d * x).sum::<f32>() / n;
    for ((o, d), x) in dx.iter_mut().zip(dxn).zip(xn) {
        *o += rstd * (d - mean_d - x * mean_dx);
    }
}

/// RMSNorm of one head row times `scale`: writes `y` and returns r = 1/√(mean(x²) + eps).
pub fn rms_row(x: &[f32], scale: &[f32], eps: f32, y: &mut [f32]) -> f32 {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = 1.0 / (ms + eps).sqrt();
    for ((o, v), s) in y.iter_mut().zip(x).zip(scale) {
        *o = v * r * s;
    }
    r
}

/// Backward of [`rms_row`]: `dscale += dy·x·r`, `dx = r·(dy·s) − x·r³·mean(dy·s·x)`.
pub fn rms_row_backward(x: &[f32], scale: &[f32], r: f32, dy: &[f32], dscale: &mut [f32], dx: &mut [f32]) {
    let n = x.len() as f32;
    let mut dot = 0.0;
    for i in 0..x.len() {
        dscale[i] += dy[i] * x[i] * r;
        dot += dy[i] * scale[i] * x[i];
    }
    let k = r * r * r * dot / n;
    for i in 0..x.len() {
        dx[i] = r * dy[i] * scale[i] - x[i] * k;
    }
}

/// RoPE of one head row in place: `(x0, x1) → (x0·c − x1·s, x1·c + x0·s)` per pair, with the
/// tables of `transformer::rope_tables` (`cos` twice per pair, `sin` as `(−s, +s)`).
pub fn rope_row(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    for p in 0..x.len() / 2 {
        let (a, b) = (x[2 * p], x[2 * p + 1]);
        x[2 * p] = a * cos[2 * p] + b * sin[2 * p];
        x[2 * p + 1] = b * cos[2 * p + 1] + a * sin[2 * p + 1];
    }
}

/// Backward of [`rope_row`] in place (the inverse rotation): `dx = dy·cos + swap(dy·sin)`.
pub fn rope_row_backward(d: &mut [f32], cos: &[f32], sin: &[f32]) {
    for p in 0..d.len() / 2 {
        let (a, b) = (d[2 * p], d[2 * p + 1]);
        d[2 * p] = a * cos[2 * p] + b * sin[2 * p + 1];
        d[2 * p + 1] = b * cos[2 * p + 1] + a * sin[2 * p];
    }
}

#[cfg(test)]
mod tests {
    use super::*;


    // The scalar GELU formulas, the reference for the vector kernel's derivative.
    const GELU_C: f32 = 0.797_884_6; // √(2/π)
    const GELU_A: f32 = 0.044_715;

    /// GELU, tanh approximation, and its derivative at `x`.
    fn gelu_and_grad(x: f32) -> (f32, f32) {
        let u = GELU_C * (x + GELU_A * x * x * x);
        let th = u.tanh();
        let y = 0.5 * x * (1.0 + th);
        let dy = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * GELU_C * (1.0 + 3.0 * GELU_A * x * x);
        (y, dy)
    }

    /// GELU (tanh approximation).
    fn gelu(x: f32) -> f32 {
        let u = GELU_C * (x + GELU_A * x * x * x);
        0.5 * x * (1.0 + u.tanh())
    }


    fn num_grad(f: impl Fn(f32) -> f32, x: f32) -> f32 {
        let h = 1e-3;
        (f(x + h) - f(x - h)) / (2.0 * h)
    }

    #[test]
    fn scalar_derivatives_match_finite_differences() {
        for x in [-3.0f32, -0.7, 0.0, 0.4, 2.5] {
            assert!((silu_grad(x) - num_grad(silu, x)).abs() < 1e-3, "silu' at {x}");
            assert!((gelu_and_grad(x).1 - num_grad(gelu, x)).abs() < 1e-3, "gelu' at {x}");
            // The vector kernel training uses gives the same value and derivative.
            let (mut y, mut d) = ([0f32; 1], [0f32; 1]);
            crate::model::host::kernels::gelu_tanh_with_grad(&[x], &mut y, &mut d);
            assert!((y[0] - gelu(x)).abs() < 1e-5 && (d[0] - gelu_and_grad(x).1).abs() < 1e-4, "kernel at {x}");
        }
    }

    #[test]
    fn rope_backward_is_the_transpose() {
        let (c, s) = (0.3f32.cos(), 0.3f32.sin());
        let cos = [c, c];
        let sin = [-s, s];
        let x = [0.7f32, -1.2];
        let dy = [0.4f32, 0.9];
        let mut y = x;
        rope_row(&mut y, &cos, &sin);
        let mut dx = dy;
        rope_row_backward(&mut dx, &cos, &sin);
        // <R x, dy> = <x, Rᵀ dy>
        let lhs = y[0] * dy[0] + y[1] * dy[1];
        let rhs = x[0] * dx[0] + x[1] * dx[1];
        assert!((lhs - rhs).abs() < 1e-6);
    }

    #[test]
    fn gemm_with_transposed_views() {
        // a = [[1,2],[3,4]], b = [[5,6],[7,8]]: aᵀ·b = [[26,30],[38,44]].
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut c = [0f32; 4];
        gemm(2, 2, 2, &mut c, 2, false, tr(&a, 2), rm(&b, 2), 1.0);
        assert_eq!(c, [26.0, 30.0, 38.0, 44.0]);
        gemm(2, 2, 2, &mut c, 2, true, rm(&a, 2), tr(&b, 2), 1.0);
        assert_eq!(c, [26.0 + 17.0, 30.0 + 23.0, 38.0 + 39.0, 44.0 + 53.0]);
    }
}
