//! Kill-safe training checkpoints (issues 19 and 23): `train-generator` with a checkpoint after
//! every step is killed with SIGKILL at random moments and resumed with `--resume` until it
//! finishes; the weights it ends with equal, bit for bit, those of the same run uninterrupted.
//! A kill can land anywhere — in a step, while the checkpoint files are staged, between the
//! renames that put them in place — and no kill may lose more than the step in progress.

mod common;

use std::path::Path;
use std::time::Duration;

use burn::tensor::Device;
use nvg_studio::model::generator_io::load_generator;
use nvg_studio::model::tokenizer_io::save_tokenizer;
use nvg_studio::model::{Tokenizer, TokenizerConfig};
use nvg_studio::train::fast::layout::{GenLayout, flatten};
use rand::{Rng, SeedableRng};

use common::{bin, run};

const STEPS: &str = "120";

fn train(model: &Path, resume: bool) -> std::process::Command {
    let mut c = bin();
    c.args(["train-generator", "--synthetic", "8", "--preset", "test-tiny", "--steps", STEPS, "--batch", "2", "--eval-every", "0"])
        .args(["--checkpoint-every", "1", "--path", "host", "--model"])
        .arg(model);
    if resume {
        c.arg("--resume");
    }
    c
}

fn weights(dir: &Path) -> (u64, Vec<f32>) {
    let (meta, g) = load_generator(dir, &Device::flex()).unwrap();
    (meta.step, flatten(&g, &GenLayout::new(g.config())))
}

#[test]
fn killed_at_random_and_resumed_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let tcfg = TokenizerConfig::test_tiny();
    let make = |m: &Path| save_tokenizer(&m.join("tokenizer"), &tcfg, &Tokenizer::new(&tcfg, &Device::flex()), 0, serde_json::Value::Null).unwrap();
    let whole = dir.path().join("whole");
    make(&whole);
    let (ok, _, err) = run(&mut train(&whole, false));
    assert!(ok, "{err}");

    let killed = dir.path().join("killed");
    std::fs::create_dir_all(&killed).unwrap();
    std::fs::copy(whole.join("tokenizer/model.bpk"), {
        std::fs::create_dir_all(killed.join("tokenizer")).unwrap();
        killed.join("tokenizer/model.bpk")
    })
    .unwrap();
    std::fs::copy(whole.join("tokenizer/checkpoint.json"), killed.join("tokenizer/checkpoint.json")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut kills = 0;
    let mut started = false;
    for attempt in 0..200 {
        let mut child = train(&killed, started)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        started = true;
        std::thread::sleep(Duration::from_millis(rng.random_range(100..700)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("error"), "attempt {attempt}: {err}");
        // A kill before the first checkpoint leaves nothing to resume.
        if !killed.join("generator/train-state/checkpoint.json").exists() {
            started = false;
            let _ = std::fs::remove_dir_all(killed.join("generator"));
        }
    }
    assert!(kills >= 3, "only {kills} kills landed: the run is too short for the test");
    let (a, b) = (weights(&whole.join("generator")), weights(&killed.join("generator")));
    assert_eq!((a.0, b.0), (120, 120), "both runs finished");
    assert!(a.1.iter().zip(&b.1).all(|(x, y)| x.to_bits() == y.to_bits()), "{kills} kills: the EMA weights differ from the uninterrupted run's");
    let (a, b) = (weights(&whole.join("generator/train-state")), weights(&killed.join("generator/train-state")));
    assert!(a.1.iter().zip(&b.1).all(|(x, y)| x.to_bits() == y.to_bits()), "{kills} kills: the raw weights differ");
    eprintln!("{kills} kills, resumed each time, same weights bit for bit");
}
