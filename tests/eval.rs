//! `nvg-studio eval` and `eval-swap` on a tiny random model: the code path (every JSON key, every
//! file), not the numbers; and the one-line refusals (class list, missing model, damaged judge).

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::{bin, one_error_line, run, tiny_model_dir};
use nvg_studio::data::EmojiSheet;
use nvg_studio::model::checkpoint::save_module;
use nvg_studio::model::generator::{GeneratorConfig, NvgGenerator};
use nvg_studio::model::tokenizer_io::save_tokenizer;
use nvg_studio::model::{Tokenizer, TokenizerConfig};

const LABELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/emoji/emoji-32.ron");

/// A random test-tiny model with the emoji set's 32 classes.
fn tiny_emoji_model(dir: &Path) {
    let dev = Device::flex();
    dev.seed(5);
    let tcfg = TokenizerConfig::test_tiny();
    let topts = serde_json::json!({ "train_options": { "steps": 10, "batch_size": 4, "holdout_fraction": 0.1, "seed": 0 } });
    save_tokenizer(&dir.join("tokenizer"), &tcfg, &Tokenizer::new(&tcfg, &dev), 10, topts).unwrap();
    let names = EmojiSheet::open(LABELS).unwrap().class_names().to_vec();
    let gcfg = GeneratorConfig { num_classes: names.len(), ..GeneratorConfig::test_tiny() };
    let extra = serde_json::json!({ "class_names": names, "train_options": { "steps": 20, "batch_size": 4, "seed": 0 } });
    save_module(&dir.join("generator"), "generator", &gcfg, &NvgGenerator::new(&gcfg, &dev), 10, extra).unwrap();
}

fn eval_cmd(model: &Path, out: &Path) -> std::process::Command {
    let mut c = bin();
    c.arg("eval").arg("--model").arg(model).arg("--out-dir").arg(out);
    c.args(["--quick", "--samples-per-class", "2", "--judge-steps", "3", "--flow-steps", "2", "--batch", "64"]);
    c
}

#[test]
fn reduced_eval_and_eval_swap_write_every_key_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, out) = (tmp.path().join("m"), tmp.path().join("docs"));
    tiny_emoji_model(&model);
    let (ok, stdout, stderr) = run(&mut eval_cmd(&model, &out));
    assert!(ok, "eval failed: {stderr}");
    assert!(stdout.contains("judge accuracy") && stdout.contains("model card"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("model-card.json")).unwrap()).unwrap();
    for key in [
        "model_id", "num_classes", "tokenizer", "generator", "tokenizer_psnr_per_stage", "codebook_usage_per_stage",
        "judge_accuracy_real", "judge_accuracy_generated", "fd_generated", "fd_reconstruction_floor", "fd_trivial_baseline",
        "fd_trivial_baseline_kind", "fd_real_train_vs_heldout", "per_class", "hardware", "eval_wall_seconds", "judge",
    ] {
        assert!(json.get(key).is_some_and(|v| !v.is_null()), "model-card.json lacks {key}");
    }
    assert_eq!(json["num_classes"], 32);
    assert_eq!(json["tokenizer_psnr_per_stage"].as_array().unwrap().len(), 5);
    assert_eq!(json["generated_images"], 64);
    assert_eq!(json["generator"]["step"], 10);
    for key in ["fd_generated", "fd_reconstruction_floor", "fd_trivial_baseline"] {
        assert!(json[key].as_f64().unwrap() >= 0.0, "{key}");
    }
    let figs = out.join("images/model-card");
    for f in ["psnr-per-stage.png", "samples-per-class.png", "strip-accessory.png"] {
        let img = image::open(figs.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(img.width() > 50, "{f}");
    }
    assert!(model.join("judge/checkpoint.json").exists() && model.join("judge/model.bpk").exists());
    let md = std::fs::read_to_string(out.join("model-card.md")).unwrap();
    assert!(md.contains("<!-- eval:begin -->") && md.contains("Fréchet") && md.contains("images/model-card/psnr-per-stage.png"));

    // eval-swap adds its own section and key and keeps eval's.
    let mut c = bin();
    c.arg("eval-swap").arg("--model").arg(&model).arg("--out-dir").arg(&out);
    c.args(["--references-per-class", "1", "--classes", "bird,0", "--flow-steps", "2", "--batch", "64"]);
    let (ok, stdout, stderr) = run(&mut c);
    assert!(ok, "eval-swap failed: {stderr}");
    assert!(stdout.contains("ARI"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("model-card.json")).unwrap()).unwrap();
    assert!(json["fd_generated"].is_number(), "eval keys kept");
    let swap = &json["swap"];
    for key in ["judge_target_accuracy_swap", "judge_target_accuracy_baseline", "ari_per_stage_swap", "ari_per_stage_baseline", "ari_per_stage_reencode_ceiling"] {
        assert!(!swap[key].is_null(), "swap lacks {key}");
    }
    assert_eq!(swap["swaps"], 64);
    assert_eq!(swap["ari_per_stage_swap"].as_array().unwrap().len(), 3);
    let md = std::fs::read_to_string(out.join("model-card.md")).unwrap();
    assert!(md.contains("<!-- eval:begin -->") && md.contains("<!-- eval-swap:begin -->") && md.contains("swap-gallery.png"));
    assert!(figs.join("swap-gallery.png").exists());

    // A second eval (judge now loaded, not trained) keeps the swap section and key.
    let (ok, _, stderr) = run(&mut eval_cmd(&model, &out));
    assert!(ok, "second eval failed: {stderr}");
    assert!(stderr.contains("loading the judge"), "{stderr}");
    let md = std::fs::read_to_string(out.join("model-card.md")).unwrap();
    assert!(md.contains("<!-- eval-swap:begin -->"));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("model-card.json")).unwrap()).unwrap();
    assert!(json["swap"].is_object());
}

#[test]
fn a_model_with_other_classes_or_none_or_a_damaged_judge_is_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let shapes = tmp.path().join("shapes");
    tiny_model_dir(&shapes, 3);
    let out = tmp.path().join("docs");
    let (ok, _, stderr) = run(&mut eval_cmd(&shapes, &out));
    assert!(!ok);
    let line = one_error_line(&stderr);
    assert!(line.contains("does not fit dataset") && line.contains("4 classes vs 32"), "{line}");
    assert!(line.contains("only in the model: 'disc'") && line.contains("only in the dataset: 'accessory'"), "{line}");
    assert!(!out.join("model-card.json").exists(), "nothing written");

    let (ok, _, stderr) = run(&mut eval_cmd(&tmp.path().join("nope"), &out));
    assert!(!ok);
    let line = one_error_line(&stderr);
    assert!(line.contains("not found") && line.contains("restore assets/model/") && line.contains("--model DIR"), "{line}");

    let model = tmp.path().join("emoji");
    tiny_emoji_model(&model);
    std::fs::create_dir_all(model.join("judge")).unwrap();
    std::fs::write(model.join("judge/checkpoint.json"), "{ not json").unwrap();
    let (ok, _, stderr) = run(&mut eval_cmd(&model, &out));
    assert!(!ok);
    let line = one_error_line(&stderr);
    assert!(line.contains("judge") && line.contains("--retrain-judge"), "{line}");
}
