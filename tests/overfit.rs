//! Overfit proofs at test size (issue 18): each branch alone memorises a handful of images —
//! the structure branch regenerates their stage maps from the true content, the content branch
//! reproduces their codes from the true structure — and training writes per-stage held-out
//! losses next to their baselines.

use burn::tensor::Device;
use nvg_studio::data::SyntheticShapes;
use nvg_studio::eval::overfit::{OverfitOptions, run_overfit};
use nvg_studio::model::generator::GeneratorConfig;
use nvg_studio::model::{Tokenizer, TokenizerConfig};
use nvg_studio::train::generator::Branches;
use nvg_studio::train::monitor::{LOG_FILE, read_log};

/// burn's device random stream is shared by the threads of this test binary: the runs take
/// turns so that each one's initialisation (and so its result) is the same every time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup() -> (std::sync::MutexGuard<'static, ()>, Device, TokenizerConfig, Tokenizer, SyntheticShapes) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::flex();
    dev.seed(5);
    let tcfg = TokenizerConfig::test_tiny();
    let tok = Tokenizer::new(&tcfg, &dev);
    let data = SyntheticShapes::new(24, tcfg.image_size as u32, 9).unwrap();
    (guard, dev, tcfg, tok, data)
}

#[test]
fn structure_branch_alone_memorises_the_stage_maps() {
    let (_serial, dev, tcfg, tok, data) = setup();
    let dir = tempfile::tempdir().unwrap();
    let opts = OverfitOptions { images: 4, steps: 600, batch_size: 4, lr: 3e-3, branches: Branches::Structure, flow_steps: 25, seed: 1 };
    let r = run_overfit(&GeneratorConfig::test_tiny(), &tok, &tcfg, &data, dir.path(), &opts, &dev, &mut |_| {}).unwrap();
    eprintln!("{:?}\n{:?}", r.structure, r.ari);
    assert!(r.worst_structure_ratio() <= 0.10, "structure loss ≤ 10 % of its baseline at every stage: {:?}", r.structure);
    for &(k, v, _, ctxfree) in &r.structure {
        assert!(v < ctxfree, "stage {k}: {v} beats the context-free denoiser {ctxfree}");
    }
    let (ari, noise) = (r.mean_ari(4), r.mean_noise_ari(4));
    assert!(ari >= 0.9, "regenerated maps: mean ARI {ari} (noise Split {noise})");
    assert!(noise < ari - 0.2, "a noise Split does clearly worse: {noise}");

    // The log holds held-out rows for every structure stage next to their baselines.
    let rows = read_log(&dir.path().join(LOG_FILE)).unwrap();
    let cfg = GeneratorConfig::test_tiny();
    for k in 0..cfg.num_structure_stages() {
        for (split, metric) in [("heldout", "structure"), ("heldout", "structure_decision"), ("baseline", "structure_baseline_ctxfree"), ("baseline", "structure_baseline_mean"), ("train", "structure")] {
            assert!(rows.iter().any(|r| r.split == split && r.metric == metric && r.stage == k), "{split} {metric} stage {k}");
        }
    }
    assert!(!rows.iter().any(|r| r.metric == "content_ce" && r.split != "baseline"), "content was not trained or scored");
}

#[test]
fn content_branch_alone_reproduces_the_codes() {
    let (_serial, dev, tcfg, tok, data) = setup();
    let dir = tempfile::tempdir().unwrap();
    let opts = OverfitOptions { images: 4, steps: 800, batch_size: 4, lr: 3e-3, branches: Branches::Content, flow_steps: 5, seed: 1 };
    let r = run_overfit(&GeneratorConfig::test_tiny(), &tok, &tcfg, &data, dir.path(), &opts, &dev, &mut |_| {}).unwrap();
    eprintln!("{:?}", r.top1);
    assert!(r.codes_reproduced() >= 0.95, "codes reproduced: {:?}", r.top1);
    let rows = read_log(&dir.path().join(LOG_FILE)).unwrap();
    for i in 0..GeneratorConfig::test_tiny().num_stages() {
        let held: Vec<f64> = rows.iter().filter(|r| r.split == "heldout" && r.metric == "content_ce" && r.stage == i).map(|r| r.value).collect();
        let base = rows.iter().find(|r| r.metric == "content_ce_baseline_unigram" && r.stage == i).map(|r| r.value).unwrap();
        assert!(held.len() >= 2, "stage {i}: evaluated during the run");
        assert!(*held.last().unwrap() < 0.5 * base, "stage {i}: CE {:?} vs unigram {base}", held.last());
    }
}

/// Both branches together: the report carries the sheet of generated images above the
/// memorised ones, one column per image (what `diagnose overfit --branch both` writes).
#[test]
fn both_branches_write_the_regenerated_sheet() {
    let (_serial, dev, tcfg, tok, data) = setup();
    let dir = tempfile::tempdir().unwrap();
    let opts = OverfitOptions { images: 3, steps: 10, batch_size: 3, lr: 3e-3, branches: Branches::Both, flow_steps: 3, seed: 2 };
    let r = run_overfit(&GeneratorConfig::test_tiny(), &tok, &tcfg, &data, dir.path(), &opts, &dev, &mut |_| {}).unwrap();
    let sheet = r.sheet.expect("a sheet for both branches");
    let tile = 3 * tcfg.image_size as u32;
    assert!(sheet.width() >= 3 * tile && sheet.width() < 4 * tile + 200, "three columns: {}", sheet.width());
    assert!(sheet.height() >= 2 * tile && sheet.height() < 3 * tile, "two rows: {}", sheet.height());
    assert_eq!(r.top1.len(), GeneratorConfig::test_tiny().num_stages());
    assert_eq!(r.ari.len(), GeneratorConfig::test_tiny().num_structure_stages());
}

#[test]
fn zero_images_is_a_one_line_error() {
    let (_serial, dev, tcfg, tok, data) = setup();
    let dir = tempfile::tempdir().unwrap();
    let opts = OverfitOptions { images: 0, ..OverfitOptions::default() };
    let e = run_overfit(&GeneratorConfig::test_tiny(), &tok, &tcfg, &data, dir.path(), &opts, &dev, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("--images") && !e.contains('\n'), "{e}");
    let opts = OverfitOptions { images: 1000, steps: 1, ..OverfitOptions::default() };
    let e = run_overfit(&GeneratorConfig::test_tiny(), &tok, &tcfg, &data, dir.path(), &opts, &dev, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("--images 1000") && e.contains("only"), "{e}");
}
