//! bf16 matrix products for the generator's host path ([`super`]) at reduced precision:
//! both operands rounded to bfloat16 (round to nearest even), products accumulated in f32.
//!
//! Three kernels compute the same products, the best one the CPU has chosen at run time:
//! - **AMX** (`TDPBF16PS` on 16 × 32 by 32 × 16 tiles; Intel Sapphire Rapids and later), through
//!   inline assembly — Rust has no stable AMX intrinsics — after asking Linux for the tile state
//!   (`arch_prctl(ARCH_REQ_XCOMP_PERM)`);
//! - **AVX-512 BF16** (`VDPBF16PS`, 16 lanes of pair products);
//! - **scalar**, which emulates the arithmetic (exact bf16 products, f32 sums) anywhere else.
//!
//! The right-hand side is stored in the tile layout all three read: 16 × 16 column tiles of 32
//! reduction rows, each tile 16 rows of "pairs" (`B[2r][j], B[2r+1][j]` side by side for 16
//! columns `j`) — AMX's B-tile and VDPBF16PS's operand layout alike. Weights are packed once; the
//! left-hand side (activations) is converted row by row into a zero-padded bf16 buffer.
//!
//! Results are deterministic for a given kernel; different kernels sum in different orders, so
//! their last bits differ (the unit tests bound that difference).

use std::cell::RefCell;
use std::sync::OnceLock;

/// Rows of a left-hand tile, columns of a right-hand tile.
const TILE: usize = 16;
/// Reduction depth of one tile (16 pairs).
const DEPTH: usize = 32;
/// Pair words (two bf16) of one right-hand tile: 16 pair rows × 16 columns.
const TILE_WORDS: usize = TILE * TILE;
/// Output block of the AMX kernel (2 × 2 tiles); rows and columns are padded to it.
const BLOCK: usize = 2 * TILE;

/// Which kernel computes the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Amx,
    Avx512,
    Scalar,
}

impl Kernel {
    /// The name the status bar and the CLI show.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Amx => "AMX",
            Kernel::Avx512 => "AVX-512 BF16",
            Kernel::Scalar => "scalar",
        }
    }
}

/// The kernel used on this machine: the fastest available, or the one `NVG_BF16_KERNEL`
/// (`amx`, `avx512`, `scalar`) names when the CPU has it.
pub fn kernel() -> Kernel {
    static K: OnceLock<Kernel> = OnceLock::new();
    *K.get_or_init(|| {
        let available = available();
        let wanted = std::env::var("NVG_BF16_KERNEL").ok().and_then(|v| match v.to_ascii_lowercase().as_str() {
            "amx" => Some(Kernel::Amx),
            "avx512" => Some(Kernel::Avx512),
            "scalar" => Some(Kernel::Scalar),
            _ => None,
        });
        match (wanted, std::env::var("NVG_BF16_KERNEL")) {
            (Some(k), _) if available.contains(&k) => k,
            (_, Ok(v)) => {
                eprintln!("NVG_BF16_KERNEL={v}: not one of this CPU's kernels {available:?}; using {:?}", available[0]);
                available[0]
            }
            _ => available[0],
        }
    })
}

/// The kernels this CPU can run, fastest first (always ends with [`Kernel::Scalar`]).
pub fn available() -> Vec<Kernel> {
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if x86::amx_usable() {
            v.push(Kernel::Amx);
        }
        if x86::avx512_bf16() {
            v.push(Kernel::Avx512);
        }
    }
    v.push(Kernel::Scalar);
    v
}

/// f32 → bf16, rounding to nearest even; subnormals flush to a signed zero and NaN stays NaN —
/// exactly what `VCVTNEPS2BF16` does, so scalar and vector conversions agree bit for bit.
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x0040) as u16;
    }
    if b & 0x7f80_0000 == 0 {
        return ((b >> 16) & 0x8000) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// bf16 → f32 (exact).
#[inline]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Converts a row of f32, times `scale`, to bf16.
fn convert_row(src: &[f32], scale: f32, dst: &mut [u16]) {
    assert!(dst.len() >= src.len());
    #[cfg(target_arch = "x86_64")]
    if x86::avx512_bf16() {
        // SAFETY: the CPU has the features; lengths checked above.
        unsafe { x86::convert_row(src, scale, dst) };
        return;
    }
    if scale == 1.0 {
        src.iter().zip(dst.iter_mut()).for_each(|(s, d)| *d = to_bf16(*s));
    } else {
        src.iter().zip(dst.iter_mut()).for_each(|(s, d)| *d = to_bf16(*s * scale));
    }
}

/// Converts `src` to bf16 into `dst` (`dst.len() >= src.len()`).
pub fn convert(src: &[f32], dst: &mut [u16]) {
    convert_row(src, 1.0, dst);
}

/// A right-hand side `[k × n]` in tile layout (see the module docs), zero-padded to whole tiles
/// and to an even number of column tiles.
#[derive(Default, Clone)]
pub struct PackedB {
    /// Pair words: the even reduction row's bf16 in the low half, the odd row's in the high half.
    data: Vec<u32>,
    k: usize,
    n: usize,
    /// Reduction tiles per column tile.
    kts: usize,
    /// Column tiles (even).
    nts: usize,
}

impl PackedB {
    /// Packs `B[i][j] = src[i·rs + j·cs]` for `i < k`, `j < n`, reusing this buffer.
    ///
    /// # Safety
    /// Every addressed element must lie inside the buffer `src` points into.
    pub unsafe fn pack(&mut self, src: *const f32, k: usize, n: usize, rs: usize, cs: usize) {
        let kts = k.div_ceil(DEPTH);
        let nts = n.div_ceil(BLOCK) * 2;
        self.data.clear();
        self.data.resize(kts * nts * TILE_WORDS, 0);
        (self.k, self.n, self.kts, self.nts) = (k, n, kts, nts);
        let word = |p: usize, j: usize| ((j / TILE) * kts + p / TILE) * TILE_WORDS + (p % TILE) * TILE + j % TILE;
        let pairs = k.div_ceil(2);
        if cs == 1 {
            // Rows contiguous (weights, v): two rows at a time, converted, then interleaved.
            let (mut lo, mut hi) = (vec![0u16; n], vec![0u16; n]);
            for p in 0..pairs {
                // SAFETY: the caller's contract (rows 2p and 2p + 1 < k, n columns each).
                convert_row(unsafe { std::slice::from_raw_parts(src.add(2 * p * rs), n) }, 1.0, &mut lo);
                if 2 * p + 1 < k {
                    convert_row(unsafe { std::slice::from_raw_parts(src.add((2 * p + 1) * rs), n) }, 1.0, &mut hi);
                } else {
                    hi.fill(0);
                }
                for j in 0..n {
                    self.data[word(p, j)] = lo[j] as u32 | (hi[j] as u32) << 16;
                }
            }
        } else if rs == 1 {
            // Columns contiguous (kᵀ read from k's rows): one column at a time.
            let mut col = vec![0u16; 2 * pairs];
            for j in 0..n {
                // SAFETY: the caller's contract (column j, k rows).
                convert_row(unsafe { std::slice::from_raw_parts(src.add(j * cs), k) }, 1.0, &mut col);
                for p in 0..pairs {
                    self.data[word(p, j)] = col[2 * p] as u32 | (col[2 * p + 1] as u32) << 16;
                }
            }
        } else {
            for i in 0..k {
                for j in 0..n {
                    // SAFETY: the caller's contract.
                    let v = to_bf16(unsafe { *src.add(i * rs + j * cs) }) as u32;
                    self.data[word(i / 2, j)] |= v << (16 * (i % 2));
                }
            }
        }
    }

    /// Packs a row-major `[k × n]` matrix.
    pub fn from_rows(src: &[f32], k: usize, n: usize) -> Self {
        assert!(src.len() >= k * n, "PackedB::from_rows: {} values for {k}×{n}", src.len());
        let mut p = Self::default();
        // SAFETY: checked above.
        unsafe { p.pack(src.as_ptr(), k, n, n, 1) };
        p
    }

    /// `B[i][j]` as stored (for tests).
    #[cfg(test)]
    fn at(&self, i: usize, j: usize) -> f32 {
        let (kt, pair, half, nt, col) = (i / DEPTH, (i % DEPTH) / 2, i % 2, j / TILE, j % TILE);
        from_bf16((self.data[(nt * self.kts + kt) * TILE_WORDS + pair * TILE + col] >> (16 * half)) as u16)
    }
}

/// A left-hand side `[m × k]` in bf16, rows padded to whole 32-row blocks and the reduction to
/// whole tiles (zeros).
#[derive(Default)]
pub struct PackedA {
    data: Vec<u16>,
    m: usize,
    k: usize,
    /// Row stride (elements) = reduction tiles · 32.
    stride: usize,
}

impl PackedA {
    /// Sizes this buffer for `[m × k]` with zero padding, for a producer that writes the rows
    /// itself ([`Self::row_mut`]); the rows' contents are left to it.
    pub fn reset(&mut self, m: usize, k: usize) {
        let stride = k.div_ceil(DEPTH) * DEPTH;
        let rows = m.div_ceil(BLOCK) * BLOCK;
        self.data.resize(rows * stride, 0);
        if stride > k {
            for r in 0..m {
                self.data[r * stride + k..(r + 1) * stride].fill(0);
            }
        }
        self.data[m * stride..].fill(0);
        (self.m, self.k, self.stride) = (m, k, stride);
    }

    /// Row `r`'s `k` entries.
    pub fn row_mut(&mut self, r: usize) -> &mut [u16] {
        assert!(r < self.m, "PackedA: row {r} of {}", self.m);
        &mut self.data[r * self.stride..r * self.stride + self.k]
    }

    /// `bf16(scale · src)`.
    ///
    /// # Safety
    /// Rows `src[r·rs .. r·rs + k]`, `r < m`, must lie inside the buffer `src` points into.
    unsafe fn pack(&mut self, src: *const f32, m: usize, k: usize, rs: usize, scale: f32) {
        let stride = k.div_ceil(DEPTH) * DEPTH;
        let rows = m.div_ceil(BLOCK) * BLOCK;
        self.data.resize(rows * stride, 0);
        for r in 0..m {
            // SAFETY: the caller's contract.
            let row = unsafe { std::slice::from_raw_parts(src.add(r * rs), k) };
            let d = &mut self.data[r * stride..(r + 1) * stride];
            convert_row(row, scale, &mut d[..k]);
            d[k..].fill(0);
        }
        self.data[m * stride..].fill(0);
        (self.m, self.k, self.stride) = (m, k, stride);
    }
}

thread_local! {
    /// The calling thread's converted left-hand side, reused between products.
    static LHS: RefCell<PackedA> = RefCell::new(PackedA::default());
}

/// `dst[i·dst_rs + j] = [dst +] Σₗ bf16(alpha · A[i][l]) · bf16(B[l][j])` for `i < m`, `j < b.n`,
/// where `A[i][l] = a[i·a_rs + l]` (`l < b.k`), on [`kernel`]. (`alpha` scales before rounding:
/// for a power of two that is the same as scaling the result.)
///
/// # Safety
/// Every addressed element of `a` and `dst` must lie inside its buffer; `dst` must not overlap `a`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul(m: usize, a: *const f32, a_rs: usize, b: &PackedB, dst: *mut f32, dst_rs: usize, accumulate: bool, alpha: f32) {
    // SAFETY: the caller's contract.
    unsafe { matmul_with(kernel(), m, a, a_rs, b, dst, dst_rs, accumulate, alpha) }
}

/// [`matmul`] on a chosen kernel (which the CPU must have).
///
/// # Safety
/// As [`matmul`].
#[allow(clippy::too_many_arguments)]
unsafe fn matmul_with(kern: Kernel, m: usize, a: *const f32, a_rs: usize, b: &PackedB, dst: *mut f32, dst_rs: usize, accumulate: bool, alpha: f32) {
    if m == 0 || b.n == 0 {
        return;
    }
    LHS.with(|lhs| {
        let mut lhs = lhs.borrow_mut();
        // SAFETY: the caller's contract.
        unsafe { lhs.pack(a, m, b.k, a_rs, alpha) };
        // SAFETY: the caller's contract for `dst`.
        unsafe { matmul_packed_with(kern, &lhs, b, dst, dst_rs, accumulate) }
    });
}

/// `dst[i·dst_rs + j] = [dst +] Σₗ A[i][l] · bf16(B[l][j])` for a left-hand side already in bf16
/// (`a.k` must equal `b.k`), on [`kernel`].
///
/// # Safety
/// Rows `i < a.m`, columns `j < b.n` of `dst` at row stride `dst_rs` must lie inside its buffer.
pub unsafe fn matmul_packed(a: &PackedA, b: &PackedB, dst: *mut f32, dst_rs: usize, accumulate: bool) {
    // SAFETY: the caller's contract.
    unsafe { matmul_packed_with(kernel(), a, b, dst, dst_rs, accumulate) }
}

/// [`matmul_packed`] on a chosen kernel (which the CPU must have).
///
/// # Safety
/// As [`matmul_packed`].
unsafe fn matmul_packed_with(kern: Kernel, lhs: &PackedA, b: &PackedB, dst: *mut f32, dst_rs: usize, accumulate: bool) {
    assert_eq!(lhs.k, b.k, "bf16 matmul: the left side has {} columns, the right side {} rows", lhs.k, b.k);
    let m = lhs.m;
    if m == 0 || b.n == 0 {
        return;
    }
    let mut scratch = Scratch([0.0; BLOCK * BLOCK]);
    #[cfg(target_arch = "x86_64")]
    if kern == Kernel::Amx {
        // SAFETY: AMX is usable (`kernel`/`available` checked it).
        unsafe { x86::amx_configure() };
    }
    for r0 in (0..m).step_by(BLOCK) {
        for nt in (0..b.nts).step_by(2) {
            let c = &mut scratch.0;
            #[cfg(target_arch = "x86_64")]
            if kern == Kernel::Amx && !accumulate && r0 + BLOCK <= m && (nt + 2) * TILE <= b.n {
                // A whole block inside `dst`: the tiles are stored there directly.
                // SAFETY: as below; rows r0..r0 + 32 and columns nt·16..nt·16 + 32 lie in `dst`.
                unsafe { x86::amx_block(lhs, r0, b, nt, dst.add(r0 * dst_rs + nt * TILE), dst_rs) };
                continue;
            }
            match kern {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the packed buffers hold whole 32-row blocks and whole tile pairs.
                Kernel::Amx => unsafe { x86::amx_block(lhs, r0, b, nt, c.as_mut_ptr(), BLOCK) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above; the CPU has AVX-512 BF16.
                Kernel::Avx512 => unsafe { x86::avx512_block(lhs, r0, b, nt, c) },
                _ => scalar_block(lhs, r0, b, nt, c),
            }
            let rows = BLOCK.min(m - r0);
            let cols = BLOCK.min(b.n - nt * TILE);
            for r in 0..rows {
                // SAFETY: row r0 + r < m and columns < n lie inside `dst` (caller's contract).
                let out = unsafe { std::slice::from_raw_parts_mut(dst.add((r0 + r) * dst_rs + nt * TILE), cols) };
                let src = &c[r * BLOCK..r * BLOCK + cols];
                if accumulate {
                    out.iter_mut().zip(src).for_each(|(o, s)| *o += s);
                } else {
                    out.copy_from_slice(src);
                }
            }
        }
    }
}

/// A 32 × 32 f32 output block.
#[repr(C, align(64))]
struct Scratch([f32; BLOCK * BLOCK]);

/// The scalar kernel: one 32 × 32 block, sums in reduction order.
fn scalar_block(a: &PackedA, r0: usize, b: &PackedB, nt: usize, c: &mut [f32; BLOCK * BLOCK]) {
    for r in 0..BLOCK {
        let row = &a.data[(r0 + r) * a.stride..(r0 + r + 1) * a.stride];
        for j in 0..BLOCK {
            let (t, col) = (nt + j / TILE, j % TILE);
            let mut acc = 0f32;
            for kt in 0..b.kts {
                let tile = &b.data[(t * b.kts + kt) * TILE_WORDS..(t * b.kts + kt + 1) * TILE_WORDS];
                for pair in 0..TILE {
                    let l = kt * DEPTH + 2 * pair;
                    let wd = tile[pair * TILE + col];
                    acc += from_bf16(row[l]) * from_bf16(wd as u16) + from_bf16(row[l + 1]) * from_bf16((wd >> 16) as u16);
                }
            }
            c[r * BLOCK + j] = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::{BLOCK, DEPTH, PackedA, PackedB, TILE, TILE_WORDS};

    pub fn avx512_bf16() -> bool {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")
    }

    /// AMX-BF16 present, enabled by the OS (XCR0 tile bits) and granted to this process.
    pub fn amx_usable() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            let leaf7 = __cpuid_count(7, 0);
            let (amx_bf16, amx_tile) = ((leaf7.edx >> 22) & 1 == 1, (leaf7.edx >> 24) & 1 == 1);
            if !(amx_bf16 && amx_tile && std::arch::is_x86_feature_detected!("xsave")) {
                return false;
            }
            // OSXSAVE (cpuid 1, ecx bit 27) guarantees XGETBV.
            let osxsave = (__cpuid(1).ecx >> 27) & 1 == 1;
            if !osxsave {
                return false;
            }
            // SAFETY: checked above.
            let xcr0 = unsafe { xgetbv0() };
            if (xcr0 >> 17) & 3 != 3 {
                return false;
            }
            request_tile_permission()
        })
    }

    #[target_feature(enable = "xsave")]
    unsafe fn xgetbv0() -> u64 {
        // SAFETY: the caller checked OSXSAVE.
        unsafe { _xgetbv(0) }
    }

    #[cfg(target_os = "linux")]
    fn request_tile_permission() -> bool {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain syscall with integer arguments.
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
    }

    #[cfg(not(target_os = "linux"))]
    fn request_tile_permission() -> bool {
        false
    }

    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    thread_local! {
        /// Whether this thread's tile configuration is set (it stays set: the configuration is
        /// the same for every product, and nothing else here uses the tiles).
        static CONFIGURED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Palette 1, all eight tiles 16 rows × 64 bytes: tmm0–3 the 2 × 2 f32 accumulators,
    /// tmm4–5 two left tiles, tmm6–7 two right tiles — set once per thread.
    ///
    /// # Safety
    /// AMX must be usable ([`amx_usable`]).
    pub unsafe fn amx_configure() {
        if CONFIGURED.get() {
            return;
        }
        CONFIGURED.set(true);
        let mut cfg = TileConfig([0; 64]);
        cfg.0[0] = 1;
        for t in 0..8 {
            cfg.0[16 + 2 * t] = 64;
            cfg.0[48 + t] = 16;
        }
        // SAFETY: a valid palette-1 configuration.
        unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly)) };
    }

    /// One 32 × 32 output block: rows `r0..r0 + 32` of `a` by column tiles `nt, nt + 1` of `b`,
    /// stored at `c` with row stride `c_rs` (f32 elements).
    ///
    /// # Safety
    /// Tiles configured on this thread; `a` holds rows up to `r0 + 32`, `b` column tiles up to
    /// `nt + 1`, both with `b.kts` reduction tiles; `c` addresses 32 rows of 32 writable floats.
    pub unsafe fn amx_block(a: &PackedA, r0: usize, b: &PackedB, nt: usize, c: *mut f32, c_rs: usize) {
        let sa = a.stride * 2;
        debug_assert!(a.data.len() >= (r0 + BLOCK) * a.stride && b.data.len() >= (nt + 2) * b.kts * TILE_WORDS);
        // SAFETY: the caller's contract bounds every tile load (16 rows of 64 bytes at the given
        // strides) and the 32 × 32 store.
        unsafe {
            let a0 = a.data.as_ptr().add(r0 * a.stride);
            let a1 = a0.add(TILE * a.stride);
            let b0 = b.data.as_ptr().add(nt * b.kts * TILE_WORDS);
            let b1 = b0.add(b.kts * TILE_WORDS);
            // One block of assembly: the accumulators stay in tmm0–3 from `tilezero` to
            // `tilestored`, and every tile register is declared clobbered.
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "test {n}, {n}",
                "jz 3f",
                "2:",
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, {da}",
                "add {a1}, {da}",
                "add {b0}, {db}",
                "add {b1}, {db}",
                "dec {n}",
                "jnz 2b",
                "3:",
                // Rows 0–15 at c, rows 16–31 at c + 16 rows; the right tile 64 bytes along.
                "tilestored [{c} + {s}*1], tmm0",
                "tilestored [{c} + {s}*1 + 64], tmm1",
                "mov {a0}, {s}",
                "shl {a0}, 4",
                "add {a0}, {c}",
                "tilestored [{a0} + {s}*1], tmm2",
                "tilestored [{a0} + {s}*1 + 64], tmm3",
                a0 = inout(reg) a0 => _,
                a1 = inout(reg) a1 => _,
                b0 = inout(reg) b0 => _,
                b1 = inout(reg) b1 => _,
                n = inout(reg) b.kts => _,
                sa = in(reg) sa,
                sb = in(reg) 64usize,
                da = const DEPTH * 2,
                db = const TILE_WORDS * 4,
                c = in(reg) c,
                s = in(reg) c_rs * 4,
                out("tmm0") _,
                out("tmm1") _,
                out("tmm2") _,
                out("tmm3") _,
                out("tmm4") _,
                out("tmm5") _,
                out("tmm6") _,
                out("tmm7") _,
                options(nostack),
            );
        }
    }

    /// One 32 × 32 output block with `VDPBF16PS`, eight rows at a time (16 accumulators).
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BF16; bounds as [`amx_block`].
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn avx512_block(a: &PackedA, r0: usize, b: &PackedB, nt: usize, c: &mut [f32; BLOCK * BLOCK]) {
        debug_assert!(a.data.len() >= (r0 + BLOCK) * a.stride && b.data.len() >= (nt + 2) * b.kts * TILE_WORDS);
        // SAFETY: the caller's contract bounds every load and store.
        unsafe {
            let b0 = b.data.as_ptr().add(nt * b.kts * TILE_WORDS);
            let b1 = b0.add(b.kts * TILE_WORDS);
            // Sixteen named accumulators (8 rows × 2 column tiles), so that they stay in
            // registers at our crate's opt-level; A is read as pair words (two bf16 per i32).
            let rs = a.stride / 2;
            let words = b.kts * TILE;
            for rb in (0..BLOCK).step_by(8) {
                let ap = a.data.as_ptr().add((r0 + rb) * a.stride) as *const i32;
                let z = _mm512_setzero_ps();
                let (mut c0l, mut c0h, mut c1l, mut c1h, mut c2l, mut c2h, mut c3l, mut c3h) = (z, z, z, z, z, z, z, z);
                let (mut c4l, mut c4h, mut c5l, mut c5h, mut c6l, mut c6h, mut c7l, mut c7h) = (z, z, z, z, z, z, z, z);
                for w in 0..words {
                    let v0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b0.add(w * TILE) as *const _));
                    let v1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b1.add(w * TILE) as *const _));
                    macro_rules! row {
                        ($r:expr, $lo:ident, $hi:ident) => {{
                            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(ap.add($r * rs + w).read_unaligned()));
                            $lo = _mm512_dpbf16_ps($lo, av, v0);
                            $hi = _mm512_dpbf16_ps($hi, av, v1);
                        }};
                    }
                    row!(0, c0l, c0h);
                    row!(1, c1l, c1h);
                    row!(2, c2l, c2h);
                    row!(3, c3l, c3h);
                    row!(4, c4l, c4h);
                    row!(5, c5l, c5h);
                    row!(6, c6l, c6h);
                    row!(7, c7l, c7h);
                }
                let o = c.as_mut_ptr().add(rb * BLOCK);
                for (r, (lo, hi)) in [(c0l, c0h), (c1l, c1h), (c2l, c2h), (c3l, c3h), (c4l, c4h), (c5l, c5h), (c6l, c6h), (c7l, c7h)].into_iter().enumerate() {
                    _mm512_storeu_ps(o.add(r * BLOCK), lo);
                    _mm512_storeu_ps(o.add(r * BLOCK + TILE), hi);
                }
            }
        }
    }

    /// `scale · src` → bf16 with `VCVTNEPS2BF16`, 16 at a time; the tail through the same
    /// rounding.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BF16; `dst.len() >= src.len()`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn convert_row(src: &[f32], scale: f32, dst: &mut [u16]) {
        let n = src.len();
        let mut i = 0;
        let sv = _mm512_set1_ps(scale);
        // SAFETY: i + 16 <= n for every vector access; dst is at least as long.
        unsafe {
            while i + 16 <= n {
                let v = _mm512_mul_ps(_mm512_loadu_ps(src.as_ptr().add(i)), sv);
                let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
                _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, h);
                i += 16;
            }
        }
        for j in i..n {
            dst[j] = super::to_bf16(src[j] * scale);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_nearest_even_and_keeps_specials() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties go to the even (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶: rounds up to the even.
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(-2.5), 0xc020);
        assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(to_bf16(f32::MAX), 0x7f80, "overflow rounds to infinity");
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(to_bf16(1e-40), 0, "subnormals flush to zero");
        assert_eq!(to_bf16(-1e-40), 0x8000);
        for x in [0.1f32, -3.7, 12345.678, 1e-20] {
            assert!((from_bf16(to_bf16(x)) - x).abs() <= x.abs() / 256.0, "{x}");
        }
    }

    #[test]
    fn vector_and_scalar_conversions_agree() {
        let src: Vec<f32> = (0..53).map(|i| (i as f32 * 0.731).sin() * 10f32.powi(i % 7 - 3)).chain([f32::INFINITY, -0.0, 1e-40, 1.0 + 1.0 / 256.0]).collect();
        let mut dst = vec![0u16; src.len()];
        convert_row(&src, 1.0, &mut dst);
        for (s, d) in src.iter().zip(&dst) {
            assert_eq!(*d, to_bf16(*s), "{s}");
        }
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    #[test]
    fn packing_places_every_element() {
        let (k, n) = (70, 45);
        let src = values(k * n, 7);
        let p = PackedB::from_rows(&src, k, n);
        assert_eq!((p.kts, p.nts), (3, 4));
        for i in 0..k {
            for j in 0..n {
                assert_eq!(p.at(i, j), from_bf16(to_bf16(src[i * n + j])));
            }
        }
        // Everything else is zero padding.
        let nonzero = src.iter().filter(|&&v| to_bf16(v) & 0x7fff != 0).count();
        let halves = p.data.iter().flat_map(|w| [*w as u16, (*w >> 16) as u16]);
        assert_eq!(halves.filter(|&v| v & 0x7fff != 0).count(), nonzero);
        // Neither rows nor columns contiguous (the element-wise path): the same tiles.
        let mut spread = vec![9.0f32; 12 * k * n];
        for i in 0..k {
            for j in 0..n {
                spread[12 * n * i + 6 * j] = src[i * n + j];
            }
        }
        let mut q = PackedB::default();
        // SAFETY: element (i, j) at 12n·i + 6j < 12·k·n.
        unsafe { q.pack(spread.as_ptr(), k, n, 12 * n, 6) };
        assert_eq!(q.data, p.data);
    }

    /// Every kernel this CPU has, against an f64 sum of the same bf16 products, on shapes with
    /// ragged rows, columns and reduction, strided operands, accumulation and a scale.
    #[test]
    fn every_available_kernel_matches_the_exact_products() {
        let kernels = available();
        eprintln!("bf16 kernels here: {kernels:?}");
        for &(m, n, k) in &[(1, 1, 1), (37, 45, 70), (64, 64, 64), (33, 513, 64), (40, 64, 513)] {
            let a_rs = k + 3;
            let a = values(m * a_rs, 11);
            let bsrc = values(k * n, 5);
            // B given transposed (column stride n·1 → rs = 1, cs = k), as attention's kᵀ is.
            let bt: Vec<f32> = (0..n * k).map(|idx| bsrc[(idx % k) * n + idx / k]).collect();
            let mut b = PackedB::default();
            // SAFETY: element (i, j) at i + j·k < n·k.
            unsafe { b.pack(bt.as_ptr(), k, n, 1, k) };
            let dst_rs = n + 2;
            let init = values(m * dst_rs, 3);
            let mut exact = init.clone();
            for i in 0..m {
                for j in 0..n {
                    let s: f64 = (0..k).map(|l| from_bf16(to_bf16(a[i * a_rs + l])) as f64 * from_bf16(to_bf16(bsrc[l * n + j])) as f64).sum();
                    exact[i * dst_rs + j] += (0.5 * s) as f32;
                }
            }
            for &kern in &kernels {
                let mut dst = init.clone();
                // SAFETY: all views lie inside the vectors.
                unsafe { matmul_with(kern, m, a.as_ptr(), a_rs, &b, dst.as_mut_ptr(), dst_rs, true, 0.5) };
                for i in 0..m {
                    for j in 0..dst_rs {
                        let (got, want) = (dst[i * dst_rs + j], exact[i * dst_rs + j]);
                        if j >= n {
                            assert_eq!(got, init[i * dst_rs + j], "{kern:?} wrote outside the columns");
                        } else {
                            assert!((got - want).abs() <= 1e-5 * k as f32, "{kern:?} {m}×{n}×{k} ({i},{j}): {got} vs {want}");
                        }
                    }
                }
                let mut fresh = init.clone();
                // SAFETY: as above.
                unsafe { matmul_with(kern, m, a.as_ptr(), a_rs, &b, fresh.as_mut_ptr(), dst_rs, false, 1.0) };
                for i in 0..m {
                    for j in 0..dst_rs {
                        let got = fresh[i * dst_rs + j];
                        if j >= n {
                            assert_eq!(got, init[i * dst_rs + j], "{kern:?} wrote outside the columns");
                        } else {
                            let d = (got - 2.0 * (exact[i * dst_rs + j] - init[i * dst_rs + j])).abs();
                            assert!(d <= 1e-5 * k as f32, "{kern:?} {m}×{n}×{k} ({i},{j}): overwrite off by {d}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn results_repeat_bit_for_bit() {
        let (m, n, k) = (50, 70, 90);
        let a = values(m * k, 1);
        let b = PackedB::from_rows(&values(k * n, 2), k, n);
        let run = || {
            let mut d = vec![0f32; m * n];
            // SAFETY: sizes match.
            unsafe { matmul(m, a.as_ptr(), k, &b, d.as_mut_ptr(), n, false, 1.0) };
            d
        };
        let first = run();
        assert!(first.iter().any(|v| *v != 0.0));
        assert_eq!(first, run());
    }
}
