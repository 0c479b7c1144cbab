//! The main canvas: the active stage's decoded image with its cluster structure composited on
//! top (cluster-colour fill, boundaries, locked hatching, the brush stroke being drawn, the class
//! map tint, the hovered cluster).
//!
//! Two paths draw the same picture:
//! * GPU: `shaders/canvas.wgsl`, run through egui's wgpu paint callback ([`register`] once at
//!   start-up, then [`paint_gpu`] every frame). Textures are re-uploaded only when their inputs
//!   change.
//! * CPU: [`composite_cpu`] (the reference implementation, also used by the tests) and
//!   [`CpuCanvas`], which caches the composite as an egui texture; for the glow renderer (what
//!   `--renderer auto` picks without a hardware GPU adapter).
//!
//! Both work on whole output pixels with integer blends (see the shader's header), so on a
//! non-sRGB target (eframe's default) they produce identical pixels for the same canvas size.

use std::hash::{Hash, Hasher};

use eframe::egui;

use crate::granularity::viz::cluster_colour;

/// What the canvas shows: the active stage of an NVG sequence. Plain data, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct CanvasLayers<'a> {
    /// RGB8 decoded image of the active stage, `image_side × image_side`, row-major.
    pub image: &'a [u8],
    pub image_side: usize,
    /// Cluster label per latent position, `grid_side × grid_side`, row-major.
    pub labels: &'a [u32],
    pub grid_side: usize,
    /// Active stage (labels are < 2^stage); picks the cluster colours.
    pub stage: usize,
    /// `grid_side²`: locked positions (hatched).
    pub lock: &'a [bool],
    /// `grid_side²`: positions in the brush stroke being drawn (tinted and outlined).
    pub pending: &'a [bool],
    /// `grid_side²`: optional class-map colour per position, shown as a tint.
    pub class_tint: Option<&'a [[u8; 3]]>,
    /// Cluster label to highlight (brightened, thick outline).
    pub hovered: Option<u32>,
    /// 0..=1 opacity of the cluster-colour fill over the image.
    pub overlay_opacity: f32,
    /// Draw a line where neighbouring positions have different labels.
    pub boundaries: bool,
}

/// Which renderer draws the canvas (for the status bar).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanvasPath {
    Gpu,
    Cpu,
}

impl CanvasPath {
    /// [`CanvasPath::Gpu`] when eframe runs on wgpu, else [`CanvasPath::Cpu`].
    pub fn for_frame(frame: &eframe::Frame) -> Self {
        if gpu_available(frame) {
            Self::Gpu
        } else {
            Self::Cpu
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Gpu => "canvas: GPU (wgpu shader)",
            Self::Cpu => "canvas: CPU",
        }
    }
}

/// Whether the GPU path can be used: eframe runs on the wgpu renderer.
pub fn gpu_available(frame: &eframe::Frame) -> bool {
    frame.wgpu_render_state().is_some()
}

// ---------------------------------------------------------------------------------------------
// Shared parameters. Keep in sync with the constants of the same names in shaders/canvas.wgsl.

const CELL_LOCKED: u32 = 1;
const CELL_PENDING: u32 = 2;
const CELL_HOVERED: u32 = 4;
const CELL_TINTED: u32 = 8;

const DRAW_BOUNDARIES: u32 = 1;
const SRGB_TARGET: u32 = 2;

const HOVER_BRIGHTEN: u32 = 64;
const TINT_MIX: u32 = 128;
const HATCH_STRIPE: u32 = 4;
const HATCH_DARK: u32 = 115;
const HATCH_LIGHT: u32 = 51;
const PENDING_TINT: u32 = 90;
const LINE_HALF: u32 = 1;
const HOVER_HALF: u32 = 2;
const BOUNDARY_RGB: [u32; 3] = [20, 20, 20];
const PENDING_OUTLINE_RGB: [u32; 3] = [255, 255, 255];
const HOVER_OUTLINE_RGB: [u32; 3] = [255, 220, 60];

/// Colour of the placeholder shown when the layers are inconsistent (sizes that do not match).
const PLACEHOLDER: egui::Color32 = egui::Color32::from_rgb(60, 60, 60);

/// Largest canvas side, in pixels, the CPU path composites (bounds the work per change).
const CPU_MAX_SIDE: usize = 4096;

/// One latent position as the shader sees it (an `Rgba32Uint` texel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Cell {
    label: u32,
    /// 0xBBGGRR.
    colour: u32,
    /// 0xBBGGRR.
    tint: u32,
    flags: u32,
}

fn pack_rgb(c: [u8; 3]) -> u32 {
    c[0] as u32 | (c[1] as u32) << 8 | (c[2] as u32) << 16
}

fn unpack_rgb(c: u32) -> [u32; 3] {
    [c & 0xff, (c >> 8) & 0xff, (c >> 16) & 0xff]
}

fn mix8(a: [u32; 3], b: [u32; 3], t: u32) -> [u32; 3] {
    std::array::from_fn(|i| (a[i] * (256 - t) + b[i] * t + 128) >> 8)
}

/// First output pixel of cell `c` along an axis of `n` pixels split into `g` cells.
fn first_px(c: u32, n: u32, g: u32) -> u32 {
    (c * n).div_ceil(g) // ceil(c·n / g); the shader spells it out
}

fn opacity256(opacity: f32) -> u32 {
    if opacity.is_nan() {
        0
    } else {
        (opacity.clamp(0.0, 1.0) * 256.0).round() as u32
    }
}

/// Largest `image_side` / `grid_side` drawn (within every wgpu adapter's 2D texture limit).
const MAX_IMAGE_SIDE: usize = 2048;
const MAX_GRID_SIDE: usize = 1024;

impl CanvasLayers<'_> {
    /// Whether the sizes agree: `image` holds `image_side²` RGB pixels, `labels`, `lock`,
    /// `pending` (and `class_tint`, if any) hold `grid_side²` entries, sides are non-zero and at
    /// most 2048 (image) / 1024 (grid), `stage < 32`. Inconsistent layers are drawn as a grey
    /// placeholder (and trip a debug assertion).
    pub fn is_consistent(&self) -> bool {
        let (s, g) = (self.image_side, self.grid_side);
        let n = g * g; // no overflow: checked to be small first
        (1..=MAX_IMAGE_SIDE).contains(&s)
            && (1..=MAX_GRID_SIDE).contains(&g)
            && self.stage < 32
            && self.image.len() == s * s * 3
            && self.labels.len() == n
            && self.lock.len() == n
            && self.pending.len() == n
            && self.class_tint.is_none_or(|t| t.len() == n)
    }
}

/// `Some` when the layers can be drawn; `None` (and a debug assertion) when they cannot.
fn validate(layers: &CanvasLayers) -> Option<()> {
    let ok = layers.is_consistent();
    debug_assert!(
        ok,
        "inconsistent canvas layers: image {} bytes for side {}, labels {} / lock {} / pending {} / tint {:?} for grid {}, stage {}",
        layers.image.len(),
        layers.image_side,
        layers.labels.len(),
        layers.lock.len(),
        layers.pending.len(),
        layers.class_tint.map(<[_]>::len),
        layers.grid_side,
        layers.stage,
    );
    ok.then_some(())
}

/// The per-position data both paths use (colours already looked up, flags packed).
fn pack_cells(layers: &CanvasLayers) -> Vec<Cell> {
    (0..layers.labels.len())
        .map(|i| {
            let label = layers.labels[i];
            let mut flags = 0;
            if layers.lock[i] {
                flags |= CELL_LOCKED;
            }
            if layers.pending[i] {
                flags |= CELL_PENDING;
            }
            if layers.hovered == Some(label) {
                flags |= CELL_HOVERED;
            }
            let tint = match layers.class_tint {
                Some(t) => {
                    flags |= CELL_TINTED;
                    pack_rgb(t[i])
                }
                None => 0,
            };
            Cell {
                label,
                colour: pack_rgb(cluster_colour(label, layers.stage)),
                tint,
                flags,
            }
        })
        .collect()
}

/// Hash of what decides the image texture.
fn image_key(layers: &CanvasLayers) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    layers.image_side.hash(&mut h);
    layers.image.hash(&mut h);
    h.finish()
}

/// Hash of what decides the cells texture.
fn cells_key(layers: &CanvasLayers, cells: &[Cell]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    layers.grid_side.hash(&mut h);
    cells.hash(&mut h);
    h.finish()
}

mod cpu;
mod gpu;
#[cfg(test)]
mod tests;

pub use cpu::{CpuCanvas, composite_cpu, composite_cpu_sized};
pub use gpu::{CanvasCallback, CanvasRenderer, paint_gpu, paint_gpu_with_id, register, register_with};
