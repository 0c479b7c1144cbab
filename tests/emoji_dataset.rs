//! The bundled emoji dataset and its builder: the shipped sheet, the held-out split, the builder on a
//! small committed fixture (bit for bit), bad sheets and label files, and the `dataset` commands.

mod common;
use common::run;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nvg_studio::data::{
    BuildOptions, DataError, EmojiSheet, EmojiSource, ImageSource, SheetEncoding, build_emoji_sheet,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bundled() -> PathBuf {
    root().join("assets/emoji/emoji-32.ron")
}

fn fixture_packages() -> PathBuf {
    root().join("tests/fixtures/emoji/packages")
}

fn fixture_expected() -> PathBuf {
    root().join("tests/fixtures/emoji/expected")
}

fn build(packages: &Path, out: &Path) -> nvg_studio::data::BuildReport {
    let opts = BuildOptions {
        packages: packages.to_path_buf(),
        out_dir: out.to_path_buf(),
        tile_size: 32,
        encoding: SheetEncoding::Palette,
        threads: 2,
    };
    build_emoji_sheet(&opts, &mut |_| {}).unwrap()
}

#[test]
fn the_shipped_sheet_has_32_classes_with_the_counts_its_label_file_states() {
    let sheet = EmojiSheet::open(bundled()).unwrap();
    let labels = sheet.labels();
    assert_eq!(sheet.class_names().len(), 32);
    assert_eq!(sheet.tile_size(), 32);
    assert_eq!(labels.vendors.len(), 8);
    assert_eq!(labels.background, [255, 255, 255]);
    assert!(sheet.len() > 4000, "{} tiles", sheet.len());
    assert_eq!(sheet.class_counts().iter().sum::<usize>(), sheet.len());
    for (c, name) in sheet.class_names().iter().enumerate() {
        let stated = sheet.class_counts()[c];
        assert_eq!(sheet.items_of_class(c).len(), stated, "{name}");
        assert!(stated >= 50, "class {name} has only {stated} tiles");
    }
    for class in ["bird", "mammal", "face-happy", "fruit", "reptile"] {
        assert!(sheet.class_names().iter().any(|n| n == class), "{class}");
    }
    // Tiles are served through ImageSource; the corners of a tile are the white margin.
    let source = EmojiSource::new(std::sync::Arc::new(sheet), 32).unwrap();
    for i in [0, source.len() / 2, source.len() - 1] {
        let (img, class) = source.get(i).unwrap();
        assert_eq!(img.size, 32);
        assert_eq!(Some(class), source.sheet().class_of(i));
        assert_eq!(img.pixel(0, 0).unwrap(), [1.0, 1.0, 1.0], "tile {i}");
        let rgb = img.to_rgb8().unwrap();
        assert!(
            rgb.pixels().any(|p| p.0 != [255, 255, 255]),
            "tile {i} is blank"
        );
    }
    // Other sizes are resized on the fly.
    let small = EmojiSource::new(source.sheet().clone(), 16).unwrap();
    assert_eq!(small.get(0).unwrap().0.size, 16);
}

#[test]
fn the_held_out_split_is_disjoint_deterministic_and_stratified_by_whole_emoji() {
    let sheet = EmojiSheet::open(bundled()).unwrap();
    let (train, holdout) = sheet.default_split();
    assert_eq!((train.clone(), holdout.clone()), sheet.default_split());
    let train_set: BTreeSet<usize> = train.iter().copied().collect();
    assert!(holdout.iter().all(|i| !train_set.contains(i)), "disjoint");
    assert_eq!(train.len() + holdout.len(), sheet.len(), "complete");

    let held_emoji: BTreeSet<&str> = holdout
        .iter()
        .map(|&i| sheet.emoji_of(i).unwrap())
        .collect();
    assert!(
        train
            .iter()
            .all(|&i| !held_emoji.contains(sheet.emoji_of(i).unwrap())),
        "an emoji on both sides"
    );
    for (c, name) in sheet.class_names().iter().enumerate() {
        let n = sheet.items_of_class(c).len();
        let held = holdout
            .iter()
            .filter(|&&i| sheet.class_of(i) == Some(c))
            .count();
        let target = ((n as f64) * 0.1).round() as usize;
        // Whole emoji, as close to 10% as they allow; one emoji has at most 9 renditions.
        assert!(
            held >= 1 && held + 9 >= target && held <= target + 9,
            "{name}: {held} of {n} held out"
        );
    }
    let (_, other) = sheet.split(0.1, 1);
    assert_ne!(other, holdout, "the seed matters");
}

#[test]
fn the_builder_reproduces_the_fixture_tiles_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let report = build(&fixture_packages(), dir.path());
    let labels = &report.labels;
    assert_eq!(labels.classes.len(), 32);

    let expected_ron = fs::read_to_string(fixture_expected().join("emoji-32.ron")).unwrap();
    let built_ron = fs::read_to_string(dir.path().join("emoji-32.ron")).unwrap();
    assert_eq!(
        built_ron, expected_ron,
        "label file differs from tests/fixtures/emoji/expected"
    );

    let expected = image::open(fixture_expected().join("emoji-32.png"))
        .unwrap()
        .into_rgb8();
    let built = image::open(dir.path().join("emoji-32.png"))
        .unwrap()
        .into_rgb8();
    assert_eq!(built.dimensions(), expected.dimensions());
    for i in 0..labels.count {
        let (x, y) = ((i as u32 % 64) * 32, (i as u32 / 64) * 32);
        let a = image::imageops::crop_imm(&built, x, y, 32, 32).to_image();
        let b = image::imageops::crop_imm(&expected, x, y, 32, 32).to_image();
        assert!(
            a == b,
            "tile {i} ({} by vendor {}) differs",
            labels.tile_emoji[i],
            labels.tile_vendor[i]
        );
    }

    // What the fixture exercises: codepoints, slugs, squashed names, overrides, variants, aliases.
    let tiles: Vec<(String, String)> = (0..labels.count)
        .map(|i| {
            let vendor = &labels.vendors[usize::from(labels.tile_vendor[i])].id;
            (labels.tile_emoji[i].clone(), vendor.clone())
        })
        .collect();
    let has = |emoji: &str, vendor: &str| tiles.iter().any(|(e, v)| e == emoji && v == vendor);
    assert!(
        has("dog2", "twemoji"),
        "alias with hFlip through chars.json"
    );
    assert!(
        has("dog2", "fluent-color"),
        "slug from another set's chars.json"
    );
    assert!(
        has("dog", "fxemoji") && has("apple", "fxemoji"),
        "squashed Unicode names"
    );
    assert!(
        has("sunglasses", "fxemoji") && has("star2", "fxemoji"),
        "overrides"
    );
    assert!(
        has("turkey", "emojione") && !has("turkey", "streamline"),
        "Streamline's turkey is a flag"
    );
    assert_eq!(
        tiles
            .iter()
            .filter(|t| *t == &("bird".into(), "streamline".into()))
            .count(),
        2,
        "numbered variants"
    );
    assert_eq!(
        tiles
            .iter()
            .filter(|t| *t == &("dog".into(), "emojione".into()))
            .count(),
        1,
        "identical alias kept once"
    );
    assert!(has("heart", "noto-v1") && has("heart", "noto"));
    assert!(
        !tiles.iter().any(|(e, _)| e == "flag-tr"),
        "emoji outside the classes are left out"
    );
    assert!(
        report.unmatched_emoji.len() > 600,
        "most class emoji are absent from the fixture"
    );

    // Running it again gives identical bytes.
    let again = tempfile::tempdir().unwrap();
    build(&fixture_packages(), again.path());
    for f in ["emoji-32.png", "emoji-32.ron"] {
        assert_eq!(
            fs::read(dir.path().join(f)).unwrap(),
            fs::read(again.path().join(f)).unwrap(),
            "{f}"
        );
    }
}

/// Packs `src` (a folder holding `package/`) as npm does: a gzip'd tar with entries under `package/`.
fn pack(src: &Path, tgz: &Path) {
    let file = fs::File::create(tgz).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all("package", src.join("package")).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn tarballs_and_unpacked_folders_build_the_same_sheet() {
    let packed = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(fixture_packages()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        pack(&entry.path(), &packed.path().join(format!("{name}.tgz")));
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    build(&fixture_packages(), a.path());
    build(packed.path(), b.path());
    for f in ["emoji-32.png", "emoji-32.ron"] {
        assert_eq!(
            fs::read(a.path().join(f)).unwrap(),
            fs::read(b.path().join(f)).unwrap(),
            "{f}"
        );
    }

    // A corrupt tarball is named in a one-line error.
    fs::write(
        packed.path().join("iconify-json-twemoji-1.2.5.tgz"),
        b"\x1f\x8bnot really",
    )
    .unwrap();
    let opts = BuildOptions {
        packages: packed.path().to_path_buf(),
        out_dir: b.path().to_path_buf(),
        tile_size: 32,
        encoding: SheetEncoding::Palette,
        threads: 1,
    };
    let err = build_emoji_sheet(&opts, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("iconify-json-twemoji-1.2.5.tgz") && !err.contains('\n'),
        "{err}"
    );
}

/// A copy of the fixture's expected sheet in a temporary folder, to damage.
fn copy_expected(dir: &Path) -> PathBuf {
    for f in ["emoji-32.png", "emoji-32.ron"] {
        fs::copy(fixture_expected().join(f), dir.join(f)).unwrap();
    }
    dir.join("emoji-32.ron")
}

fn one_line_error(labels: &Path, needles: &[&str]) {
    let err: DataError = EmojiSheet::open(labels).unwrap_err();
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    for n in needles {
        assert!(text.contains(n), "error should mention {n}: {text}");
    }
}

#[test]
fn corrupted_or_inconsistent_files_are_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let labels = copy_expected(dir.path());
    assert!(EmojiSheet::open(&labels).is_ok());
    let text = fs::read_to_string(&labels).unwrap();
    let png = fs::read(dir.path().join("emoji-32.png")).unwrap();

    // Truncated sheet.
    fs::write(dir.path().join("emoji-32.png"), &png[..png.len() / 2]).unwrap();
    one_line_error(&labels, &["emoji-32.png"]);
    // Not a PNG at all.
    fs::write(dir.path().join("emoji-32.png"), "hello").unwrap();
    one_line_error(&labels, &["emoji-32.png", "not an image"]);
    // Missing sheet.
    fs::remove_file(dir.path().join("emoji-32.png")).unwrap();
    one_line_error(&labels, &["emoji-32.png", "not found"]);
    fs::write(dir.path().join("emoji-32.png"), &png).unwrap();

    // Garbage label file.
    fs::write(&labels, "(format: \"nvg-emoji-sheet\", version: ").unwrap();
    one_line_error(&labels, &["emoji-32.ron", "not a valid label file"]);
    // Counts that do not match the tiles.
    let counts_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("class_counts:"))
        .unwrap();
    let bumped = counts_line.replacen("0,", "3,", 1);
    fs::write(&labels, text.replace(counts_line, &bumped)).unwrap();
    one_line_error(&labels, &["emoji-32.ron", "class_counts says class"]);
    // More tiles than the sheet holds.
    let count_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("count:"))
        .unwrap();
    let count: usize = count_line
        .trim()
        .trim_start_matches("count:")
        .trim()
        .trim_end_matches(',')
        .parse()
        .unwrap();
    fs::write(
        &labels,
        text.replace(count_line, &format!("    count: {},", count + 64)),
    )
    .unwrap();
    one_line_error(&labels, &["emoji-32.ron", "count is"]);
    // A sheet whose size does not fit the label file.
    fs::write(&labels, &text).unwrap();
    image::RgbImage::new(64, 32)
        .save(dir.path().join("emoji-32.png"))
        .unwrap();
    one_line_error(&labels, &["emoji-32.png", "emoji-32.ron", "64×32"]);
    // Missing label file.
    one_line_error(
        &dir.path().join("nothing.ron"),
        &["nothing.ron", "not found"],
    );
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nvg-studio"));
    c.current_dir(root());
    c
}

fn assert_clean_error(stderr: &str, needle: &str) {
    let line = common::one_error_line(stderr);
    assert!(line.contains(needle), "error should name {needle}: {stderr}");
}

#[test]
fn dataset_info_prints_classes_and_counts_as_text_and_json() {
    let (ok, out, err) = run(bin().args(["dataset", "info", "--json"]));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let classes = v["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 32);
    let sheet = EmojiSheet::open(bundled()).unwrap();
    for (c, name) in sheet.class_names().iter().enumerate() {
        assert_eq!(classes[c], name.as_str());
        assert_eq!(v["class_counts"][name], sheet.class_counts()[c], "{name}");
    }
    let (ok, out, err) = run(bin().args(["dataset", "info"]));
    assert!(ok, "{err}");
    assert!(
        out.contains("cat-monkey-face") && out.contains("32 classes"),
        "{out}"
    );

    // An image folder.
    let dir = tempfile::tempdir().unwrap();
    for (class, n) in [("cats", 2), ("dogs", 3)] {
        fs::create_dir_all(dir.path().join(class)).unwrap();
        for i in 0..n {
            image::RgbImage::from_pixel(8, 8, image::Rgb([i * 40, 10, 200]))
                .save(dir.path().join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let (ok, out, err) = run(bin()
        .args(["dataset", "info", "--json", "--data"])
        .arg(dir.path()));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["classes"], serde_json::json!(["cats", "dogs"]));
    assert_eq!(v["class_counts"], serde_json::json!({"cats": 2, "dogs": 3}));

    let out_png = dir.path().join("folder-contact.png");
    let (ok, _, err) = run(bin()
        .args([
            "dataset",
            "show",
            "--per-class",
            "2",
            "--size",
            "8",
            "--data",
        ])
        .arg(dir.path())
        .arg("--out")
        .arg(&out_png));
    assert!(ok, "{err}");
    assert_eq!(image::open(&out_png).unwrap().height(), 2 * 10 + 2);
}

#[test]
fn dataset_show_writes_a_row_per_class() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("contact.png");
    let (ok, _, err) = run(bin()
        .args(["dataset", "show", "--per-class", "3", "--out"])
        .arg(&out));
    assert!(ok, "{err}");
    let img = image::open(&out).unwrap();
    assert_eq!(img.height(), 32 * (32 + 2) + 2, "32 rows of 32 px tiles");
    let (ok, _, err) = run(bin()
        .args(["dataset", "show", "--per-class", "0", "--out"])
        .arg(&out));
    assert!(!ok);
    assert_clean_error(&err, "--per-class 0");
}

#[test]
fn dataset_commands_report_bad_files_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let labels = copy_expected(dir.path());
    let png = dir.path().join("emoji-32.png");
    let bytes = fs::read(&png).unwrap();
    fs::write(&png, &bytes[..bytes.len() / 3]).unwrap();
    let (ok, _, err) = run(bin().args(["dataset", "info", "--sheet"]).arg(&labels));
    assert!(!ok);
    assert_clean_error(&err, "emoji-32.png");

    fs::write(&png, &bytes).unwrap();
    fs::write(&labels, "definitely not RON").unwrap();
    let (ok, _, err) = run(bin()
        .args(["dataset", "show", "--out"])
        .arg(dir.path().join("c.png"))
        .arg("--sheet")
        .arg(&labels));
    assert!(!ok);
    assert_clean_error(&err, "emoji-32.ron");

    // The builder names a missing package and how to fetch it.
    let (ok, _, err) = run(bin()
        .args(["dataset", "build-emoji", "--packages"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("out")));
    assert!(!ok);
    assert_clean_error(&err, "emoji-datasource-16.0.0.tgz");
    assert!(err.contains("npm pack"), "{err}");
}

#[test]
fn dataset_build_emoji_builds_the_fixture_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(bin()
        .args(["dataset", "build-emoji", "--size", "32", "--packages"])
        .arg(fixture_packages())
        .arg("--out")
        .arg(dir.path()));
    assert!(ok, "{err}");
    assert!(out.contains("tiles of 32×32 px"), "{out}");
    assert_eq!(
        fs::read(dir.path().join("emoji-32.ron")).unwrap(),
        fs::read(fixture_expected().join("emoji-32.ron")).unwrap()
    );
    let (ok, _, err) = run(bin()
        .args(["dataset", "build-emoji", "--size", "3", "--packages"])
        .arg(fixture_packages())
        .arg("--out")
        .arg(dir.path()));
    assert!(!ok);
    assert_clean_error(&err, "tile size 3");
}
