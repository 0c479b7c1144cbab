//! The project file stays byte-compatible: a version-1 project with every field in use (a
//! generated sequence, a class map, a lock, a blueprint, stage seeds, changed settings and a
//! history entry) reads back and writes out to the same bytes. Written before the layout step of
//! issue 21 moved the types around, so any change to the format shows up here.
//!
//! The fixture was made by the ignored test `bless_fixture` (NVG_BLESS=1 cargo test --test
//! project_format -- --ignored) on the tiny test model; it is committed and not regenerated.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nvg_studio::model::backend::BackendChoice;
use nvg_studio::document::{Command, Editor, HistoryEntry, Project, State, run_spec};
use nvg_studio::worker::{Event, Request, WorkerHandle};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/project/v1-full.ron")
}

#[test]
fn a_version_1_project_reads_and_writes_byte_for_byte() {
    let path = fixture();
    let text = std::fs::read_to_string(&path).unwrap();
    let p = Project::load(&path).unwrap();
    assert_eq!(p.to_ron().unwrap(), text, "the written project differs from {}", path.display());
    // Every part of the format is exercised by the fixture.
    let s = &p.state;
    assert!(s.sequence.is_some() && s.class_map.is_some() && s.lock.is_some() && s.blueprint.is_some());
    assert!(!s.stage_seeds.is_empty());
    assert_ne!(s.settings, nvg_studio::document::SamplerSettings::editor());
    assert_eq!(p.history.len(), 1);
    assert!(p.history[0].thumbnail().is_some());
    // And a save through the atomic writer gives the same bytes.
    let d = tempfile::tempdir().unwrap();
    p.save(&d.path().join("p.ron")).unwrap();
    assert_eq!(std::fs::read_to_string(d.path().join("p.ron")).unwrap(), text);
}

#[test]
#[ignore = "writes the fixture; run with NVG_BLESS=1 only when the format changes on purpose"]
fn bless_fixture() {
    if std::env::var("NVG_BLESS").as_deref() != Ok("1") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("model");
    common::tiny_model_dir(&m, 3);
    let w = WorkerHandle::spawn(m, BackendChoice::Cpu, std::sync::Arc::new(|_| {}));
    let info = match w.recv_timeout(Duration::from_secs(60)) {
        Some(Event::Loaded { info, .. }) => info,
        other => panic!("expected Loaded, got {other:?}"),
    };
    let mut state = State::new(1, 42);
    state.settings.flow_steps = 3;
    let mut ed = Editor::new(info.clone(), state);
    let run = |ed: &mut Editor| {
        let spec = run_spec(ed.state()).expect("something stale");
        let rev = ed.revision();
        w.send(Request::Run { revision: rev, spec: Box::new(spec) });
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(120) {
            let Some(ev) = w.recv_timeout(Duration::from_millis(200)) else { continue };
            match ev {
                Event::Stage { revision, stage, structure, codes, .. } => {
                    ed.accept_stage(revision, stage, &structure, &codes).unwrap();
                }
                Event::Finished { revision, .. } if revision == rev => return,
                Event::Failed { message, .. } => panic!("{message}"),
                _ => {}
            }
        }
        panic!("no result");
    };
    run(&mut ed);
    ed.apply(&Command::UseAsBlueprint { source: "fixture".into(), keep_structure_upto: 2 }).unwrap();
    ed.apply(&Command::PaintClass { positions: vec![0, 1, 4, 5], class: 2 }).unwrap();
    ed.apply(&Command::SetLock { from_stage: 2, positions: vec![10, 11], locked: true }).unwrap();
    ed.apply(&Command::RerollStage { stage: 3, seed: 7 }).unwrap();
    run(&mut ed);
    let state = ed.state().clone();
    let entry = HistoryEntry::new(1, "run 1 · fixture".into(), state.clone(), 2, &[0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 255]);
    let p = Project::new(info, state, vec![entry]);
    p.save(&fixture()).unwrap();
}

/// A project whose sequence does not state its codebook size and holds a code past the model's
/// codebook is refused at load, naming the stage and cluster (it used to reach the worker and
/// leave the editor "running" for ever).
#[test]
fn a_project_with_codes_past_the_codebook_is_refused() {
    let mut p = Project::load(&fixture()).unwrap();
    let seq = p.state.sequence.as_mut().unwrap();
    seq.codebook_size = None;
    seq.stages[3].codes[0] = p.model.codebook_size as u32;
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("bad.ron");
    std::fs::write(&path, p.to_ron().unwrap()).unwrap();
    let e = Project::load(&path).unwrap_err().to_string();
    assert!(e.contains("stages[3].codes[0]") && e.contains("codebook") && !e.contains('\n'), "{e}");
}
