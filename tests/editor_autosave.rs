//! Autosave across model switches, in its own test binary: it points `NVG_STUDIO_DATA` at a
//! temporary folder, which must not race with other tests' threads.

mod common;

use std::time::Duration;

use eframe::egui;
use egui_kittest::Harness;
use nvg_studio::app::{AppOptions, NvgApp};
use nvg_studio::model::backend::BackendChoice;
use nvg_studio::document::Command;

use common::{ready, step_until};



#[test]
fn switching_models_keeps_each_untitled_document_in_its_own_autosave() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("model-a"), d.path().join("model-b"));
    common::tiny_model_dir(&a, 3);
    common::tiny_model_dir(&b, 4);
    // Its own data folder, set before any other thread runs (this binary holds only this test).
    unsafe { std::env::set_var("NVG_STUDIO_DATA", d.path().join("data")) };
    let opts = AppOptions { model_dir: a.clone(), backend: BackendChoice::Cpu, project: None, image: None, autosave: true, fallback_model: None };
    let mut h = Harness::builder().with_size(egui::vec2(1280.0, 860.0)).build_eframe(move |cc| NvgApp::new(&cc.egui_ctx, opts, false));
    ready(&mut h);
    h.state_mut().command(Command::SetSeed { seed: 9191 });
    step_until(&mut h, "rerun", |a| a.is_idle());
    let edited = h.state().editor().unwrap().state().clone();
    h.state_mut().open_model(&b).unwrap();
    assert!(h.state().status().contains("unsaved changes kept in"), "{}", h.state().status());
    step_until(&mut h, "model b", |a| a.editor().is_some());
    assert_ne!(h.state().editor().unwrap().state().seed, 9191, "model b starts its own document");
    step_until(&mut h, "model b run", |a| a.is_idle());
    // Back to model a: its untitled document comes back as it was.
    h.state_mut().open_model(&a).unwrap();
    step_until(&mut h, "model a", |a| a.editor().is_some());
    assert!(h.state().status().contains("recovered"), "{}", h.state().status());
    assert_eq!(h.state().editor().unwrap().state(), &edited);
    step_until(&mut h, "render", |a| a.is_idle());

    // New on an edited untitled document: it is kept in its own copy (the slot is reused).
    h.state_mut().command(Command::SetSeed { seed: 5151 });
    step_until(&mut h, "rerun", |a| a.is_idle());
    let edited = h.state().editor().unwrap().state().clone();
    h.state_mut().new_document();
    assert!(h.state().status().contains("kept in"), "{}", h.state().status());
    let kept: Vec<_> = std::fs::read_dir(d.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".kept.ron"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(nvg_studio::document::Project::load(&kept[0]).unwrap().state, edited);
    step_until(&mut h, "new document run", |a| a.is_idle());

    // A project's newer autosave holds unsaved edits: opening the project recovers them.
    let project = d.path().join("p.ron");
    h.state_mut().save_project(&project).unwrap();
    h.state_mut().command(Command::SetSeed { seed: 6161 });
    step_until(&mut h, "rerun", |a| a.is_idle());
    let unsaved = h.state().editor().unwrap().state().clone();
    std::thread::sleep(Duration::from_millis(20));
    h.state_mut().write_autosave().unwrap();
    h.state_mut().open_project(&project).unwrap();
    assert!(h.state().status().contains("recovered"), "{}", h.state().status());
    assert_eq!(h.state().editor().unwrap().state(), &unsaved);
    assert!(h.state().editor().unwrap().dirty);

    step_until(&mut h, "render", |a| a.is_idle());

    // Closing the window with unsaved edits: with autosave on they go to the autosave and the
    // window closes without a question.
    h.state_mut().command(Command::SetSeed { seed: 7171 });
    let closing = h.state().editor().unwrap().state().clone();
    h.input_mut().viewports.entry(egui::ViewportId::ROOT).or_default().events.push(egui::ViewportEvent::Close);
    h.step();
    let cmds = h.output().viewport_output.get(&egui::ViewportId::ROOT).map(|v| v.commands.clone()).unwrap_or_default();
    assert!(!cmds.contains(&egui::ViewportCommand::CancelClose), "{cmds:?}");
    assert!(!h.state().close_dialog_open());
    let auto = nvg_studio::document::autosave_path(Some(&project), &h.state().editor().unwrap().model.hash);
    assert_eq!(nvg_studio::document::Project::load(&auto).unwrap().state.seed, closing.seed);
}
