//! `bench --what generator` (the timing anchor's shape, burn path vs host path, reruns from every
//! stage), `bench --what flow-steps` (what fewer structure flow steps cost on a model) and
//! `bench --what precision` (what bf16 products change on a model).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

use nvg_studio::model::backend::BackendChoice;
use nvg_studio::granularity::GranularitySequence;
use nvg_studio::model::generator::GeneratorConfig;
use nvg_studio::model::host::bf16;
use nvg_studio::model::host::{HostGenerator, Precision};
use nvg_studio::model::{Tokenizer, TokenizerConfig};
use nvg_studio::sampler::{Bundle, load_bundle};
use nvg_studio::sampler::{ImageJob, SamplerSettings, sample_with};

use super::median;
use crate::cli::pick_backend;

/// The timing anchor's shape (shared/testvectors/official-tiny/README.md §8, "small"): generator
/// depth 4 (content 256, structure 128), codebook 4096, 32 classes, 16×16 grid, the reference
/// tokenizer shape with a 4096-entry codebook; batch 1, no guidance, greedy content.
pub fn generator(choice: BackendChoice, reps: usize, flow_steps: usize) -> Result<()> {
    let b = pick_backend(choice)?;
    let reps = reps.max(1);
    let tcfg = TokenizerConfig { codebook_size: 4096, ..TokenizerConfig::reference_tiny() };
    let gcfg = GeneratorConfig {
        depth: 4,
        content_width: 256,
        content_heads: 4,
        structure_width: 128,
        structure_heads: 2,
        vocab_size: 4096,
        num_classes: 32,
        ..GeneratorConfig::reference_tiny()
    };
    b.device.seed(0);
    let tok = Tokenizer::new(&tcfg, &b.device);
    let g = nvg_studio::model::generator::NvgGenerator::new(&gcfg, &b.device);
    println!("generator bench: {} parameters, {} flow steps, batch 1, no CFG, greedy", gcfg.param_count().total(), flow_steps);
    let settings = SamplerSettings { flow_steps, ..SamplerSettings::greedy() };
    let time = |f: &mut dyn FnMut()| {
        f(); // warm-up
        let mut t = Vec::new();
        for _ in 0..reps {
            let s = Instant::now();
            f();
            t.push(s.elapsed().as_secs_f64());
        }
        median(t)
    };
    let l = gcfg.num_positions();
    let labels: Vec<u32> = (0..l as u32).map(|p| p >> 4).collect(); // a balanced stage-4 map
    let canvas = burn::tensor::Tensor::<3>::zeros([1, l, 32], &b.device);
    let t_content = time(&mut || {
        let (x, lg) = g.content_forward(4, &[3], canvas.clone(), &[&labels]);
        std::hint::black_box((x.into_data(), lg.into_data()));
    });
    let z = burn::tensor::Tensor::<3>::zeros([1, l, gcfg.num_bits()], &b.device);
    let t_struct = time(&mut || {
        let v = g.structure_forward(4, &[3], canvas.clone(), &[&labels], z.clone(), &[0.5]);
        std::hint::black_box(v.into_data());
    });
    // The same passes through the host path (the sampler's on the CPU backend).
    let t_copy = time(&mut || {
        std::hint::black_box(nvg_studio::model::host::HostGenerator::new(&g));
    });
    let host = nvg_studio::model::host::HostGenerator::new(&g);
    let final_canvas = burn::tensor::Tensor::<3>::zeros([1, l, 32], &b.device);
    let t_decode = time(&mut || {
        std::hint::black_box(tok.decode(final_canvas.clone()).into_data());
    });
    let canvas_host = vec![0f32; l * 32];
    let z_host = vec![0f32; l * gcfg.num_bits()];
    let t_content_host = time(&mut || {
        std::hint::black_box(host.content_logits(&g, 4, &[3], &canvas_host, &[&labels]));
    });
    let prep = host.structure_prep(&g, 4, &[3], &canvas_host, &[&labels]);
    let t_struct_host = time(&mut || {
        std::hint::black_box(host.structure_velocity(&prep, &z_host, 0.5));
    });
    // Generations reuse the loaded model's host copy, as the editor and the CLI do (`Bundle`).
    let mut last = None;
    let mut full = || {
        let out = sample_with(&g, Some(&host), &tok, 0.5, &[ImageJob::new(3, 1)], &settings, &mut |_| true, &|| false).expect("sample");
        let img = tok.decode(out.canvas.clone());
        std::hint::black_box(img.into_data());
        last = Some(out.sequences[0].clone());
    };
    let host_on = nvg_studio::model::host::enabled();
    nvg_studio::model::host::set_enabled(false);
    let t_full_burn = time(&mut full);
    nvg_studio::model::host::set_enabled(host_on);
    let t_full = time(&mut full);
    println!("content pass (stage 4): burn {:.1} ms, host {:.1} ms", 1e3 * t_content, 1e3 * t_content_host);
    println!(
        "structure flow step (one velocity evaluation): burn {:.1} ms, host {:.1} ms ({})",
        1e3 * t_struct,
        1e3 * t_struct_host,
        nvg_studio::model::host::label()
    );
    println!("host copy of the weights: {:.1} ms; decode of one canvas: {:.1} ms", 1e3 * t_copy, 1e3 * t_decode);
    println!("full generation + decode: burn path {:.3} s", t_full_burn);
    println!("full generation + decode: median {:.3} s (the sampler's path: {})", t_full, if b.is_cpu && host_on { "host" } else { "burn" });
    let prev = last.context("no generation")?;
    for k in 1..gcfg.num_stages() {
        let mut job = ImageJob::new(3, 1);
        job.previous = Some(prev.clone());
        job.resume_from = k;
        let t = time(&mut || {
            let out = sample_with(&g, Some(&host), &tok, 0.5, std::slice::from_ref(&job), &settings, &mut |_| true, &|| false).expect("sample");
            std::hint::black_box(tok.decode(out.canvas).into_data());
        });
        println!("rerun from stage {k} + decode: median {:.3} s", t);
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM")) {
            println!("memory peak: {}", line.trim_start_matches("VmHWM:").trim());
        }
    }
    Ok(())
}

/// One generation of a comparison: the sequence, the decoded image and the time it took.
struct Run {
    seq: GranularitySequence,
    img: Vec<f32>,
    secs: f64,
}

/// Generates `seed` (class `seed·7 mod classes`) with `steps` flow steps and greedy content on the
/// given host path (or the bundle's).
fn run_one(bundle: &Bundle, host: Option<&HostGenerator>, steps: usize, seed: u64) -> Result<Run> {
    let settings = SamplerSettings { flow_steps: steps, top_k: 1, top_p: None, ..SamplerSettings::default() };
    let job = ImageJob::new((seed as usize * 7) % bundle.class_names.len(), seed);
    let t = Instant::now();
    let host = host.or(bundle.host.as_ref());
    let out = sample_with(&bundle.generator, host, &bundle.tokenizer, bundle.tcfg.phi_weight, &[job], &settings, &mut |_| true, &|| false)?;
    let img = bundle.tokenizer.decode(out.canvas).into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| anyhow!("{e:?}"))?;
    Ok(Run { seq: out.sequences[0].clone(), img, secs: t.elapsed().as_secs_f64() })
}

/// One table row: time per image, stage-1 and last-stage label agreement with `reference`,
/// identical images, PSNR of the others.
fn agreement_row(label: &str, runs: &[Run], reference: &[Run]) -> String {
    let (mut t, mut a1, mut al, mut sq, mut px, mut same) = (0.0, 0.0, 0.0, 0.0, 0usize, 0usize);
    for (r, rref) in runs.iter().zip(reference) {
        let last = r.seq.stages.len() - 1;
        let agree = |s: usize| {
            let (x, y) = (&r.seq.stages[s].structure, &rref.seq.stages[s].structure);
            x.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / x.len() as f64
        };
        t += r.secs;
        a1 += agree(1);
        al += agree(last);
        let err = r.img.iter().zip(&rref.img).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
        if err == 0.0 {
            same += 1;
        } else {
            sq += err;
            px += r.img.len();
        }
    }
    let n = runs.len() as f64;
    // Images are in [-1, 1]: peak-to-peak 2. PSNR over the pixels of the seeds that differ.
    let psnr = if px == 0 { "—".to_string() } else { format!("{:.1} dB", 10.0 * (4.0 / (sq / px as f64)).log10()) };
    format!("| {label} | {:.2} s | {:.1} % | {:.1} % | {same} of {} | {psnr} |", t / n, 100.0 * a1 / n, 100.0 * al / n, runs.len())
}

/// What bf16 products change: each seed generated in f32 (the reference) and in bf16 on the same
/// model, 25 flow steps, greedy content; and, for scale, f32 runs of other seeds (same classes)
/// against the reference — what "a different image" measures.
pub fn precision(choice: BackendChoice, model: PathBuf, seeds: usize) -> Result<()> {
    let b = pick_backend(choice)?;
    if !b.is_cpu {
        bail!("--what precision compares the CPU host path's f32 and bf16 products: use --backend cpu");
    }
    let bundle = load_bundle(&model, &b.device).map_err(|e| anyhow!("{e}"))?;
    let f32_host = HostGenerator::with_precision(&bundle.generator, Precision::F32);
    let bf16_host = HostGenerator::with_precision(&bundle.generator, Precision::Bf16);
    let seeds: Vec<u64> = (1..=seeds.max(1) as u64).collect();
    let classes = bundle.class_names.len() as u64;
    let reference: Vec<Run> = seeds.iter().map(|&s| run_one(&bundle, Some(&f32_host), 25, s)).collect::<Result<_>>()?;
    let bf16_runs: Vec<Run> = seeds.iter().map(|&s| run_one(&bundle, Some(&bf16_host), 25, s)).collect::<Result<_>>()?;
    // Seed s + classes·1000 has the same class as s (classes are seed·7 mod classes).
    let other: Vec<Run> = seeds.iter().map(|&s| run_one(&bundle, Some(&f32_host), 25, s + classes * 1000)).collect::<Result<_>>()?;
    println!("precision bench: model {}, {} seeds, 25 flow steps, greedy content, reference f32; bf16 products on {}", model.display(), seeds.len(), bf16::kernel().name());
    println!("| run | time per image | stage-1 labels = f32 | last-stage labels = f32 | identical final images | PSNR of the others vs f32 |");
    println!("|---|---|---|---|---|---|");
    println!("{}", agreement_row("f32 (reference)", &reference, &reference));
    println!("{}", agreement_row("bf16, same seed", &bf16_runs, &reference));
    println!("{}", agreement_row("f32, another seed of the same class", &other, &reference));
    Ok(())
}

/// What fewer structure flow steps cost: each seed is generated with 25 steps (the reference) and
/// with fewer; content is greedy (top-k 1, CFG as default) so only the flow integration differs.
/// Reports per step count: time per image, the share of positions whose stage-1 and last-stage
/// labels equal the reference's, and the PSNR of the final image against the reference.
pub fn flow_steps(choice: BackendChoice, model: PathBuf, seeds: usize) -> Result<()> {
    let b = pick_backend(choice)?;
    let bundle = load_bundle(&model, &b.device).map_err(|e| anyhow!("{e}"))?;
    let seeds: Vec<u64> = (1..=seeds.max(1) as u64).collect();
    let reference: Vec<Run> = seeds.iter().map(|&s| run_one(&bundle, None, 25, s)).collect::<Result<_>>()?;
    println!("flow-steps bench: model {}, {} seeds, greedy content, reference 25 steps", model.display(), seeds.len());
    println!("| flow steps | time per image | stage-1 labels = reference | last-stage labels = reference | identical final images | PSNR of the others vs reference |");
    println!("|---|---|---|---|---|---|");
    for steps in [25usize, 10, 5, 3, 1] {
        let runs: Vec<Run> = seeds.iter().map(|&s| run_one(&bundle, None, steps, s)).collect::<Result<_>>()?;
        println!("{}", agreement_row(&steps.to_string(), &runs, &reference));
    }
    Ok(())
}
