//! Vectorised f32 kernels for the host inference path ([`super`]): the exponentials of a
//! softmax row, GELU-tanh, the modulated LayerNorm, q/k RMSNorm + RoPE of one head row, and the
//! gated residual.
//!
//! Each kernel has an AVX2 + FMA version, chosen at run time when the CPU has both, and a scalar
//! version with the same arithmetic order otherwise; the exponentials and GELU (most of the
//! element-wise time) also have AVX-512 versions ([`avx512`]), and bf16-writing variants for the
//! bf16 products ([`super::bf16`]). `exp` is the classic Cephes single-precision
//! scheme (range reduction by ln 2 split in two constants, a degree-5 polynomial, the exponent
//! built from bits): about 1 ulp over the range softmax and GELU use. Our crate is compiled at
//! opt-level 1 in the dev profile, where LLVM does not vectorise loops, so the vector versions are
//! written with `std::arch` intrinsics.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1];
/// Below this, `exp` returns exactly 0: e⁻⁸⁰ is far below f32 resolution next to a softmax
/// row's maximum (1), and stopping here keeps every result — even divided by a row sum of up to
/// 10⁵ — clear of denormals, whose arithmetic is ~100× slower in the matmul that follows.
const EXP_LO: f32 = -80.0;
/// Above this, inputs are clamped so the exponent bits stay valid (no inf).
const EXP_HI: f32 = 88.3;
/// √(2/π)·2: GELU-tanh is x·σ(2u) with u = √(2/π)·(x + 0.044715·x³).
const GELU_2C: f32 = 1.595_769_1;
const GELU_A: f32 = 0.044_715;

/// True when the AVX2 + FMA kernels are used on this machine.
pub fn vectorised() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// True when the AVX-512 versions of the softmax exponentials and GELU are used (they take most
/// of the element-wise time; the other kernels stay AVX2).
pub fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        vectorised() && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// How the status bar names the element-wise kernels: "AVX-512", "AVX2" or "scalar".
pub fn instruction_set() -> &'static str {
    if avx512() {
        "AVX-512"
    } else if vectorised() {
        "AVX2"
    } else {
        "scalar"
    }
}

/// Scalar `exp` with the same scheme as the vector one.
#[inline]
fn exp_scalar(x: f32) -> f32 {
    if x < EXP_LO {
        return 0.0;
    }
    let x = if x > EXP_HI { EXP_HI } else { x }; // NaN stays NaN
    let n = (x * LOG2E).round_ties_even();
    let r = x - n * LN2_HI;
    let r = r - n * LN2_LO;
    let mut p = EXP_P[0];
    for &c in &EXP_P[1..] {
        p = p * r + c;
    }
    let y = p * (r * r) + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// GELU-tanh of one element (bias already added), as `x / (1 + exp(−2u))`: the scalar kernel
/// and the vector kernels' tails.
#[inline]
fn gelu_scalar(x: f32) -> f32 {
    let u = GELU_2C * (x + GELU_A * x * x * x);
    x / (1.0 + exp_scalar(-u))
}

/// In place: `row ← exp(row − max(row))`; returns the sum of the new values, so that the caller
/// can normalise something smaller than the row (attention scales its 64-wide output instead).
pub fn exp_shifted_row(row: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512 F (checked above).
        return unsafe { avx512::exp_shifted_row(row) };
    }
    #[cfg(target_arch = "x86_64")]
    if vectorised() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { avx::exp_shifted_row(row) };
    }
    scalar::exp_shifted_row(row)
}

/// [`exp_shifted_row`] that also writes the exponentials to `dst` as bf16 (rounded to nearest
/// even, as [`super::bf16::to_bf16`]) — in one pass where the CPU has AVX-512 BF16; `row` then
/// holds unspecified values. Returns the f32 sum.
pub fn exp_shifted_row_bf16(row: &mut [f32], dst: &mut [u16]) -> f32 {
    assert!(dst.len() >= row.len());
    #[cfg(target_arch = "x86_64")]
    if avx512() && std::arch::is_x86_feature_detected!("avx512bf16") {
        // SAFETY: the CPU has AVX-512 F and BF16 (checked above); lengths checked.
        return unsafe { avx512::exp_shifted_row_bf16(row, dst) };
    }
    let sum = exp_shifted_row(row);
    row.iter().zip(dst.iter_mut()).for_each(|(v, d)| *d = super::bf16::to_bf16(*v));
    sum
}

/// GELU-tanh and its derivative, for training: `y[i] = x·s` and `dy[i] = s + x·s·(1 − s)·2u'`
/// with `s = σ(2u)`, `u = √(2/π)·(x + 0.044715·x³)`, `x = src[i]` (no bias).
pub fn gelu_tanh_with_grad(src: &[f32], y: &mut [f32], dy: &mut [f32]) {
    assert!(src.len() == y.len() && src.len() == dy.len());
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512 F checked; lengths equal.
        unsafe { avx512::gelu_tanh_with_grad(src, y, dy) };
        return;
    }
    for i in 0..src.len() {
        (y[i], dy[i]) = gelu_with_grad_scalar(src[i]);
    }
}

#[inline]
fn gelu_with_grad_scalar(x: f32) -> (f32, f32) {
    let u2 = GELU_2C * (x + GELU_A * x * x * x);
    let s = 1.0 / (1.0 + exp_scalar(-u2));
    let du2 = GELU_2C * (1.0 + 3.0 * GELU_A * x * x);
    (x * s, s + x * s * (1.0 - s) * du2)
}

/// `dst[i] = GELU_tanh(src[i] + bias[i])`, computed as `x / (1 + exp(−2u))` (the bias of the
/// projection that produced `src` is added here rather than in a pass of its own).
pub fn gelu_tanh(src: &[f32], bias: &[f32], dst: &mut [f32]) {
    assert!(src.len() == dst.len() && bias.len() == dst.len());
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512 F checked; lengths equal.
        unsafe { avx512::gelu_tanh(src, bias, dst) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if vectorised() {
        // SAFETY: AVX2 and FMA checked; lengths equal.
        unsafe { avx::gelu_tanh(src, bias, dst) };
        return;
    }
    scalar::gelu_tanh(src, bias, dst)
}

/// [`gelu_tanh`] with the results written as bf16 (rounded to nearest even) — in one pass where
/// the CPU has AVX-512 BF16.
pub fn gelu_tanh_bf16(src: &[f32], bias: &[f32], dst: &mut [u16]) {
    assert!(src.len() == dst.len() && bias.len() == dst.len());
    #[cfg(target_arch = "x86_64")]
    if avx512() && std::arch::is_x86_feature_detected!("avx512bf16") {
        // SAFETY: AVX-512 F and BF16 checked; lengths equal.
        unsafe { avx512::gelu_tanh_bf16(src, bias, dst) };
        return;
    }
    // In chunks through a stack buffer (no allocation per row).
    let mut tmp = [0f32; 64];
    for ((s, b), d) in src.chunks(64).zip(bias.chunks(64)).zip(dst.chunks_mut(64)) {
        let t = &mut tmp[..s.len()];
        gelu_tanh(s, b, t);
        t.iter().zip(d.iter_mut()).for_each(|(v, d)| *d = super::bf16::to_bf16(*v));
    }
}

/// Modulated LayerNorm of one row (§4.2 step 2): `dst = (x − mean)/√(var + eps) · scale1p + shift`,
/// where `scale1p` is already `1 + scale`.
pub fn layer_norm_modulate(x: &[f32], scale1p: &[f32], shift: &[f32], eps: f32, dst: &mut [f32]) {
    let w = x.len();
    assert!(scale1p.len() == w && shift.len() == w && dst.len() == w);
    #[cfg(target_arch = "x86_64")]
    if vectorised() && w % 8 == 0 {
        // SAFETY: AVX2 and FMA checked; all slices have length w, a multiple of 8.
        unsafe { avx::layer_norm_modulate(x, scale1p, shift, eps, dst) };
        return;
    }
    scalar::layer_norm_modulate(x, scale1p, shift, eps, dst)
}

/// RMSNorm of one 64-dim head row `x + bias` times `scale`, then the RoPE rotation of interleaved
/// pairs with full-width tables (`cos` twice per pair, `sin` as `(−s, +s)`):
/// `dst[i] = y[i]·cos[i] + y[i^1]·sin[i]`.
pub fn rms_rope(x: &[f32], bias: &[f32], scale: &[f32], cos: &[f32], sin: &[f32], eps: f32, dst: &mut [f32]) {
    let d = x.len();
    assert!(bias.len() == d && scale.len() == d && cos.len() == d && sin.len() == d && dst.len() == d && d % 2 == 0);
    #[cfg(target_arch = "x86_64")]
    if vectorised() && d % 8 == 0 {
        // SAFETY: AVX2 and FMA checked; all slices have length d, a multiple of 8.
        unsafe { avx::rms_rope(x, bias, scale, cos, sin, eps, dst) };
        return;
    }
    scalar::rms_rope(x, bias, scale, cos, sin, eps, dst)
}

/// Gated residual of one row (§4.2 step 7): `x += gate ⊙ (o + bias)`.
pub fn gated_residual(x: &mut [f32], o: &[f32], gate: &[f32], bias: &[f32]) {
    let w = x.len();
    assert!(o.len() == w && gate.len() == w && bias.len() == w);
    #[cfg(target_arch = "x86_64")]
    if vectorised() && w % 8 == 0 {
        // SAFETY: AVX2 and FMA checked; all slices have length w, a multiple of 8.
        unsafe { avx::gated_residual(x, o, gate, bias) };
        return;
    }
    scalar::gated_residual(x, o, gate, bias)
}

/// The portable versions (same formulas, same order of operations up to FMA contraction).
mod scalar {
    use super::*;

    pub fn exp_shifted_row(row: &mut [f32]) -> f32 {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = exp_scalar(*v - max);
            sum += *v;
        }
        sum
    }

    pub fn gelu_tanh(src: &[f32], bias: &[f32], dst: &mut [f32]) {
        for ((d, &x), &b) in dst.iter_mut().zip(src).zip(bias) {
            *d = gelu_scalar(x + b);
        }
    }

    pub fn layer_norm_modulate(x: &[f32], scale1p: &[f32], shift: &[f32], eps: f32, dst: &mut [f32]) {
        let w = x.len();
        let mean = x.iter().sum::<f32>() / w as f32;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / w as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        for i in 0..w {
            dst[i] = (x[i] - mean) * rstd * scale1p[i] + shift[i];
        }
    }

    pub fn rms_rope(x: &[f32], bias: &[f32], scale: &[f32], cos: &[f32], sin: &[f32], eps: f32, dst: &mut [f32]) {
        let d = x.len();
        let x: Vec<f32> = x.iter().zip(bias).map(|(a, b)| a + b).collect();
        let ms = x.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for i in (0..d).step_by(2) {
            let (a, b) = (x[i] * inv * scale[i], x[i + 1] * inv * scale[i + 1]);
            dst[i] = a * cos[i] + b * sin[i];
            dst[i + 1] = b * cos[i + 1] + a * sin[i + 1];
        }
    }

    pub fn gated_residual(x: &mut [f32], o: &[f32], gate: &[f32], bias: &[f32]) {
        for i in 0..x.len() {
            x[i] += gate[i] * (o[i] + bias[i]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    use super::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        // Zero below EXP_LO (an unordered not-less-than: NaN lanes are kept and propagate), clamp above EXP_HI
        // (operand order makes `min`/`max` return a NaN input rather than the bound).
        let keep = _mm256_cmp_ps::<_CMP_NLT_UQ>(x, _mm256_set1_ps(EXP_LO));
        let x = _mm256_min_ps(_mm256_set1_ps(EXP_HI), _mm256_max_ps(_mm256_set1_ps(EXP_LO), x));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(EXP_P[0]);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P[1]));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P[2]));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P[3]));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P[4]));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P[5]));
        let y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0)));
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
        _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(bits)), keep)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hmax(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_max_ps(lo, hi);
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_max_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_shifted_row(row: &mut [f32]) -> f32 {
        let n = row.len();
        let body = n / 8 * 8;
        let p = row.as_mut_ptr();
        let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
        for i in (0..body).step_by(8) {
            // SAFETY: i + 8 ≤ body ≤ n.
            vmax = _mm256_max_ps(vmax, unsafe { _mm256_loadu_ps(p.add(i)) });
        }
        let mut max = hmax(vmax);
        for &v in &row[body..] {
            max = max.max(v);
        }
        let vm = _mm256_set1_ps(max);
        let mut vsum = _mm256_setzero_ps();
        for i in (0..body).step_by(8) {
            // SAFETY: as above.
            unsafe {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vm));
                _mm256_storeu_ps(p.add(i), e);
                vsum = _mm256_add_ps(vsum, e);
            }
        }
        let mut sum = hsum(vsum);
        for v in &mut row[body..] {
            *v = exp_scalar(*v - max);
            sum += *v;
        }
        sum
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA; `src` and `dst` have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gelu_tanh(src: &[f32], bias: &[f32], dst: &mut [f32]) {
        let n = src.len();
        let body = n / 8 * 8;
        let (s, bp, d) = (src.as_ptr(), bias.as_ptr(), dst.as_mut_ptr());
        let (c, a, one) = (_mm256_set1_ps(-GELU_2C), _mm256_set1_ps(GELU_A), _mm256_set1_ps(1.0));
        for i in (0..body).step_by(8) {
            // SAFETY: i + 8 ≤ body ≤ n for both slices.
            unsafe {
                let x = _mm256_add_ps(_mm256_loadu_ps(s.add(i)), _mm256_loadu_ps(bp.add(i)));
                let x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
                let neg_u = _mm256_mul_ps(c, _mm256_fmadd_ps(a, x3, x));
                let den = _mm256_add_ps(one, exp8(neg_u));
                // x / den as x · rcp(den) with one Newton step (≈ 23 bits; `div` is the slowest
                // instruction of this loop). rcp of a clamped den (≤ 2.2e38) is ≥ 0: tiny or zero
                // results only where x / den is itself below 1e-37.
                let r = _mm256_rcp_ps(den);
                let r = _mm256_mul_ps(r, _mm256_fnmadd_ps(den, r, _mm256_set1_ps(2.0)));
                _mm256_storeu_ps(d.add(i), _mm256_mul_ps(x, r));
            }
        }
        for i in body..n {
            dst[i] = gelu_scalar(src[i] + bias[i]);
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA; all slices have one length, a multiple of 8.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn layer_norm_modulate(x: &[f32], scale1p: &[f32], shift: &[f32], eps: f32, dst: &mut [f32]) {
        let w = x.len();
        let (xp, sp, hp, dp) = (x.as_ptr(), scale1p.as_ptr(), shift.as_ptr(), dst.as_mut_ptr());
        let mut acc = _mm256_setzero_ps();
        for i in (0..w).step_by(8) {
            // SAFETY: w is a multiple of 8 and every slice has length w.
            acc = _mm256_add_ps(acc, unsafe { _mm256_loadu_ps(xp.add(i)) });
        }
        let mean = hsum(acc) / w as f32;
        let vm = _mm256_set1_ps(mean);
        let mut acc = _mm256_setzero_ps();
        for i in (0..w).step_by(8) {
            // SAFETY: as above.
            let c = _mm256_sub_ps(unsafe { _mm256_loadu_ps(xp.add(i)) }, vm);
            acc = _mm256_fmadd_ps(c, c, acc);
        }
        let var = hsum(acc) / w as f32;
        let vr = _mm256_set1_ps(1.0 / (var + eps).sqrt());
        for i in (0..w).step_by(8) {
            // SAFETY: as above.
            unsafe {
                let c = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xp.add(i)), vm), vr);
                let y = _mm256_fmadd_ps(c, _mm256_loadu_ps(sp.add(i)), _mm256_loadu_ps(hp.add(i)));
                _mm256_storeu_ps(dp.add(i), y);
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA; all slices have one length, a multiple of 8.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gated_residual(x: &mut [f32], o: &[f32], gate: &[f32], bias: &[f32]) {
        let (xp, op, gp, bp) = (x.as_mut_ptr(), o.as_ptr(), gate.as_ptr(), bias.as_ptr());
        for i in (0..x.len()).step_by(8) {
            // SAFETY: the length is a multiple of 8 and every slice has it.
            unsafe {
                let s = _mm256_add_ps(_mm256_loadu_ps(op.add(i)), _mm256_loadu_ps(bp.add(i)));
                _mm256_storeu_ps(xp.add(i), _mm256_fmadd_ps(_mm256_loadu_ps(gp.add(i)), s, _mm256_loadu_ps(xp.add(i))));
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA; all slices have one length, a multiple of 8.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn rms_rope(x: &[f32], bias: &[f32], scale: &[f32], cos: &[f32], sin: &[f32], eps: f32, dst: &mut [f32]) {
        let d = x.len();
        let (xp, bp, sp, cp, np, dp) = (x.as_ptr(), bias.as_ptr(), scale.as_ptr(), cos.as_ptr(), sin.as_ptr(), dst.as_mut_ptr());
        let mut acc = _mm256_setzero_ps();
        for i in (0..d).step_by(8) {
            // SAFETY: d is a multiple of 8 and every slice has length d.
            let v = unsafe { _mm256_add_ps(_mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(bp.add(i))) };
            acc = _mm256_fmadd_ps(v, v, acc);
        }
        let ms = hsum(acc) / d as f32;
        let vi = _mm256_set1_ps(1.0 / (ms + eps).sqrt());
        for i in (0..d).step_by(8) {
            // SAFETY: as above.
            unsafe {
                let v = _mm256_add_ps(_mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(bp.add(i)));
                let y = _mm256_mul_ps(_mm256_mul_ps(v, vi), _mm256_loadu_ps(sp.add(i)));
                let swapped = _mm256_permute_ps::<0b10_11_00_01>(y);
                let r = _mm256_fmadd_ps(y, _mm256_loadu_ps(cp.add(i)), _mm256_mul_ps(swapped, _mm256_loadu_ps(np.add(i))));
                _mm256_storeu_ps(dp.add(i), r);
            }
        }
    }
}

/// The softmax exponentials and GELU on 16 lanes: the same scheme lane for lane as [`avx`] (bit
/// for bit per element; sums differ in order), with `rcp14` in GELU's division.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::*;

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn exp16(x: __m512) -> __m512 {
        // Zero below EXP_LO (NaN lanes kept, they propagate), clamp above EXP_HI (operand order
        // makes `min`/`max` return a NaN input rather than the bound).
        let keep = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, _mm512_set1_ps(EXP_LO));
        let x = _mm512_min_ps(_mm512_set1_ps(EXP_HI), _mm512_max_ps(_mm512_set1_ps(EXP_LO), x));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(EXP_P[0]);
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P[1]));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P[2]));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P[3]));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P[4]));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P[5]));
        let y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0)));
        let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)));
        _mm512_maskz_mov_ps(keep, _mm512_mul_ps(y, _mm512_castsi512_ps(bits)))
    }

    /// The maximum of a row (a NaN may or may not win, as in the other versions: the sums that
    /// follow are NaN either way).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn max16(row: &[f32]) -> f32 {
        let body = row.len() / 16 * 16;
        let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..body).step_by(16) {
            // SAFETY: i + 16 ≤ body ≤ len.
            vmax = _mm512_max_ps(vmax, unsafe { _mm512_loadu_ps(row.as_ptr().add(i)) });
        }
        row[body..].iter().fold(_mm512_reduce_max_ps(vmax), |m, &v| m.max(v))
    }

    /// # Safety
    /// The CPU must support AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp_shifted_row(row: &mut [f32]) -> f32 {
        let n = row.len();
        let body = n / 16 * 16;
        let max = max16(row);
        let p = row.as_mut_ptr();
        let vm = _mm512_set1_ps(max);
        let mut vsum = _mm512_setzero_ps();
        for i in (0..body).step_by(16) {
            // SAFETY: as above.
            unsafe {
                let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), vm));
                _mm512_storeu_ps(p.add(i), e);
                vsum = _mm512_add_ps(vsum, e);
            }
        }
        let mut sum = _mm512_reduce_add_ps(vsum);
        for v in &mut row[body..] {
            *v = exp_scalar(*v - max);
            sum += *v;
        }
        sum
    }

    /// # Safety
    /// The CPU must support AVX-512 F and BF16; `dst.len() >= row.len()`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn exp_shifted_row_bf16(row: &mut [f32], dst: &mut [u16]) -> f32 {
        let n = row.len();
        let body = n / 16 * 16;
        let max = max16(row);
        let p = row.as_ptr();
        let vm = _mm512_set1_ps(max);
        let mut vsum = _mm512_setzero_ps();
        for i in (0..body).step_by(16) {
            // SAFETY: as above; dst is at least as long as row.
            unsafe {
                let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), vm));
                vsum = _mm512_add_ps(vsum, e);
                let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(e));
                _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, h);
            }
        }
        let mut sum = _mm512_reduce_add_ps(vsum);
        for i in body..n {
            let e = exp_scalar(row[i] - max);
            sum += e;
            dst[i] = super::super::bf16::to_bf16(e);
        }
        sum
    }

    /// GELU-tanh of 16 lanes (`x` with its bias added).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn gelu16(x: __m512) -> __m512 {
        let x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
        let neg_u = _mm512_mul_ps(_mm512_set1_ps(-GELU_2C), _mm512_fmadd_ps(_mm512_set1_ps(GELU_A), x3, x));
        let den = _mm512_add_ps(_mm512_set1_ps(1.0), exp16(neg_u));
        let r = _mm512_rcp14_ps(den);
        let r = _mm512_mul_ps(r, _mm512_fnmadd_ps(den, r, _mm512_set1_ps(2.0)));
        _mm512_mul_ps(x, r)
    }

    /// # Safety
    /// The CPU must support AVX-512 F; the slices have the same length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_tanh_with_grad(src: &[f32], y: &mut [f32], dy: &mut [f32]) {
        let n = src.len();
        let body = n / 16 * 16;
        let (s, yp, dp) = (src.as_ptr(), y.as_mut_ptr(), dy.as_mut_ptr());
        let one = _mm512_set1_ps(1.0);
        for i in (0..body).step_by(16) {
            // SAFETY: i + 16 ≤ body ≤ n for all slices.
            unsafe {
                let x = _mm512_loadu_ps(s.add(i));
                let xx = _mm512_mul_ps(x, x);
                let neg_u2 = _mm512_mul_ps(_mm512_set1_ps(-GELU_2C), _mm512_fmadd_ps(_mm512_set1_ps(GELU_A), _mm512_mul_ps(xx, x), x));
                let sg = _mm512_div_ps(one, _mm512_add_ps(one, exp16(neg_u2)));
                let du2 = _mm512_mul_ps(_mm512_set1_ps(GELU_2C), _mm512_fmadd_ps(_mm512_set1_ps(3.0 * GELU_A), xx, one));
                let xs = _mm512_mul_ps(x, sg);
                _mm512_storeu_ps(yp.add(i), xs);
                // s + x·s·(1 − s)·du2
                let g = _mm512_fmadd_ps(_mm512_mul_ps(xs, _mm512_sub_ps(one, sg)), du2, sg);
                _mm512_storeu_ps(dp.add(i), g);
            }
        }
        for i in body..n {
            (y[i], dy[i]) = gelu_with_grad_scalar(src[i]);
        }
    }

    /// # Safety
    /// The CPU must support AVX-512 F; `src`, `bias` and `dst` have the same length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_tanh(src: &[f32], bias: &[f32], dst: &mut [f32]) {
        let n = src.len();
        let body = n / 16 * 16;
        let (s, bp, d) = (src.as_ptr(), bias.as_ptr(), dst.as_mut_ptr());
        for i in (0..body).step_by(16) {
            // SAFETY: i + 16 ≤ body ≤ n for all slices.
            unsafe {
                let x = _mm512_add_ps(_mm512_loadu_ps(s.add(i)), _mm512_loadu_ps(bp.add(i)));
                _mm512_storeu_ps(d.add(i), gelu16(x));
            }
        }
        for i in body..n {
            dst[i] = gelu_scalar(src[i] + bias[i]);
        }
    }

    /// # Safety
    /// The CPU must support AVX-512 F and BF16; `src`, `bias` and `dst` have the same length.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn gelu_tanh_bf16(src: &[f32], bias: &[f32], dst: &mut [u16]) {
        let n = src.len();
        let body = n / 16 * 16;
        let (s, bp, d) = (src.as_ptr(), bias.as_ptr(), dst.as_mut_ptr());
        for i in (0..body).step_by(16) {
            // SAFETY: i + 16 ≤ body ≤ n for all slices.
            unsafe {
                let x = _mm512_add_ps(_mm512_loadu_ps(s.add(i)), _mm512_loadu_ps(bp.add(i)));
                let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(gelu16(x)));
                _mm256_storeu_si256(d.add(i) as *mut __m256i, h);
            }
        }
        for i in body..n {
            dst[i] = super::super::bf16::to_bf16(gelu_scalar(src[i] + bias[i]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A softmax from `exp_shifted` the way attention uses it (normalised afterwards).
    fn softmax_with(row: &mut [f32], exp_shifted: fn(&mut [f32]) -> f32) {
        let inv = 1.0 / exp_shifted(row);
        row.iter_mut().for_each(|v| *v *= inv);
    }

    fn softmax_row(row: &mut [f32]) {
        softmax_with(row, exp_shifted_row)
    }

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        for i in -8000..=8800 {
            let x = i as f32 * 0.01;
            let want = (x as f64).exp();
            worst = worst.max(((exp_scalar(x) as f64 - want) / want).abs());
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp_scalar(-80.5), 0.0);
        assert!(exp_scalar(f32::NAN).is_nan());
        // The vector kernels: tiny weights become exact zeros (never denormals), NaN propagates.
        let mut row = vec![0.0, -200.0, -79.0, -85.0, 1.0, 2.0, -1000.0, 0.5, -90.0];
        softmax_row(&mut row);
        assert!(row.iter().all(|v| *v == 0.0 || v.is_normal()), "{row:?}");
        assert_eq!(row[1], 0.0);
        let mut row = vec![0.0, f32::NAN, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        softmax_row(&mut row);
        assert!(row.iter().all(|v| v.is_nan()));
    }

    /// The portable kernels against the dispatched ones (the AVX2 versions on a machine that has
    /// them), on rows with a tail that is not a multiple of 8.
    #[test]
    fn scalar_and_dispatched_kernels_agree() {
        let xs: Vec<f32> = (0..131).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.11).collect();
        let near = |a: &[f32], b: &[f32], tol: f32| {
            a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * y.abs().max(1.0))
        };
        let (mut a, mut b) = (xs.clone(), xs.clone());
        softmax_row(&mut a);
        softmax_with(&mut b, scalar::exp_shifted_row);
        assert!(near(&a, &b, 1e-6), "softmax");
        let (mut a, mut b) = (vec![0f32; 131], vec![0f32; 131]);
        let bias: Vec<f32> = (0..131).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        gelu_tanh(&xs, &bias, &mut a);
        scalar::gelu_tanh(&xs, &bias, &mut b);
        assert!(near(&a, &b, 1e-6), "gelu");
        let x = &xs[..64];
        let (s1, sh): (Vec<f32>, Vec<f32>) = (0..64).map(|i| (1.0 + i as f32 * 0.01, i as f32 * -0.02)).unzip();
        let (mut a, mut b) = (vec![0f32; 64], vec![0f32; 64]);
        layer_norm_modulate(x, &s1, &sh, 1e-6, &mut a);
        scalar::layer_norm_modulate(x, &s1, &sh, 1e-6, &mut b);
        assert!(near(&a, &b, 1e-5), "layer norm");
        let (cs, sn): (Vec<f32>, Vec<f32>) = (0..64).map(|i| ((i / 2) as f32 * 0.7).sin_cos()).map(|(s, c)| (c, s)).unzip();
        let (mut a, mut b) = (vec![0f32; 64], vec![0f32; 64]);
        rms_rope(x, &bias[..64], &s1, &cs, &sn, 1e-6, &mut a);
        scalar::rms_rope(x, &bias[..64], &s1, &cs, &sn, 1e-6, &mut b);
        assert!(near(&a, &b, 1e-5), "rms rope");
        let (mut a, mut b) = (x.to_vec(), x.to_vec());
        gated_residual(&mut a, &sh, &s1, &cs);
        scalar::gated_residual(&mut b, &sh, &s1, &cs);
        assert!(near(&a, &b, 1e-6), "gated residual");
    }

    /// On a machine with AVX-512 the dispatched test above checks those versions; this one checks
    /// the AVX2 versions against them (same exponentials bit for bit, sums and GELU within 1e-6).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_and_avx512_versions_agree() {
        if !avx512() {
            eprintln!("no AVX-512 on this CPU: the dispatched test covers the AVX2 versions");
            return;
        }
        let xs: Vec<f32> = (0..259).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.11).chain([-100.0, 90.0]).collect();
        let (mut a, mut b) = (xs.clone(), xs.clone());
        // SAFETY: the CPU has AVX-512 F, hence AVX2 and FMA (`avx512` checks both).
        let (sa, sb) = unsafe { (avx::exp_shifted_row(&mut a), avx512::exp_shifted_row(&mut b)) };
        assert_eq!(a, b, "exponentials");
        assert!((sa - sb).abs() <= 1e-6 * sa, "sums {sa} {sb}");
        let bias: Vec<f32> = (0..xs.len()).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let (mut a, mut b) = (vec![0f32; xs.len()], vec![0f32; xs.len()]);
        // SAFETY: as above; equal lengths.
        unsafe {
            avx::gelu_tanh(&xs, &bias, &mut a);
            avx512::gelu_tanh(&xs, &bias, &mut b);
        }
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-6 * y.abs().max(1.0)), "gelu");
    }

    #[test]
    fn gelu_to_bf16_equals_the_rounded_gelu() {
        let xs: Vec<f32> = (0..133).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.11).collect();
        let bias: Vec<f32> = (0..xs.len()).map(|i| (i % 5) as f32 * 0.2 - 0.4).collect();
        let (mut a, mut h) = (vec![0f32; xs.len()], vec![0u16; xs.len()]);
        gelu_tanh(&xs, &bias, &mut a);
        gelu_tanh_bf16(&xs, &bias, &mut h);
        for (g, h) in a.iter().zip(&h) {
            assert_eq!(*h, crate::model::host::bf16::to_bf16(*g), "gelu {g}");
        }
    }

    #[test]
    fn exponentials_to_bf16_equal_the_rounded_exponentials() {
        let xs: Vec<f32> = (0..131).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.11).chain([-100.0]).collect();
        let mut a = xs.clone();
        let sa = exp_shifted_row(&mut a);
        let (mut b, mut h) = (xs.clone(), vec![0u16; xs.len()]);
        let sb = exp_shifted_row_bf16(&mut b, &mut h);
        assert!((sa - sb).abs() <= 1e-6 * sa, "sums {sa} {sb}");
        for (e, h) in a.iter().zip(&h) {
            assert_eq!(*h, crate::model::host::bf16::to_bf16(*e), "exp {e}");
        }
    }

    #[test]
    fn vector_and_scalar_kernels_agree_with_the_definitions() {
        let xs: Vec<f32> = (0..203).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.13).collect();
        // softmax
        let mut s = xs.clone();
        softmax_row(&mut s);
        let m = xs.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
        let z: f64 = xs.iter().map(|&v| (v as f64 - m).exp()).sum();
        for (a, &x) in s.iter().zip(&xs) {
            assert!((*a as f64 - (x as f64 - m).exp() / z).abs() < 1e-6);
        }
        // GELU-tanh, extremes included
        let mut g = vec![0f32; xs.len() + 3];
        let mut src = xs.clone();
        src.extend([-200.0, 200.0, 0.0]);
        gelu_tanh(&src, &vec![0.0; src.len()], &mut g);
        for (a, &x) in g.iter().zip(&src) {
            let x = x as f64;
            let want = 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh());
            assert!((*a as f64 - want).abs() < 2e-6 * want.abs().max(1.0), "gelu({x}) = {a}, want {want}");
        }
        // LayerNorm
        let x: Vec<f32> = xs[..64].to_vec();
        let (s1, sh) = (vec![2.0f32; 64], vec![0.5f32; 64]);
        let mut y = vec![0f32; 64];
        layer_norm_modulate(&x, &s1, &sh, 1e-6, &mut y);
        let mean: f32 = y.iter().sum::<f32>() / 64.0;
        let var: f32 = y.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 64.0;
        assert!((mean - 0.5).abs() < 1e-5 && (var - 4.0).abs() < 1e-3, "{mean} {var}");
        // RMSNorm + RoPE: a rotation keeps the norm of the normalised row.
        let (cs, sn): (Vec<f32>, Vec<f32>) =
            (0..64).map(|i| ((i / 2) as f32 * 0.3).sin_cos()).map(|(s, c)| (c, s)).unzip();
        let sin: Vec<f32> = sn.iter().enumerate().map(|(i, s)| if i % 2 == 0 { -s } else { *s }).collect();
        let mut r = vec![0f32; 64];
        rms_rope(&x, &[0.0; 64], &[1.0; 64], &cs, &sin, 1e-6, &mut r);
        let n2: f32 = r.iter().map(|v| v * v).sum();
        assert!((n2 - 64.0).abs() < 1e-3, "{n2}");
        let ms = (x.iter().map(|v| v * v).sum::<f32>() / 64.0 + 1e-6).sqrt();
        let (a, b) = (x[2] / ms, x[3] / ms);
        assert!((r[2] - (a * cs[2] - b * sn[2])).abs() < 1e-5 && (r[3] - (b * cs[3] + a * sn[3])).abs() < 1e-5);
    }
}
