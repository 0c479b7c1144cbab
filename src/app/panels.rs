//! The editor's panels and canvas interaction: each draws part of the window and turns what the
//! user does into [`Command`]s or actions on the app (the state lives in `super`).

use std::path::PathBuf;
use std::time::Duration;

use eframe::egui;
use image::RgbImage;

use super::*;
use crate::document::{self, Command, HistoryEntry, ModelInfo, State};
use crate::ui::actions::{self, Action};
use crate::ui::canvas::{CanvasLayers, paint_gpu_with_id};
use crate::granularity::viz;

impl NvgApp {

    fn do_action(&mut self, a: Action) {
        match a {
            Action::New => self.new_document(),
            Action::Open => {
                if let Some(p) = rfd::FileDialog::new().add_filter("nvg-studio project", &["ron"]).pick_file() {
                    let _ = self.open_project(&p);
                }
            }
            Action::OpenImage => {
                if let Some(p) = rfd::FileDialog::new()
                    .add_filter("image", &["png", "jpg", "jpeg", "bmp", "gif", "webp"])
                    .pick_file()
                {
                    self.open_image(&p);
                }
            }
            Action::OpenModel => {
                if let Some(p) = rfd::FileDialog::new().set_title("Model folder (tokenizer/ + generator/)").pick_folder() {
                    let _ = self.open_model(&p);
                }
            }
            Action::Save => match self.project_path.clone() {
                Some(p) => {
                    let _ = self.save_project(&p);
                }
                None => self.do_action(Action::SaveAs),
            },
            Action::SaveAs => {
                if let Some(p) = rfd::FileDialog::new().add_filter("nvg-studio project", &["ron"]).set_file_name("untitled.ron").save_file() {
                    let _ = self.save_project(&p);
                }
            }
            Action::ExportFinal | Action::ExportStage | Action::ExportStrip => {
                let what = match a {
                    Action::ExportFinal => Export::Final,
                    Action::ExportStage => Export::Stage(self.view.active_stage),
                    _ => Export::Strip,
                };
                if let Some(p) = rfd::FileDialog::new().add_filter("PNG", &["png"]).set_file_name("nvg.png").save_file() {
                    match self.export_png(what, &p) {
                        Ok(()) => self.status = format!("exported {}", p.display()),
                        Err(e) => self.error = Some(e),
                    }
                }
            }
            // The window's own close request, so the unsaved-changes guard sees it.
            Action::Quit => self.ctx.send_viewport_cmd(egui::ViewportCommand::Close),
            Action::Undo => self.undo(),
            Action::Redo => self.redo(),
            Action::Run => self.run(),
            Action::Stop => self.stop(),
            Action::RerollStage => self.reroll_active_stage(),
            Action::Variations => self.request_variations(),
            Action::UseAsBlueprint => self.use_as_blueprint(),
            Action::ToggleCompare => self.view.compare = !self.view.compare,
            Action::StageUp => self.set_active_stage(self.view.active_stage.saturating_sub(1)),
            Action::StageDown => self.set_active_stage(self.view.active_stage + 1),
        }
    }

    fn action_button(&mut self, ui: &mut egui::Ui, a: Action, enabled: bool) {
        let info = actions::info(a);
        let mut text = info.label.to_string();
        if let Some(sc) = &info.shortcut {
            text = format!("{text}  ({})", ui.ctx().format_shortcut(sc));
        }
        if ui.add_enabled(enabled, egui::Button::new(text)).on_hover_text(info.tooltip).clicked() {
            self.do_action(a);
        }
    }

    fn texture(&mut self, ctx: &egui::Context, key: &str, version: u64, img: &RgbImage) -> egui::TextureHandle {
        if let Some((v, t)) = self.textures.get(key) {
            if *v == version {
                return t.clone();
            }
        }
        let ci = egui::ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw());
        let t = ctx.load_texture(key, ci, egui::TextureOptions::NEAREST);
        self.textures.insert(key.to_string(), (version, t.clone()));
        t
    }

    fn menu_bar(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                for a in [Action::New, Action::Open, Action::OpenImage, Action::Save, Action::SaveAs, Action::ExportFinal, Action::ExportStage, Action::ExportStrip] {
                    self.action_button(ui, a, self.editor.is_some());
                }
                ui.separator();
                self.action_button(ui, Action::OpenModel, true);
                ui.separator();
                self.action_button(ui, Action::Quit, true);
            });
            ui.menu_button("Edit", |ui| {
                let (u, r) = self.editor.as_ref().map_or((false, false), |e| (e.undo_len() > 0, e.redo_len() > 0));
                self.action_button(ui, Action::Undo, u);
                self.action_button(ui, Action::Redo, r);
                self.action_button(ui, Action::UseAsBlueprint, self.editor.as_ref().is_some_and(|e| e.state().sequence.is_some()));
            });
            ui.menu_button("Run", |ui| {
                self.action_button(ui, Action::Run, self.editor.is_some());
                self.action_button(ui, Action::Stop, self.running.is_some());
                self.action_button(ui, Action::RerollStage, self.editor.is_some());
                self.action_button(ui, Action::Variations, self.editor.is_some());
                ui.separator();
                // Only the CPU host path has bf16 products.
                let host = self.backend.contains("host kernels");
                let mut on = self.bf16;
                let tip = "Round the generator's matrix products to bfloat16 (sums stay f32): faster on CPUs with AMX \
                           (Intel Xeon 4th generation on), results slightly different from f32 (docs/user-guide.md). Applies from the next run.";
                // Only the AMX kernel measured faster than f32 (docs/benchmarks.md).
                // The worker reports what the CPU can do when the model loads (asked directly before).
                use crate::worker::Bf16Support;
                let label = match self.bf16_support.unwrap_or_else(Bf16Support::detect) {
                    Bf16Support::Amx => "bf16 products (faster)",
                    Bf16Support::Avx512 => "bf16 products (no AMX: may be slower)",
                    Bf16Support::Emulated => "bf16 products (emulated here: slower)",
                };
                if ui.add_enabled(host, egui::Checkbox::new(&mut on, label)).on_hover_text(tip).changed() {
                    self.set_bf16(on);
                }
            });
            ui.menu_button("View", |ui| {
                self.action_button(ui, Action::ToggleCompare, true);
                self.action_button(ui, Action::StageUp, true);
                self.action_button(ui, Action::StageDown, true);
            });
            ui.separator();
            let undo_enabled = self.editor.as_ref().is_some_and(|e| e.undo_len() > 0);
            let redo_enabled = self.editor.as_ref().is_some_and(|e| e.redo_len() > 0);
            if ui.add_enabled(undo_enabled, egui::Button::new("Undo")).on_hover_text(actions::info(Action::Undo).tooltip).clicked() {
                self.undo();
            }
            if ui.add_enabled(redo_enabled, egui::Button::new("Redo")).on_hover_text(actions::info(Action::Redo).tooltip).clicked() {
                self.redo();
            }
            if self.running.is_some() {
                if ui.button("Stop").on_hover_text(actions::info(Action::Stop).tooltip).clicked() {
                    self.stop();
                }
            } else if ui.add_enabled(self.editor.is_some(), egui::Button::new("Run")).on_hover_text(actions::info(Action::Run).tooltip).clicked() {
                self.run();
            }
        });
    }

    fn stage_strip(&mut self, ui: &mut egui::Ui) {
        let Some(ed) = self.editor.as_ref() else { return };
        let n = ed.model.num_stages;
        let side = ed.model.grid_size;
        let revision = ed.revision();
        let state = ed.state().clone();
        let running = self.running.clone();
        egui::ScrollArea::horizontal().show(ui, |ui| {
            ui.horizontal(|ui| {
                for s in 0..n {
                    let active = s == self.view.active_stage;
                    let stale = state.is_stale(s);
                    let frame = egui::Frame::group(ui.style()).fill(if active {
                        ui.visuals().selection.bg_fill.linear_multiply(0.4)
                    } else {
                        ui.visuals().panel_fill
                    });
                    frame.show(ui, |ui| {
                        ui.vertical(|ui| {
                            let label = if s == 0 { "stage 0 · 1 cluster".to_string() } else { format!("stage {s} · {} clusters", 1usize << s) };
                            if ui.selectable_label(active, label).on_hover_text("Activate this stage").clicked() {
                                self.view.active_stage = s;
                            }
                            let thumb = egui::vec2(72.0, 72.0);
                            ui.horizontal(|ui| {
                                match self.stage_images.get(s).and_then(|i| i.clone()) {
                                    Some(img) => {
                                        let t = self.texture(ui.ctx(), &format!("stage-img-{s}"), hash_img(&img), &img);
                                        let r = ui.add(egui::Image::new((t.id(), thumb)).tint(if stale {
                                            egui::Color32::from_gray(110)
                                        } else {
                                            egui::Color32::WHITE
                                        }).sense(egui::Sense::click()));
                                        if r.on_hover_text(format!("decoded canvas after stage {s}")).clicked() {
                                            self.view.active_stage = s;
                                        }
                                    }
                                    None => {
                                        ui.allocate_exact_size(thumb, egui::Sense::hover());
                                    }
                                }
                                if let Some(seq) = &state.sequence {
                                    let map = viz::structure_map_image(&seq.stages[s].structure, side, s, 4);
                                    let t = self.texture(ui.ctx(), &format!("stage-map-{s}"), hash_img(&map), &map);
                                    ui.add(egui::Image::new((t.id(), thumb))).on_hover_text(format!("structure map of stage {s}"));
                                }
                            });
                            match &running {
                                Some(r) if r.revision == revision && r.stage == s => {
                                    let frac = if r.steps > 0 { r.step as f32 / r.steps as f32 } else { 0.0 };
                                    ui.add(egui::ProgressBar::new(frac).desired_width(148.0).text("running"));
                                }
                                _ if stale => {
                                    ui.colored_label(egui::Color32::from_rgb(220, 160, 60), "stale");
                                }
                                _ if self.stage_images.get(s).is_some_and(|i| i.is_some()) => {
                                    ui.label(format!("done · seed {}", state.seed_of_stage(s)));
                                }
                                _ => {
                                    ui.label("—");
                                }
                            }
                        });
                    });
                }
            });
        });
        let _ = revision;
    }

    fn tools_panel(&mut self, ui: &mut egui::Ui) {
        let Some(ed) = self.editor.as_ref() else { return };
        let model = ed.model.clone();
        let state = ed.state().clone();
        let stage = self.view.active_stage;
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("Tools");
            for t in Tool::ALL {
                if ui.selectable_label(self.view.tool == t, t.label()).on_hover_text(t.tooltip()).clicked() {
                    self.view.tool = t;
                }
            }
            ui.horizontal(|ui| {
                ui.label("Child:");
                ui.selectable_value(&mut self.view.child, 0, "A").on_hover_text("Paint into child A (the even label 2p)");
                ui.selectable_value(&mut self.view.child, 1, "B").on_hover_text("Paint into child B (the odd label 2p + 1)");
            });
            ui.add(egui::Slider::new(&mut self.view.brush_radius, 0.5..=4.0).text("brush size (cells)"));
            ui.add(egui::Slider::new(&mut self.view.overlay_opacity, 0.0..=1.0).text("structure overlay"));
            ui.checkbox(&mut self.view.boundaries, "cluster boundaries");
            ui.separator();

            ui.heading("Class");
            let current = model.class_names.get(state.class).cloned().unwrap_or_default();
            ui.label(format!("whole image: {current}"));
            ui.add(egui::TextEdit::singleline(&mut self.view.class_query).hint_text("search classes…"));
            let q = self.view.class_query.to_lowercase();
            let mut picked = None;
            egui::ScrollArea::vertical().id_salt("classes").max_height(140.0).show(ui, |ui| {
                for (i, name) in model.class_names.iter().enumerate() {
                    if !q.is_empty() && !name.to_lowercase().contains(&q) {
                        continue;
                    }
                    let r = ui.selectable_label(state.class == i && state.class_map.is_none(), format!("{i} · {name}"));
                    if r.clicked() {
                        picked = Some(i);
                    }
                    if r.secondary_clicked() {
                        self.view.brush_class = i;
                    }
                }
            });
            if let Some(i) = picked {
                self.view.brush_class = i;
                self.command(Command::SetClass { class: i });
            }
            ui.label(format!("class brush paints: {}", model.class_names.get(self.view.brush_class).cloned().unwrap_or_default()))
                .on_hover_text("Right-click a class in the list to choose it for the class brush");
            if let Some(map) = &state.class_map {
                ui.label("Class map legend:");
                let mut present: Vec<usize> = map.clone();
                present.sort_unstable();
                present.dedup();
                for c in present {
                    ui.horizontal(|ui| {
                        let (r, _) = ui.allocate_exact_size(egui::vec2(14.0, 14.0), egui::Sense::hover());
                        let [cr, cg, cb] = class_colour(c);
                        ui.painter().rect_filled(r, 2.0, egui::Color32::from_rgb(cr, cg, cb));
                        ui.label(model.class_names.get(c).cloned().unwrap_or_default());
                    });
                }
                if ui.button("Clear class map").clicked() {
                    self.command(Command::ClearClassMap);
                }
            }
            ui.separator();

            ui.heading("Seed");
            let mut seed = state.seed;
            ui.horizontal(|ui| {
                let r = ui.add(egui::DragValue::new(&mut seed).speed(1.0)).on_hover_text("Base seed (reruns everything)");
                if r.changed() && !r.dragged() || r.drag_stopped() {
                    self.command(Command::SetSeed { seed });
                }
                if ui.button("New seed").on_hover_text("A new base seed").clicked() {
                    self.command(Command::SetSeed { seed: next_seed(state.seed, 999) });
                }
            });
            ui.label(format!("stage {stage} seed: {}", state.seed_of_stage(stage)));
            self.action_button(ui, Action::RerollStage, true);
            ui.horizontal(|ui| {
                ui.add(egui::DragValue::new(&mut self.view.variations_n).range(2..=8)).on_hover_text("How many variations");
                self.action_button(ui, Action::Variations, state.sequence.is_some());
            });
            ui.separator();

            ui.heading("Lock");
            match &state.lock {
                Some(l) => ui.label(format!("{} positions locked from stage {}", l.mask.iter().filter(|&&m| m).count(), l.from_stage)),
                None => ui.label("nothing locked"),
            };
            ui.horizontal(|ui| {
                if ui.button(format!("Lock stage {stage}")).on_hover_text("Protect structure and codes of every position from this stage on").clicked() {
                    self.command(Command::LockStage { stage });
                }
                if ui.add_enabled(state.lock.is_some(), egui::Button::new("Clear locks")).clicked() {
                    self.command(Command::ClearLock);
                }
            });
            ui.separator();

            ui.heading("Blueprint");
            match &state.blueprint {
                Some(bp) => {
                    ui.label(format!("from {}", bp.source));
                    let mut m = bp.keep_structure_upto;
                    let r = ui.add(egui::Slider::new(&mut m, 0..=model.num_stages - 1).text("keep structure up to stage"));
                    if r.drag_stopped() || (r.changed() && !r.dragged()) {
                        self.view.keep_upto = m;
                        self.command(Command::SetBlueprintKeep { keep_structure_upto: m });
                    }
                    if ui.button("Clear blueprint").clicked() {
                        self.command(Command::ClearBlueprint);
                    }
                }
                None => {
                    ui.add(egui::Slider::new(&mut self.view.keep_upto, 1..=model.num_stages - 1).text("keep structure up to stage"));
                    self.action_button(ui, Action::UseAsBlueprint, state.sequence.is_some());
                }
            }
            ui.separator();

            egui::CollapsingHeader::new("Sampler settings").show(ui, |ui| {
                let mut s = state.settings.clone();
                let mut release = false;
                // Switching a schedule on restores the sampler's default for it; the sliders'
                // ranges always hold the current values, so showing or touching one never
                // clamps a setting the user did not change.
                let defaults = document::SamplerSettings::editor();
                let paper = document::SamplerSettings::paper();
                let mut sched = |ui: &mut egui::Ui, v: &mut Option<document::Linear>, name: &str, limit: f32, default: Option<document::Linear>| {
                    let mut on = v.is_some();
                    ui.checkbox(&mut on, name);
                    if on != v.is_some() {
                        *v = if on { default.or(Some(document::Linear { start: 1.0, end: limit / 2.0 })) } else { None };
                        release = true;
                    }
                    if let Some(x) = v.as_mut() {
                        for (value, label) in [(&mut x.start, "at stage 0"), (&mut x.end, "at last stage")] {
                            let range = slider_range(limit, *value);
                            let r = ui.add(egui::Slider::new(value, range).text(label));
                            release |= r.drag_stopped() || (r.changed() && !r.dragged());
                        }
                    }
                };
                sched(ui, &mut s.content_cfg, "content guidance", 30.0, defaults.content_cfg);
                sched(ui, &mut s.structure_cfg, "structure guidance", 8.0, defaults.structure_cfg);
                sched(ui, &mut s.top_p, "top-p", 1.0, paper.top_p);
                let r = ui.add(egui::Slider::new(&mut s.temperature, 0.1..=2.0).text("temperature"));
                release |= r.drag_stopped() || (r.changed() && !r.dragged());
                let r = ui.add(egui::Slider::new(&mut s.flow_steps, 1..=50).text("flow steps"));
                release |= r.drag_stopped() || (r.changed() && !r.dragged());
                release |= ui.checkbox(&mut s.gumbel, "Gumbel split").changed();
                if release && s != state.settings {
                    self.command(Command::SetSettings(s));
                }
            });
        });
    }

    fn side_panel(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            if let Some((_, stage, vars)) = self.variations.clone() {
                ui.heading(format!("Variations of stage {stage}"));
                let mut accept = None;
                for (i, v) in vars.iter().enumerate() {
                    let t = self.texture(ui.ctx(), &format!("var-{i}"), hash_img(&v.image), &v.image);
                    let r = ui.add(egui::Button::image_and_text((t.id(), egui::vec2(56.0, 56.0)), format!("seed {}", v.seed)));
                    if r.on_hover_text("Accept this variation (undoable)").clicked() {
                        accept = Some(i);
                    }
                }
                if let Some(i) = accept {
                    self.accept_variation(i);
                }
                if ui.button("Discard variations").clicked() {
                    self.variations = None;
                }
                ui.separator();
            }
            ui.heading("History");
            let mut restore = None;
            let entries: Vec<HistoryEntry> = self.history.iter().rev().cloned().collect();
            for h in entries {
                ui.horizontal(|ui| {
                    if let Some(rgb) = h.thumbnail() {
                        if let Some(img) = RgbImage::from_raw(h.thumbnail_side, h.thumbnail_side, rgb) {
                            let t = self.texture(ui.ctx(), &format!("hist-{}", h.id), h.id, &img);
                            ui.image((t.id(), egui::vec2(40.0, 40.0)));
                        }
                    }
                    ui.vertical(|ui| {
                        ui.label(&h.label);
                        ui.horizontal(|ui| {
                            if ui.small_button("restore").on_hover_text("Go back to this result (undoable)").clicked() {
                                restore = Some(h.state.clone());
                            }
                            if ui.small_button("compare").on_hover_text("Show it on the left of the A/B view").clicked() {
                                self.view.compare = true;
                                self.view.compare_left = CompareSource::History(h.id);
                            }
                        });
                    });
                });
            }
            if let Some(s) = restore {
                self.command(Command::Restore { state: Box::new(s) });
            }
        });
    }

    fn status_bar(&mut self, ui: &mut egui::Ui, frame_ms: f32) {
        ui.horizontal(|ui| {
            let canvas = if self.gpu_canvas { "canvas: GPU shader (wgpu)" } else { "canvas: CPU compositing" };
            ui.label(canvas);
            ui.separator();
            ui.label(format!("model: {}", if self.backend.is_empty() { "loading…" } else { &self.backend }));
            ui.separator();
            match &self.running {
                Some(r) => {
                    paced_spinner(ui);
                    ui.label(format!("running stage {} ({:.1} s)", r.stage, r.started.elapsed().as_secs_f32()));
                }
                None => {
                    if let Some(ms) = self.last_run_ms {
                        ui.label(format!("last run {:.2} s", ms as f64 / 1000.0));
                    }
                }
            }
            ui.separator();
            ui.label(format!("{:.0} fps", if frame_ms > 0.0 { 1000.0 / frame_ms } else { 0.0 }));
            if let Some(ed) = &self.editor {
                ui.separator();
                ui.label(format!("rev {}{}", ed.revision(), if ed.dirty { " · unsaved" } else { "" }));
            }
            ui.separator();
            match self.error() {
                Some(e) => {
                    ui.colored_label(egui::Color32::from_rgb(230, 90, 80), format!("Error: {e}"));
                }
                None => {
                    ui.label(&self.status);
                }
            }
        });
    }

    fn canvas(&mut self, ui: &mut egui::Ui) {
        let Some(ed) = self.editor.as_ref() else {
            let load_error = self.load_error.clone();
            ui.centered_and_justified(|ui| match load_error {
                Some(e) => {
                    ui.vertical_centered(|ui| {
                        ui.colored_label(egui::Color32::from_rgb(230, 90, 80), format!("The model could not be loaded.\n{e}"));
                        ui.add_space(8.0);
                        self.action_button(ui, Action::OpenModel, true);
                    });
                }
                None => {
                    ui.vertical_centered(|ui| {
                        paced_spinner(ui);
                        ui.label("Loading the bundled model (warm-up)…");
                        ui.ctx().request_repaint_after(super::RUNNING_FRAME);
                    });
                }
            });
            return;
        };
        let model = ed.model.clone();
        let state = ed.state().clone();
        let stage = self.view.active_stage.min(model.num_stages - 1);
        let side = model.grid_size;
        let l = side * side;
        let avail = ui.available_size();
        let size = (avail.x.min(avail.y) - 8.0).max(64.0);

        if self.view.compare {
            self.compare_view(ui, size, &state, &model);
            return;
        }
        let (rect, response) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::click_and_drag());
        let response = response.on_hover_cursor(egui::CursorIcon::Crosshair);
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Canvas, true, "canvas"));
        let labels: Vec<u32> = state.sequence.as_ref().map(|s| s.stages[stage].structure.clone()).unwrap_or_else(|| vec![0; l]);
        let lock: Vec<bool> = (0..l).map(|p| state.is_locked(stage, p)).collect();

        // Pointer → grid position.
        let to_grid = |pos: egui::Pos2| -> egui::Pos2 {
            egui::pos2((pos.x - rect.min.x) / rect.width() * side as f32, (pos.y - rect.min.y) / rect.height() * side as f32)
        };
        let pos_of = |g: egui::Pos2| -> Option<usize> {
            (g.x >= 0.0 && g.y >= 0.0 && g.x < side as f32 && g.y < side as f32).then(|| g.y as usize * side + g.x as usize)
        };
        self.view.hovered_pos = response.hover_pos().and_then(|p| pos_of(to_grid(p)));

        // Strokes: one command per stroke, on release. A stroke starts where the button went
        // down (egui reports the drag only after a movement threshold) and covers every cell
        // along the pointer's path, so fast strokes leave no gaps.
        if let Some(p) = response.interact_pointer_pos() {
            let g = to_grid(p);
            if self.view.stroke.is_none() {
                let origin = ui.input(|i| i.pointer.press_origin()).filter(|o| rect.contains(*o)).map(to_grid).unwrap_or(g);
                let parent = pos_of(origin).and_then(|q| {
                    (stage >= 1).then(|| state.sequence.as_ref().map(|s| s.stages[stage - 1].structure[q])).flatten()
                });
                self.view.stroke = Some(Stroke { parent, positions: vec![], start: origin, end: origin });
            }
            if let Some(st) = self.view.stroke.as_mut() {
                let from = st.end;
                st.end = g;
                if matches!(self.view.tool, Tool::Brush | Tool::Lock | Tool::Unlock | Tool::ClassBrush) {
                    let r = self.view.brush_radius;
                    let steps = ((g - from).length() * 4.0).ceil().max(1.0) as usize;
                    for k in 0..=steps {
                        let c = from + (g - from) * (k as f32 / steps as f32);
                        for y in 0..side {
                            for x in 0..side {
                                let (dx, dy) = (x as f32 + 0.5 - c.x, y as f32 + 0.5 - c.y);
                                if dx * dx + dy * dy <= r * r {
                                    let q = y * side + x;
                                    if !st.positions.contains(&q) {
                                        st.positions.push(q);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let released = response.drag_stopped() || response.clicked() || (!ui.input(|i| i.pointer.any_down()) && self.view.stroke.is_some());
        if released {
            if let Some(st) = self.view.stroke.take() {
                self.finish_stroke(st, stage, &state, &model);
            }
        }

        let pending: Vec<bool> = {
            let mut v = vec![false; l];
            if let Some(st) = &self.view.stroke {
                for &q in &shape_or_brush(st, self.view.tool, side) {
                    v[q] = true;
                }
            }
            v
        };
        let tint: Option<Vec<[u8; 3]>> = (self.view.tool == Tool::ClassBrush)
            .then(|| (0..l).map(|p| class_colour(state.class_map.as_ref().map_or(state.class, |m| m[p]))).collect());
        let hovered = self.view.hovered_pos.map(|p| labels[p]);
        let img = self
            .stage_image(stage)
            .cloned()
            .unwrap_or_else(|| RgbImage::from_pixel(model.image_size as u32, model.image_size as u32, image::Rgb([40, 40, 40])));
        let (img_bytes, img_side) = (img.as_raw().as_slice(), img.width() as usize);
        let layers = CanvasLayers {
            image: img_bytes,
            image_side: img_side,
            labels: &labels,
            grid_side: side,
            stage,
            lock: &lock,
            pending: &pending,
            class_tint: tint.as_deref(),
            hovered,
            overlay_opacity: self.view.overlay_opacity,
            boundaries: self.view.boundaries,
        };
        if self.gpu_canvas {
            paint_gpu_with_id(ui, ui.scope_id().with("main-canvas"), rect, &layers);
        } else {
            self.cpu_canvas.show(ui, rect, &layers);
        }
        if let (Some(p), Some(seq)) = (self.view.hovered_pos, state.sequence.as_ref()) {
            let label = labels[p];
            let size_c = labels.iter().filter(|&&x| x == label).count();
            let code = seq.stages[stage].codes.get(label as usize).copied().unwrap_or(0);
            let locked = if lock[p] { " · locked" } else { "" };
            let plural = if size_c == 1 { "" } else { "s" };
            response.on_hover_text_at_pointer(format!("stage {stage} · cluster {label} · {size_c} position{plural} · code {code}{locked}"));
        }
    }

    fn finish_stroke(&mut self, st: Stroke, stage: usize, state: &State, model: &ModelInfo) {
        let side = model.grid_size;
        let positions = shape_or_brush(&st, self.view.tool, side);
        let g = st.end;
        let at = (g.x >= 0.0 && g.y >= 0.0 && g.x < side as f32 && g.y < side as f32).then(|| g.y as usize * side + g.x as usize);
        match self.view.tool {
            Tool::Inspect => {}
            Tool::Brush => {
                if stage == 0 {
                    self.error = Some("stage 0 has one cluster: paint structure at stage 1 or finer".into());
                    return;
                }
                self.command(Command::PaintStructure { stage, parent: st.parent, positions, child: self.view.child });
            }
            Tool::Fill => {
                if stage == 0 {
                    self.error = Some("stage 0 has one cluster: flip clusters at stage 1 or finer".into());
                    return;
                }
                if let (Some(p), Some(seq)) = (at, state.sequence.as_ref()) {
                    let cluster = seq.stages[stage].structure[p];
                    self.command(Command::FillCluster { stage, cluster, fill: document::Fill::Flip });
                }
            }
            Tool::Ellipse | Tool::Rect => {
                if stage == 0 {
                    self.error = Some("draw layouts at stage 1 (or inside a cluster at a finer stage)".into());
                    return;
                }
                self.command(Command::PaintLayout { stage, parent: st.parent, inside: positions });
            }
            Tool::Lock | Tool::Unlock => {
                self.command(Command::SetLock { from_stage: stage, positions, locked: self.view.tool == Tool::Lock });
            }
            Tool::ClassBrush => {
                self.command(Command::PaintClass { positions, class: self.view.brush_class });
            }
        }
    }

    fn compare_view(&mut self, ui: &mut egui::Ui, size: f32, state: &State, model: &ModelInfo) {
        let n = model.num_stages;
        ui.horizontal(|ui| {
            ui.label("A:");
            egui::ComboBox::from_id_salt("compare-left")
                .selected_text(match &self.view.compare_left {
                    CompareSource::Blueprint => "blueprint reference".to_string(),
                    CompareSource::Stage(s) => format!("stage {s}"),
                    CompareSource::History(id) => format!("history #{id}"),
                })
                .show_ui(ui, |ui| {
                    if state.blueprint.is_some() {
                        ui.selectable_value(&mut self.view.compare_left, CompareSource::Blueprint, "blueprint reference");
                    }
                    for s in 0..n {
                        ui.selectable_value(&mut self.view.compare_left, CompareSource::Stage(s), format!("stage {s}"));
                    }
                    for h in &self.history {
                        ui.selectable_value(&mut self.view.compare_left, CompareSource::History(h.id), h.label.clone());
                    }
                });
            ui.label(format!("B: stage {} (active)", self.view.active_stage));
            ui.add(egui::Slider::new(&mut self.view.compare_split, 0.0..=1.0).text("split"));
            if ui.button("Close compare").clicked() {
                self.view.compare = false;
            }
        });
        let left: Option<RgbImage> = match &self.view.compare_left {
            CompareSource::Blueprint => self.blueprint_images.last().cloned(),
            CompareSource::Stage(s) => self.stage_image(*s).cloned(),
            CompareSource::History(id) => self
                .history
                .iter()
                .find(|h| h.id == *id)
                .and_then(|h| h.thumbnail().and_then(|rgb| RgbImage::from_raw(h.thumbnail_side, h.thumbnail_side, rgb))),
        };
        let right = self.stage_image(self.view.active_stage).cloned();
        let size = size - 30.0;
        let (rect, resp) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::click_and_drag());
        if let Some(p) = resp.interact_pointer_pos() {
            self.view.compare_split = ((p.x - rect.min.x) / rect.width()).clamp(0.0, 1.0);
        }
        let split_x = rect.min.x + rect.width() * self.view.compare_split;
        let uv = |a: f32, b: f32| egui::Rect::from_min_max(egui::pos2(a, 0.0), egui::pos2(b, 1.0));
        if let Some(img) = left {
            let t = self.texture(ui.ctx(), "cmp-left", hash_img(&img), &img);
            let r = egui::Rect::from_min_max(rect.min, egui::pos2(split_x, rect.max.y));
            ui.painter().image(t.id(), r, uv(0.0, self.view.compare_split), egui::Color32::WHITE);
        }
        if let Some(img) = right {
            let t = self.texture(ui.ctx(), "cmp-right", hash_img(&img), &img);
            let r = egui::Rect::from_min_max(egui::pos2(split_x, rect.min.y), rect.max);
            ui.painter().image(t.id(), r, uv(self.view.compare_split, 1.0), egui::Color32::WHITE);
        }
        ui.painter().vline(split_x, rect.y_range(), egui::Stroke::new(2.0, egui::Color32::WHITE));
        let _ = state;
    }

    /// The "unsaved changes" dialog of a held window close (Esc or a click outside = Cancel).
    fn close_dialog(&mut self, ctx: &egui::Context) {
        let Some(why) = self.close_held.clone() else { return };
        let name = self.project_path.as_ref().and_then(|p| p.file_name()).map_or("the untitled document".to_string(), |n| n.to_string_lossy().into_owned());
        let mut choice = None;
        let modal = egui::Modal::new(egui::Id::unique("close-unsaved")).show(ctx, |ui| {
            ui.set_max_width(360.0);
            ui.heading("Unsaved changes");
            ui.label(format!("Save the changes to {name} before closing? They are not kept anywhere else ({why})."));
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                if ui.button("Save…").clicked() {
                    choice = Some(0);
                }
                if ui.button("Close without saving").clicked() {
                    choice = Some(1);
                }
                if ui.button("Cancel").clicked() {
                    choice = Some(2);
                }
            });
        });
        if choice.is_none() && modal.should_close() {
            choice = Some(2);
        }
        match choice {
            Some(0) => {
                self.close_held = None;
                self.do_action(Action::Save);
                if !self.editor.as_ref().is_some_and(|e| e.dirty) {
                    self.confirm_close(ctx);
                }
            }
            Some(1) => self.confirm_close(ctx),
            Some(2) => self.close_held = None,
            _ => {}
        }
    }

    /// Draws one frame into `ui` (also what kittest drives).
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        let dt = ui.input(|i| i.unstable_dt) * 1000.0;
        self.frame_times.push_back(dt);
        if self.frame_times.len() > 30 {
            self.frame_times.pop_front();
        }
        // The median of the last 30 frame intervals: a few idle gaps or stalls do not drag the
        // reading down while the UI is busy (painting, a run in flight).
        let frame_ms = {
            let mut v: Vec<f32> = self.frame_times.iter().copied().collect();
            v.sort_by(f32::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        let t_start = std::time::Instant::now();
        self.pump();
        let t_pump = t_start.elapsed();
        self.guard_close(ui.ctx());
        // No shortcuts under the unsaved-changes dialog (its Esc is Cancel, not Stop).
        if self.close_held.is_none() {
            for a in actions::pressed(ui.ctx()) {
                self.do_action(a);
            }
        }
        // Drag-and-drop: an image file opens as layers, a .ron as a project.
        let dropped: Vec<PathBuf> = ui.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).filter(|p| !p.as_os_str().is_empty()).collect());
        for p in dropped {
            if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ron")) {
                let _ = self.open_project(&p);
            } else {
                self.open_image(&p);
            }
        }

        egui::Panel::top("menu").show(ui, |ui| self.menu_bar(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui, frame_ms));
        egui::Panel::top("stages").show(ui, |ui| self.stage_strip(ui));
        egui::Panel::left("tools").default_size(230.0).show(ui, |ui| self.tools_panel(ui));
        egui::Panel::right("history").default_size(200.0).show(ui, |ui| self.side_panel(ui));
        let t_panels = t_start.elapsed();
        egui::CentralPanel::default().show(ui, |ui| self.canvas(ui));
        let t_canvas = t_start.elapsed();
        self.close_dialog(ui.ctx());

        // Keep animating while a job runs (spinner, progress) at a steady RUNNING_FRAME cadence,
        // counted from this frame's start; the worker wakes us at once for results only.
        if self.running.is_some() {
            ui.ctx().request_repaint_after(super::RUNNING_FRAME.saturating_sub(t_start.elapsed()));
        }
        self.pump();
        if let Some((log, start)) = &mut self.frame_log {
            use std::io::Write;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let t_end = t_start.elapsed();
            let _ = writeln!(
                log,
                "{:.1} {dt:.2} {} {:.2} {:.2} {:.2} {:.2} {:.2} {:.2}",
                ms(start.elapsed()),
                u8::from(self.running.is_some()),
                ms(t_end),
                ms(t_pump),
                ms(t_panels - t_pump),
                ms(t_canvas - t_panels),
                ms(t_end - t_canvas),
                self.prev_frame_cpu_ms.unwrap_or(f32::NAN),
            );
        }
    }
}

/// A spinner that does not ask for frames of its own: egui's `Spinner` requests an immediate
/// repaint every frame, which keeps a software-rendered window redrawing flat out and taking the
/// cores from the model. This one turns with the clock and is redrawn at the app's own cadence
/// (`RUNNING_FRAME`, while a job runs or the model loads).
fn paced_spinner(ui: &mut egui::Ui) {
    let side = ui.style().spacing.interact_size.y;
    let (rect, _) = ui.allocate_exact_size(egui::vec2(side, side), egui::Sense::hover());
    if !ui.is_rect_visible(rect) {
        return;
    }
    let t = ui.input(|i| i.time);
    let radius = rect.height() / 2.0 - 2.0;
    let start = (t * 5.0) % std::f64::consts::TAU;
    let points: Vec<egui::Pos2> = (0..=24)
        .map(|i| {
            let a = (start + i as f64 / 24.0 * 4.2) as f32;
            rect.center() + radius * egui::vec2(a.cos(), a.sin())
        })
        .collect();
    let stroke = ui.visuals().widgets.inactive.fg_stroke;
    ui.painter().add(egui::Shape::line(points, stroke));
}

/// A slider's range for a schedule value: 0 to `limit`, widened to hold `value` (a project or
/// an older default may carry one above the limit; the slider must not clamp it just by being
/// shown or touched).
pub(crate) fn slider_range(limit: f32, value: f32) -> std::ops::RangeInclusive<f32> {
    0.0..=limit.max(value)
}
