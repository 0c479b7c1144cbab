//! Mutation fuzzing of every loader that reads a user's or a stranger's file (issue 23): the
//! project file, sequences (RON and JSON), the recipe in an exported PNG, image decoding,
//! checkpoint metadata and weights. Each target starts from valid files and applies 1–4 random
//! mutations per input (bit flips, interesting bytes, deletions, duplications, insertions,
//! truncations, splices of two inputs); every input must give a result or a one-line error —
//! never a panic.
//!
//! Seeded, so a CI run is reproducible: `NVG_FUZZ_ITERS` sets the inputs per target (default
//! 300, under a second in all; `NVG_FUZZ_WEIGHT_ITERS` for the two weights targets, whose
//! inputs each build a model), `NVG_FUZZ_SEED` the seed. The long runs and what they found are in
//! docs/reliability.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use burn::tensor::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use nvg_studio::document::{Project, Recipe};
use nvg_studio::granularity::GranularitySequence as Sequence;
use nvg_studio::model::checkpoint::save_module;
use nvg_studio::model::generator::{GeneratorConfig, NvgGenerator};
use nvg_studio::model::generator_io::{GENERATOR_KIND, load_generator};

const INTERESTING: &[u8] = b"\x00\xff\x7f\x80\x01 9-\"[]{}(),:.eE\n\\";

fn iterations(default: usize) -> usize {
    std::env::var("NVG_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Inputs per target for the weights targets (each input builds a model): `NVG_FUZZ_WEIGHT_ITERS`,
/// else [`iterations`].
fn weight_iterations(default: usize) -> usize {
    std::env::var("NVG_FUZZ_WEIGHT_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| iterations(default))
}

fn seed() -> u64 {
    std::env::var("NVG_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(23)
}

/// One mutated input from `corpus`.
fn mutate(rng: &mut ChaCha8Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = corpus[rng.random_range(0..corpus.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let n = v.len();
        match rng.random_range(0..8) {
            0 if n > 0 => {
                let i = rng.random_range(0..n);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if n > 0 => {
                let i = rng.random_range(0..n);
                v[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            2 if n > 0 => {
                let a = rng.random_range(0..n);
                let b = (a + rng.random_range(1..=16.min(n - a))).min(n);
                v.drain(a..b);
            }
            3 if n > 0 => {
                let a = rng.random_range(0..n);
                let b = (a + rng.random_range(1..=32)).min(n);
                let piece = v[a..b].to_vec();
                let at = rng.random_range(0..=n);
                v.splice(at..at, piece);
            }
            4 => {
                let at = rng.random_range(0..=n);
                let bytes: Vec<u8> = (0..rng.random_range(1..8)).map(|_| rng.random()).collect();
                v.splice(at..at, bytes);
            }
            5 if n > 0 => v.truncate(rng.random_range(0..n)),
            6 => {
                // A digit run replaced by a huge or negative number.
                if let Some(i) = v.iter().position(|c| c.is_ascii_digit()).map(|i| i + rng.random_range(0..n.max(1)) % n.max(1)) {
                    let i = i.min(n.saturating_sub(1));
                    let big: &[u8] = [b"18446744073709551615".as_slice(), b"-1", b"1e39", b"NaN", b"4294967296"][rng.random_range(0..5)];
                    v.splice(i..(i + 1).min(n), big.iter().copied());
                }
            }
            _ => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                if !other.is_empty() && n > 0 {
                    let a = rng.random_range(0..n);
                    let b = rng.random_range(0..other.len());
                    v.truncate(a);
                    v.extend_from_slice(&other[b..]);
                }
            }
        }
    }
    v
}

/// Runs `target` on `iters` mutations of `corpus`; panics (naming the input's file) on a
/// panic or a multi-line error.
fn fuzz(name: &str, corpus: &[Vec<u8>], iters: usize, target: impl Fn(&[u8]) -> Result<(), String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed() ^ nvg_studio::data::order::fnv1a64(name.as_bytes()));
    let (mut ok, mut errors) = (0usize, 0usize);
    let t0 = std::time::Instant::now();
    for i in 0..iters {
        let input = mutate(&mut rng, corpus);
        let outcome = catch_unwind(AssertUnwindSafe(|| target(&input)));
        let keep = |why: &str| {
            let path = std::env::temp_dir().join(format!("nvg-fuzz-{name}-{i}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!("{name}: input {i} {why}; saved as {}", path.display());
        };
        match outcome {
            Err(_) => keep("panicked"),
            Ok(Err(e)) if e.contains('\n') || e.trim().is_empty() => keep(&format!("gave a multi-line or empty error: {e:?}")),
            Ok(Err(_)) => errors += 1,
            Ok(Ok(())) => ok += 1,
        }
    }
    eprintln!("{name}: {iters} inputs in {:.1} s: {ok} accepted, {errors} one-line errors, no panic", t0.elapsed().as_secs_f64());
}

fn text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 ({e})"))
}

fn fixture_project() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/project/v1-full.ron")).unwrap()
}

#[test]
fn project_files() {
    let corpus = vec![fixture_project().into_bytes()];
    fuzz("project", &corpus, iterations(300), |b| Project::from_ron(text(b)?).map(|_| ()));
}

#[test]
fn sequences_ron_and_json() {
    let p = Project::from_ron(&fixture_project()).unwrap();
    let seq = p.state.sequence.clone().expect("the fixture holds a sequence");
    let ron = seq.to_ron_string().unwrap().into_bytes();
    let json = seq.to_json_string().unwrap().into_bytes();
    let err = |e: nvg_studio::granularity::GranularityError| e.to_string();
    fuzz("sequence-ron", std::slice::from_ref(&ron), iterations(300), |b| Sequence::from_ron_str(text(b)?).map(|_| ()).map_err(err));
    fuzz("sequence-json", std::slice::from_ref(&json), iterations(300), |b| Sequence::from_json_str(text(b)?).map(|_| ()).map_err(err));
}

fn recipe_text() -> String {
    let p = Project::from_ron(&fixture_project()).unwrap();
    let recipe = Recipe {
        format: "nvg-recipe".into(),
        model: p.model.name.clone(),
        model_hash: p.model.hash.clone(),
        class: "bird".into(),
        state: p.state.clone(),
        image: "final".into(),
    };
    ron::ser::to_string(&recipe).unwrap()
}

/// A 4×4 PNG carrying `text` in its `nvg-recipe` chunk (`None` when the text is not Latin-1).
fn png_with_text(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, 4, 4);
        enc.set_color(png::ColorType::Rgb);
        enc.add_text_chunk("nvg-recipe".into(), text.to_string()).ok()?;
        let mut w = enc.write_header().ok()?;
        w.write_image_data(&[90u8; 48]).ok()?;
    }
    Some(out)
}

fn png_with_recipe() -> Vec<u8> {
    png_with_text(&recipe_text()).unwrap()
}

/// The recipe text is mutated and then wrapped in a valid PNG (mutating the PNG's bytes almost
/// never gets past its chunk checksums; the image target covers that).
#[test]
fn recipes_in_png() {
    let corpus = vec![recipe_text().into_bytes()];
    fuzz("recipe-png", &corpus, iterations(300), |b| {
        let Some(png) = png_with_text(&String::from_utf8_lossy(b)) else { return Ok(()) };
        match Recipe::from_png(&png) {
            Some(r) => r.map(|_| ()),
            None => Ok(()),
        }
    });
}

#[test]
fn image_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples");
    let mut corpus: Vec<Vec<u8>> = ["disc.png", "triangle.png"].iter().map(|f| std::fs::read(samples.join(f)).unwrap()).collect();
    corpus.push(png_with_recipe());
    let path = dir.path().join("input.png");
    fuzz("image", &corpus, iterations(300), |b| {
        std::fs::write(&path, b).unwrap();
        nvg_studio::data::image_io::decode_rgb8(&path, [255, 255, 255]).map(|_| ()).map_err(|e| e.to_string())?;
        nvg_studio::data::load_rgb(&path, 16, [255, 255, 255]).map(|_| ()).map_err(|e| e.to_string())
    });
}

#[test]
fn checkpoint_metadata_and_weights() {
    let dev = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let cfg = GeneratorConfig::test_tiny();
    let g = NvgGenerator::new(&cfg, &dev);
    save_module(&good, GENERATOR_KIND, &cfg, &g, 7, serde_json::json!({ "class_names": ["a", "b", "c", "d"] })).unwrap();
    let meta = std::fs::read(good.join("checkpoint.json")).unwrap();
    let weights = std::fs::read(good.join("model.bpk")).unwrap();
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let load = |bad: &Path| load_generator(bad, &dev).map(|_| ()).map_err(|e| e.to_string());
    std::fs::write(bad.join("model.bpk"), &weights).unwrap();
    fuzz("checkpoint-meta", std::slice::from_ref(&meta), iterations(300), |b| {
        std::fs::write(bad.join("checkpoint.json"), b).unwrap();
        load(&bad)
    });
    std::fs::write(bad.join("checkpoint.json"), &meta).unwrap();
    fuzz("weights", std::slice::from_ref(&weights), weight_iterations(100), |b| {
        std::fs::write(bad.join("model.bpk"), b).unwrap();
        load(&bad)
    });
    // Without the checksum (checkpoints written before it existed), the weights parser itself
    // sees the damage.
    let mut unchecked: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    unchecked.as_object_mut().unwrap().remove("weights_sha256").expect("the checkpoint records its checksum");
    std::fs::write(bad.join("checkpoint.json"), serde_json::to_vec(&unchecked).unwrap()).unwrap();
    fuzz("weights-unchecked", std::slice::from_ref(&weights), weight_iterations(100), |b| {
        std::fs::write(bad.join("model.bpk"), b).unwrap();
        load(&bad)
    });
}

/// What the fuzzer found (2026-12-07), kept as regression inputs: a checkpoint whose head count
/// overflows `heads × 64` panicked; one whose sizes validate but ask for 171 GB aborted the
/// process on allocation; a `kind` with a line break in it gave a two-line error. All are
/// one-line errors now.
#[test]
fn fuzz_findings_stay_fixed() {
    let dev = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let cfg = GeneratorConfig::test_tiny();
    save_module(dir.path(), GENERATOR_KIND, &cfg, &NvgGenerator::new(&cfg, &dev), 1, serde_json::Value::Null).unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("checkpoint.json")).unwrap()).unwrap();
    let cases: [(&[(&str, serde_json::Value)], &str); 3] = [
        (&[("content_heads", serde_json::json!(u64::MAX))], "content_width"),
        (&[("vocab_size", serde_json::json!(1u64 << 40))], "vocab_size"),
        (&[("depth", serde_json::json!(200)), ("content_width", serde_json::json!(16_384)), ("content_heads", serde_json::json!(256))], "parameters"),
    ];
    for (fields, says) in cases {
        let mut m = meta.clone();
        for (field, value) in fields {
            m["config"][*field] = value.clone();
        }
        let field = fields[0].0;
        std::fs::write(dir.path().join("checkpoint.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        let e = load_generator(dir.path(), &dev).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains(says) && !e.contains('\n'), "{field}: {e}");
    }
    let mut m = meta.clone();
    m["kind"] = serde_json::json!("gen\nerator");
    std::fs::write(dir.path().join("checkpoint.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let e = load_generator(dir.path(), &dev).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("expected a generator") && !e.contains('\n'), "{e}");
}
