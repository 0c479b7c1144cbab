//! `generate` and `info` from the command line, on a tiny randomly initialised model directory.

mod common;

use burn::tensor::Device;
use nvg_studio::granularity::GranularitySequence;
use nvg_studio::model::tokenizer_io::save_tokenizer;
use nvg_studio::model::{Tokenizer, TokenizerConfig};

use common::{bin, one_error_line, run, tiny_model_dir};

fn tiny_model(dir: &std::path::Path) {
    tiny_model_dir(dir, 8);
}

#[test]
fn generate_writes_image_strip_and_json_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    tiny_model(&model);
    let img = dir.path().join("a.png");
    let strip = dir.path().join("strip.png");
    let (ok, out, err) = run(bin()
        .args(["generate", "--class", "Triangle", "--seed", "4", "--flow-steps", "3", "--json", "--model"])
        .arg(&model).arg("--out").arg(&img).arg("--stages-out").arg(&strip));
    assert!(ok, "{err}");
    let seq = GranularitySequence::from_json_str(&out).unwrap();
    assert_eq!(seq.stages.len(), 5);
    let a = image::open(&img).unwrap().to_rgb8();
    assert_eq!(a.dimensions(), (16, 16));
    assert!(image::open(&strip).unwrap().width() > 5 * 16);
    // Same seed, same bytes; the class can be given by id too.
    let img2 = dir.path().join("b.png");
    let (ok, out2, err) = run(bin().args(["generate", "--class", "2", "--seed", "4", "--flow-steps", "3", "--json", "--model"]).arg(&model).arg("--out").arg(&img2));
    assert!(ok, "{err}");
    assert_eq!(out, out2);
    assert_eq!(a, image::open(&img2).unwrap().to_rgb8());
    // Structure transfer: keep the maps of stages 1..3 from the first result.
    let seq_path = dir.path().join("seq.json");
    std::fs::write(&seq_path, &out).unwrap();
    let (ok, out3, err) = run(bin()
        .args(["generate", "--class", "disc", "--seed", "9", "--flow-steps", "3", "--json", "--keep-structure", "1..3", "--model"])
        .arg(&model).arg("--out").arg(dir.path().join("c.png")).arg("--structure-from").arg(&seq_path));
    assert!(ok, "{err}");
    let swapped = GranularitySequence::from_json_str(&out3).unwrap();
    for s in 1..=3 {
        assert_eq!(swapped.stages[s].structure, seq.stages[s].structure, "stage {s} kept");
    }
}

#[test]
fn generate_bad_input_gives_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    tiny_model(&model);
    let out = dir.path().join("x.png");
    let (ok, _, err) = run(bin().args(["generate", "--class", "giraffe", "--model"]).arg(&model).arg("--out").arg(&out));
    assert!(!ok);
    let line = one_error_line(&err);
    assert!(line.contains("giraffe") && line.contains("disc, rectangle, triangle, ring"), "{line}");
    // A structure file that breaks the hierarchy names the stage and position.
    let bad = dir.path().join("bad.json");
    let mut stages = vec![serde_json::json!({ "structure": vec![0; 16], "codes": [0] })];
    for s in 1..5 {
        let mut m: Vec<u32> = (0..16u32).map(|p| p >> (4 - s)).collect();
        if s == 3 {
            m[5] = 7; // parent 3 at stage 2, but position 5 has stage-2 label 1
        }
        stages.push(serde_json::json!({ "structure": m, "codes": vec![0; 1 << s] }));
    }
    std::fs::write(&bad, serde_json::json!({ "format": "nvg-sequence", "version": 1, "grid_size": 4, "stages": stages }).to_string()).unwrap();
    let (ok, _, err) = run(bin()
        .args(["generate", "--class", "0", "--keep-structure", "1..4", "--model"]).arg(&model).arg("--out").arg(&out).arg("--structure-from").arg(&bad));
    assert!(!ok);
    let line = one_error_line(&err);
    assert!(line.contains("bad.json") && line.contains("stage 3") && line.contains("position 5"), "{line}");
    // Out-of-range stages.
    let good = dir.path().join("good.json");
    let (ok, out_json, _) = run(bin().args(["generate", "--class", "0", "--flow-steps", "2", "--json", "--model"]).arg(&model).arg("--out").arg(&out));
    assert!(ok);
    std::fs::write(&good, out_json).unwrap();
    let (ok, _, err) = run(bin()
        .args(["generate", "--class", "0", "--keep-structure", "1..9", "--model"]).arg(&model).arg("--out").arg(&out).arg("--structure-from").arg(&good));
    assert!(!ok);
    assert!(one_error_line(&err).contains("--keep-structure"));
    // Model for another grid: a tokenizer that does not fit the generator.
    let other = dir.path().join("other");
    tiny_model(&other);
    let dev = Device::flex();
    let tcfg = TokenizerConfig::small();
    save_tokenizer(&other.join("tokenizer"), &tcfg, &Tokenizer::new(&tcfg, &dev), 0, serde_json::Value::Null).unwrap();
    let (ok, _, err) = run(bin().args(["generate", "--class", "0", "--model"]).arg(&other).arg("--out").arg(&out));
    assert!(!ok);
    assert!(one_error_line(&err).contains("grid"), "{err}");
    // Missing model: say how to fix it.
    let (ok, _, err) = run(bin().args(["generate", "--class", "0", "--model"]).arg(dir.path().join("none")).arg("--out").arg(&out));
    assert!(!ok);
    assert!(one_error_line(&err).contains("--model"));
}

#[test]
fn info_prints_paper_parameter_counts() {
    let (ok, out, err) = run(bin().args(["info", "--preset", "d16"]));
    assert!(ok, "{err}");
    assert!(out.contains("content 255183904") && out.contains("structure 64369672"), "{out}");
    let (ok, _, err) = run(bin().args(["info", "--preset", "nope"]));
    assert!(!ok);
    assert!(one_error_line(&err).contains("d24"));
}

/// `generate --grid N`: N seeds of the listed classes (or all), one row per class, as one PNG
/// whose tiles are exactly the images `generate` gives for those seeds; bad values are one line.
#[test]
fn generate_grid_writes_a_contact_sheet_of_seeds_by_class() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    tiny_model(&model);
    let sheet = dir.path().join("grid.png");
    let (ok, out, err) = run(bin()
        .args(["generate", "--class", "disc, triangle", "--grid", "3", "--seed", "5", "--flow-steps", "3", "--json", "--model"])
        .arg(&model).arg("--out").arg(&sheet));
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 6, "one sequence per tile");
    for line in out.lines() {
        GranularitySequence::from_json_str(line).unwrap().validate().unwrap();
    }
    let g = image::open(&sheet).unwrap().to_rgb8();
    // Two rows of 16-pixel tiles with 2-pixel gaps; three columns after the label column.
    assert_eq!(g.height(), 2 * (16 + 2) + 2);
    // The tile of triangle, seed 6 (row 1, column 1) is the image `generate` writes for it.
    let one = dir.path().join("one.png");
    let (ok, _, err) = run(bin().args(["generate", "--class", "triangle", "--seed", "6", "--flow-steps", "3", "--model"]).arg(&model).arg("--out").arg(&one));
    assert!(ok, "{err}");
    let want = image::open(&one).unwrap().to_rgb8();
    let (x0, y0) = (g.width() - 3 * (16 + 2) + 1 * (16 + 2), 2 + 16 + 2);
    let tile = image::imageops::crop_imm(&g, x0, y0, 16, 16).to_image();
    assert_eq!(tile, want);
    let (ok, _, err) = run(bin().args(["generate", "--class", "all", "--grid", "0", "--model"]).arg(&model).arg("--out").arg(&sheet));
    assert!(!ok);
    assert!(one_error_line(&err).contains("--grid 0"), "{err}");
}
