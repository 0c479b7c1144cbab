use super::*;

/// A 4×4 grid (5 stages), 3 classes.
fn model() -> ModelInfo {
    ModelInfo {
        name: "test".into(),
        hash: "abc".into(),
        grid_size: 4,
        num_stages: 5,
        codebook_size: 16,
        class_names: vec!["a".into(), "b".into(), "c".into()],
        image_size: 16,
    }
}

/// A balanced hierarchy on a 4×4 grid: stage s label = position >> (4 − s).
fn sequence() -> GranularitySequence {
    let stages = (0..5)
        .map(|s| SequenceStage {
            structure: (0..16u32).map(|p| p >> (4 - s)).collect(),
            codes: (0..(1u32 << s)).map(|c| (c + s as u32) % 16).collect(),
        })
        .collect();
    GranularitySequence::new(4, Some(16), stages)
}

fn generated() -> State {
    let mut s = State::new(0, 7);
    s.sequence = Some(sequence());
    s.stale_from = None;
    s
}

#[test]
fn set_class_marks_everything_stale_and_noop_makes_no_change() {
    let m = model();
    let mut s = generated();
    assert!(!apply(&mut s, &m, &Command::SetClass { class: 0 }).unwrap().changed);
    assert_eq!(s.stale_from, None);
    assert!(apply(&mut s, &m, &Command::SetClass { class: 2 }).unwrap().changed);
    assert_eq!((s.class, s.stale_from), (2, Some(0)));
    let err = apply(&mut s, &m, &Command::SetClass { class: 3 }).unwrap_err();
    assert!(err.to_string().contains("class 3 is out of range"), "{err}");
}

#[test]
fn class_brush_creates_map_from_image_class() {
    let m = model();
    let mut s = generated();
    apply(&mut s, &m, &Command::PaintClass { positions: vec![0, 1], class: 2 }).unwrap();
    let map = s.class_map.clone().unwrap();
    assert_eq!(&map[..3], &[2, 2, 0]);
    assert_eq!(s.stale_from, Some(0));
    assert!(apply(&mut s, &m, &Command::PaintClass { positions: vec![99], class: 1 }).is_err());
    apply(&mut s, &m, &Command::ClearClassMap).unwrap();
    assert!(s.class_map.is_none());
}

#[test]
fn paint_structure_moves_children_and_stales_from_the_stage() {
    let m = model();
    let mut s = generated();
    // Stage 2: labels p>>2 → parent (stage 1) p>>3. Position 0 is in cluster 0 (parent 0).
    let e = apply(&mut s, &m, &Command::PaintStructure { stage: 2, parent: Some(0), positions: vec![0, 1], child: 1 }).unwrap();
    assert!(e.changed && e.note.is_none());
    let seq = s.sequence.as_ref().unwrap();
    assert_eq!(&seq.stages[2].structure[..5], &[1, 1, 0, 0, 1]);
    assert_eq!(s.stale_from, Some(2));
    seq.validate().unwrap();
    // Stages before the painted one are untouched.
    assert_eq!(seq.stages[1], sequence().stages[1]);
}

#[test]
fn paint_structure_is_clipped_to_the_parent_and_says_why() {
    let m = model();
    let mut s = generated();
    // Positions 8.. belong to parent 1 at stage 1; the stroke started in parent 0.
    let e = apply(&mut s, &m, &Command::PaintStructure { stage: 2, parent: Some(0), positions: vec![0, 8, 9], child: 1 }).unwrap();
    assert!(e.changed);
    assert!(e.note.unwrap().contains("clipped to parent cluster 0 of stage 1"));
    let seq = s.sequence.as_ref().unwrap();
    assert_eq!(seq.stages[2].structure[8], 2, "other parent untouched");
    seq.validate().unwrap();
}

#[test]
fn painting_can_empty_a_child_and_stays_valid() {
    let m = model();
    let mut s = generated();
    apply(&mut s, &m, &Command::FillCluster { stage: 1, cluster: 1, fill: Fill::Child(0) }).unwrap();
    let seq = s.sequence.as_ref().unwrap();
    assert!(seq.stages[1].structure.iter().all(|&l| l == 0));
    // Later stages are re-nested under the new parents, so the sequence stays a valid hierarchy.
    seq.validate().unwrap();
    assert_eq!(s.stale_from, Some(1));
}

#[test]
fn layout_sets_inside_to_b_and_the_rest_to_a_unbalanced() {
    let m = model();
    let mut s = generated();
    apply(&mut s, &m, &Command::PaintLayout { stage: 1, parent: None, inside: vec![5, 6, 9] }).unwrap();
    let seq = s.sequence.as_ref().unwrap();
    let ones: Vec<usize> = (0..16).filter(|&p| seq.stages[1].structure[p] == 1).collect();
    assert_eq!(ones, vec![5, 6, 9]);
    seq.validate().unwrap();
    assert_eq!(s.stale_from, Some(1));
}

#[test]
fn fill_flip_moves_a_cluster_to_its_sibling() {
    let m = model();
    let mut s = generated();
    apply(&mut s, &m, &Command::FillCluster { stage: 3, cluster: 5, fill: Fill::Flip }).unwrap();
    let seq = s.sequence.as_ref().unwrap();
    assert_eq!(&seq.stages[3].structure[10..12], &[4, 4]);
    assert!(apply(&mut s, &m, &Command::FillCluster { stage: 3, cluster: 5, fill: Fill::Flip }).is_err(), "now empty");
}

#[test]
fn locked_positions_survive_brush_strokes() {
    let m = model();
    let mut s = generated();
    apply(&mut s, &m, &Command::SetLock { from_stage: 1, positions: vec![0], locked: true }).unwrap();
    let e = apply(&mut s, &m, &Command::PaintStructure { stage: 2, parent: Some(0), positions: vec![0, 1], child: 1 }).unwrap();
    assert!(e.note.unwrap().contains("1 locked position(s) kept"));
    let seq = s.sequence.as_ref().unwrap();
    assert_eq!(&seq.stages[2].structure[..2], &[0, 1]);
    // Unlocking everything drops the lock.
    apply(&mut s, &m, &Command::SetLock { from_stage: 1, positions: vec![0], locked: false }).unwrap();
    assert!(s.lock.is_none());
    apply(&mut s, &m, &Command::LockStage { stage: 2 }).unwrap();
    assert!(s.is_locked(2, 15) && !s.is_locked(1, 15));
    // A whole locked stage refuses every stroke.
    let e = apply(&mut s, &m, &Command::PaintStructure { stage: 3, parent: None, positions: (0..16).collect(), child: 1 }).unwrap();
    assert!(!e.changed);
}

#[test]
fn reroll_stales_only_from_that_stage() {
    let m = model();
    let mut s = generated();
    apply(&mut s, &m, &Command::RerollStage { stage: 3, seed: 99 }).unwrap();
    assert_eq!((s.seed_of_stage(3), s.seed_of_stage(2), s.stale_from), (99, 7, Some(3)));
    apply(&mut s, &m, &Command::SetSeed { seed: 5 }).unwrap();
    assert!(s.stage_seeds.is_empty());
    assert_eq!(s.stale_from, Some(0));
}

#[test]
fn accept_stage_fills_a_blank_sequence_stage_by_stage() {
    let m = model();
    let mut s = State::new(1, 3);
    let seq = sequence();
    for st in 0..5 {
        accept_stage(&mut s, &m, st, &seq.stages[st].structure, &seq.stages[st].codes).unwrap();
        assert_eq!(s.stale_from, (st < 4).then_some(st + 1));
    }
    assert_eq!(s.sequence.as_ref(), Some(&seq));
    assert!(accept_stage(&mut s, &m, 2, &[0; 3], &[0; 4]).is_err());
}

#[test]
fn an_interrupted_run_keeps_a_valid_hierarchy_and_resumes_one_stage_early() {
    let m = model();
    // An older result, then a new run that finished only stages 0–2 (other maps at stages 1–2).
    let mut s = generated();
    apply(&mut s, &m, &Command::SetClass { class: 1 }).unwrap();
    // Stage 1 splits by column parity, stage 2 then by the next bit: nested, unlike `sequence()`.
    let new: Vec<Vec<u32>> = vec![vec![0; 16], (0..16u32).map(|p| p % 2).collect(), (0..16u32).map(|p| (p % 2) * 2 + (p >> 1) % 2).collect()];
    for (st, map) in new.iter().enumerate() {
        accept_stage(&mut s, &m, st, map, &vec![1; 1 << st]).unwrap();
    }
    assert_eq!((s.stale_from, s.stale_map), (Some(3), true));
    // The left-over stages 3–4 were re-nested under the new stage 2: a valid hierarchy.
    let seq = s.sequence.as_ref().unwrap();
    check_sequence(seq, &m).unwrap();
    for p in 0..16 {
        assert_eq!(seq.stages[3].structure[p] >> 1, seq.stages[2].structure[p]);
    }
    // The next run regenerates map 3: it starts at stage 2.
    assert_eq!(run_spec(&s).unwrap().from_stage(), 2);
    // An edit below the stale region changes nothing about that.
    apply(&mut s, &m, &Command::RerollStage { stage: 4, seed: 5 }).unwrap();
    assert_eq!(run_spec(&s).unwrap().from_stage(), 2);
    // Painting the left-over map makes it the user's: the run keeps it and starts at stage 3.
    apply(&mut s, &m, &Command::PaintStructure { stage: 3, parent: None, positions: vec![0, 1], child: 1 }).unwrap();
    assert_eq!((s.stale_from, s.stale_map), (Some(3), false));
    assert_eq!(run_spec(&s).unwrap().from_stage(), 3);
    // An edit before the stale region: the map there is current.
    let mut t = s.clone();
    t.stale_map = true;
    apply(&mut t, &m, &Command::RerollStage { stage: 1, seed: 9 }).unwrap();
    assert_eq!((t.stale_from, t.stale_map), (Some(1), false));
    assert_eq!(run_spec(&t).unwrap().from_stage(), 1);
}

#[test]
fn renesting_keeps_every_position_s_code() {
    // Swap the two halves at stage 1: every later cluster is relabelled, none merges, and each
    // position must keep its code (locks look codes up by label).
    let old = sequence();
    let mut seq = old.clone();
    seq.stages[1].structure = (0..16u32).map(|p| 1 - (p >> 3)).collect();
    renest_below(&mut seq, 1);
    check_sequence(&seq, &model()).unwrap();
    for s in 2..5 {
        for p in 0..16 {
            let (a, b) = (&old.stages[s], &seq.stages[s]);
            assert_ne!(a.structure[p], b.structure[p], "relabelled");
            assert_eq!(b.codes[b.structure[p] as usize], a.codes[a.structure[p] as usize], "stage {s} position {p}");
        }
    }
}

#[test]
fn run_spec_resumes_and_forces_the_blueprint() {
    let m = model();
    let mut s = generated();
    assert!(run_spec(&s).is_none());
    apply(&mut s, &m, &Command::UseAsBlueprint { source: "x".into(), keep_structure_upto: 3 }).unwrap();
    apply(&mut s, &m, &Command::SetClass { class: 1 }).unwrap();
    let spec = run_spec(&s).unwrap();
    assert_eq!(spec.from_stage(), 0);
    assert_eq!(spec.job.forced_structure.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    // Painting stage 2 limits the blueprint to stage 2 and resumes there.
    apply(&mut s, &m, &Command::PaintStructure { stage: 2, parent: None, positions: vec![0], child: 1 }).unwrap();
    assert_eq!(s.blueprint.as_ref().unwrap().keep_structure_upto, 2);
    s.stale_from = Some(2);
    let spec = run_spec(&s).unwrap();
    assert_eq!(spec.from_stage(), 2);
    assert!(spec.job.forced_structure.is_empty());
    assert!(apply(&mut s, &m, &Command::SetBlueprintKeep { keep_structure_upto: 5 }).is_err());
}

#[test]
fn bad_sequences_are_refused() {
    let m = model();
    let mut s = generated();
    let mut bad = sequence();
    bad.stages[3].structure[0] = 7; // parent 3 ≠ stage-2 label 0
    let err = apply(&mut s, &m, &Command::SetSequence { sequence: bad }).unwrap_err();
    assert!(err.to_string().contains("stage 3"), "{err}");
    let mut other = sequence();
    other.grid_size = 2;
    assert!(apply(&mut s, &m, &Command::SetSequence { sequence: other }).is_err());
    assert_eq!(s, generated(), "state untouched on error");
}

#[test]
fn undo_redo_round_trips_every_command() {
    let m = model();
    let cmds = vec![
        Command::SetClass { class: 1 },
        Command::PaintClass { positions: vec![3, 4], class: 2 },
        Command::PaintStructure { stage: 1, parent: Some(0), positions: vec![0, 1, 2], child: 1 },
        Command::FillCluster { stage: 2, cluster: 2, fill: Fill::Flip },
        Command::PaintLayout { stage: 1, parent: None, inside: vec![5, 6, 9, 10] },
        Command::SetLock { from_stage: 2, positions: vec![5, 6], locked: true },
        Command::LockStage { stage: 3 },
        Command::ClearLock,
        Command::SetSeed { seed: 11 },
        Command::RerollStage { stage: 2, seed: 5 },
        Command::SetSettings(SamplerSettings { gumbel: true, ..SamplerSettings::editor() }),
        Command::AcceptVariation { stage: 1, seed: 3, sequence: sequence() },
        Command::UseAsBlueprint { source: "r".into(), keep_structure_upto: 2 },
        Command::SetBlueprintKeep { keep_structure_upto: 4 },
        Command::ClearBlueprint,
        Command::ClearClassMap,
        Command::SetSequence { sequence: sequence() },
        Command::Restore { state: Box::new(State::new(2, 1)) },
    ];
    let mut ed = Editor::new(m, generated());
    let mut states = vec![ed.state().clone()];
    for c in &cmds {
        let e = ed.apply(c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert!(e.changed, "{c:?} changed nothing");
        states.push(ed.state().clone());
    }
    assert_eq!(ed.undo_len(), cmds.len());
    for i in (0..cmds.len()).rev() {
        assert!(matches!(ed.undo(), UndoOutcome::Done(_)));
        assert_eq!(ed.state(), &states[i], "undo of {:?}", cmds[i]);
    }
    assert_eq!(ed.undo(), UndoOutcome::Nothing);
    for (i, c) in cmds.iter().enumerate() {
        ed.redo();
        assert_eq!(ed.state(), &states[i + 1], "redo of {c:?}");
    }
    assert_eq!(ed.redo(), UndoOutcome::Nothing);
}

#[test]
fn no_op_commands_make_no_undo_point_and_keep_the_revision() {
    let mut ed = Editor::new(model(), generated());
    let r = ed.revision();
    ed.apply(&Command::SetClass { class: 0 }).unwrap();
    ed.apply(&Command::ClearLock).unwrap();
    ed.apply(&Command::PaintStructure { stage: 2, parent: None, positions: vec![], child: 0 }).unwrap();
    assert_eq!((ed.undo_len(), ed.revision()), (0, r));
}

#[test]
fn results_of_an_older_revision_are_dropped() {
    let mut ed = Editor::new(model(), generated());
    ed.apply(&Command::SetClass { class: 2 }).unwrap();
    let old = ed.revision();
    ed.apply(&Command::SetSeed { seed: 1 }).unwrap();
    let seq = sequence();
    assert!(!ed.accept_stage(old, 0, &seq.stages[0].structure, &[9]).unwrap());
    assert_eq!(ed.state().sequence.as_ref().unwrap().stages[0].codes, seq.stages[0].codes);
    assert!(ed.accept_stage(ed.revision(), 0, &seq.stages[0].structure, &[9]).unwrap());
    assert_eq!(ed.state().sequence.as_ref().unwrap().stages[0].codes, vec![9]);
    // Accepting results made no undo point: undo goes back to before the seed change.
    ed.undo();
    assert_eq!(ed.state().seed, 7);
}

#[test]
fn project_round_trips_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.ron");
    let mut state = generated();
    state.class_map = Some(vec![1; 16]);
    state.lock = Some(Lock { from_stage: 2, mask: (0..16).map(|p| p % 3 == 0).collect() });
    let entry = HistoryEntry::new(1, "run 1".into(), state.clone(), 2, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 255]);
    let p = Project::new(model(), state, vec![entry]);
    p.save(&path).unwrap();
    let q = Project::load(&path).unwrap();
    assert_eq!(p, q);
    assert_eq!(q.history[0].thumbnail().unwrap()[11], 255);
    assert!(!dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp")));
}

#[test]
fn damaged_projects_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = Project::new(model(), generated(), vec![]).to_ron().unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("trunc.ron", good[..good.len() / 2].to_string(), "damaged or truncated"),
        ("garbage.ron", "this is not ron {".into(), "not an nvg-studio project"),
        ("other.ron", "(format: \"nvg-sequence\", version: 1)".into(), "not an nvg-studio project"),
        ("newer.ron", good.replace("version: 1", "version: 9"), "newer nvg-studio"),
        ("badseq.ron", good.replacen("codes: [0]", "codes: [0, 1]", 1), "sequence"),
    ];
    for (name, text, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let err = Project::load(&path).unwrap_err().to_string();
        assert!(err.contains(want) && err.contains(name) && !err.contains('\n'), "{name}: {err}");
    }
    let err = Project::load(&dir.path().join("missing.ron")).unwrap_err().to_string();
    assert!(err.contains("missing.ron"), "{err}");
}

#[test]
fn project_for_another_model_is_refused_or_noted() {
    let p = Project::new(model(), generated(), vec![]);
    let path = Path::new("x.ron");
    let mut other = model();
    other.grid_size = 8;
    let err = p.check_model(path, &other).unwrap_err().to_string();
    assert!(err.contains("4×4 grid") && err.contains("--model"), "{err}");
    let mut renamed = model();
    renamed.class_names[0] = "zebra".into();
    assert!(p.check_model(path, &renamed).is_err());
    let mut reweighted = model();
    reweighted.hash = "def".into();
    assert!(p.check_model(path, &reweighted).unwrap().unwrap().contains("other weights"));
    assert_eq!(p.check_model(path, &model()).unwrap(), None);
}

#[test]
fn save_to_a_read_only_place_fails_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("p.ron");
    let err = Project::new(model(), generated(), vec![]).save(&missing).unwrap_err().to_string();
    assert!(err.contains("p.ron"), "{err}");
}

#[test]
fn autosave_sits_next_to_the_project() {
    assert_eq!(autosave_path(Some(Path::new("/a/b/flamingo.ron")), "ab12"), Path::new("/a/b/.flamingo.autosave.ron"));
    let (a, b) = (autosave_path(None, "ab12"), autosave_path(None, "cd34"));
    assert_ne!(a, b, "one untitled slot per model");
    assert!(a.file_name().unwrap().to_string_lossy().starts_with("untitled-ab12"));
}

use std::path::Path;

/// A random command for [`model`]: mostly valid, sometimes out of range (stages past the last,
/// positions past the grid, classes past the list), so that refusals are exercised too.
fn random_command(rng: &mut rand_chacha::ChaCha8Rng) -> Command {
    use rand::Rng;
    let stage = |rng: &mut rand_chacha::ChaCha8Rng| -> usize { if rng.random_bool(0.1) { rng.random_range(0..9) } else { rng.random_range(1..5) } };
    let positions = |rng: &mut rand_chacha::ChaCha8Rng| -> Vec<usize> {
        let top = if rng.random_bool(0.05) { 40 } else { 16 };
        (0..rng.random_range(0..8)).map(|_| rng.random_range(0..top)).collect()
    };
    let class = |rng: &mut rand_chacha::ChaCha8Rng| if rng.random_bool(0.05) { 7 } else { rng.random_range(0..3) };
    match rng.random_range(0..17) {
        0 => Command::SetClass { class: class(rng) },
        1 => Command::PaintClass { positions: positions(rng), class: class(rng) },
        2 => Command::ClearClassMap,
        3 | 4 => {
            let s = stage(rng);
            let parent = if rng.random_bool(0.5) { Some(rng.random_range(0..(1u32 << s.saturating_sub(1).min(5)))) } else { None };
            Command::PaintStructure { stage: s, parent, positions: positions(rng), child: rng.random_range(0..2) }
        }
        5 => Command::PaintLayout { stage: stage(rng), parent: None, inside: positions(rng) },
        6 => {
            let s = stage(rng);
            let fill = if rng.random_bool(0.5) { Fill::Flip } else { Fill::Child(rng.random_range(0..2)) };
            Command::FillCluster { stage: s, cluster: rng.random_range(0..(1u32 << s.min(5))), fill }
        }
        7 => Command::SetLock { from_stage: stage(rng), positions: positions(rng), locked: rng.random_bool(0.7) },
        8 => Command::LockStage { stage: stage(rng) },
        9 => Command::ClearLock,
        10 => Command::SetSeed { seed: rng.random_range(0..5) },
        11 => Command::RerollStage { stage: stage(rng), seed: rng.random_range(0..5) },
        12 => Command::SetSettings(SamplerSettings { gumbel: rng.random_bool(0.5), flow_steps: rng.random_range(1..30), ..SamplerSettings::editor() }),
        13 => Command::UseAsBlueprint { source: "r".into(), keep_structure_upto: stage(rng) },
        14 => Command::SetBlueprintKeep { keep_structure_upto: stage(rng) },
        15 => Command::ClearBlueprint,
        _ => Command::AcceptVariation { stage: stage(rng), seed: rng.random_range(0..5), sequence: sequence() },
    }
}

/// Property test (issues 22 and 23): 1,000 random sequences of up to 24 commands never panic;
/// after every command the state fits the model (hierarchy, codes, class map, lock, blueprint);
/// no command changes the sampler settings except `SetSettings`, nor the class except
/// `SetClass`; and undoing everything gives back the start, redoing everything the end.
#[test]
fn random_edit_sequences_keep_the_state_valid_and_undo_exactly() {
    use rand::{Rng, SeedableRng};
    let m = model();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(22);
    let (mut applied, mut refused) = (0, 0);
    for case in 0..1000 {
        let mut ed = Editor::new(m.clone(), generated());
        let start = ed.state().clone();
        let mut states = vec![start.clone()];
        for _ in 0..rng.random_range(1..=24) {
            let cmd = random_command(&mut rng);
            let before = ed.state().clone();
            match ed.apply(&cmd) {
                Ok(e) => {
                    applied += 1;
                    if e.changed {
                        states.push(ed.state().clone());
                    }
                }
                Err(err) => {
                    refused += 1;
                    assert!(!err.to_string().contains('\n'), "case {case}: {cmd:?}: {err}");
                    assert_eq!(ed.state(), &before, "case {case}: a refused {cmd:?} changed the state");
                }
            }
            let s = ed.state();
            check_state(s, &m).unwrap_or_else(|e| panic!("case {case}: after {cmd:?}: {e}"));
            if !matches!(cmd, Command::SetSettings(_)) {
                assert_eq!(s.settings, before.settings, "case {case}: {cmd:?} changed the settings");
            }
            if !matches!(cmd, Command::SetClass { .. }) {
                assert_eq!(s.class, before.class, "case {case}: {cmd:?} changed the class");
            }
        }
        let end = ed.state().clone();
        for i in (0..states.len() - 1).rev() {
            assert!(matches!(ed.undo(), UndoOutcome::Done(_)), "case {case}: undo {i}");
            assert_eq!(ed.state(), &states[i], "case {case}: undo back to state {i}");
        }
        assert_eq!(ed.state(), &start);
        while let UndoOutcome::Done(_) = ed.redo() {}
        assert_eq!(ed.state(), &end, "case {case}: redo all");
    }
    assert!(applied > 5000 && refused > 100, "{applied} applied, {refused} refused: the generator covers too little");
}
