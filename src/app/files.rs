//! The editor's files: models, projects, images, exports, autosave and the close guard.

use std::path::{Path, PathBuf};
use std::time::Instant;

use eframe::egui;
use image::RgbImage;

use crate::document::{
    self, Project, Recipe, State, autosave_path, kept_copy_path,
};
use crate::granularity::viz;
use crate::worker::{Request, WorkerHandle};

use super::*;

impl NvgApp {
    /// The model folder in use (after a fallback, the fallback's).
    pub fn model_dir(&self) -> &Path {
        &self.opts.model_dir
    }

    /// The precision the Run menu asks for.
    pub(crate) fn precision(&self) -> Precision {
        if self.bf16 { Precision::Bf16 } else { Precision::F32 }
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
    pub(super) fn keep_unsaved(&mut self, what: &str, slot_recovered: bool) -> Result<Option<PathBuf>, String> {
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
        // A PNG exported by the editor carries its recipe: restore that exactly (same model), as
        // a new untitled document; anything else is encoded as an image.
        if let Some(recipe) = std::fs::read(path).ok().and_then(|b| Recipe::from_png(&b)) {
            match recipe {
                Ok(r) => match self.restore_recipe(path, r) {
                    Ok(()) => return,
                    Err(why) => self.open_note = Some(format!("{}: {why}; opened as an image instead", path.display())),
                },
                Err(why) => self.open_note = Some(format!("{}: {why}; opened as an image instead", path.display())),
            }
        }
        let revision = self.editor.as_ref().map_or(0, |e| e.revision());
        self.worker.send(Request::Encode { revision, path: path.to_path_buf() });
        self.status = format!("encoding {}…", path.display());
    }

    /// Restores an exported PNG's recipe as a new untitled document (its exact state: seeds,
    /// class map, locks, blueprint, settings and sequence).
    fn restore_recipe(&mut self, path: &Path, r: Recipe) -> Result<(), String> {
        let ed = self.editor.as_ref().ok_or("no model loaded")?;
        if r.model_hash != ed.model.hash {
            return Err(format!(
                "its recipe was made with model '{}' ({}), the loaded model is '{}' ({})",
                r.model, r.model_hash, ed.model.name, ed.model.hash
            ));
        }
        document::check_state(&r.state, &ed.model).map_err(|e| format!("its recipe does not fit the model ({e})"))?;
        if self.project_path.is_some() {
            self.keep_unsaved("not opening the recipe", false)?;
            self.project_path = None;
            self.history.clear();
        }
        self.command(Command::Restore { state: Box::new(r.state) });
        self.status = format!("restored the recipe of {} ({}, class {}) as a new untitled document", path.display(), r.image, r.class);
        Ok(())
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

    /// The window is asked to close: unsaved edits are written to the autosave; where they
    /// cannot be (autosave off, or the write fails) the close is cancelled and the user asked
    /// (Save / close without saving / cancel).
    pub(super) fn guard_close(&mut self, ctx: &egui::Context) {
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
    pub(super) fn confirm_close(&mut self, ctx: &egui::Context) {
        self.close_held = None;
        self.close_confirmed = true;
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    pub(super) fn autosave(&mut self) {
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
