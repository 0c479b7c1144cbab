//! The editor's side of the worker: events in, runs scheduled.

use std::path::{Path, PathBuf};


use crate::document::{
    Command, Editor, HistoryEntry, State, autosave_path, kept_copy_path, run_spec,
};
use crate::granularity::GranularitySequence;
use crate::worker::{Event, Request};

use super::*;

impl NvgApp {
    /// Handles worker events and schedules runs; call once per frame (the UI does).
    pub fn pump(&mut self) {
        for ev in self.worker.poll() {
            self.handle(ev);
        }
        self.schedule();
        self.autosave();
    }

    pub(super) fn current_revision(&self) -> u64 {
        self.editor.as_ref().map_or(0, |e| e.revision())
    }

    pub(super) fn handle(&mut self, ev: Event) {
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
            Event::Loaded { info, model_dir, fallback_note, backend, precision, bf16_support, millis } => {
                self.backend = backend;
                self.bf16 = precision == Precision::Bf16;
                self.bf16_support = Some(bf16_support);
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
                if let Some(n) = &self.edit_note {
                    self.status = format!("{} — {n}", self.status);
                }
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
                // The image becomes a new untitled document: the project file open until now keeps
                // what was saved in it (unsaved edits go to its autosave first, as on a model switch).
                let detached = match self.project_path.clone() {
                    Some(project) => {
                        if self.keep_unsaved("not opening the image", false).is_err() {
                            return;
                        }
                        self.project_path = None;
                        self.history.clear();
                        Some(project)
                    }
                    None => None,
                };
                let Some(ed) = self.editor.as_mut() else { return };
                match ed.apply(&Command::SetSequence { sequence }) {
                    Ok(_) => {
                        self.stage_images = images.iter().cloned().map(Some).collect();
                        self.images_revision = ed.revision();
                        self.blueprint_images = images;
                        let encoded = note.unwrap_or_else(|| format!("encoded {} into {} stages", path.display(), ed.model.num_stages));

                        self.error = None;
                        let source = path.display().to_string();
                        let keep = self.view.keep_upto;
                        // An opened image is a ready blueprint: picking a class repaints it.
                        self.command(Command::UseAsBlueprint { source, keep_structure_upto: keep });
                        self.blueprint_images = self.stage_images.iter().flatten().cloned().collect();
                        // Said after the blueprint command, whose label would otherwise replace it.
                        self.status = match &detached {
                            Some(p) => format!("{encoded}; opened as a new untitled document ({} is unchanged)", p.display()),
                            None => encoded,
                        };
                        if let Some(n) = self.open_note.take() {
                            self.status = format!("{n} — {}", self.status);
                        }
                    }
                    Err(e) => self.error = Some(format!("{}: {e}", path.display())),
                }
            }
            Event::EncodeFailed { message } => {
                self.error = Some(message);
            }
        }
    }

    pub(super) fn add_history(&mut self, sequence: &GranularitySequence) {
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
    pub(super) fn schedule(&mut self) {
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
            let from = spec.from_stage();
            self.worker.send(Request::Run { revision, spec: Box::new(spec) });
            self.running = Some(Running::new(revision, from));
        } else if self.images_revision != revision && ed.state().sequence.is_none() {
            self.images_revision = revision;
        }
    }
}
