//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The reference vector folder: `$NVG_TESTVECTORS`, else `../shared/testvectors/official-tiny`.
/// Returns None (and says so) when it does not exist, so parity tests are skipped, not failed,
/// on machines without the vectors.
pub fn testvectors() -> Option<PathBuf> {
    let dir = match std::env::var_os("NVG_TESTVECTORS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testvectors/official-tiny"),
    };
    if dir.join("tokenizer_vectors.safetensors").exists() {
        Some(dir)
    } else {
        eprintln!("parity vectors not found at {} — parity test skipped", dir.display());
        None
    }
}

/// A tensor read from a safetensors file.
pub struct Vector {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
}

pub fn read_vectors(path: &std::path::Path) -> std::collections::HashMap<String, Vector> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let mut out = std::collections::HashMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let (f32v, i64v) = match view.dtype() {
            safetensors::Dtype::F32 => (
                data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
                vec![],
            ),
            safetensors::Dtype::F64 => (
                data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
                vec![],
            ),
            safetensors::Dtype::I64 => (
                vec![],
                data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
            ),
            other => panic!("unexpected dtype {other:?} for {name}"),
        };
        out.insert(name.to_string(), Vector { shape: view.shape().to_vec(), f32: f32v, i64: i64v });
    }
    out
}

/// The generator vectors' `class_labels` (one class id per image of the batch), so that any
/// reference set made the same way can be dropped in through `NVG_TESTVECTORS`.
pub fn class_labels(v: &std::collections::HashMap<String, Vector>) -> Vec<usize> {
    let c = &v.get("class_labels").expect("the generator vectors hold class_labels").i64;
    c.iter().map(|&x| usize::try_from(x).expect("class labels are non-negative")).collect()
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The `nvg-studio` binary on the CPU backend.
pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_nvg-studio"));
    c.arg("--backend").arg("cpu");
    c
}

/// Runs a command: (success, stdout, stderr).
pub fn run(cmd: &mut std::process::Command) -> (bool, String, String) {
    let out = cmd.output().expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The one `error:` line of a failed command (asserts there is exactly one and no panic).
pub fn one_error_line(stderr: &str) -> String {
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line expected: {stderr}");
    lines[0].to_string()
}

/// A randomly initialised test-tiny model directory (tokenizer/ + generator/, 4 shape classes).
pub fn tiny_model_dir(dir: &std::path::Path, seed: u64) {
    use burn::tensor::Device;
    use nvg_studio::model::checkpoint::save_module;
    use nvg_studio::model::generator::{GeneratorConfig, NvgGenerator};
    use nvg_studio::model::tokenizer_io::save_tokenizer;
    use nvg_studio::model::{Tokenizer, TokenizerConfig};
    let dev = Device::flex();
    dev.seed(seed);
    let tcfg = TokenizerConfig::test_tiny();
    save_tokenizer(&dir.join("tokenizer"), &tcfg, &Tokenizer::new(&tcfg, &dev), 0, serde_json::Value::Null).unwrap();
    let gcfg = GeneratorConfig::test_tiny();
    let extra = serde_json::json!({ "class_names": ["disc", "rectangle", "triangle", "ring"] });
    save_module(&dir.join("generator"), "generator", &gcfg, &NvgGenerator::new(&gcfg, &dev), 0, extra).unwrap();
}

/// Steps frames until `cond` holds (the worker runs on its own thread).
pub fn step_until(h: &mut egui_kittest::Harness<'static, nvg_studio::app::NvgApp>, what: &str, cond: impl Fn(&nvg_studio::app::NvgApp) -> bool) {
    let t0 = std::time::Instant::now();
    while !cond(h.state()) {
        assert!(t0.elapsed() < std::time::Duration::from_secs(120), "timed out waiting for {what}; status: {}; error: {:?}", h.state().status(), h.state().error());
        h.step();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    h.step();
}

/// Waits for the model, then restarts from a fresh document with fast settings (3 flow steps).
pub fn ready(h: &mut egui_kittest::Harness<'static, nvg_studio::app::NvgApp>) {
    step_until(h, "model", |a| a.editor().is_some());
    // A fresh document with fast settings (whatever the automatic first run has done so far).
    let mut st = h.state().editor().unwrap().state().clone();
    st.settings = nvg_studio::sampler::SamplerSettings { flow_steps: 3, ..nvg_studio::sampler::SamplerSettings::editor() };
    st.sequence = None;
    st.stale_from = Some(0);
    st.stale_map = false;
    h.state_mut().command(nvg_studio::document::Command::Restore { state: Box::new(st) });
    step_until(h, "first run", |a| a.is_idle());
}
