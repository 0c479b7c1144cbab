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

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;
use eframe::egui_wgpu;
use eframe::wgpu;

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

// ---------------------------------------------------------------------------------------------
// CPU path

/// Everything one output pixel needs (the CPU twin of the shader's bindings).
/// The image is borrowed for a composite on the spot and owned for one sent to the editor's
/// compositor thread ([`Compositor::into_owned`]).
#[derive(Hash)]
struct Compositor<'a> {
    image: std::borrow::Cow<'a, [u8]>,
    cells: Vec<Cell>,
    image_side: u32,
    grid_side: u32,
    w: u32,
    h: u32,
    opacity256: u32,
    flags: u32,
}

impl<'a> Compositor<'a> {
    /// The compositor for `layers` at `w × h` pixels (clamped to [`CPU_MAX_SIDE`]); `None` when
    /// the layers are inconsistent.
    fn new(layers: &CanvasLayers<'a>, [w, h]: [usize; 2]) -> Option<Self> {
        validate(layers)?;
        Some(Self {
            image: std::borrow::Cow::Borrowed(layers.image),
            cells: pack_cells(layers),
            image_side: layers.image_side as u32,
            grid_side: layers.grid_side as u32,
            w: w.clamp(1, CPU_MAX_SIDE) as u32,
            h: h.clamp(1, CPU_MAX_SIDE) as u32,
            opacity256: opacity256(layers.overlay_opacity),
            flags: if layers.boundaries {
                DRAW_BOUNDARIES
            } else {
                0
            },
        })
    }

    fn into_owned(self) -> Compositor<'static> {
        Compositor { image: std::borrow::Cow::Owned(self.image.into_owned()), ..self }
    }

    /// Hash of everything the picture depends on.
    fn key(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    /// The composite, `w × h` pixels.
    fn render(&self) -> egui::ColorImage {
        let cols = axis_table(self.w, self.grid_side, self.image_side);
        let rows = axis_table(self.h, self.grid_side, self.image_side);
        let mut pixels = Vec::with_capacity(cols.len() * rows.len());
        for (iy, ay) in (0..).zip(&rows) {
            for (ix, ax) in (0..).zip(&cols) {
                let [r, g, b] = self.shade(ix, iy, ax, ay);
                pixels.push(egui::Color32::from_rgb(r, g, b));
            }
        }
        egui::ColorImage::new([cols.len(), rows.len()], pixels)
    }

    fn cell(&self, cx: u32, cy: u32) -> Cell {
        self.cells[(cy * self.grid_side + cx) as usize]
    }

    /// The shader's `fs_main` for pixel (ix, iy); see there for the steps. `ax` / `ay` are the
    /// pixel's column and row entries of [`axis_table`].
    fn shade(&self, ix: u32, iy: u32, ax: &AxisPx, ay: &AxisPx) -> [u8; 3] {
        let g = self.grid_side;
        let (cx, cy) = (ax.cell, ay.cell);
        let t = (ay.texel * self.image_side + ax.texel) as usize * 3;
        let texel = [
            self.image[t] as u32,
            self.image[t + 1] as u32,
            self.image[t + 2] as u32,
        ];
        let cell = self.cell(cx, cy);
        let flags = cell.flags;

        let mut out = mix8(texel, unpack_rgb(cell.colour), self.opacity256);
        if flags & CELL_HOVERED != 0 {
            out = mix8(out, [255; 3], HOVER_BRIGHTEN);
        }
        if flags & CELL_TINTED != 0 {
            out = mix8(out, unpack_rgb(cell.tint), TINT_MIX);
        }
        if flags & CELL_LOCKED != 0 {
            out = if ((ix + iy) / HATCH_STRIPE).is_multiple_of(2) {
                mix8(out, [0; 3], HATCH_DARK)
            } else {
                mix8(out, [255; 3], HATCH_LIGHT)
            };
        }
        if flags & CELL_PENDING != 0 {
            out = mix8(out, [255; 3], PENDING_TINT);
        }

        let dist = [ax.to_first, ax.to_last, ay.to_first, ay.to_last];
        let neighbours = [
            (cx > 0).then(|| (cx - 1, cy)),
            (cx + 1 < g).then(|| (cx + 1, cy)),
            (cy > 0).then(|| (cx, cy - 1)),
            (cy + 1 < g).then(|| (cx, cy + 1)),
        ];
        let (mut boundary, mut pending_edge, mut hover_edge) = (false, false, false);
        for (d, n) in dist.into_iter().zip(neighbours) {
            let n = match n {
                Some((nx, ny)) => self.cell(nx, ny),
                None => Cell {
                    label: cell.label,
                    colour: 0,
                    tint: 0,
                    flags: 0,
                },
            };
            let differ = n.flags ^ flags;
            boundary |= self.flags & DRAW_BOUNDARIES != 0 && n.label != cell.label && d < LINE_HALF;
            pending_edge |= differ & CELL_PENDING != 0 && d < LINE_HALF;
            hover_edge |= differ & CELL_HOVERED != 0 && d < HOVER_HALF;
        }
        if boundary {
            out = BOUNDARY_RGB;
        }
        if pending_edge {
            out = PENDING_OUTLINE_RGB;
        }
        if hover_edge {
            out = HOVER_OUTLINE_RGB;
        }
        out.map(|v| v as u8)
    }
}

/// Where an output pixel falls along one axis: its cell, its image texel, and its distance to
/// the first and last pixel of its cell (what the shader computes per pixel with divisions).
struct AxisPx {
    cell: u32,
    texel: u32,
    to_first: u32,
    to_last: u32,
}

/// [`AxisPx`] for each of `n` pixels along an axis split into `g` cells over `s` image texels.
fn axis_table(n: u32, g: u32, s: u32) -> Vec<AxisPx> {
    (0..n)
        .map(|i| {
            let cell = i * g / n;
            AxisPx {
                cell,
                texel: i * s / n,
                to_first: i - first_px(cell, n, g),
                to_last: first_px(cell + 1, n, g) - 1 - i,
            }
        })
        .collect()
}

/// Composites the canvas on the CPU at `out_side × out_side` pixels (the reference the shader
/// follows). Boundary lines are 2 px wide (1 px each side of a cell edge), the hovered outline
/// 4 px, the lock hatch has 4-px stripes at 45°. Any `out_side` works; a multiple of `grid_side`
/// (and of `image_side`) gives equal cells. Inconsistent layers give a grey placeholder.
pub fn composite_cpu(layers: &CanvasLayers, out_side: usize) -> egui::ColorImage {
    composite_cpu_sized(layers, [out_side, out_side])
}

/// [`composite_cpu`] for a `w × h` canvas (what the GPU path draws into a `w × h`-pixel rect).
pub fn composite_cpu_sized(layers: &CanvasLayers, [w, h]: [usize; 2]) -> egui::ColorImage {
    Compositor::new(layers, [w, h]).map_or_else(placeholder([w, h]), |c| c.render())
}

/// The grey picture of inconsistent layers, at `w × h` (clamped like a composite).
fn placeholder([w, h]: [usize; 2]) -> impl FnOnce() -> egui::ColorImage {
    move || egui::ColorImage::filled([w.clamp(1, CPU_MAX_SIDE), h.clamp(1, CPU_MAX_SIDE)], PLACEHOLDER)
}

/// Size in physical pixels of `rect` as the GPU path's viewport rounds it.
fn rect_px(rect: egui::Rect, pixels_per_point: f32) -> ([i32; 2], [u32; 2]) {
    let left = (rect.min.x * pixels_per_point).round() as i32;
    let top = (rect.min.y * pixels_per_point).round() as i32;
    let right = (rect.max.x * pixels_per_point).round() as i32;
    let bottom = (rect.max.y * pixels_per_point).round() as i32;
    (
        [left, top],
        [(right - left).max(0) as u32, (bottom - top).max(0) as u32],
    )
}

/// The CPU path for the editor: composites at the rect's size in physical pixels (so the result
/// is shown 1:1, like the GPU path) and re-composites only when the inputs or the size change.
///
/// Compositing (13.5–19.5 ms for a 655-px canvas in the debug build, measured before the
/// per-axis tables) runs on a thread of its own, so a new result or a brush stroke never stalls
/// the frame that notices it: until the new picture is ready the previous one stays up (scaled
/// to the rect), and the compositor wakes the UI when it is done. Only the newest request is
/// composited; older ones still queued are dropped. The first picture, with nothing to show
/// meanwhile, is composited on the UI thread, and so is everything if the thread cannot start
/// or dies.
#[derive(Default)]
pub struct CpuCanvas {
    texture: Option<egui::TextureHandle>,
    /// Key of the picture in `texture`.
    key: Option<u64>,
    /// Key of the newest picture asked of the compositor and not yet shown.
    requested: Option<u64>,
    compositor: Option<Compositing>,
    /// The compositor thread could not start or died: composite on the UI thread.
    no_thread: bool,
}

/// The compositor thread's ends of the two channels: (key, picture to composite) in, (key,
/// composite) out.
struct Compositing {
    jobs: crossbeam_channel::Sender<(u64, Compositor<'static>)>,
    done: crossbeam_channel::Receiver<(u64, egui::ColorImage)>,
}

impl Compositing {
    /// Starts the compositor thread; it ends when the canvas (the job sender) is dropped.
    /// `None` when no thread can be started (the canvas then composites on the UI thread).
    fn start(ctx: egui::Context) -> Option<Self> {
        let (jobs, job_rx) = crossbeam_channel::unbounded::<(u64, Compositor<'static>)>();
        let (done_tx, done) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("nvg-canvas".into())
            .spawn(move || {
                while let Ok(mut job) = job_rx.recv() {
                    // Only the newest request matters.
                    while let Ok(newer) = job_rx.try_recv() {
                        job = newer;
                    }
                    let (key, comp) = job;
                    if done_tx.send((key, comp.render())).is_err() {
                        break;
                    }
                    ctx.request_repaint();
                }
            })
            .ok()?;
        Some(Self { jobs, done })
    }
}

impl CpuCanvas {
    pub fn new() -> Self {
        Self::default()
    }

    /// Paints the canvas into `rect`. The hovered cluster is drawn as shapes over the composited
    /// texture (25 % white and a 4-px yellow outline, as the shader does), so moving the pointer
    /// between clusters neither recomposites nor re-uploads the texture.
    pub fn show(&mut self, ui: &mut egui::Ui, rect: egui::Rect, layers: &CanvasLayers) {
        let hovered = layers.hovered;
        let layers = &CanvasLayers { hovered: None, ..*layers };
        self.show_base(ui, rect, layers);
        if let Some(h) = hovered.filter(|_| validate(layers).is_some()) {
            paint_hover(ui.painter(), rect, layers, h);
        }
    }

    /// Whether the picture on screen is the one for the last layers shown (no composite pending).
    pub fn is_current(&self) -> bool {
        self.requested.is_none()
    }

    /// The texture the composite is shown from (none before the first composite arrives).
    pub fn texture_id(&self) -> Option<egui::TextureId> {
        self.texture.as_ref().map(egui::TextureHandle::id)
    }

    fn show_base(&mut self, ui: &mut egui::Ui, rect: egui::Rect, layers: &CanvasLayers) {
        let (_, [w, h]) = rect_px(rect, ui.ctx().pixels_per_point());
        let size = [w as usize, h as usize];
        let comp = Compositor::new(layers, size);
        // Inconsistent layers all give the same placeholder: keyed by size alone.
        let key = comp.as_ref().map_or_else(
            || {
                let mut h = std::hash::DefaultHasher::new();
                size.hash(&mut h);
                h.finish()
            },
            Compositor::key,
        );
        // Pick up what the compositor finished (an older request's picture is still better than
        // what is up, unless what is up is already the one wanted now).
        let mut finished = None;
        let mut dead = false;
        if let Some(c) = &self.compositor {
            loop {
                match c.done.try_recv() {
                    Ok(r) => finished = Some(r),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        dead = true;
                        break;
                    }
                }
            }
        }
        if dead {
            // The thread is gone (it panicked): composite here from now on.
            self.compositor = None;
            self.requested = None;
            self.no_thread = true;
        }
        if let Some((k, image)) = finished {
            if self.key != Some(key) || k == key {
                self.upload(ui.ctx(), image);
                self.key = Some(k);
            }
            if self.requested == Some(k) {
                self.requested = None;
            }
        }
        if self.key == Some(key) {
            // Up already (say a change undone before its composite arrived): anything still in
            // flight is outdated.
            self.requested = None;
        } else if self.requested != Some(key) {
            if self.compositor.is_none() && !self.no_thread {
                self.compositor = Compositing::start(ui.ctx().clone());
                self.no_thread = self.compositor.is_none();
            }
            match comp {
                // The compositor thread takes it; the picture up stays until it is done.
                Some(c) if self.texture.is_some() && self.compositor.is_some() => {
                    let jobs = &self.compositor.as_ref().expect("checked above").jobs;
                    match jobs.send((key, c.into_owned())) {
                        Ok(()) => self.requested = Some(key),
                        Err(e) => {
                            self.compositor = None;
                            self.no_thread = true;
                            self.show_now(ui.ctx(), key, e.into_inner().1.render());
                        }
                    }
                }
                // The very first picture (nothing to show meanwhile), or no thread.
                Some(c) => self.show_now(ui.ctx(), key, c.render()),
                None => self.show_now(ui.ctx(), key, placeholder(size)()),
            }
        }
        if let Some(t) = &self.texture {
            let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
            ui.painter().image(t.id(), rect, uv, egui::Color32::WHITE);
        }
    }

    /// Shows a picture composited on this thread.
    fn show_now(&mut self, ctx: &egui::Context, key: u64, image: egui::ColorImage) {
        self.upload(ctx, image);
        self.key = Some(key);
        self.requested = None;
    }

    fn upload(&mut self, ctx: &egui::Context, image: egui::ColorImage) {
        match &mut self.texture {
            Some(t) => t.set(image, egui::TextureOptions::NEAREST),
            None => self.texture = Some(ctx.load_texture("nvg-canvas-cpu", image, egui::TextureOptions::NEAREST)),
        }
    }
}

/// The hovered cluster of the CPU path as egui shapes: a 25 % white fill over its cells and an
/// outline (2 px each side, in physical pixels) along every cell edge it shares with another
/// cluster or the border.
fn paint_hover(painter: &egui::Painter, rect: egui::Rect, layers: &CanvasLayers, label: u32) {
    let n = layers.grid_side;
    let (cw, ch) = (rect.width() / n as f32, rect.height() / n as f32);
    let fill = egui::Color32::from_white_alpha(HOVER_BRIGHTEN as u8);
    let [r, g, b] = HOVER_OUTLINE_RGB.map(|v| v as u8);
    let stroke = egui::Stroke::new(2.0 * HOVER_HALF as f32 / painter.ctx().pixels_per_point(), egui::Color32::from_rgb(r, g, b));
    let inside = |x: isize, y: isize| {
        x >= 0 && y >= 0 && (x as usize) < n && (y as usize) < n && layers.labels[y as usize * n + x as usize] == label
    };
    for y in 0..n {
        for x in 0..n {
            if layers.labels[y * n + x] != label {
                continue;
            }
            let min = rect.min + egui::vec2(x as f32 * cw, y as f32 * ch);
            let cell = egui::Rect::from_min_size(min, egui::vec2(cw, ch));
            painter.rect_filled(cell, 0.0, fill);
            let (xi, yi) = (x as isize, y as isize);
            let edges = [
                (!inside(xi, yi - 1), cell.left_top(), cell.right_top()),
                (!inside(xi, yi + 1), cell.left_bottom(), cell.right_bottom()),
                (!inside(xi - 1, yi), cell.left_top(), cell.left_bottom()),
                (!inside(xi + 1, yi), cell.right_top(), cell.right_bottom()),
            ];
            for (edge, a, b) in edges {
                if edge {
                    painter.line_segment([a, b], stroke);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GPU path

const SHADER: &str = include_str!("../../shaders/canvas.wgsl");

/// Size of the shader's `Uniforms` (8 × 4 bytes).
const UNIFORM_SIZE: usize = 32;

/// Instances not painted for this long are dropped (their textures freed).
const INSTANCE_TTL: Duration = Duration::from_secs(10);

/// The GPU path's shared resources, kept in egui-wgpu's `callback_resources`: the pipeline and
/// bind group layout, plus per-canvas textures and uniforms (one [`Instance`] per canvas id, so
/// several canvases can be painted in one frame). Images are read with `textureLoad` (exact
/// nearest-neighbour), so no sampler is needed.
pub struct CanvasRenderer {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    srgb_target: bool,
    instances: HashMap<egui::Id, Instance>,
}

/// One canvas's GPU data.
struct Instance {
    uniform: wgpu::Buffer,
    image: wgpu::Texture,
    cells: wgpu::Texture,
    bind_group: wgpu::BindGroup,
    image_key: Option<u64>,
    cells_key: Option<u64>,
    uniform_bytes: Option<[u8; UNIFORM_SIZE]>,
    last_used: Instant,
}

/// Registers the GPU path with eframe's wgpu renderer; call once (e.g. in the app's creation
/// with `cc.wgpu_render_state`). Assumes eframe's default render pass: no MSAA, no depth buffer
/// (`NativeOptions::multisampling` and `depth_buffer` left at 0); otherwise use [`register_with`].
pub fn register(render_state: &egui_wgpu::RenderState) {
    register_with(render_state, 1, None);
}

/// [`register`] for a render pass with `msaa_samples` samples and the given depth format (they
/// must match eframe's `NativeOptions::multisampling` / `depth_buffer`).
pub fn register_with(
    render_state: &egui_wgpu::RenderState,
    msaa_samples: u32,
    depth_stencil_format: Option<wgpu::TextureFormat>,
) {
    let renderer = CanvasRenderer::new(
        &render_state.device,
        render_state.target_format,
        msaa_samples,
        depth_stencil_format,
    );
    render_state
        .renderer
        .write()
        .callback_resources
        .insert(renderer);
}

impl CanvasRenderer {
    fn new(
        device: &wgpu::Device,
        target_format: wgpu::TextureFormat,
        msaa_samples: u32,
        depth_stencil_format: Option<wgpu::TextureFormat>,
    ) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("nvg_canvas"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let texture_entry = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Uint,
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("nvg_canvas"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: wgpu::BufferSize::new(UNIFORM_SIZE as u64),
                    },
                    count: None,
                },
                texture_entry(1),
                texture_entry(2),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("nvg_canvas"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("nvg_canvas"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                buffers: &[],
                compilation_options: Default::default(),
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: depth_stencil_format.map(|format| wgpu::DepthStencilState {
                format,
                depth_write_enabled: Some(false),
                depth_compare: Some(wgpu::CompareFunction::Always),
                stencil: Default::default(),
                bias: Default::default(),
            }),
            multisample: wgpu::MultisampleState {
                count: msaa_samples.max(1),
                mask: !0,
                alpha_to_coverage_enabled: false,
            },
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                targets: &[Some(wgpu::ColorTargetState {
                    format: target_format,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
                compilation_options: Default::default(),
            }),
            multiview_mask: None,
            cache: None,
        });
        Self {
            pipeline,
            layout,
            srgb_target: target_format.is_srgb(),
            instances: HashMap::new(),
        }
    }

    fn make_texture(
        device: &wgpu::Device,
        side: u32,
        format: wgpu::TextureFormat,
        label: &str,
    ) -> wgpu::Texture {
        device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width: side,
                height: side,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        })
    }

    fn make_bind_group(
        &self,
        device: &wgpu::Device,
        uniform: &wgpu::Buffer,
        image: &wgpu::Texture,
        cells: &wgpu::Texture,
    ) -> wgpu::BindGroup {
        let image_view = image.create_view(&Default::default());
        let cells_view = cells.create_view(&Default::default());
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("nvg_canvas"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(&image_view),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::TextureView(&cells_view),
                },
            ],
        })
    }

    /// Brings the instance `id` up to date with `data`: (re)creates textures whose size changed
    /// and uploads only what changed since the last frame.
    fn update(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, id: egui::Id, data: &GpuData) {
        let now = Instant::now();
        self.instances
            .retain(|k, inst| *k == id || now.duration_since(inst.last_used) < INSTANCE_TTL);

        let sizes_ok = self.instances.get(&id).is_some_and(|inst| {
            inst.image.width() == data.image_side && inst.cells.width() == data.grid_side
        });
        if !sizes_ok {
            let uniform = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("nvg_canvas_uniforms"),
                size: UNIFORM_SIZE as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let image = Self::make_texture(
                device,
                data.image_side,
                wgpu::TextureFormat::Rgba8Uint,
                "nvg_canvas_image",
            );
            let cells = Self::make_texture(
                device,
                data.grid_side,
                wgpu::TextureFormat::Rgba32Uint,
                "nvg_canvas_cells",
            );
            let bind_group = self.make_bind_group(device, &uniform, &image, &cells);
            self.instances.insert(
                id,
                Instance {
                    uniform,
                    image,
                    cells,
                    bind_group,
                    image_key: None,
                    cells_key: None,
                    uniform_bytes: None,
                    last_used: now,
                },
            );
        }
        let Some(inst) = self.instances.get_mut(&id) else {
            return;
        };
        inst.last_used = now;

        let write = |texture: &wgpu::Texture, bytes: &[u8], bytes_per_texel: u32| {
            let side = texture.width();
            queue.write_texture(
                wgpu::TexelCopyTextureInfo {
                    texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d::ZERO,
                    aspect: wgpu::TextureAspect::All,
                },
                bytes,
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(bytes_per_texel * side),
                    rows_per_image: Some(side),
                },
                wgpu::Extent3d {
                    width: side,
                    height: side,
                    depth_or_array_layers: 1,
                },
            );
        };
        if inst.image_key != Some(data.image_key) {
            write(&inst.image, &data.image_rgba, 4);
            inst.image_key = Some(data.image_key);
        }
        if inst.cells_key != Some(data.cells_key) {
            write(&inst.cells, &data.cells, 16);
            inst.cells_key = Some(data.cells_key);
        }
    }

    fn write_uniforms(
        &mut self,
        queue: &wgpu::Queue,
        id: egui::Id,
        data: &GpuData,
        origin: [i32; 2],
        size: [u32; 2],
    ) {
        let srgb = self.srgb_target;
        let Some(inst) = self.instances.get_mut(&id) else {
            return;
        };
        let flags =
            if data.boundaries { DRAW_BOUNDARIES } else { 0 } | if srgb { SRGB_TARGET } else { 0 };
        let words: [u32; 8] = [
            origin[0] as u32,
            origin[1] as u32,
            size[0],
            size[1],
            data.grid_side,
            data.image_side,
            data.opacity256,
            flags,
        ];
        let mut bytes = [0u8; UNIFORM_SIZE];
        for (chunk, w) in bytes.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        if inst.uniform_bytes != Some(bytes) {
            queue.write_buffer(&inst.uniform, 0, &bytes);
            inst.uniform_bytes = Some(bytes);
        }
    }
}

impl CanvasRenderer {
    /// Draws instance `id` into the current viewport (the canvas rect, clamped to the target).
    fn draw(&self, render_pass: &mut wgpu::RenderPass<'_>, id: egui::Id) {
        let Some(inst) = self.instances.get(&id) else {
            return;
        };
        render_pass.set_pipeline(&self.pipeline);
        render_pass.set_bind_group(0, &inst.bind_group, &[]);
        render_pass.draw(0..3, 0..1);
    }
}

/// Owned, packed copy of the layers for one frame's callback.
struct GpuData {
    image_rgba: Vec<u8>,
    image_side: u32,
    image_key: u64,
    /// `grid_side²` texels of 4 little-endian u32 (label, colour, tint, flags).
    cells: Vec<u8>,
    grid_side: u32,
    cells_key: u64,
    opacity256: u32,
    boundaries: bool,
}

impl GpuData {
    fn new(layers: &CanvasLayers) -> Option<Self> {
        validate(layers)?;
        let cells = pack_cells(layers);
        let mut image_rgba = Vec::with_capacity(layers.image.len() / 3 * 4);
        for px in layers.image.chunks_exact(3) {
            image_rgba.extend_from_slice(&[px[0], px[1], px[2], 255]);
        }
        let mut cell_bytes = Vec::with_capacity(cells.len() * 16);
        for c in &cells {
            for w in [c.label, c.colour, c.tint, c.flags] {
                cell_bytes.extend_from_slice(&w.to_le_bytes());
            }
        }
        Some(Self {
            image_rgba,
            image_side: layers.image_side as u32,
            image_key: image_key(layers),
            cells_key: cells_key(layers, &cells),
            cells: cell_bytes,
            grid_side: layers.grid_side as u32,
            opacity256: opacity256(layers.overlay_opacity),
            boundaries: layers.boundaries,
        })
    }
}

/// The paint callback: uploads in `prepare`, draws one triangle in `paint`.
pub struct CanvasCallback {
    id: egui::Id,
    rect: egui::Rect,
    data: Arc<GpuData>,
}

impl egui_wgpu::CallbackTrait for CanvasCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(renderer) = resources.get_mut::<CanvasRenderer>() {
            let (origin, size) = rect_px(self.rect, screen.pixels_per_point);
            renderer.update(device, queue, self.id, &self.data);
            renderer.write_uniforms(queue, self.id, &self.data, origin, size);
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        if let Some(renderer) = resources.get::<CanvasRenderer>() {
            renderer.draw(render_pass, self.id);
        }
    }
}

/// Paints the canvas into `rect` with the GPU path (requires [`register`] and the wgpu renderer;
/// without them nothing is drawn). Uses `ui.scope_id()` to tell canvases apart; for more than one
/// canvas in the same `Ui` use [`paint_gpu_with_id`]. Inconsistent layers give a grey placeholder.
pub fn paint_gpu(ui: &mut egui::Ui, rect: egui::Rect, layers: &CanvasLayers) {
    let id = ui.scope_id();
    paint_gpu_with_id(ui, id, rect, layers);
}

/// [`paint_gpu`] with an explicit id for this canvas's GPU resources.
pub fn paint_gpu_with_id(ui: &mut egui::Ui, id: egui::Id, rect: egui::Rect, layers: &CanvasLayers) {
    match GpuData::new(layers) {
        Some(data) => {
            let callback = CanvasCallback {
                id,
                rect,
                data: Arc::new(data),
            };
            ui.painter()
                .add(egui_wgpu::Callback::new_paint_callback(rect, callback));
        }
        None => {
            ui.painter().rect_filled(rect, 0.0, PLACEHOLDER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: usize = 4;
    const S: usize = 8;
    const OUT: usize = 64; // 16 px per cell, 8 px per image texel

    struct Fixture {
        image: Vec<u8>,
        labels: Vec<u32>,
        lock: Vec<bool>,
        pending: Vec<bool>,
    }

    /// Left half label 0, right half label 1 (stage 1); a varied image.
    fn fixture() -> Fixture {
        let image = (0..S * S * 3).map(|i| (i * 37 % 251) as u8).collect();
        let labels = (0..G * G).map(|i| u32::from(i % G >= G / 2)).collect();
        Fixture {
            image,
            labels,
            lock: vec![false; G * G],
            pending: vec![false; G * G],
        }
    }

    fn layers(f: &Fixture) -> CanvasLayers<'_> {
        CanvasLayers {
            image: &f.image,
            image_side: S,
            labels: &f.labels,
            grid_side: G,
            stage: 1,
            lock: &f.lock,
            pending: &f.pending,
            class_tint: None,
            hovered: None,
            overlay_opacity: 0.0,
            boundaries: true,
        }
    }

    fn px(img: &egui::ColorImage, x: usize, y: usize) -> [u8; 3] {
        let c = img.pixels[y * img.width() + x];
        [c.r(), c.g(), c.b()]
    }

    fn image_px(f: &Fixture, x: usize, y: usize) -> [u8; 3] {
        let (tx, ty) = (x * S / OUT, y * S / OUT);
        let i = (ty * S + tx) * 3;
        [f.image[i], f.image[i + 1], f.image[i + 2]]
    }

    /// One frame of a 64×64-point canvas; what it uploaded to the canvas texture, if anything.
    fn canvas_frame(ctx: &egui::Context, canvas: &mut CpuCanvas, layers: &CanvasLayers) -> Option<egui::ColorImage> {
        let out = ctx.run_ui(egui::RawInput::default(), |ui| {
            let rect = egui::Rect::from_min_size(egui::pos2(0.0, 0.0), egui::vec2(OUT as f32, OUT as f32));
            canvas.show(ui, rect, layers);
        });
        let id = canvas.texture_id()?;
        let delta = out.textures_delta.set.get(&id)?.last()?;
        match &delta.image {
            egui::ImageData::Color(c) => {
                let img: &egui::ColorImage = c;
                Some(img.clone())
            }
        }
    }

    /// Frames until the canvas shows its newest layers; the last picture uploaded on the way.
    fn until_current(ctx: &egui::Context, canvas: &mut CpuCanvas, layers: &CanvasLayers) -> egui::ColorImage {
        let t0 = Instant::now();
        let mut last = None;
        while t0.elapsed() < Duration::from_secs(20) {
            if let Some(img) = canvas_frame(ctx, canvas, layers) {
                last = Some(img);
            }
            if canvas.is_current() {
                return last.expect("a picture was uploaded");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the compositor did not deliver within 20 s");
    }

    #[test]
    fn cpu_canvas_composites_off_the_frame_and_shows_the_newest_request() {
        let ctx = egui::Context::default();
        let mut canvas = CpuCanvas::new();
        let f = fixture();
        let a = layers(&f);
        // The first picture is composited at once (there is nothing to show meanwhile).
        let first = canvas_frame(&ctx, &mut canvas, &a).expect("the first picture is uploaded in its frame");
        assert_eq!(first, composite_cpu_sized(&a, [OUT, OUT]));
        assert!(canvas.is_current());
        // Unchanged layers: no new composite.
        assert!(canvas_frame(&ctx, &mut canvas, &a).is_none());
        assert!(canvas.is_current());
        // From then on the frame that sees new layers only asks for them: nothing is composited
        // or uploaded in it, and the frames until the picture arrives keep what was there.
        let mut e = fixture();
        e.lock[3] = true;
        let a2 = layers(&e);
        assert!(canvas_frame(&ctx, &mut canvas, &a2).is_none());
        assert!(!canvas.is_current());
        let shown = until_current(&ctx, &mut canvas, &a2);
        assert_eq!(shown, composite_cpu_sized(&a2, [OUT, OUT]), "the compositor's picture is the reference composite");

        // Two changes in a row (a brush stroke growing): what ends up shown is the newest.
        let mut g = fixture();
        g.pending[1] = true;
        let b = layers(&g);
        assert!(canvas_frame(&ctx, &mut canvas, &b).is_none(), "no upload in the frame that asks");
        let mut h = fixture();
        h.pending[1] = true;
        h.pending[2] = true;
        h.lock[7] = true;
        let c = layers(&h);
        canvas_frame(&ctx, &mut canvas, &c);
        let shown = until_current(&ctx, &mut canvas, &c);
        assert_eq!(shown, composite_cpu_sized(&c, [OUT, OUT]));
        assert_ne!(shown, composite_cpu_sized(&b, [OUT, OUT]));

        // A change undone before its composite arrives: the picture up stays, and the outdated
        // composite is never shown when it lands.
        assert!(canvas_frame(&ctx, &mut canvas, &b).is_none());
        assert!(!canvas.is_current());
        assert!(canvas_frame(&ctx, &mut canvas, &c).is_none());
        assert!(canvas.is_current(), "back to the picture that is up");
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(300) {
            assert!(canvas_frame(&ctx, &mut canvas, &c).is_none(), "the outdated composite must not be uploaded");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn dimensions() {
        let f = fixture();
        let img = composite_cpu(&layers(&f), OUT);
        assert_eq!(img.size, [OUT, OUT]);
        assert_eq!(img.pixels.len(), OUT * OUT);
        assert_eq!(composite_cpu_sized(&layers(&f), [40, 24]).size, [40, 24]);
    }

    #[test]
    fn opacity_zero_shows_the_image_exactly() {
        let f = fixture();
        let img = composite_cpu(&layers(&f), OUT);
        // Inside cell (0, 0), away from every edge; and everywhere off the boundary.
        for (x, y) in [(5, 5), (7, 9), (20, 40), (60, 60)] {
            assert_eq!(px(&img, x, y), image_px(&f, x, y), "pixel ({x}, {y})");
        }
    }

    #[test]
    fn opacity_one_shows_the_cluster_colour() {
        let f = fixture();
        let img = composite_cpu(
            &CanvasLayers {
                overlay_opacity: 1.0,
                ..layers(&f)
            },
            OUT,
        );
        assert_eq!(px(&img, 5, 5), cluster_colour(0, 1));
        assert_eq!(px(&img, 60, 5), cluster_colour(1, 1));
    }

    #[test]
    fn boundary_only_between_different_labels() {
        let f = fixture();
        let img = composite_cpu(&layers(&f), OUT);
        let line = BOUNDARY_RGB.map(|v| v as u8);
        // Cells 1 and 2 (labels 0 | 1) meet at x = 32: pixels 31 and 32 form the line.
        assert_eq!(px(&img, 31, 5), line);
        assert_eq!(px(&img, 32, 5), line);
        assert_ne!(px(&img, 30, 5), line);
        // Cells 0 and 1 (both label 0) meet at x = 16: no line.
        assert_eq!(px(&img, 15, 5), image_px(&f, 15, 5));
        assert_eq!(px(&img, 16, 5), image_px(&f, 16, 5));
        // Switched off: no line.
        let off = composite_cpu(
            &CanvasLayers {
                boundaries: false,
                ..layers(&f)
            },
            OUT,
        );
        assert_eq!(px(&off, 31, 5), image_px(&f, 31, 5));
    }

    #[test]
    fn locked_positions_are_hatched() {
        let mut f = fixture();
        f.lock[0] = true;
        let plain = composite_cpu(&layers(&f.clone_unlocked()), OUT);
        let locked = composite_cpu(&layers(&f), OUT);
        let (mut darker, mut lighter) = (0, 0);
        for y in 0..16 {
            for x in 0..16 {
                let (a, b) = (px(&plain, x, y), px(&locked, x, y));
                let (sa, sb) = (
                    a.iter().map(|&v| v as u32).sum::<u32>(),
                    b.iter().map(|&v| v as u32).sum::<u32>(),
                );
                if sb < sa {
                    darker += 1;
                }
                if sb > sa {
                    lighter += 1;
                }
            }
        }
        assert!(
            darker > 50 && lighter > 50,
            "hatch: {darker} darker, {lighter} lighter pixels"
        );
        // Unlocked cells are untouched.
        assert_eq!(px(&plain, 20, 20), px(&locked, 20, 20));
    }

    impl Fixture {
        fn clone_unlocked(&self) -> Fixture {
            Fixture {
                image: self.image.clone(),
                labels: self.labels.clone(),
                lock: vec![false; self.lock.len()],
                pending: self.pending.clone(),
            }
        }
    }

    #[test]
    fn hovered_cluster_is_brightened_and_outlined() {
        let f = fixture();
        let base = CanvasLayers {
            overlay_opacity: 0.5,
            ..layers(&f)
        };
        let plain = composite_cpu(&base, OUT);
        let hover = composite_cpu(
            &CanvasLayers {
                hovered: Some(1),
                ..base
            },
            OUT,
        );
        let sum = |p: [u8; 3]| p.iter().map(|&v| v as u32).sum::<u32>();
        // Inside the hovered cluster: brighter in every channel that can be.
        let (a, b) = (px(&plain, 50, 20), px(&hover, 50, 20));
        assert!(sum(b) > sum(a), "{a:?} -> {b:?}");
        // The other cluster is untouched away from the edge.
        assert_eq!(px(&plain, 10, 20), px(&hover, 10, 20));
        // Outline: 2 px each side of the edge at x = 32 and along the canvas border.
        let outline = HOVER_OUTLINE_RGB.map(|v| v as u8);
        for x in 30..34 {
            assert_eq!(px(&hover, x, 20), outline, "x = {x}");
        }
        assert_eq!(px(&hover, 63, 20), outline);
        assert_ne!(px(&hover, 29, 20), outline);
    }

    #[test]
    fn pending_stroke_is_tinted() {
        let mut f = fixture();
        f.pending[G + 1] = true; // cell (1, 1): pixels 16..32
        let img = composite_cpu(&layers(&f), OUT);
        let (a, b) = (image_px(&f, 24, 24), px(&img, 24, 24));
        assert_eq!(
            b,
            mix8(a.map(u32::from), [255; 3], PENDING_TINT).map(|v| v as u8)
        );
        assert_eq!(px(&img, 16, 24), [255, 255, 255]); // outline
    }

    #[test]
    fn inconsistent_layers_give_a_placeholder() {
        let f = fixture();
        let bad = CanvasLayers {
            labels: &f.labels[..3],
            ..layers(&f)
        };
        assert!(layers(&f).is_consistent());
        assert!(!bad.is_consistent());
        let no_tint = [[0u8; 3]; 2];
        assert!(
            !CanvasLayers {
                class_tint: Some(&no_tint),
                ..layers(&f)
            }
            .is_consistent()
        );
        assert!(
            !CanvasLayers {
                image: &f.image[1..],
                ..layers(&f)
            }
            .is_consistent()
        );
        assert!(
            !CanvasLayers {
                grid_side: 0,
                ..layers(&f)
            }
            .is_consistent()
        );
        // Drawing them gives the placeholder (debug builds assert first).
        if !cfg!(debug_assertions) {
            let img = composite_cpu(&bad, 16);
            assert!(img.pixels.iter().all(|&c| c == PLACEHOLDER));
        }
    }

    /// Renders `layers` with the shader into an offscreen Rgba8Unorm target of `target` pixels,
    /// the canvas at `origin` with `size` pixels (egui-style: viewport = rect clamped to the
    /// target), and reads the target back as RGB rows.
    #[cfg(feature = "wgpu")]
    fn render_offscreen(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        layers: &CanvasLayers,
        target: [u32; 2],
        origin: [i32; 2],
        size: [u32; 2],
    ) -> Vec<[u8; 3]> {
        let format = wgpu::TextureFormat::Rgba8Unorm;
        let mut renderer = CanvasRenderer::new(device, format, 1, None);
        let id = egui::Id::unique("gpu-test");
        let data = GpuData::new(layers).expect("valid layers");
        renderer.update(device, queue, id, &data);
        renderer.write_uniforms(queue, id, &data, origin, size);

        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: None,
            size: wgpu::Extent3d {
                width: target[0],
                height: target[1],
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        let row = (target[0] * 4).div_ceil(256) * 256;
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (row * target[1]) as u64,
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: None,
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color {
                            r: 1.0,
                            g: 0.0,
                            b: 1.0,
                            a: 1.0,
                        }),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            let clamp = |v: i32, hi: u32| v.clamp(0, hi as i32) as f32;
            let (l, t) = (clamp(origin[0], target[0]), clamp(origin[1], target[1]));
            let r = clamp(origin[0] + size[0] as i32, target[0]);
            let b = clamp(origin[1] + size[1] as i32, target[1]);
            pass.set_viewport(l, t, r - l, b - t, 0.0, 1.0);
            renderer.draw(&mut pass, id);
        }
        encoder.copy_texture_to_buffer(
            wgpu::TexelCopyTextureInfo {
                texture: &texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::TexelCopyBufferInfo {
                buffer: &buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(row),
                    rows_per_image: Some(target[1]),
                },
            },
            wgpu::Extent3d {
                width: target[0],
                height: target[1],
                depth_or_array_layers: 1,
            },
        );
        queue.submit([encoder.finish()]);
        buffer
            .slice(..)
            .map_async(wgpu::MapMode::Read, |r| r.expect("map readback buffer"));
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("poll");
        let bytes = buffer
            .slice(..)
            .get_mapped_range()
            .expect("mapped readback buffer");
        let mut out = Vec::with_capacity((target[0] * target[1]) as usize);
        for y in 0..target[1] {
            for x in 0..target[0] {
                let i = (y * row + x * 4) as usize;
                out.push([bytes[i], bytes[i + 1], bytes[i + 2]]);
            }
        }
        out
    }

    /// The shader gives the same pixels as `composite_cpu_sized`, for several sizes (cells of
    /// unequal width included) and a canvas partly off the target. Skipped (passes) when wgpu
    /// finds no adapter; with Mesa's lavapipe installed it runs on the CPU.
    #[cfg(feature = "wgpu")]
    #[test]
    fn gpu_matches_cpu_when_an_adapter_exists() {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = match pollster::block_on(instance.request_adapter(&Default::default())) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("skipped: no wgpu adapter ({e})");
                return;
            }
        };
        let Ok((device, queue)) = pollster::block_on(adapter.request_device(&Default::default()))
        else {
            eprintln!("skipped: no wgpu device");
            return;
        };
        eprintln!("adapter: {:?}", adapter.get_info().name);

        let mut f = fixture();
        f.lock[5] = true;
        f.lock[6] = true;
        f.pending[9] = true;
        f.pending[10] = true;
        let tint: Vec<[u8; 3]> = (0..G * G).map(|i| [(i * 40) as u8, 90, 200]).collect();
        let base = layers(&f);
        let variants = [
            CanvasLayers {
                overlay_opacity: 0.4,
                hovered: Some(1),
                ..base
            },
            CanvasLayers {
                overlay_opacity: 0.0,
                boundaries: false,
                ..base
            },
            CanvasLayers {
                overlay_opacity: 1.0,
                class_tint: Some(&tint),
                hovered: Some(0),
                ..base
            },
        ];
        // (target size, canvas origin, canvas size)
        let placements: [([u32; 2], [i32; 2], [u32; 2]); 4] = [
            ([64, 64], [0, 0], [64, 64]),
            ([90, 80], [7, 3], [70, 70]),
            ([120, 50], [5, 2], [101, 45]),
            ([60, 60], [-13, -7], [64, 64]),
        ];
        for (v, layers) in variants.iter().enumerate() {
            for &(target, origin, size) in &placements {
                let gpu = render_offscreen(&device, &queue, layers, target, origin, size);
                let cpu = composite_cpu_sized(layers, [size[0] as usize, size[1] as usize]);
                let mut mismatches = 0;
                let mut first = None;
                for ty in 0..target[1] as i32 {
                    for tx in 0..target[0] as i32 {
                        let (x, y) = (tx - origin[0], ty - origin[1]);
                        let inside = x >= 0 && y >= 0 && x < size[0] as i32 && y < size[1] as i32;
                        let want = if inside {
                            px(&cpu, x as usize, y as usize)
                        } else {
                            [255, 0, 255]
                        };
                        let got = gpu[(ty * target[0] as i32 + tx) as usize];
                        if got != want {
                            mismatches += 1;
                            first.get_or_insert((tx, ty, got, want));
                        }
                    }
                }
                assert_eq!(
                    mismatches, 0,
                    "variant {v}, target {target:?}, origin {origin:?}, size {size:?}: first (x, y, gpu, cpu) = {first:?}"
                );
            }
        }
    }
}
