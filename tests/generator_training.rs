//! A short generator training run (tiny preset, a handful of images) lowers both losses,
//! resumes, and writes a checkpoint the sampler can use.

use burn::tensor::Device;
use nvg_studio::data::SyntheticShapes;
use nvg_studio::model::generator::GeneratorConfig;
use nvg_studio::model::{Tokenizer, TokenizerConfig};
use nvg_studio::sampler::{ImageJob, SamplerSettings, sample};
use nvg_studio::model::generator_io::load_generator;
use nvg_studio::train::generator::{GeneratorTrainOptions, train_generator};

/// burn's random initialisation draws from one generator per device, shared by the threads of
/// the test harness: the runs here take turns so that a run's weights depend on its seed alone.
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn short_run_lowers_both_losses_and_resumes() {
    let _turn = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::flex();
    dev.seed(2);
    let tcfg = TokenizerConfig::test_tiny();
    let tok = Tokenizer::new(&tcfg, &dev);
    let data = SyntheticShapes::new(12, tcfg.image_size as u32, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = GeneratorTrainOptions {
        steps: 60,
        batch_size: 6,
        lr: 3e-3,
        warmup_steps: 5,
        label_dropout: 0.0,
        checkpoint_every: 30,
        scale_images: 12,
        flip: false,
        ..Default::default()
    };
    // The first half stops at step 30 with the 60-step schedule; the resumed run finishes it.
    let first = GeneratorTrainOptions { stop_after: Some(30), checkpoint_every: 0, ..opts.clone() };
    let mut content = Vec::new();
    let mut structure = Vec::new();
    train_generator(&GeneratorConfig::test_tiny(), &tok, &tcfg, &data, dir.path(), &first, false, &dev, &mut |s| {
        content.push(s.content);
        structure.push(s.structure);
    })
    .unwrap();
    assert_eq!(content.len(), 30, "--stop-after 30 stops there");
    assert_eq!(load_generator(dir.path(), &dev).unwrap().0.step, 30, "and leaves a checkpoint");
    let mut steps = Vec::new();
    let cfg = train_generator(&GeneratorConfig::test_tiny(), &tok, &tcfg, &data, dir.path(), &opts, true, &dev, &mut |s| {
        steps.push(s.step);
        content.push(s.content);
        structure.push(s.structure);
    })
    .unwrap();
    assert_eq!(steps.first(), Some(&31));
    assert_eq!(content.len(), 60);
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (c0, c1) = (avg(&content[..8]), avg(&content[52..]));
    let (s0, s1) = (avg(&structure[..8]), avg(&structure[52..]));
    eprintln!("content {c0:.3} → {c1:.3}, structure {s0:.3} → {s1:.3}");
    assert!(c1 < c0, "content loss fell: {c0} → {c1}");
    assert!(s1 < s0, "structure loss fell: {s0} → {s1}");
    assert_eq!(cfg.num_classes, 4, "class count comes from the data");
    assert!(cfg.scale_factors.iter().all(|s| s.is_finite() && *s > 0.0));

    // The written (EMA) checkpoint samples a valid sequence.
    let (meta, g) = load_generator(dir.path(), &dev).unwrap();
    assert_eq!(meta.step, 60);
    assert_eq!(meta.extra["class_names"][0], "disc");
    let settings = SamplerSettings { flow_steps: 3, ..Default::default() };
    let out = sample(&g, &tok, tcfg.phi_weight, &[ImageJob::new(1, 0)], &settings, &mut |_| true, &|| false).unwrap();
    out.sequences[0].validate().unwrap();
}

/// The host training path (issue 19): a run stopped at a checkpoint and resumed ends with the
/// same weights, bit for bit, as the uninterrupted run; a run trained on the burn path resumes
/// on the host path and the other way round (same checkpoint format).
#[test]
fn host_path_resumes_bit_identical_and_across_paths() {
    use nvg_studio::train::fast::layout::{GenLayout, flatten};
    use nvg_studio::train::generator::TrainPath;
    let _turn = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::flex();
    dev.seed(5);
    let tcfg = TokenizerConfig::test_tiny();
    let tok = Tokenizer::new(&tcfg, &dev);
    let data = SyntheticShapes::new(12, tcfg.image_size as u32, 3).unwrap();
    let opts = GeneratorTrainOptions {
        steps: 12,
        batch_size: 4,
        lr: 3e-3,
        warmup_steps: 3,
        checkpoint_every: 6,
        scale_images: 12,
        eval_every: 6,
        eval_images: 4,
        stages_per_step: Some(2),
        path: TrainPath::Host,
        ..Default::default()
    };
    let shape = GeneratorConfig::test_tiny();
    let run = |dir: &std::path::Path, o: &GeneratorTrainOptions, resume: bool| {
        train_generator(&shape, &tok, &tcfg, &data, dir, o, resume, &dev, &mut |_| {}).unwrap();
    };
    let weights = |dir: &std::path::Path| {
        let (meta, g) = load_generator(dir, &dev).unwrap();
        (meta.step, flatten(&g, &GenLayout::new(g.config())))
    };
    let whole = tempfile::tempdir().unwrap();
    run(whole.path(), &opts, false);
    let parts = tempfile::tempdir().unwrap();
    run(parts.path(), &GeneratorTrainOptions { stop_after: Some(6), ..opts.clone() }, false);
    run(parts.path(), &opts, true);
    let train_state = |d: &std::path::Path| d.join(nvg_studio::train::generator::TRAIN_STATE_DIR);
    for (what, a, b) in [
        ("EMA", weights(whole.path()), weights(parts.path())),
        ("raw", weights(&train_state(whole.path())), weights(&train_state(parts.path()))),
    ] {
        assert_eq!((a.0, b.0), (12, 12));
        assert!(a.1.iter().zip(&b.1).all(|(x, y)| x.to_bits() == y.to_bits()), "{what} weights differ after resuming");
    }

    // burn → host and host → burn.
    for (first, second) in [(TrainPath::Burn, TrainPath::Host), (TrainPath::Host, TrainPath::Burn)] {
        let d = tempfile::tempdir().unwrap();
        run(d.path(), &GeneratorTrainOptions { stop_after: Some(6), path: first, ..opts.clone() }, false);
        let before = weights(&train_state(d.path()));
        run(d.path(), &GeneratorTrainOptions { path: second, ..opts.clone() }, true);
        let after = weights(&train_state(d.path()));
        assert_eq!((before.0, after.0), (6, 12), "{first:?} → {second:?}");
        assert!(before.1.iter().zip(&after.1).any(|(x, y)| x != y), "{first:?} → {second:?}: the resumed run trained");
        assert!(after.1.iter().all(|v| v.is_finite()));
    }
}

/// A stop request (what Ctrl+C sets) ends the run after the current step with a checkpoint of
/// that step; resuming finishes it.
#[test]
fn a_stop_request_checkpoints_the_current_step() {
    let _turn = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::flex();
    dev.seed(9);
    let tcfg = TokenizerConfig::test_tiny();
    let tok = Tokenizer::new(&tcfg, &dev);
    let data = SyntheticShapes::new(8, tcfg.image_size as u32, 3).unwrap();
    let opts = GeneratorTrainOptions { steps: 10, batch_size: 2, checkpoint_every: 100, eval_every: 0, scale_images: 8, ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let shape = GeneratorConfig::test_tiny();
    let mut last = 0;
    train_generator(&shape, &tok, &tcfg, &data, dir.path(), &opts, false, &dev, &mut |s| {
        last = s.step;
        if s.step == 4 {
            nvg_studio::train::stop_flag().store(true, std::sync::atomic::Ordering::SeqCst);
        }
    })
    .unwrap();
    nvg_studio::train::clear_stop();
    assert_eq!(last, 5, "the step after the request finishes, then the run stops");
    assert_eq!(load_generator(dir.path(), &dev).unwrap().0.step, 5);
    let mut steps = Vec::new();
    train_generator(&shape, &tok, &tcfg, &data, dir.path(), &opts, true, &dev, &mut |s| steps.push(s.step)).unwrap();
    assert_eq!((steps.first(), steps.last()), (Some(&6), Some(&10)));
}

/// A checkpoint write cut short between its files (here: the host optimizer state of another
/// step) is noticed on resume: the weights win, the moments start afresh, the run finishes.
#[test]
fn moments_of_another_step_are_not_resumed_silently() {
    use nvg_studio::train::fast::HOST_OPTIMIZER_FILE;
    use nvg_studio::train::generator::{TRAIN_STATE_DIR, TrainPath};
    let _turn = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::flex();
    dev.seed(4);
    let tcfg = TokenizerConfig::test_tiny();
    let tok = Tokenizer::new(&tcfg, &dev);
    let data = SyntheticShapes::new(8, tcfg.image_size as u32, 3).unwrap();
    let opts = GeneratorTrainOptions { steps: 6, batch_size: 2, checkpoint_every: 2, eval_every: 0, scale_images: 8, path: TrainPath::Host, ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let shape = GeneratorConfig::test_tiny();
    let state = dir.path().join(TRAIN_STATE_DIR).join(HOST_OPTIMIZER_FILE);
    train_generator(&shape, &tok, &tcfg, &data, dir.path(), &GeneratorTrainOptions { stop_after: Some(2), ..opts.clone() }, false, &dev, &mut |_| {}).unwrap();
    let at_two = std::fs::read(&state).unwrap();
    train_generator(&shape, &tok, &tcfg, &data, dir.path(), &GeneratorTrainOptions { stop_after: Some(4), ..opts.clone() }, true, &dev, &mut |_| {}).unwrap();
    // The optimizer file of step 2 next to the weights of step 4.
    std::fs::write(&state, &at_two).unwrap();
    let mut steps = Vec::new();
    train_generator(&shape, &tok, &tcfg, &data, dir.path(), &opts, true, &dev, &mut |s| steps.push(s.step)).unwrap();
    assert_eq!(steps, vec![5, 6]);
    assert_eq!(load_generator(dir.path(), &dev).unwrap().0.step, 6);
}
