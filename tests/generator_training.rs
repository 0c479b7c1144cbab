//! A short generator training run (tiny preset, a handful of images) lowers both losses,
//! resumes, and writes a checkpoint the sampler can use.

use burn::tensor::Device;
use nvg_studio::data::SyntheticShapes;
use nvg_studio::model::generator::GeneratorConfig;
use nvg_studio::model::{Tokenizer, TokenizerConfig};
use nvg_studio::sampler::{ImageJob, SamplerSettings, sample};
use nvg_studio::model::generator_io::load_generator;
use nvg_studio::train::generator::{GeneratorTrainOptions, train_generator};

#[test]
fn short_run_lowers_both_losses_and_resumes() {
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
