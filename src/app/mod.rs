//! The editor: wires the document ([`crate::document`]), the worker ([`crate::worker`]) and the
//! panels ([`crate::ui`]). Panels emit [`Command`]s; [`NvgApp::command`] applies them through the
//! [`Editor`] (undo/redo) and the app asks the worker for whatever became stale.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;
use image::RgbImage;

use crate::backend::BackendChoice;
use crate::document::{
    self, Command, Editor, HistoryEntry, ModelInfo, Project, Recipe, State, UndoOutcome, autosave_path, kept_copy_path, run_spec,
    run_spec_from,
};
use crate::granularity::GranularitySequence;
use crate::ui::canvas::CpuCanvas;
use crate::granularity::viz;
use crate::worker::{Event, Request, Variation, WorkerHandle};

pub mod bench;
pub mod frame_log;
mod panels;

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

/// Editing tools of the canvas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Hover to inspect clusters.
    Inspect,
    /// Paint positions to child A or B of their parent (stage ≥ 1).
    Brush,
    /// Click a cluster: flip it to its sibling.
    Fill,
    /// Drag an ellipse: inside → child B, outside → child A, within the parent.
    Ellipse,
    /// Drag a rectangle: inside → child B, outside → child A, within the parent.
    Rect,
    /// Paint locks.
    Lock,
    /// Erase locks.
    Unlock,
    /// Paint the class map.
    ClassBrush,
}

impl Tool {
    const ALL: [Tool; 8] =
        [Tool::Inspect, Tool::Brush, Tool::Fill, Tool::Ellipse, Tool::Rect, Tool::Lock, Tool::Unlock, Tool::ClassBrush];
    fn label(self) -> &'static str {
        match self {
            Tool::Inspect => "Inspect",
            Tool::Brush => "Structure brush",
            Tool::Fill => "Flip cluster",
            Tool::Ellipse => "Ellipse layout",
            Tool::Rect => "Rectangle layout",
            Tool::Lock => "Lock brush",
            Tool::Unlock => "Unlock brush",
            Tool::ClassBrush => "Class brush",
        }
    }
    fn tooltip(self) -> &'static str {
        match self {
            Tool::Inspect => "Hover a cluster to see its id, size and code",
            Tool::Brush => "Paint positions into child A or B of their parent; a stroke stays inside the parent it started in",
            Tool::Fill => "Click a cluster to move it entirely into its sibling",
            Tool::Ellipse => "Drag an ellipse: inside becomes child B, the rest of the parent child A (shape guidance)",
            Tool::Rect => "Drag a rectangle: inside becomes child B, the rest of the parent child A (shape guidance)",
            Tool::Lock => "Paint locks: locked positions keep structure and codes through reruns and strokes",
            Tool::Unlock => "Erase locks",
            Tool::ClassBrush => "Paint a class map: each cluster takes the class covering most of it",
        }
    }
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
    /// The generator's products in bf16 (Run menu; starts as `--precision` says).
    pub(crate) bf16: bool,
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
            bf16: crate::model::host::precision() == crate::model::host::Precision::Bf16,
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
                if let Some(note) = effect.note {
                    self.status = note;
                } else if effect.changed {
                    self.status = cmd.label();
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
        let mut spec = run_spec_from(ed.state(), stage);
        spec.from_stage = stage;
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

    /// The model folder in use (after a fallback, the fallback's).
    pub fn model_dir(&self) -> &Path {
        &self.opts.model_dir
    }

    /// The precision the Run menu asks for.
    pub(crate) fn precision(&self) -> crate::model::host::Precision {
        if self.bf16 { crate::model::host::Precision::Bf16 } else { crate::model::host::Precision::F32 }
    }

    /// Switches the generator's products between f32 and bf16 (from the next run on).
    pub fn set_bf16(&mut self, on: bool) {
        if on != self.bf16 {
            self.bf16 = on;
            self.precision_switch_pending = true;
            self.worker.send(Request::SetPrecision(self.precision()));
        }
    }

    /// Loads another model folder: the open document is autosaved (untitled documents have one
    /// slot per model, recovered when that model is loaded again), the worker restarted on `dir`
    /// (falling back to the bundled model if `dir` fails), and that model's document opened.
    /// Refused, with the reason, when unsaved edits could not be kept (autosave off or failing).
    pub fn open_model(&mut self, dir: &Path) -> Result<(), String> {
        let kept_in = self.keep_unsaved("not switching models", true)?;
        self.opts.model_dir = dir.to_path_buf();
        self.opts.project = None;
        self.pending_open_image = None;
        let c = self.ctx.clone();
        let precision = self.precision();
        let old = std::mem::replace(
            &mut self.worker,
            // At the Run menu's precision, which may differ from `--precision`.
            WorkerHandle::spawn_at(
                dir.to_path_buf(),
                self.opts.fallback_model.clone(),
                self.opts.backend,
                precision,
                repaint_callback(c),
            ),
        );
        // Dropping the old handle stops its job and joins its thread, which may be in the middle
        // of loading or encoding: do that off the UI thread.
        std::thread::spawn(move || drop(old));
        // A switch the old worker had not confirmed is already in the new one's Loaded.
        self.precision_switch_pending = false;
        self.editor = None;
        self.load_error = None;
        self.error = None;
        self.project_path = None;
        self.history.clear();
        self.next_history_id = 1;
        self.stage_images.clear();
        self.images_revision = 0;
        self.requested = 0;
        self.running = None;
        self.last_run_ms = None;
        self.variations = None;
        self.blueprint_images.clear();
        self.view.compare = false;
        self.view.compare_left = CompareSource::Stage(0);
        self.autosave_dirty = false;
        self.status = match kept_in {
            Some(p) => format!("loading the model in {}… (unsaved changes kept in {})", dir.display(), p.display()),
            None => format!("loading the model in {}…", dir.display()),
        };
        Ok(())
    }

    /// Before the open document is replaced (New, Open, another model): unsaved changes are
    /// written where they survive — a titled project's autosave next to it, an untitled
    /// document's own kept copy (its autosave slot is about to be reused). Returns where; refused
    /// (with `what` and the reason shown) when they cannot be kept, e.g. with autosave off.
    /// With `slot_recovered`, an untitled document goes to its model's autosave slot instead
    /// (when the next document belongs to a model whose load recovers that slot).
    fn keep_unsaved(&mut self, what: &str, slot_recovered: bool) -> Result<Option<PathBuf>, String> {
        let Some(ed) = self.editor.as_ref().filter(|e| e.dirty) else { return Ok(None) };
        let kept = if !self.opts.autosave {
            Err("autosave is off".to_string())
        } else if self.project_path.is_some() || slot_recovered {
            let path = autosave_path(self.project_path.as_deref(), &ed.model.hash);
            self.write_autosave().map(|()| path)
        } else {
            let path = kept_copy_path(&ed.model.hash);
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            Project::new(ed.model.clone(), ed.state().clone(), self.history.clone())
                .save(&path)
                .map(|()| path)
                .map_err(|e| e.to_string())
        };
        match kept {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                let msg = format!("{what}: the document has unsaved changes ({e}) — save it first");
                self.error = Some(msg.clone());
                Err(msg)
            }
        }
    }

    /// Starts a new document on the loaded model (unsaved changes are kept first, see
    /// [`NvgApp::open_model`]).
    pub fn new_document(&mut self) {
        let kept = match self.keep_unsaved("no new document", false) {
            Ok(k) => k,
            Err(_) => return,
        };
        if let Some(ed) = self.editor.as_mut() {
            let class = default_class(&ed.model);
            let model = ed.model.clone();
            ed.reset(model, State::new(class, 1));
            self.project_path = None;
            self.history.clear();
            self.stage_images.clear();
            self.images_revision = 0;
            self.variations = None;
            self.autosave_dirty = false;
            self.status = match kept {
                Some(p) => format!("new document (unsaved changes of the last one kept in {})", p.display()),
                None => "new document".into(),
            };
        }
    }

    /// Opens a project file; on error the current document is untouched and the message shown.
    pub fn open_project(&mut self, path: &Path) -> Result<(), String> {
        if self.editor.is_none() {
            return Err("the model is not loaded yet".into());
        }
        // A newer autosave of this project holds edits that were never saved: open those.
        let auto = autosave_path(Some(path), "");
        let newer = |a: &Path, b: &Path| match (std::fs::metadata(a).and_then(|m| m.modified()), std::fs::metadata(b).and_then(|m| m.modified())) {
            (Ok(x), Ok(y)) => x > y,
            _ => false,
        };
        let from_autosave = auto.exists() && newer(&auto, path) && Project::load(&auto).is_ok();
        let source = if from_autosave { auto.clone() } else { path.to_path_buf() };
        let ed = self.editor.as_ref().expect("checked");
        let result = Project::load(&source).map_err(|e| e.to_string()).and_then(|p| {
            let note = p.check_model(path, &ed.model).map_err(|e| e.to_string())?;
            Ok((p, note))
        });
        if let Err(e) = &result {
            self.error = Some(e.clone());
            return Err(e.clone());
        }
        let kept = self.keep_unsaved("not opening the project", false)?;
        let ed = self.editor.as_mut().expect("checked");
        match result {
            Ok((p, note)) => {
                let model = ed.model.clone();
                ed.reset(model, p.state);
                ed.dirty = from_autosave;
                self.next_history_id = p.history.iter().map(|h| h.id + 1).max().unwrap_or(1);
                self.history = p.history;
                self.project_path = Some(path.to_path_buf());
                self.stage_images.clear();
                self.images_revision = 0;
                self.variations = None;
                self.blueprint_images.clear();
                self.error = None;
                self.autosave_dirty = false;
                let mut status = note.unwrap_or_else(|| format!("opened {}", path.display()));
                if from_autosave {
                    status = format!("{status} — with unsaved changes recovered from {} (newer); Save keeps them", auto.display());
                }
                if let Some(k) = kept {
                    status = format!("{status} (unsaved changes of the last document kept in {})", k.display());
                }
                self.status = status;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Saves the project (atomic); on error the message is shown and nothing is lost.
    pub fn save_project(&mut self, path: &Path) -> Result<(), String> {
        let Some(ed) = self.editor.as_mut() else { return Err("nothing to save yet".into()) };
        let p = Project::new(ed.model.clone(), ed.state().clone(), self.history.clone());
        match p.save(path) {
            Ok(()) => {
                ed.dirty = false;
                let was_untitled = self.project_path.is_none();
                let hash = ed.model.hash.clone();
                self.project_path = Some(path.to_path_buf());
                self.status = format!("saved {}", path.display());
                self.error = None;
                self.autosave_dirty = false;
                let _ = std::fs::remove_file(autosave_path(Some(path), ""));
                if was_untitled && self.opts.autosave {
                    // The untitled autosave now duplicates the saved project.
                    let _ = std::fs::remove_file(autosave_path(None, &hash));
                }
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                self.error = Some(msg.clone());
                Err(msg)
            }
        }
    }

    /// Asks the worker to encode an image into layers.
    pub fn open_image(&mut self, path: &Path) {
        let revision = self.editor.as_ref().map_or(0, |e| e.revision());
        self.worker.send(Request::Encode { revision, path: path.to_path_buf() });
        self.status = format!("encoding {}…", path.display());
    }

    /// Writes a PNG (final image, a stage, or the strip) with the recipe in a text chunk.
    pub fn export_png(&self, what: Export, path: &Path) -> Result<(), String> {
        let ed = self.editor.as_ref().ok_or("nothing to export yet")?;
        let n = ed.model.num_stages;
        let (img, name) = match what {
            Export::Final => (self.stage_image(n - 1).cloned(), "final".to_string()),
            Export::Stage(s) => (self.stage_image(s).cloned(), format!("stage {s}")),
            Export::Strip => {
                let seq = ed.state().sequence.as_ref().ok_or("nothing generated yet")?;
                let imgs: Option<Vec<RgbImage>> = (0..n).map(|s| self.stage_image(s).cloned()).collect();
                let maps: Vec<Vec<u32>> = seq.stages.iter().map(|s| s.structure.clone()).collect();
                (imgs.map(|i| viz::stage_strip(&i, &maps, ed.model.grid_size)), "stage strip".to_string())
            }
        };
        let img = img.ok_or("that stage has not been generated yet")?;
        let state = ed.state();
        let recipe = Recipe {
            format: "nvg-recipe".into(),
            model: ed.model.name.clone(),
            model_hash: ed.model.hash.clone(),
            class: ed.model.class_names.get(state.class).cloned().unwrap_or_default(),
            state: state.clone(),
            image: name,
        };
        let text = ron::ser::to_string(&recipe).map_err(|e| e.to_string())?;
        let bytes = png_with_text(&img, "nvg-recipe", &text).map_err(|e| format!("{}: {e}", path.display()))?;
        document::write_atomic(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    // --------------------------------------------------------------------- worker events

    /// Handles worker events and schedules runs; call once per frame (the UI does).
    pub fn pump(&mut self) {
        for ev in self.worker.poll() {
            self.handle(ev);
        }
        self.schedule();
        self.autosave();
    }

    fn current_revision(&self) -> u64 {
        self.editor.as_ref().map_or(0, |e| e.revision())
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::BackendChanged { backend } => {
                // Only a switch the user made is announced (it follows Request::SetPrecision).
                if std::mem::take(&mut self.precision_switch_pending) {
                    self.status = format!(
                        "the generator's products are now {} — from the next run on (Ctrl+Enter reruns)",
                        if self.bf16 { "bf16: faster, slightly different from f32" } else { "f32" }
                    );
                }
                self.backend = backend;
            }
            Event::Loaded { info, model_dir, fallback_note, backend, millis } => {
                self.backend = backend;
                self.opts.model_dir = model_dir;
                let class = default_class(&info);
                self.view.brush_class = class;
                self.view.active_stage = info.num_stages - 1;
                self.editor = Some(Editor::new(info.clone(), State::new(class, 1)));
                self.status = format!(
                    "model '{}' loaded in {millis} ms — try: paint stage 1 with the structure brush, pick another class, or open an image (Ctrl+I)",
                    info.name
                );
                // The untitled autosave slot of this model is either recovered or moved aside,
                // never overwritten by the new document's autosave.
                let auto = autosave_path(None, &info.hash);
                let set_aside = |auto: &Path| -> Option<PathBuf> {
                    let kept = kept_copy_path(&info.hash);
                    std::fs::rename(auto, &kept).ok().map(|()| kept)
                };
                if let Some(p) = self.opts.project.clone() {
                    let _ = self.open_project(&p);
                    if self.opts.autosave && self.project_path.is_none() && auto.exists() {
                        if let Some(k) = set_aside(&auto) {
                            self.status = format!("the previous untitled autosave was moved to {}", k.display());
                        }
                    }
                } else if self.opts.autosave && auto.exists() {
                    if self.open_project(&auto).is_ok() {
                        self.project_path = None;
                        self.status = format!("recovered the autosaved untitled document ({})", auto.display());
                    } else {
                        let why = self.error.take().unwrap_or_default();
                        self.error = Some(match set_aside(&auto) {
                            Some(k) => format!("the untitled autosave could not be recovered ({why}); it was moved to {}", k.display()),
                            None => format!("the untitled autosave could not be recovered ({why})"),
                        });
                    }
                }
                if let Some(img) = self.pending_open_image.take() {
                    self.open_image(&img);
                }
                if let Some(note) = fallback_note {
                    // Keep a project's open error visible next to the fallback note.
                    self.error = Some(match self.error.take() {
                        Some(e) => format!("{note}; {e}"),
                        None => note,
                    });
                }
            }
            Event::LoadFailed { message } => {
                self.status = "no model".into();
                self.load_error = Some(message);
            }
            Event::Started { revision, from_stage } => {
                if revision == self.current_revision() {
                    self.running = Some(Running::new(revision, from_stage));
                }
            }
            Event::Progress { revision, stage, step, steps } => {
                if let Some(r) = self.running.as_mut().filter(|r| r.revision == revision) {
                    r.stage = stage;
                    r.step = step;
                    r.steps = steps;
                }
            }
            Event::Stage { revision, stage, structure, codes, image } => {
                let Some(ed) = self.editor.as_mut() else { return };
                match ed.accept_stage(revision, stage, &structure, &codes) {
                    Ok(true) => {
                        if self.stage_images.len() < ed.model.num_stages {
                            self.stage_images.resize(ed.model.num_stages, None);
                        }
                        self.stage_images[stage] = Some(image);
                        self.autosave_dirty = true;
                        if let Some(r) = self.running.as_mut() {
                            r.stage = stage + 1;
                            r.step = 0;
                        }
                    }
                    Ok(false) => {} // an older revision: dropped
                    Err(e) => self.error = Some(format!("worker result rejected: {e}")),
                }
            }
            Event::Finished { revision, sequence, millis } => {
                if revision != self.current_revision() {
                    return;
                }
                self.running = None;
                self.last_run_ms = Some(millis);
                self.images_revision = revision;
                self.add_history(&sequence);
                self.status = format!("done in {:.2} s", millis as f64 / 1000.0);
            }
            Event::Cancelled { revision } => {
                if self.running.as_ref().is_some_and(|r| r.revision == revision) {
                    self.running = None;
                    if self.worker.want() == crate::worker::NOTHING {
                        self.status = "stopped — stale stages are marked; Run continues from them".into();
                    }
                }
            }
            Event::Failed { revision, message } => {
                if revision == self.current_revision() {
                    self.running = None;
                    self.error = Some(format!("run failed: {message}"));
                }
            }
            Event::Rendered { revision, images } => {
                if revision == self.current_revision() {
                    self.stage_images = images.into_iter().map(Some).collect();
                    self.images_revision = revision;
                    if self.running.as_ref().is_some_and(|r| r.revision == revision && r.steps == 0 && r.step == 0) {
                        self.running = None;
                    }
                }
            }
            Event::Variations { revision, stage, results } => {
                if revision == self.current_revision() {
                    self.running = None;
                    self.status = format!("{} variations of stage {stage}: click one to accept it", results.len());
                    self.variations = Some((revision, stage, results));
                }
            }
            Event::Encoded { path, sequence, images, note, .. } => {
                let Some(ed) = self.editor.as_mut() else { return };
                match ed.apply(&Command::SetSequence { sequence }) {
                    Ok(_) => {
                        self.stage_images = images.iter().cloned().map(Some).collect();
                        self.images_revision = ed.revision();
                        self.blueprint_images = images;
                        self.status = note.unwrap_or_else(|| format!("encoded {} into {} stages", path.display(), ed.model.num_stages));
                        self.error = None;
                        let source = path.display().to_string();
                        let keep = self.view.keep_upto;
                        // An opened image is a ready blueprint: picking a class repaints it.
                        self.command(Command::UseAsBlueprint { source, keep_structure_upto: keep });
                        self.blueprint_images = self.stage_images.iter().flatten().cloned().collect();
                    }
                    Err(e) => self.error = Some(format!("{}: {e}", path.display())),
                }
            }
            Event::EncodeFailed { message } => {
                self.error = Some(message);
            }
        }
    }

    fn add_history(&mut self, sequence: &GranularitySequence) {
        let Some(ed) = self.editor.as_ref() else { return };
        let Some(img) = self.stage_images.last().and_then(|i| i.clone()) else { return };
        let state = ed.state().clone();
        if state.sequence.as_ref() != Some(sequence) {
            return;
        }
        if self.history.last().is_some_and(|h| h.state == state) {
            return;
        }
        let id = self.next_history_id;
        self.next_history_id += 1;
        let label = format!(
            "#{id} · {} · seed {}",
            ed.model.class_names.get(state.class).map(String::as_str).unwrap_or("?"),
            state.seed
        );
        self.history.push(HistoryEntry::new(id, label, state, img.width(), img.as_raw()));
        if self.history.len() > HISTORY_LIMIT {
            self.history.remove(0);
        }
    }

    /// Sends the run that brings the document up to date, once per revision.
    fn schedule(&mut self) {
        let Some(ed) = self.editor.as_ref() else { return };
        let revision = ed.revision();
        if self.requested == revision {
            return;
        }
        self.requested = revision;
        self.running = None;
        if self.images_revision != revision {
            if let Some(seq) = ed.state().sequence.clone() {
                self.worker.send(Request::Render { revision, sequence: Box::new(seq) });
                self.running = Some(Running::new(revision, 0));
            }
        }
        if let Some(spec) = run_spec(ed.state()) {
            let from = spec.from_stage;
            self.worker.send(Request::Run { revision, spec: Box::new(spec) });
            self.running = Some(Running::new(revision, from));
        } else if self.images_revision != revision && ed.state().sequence.is_none() {
            self.images_revision = revision;
        }
    }

    /// The window is asked to close: unsaved edits are written to the autosave; where they
    /// cannot be (autosave off, or the write fails) the close is cancelled and the user asked
    /// (Save / close without saving / cancel).
    fn guard_close(&mut self, ctx: &egui::Context) {
        if self.close_confirmed || !ctx.input(|i| i.viewport().close_requested()) {
            return;
        }
        // An untitled document nobody edited is only the model's default run: nothing to lose.
        let titled = self.project_path.is_some();
        if !self.editor.as_ref().is_some_and(|e| e.dirty && (titled || e.undo_len() + e.redo_len() > 0)) {
            return;
        }
        let why = if self.opts.autosave {
            match self.write_autosave() {
                Ok(()) => return, // recovered at the next start
                Err(e) => e,
            }
        } else {
            "autosave is off".to_string()
        };
        ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        self.close_held = Some(why);
    }

    /// Closes the window for good (the dialog's choice).
    fn confirm_close(&mut self, ctx: &egui::Context) {
        self.close_held = None;
        self.close_confirmed = true;
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    fn autosave(&mut self) {
        if !self.opts.autosave || !self.autosave_dirty || self.last_autosave.elapsed() < AUTOSAVE_EVERY {
            return;
        }
        let _ = self.write_autosave();
    }

    /// Writes the autosave file now (also on exit); nothing to do without a document or with
    /// autosave off.
    pub fn write_autosave(&mut self) -> Result<(), String> {
        let Some(ed) = self.editor.as_ref() else { return Ok(()) };
        if !self.opts.autosave {
            return Ok(());
        }
        let path = autosave_path(self.project_path.as_deref(), &ed.model.hash);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let p = Project::new(ed.model.clone(), ed.state().clone(), self.history.clone());
        let result = p.save(&path).map_err(|e| format!("autosave failed: {e}"));
        match &result {
            Ok(()) => self.autosave_dirty = false,
            Err(e) => self.status = e.clone(),
        }
        self.last_autosave = Instant::now();
        result
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

/// What to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Export {
    /// The last stage.
    Final,
    /// One stage.
    Stage(usize),
    /// Every stage with its structure map.
    Strip,
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
pub fn class_colour(class: usize) -> [u8; 3] {
    viz::cluster_colour(class as u32 * 7 + 3, 8)
}

fn hash_img(img: &RgbImage) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    img.as_raw().hash(&mut h);
    img.width().hash(&mut h);
    h.finish()
}

/// Encodes a PNG with one tEXt chunk.
pub fn png_with_text(img: &RgbImage, key: &str, text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, img.width(), img.height());
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.add_text_chunk(key.to_string(), text.to_string()).map_err(|e| e.to_string())?;
        let mut w = enc.write_header().map_err(|e| e.to_string())?;
        w.write_image_data(img.as_raw()).map_err(|e| e.to_string())?;
    }
    Ok(out)
}
