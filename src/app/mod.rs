//! The editor: wires the document ([`crate::document`]), the worker ([`crate::worker`]) and the
//! panels ([`crate::ui`]). Panels emit [`Command`]s; [`NvgApp::command`] applies them through the
//! [`Editor`] (undo/redo) and the app asks the worker for whatever became stale.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;
use image::RgbImage;

use crate::worker::{BackendChoice, Precision};
use crate::document::{
    Command, Editor, HistoryEntry, ModelInfo, UndoOutcome, run_spec,
    run_spec_from,
};
use crate::ui::canvas::CpuCanvas;
use crate::worker::{Request, Variation, WorkerHandle};

mod events;
mod files;
mod panels;

pub use crate::ui::tools::Tool;
pub use files::{Export, png_with_text};

/// How often the open project is autosaved when it changed.
const AUTOSAVE_EVERY: Duration = Duration::from_secs(20);
/// Most runs kept in the history panel.
const HISTORY_LIMIT: usize = 60;

/// Start-up options (from the command line).
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// Model directory (tokenizer/ + generator/).
    pub model_dir: PathBuf,
    /// Compute backend of the worker.
    pub backend: BackendChoice,
    /// Project to open.
    pub project: Option<PathBuf>,
    /// Image to open (encoded into layers).
    pub image: Option<PathBuf>,
    /// Autosave the open project.
    pub autosave: bool,
    /// Model to load when `model_dir` cannot be loaded (the bundled one); `None`: no fallback.
    pub fallback_model: Option<PathBuf>,
}

/// A stroke being drawn.
#[derive(Clone, Debug)]
struct Stroke {
    /// Parent cluster the stroke started in (structure brush).
    parent: Option<u32>,
    positions: Vec<usize>,
    /// Start of a shape drag, in grid coordinates.
    start: egui::Pos2,
    end: egui::Pos2,
}

/// Where the left side of the compare view comes from.
#[derive(Clone, Debug, PartialEq)]
enum CompareSource {
    Blueprint,
    Stage(usize),
    History(u64),
}

/// The run in flight.
#[derive(Clone, Debug)]
struct Running {
    revision: u64,
    stage: usize,
    step: usize,
    steps: usize,
    started: Instant,
}

impl Running {
    fn new(revision: u64, stage: usize) -> Self {
        Self { revision, stage, step: 0, steps: 0, started: Instant::now() }
    }
}

/// View state: never saved, never undone.
struct View {
    active_stage: usize,
    tool: Tool,
    child: u32,
    brush_radius: f32,
    overlay_opacity: f32,
    boundaries: bool,
    hovered_pos: Option<usize>,
    stroke: Option<Stroke>,
    class_query: String,
    brush_class: usize,
    variations_n: usize,
    compare: bool,
    compare_left: CompareSource,
    compare_split: f32,
    keep_upto: usize,
}

/// The editor application.
pub struct NvgApp {
    opts: AppOptions,
    worker: WorkerHandle,
    editor: Option<Editor>,
    backend: String,
    /// The generator's products in bf16 (Run menu; the worker's Loaded event says what it
    /// started with, `--precision` or the menu's choice before a model switch).
    pub(crate) bf16: bool,
    /// How this CPU computes bf16 products (from the worker; None before the model loads).
    pub(crate) bf16_support: Option<crate::worker::Bf16Support>,
    /// The user switched the precision and the worker has not confirmed it yet.
    precision_switch_pending: bool,
    load_error: Option<String>,
    project_path: Option<PathBuf>,
    history: Vec<HistoryEntry>,
    next_history_id: u64,
    /// Decoded canvas per stage, for the current document.
    stage_images: Vec<Option<RgbImage>>,
    /// Revision the stage images belong to (stages before the stale one).
    images_revision: u64,
    /// Revision the worker was last asked to compute.
    requested: u64,
    running: Option<Running>,
    variations: Option<(u64, usize, Vec<Variation>)>,
    blueprint_images: Vec<RgbImage>,
    textures: std::collections::HashMap<String, (u64, egui::TextureHandle)>,
    view: View,
    status: String,
    error: Option<String>,
    last_autosave: Instant,
    autosave_dirty: bool,
    cpu_canvas: CpuCanvas,
    gpu_canvas: bool,
    frame_times: std::collections::VecDeque<f32>,
    /// eframe's CPU time of the previous frame (update, tessellation, painting), in ms.
    prev_frame_cpu_ms: Option<f32>,
    /// `NVG_FRAME_LOG=path`: one line per frame for measuring frame pacing in a real window,
    /// written at the end of `draw`: ms since start, ms since the last frame, whether a run is in
    /// flight, ms in `draw` (all, then worker events, side panels, canvas, rest) and eframe's CPU
    /// time of the previous frame (update, tessellation, paint calls; not the buffer swap).
    pub(crate) frame_log: Option<(std::io::LineWriter<std::fs::File>, std::time::Instant)>,
    last_run_ms: Option<u128>,
    pending_open_image: Option<PathBuf>,
    /// Why an opened file is being encoded as an image (its recipe could not be used), shown
    /// with the encoding's result.
    open_note: Option<String>,
    /// The note of the last edit (e.g. why a stroke was clipped): shown again when the run it
    /// started finishes, so it does not vanish with the "done" message.
    edit_note: Option<String>,
    /// The window's close was held because unsaved edits would be lost: the reason, shown in
    /// the "unsaved changes" dialog.
    close_held: Option<String>,
    /// The user chose to close (after the dialog): let the next close request through.
    close_confirmed: bool,
    ctx: egui::Context,
}

/// The interval the window redraws at while a job runs (40 fps), to animate progress. Worker
/// progress waits for the next such frame rather than drawing one of its own; input still
/// draws at once.
pub const RUNNING_FRAME: Duration = Duration::from_millis(25);

/// The worker's wake-up callback: results at once, progress at the next regular frame.
fn repaint_callback(c: egui::Context) -> crate::worker::Repaint {
    Arc::new(move |w| match w {
        crate::worker::Wake::Now => c.request_repaint(),
        crate::worker::Wake::NextFrame => c.request_repaint_after(RUNNING_FRAME),
    })
}

impl NvgApp {
    /// Creates the app and starts the worker; `gpu_canvas` says whether the wgpu canvas path
    /// is registered (see [`crate::ui::canvas::register`]).
    pub fn new(ctx: &egui::Context, opts: AppOptions, gpu_canvas: bool) -> Self {
        let c = ctx.clone();
        let worker = WorkerHandle::spawn_with_fallback(
            opts.model_dir.clone(),
            opts.fallback_model.clone(),
            opts.backend,
            repaint_callback(c),
        );
        let pending_open_image = opts.image.clone();
        Self {
            opts,
            worker,
            editor: None,
            backend: String::new(),
            bf16: false,
            bf16_support: None,
            precision_switch_pending: false,
            load_error: None,
            project_path: None,
            history: vec![],
            next_history_id: 1,
            stage_images: vec![],
            images_revision: 0,
            requested: 0,
            running: None,
            variations: None,
            blueprint_images: vec![],
            textures: Default::default(),
            view: View {
                active_stage: 0,
                tool: Tool::Brush,
                child: 1,
                brush_radius: 0.8,
                overlay_opacity: 0.35,
                boundaries: true,
                hovered_pos: None,
                stroke: None,
                class_query: String::new(),
                brush_class: 0,
                variations_n: 4,
                compare: false,
                compare_left: CompareSource::Stage(0),
                compare_split: 0.5,
                keep_upto: 2,
            },
            status: "Loading the model…".into(),
            error: None,
            last_autosave: Instant::now(),
            autosave_dirty: false,
            cpu_canvas: CpuCanvas::new(),
            gpu_canvas,
            frame_times: Default::default(),
            prev_frame_cpu_ms: None,
            frame_log: std::env::var_os("NVG_FRAME_LOG")
                .and_then(|p| {
                    std::fs::File::create(&p)
                        .map_err(|e| eprintln!("NVG_FRAME_LOG: cannot write {}: {e}; no frame log", std::path::Path::new(&p).display()))
                        .ok()
                })
                .map(|f| (std::io::LineWriter::new(f), std::time::Instant::now())),
            last_run_ms: None,
            pending_open_image,
            open_note: None,
            edit_note: None,
            close_held: None,
            close_confirmed: false,
            ctx: ctx.clone(),
        }
    }

    /// Creates the app from eframe's creation context (registers the GPU canvas when eframe
    /// runs on wgpu).
    pub fn from_creation_context(cc: &eframe::CreationContext<'_>, opts: AppOptions) -> Self {
        let gpu = match cc.wgpu_render_state.as_ref() {
            Some(rs) => {
                crate::ui::canvas::register(rs);
                true
            }
            None => false,
        };
        Self::new(&cc.egui_ctx, opts, gpu)
    }

    // ---------------------------------------------------------------- accessors (tests, scripts)

    /// The open document (None until the model is loaded).
    pub fn editor(&self) -> Option<&Editor> {
        self.editor.as_ref()
    }

    /// Is a job running?
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Is the document fully generated and its stage images current?
    pub fn is_idle(&self) -> bool {
        self.running.is_none()
            && self.editor.as_ref().is_some_and(|e| e.state().stale_from.is_none() && self.images_revision == e.revision())
    }

    /// Decoded canvas of a stage.
    pub fn stage_image(&self, stage: usize) -> Option<&RgbImage> {
        self.stage_images.get(stage).and_then(|i| i.as_ref())
    }

    /// The model's compute as the status bar names it (backend, host kernels, precision).
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// Status-bar message.
    pub fn status(&self) -> &str {
        &self.status
    }

    /// Error shown in the UI, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref().or(self.load_error.as_deref())
    }

    /// Run history.
    pub fn history(&self) -> &[HistoryEntry] {
        &self.history
    }

    /// Current variations strip.
    pub fn variations(&self) -> Option<&[Variation]> {
        self.variations.as_ref().map(|(_, _, v)| v.as_slice())
    }

    /// Is the "unsaved changes" dialog of a held window close showing?
    pub fn close_dialog_open(&self) -> bool {
        self.close_held.is_some()
    }

    /// Project file of the open document.
    pub fn project_path(&self) -> Option<&Path> {
        self.project_path.as_deref()
    }

    /// Active stage.
    pub fn active_stage(&self) -> usize {
        self.view.active_stage
    }

    /// Sets the active stage.
    pub fn set_active_stage(&mut self, stage: usize) {
        let n = self.editor.as_ref().map_or(1, |e| e.model.num_stages);
        self.view.active_stage = stage.min(n - 1);
    }

    // ------------------------------------------------------------------------ document edits

    /// Applies a command to the document (with an undo point when it changed something).
    pub fn command(&mut self, cmd: Command) {
        let Some(ed) = self.editor.as_mut() else { return };
        match ed.apply(&cmd) {
            Ok(effect) => {
                self.error = None;
                if let Some(note) = &effect.note {
                    self.status = note.clone();
                } else if effect.changed {
                    self.status = cmd.label();
                }
                if effect.changed || effect.note.is_some() {
                    self.edit_note = effect.note;
                }
                if effect.changed {
                    self.autosave_dirty = true;
                    self.variations = None;
                    if matches!(cmd, Command::UseAsBlueprint { .. }) {
                        self.blueprint_images = self.stage_images.iter().flatten().cloned().collect();
                    }
                    if matches!(cmd, Command::Restore { .. } | Command::AcceptVariation { .. } | Command::SetSequence { .. }) {
                        // Stage images must be decoded again for the restored sequence.
                        self.images_revision = 0;
                    } else if self.images_revision != 0 {
                        self.images_revision = ed.revision();
                    }
                }
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// Undo.
    pub fn undo(&mut self) {
        if let Some(ed) = self.editor.as_mut() {
            match ed.undo() {
                UndoOutcome::Done(l) => {
                    self.status = format!("undid {l}");
                    self.images_revision = 0;
                    self.autosave_dirty = true;
                }
                UndoOutcome::Nothing => self.status = "nothing to undo".into(),
            }
        }
    }

    /// Redo.
    pub fn redo(&mut self) {
        if let Some(ed) = self.editor.as_mut() {
            match ed.redo() {
                UndoOutcome::Done(l) => {
                    self.status = format!("redid {l}");
                    self.images_revision = 0;
                    self.autosave_dirty = true;
                }
                UndoOutcome::Nothing => self.status = "nothing to redo".into(),
            }
        }
    }

    /// Stops the running job (Esc).
    pub fn stop(&mut self) {
        if self.running.is_some() {
            self.worker.stop();
            self.status = "stopping…".into();
        }
    }

    /// Reruns from the first stale stage, or from the active stage's content when nothing is
    /// stale (a fresh draw of the same recipe is identical, so this is a rerun check).
    pub fn run(&mut self) {
        let Some(ed) = self.editor.as_ref() else { return };
        let spec = run_spec(ed.state()).unwrap_or_else(|| run_spec_from(ed.state(), self.view.active_stage));
        let revision = ed.revision();
        self.requested = revision;
        self.worker.send(Request::Run { revision, spec: Box::new(spec) });
    }

    /// New randomness for the active stage.
    pub fn reroll_active_stage(&mut self) {
        let Some(ed) = self.editor.as_ref() else { return };
        let stage = self.view.active_stage;
        let seed = next_seed(ed.state().seed_of_stage(stage), stage);
        self.command(Command::RerollStage { stage, seed });
    }

    /// Asks for N variations from the active stage.
    pub fn request_variations(&mut self) {
        let Some(ed) = self.editor.as_ref() else { return };
        if ed.state().sequence.is_none() {
            self.error = Some("nothing generated yet".into());
            return;
        }
        let stage = self.view.active_stage;
        // Variations are built on the stages before `stage`: those must reflect the edits.
        if let Some(from) = ed.state().stale_from.filter(|&f| f <= stage) {
            self.error = Some(format!(
                "stage {from} and later are not up to date yet: let the run finish (or Run, Ctrl+Enter), then ask for variations from stage {stage}"
            ));
            return;
        }
        let spec = run_spec_from(ed.state(), stage);
        let base = ed.state().seed_of_stage(stage);
        let seeds: Vec<u64> = (1..=self.view.variations_n as u64).map(|i| next_seed(base ^ (i << 32), stage)).collect();
        let revision = ed.revision();
        self.requested = revision;
        self.worker.send(Request::Variations { revision, spec: Box::new(spec), seeds });
        self.status = format!("{} variations from stage {stage}…", self.view.variations_n);
    }

    /// Accepts variation `i` of the strip.
    pub fn accept_variation(&mut self, i: usize) {
        let Some((_, stage, v)) = self.variations.take() else { return };
        if let Some(v) = v.into_iter().nth(i) {
            self.command(Command::AcceptVariation { stage, seed: v.seed, sequence: v.sequence });
        }
    }

    /// Keeps the current structure as a blueprint.
    pub fn use_as_blueprint(&mut self) {
        let source = self
            .project_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("run of revision {}", self.editor.as_ref().map_or(0, |e| e.revision())));
        let keep = self.view.keep_upto;
        self.command(Command::UseAsBlueprint { source, keep_structure_upto: keep });
    }


}

impl eframe::App for NvgApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        self.prev_frame_cpu_ms = frame.info().cpu_usage.map(|s| s * 1e3);
        self.draw(ui);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        if self.autosave_dirty {
            let _ = self.write_autosave();
        }
    }
}

/// Positions covered by a stroke: the brushed ones, or those inside the dragged shape.
fn shape_or_brush(st: &Stroke, tool: Tool, side: usize) -> Vec<usize> {
    match tool {
        Tool::Ellipse | Tool::Rect => {
            let (x0, x1) = (st.start.x.min(st.end.x), st.start.x.max(st.end.x));
            let (y0, y1) = (st.start.y.min(st.end.y), st.start.y.max(st.end.y));
            let (cx, cy, rx, ry) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0, ((x1 - x0) / 2.0).max(0.5), ((y1 - y0) / 2.0).max(0.5));
            (0..side * side)
                .filter(|&q| {
                    let (x, y) = ((q % side) as f32 + 0.5, (q / side) as f32 + 0.5);
                    if tool == Tool::Rect {
                        x >= x0 && x <= x1.max(x0 + 1.0) && y >= y0 && y <= y1.max(y0 + 1.0)
                    } else {
                        let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
                        dx * dx + dy * dy <= 1.0
                    }
                })
                .collect()
        }
        _ => st.positions.clone(),
    }
}

/// The class picked at start: "bird" when the model has it (the demo's class), else class 0.
pub fn default_class(model: &ModelInfo) -> usize {
    model.class_names.iter().position(|n| n == "bird").unwrap_or(0)
}

/// A deterministic new seed derived from an old one (SplitMix64 step).
pub fn next_seed(seed: u64, salt: usize) -> u64 {
    crate::granularity::rng::splitmix64(seed.wrapping_add(salt as u64)) % 1_000_000
}

/// A distinct colour per class for the class-map tint and legend.
pub use crate::ui::palette::class_colour;

fn hash_img(img: &RgbImage) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    img.as_raw().hash(&mut h);
    img.width().hash(&mut h);
    h.finish()
}
