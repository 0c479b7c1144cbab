//! Class swap, structure transfer and shape guidance on a tiny random model (CPU).

mod common;

use std::path::Path;
use std::process::Command;

use burn::tensor::Device;
use common::{bin, tiny_model_dir};
use nvg_studio::granularity::GranularitySequence;
use nvg_studio::sampler::load_bundle;
use nvg_studio::sampler::SamplerSettings;
use nvg_studio::sampler::swap::{Keep, layout_from_mask, render, swap_job};

fn tiny_model(dir: &Path) {
    tiny_model_dir(dir, 21);
}

fn settings() -> SamplerSettings {
    SamplerSettings { flow_steps: 3, ..Default::default() }
}

#[test]
fn forced_maps_survive_and_forcing_everything_reproduces_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let bundle = load_bundle(dir.path(), &Device::flex()).unwrap();
    let reference = render(&bundle, nvg_studio::sampler::ImageJob::new(0, 3), &settings()).unwrap().sequence;
    for m in 0..5 {
        let r = render(&bundle, swap_job(&reference, &Keep { structure_upto: m, content_upto: None }, 2, 9).unwrap(), &settings()).unwrap();
        for s in 1..=m {
            assert_eq!(r.sequence.stages[s].structure, reference.stages[s].structure, "m {m}, stage {s}");
        }
        assert_eq!(r.stages.len(), 5);
    }
    let all = Keep { structure_upto: 4, content_upto: Some(4) };
    let r = render(&bundle, swap_job(&reference, &all, 3, 1).unwrap(), &settings()).unwrap();
    assert_eq!(r.sequence, reference, "forcing every map and code reproduces the reference exactly");
    let err = swap_job(&reference, &Keep { structure_upto: 5, content_upto: None }, 0, 0).unwrap_err().to_string();
    assert!(err.contains("keep-structure") && err.contains("0..4"), "{err}");
}

#[test]
fn unbalanced_layout_masks_are_accepted_and_respected() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(&dir.path().join("m"));
    // A 4×4 (grid-sized) mask with 3 white cells: a very unbalanced stage-1 map.
    let mask = dir.path().join("mask.png");
    image::GrayImage::from_fn(4, 4, |x, y| image::Luma([if y == 0 && x < 3 { 255 } else { 0 }])).save(&mask).unwrap();
    let map = layout_from_mask(&mask, 4, 16).unwrap();
    assert_eq!(map.iter().filter(|&&v| v == 1).count(), 3);
    let out = Command::new(env!("CARGO_BIN_EXE_nvg-studio"))
        .args(["--backend", "cpu", "generate", "--class", "ring", "--flow-steps", "2", "--json", "--model"])
        .arg(dir.path().join("m")).arg("--out").arg(dir.path().join("o.png")).arg("--layout").arg(&mask)
        .output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seq = GranularitySequence::from_json_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(seq.stages[1].structure, map);
    seq.validate().unwrap();
    // An image-sized mask works too; grey pixels and wrong sizes are refused.
    let big = dir.path().join("big.png");
    image::GrayImage::from_fn(16, 16, |x, _| image::Luma([if x < 4 { 255 } else { 0 }])).save(&big).unwrap();
    assert_eq!(layout_from_mask(&big, 4, 16).unwrap(), (0..16).map(|p| u32::from(p % 4 == 0)).collect::<Vec<_>>());
    let grey = dir.path().join("grey.png");
    image::GrayImage::from_pixel(4, 4, image::Luma([128])).save(&grey).unwrap();
    let e = layout_from_mask(&grey, 4, 16).unwrap_err().to_string();
    assert!(e.contains("grey.png") && e.contains("not binary"), "{e}");
    let odd = dir.path().join("odd.png");
    image::GrayImage::from_pixel(5, 7, image::Luma([0])).save(&odd).unwrap();
    let e = layout_from_mask(&odd, 4, 16).unwrap_err().to_string();
    assert!(e.contains("odd.png") && e.contains("5×7"), "{e}");
    // The format comes from the bytes: a PNG named .jpg reads the same; a file that is no image
    // is one line naming it.
    let renamed = dir.path().join("mask.jpg");
    std::fs::copy(&mask, &renamed).unwrap();
    assert_eq!(layout_from_mask(&renamed, 4, 16).unwrap(), map);
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"not an image at all").unwrap();
    let e = layout_from_mask(&junk, 4, 16).unwrap_err().to_string();
    assert!(e.contains("junk.png") && !e.contains('\n'), "{e}");
}

#[test]
fn swap_cli_writes_result_strip_and_one_sweep_row_per_stage() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    tiny_model(&model);
    // An RGBA reference of another size: composited on white and resized.
    let reference = dir.path().join("ref.png");
    image::RgbaImage::from_fn(40, 30, |x, y| image::Rgba([x as u8 * 6, y as u8 * 8, 40, if x > 10 { 255 } else { 0 }])).save(&reference).unwrap();
    let out = bin()
        .args(["swap", "--to-class", "triangle", "--keep-structure", "1..2", "--flow-steps", "2", "--model"])
        .arg(&model).arg("--image").arg(&reference)
        .arg("--out").arg(dir.path().join("r.png"))
        .arg("--strip").arg(dir.path().join("strip.png"))
        .arg("--sweep").arg(dir.path().join("sweep.png"))
        .output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sweep = image::open(dir.path().join("sweep.png")).unwrap();
    let tile = 16 * 3 + 4;
    assert_eq!(sweep.height(), (1 + 5) * tile + 4, "reference row + one row per m = 0..4");
    assert_eq!(image::open(dir.path().join("strip.png")).unwrap().height(), 4 * tile + 4);
    // Bad input: unknown class, keep-structure beyond the stage count.
    let out = bin().args(["swap", "--to-class", "zebra", "--model"]).arg(&model).arg("--image").arg(&reference).arg("--out").arg(dir.path().join("x.png")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zebra") && err.contains("disc, rectangle"), "{err}");
    let out = bin().args(["swap", "--to-class", "disc", "--keep-structure", "1..7", "--model"]).arg(&model).arg("--image").arg(&reference).arg("--out").arg(dir.path().join("x.png")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0..4"));
}
