//! The command line as a user meets it: outputs written, bad input answered with one line
//! naming the file and the problem, a non-zero exit code, and never a panic.

mod common;

use std::path::Path;

use burn::tensor::Device;
use nvg_studio::granularity::GranularitySequence;
use nvg_studio::model::tokenizer_io::save_tokenizer;
use nvg_studio::model::{Tokenizer, TokenizerConfig};

use common::{bin, one_error_line, run};

fn assert_clean_error(stderr: &str, needle: &str) {
    let line = one_error_line(stderr);
    assert!(line.contains(needle), "error should name {needle}: {stderr}");
}

fn tiny_model(dir: &Path) -> TokenizerConfig {
    let dev = Device::flex();
    dev.seed(5);
    let cfg = TokenizerConfig::test_tiny();
    save_tokenizer(dir, &cfg, &Tokenizer::new(&cfg, &dev), 0, serde_json::Value::Null).unwrap();
    cfg
}

#[test]
fn encode_writes_strip_and_sequence_for_any_pixel_format_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tok");
    let cfg = tiny_model(&model);
    // Grayscale, RGBA, 16-bit and a non-square wrong-size image are all accepted.
    let inputs = [
        ("gray.png", image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(20, 20, |x, _| image::Luma([(x * 12) as u8])))),
        ("rgba.png", image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(16, 16, |x, y| image::Rgba([x as u8 * 16, y as u8 * 16, 0, (x * 16) as u8])))),
        ("deep.png", image::DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(16, 16, |x, _| image::Rgb([x as u16 * 4000, 0, 65535])))),
        ("wide.png", image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(40, 24, |x, y| image::Rgb([x as u8 * 6, y as u8 * 10, 90])))),
    ];
    for (name, img) in inputs {
        let p = dir.path().join(name);
        img.save(&p).unwrap();
        let strip = dir.path().join(format!("{name}.strip.png"));
        let seq = dir.path().join(format!("{name}.ron"));
        let (ok, _, err) = run(bin().arg("encode").arg(&p).arg("--model").arg(&model).arg("--strip").arg(&strip).arg("--out").arg(&seq));
        assert!(ok, "{name}: {err}");
        let s = image::open(&strip).unwrap();
        assert!(s.width() > s.height(), "strip is one column per stage");
        let loaded = GranularitySequence::load(&seq).unwrap();
        assert_eq!(loaded.stages.len(), cfg.num_stages());
        assert_eq!(loaded.grid_size, cfg.grid_side());
    }
    // A sequence name it cannot write is refused before anything is written.
    let strip = dir.path().join("never.png");
    let (ok, _, err) = run(bin().arg("encode").arg(dir.path().join("gray.png")).arg("--model").arg(&model).arg("--strip").arg(&strip).arg("--out").arg(dir.path().join("seq.txt")));
    assert!(!ok);
    assert_clean_error(&err, "seq.txt");
    assert!(!strip.exists(), "the strip was written although the command failed");
    // --json prints the same schema on stdout.
    let (ok, out, err) = run(bin().arg("encode").arg(dir.path().join("gray.png")).arg("--model").arg(&model).arg("--json"));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["grid_size"], 4);
    assert_eq!(v["stages"].as_array().unwrap().len(), 5);
    assert_eq!(v["stages"][2]["codes"].as_array().unwrap().len(), 4);
    assert_eq!(v["stages"][2]["structure"].as_array().unwrap().len(), 16);
}

#[test]
fn bad_images_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tok");
    tiny_model(&model);
    // Missing file.
    let (ok, _, err) = run(bin().arg("encode").arg(dir.path().join("missing.png")).arg("--model").arg(&model));
    assert!(!ok);
    assert_clean_error(&err, "missing.png");
    // Not an image.
    let txt = dir.path().join("notes.png");
    std::fs::write(&txt, "hello, not a picture").unwrap();
    let (ok, _, err) = run(bin().arg("encode").arg(&txt).arg("--model").arg(&model));
    assert!(!ok);
    assert_clean_error(&err, "notes.png");
    // Truncated PNG.
    let good = dir.path().join("good.png");
    image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 7, y as u8 * 7, 3])).save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, _, err) = run(bin().arg("encode").arg(&cut).arg("--model").arg(&model));
    assert!(!ok);
    assert_clean_error(&err, "cut.png");
}

#[test]
fn an_unknown_precision_is_a_one_line_error() {
    let (ok, _, err) = run(bin().args(["--precision", "f8", "info"]));
    assert!(!ok);
    assert_clean_error(&err, "unknown precision 'f8' (expected f32 or bf16)");
}

#[test]
fn frame_logs_are_summarised_and_bad_ones_named() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("frames.log");
    std::fs::write(&good, "100 500 0\n150 50 1\n170 20 1\n210 40 1\n230 20 0\n").unwrap();
    let (ok, out, err) = run(bin().args(["bench", "--what", "frame-log", "--frame-log"]).arg(&good));
    assert!(ok, "{err}");
    assert!(out.contains("frames while a run is in flight: 2 — median 20.0 ms, p90 40.0 ms, worst 40.0 ms, 50.0 % over"), "{out}");
    assert!(out.contains("fps per run: 38"), "{out}");
    let bad = d.path().join("bad.log");
    std::fs::write(&bad, "100 500 0\n150 fifty 1\n").unwrap();
    let (ok, _, err) = run(bin().args(["bench", "--what", "frame-log", "--frame-log"]).arg(&bad));
    assert!(!ok);
    assert_clean_error(&err, "bad.log: line 2: field 2 is not a time in ms");
    let (ok, _, err) = run(bin().args(["bench", "--what", "frame-log", "--frame-log"]).arg(d.path().join("none.log")));
    assert!(!ok);
    assert_clean_error(&err, "none.log");
    let (ok, _, err) = run(bin().args(["bench", "--what", "frame-log"]));
    assert!(!ok);
    assert_clean_error(&err, "needs --frame-log FILE");
}

#[test]
fn bad_checkpoints_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img.png");
    image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 9, 3])).save(&img).unwrap();
    // Missing model directory: the message says how to fix it.
    let (ok, _, err) = run(bin().arg("encode").arg(&img).arg("--model").arg(dir.path().join("nomodel")));
    assert!(!ok);
    assert_clean_error(&err, "nomodel");
    assert!(err.contains("--model"), "{err}");
    // Corrupted weights.
    let model = dir.path().join("tok");
    tiny_model(&model);
    std::fs::write(model.join("model.bpk"), b"garbage").unwrap();
    let (ok, _, err) = run(bin().arg("encode").arg(&img).arg("--model").arg(&model));
    assert!(!ok);
    assert_clean_error(&err, "model.bpk");
    // Resuming training with another preset names the differing field.
    let model2 = dir.path().join("tok2");
    tiny_model(&model2);
    let (ok, _, err) = run(bin()
        .args(["train-tokenizer", "--synthetic", "8", "--preset", "small", "--steps", "1", "--resume", "--out"])
        .arg(&model2));
    assert!(!ok);
    assert_clean_error(&err, "tok2");
    assert!(err.contains("image_size") || err.contains("base_channels") || err.contains("channel"), "{err}");
    // Unknown preset lists the valid ones.
    let (ok, _, err) = run(bin().args(["train-tokenizer", "--synthetic", "8", "--preset", "huge", "--out"]).arg(&model2));
    assert!(!ok);
    assert_clean_error(&err, "huge");
    assert!(err.contains("reference-tiny"), "{err}");
}

#[test]
fn bundled_assets_are_found_from_any_folder() {
    // Run from a folder without assets/: the bundled dataset is found next to the sources.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("contact.png");
    let (ok, _, err) = run(bin().current_dir(dir.path()).args(["dataset", "show", "--out"]).arg(&out));
    assert!(ok, "{err}");
    assert!(image::open(&out).unwrap().width() > 0);
    assert_eq!(nvg_studio::bundled(Path::new("/no/such/abs")), Path::new("/no/such/abs"));
    assert_eq!(nvg_studio::bundled(Path::new("no-such-rel")), Path::new("no-such-rel"));
    assert!(nvg_studio::bundled(Path::new("assets/model")).join("generator").is_dir());
}

#[test]
fn encode_reads_reference_weights_from_safetensors_and_the_pytorch_checkpoint_alike() {
    let Some(v) = common::testvectors() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for (name, weights) in [("st", "tokenizer.safetensors"), ("pt", "nvg_official_layout.ckpt")] {
        let out = dir.path().join(format!("{name}.ron"));
        let (ok, _, err) = run(bin()
            .arg("encode")
            .arg(v.join("input_0.png"))
            .arg("--reference-weights")
            .arg(v.join(weights))
            .args(["--preset", "reference-tiny", "--out"])
            .arg(&out));
        assert!(ok, "{weights}: {err}");
        outs.push(GranularitySequence::load(&out).unwrap());
    }
    assert_eq!(outs[0], outs[1]);
}

/// Issue 18's commands answer bad input with one line: no images to overfit, a folder without
/// images, a run folder of another shape, a run folder without a training log.
#[test]
fn training_diagnostics_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    tiny_model(&model.join("tokenizer"));
    let out = dir.path().join("out");
    let overfit = |extra: &[&str]| {
        let mut c = bin();
        c.args(["diagnose", "overfit", "--preset", "test-tiny", "--steps", "2", "--batch", "2", "--model"]).arg(&model).arg("--out").arg(&out);
        c.args(extra);
        run(&mut c)
    };
    let (ok, _, err) = overfit(&["--synthetic", "8", "--images", "0"]);
    assert!(!ok);
    assert_clean_error(&err, "--images 0");
    let (ok, _, err) = overfit(&["--synthetic", "8", "--images", "100"]);
    assert!(!ok);
    assert_clean_error(&err, "--images 100");
    let empty = dir.path().join("empty-folder");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, _, err) = overfit(&["--data", empty.to_str().unwrap()]);
    assert!(!ok);
    assert_clean_error(&err, "empty-folder");

    // A generator trained with the position table cannot be resumed without it: the message
    // names the run folder and the field that differs.
    let train = |extra: &[&str]| {
        let mut c = bin();
        c.args(["train-generator", "--synthetic", "8", "--preset", "test-tiny", "--steps", "2", "--batch", "2", "--eval-every", "1", "--eval-images", "2", "--model"])
            .arg(&model);
        c.args(extra);
        run(&mut c)
    };
    let (ok, _, err) = train(&["--stop-after", "1"]);
    assert!(ok, "{err}");
    let log = std::fs::read_to_string(model.join("generator").join("train-log.csv")).unwrap();
    assert!(log.lines().any(|l| l.starts_with("1,heldout,structure,0,")), "{log}");
    let (ok, _, err) = train(&["--resume", "--structure-positions", "off"]);
    assert!(!ok);
    assert_clean_error(&err, "structure_positions");
    // Without the switches, a resumed run keeps its own choice.
    let (ok, _, err) = train(&["--resume"]);
    assert!(ok, "{err}");

    // plot-training draws the log it finds, and names a folder that holds none.
    let png = dir.path().join("curves.png");
    let (ok, _, err) = run(bin().arg("plot-training").arg(&model).arg("--out").arg(&png));
    assert!(ok, "{err}");
    assert_eq!(image::image_dimensions(&png).unwrap(), (1400, 1000));
    let (ok, _, err) = run(bin().arg("plot-training").arg(&empty).arg("--out").arg(&png));
    assert!(!ok);
    assert_clean_error(&err, "empty-folder");
}

/// Two trainers on one run folder: the second is refused with one line naming the holder, the
/// first keeps training, and once it is gone (even killed) the folder is free again.
#[test]
fn a_second_trainer_on_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tok");
    let mut first = bin()
        .args(["train-tokenizer", "--synthetic", "8", "--preset", "test-tiny", "--steps", "100000", "--checkpoint-every", "0", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = out.join(".nvg-lock");
    let t0 = std::time::Instant::now();
    while !lock.exists() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(60), "the first trainer never locked its folder");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (ok, _, err) = run(bin().args(["train-tokenizer", "--synthetic", "8", "--preset", "test-tiny", "--steps", "1", "--out"]).arg(&out));
    assert!(!ok);
    assert_clean_error(&err, "in use by process");
    assert!(err.contains(&first.id().to_string()) && err.contains("train-tokenizer"), "{err}");
    assert!(first.try_wait().unwrap().is_none(), "the first trainer keeps running");
    // Killed with -9, it leaves its lock behind: stale, and taken over by the next trainer.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(lock.exists());
    let (ok, _, err) = run(bin().args(["train-tokenizer", "--synthetic", "8", "--preset", "test-tiny", "--steps", "1", "--out"]).arg(&out));
    assert!(ok, "{err}");
    assert!(err.contains("stale lock"), "{err}");
    assert!(!lock.exists(), "a finished trainer frees its folder");
}

/// Out-of-range training options are refused before anything is written, each with one line.
#[test]
fn training_options_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tok");
    for (flag, value) in [("--lr", "nan"), ("--lr", "-1"), ("--lr", "1e30"), ("--batch", "0"), ("--batch", "1000000000000"), ("--steps", "0")] {
        let (ok, _, err) = run(bin()
            .args(["train-tokenizer", "--synthetic", "8", "--preset", "test-tiny", "--steps", "3"])
            .arg(format!("{flag}={value}"))
            .arg("--out")
            .arg(&out));
        assert!(!ok, "{flag} {value} accepted");
        assert_clean_error(&err, flag);
        assert!(!out.join("model.bpk").exists(), "{flag} {value}: nothing is written");
    }
    let m = dir.path().join("m");
    tiny_model(&m.join("tokenizer"));
    for (flag, value) in [("--ema-decay", "5"), ("--ema-decay", "1"), ("--lr", "-1")] {
        let (ok, _, err) = run(bin()
            .args(["train-generator", "--synthetic", "8", "--preset", "test-tiny", "--steps", "3"])
            .arg(format!("{flag}={value}"))
            .arg("--model")
            .arg(&m));
        assert!(!ok, "{flag} {value} accepted");
        assert_clean_error(&err, flag);
    }
}

/// A sequence that does not state its codebook size is still checked against the model's: a code
/// past the codebook is named (stage, cluster, value) before anything is generated or written.
#[test]
fn sequences_with_codes_past_the_codebook_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("model");
    common::tiny_model_dir(&m, 3);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/project/v1-full.ron");
    let mut seq = nvg_studio::document::Project::load(&fixture).unwrap().state.sequence.unwrap();
    seq.codebook_size = None;
    seq.stages[2].codes[1] = u32::MAX;
    let path = dir.path().join("seq.ron");
    seq.save_atomic(&path).unwrap();
    let out = dir.path().join("out.png");
    let (ok, _, err) = run(bin().args(["swap", "--to-class", "1", "--keep-structure", "2", "--sequence"]).arg(&path).arg("--model").arg(&m).arg("--out").arg(&out));
    assert!(!ok);
    assert_clean_error(&err, "stages[2].codes[1]");
    assert!(err.contains(&u32::MAX.to_string()) && err.contains("codebook"), "{err}");
    let (ok, _, err) = run(bin()
        .args(["generate", "--class", "0", "--keep-structure", "2", "--structure-from"])
        .arg(&path)
        .arg("--model")
        .arg(&m)
        .arg("--out")
        .arg(&out));
    assert!(!ok);
    assert_clean_error(&err, "stages[2].codes[1]");
    assert!(!out.exists(), "nothing written");
}

/// Huge numbers in options and files are refused in one line instead of hanging or overflowing.
#[test]
fn huge_values_are_refused_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("model");
    common::tiny_model_dir(&m, 3);
    let out = dir.path().join("x.png");
    let (ok, _, err) = run(bin().args(["generate", "--class", "0", "--flow-steps", "1000000000", "--model"]).arg(&m).arg("--out").arg(&out));
    assert!(!ok);
    assert_clean_error(&err, "flow_steps 1000000000");
    let (ok, _, err) = run(bin().args(["train-tokenizer", "--synthetic", "100000000", "--preset", "test-tiny", "--out"]).arg(dir.path().join("t")));
    assert!(!ok);
    assert_clean_error(&err, "--synthetic 100000000");
    // A checkpoint whose base_channels would overflow: a one-line error, no panic.
    let tok = m.join("tokenizer").join("checkpoint.json");
    let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tok).unwrap()).unwrap();
    meta["config"]["base_channels"] = serde_json::json!(1u64 << 63);
    let bad = serde_json::to_string_pretty(&meta).unwrap();
    std::fs::write(&tok, bad).unwrap();
    let (ok, _, err) = run(bin().arg("encode").arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples/disc.png")).arg("--model").arg(m.join("tokenizer")));
    assert!(!ok);
    assert_clean_error(&err, "base_channels");
    // A history thumbnail with an absurd side is ignored, not a panic.
    let e = nvg_studio::document::HistoryEntry { thumbnail_side: u32::MAX, ..nvg_studio::document::HistoryEntry::new(1, "x".into(), nvg_studio::document::State::new(0, 0), 1, &[1, 2, 3]) };
    assert!(e.thumbnail().is_none());
}

/// A run without --resume into a folder that holds a trained checkpoint is refused, naming the
/// folder, its step and both ways on; --force starts over; nothing is replaced silently.
#[test]
fn training_refuses_to_replace_a_checkpoint_without_resume_or_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tok");
    let train = |extra: &[&str]| {
        run(bin()
            .args(["train-tokenizer", "--synthetic", "8", "--preset", "test-tiny", "--steps", "2"])
            .args(extra)
            .arg("--out")
            .arg(&out))
    };
    let (ok, _, err) = train(&[]);
    assert!(ok, "{err}");
    let before = std::fs::read(out.join("model.bpk")).unwrap();
    let (ok, _, err) = train(&[]);
    assert!(!ok);
    assert_clean_error(&err, "--resume");
    assert!(err.contains("--force") && err.contains("step 2"), "{err}");
    assert_eq!(std::fs::read(out.join("model.bpk")).unwrap(), before, "the checkpoint is untouched");
    let (ok, _, err) = train(&["--force"]);
    assert!(ok, "{err}");
    // The generator side says the same.
    let m = dir.path().join("m");
    tiny_model(&m.join("tokenizer"));
    let train_gen = |extra: &[&str]| {
        run(bin()
            .args(["train-generator", "--synthetic", "8", "--preset", "test-tiny", "--steps", "1", "--batch", "2", "--eval-every", "0"])
            .args(extra)
            .arg("--model")
            .arg(&m))
    };
    let (ok, _, err) = train_gen(&[]);
    assert!(ok, "{err}");
    let (ok, _, err) = train_gen(&[]);
    assert!(!ok);
    assert_clean_error(&err, "already holds a trained generator");
}
