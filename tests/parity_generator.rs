//! Parity with the authors' generator on the reference vectors (`official-tiny`, README §5.1–5.2):
//! the content branch at every stage (x̂ and per-cluster logits within 1e-4, greedy codes exactly)
//! and the structure velocity at t = 0.7 (within 1e-4), through both loading routes.

mod common;

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use nvg_studio::model::generator::{GeneratorConfig, NvgGenerator, reference_scale_factors};

use common::{Vector, max_abs_diff, read_vectors, testvectors};

const B: usize = 2;
const S: usize = 9;
const L: usize = 256;
const C: usize = 32;
const V: usize = 512;
const BITS: usize = 8;
const TOL: f32 = 1e-4;

fn sci(v: &[f32]) -> String {
    v.iter().map(|d| format!("{d:.2e}")).collect::<Vec<_>>().join(", ")
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

struct Inputs {
    /// `tok.labels` of images 0 and 1, per stage: `labels[s][b]`.
    labels: Vec<Vec<Vec<u32>>>,
    /// `tok.canvas` of images 0 and 1, per stage: `[B, L, C]` flattened.
    canvas: Vec<Vec<f32>>,
}

fn inputs(tok: &HashMap<String, Vector>) -> Inputs {
    let lab = &tok["tok.labels"].i64; // [4, 9, 256]
    let can = &tok["tok.canvas"].f32; // [4, 9, 256, 32]
    let labels = (0..S)
        .map(|s| (0..B).map(|b| lab[(b * S + s) * L..(b * S + s + 1) * L].iter().map(|&v| v as u32).collect()).collect())
        .collect();
    let canvas = (0..S)
        .map(|s| (0..B).flat_map(|b| can[(b * S + s) * L * C..(b * S + s + 1) * L * C].iter().copied()).collect())
        .collect();
    Inputs { labels, canvas }
}

fn tensor3(v: &[f32], shape: [usize; 3], dev: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), dev)
}

/// `x[:, s]` of a `[B, stages, rest]` tensor.
fn stage_slice(v: &[f32], stages: usize, rest: usize, s: usize) -> Vec<f32> {
    (0..B).flat_map(|b| v[(b * stages + s) * rest..(b * stages + s + 1) * rest].iter().copied()).collect()
}

/// Content branch at one stage; returns (max |Δx̂|, max |Δlogits|).
fn check_content_stage(g: &NvgGenerator, inp: &Inputs, gv: &HashMap<String, Vector>, s: usize, dev: &Device) -> (f32, f32) {
    let classes = common::class_labels(&gv);
    let labels: Vec<&[u32]> = inp.labels[s].iter().map(|m| m.as_slice()).collect();
    let canvas = tensor3(&inp.canvas[s], [B, L, C], dev);
    let (x0, logits) = g.content_forward(s, &classes, canvas, &labels);
    let k = 1usize << s;
    assert_eq!(logits.dims(), [B, k, V]);
    let dx = max_abs_diff(&to_vec(x0), &stage_slice(&gv["content.x0_hat"].f32, S, L * C, s));
    let logits = to_vec(logits);
    let dl = max_abs_diff(&logits, &gv[&format!("content.logits_s{s}")].f32);

    check_greedy_codes(&logits, &labels, gv, s);
    (dx, dl)
}

/// Greedy codes from per-cluster logits `[B, 2^s, V]` (argmax per cluster, broadcast to the
/// positions) equal the reference's at stage `s`.
fn check_greedy_codes(logits: &[f32], labels: &[&[u32]], gv: &HashMap<String, Vector>, s: usize) {
    let k = 1usize << s;
    let greedy = &gv["content.greedy_codes"].i64; // [B, 9, 256]
    for (b, map) in labels.iter().enumerate() {
        let ours: Vec<i64> = map
            .iter()
            .map(|&lab| {
                let row = &logits[(b * k + lab as usize) * V..(b * k + lab as usize + 1) * V];
                row.iter().enumerate().fold((0, f32::NEG_INFINITY), |m, (i, &x)| if x > m.1 { (i, x) } else { m }).0 as i64
            })
            .collect();
        assert_eq!(ours, greedy[(b * S + s) * L..(b * S + s + 1) * L], "greedy codes differ at image {b} stage {s}");
    }
}

fn load_vectors() -> Option<(HashMap<String, Vector>, HashMap<String, Vector>, std::path::PathBuf)> {
    let dir = testvectors()?;
    let gen_path = dir.join("generator_vectors.safetensors");
    if !gen_path.exists() {
        eprintln!("{} not found — parity test skipped", gen_path.display());
        return None;
    }
    Some((read_vectors(&dir.join("tokenizer_vectors.safetensors")), read_vectors(&gen_path), dir))
}

#[test]
fn config_scale_factors_equal_the_reference_buffer() {
    let Some(dir) = testvectors() else { return };
    let found = reference_scale_factors(&dir.join("generator.safetensors")).expect("readable").expect("buffer present");
    assert_eq!(found, GeneratorConfig::reference_tiny().scale_factors);
}

#[test]
fn content_branch_matches_reference_safetensors() {
    let Some((tok, gv, dir)) = load_vectors() else { return };
    let classes = common::class_labels(&gv);
    let dev = Device::flex();
    let cfg = GeneratorConfig::reference_tiny();
    let g = NvgGenerator::from_reference_safetensors(&dir.join("generator.safetensors"), &cfg, &dev).expect("loads");
    let inp = inputs(&tok);

    // Stage-4 intermediates first, to localise a mismatch.
    let s = 4;
    let labels: Vec<&[u32]> = inp.labels[s].iter().map(|m| m.as_slice()).collect();
    let (tokens, vec) = g.content_inputs(s, &classes, tensor3(&inp.canvas[s], [B, L, C], &dev));
    let d_tok = max_abs_diff(&to_vec(tokens.clone().narrow(0, 0, 1)), &gv["content.s4.tokens_in_b0"].f32);
    let d_vec = max_abs_diff(&to_vec(vec.clone()), &gv["content.s4.vec"].f32);
    // RoPE tables: the reference stores [cos −sin; sin cos] per pair, [1, 1, 257, 32, 2, 2].
    let rope = g.content_rope(s, &labels, &dev);
    let cos = to_vec(rope.cos().narrow(0, 0, 1));
    let sin = to_vec(rope.sin().narrow(0, 0, 1));
    let r = &gv["content.s4.rope_c_b0"].f32;
    let rc: Vec<f32> = r.chunks_exact(4).map(|m| m[0]).collect();
    let rs: Vec<f32> = r.chunks_exact(4).map(|m| m[2]).collect();
    let d_rope = max_abs_diff(&cos, &rc).max(max_abs_diff(&sin, &rs));
    assert!(r.chunks_exact(4).all(|m| m[1] == -m[2] && m[0] == m[3]));
    let mut h = tokens;
    let mut d_blocks = Vec::new();
    for (i, block) in g.content_blocks().iter().enumerate() {
        h = block.forward(h, vec.clone(), &rope);
        d_blocks.push(max_abs_diff(&to_vec(h.clone().narrow(0, 0, 1)), &gv[&format!("content.s4.block{i}_out_b0")].f32));
    }
    eprintln!("content s4: tokens_in {d_tok:.2e}, vec {d_vec:.2e}, rope {d_rope:.2e}, block outputs {}", sci(&d_blocks));
    assert!(d_tok <= TOL && d_vec <= TOL && d_rope <= 1e-6, "stage-4 inputs differ");
    assert!(d_blocks.iter().all(|&d| d <= TOL), "stage-4 block outputs differ: {d_blocks:?}");

    for s in 0..S {
        let (dx, dl) = check_content_stage(&g, &inp, &gv, s, &dev);
        eprintln!("content stage {s}: x0_hat {dx:.2e}, logits {dl:.2e}");
        assert!(dx <= TOL, "x0_hat at stage {s} differs by {dx}");
        assert!(dl <= TOL, "logits at stage {s} differ by {dl}");
    }
}

#[test]
fn content_stage4_matches_reference_pytorch_checkpoint() {
    let Some((tok, gv, dir)) = load_vectors() else { return };
    let dev = Device::flex();
    let cfg = GeneratorConfig::reference_tiny();
    let g = NvgGenerator::from_reference_pytorch(&dir.join("nvg_official_layout.ckpt"), &cfg, &dev).expect("loads");
    let inp = inputs(&tok);
    let (dx, dl) = check_content_stage(&g, &inp, &gv, 4, &dev);
    eprintln!("content stage 4 (ckpt route): x0_hat {dx:.2e}, logits {dl:.2e}");
    assert!(dx <= TOL && dl <= TOL, "ckpt route differs: x0_hat {dx}, logits {dl}");
}

fn check_structure(g: &NvgGenerator, inp: &Inputs, gv: &HashMap<String, Vector>, dev: &Device, stages: &[usize]) -> Vec<f32> {
    let classes = common::class_labels(&gv);
    let t = gv["svel.t"].f32[0];
    let z_all = &gv["svel.z_in"].f32; // [B, 7, 256, 8]
    let v_all = &gv["svel.velocity"].f32;
    let mut diffs = Vec::new();
    for &s in stages {
        let labels: Vec<&[u32]> = inp.labels[s].iter().map(|m| m.as_slice()).collect();
        let canvas_next = tensor3(&inp.canvas[s + 1], [B, L, C], dev);
        let z = tensor3(&stage_slice(z_all, 7, L * BITS, s), [B, L, BITS], dev);
        let v = g.structure_forward(s, &classes, canvas_next, &labels, z, &[t]);
        diffs.push(max_abs_diff(&to_vec(v), &stage_slice(v_all, 7, L * BITS, s)));
    }
    diffs
}

#[test]
fn structure_velocity_matches_reference_safetensors() {
    let Some((tok, gv, dir)) = load_vectors() else { return };
    let classes = common::class_labels(&gv);
    let dev = Device::flex();
    let cfg = GeneratorConfig::reference_tiny();
    let g = NvgGenerator::from_reference_safetensors(&dir.join("generator.safetensors"), &cfg, &dev).expect("loads");
    let inp = inputs(&tok);

    // Stage-2 intermediates.
    let s = 2;
    let labels: Vec<&[u32]> = inp.labels[s].iter().map(|m| m.as_slice()).collect();
    let z = tensor3(&stage_slice(&gv["svel.z_in"].f32, 7, L * BITS, s), [B, L, BITS], &dev);
    let vec = g.structure_vec(s, &classes, &[gv["svel.t"].f32[0]], &dev);
    let tokens = g.structure_tokens(&classes, tensor3(&inp.canvas[s + 1], [B, L, C], &dev), z);
    let d_vec = max_abs_diff(&to_vec(vec.clone()), &gv["svel.s2.vec"].f32);
    let d_tok = max_abs_diff(&to_vec(tokens.clone().narrow(0, 0, 1)), &gv["svel.s2.tokens_in_b0"].f32);
    let rope = g.structure_rope(s, &labels, &dev);
    let mut h = tokens;
    for block in g.structure_blocks() {
        h = block.forward(h, vec.clone(), &rope);
    }
    let d_blk = max_abs_diff(&to_vec(h.narrow(0, 0, 1)), &gv["svel.s2.blocks_out_b0"].f32);
    eprintln!("structure s2: vec {d_vec:.2e}, tokens_in {d_tok:.2e}, blocks_out {d_blk:.2e}");
    assert!(d_vec <= TOL && d_tok <= TOL && d_blk <= TOL, "stage-2 structure intermediates differ");

    let diffs = check_structure(&g, &inp, &gv, &dev, &(0..7).collect::<Vec<_>>());
    eprintln!("structure velocity per stage: {}", sci(&diffs));
    for (s, d) in diffs.iter().enumerate() {
        assert!(*d <= TOL, "velocity at stage {s} differs by {d}");
    }
}

#[test]
fn structure_velocity_matches_reference_pytorch_checkpoint() {
    let Some((tok, gv, dir)) = load_vectors() else { return };
    let dev = Device::flex();
    let cfg = GeneratorConfig::reference_tiny();
    let g = NvgGenerator::from_reference_pytorch(&dir.join("nvg_official_layout.ckpt"), &cfg, &dev).expect("loads");
    let diffs = check_structure(&g, &inputs(&tok), &gv, &dev, &[3]);
    eprintln!("structure velocity stage 3 (ckpt route): {:.2e}", diffs[0]);
    assert!(diffs[0] <= TOL);
}

#[test]
fn loading_reports_missing_file_and_wrong_scale_factors() {
    let dev = Device::flex();
    let cfg = GeneratorConfig::reference_tiny();
    let missing = Path::new("/nonexistent/generator.safetensors");
    let e = NvgGenerator::from_reference_safetensors(missing, &cfg, &dev).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/generator.safetensors"), "{e}");
    let Some(dir) = testvectors() else { return };
    let mut wrong = cfg.clone();
    wrong.scale_factors[3] = 1.0;
    let e = NvgGenerator::from_reference_safetensors(&dir.join("generator.safetensors"), &wrong, &dev).unwrap_err().to_string();
    assert!(e.contains("scale_factors") && e.contains("generator.safetensors"), "{e}");
}

/// The sampler's host inference path (`model::host`, used on the CPU backend) against the same
/// reference values: per-cluster logits at every stage and greedy codes, velocities at every
/// structure stage, within the same tolerance.
#[test]
fn host_path_matches_reference() {
    use nvg_studio::model::host::HostGenerator;
    let Some((tok, gv, dir)) = load_vectors() else { return };
    let classes = common::class_labels(&gv);
    let dev = Device::flex();
    let cfg = GeneratorConfig::reference_tiny();
    let g = NvgGenerator::from_reference_safetensors(&dir.join("generator.safetensors"), &cfg, &dev).expect("loads");
    let host = HostGenerator::new(&g);
    let inp = inputs(&tok);
    let mut dls = Vec::new();
    for s in 0..S {
        let labels: Vec<&[u32]> = inp.labels[s].iter().map(|m| m.as_slice()).collect();
        let logits = host.content_logits(&g, s, &classes, &inp.canvas[s], &labels);
        let dl = max_abs_diff(&logits, &gv[&format!("content.logits_s{s}")].f32);
        assert!(dl <= TOL, "host logits at stage {s} differ by {dl}");
        dls.push(dl);
        check_greedy_codes(&logits, &labels, &gv, s);
    }
    let t = gv["svel.t"].f32[0];
    let mut dvs = Vec::new();
    for s in 0..7 {
        let labels: Vec<&[u32]> = inp.labels[s].iter().map(|m| m.as_slice()).collect();
        let prep = host.structure_prep(&g, s, &classes, &inp.canvas[s + 1], &labels);
        let v = host.structure_velocity(&prep, &stage_slice(&gv["svel.z_in"].f32, 7, L * BITS, s), t);
        let d = max_abs_diff(&v, &stage_slice(&gv["svel.velocity"].f32, 7, L * BITS, s));
        assert!(d <= TOL, "host velocity at stage {s} differs by {d}");
        dvs.push(d);
    }
    eprintln!("host path: logits per stage {}; velocity per stage {}", sci(&dls), sci(&dvs));
}
