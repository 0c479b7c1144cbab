//! The CPU path: the reference compositor (integer blends, whole output pixels) and the
//! editor's cached egui texture of it for the glow renderer.

use std::hash::{Hash, Hasher};

use eframe::egui;

use super::*;
/// Everything one output pixel needs (the CPU twin of the shader's bindings).
/// The image is borrowed for a composite on the spot and owned for one sent to the editor's
/// compositor thread ([`Compositor::into_owned`]).
#[derive(Hash)]
pub(super) struct Compositor<'a> {
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
    pub(super) fn new(layers: &CanvasLayers<'a>, [w, h]: [usize; 2]) -> Option<Self> {
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
pub(super) struct AxisPx {
    cell: u32,
    texel: u32,
    to_first: u32,
    to_last: u32,
}

/// [`AxisPx`] for each of `n` pixels along an axis split into `g` cells over `s` image texels.
pub(super) fn axis_table(n: u32, g: u32, s: u32) -> Vec<AxisPx> {
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
pub(super) fn placeholder([w, h]: [usize; 2]) -> impl FnOnce() -> egui::ColorImage {
    move || egui::ColorImage::filled([w.clamp(1, CPU_MAX_SIDE), h.clamp(1, CPU_MAX_SIDE)], PLACEHOLDER)
}

/// Size in physical pixels of `rect` as the GPU path's viewport rounds it.
pub(super) fn rect_px(rect: egui::Rect, pixels_per_point: f32) -> ([i32; 2], [u32; 2]) {
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
pub(super) struct Compositing {
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
pub(super) fn paint_hover(painter: &egui::Painter, rect: egui::Rect, layers: &CanvasLayers, label: u32) {
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
