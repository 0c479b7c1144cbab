//! A tokenizer trained briefly inside a test reconstructs better at every later stage, and
//! training resumes from its checkpoint. In its own test binary: burn's device RNG is global, so
//! other tests seeding it concurrently would make the initialisation (and the numbers) vary.

use burn::tensor::Device;
use nvg_studio::data::SyntheticShapes;
use nvg_studio::model::TokenizerConfig;
use nvg_studio::model::tokenizer_io::load_tokenizer;
use nvg_studio::train::{TokenizerTrainOptions, train_tokenizer};

#[test]
fn brief_training_gives_psnr_rising_at_every_stage_and_resumes() {
    let dev = Device::flex();
    dev.seed(0);
    let cfg = TokenizerConfig::test_tiny();
    let data = SyntheticShapes::new(96, cfg.image_size as u32, 11).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = TokenizerTrainOptions {
        steps: 200,
        batch_size: 8,
        lr: 2e-3,
        warmup_steps: 10,
        soft_warmup_steps: 30,
        checkpoint_every: 100,
        eval_images: 16,
        holdout_fraction: 0.2,
        ..Default::default()
    };
    let mut first = TokenizerTrainOptions { steps: 100, ..opts.clone() };
    first.checkpoint_every = 100;
    let mut losses = Vec::new();
    train_tokenizer(&cfg, &data, dir.path(), &first, false, &dev, &mut |s| losses.push(s.loss)).unwrap();
    // Resume from step 60 up to 120.
    let mut steps_seen = Vec::new();
    let report = train_tokenizer(&cfg, &data, dir.path(), &opts, true, &dev, &mut |s| {
        steps_seen.push(s.step);
        losses.push(s.loss);
    })
    .unwrap();
    assert_eq!(steps_seen.first(), Some(&101), "resume continues after the checkpoint");
    assert_eq!(report.steps, 200);
    let head: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let tail: f64 = losses[losses.len() - 10..].iter().sum::<f64>() / 10.0;
    assert!(tail < head, "loss fell: {head:.4} → {tail:.4}");
    let p = &report.psnr_per_stage;
    eprintln!("PSNR per stage: {p:?}");
    for w in p.windows(2) {
        assert!(w[1] > w[0], "PSNR must rise strictly at every stage: {p:?}");
    }
    let (meta, _) = load_tokenizer(dir.path(), Some(&cfg), &dev).unwrap();
    assert_eq!(meta.step, 200);
}

