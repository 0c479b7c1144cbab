//! The stage loop of method §5.1 with every control of §5.4 and §10.3–10.6.
//!
//! For each stage i: content of stage i (logits per cluster, CFG on logits, one code per
//! cluster), canvas += Φ_i(broadcast codes); then the structure of stage i+1 (rectified flow
//! with known-bit clamping and CFG on the velocity, then Split), or for the second-to-last stage
//! the noise-only Split. Works on a batch of images, each with its own controls.
//!
//! Host/device split: the network passes run on the device; the small per-stage decisions
//! (sampling codes, Split, clamping) run on the host. On the CPU backend the network passes go
//! through [`HostGenerator`] (fused host kernels, several times faster than burn-flex op by op).

use std::collections::BTreeMap;

use burn::tensor::{Int, Tensor, TensorData};

use super::content::sample_code;
use super::job::ImageJob;
use super::settings::{SamplerSettings, flow_times};
use super::streams::{Purpose, gumbel, normals, stream};
use crate::granularity::{GranularitySequence, SequenceStage, SplitOptions, sigma_of_label, split_balanced, split_general, split_gumbel};
use crate::model::generator::NvgGenerator;
use crate::model::host::HostGenerator;
use crate::model::tokenizer::to_vec_f32;
use crate::model::Tokenizer;

/// What a finished stage reports.
pub struct StageDone<'a> {
    /// Stage index.
    pub stage: usize,
    /// Structure map of this stage, per image.
    pub maps: &'a [Vec<u32>],
    /// Codes of this stage, per image.
    pub codes: &'a [Vec<u32>],
    /// Canvas after this stage's content, `[B, L, C]`.
    pub canvas: &'a Tensor<3>,
}

/// Why sampling stopped early.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SampleError {
    /// The cancellation check said stop.
    #[error("cancelled")]
    Cancelled,
    /// A control does not fit the model or the other controls.
    #[error("{0}")]
    Invalid(String),
}

/// The result: one sequence per image and the final canvas `[B, L, C]`.
pub struct SampleOutput {
    /// Structure maps and codes of every stage, per image.
    pub sequences: Vec<GranularitySequence>,
    /// Canvas after the last stage.
    pub canvas: Tensor<3>,
}

/// Majority class per cluster (ties → the smaller class id; empty clusters → the image class).
fn cluster_classes(job: &ImageJob, labels: &[u32], clusters: usize) -> Vec<usize> {
    let Some(map) = &job.class_map else { return vec![job.class; clusters] };
    let mut counts: Vec<BTreeMap<usize, usize>> = vec![BTreeMap::new(); clusters];
    for (p, &lab) in labels.iter().enumerate() {
        *counts[lab as usize].entry(map[p]).or_default() += 1;
    }
    counts
        .iter()
        .map(|c| {
            c.iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(&cls, _)| cls)
                .unwrap_or(job.class)
        })
        .collect()
}

/// Rows of a guided batch: for each image, one row per distinct class of its clusters, plus
/// one null-class row when guidance is on.
struct Rows {
    classes: Vec<usize>,
    image: Vec<usize>,
    row_of: Vec<BTreeMap<usize, usize>>,
    null_row: Vec<Option<usize>>,
}

impl Rows {
    fn new(cluster_cls: &[Vec<usize>], null: Option<usize>) -> Self {
        let mut r = Rows { classes: vec![], image: vec![], row_of: vec![], null_row: vec![] };
        for (b, cc) in cluster_cls.iter().enumerate() {
            let mut m = BTreeMap::new();
            let mut distinct: Vec<usize> = cc.clone();
            distinct.sort_unstable();
            distinct.dedup();
            for c in distinct {
                m.insert(c, r.classes.len());
                r.classes.push(c);
                r.image.push(b);
            }
            r.row_of.push(m);
            r.null_row.push(null.map(|n| {
                r.classes.push(n);
                r.image.push(b);
                r.classes.len() - 1
            }));
        }
        r
    }
    fn gather<const D: usize>(&self, t: &Tensor<D>) -> Tensor<D> {
        let idx: Vec<i64> = self.image.iter().map(|&b| b as i64).collect();
        let n = idx.len();
        let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(idx, [n]), &t.device());
        t.clone().select(0, idx)
    }
}

/// Rows `image[r]` of a host batch `[B, n]` → `[R, n]`.
fn gather_host(data: &[f32], image: &[usize], n: usize) -> Vec<f32> {
    image.iter().flat_map(|&b| data[b * n..(b + 1) * n].iter().copied()).collect()
}

fn guided(c: f32, u: Option<f32>, g: f32) -> f32 {
    match u {
        Some(u) => u + g * (c - u),
        None => c,
    }
}

/// Runs the stage loop for a batch of jobs.
///
/// `on_stage` is called after each stage's content (and the structure of the next stage) with
/// the stage's maps, codes and canvas; `cancel` is polled between stages and between flow steps.
pub fn sample(
    generator: &NvgGenerator,
    tokenizer: &Tokenizer,
    phi_weight: f64,
    jobs: &[ImageJob],
    settings: &SamplerSettings,
    on_stage: &mut dyn FnMut(&StageDone) -> bool,
    cancel: &dyn Fn() -> bool,
) -> Result<SampleOutput, SampleError> {
    sample_with(generator, None, tokenizer, phi_weight, jobs, settings, on_stage, cancel)
}

/// [`sample`] with the host copy of the generator made once by the caller (a loaded model keeps
/// one, see `sampler::Bundle`), instead of one per call (~15 ms for the bundled model). `None`
/// makes one when the host path applies; a given one is not used when the path is switched off.
#[allow(clippy::too_many_arguments)]
pub fn sample_with(
    generator: &NvgGenerator,
    host: Option<&HostGenerator>,
    tokenizer: &Tokenizer,
    phi_weight: f64,
    jobs: &[ImageJob],
    settings: &SamplerSettings,
    on_stage: &mut dyn FnMut(&StageDone) -> bool,
    cancel: &dyn Fn() -> bool,
) -> Result<SampleOutput, SampleError> {
    settings.validate().map_err(SampleError::Invalid)?;
    let cfg = generator.config();
    let s_count = cfg.num_stages();
    let l = cfg.num_positions();
    let bits = cfg.num_bits();
    let side = cfg.grid_side;
    let b = jobs.len();
    if b == 0 {
        return Err(SampleError::Invalid("no image to generate".into()));
    }
    validate_jobs(jobs, cfg.num_classes, l, s_count, cfg.vocab_size)?;

    // Stage 0 structure, and what is resumed.
    let mut maps: Vec<Vec<Vec<u32>>> = vec![vec![vec![0u32; l]]; b];
    let mut codes: Vec<Vec<Vec<u32>>> = vec![Vec::new(); b];
    let start = jobs.iter().map(|j| j.resume_from).min().unwrap_or(0);
    if jobs.iter().any(|j| j.resume_from != start) {
        return Err(SampleError::Invalid("all images of a batch must resume from the same stage".into()));
    }
    for (bi, job) in jobs.iter().enumerate() {
        if start > 0 {
            let prev = job.previous.as_ref().ok_or_else(|| SampleError::Invalid("resume needs a previous result".into()))?;
            maps[bi] = (0..=start).map(|s| prev.stages[s].structure.clone()).collect();
            codes[bi] = (0..start).map(|s| prev.stages[s].codes.clone()).collect();
        }
        if let Some(m) = job.forced_structure.get(&start).filter(|_| start > 0) {
            if let Some(p) = (0..l).find(|&p| m[p] >> 1 != maps[bi][start - 1][p]) {
                return Err(SampleError::Invalid(format!(
                    "forced structure for stage {start}: position {p} has label {}, whose parent {} is not its stage-{} label {}",
                    m[p],
                    m[p] >> 1,
                    start - 1,
                    maps[bi][start - 1][p]
                )));
            }
            maps[bi][start] = m.clone();
        }
    }
    let canvas_maps: Vec<Vec<&[u32]>> = (0..start).map(|s| maps.iter().map(|m| m[s].as_slice()).collect()).collect();
    let canvas_codes: Vec<Vec<&[u32]>> = (0..start).map(|s| codes.iter().map(|c| c[s].as_slice()).collect()).collect();
    let mut canvas = tokenizer.canvas_from_maps(b, l, &canvas_maps, &canvas_codes, phi_weight);
    let owned;
    let host = match host {
        Some(h) if crate::model::host::enabled() => Some(h),
        Some(_) => None,
        None => {
            owned = HostGenerator::for_device(generator, &canvas.device());
            owned.as_ref()
        }
    };
    let channels = cfg.latent_channels;

    let null = cfg.null_class();
    for stage in start..s_count {
        if cancel() {
            return Err(SampleError::Cancelled);
        }
        let k = 1usize << stage;
        let labels: Vec<&[u32]> = maps.iter().map(|m| m[stage].as_slice()).collect();
        let cluster_cls: Vec<Vec<usize>> = jobs.iter().zip(&labels).map(|(j, lab)| cluster_classes(j, lab, k)).collect();

        // ---- content of this stage ----
        let need_net = jobs.iter().any(|j| !j.forced_codes.contains_key(&stage));
        let stage_codes: Vec<Vec<u32>> = if need_net {
            let rows = Rows::new(&cluster_cls, settings.content_cfg.map(|_| null));
            let row_labels: Vec<&[u32]> = rows.image.iter().map(|&bi| labels[bi]).collect();
            let logits = match &host {
                Some(h) => {
                    let rows_canvas = gather_host(&to_vec_f32(canvas.clone()), &rows.image, l * channels);
                    h.content_logits(generator, stage, &rows.classes, &rows_canvas, &row_labels)
                }
                None => to_vec_f32(generator.content_forward(stage, &rows.classes, rows.gather(&canvas), &row_labels).1),
            };
            let v = cfg.vocab_size;
            let host = logits; // [R, K, V]
            let g = settings.content_cfg.map(|c| c.at(stage, s_count)).unwrap_or(1.0);
            let top_p = settings.top_p_at(stage, s_count);
            jobs.iter()
                .enumerate()
                .map(|(bi, job)| {
                    if let Some(c) = job.forced_codes.get(&stage) {
                        return c.clone();
                    }
                    let mut rng = stream(job.stage_seed(stage), stage, Purpose::Content);
                    let sizes = cluster_sizes(labels[bi], k);
                    let locked = locked_clusters(job, stage, labels[bi], k);
                    (0..k)
                        .map(|ci| {
                            let row_c = rows.row_of[bi][&cluster_cls[bi][ci]];
                            let lc = &host[(row_c * k + ci) * v..(row_c * k + ci + 1) * v];
                            let lu = rows.null_row[bi].map(|r| &host[(r * k + ci) * v..(r * k + ci + 1) * v]);
                            let logits: Vec<f32> =
                                (0..v).map(|j| guided(lc[j], lu.map(|u| u[j]), g)).collect();
                            let code = sample_code(&logits, settings.temperature, settings.top_k, top_p, &mut rng);
                            if sizes[ci] == 0 {
                                0
                            } else if locked[ci] {
                                // The previous cluster these positions were in (the same label
                                // unless earlier stages were regenerated).
                                job.previous
                                    .as_ref()
                                    .and_then(|p| {
                                        let q = labels[bi].iter().position(|&lab| lab as usize == ci)?;
                                        let prev_label = p.stages[stage].structure[q] as usize;
                                        p.stages[stage].codes.get(prev_label).copied()
                                    })
                                    .unwrap_or(code)
                            } else {
                                code
                            }
                        })
                        .collect()
                })
                .collect()
        } else {
            jobs.iter().map(|j| j.forced_codes[&stage].clone()).collect()
        };
        let code_refs: Vec<&[u32]> = stage_codes.iter().map(|c| c.as_slice()).collect();
        canvas = canvas + tokenizer.stage_delta(stage, &labels, &code_refs, phi_weight);
        for (bi, c) in stage_codes.iter().enumerate() {
            codes[bi].push(c.clone());
        }

        // ---- structure of the next stage ----
        if stage + 1 < s_count {
            let next =
                next_structure(generator, host, jobs, settings, stage, &labels, &cluster_cls, &canvas, bits, side, cancel)?;
            for (bi, m) in next.into_iter().enumerate() {
                maps[bi].push(m);
            }
        }
        let stage_maps: Vec<Vec<u32>> = maps.iter().map(|m| m[stage].clone()).collect();
        if !on_stage(&StageDone { stage, maps: &stage_maps, codes: &stage_codes, canvas: &canvas }) {
            return Err(SampleError::Cancelled);
        }
    }

    let sequences = (0..b)
        .map(|bi| {
            let stages = (0..s_count)
                .map(|s| SequenceStage { structure: maps[bi][s].clone(), codes: codes[bi][s].clone() })
                .collect();
            GranularitySequence::new(side, Some(cfg.vocab_size), stages)
        })
        .collect();
    Ok(SampleOutput { sequences, canvas })
}

fn cluster_sizes(labels: &[u32], k: usize) -> Vec<usize> {
    let mut n = vec![0usize; k];
    for &l in labels {
        n[l as usize] += 1;
    }
    n
}

/// Clusters all of whose positions are locked at `stage` (they keep their previous code).
fn locked_clusters(job: &ImageJob, stage: usize, labels: &[u32], k: usize) -> Vec<bool> {
    let Some(lock) = job.lock.as_ref().filter(|l| l.from_stage <= stage && job.previous.is_some()) else {
        return vec![false; k];
    };
    let mut all = vec![true; k];
    let mut any = vec![false; k];
    for (p, &lab) in labels.iter().enumerate() {
        any[lab as usize] = true;
        all[lab as usize] &= lock.mask[p];
    }
    (0..k).map(|c| all[c] && any[c]).collect()
}

#[allow(clippy::too_many_arguments)]
fn next_structure(
    generator: &NvgGenerator,
    host: Option<&HostGenerator>,
    jobs: &[ImageJob],
    settings: &SamplerSettings,
    stage: usize,
    labels: &[&[u32]],
    cluster_cls: &[Vec<usize>],
    canvas: &Tensor<3>,
    bits: usize,
    side: usize,
    cancel: &dyn Fn() -> bool,
) -> Result<Vec<Vec<u32>>, SampleError> {
    let cfg = generator.config();
    let l = side * side;
    let s_count = cfg.num_stages();
    let b = jobs.len();
    // Initial flow state per image: known bits ±1, unknown channels from the noise.
    let noise: Vec<Vec<f32>> = jobs
        .iter()
        .map(|j| match &j.shared_noise {
            Some(n) => n.clone(),
            None => normals(j.stage_seed(stage), stage, Purpose::StructureNoise, l * bits),
        })
        .collect();
    // Clamp targets: known channels < stage from the labels; at locked positions, every channel
    // ≥ stage from the previous result's full-depth code.
    let mut clamp: Vec<Vec<Option<f32>>> = vec![vec![None; l * bits]; b];
    for (bi, job) in jobs.iter().enumerate() {
        for p in 0..l {
            let sig = sigma_of_label(labels[bi][p], stage, bits);
            for j in 0..stage {
                clamp[bi][p * bits + j] = Some(sig[j] as f32 - 1.0);
            }
        }
        if let (Some(lock), Some(prev)) = (&job.lock, &job.previous) {
            if lock.from_stage <= stage + 1 {
                let last = &prev.stages[s_count - 1].structure;
                for p in (0..l).filter(|&p| lock.mask[p]) {
                    let sig = sigma_of_label(last[p], s_count - 1, bits);
                    for j in stage..bits {
                        clamp[bi][p * bits + j] = Some(sig[j] as f32 - 1.0);
                    }
                }
            }
        }
    }
    let mut z: Vec<Vec<f32>> = noise
        .iter()
        .zip(&clamp)
        .map(|(n, c)| n.iter().zip(c).map(|(&v, c)| c.unwrap_or(v)).collect())
        .collect();

    let forced: Vec<Option<&Vec<u32>>> = jobs.iter().map(|j| j.forced_structure.get(&(stage + 1))).collect();
    let network = stage < cfg.num_structure_stages() && forced.iter().any(|f| f.is_none());
    if network {
        run_flow(generator, host, settings, stage, labels, cluster_cls, canvas, &mut z, &clamp, cancel)?;
    }

    jobs.iter()
        .enumerate()
        .map(|(bi, job)| {
            if let Some(m) = forced[bi] {
                if let Some(p) = (0..l).find(|&p| m[p] >> 1 != labels[bi][p]) {
                    return Err(SampleError::Invalid(format!(
                        "forced structure for stage {}: position {p} has label {}, whose parent {} is not its stage-{stage} label {}",
                        stage + 1,
                        m[p],
                        m[p] >> 1,
                        labels[bi][p]
                    )));
                }
                return Ok(m.clone());
            }
            // At the last split the score is the raw noise channel (no network, §5.1).
            let score: Vec<f32> = (0..l).map(|p| z[bi][p * bits + stage]).collect();
            let lock = job.lock.as_ref().filter(|lk| lk.from_stage <= stage + 1);
            let prev = job.previous.as_ref();
            let balanced = is_balanced(labels[bi], stage);
            let r = if let (Some(lock), Some(prev)) = (lock, prev) {
                split_general(
                    labels[bi],
                    stage,
                    &score,
                    &SplitOptions {
                        odd_counts: None,
                        locked: Some(lock.mask.clone()),
                        // Each position's previous child bit under its current parent.
                        previous: Some(
                            prev.stages[stage + 1]
                                .structure
                                .iter()
                                .zip(labels[bi])
                                .map(|(&old, &parent)| parent * 2 + (old & 1))
                                .collect(),
                        ),
                    },
                )
            } else if !balanced {
                split_general(labels[bi], stage, &score, &SplitOptions::default())
            } else if settings.gumbel {
                let mut rng = stream(job.stage_seed(stage), stage, Purpose::Gumbel);
                let g: Vec<f32> = (0..l).map(|_| gumbel(&mut rng)).collect();
                split_gumbel(labels[bi], stage, &score, &g)
            } else {
                split_balanced(labels[bi], stage, &score)
            };
            r.map_err(|e| SampleError::Invalid(format!("split at stage {stage}: {e}")))
        })
        .collect()
}

/// Integrates the structure flow of `stage` (§5.3): Euler steps from t = 1 to 0 on the shifted
/// grid, CFG on the velocity, clamped channels re-imposed after every step. `z` is `[B][L·(S−1)]`.
#[allow(clippy::too_many_arguments)]
fn run_flow(
    generator: &NvgGenerator,
    host: Option<&HostGenerator>,
    settings: &SamplerSettings,
    stage: usize,
    labels: &[&[u32]],
    cluster_cls: &[Vec<usize>],
    canvas: &Tensor<3>,
    z: &mut [Vec<f32>],
    clamp: &[Vec<Option<f32>>],
    cancel: &dyn Fn() -> bool,
) -> Result<(), SampleError> {
    let cfg = generator.config();
    let l = cfg.num_positions();
    let bits = cfg.num_bits();
    let s_count = cfg.num_stages();
    let rows = Rows::new(cluster_cls, settings.structure_cfg.map(|_| cfg.null_class()));
    let row_labels: Vec<&[u32]> = rows.image.iter().map(|&bi| labels[bi]).collect();
    let prep = host.map(|h| {
        let rows_canvas = gather_host(&to_vec_f32(canvas.clone()), &rows.image, l * cfg.latent_channels);
        (h, h.structure_prep(generator, stage, &rows.classes, &rows_canvas, &row_labels))
    });
    let cond = if prep.is_none() { Some(rows.gather(canvas)) } else { None };
    let g = settings.structure_cfg.map(|c| c.at(stage, s_count)).unwrap_or(1.0);
    let times = flow_times(settings.flow_steps);
    let device = canvas.device();
    for w in times.windows(2) {
        if cancel() {
            return Err(SampleError::Cancelled);
        }
        let (t_cur, t_next) = (w[0], w[1]);
        let mut zr = Vec::with_capacity(rows.image.len() * l * bits);
        for &bi in &rows.image {
            zr.extend_from_slice(&z[bi]);
        }
        let v = match &prep {
            Some((h, prep)) => h.structure_velocity(prep, &zr, t_cur),
            None => {
                let zt = Tensor::<3>::from_data(TensorData::new(zr, [rows.image.len(), l, bits]), &device);
                let cond = cond.clone().expect("the burn path gathers its condition");
                to_vec_f32(generator.structure_forward(stage, &rows.classes, cond, &row_labels, zt, &[t_cur]))
            }
        };
        let dt = (t_next as f64 - t_cur as f64) as f32;
        for (bi, zb) in z.iter_mut().enumerate() {
            for p in 0..l {
                let rc = rows.row_of[bi][&cluster_cls[bi][labels[bi][p] as usize]];
                for j in 0..bits {
                    let i = p * bits + j;
                    let vc = v[rc * l * bits + i];
                    let vu = rows.null_row[bi].map(|r| v[r * l * bits + i]);
                    zb[i] += dt * guided(vc, vu, g);
                    if let Some(c) = clamp[bi][i] {
                        zb[i] = c;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The structure flow of one stage for a batch with plain class conditioning, from the given
/// initial noise `[B][L·(S−1)]` (known channels are set from `labels`). Returns the final flow
/// state; channel `stage` is the score Split uses. Exposed for parity tests and research.
pub fn structure_flow(
    generator: &NvgGenerator,
    settings: &SamplerSettings,
    stage: usize,
    classes: &[usize],
    labels: &[&[u32]],
    canvas_next: &Tensor<3>,
    noise: &[Vec<f32>],
) -> Result<Vec<Vec<f32>>, SampleError> {
    let cfg = generator.config();
    let (l, bits) = (cfg.num_positions(), cfg.num_bits());
    let mut clamp: Vec<Vec<Option<f32>>> = vec![vec![None; l * bits]; classes.len()];
    for (bi, c) in clamp.iter_mut().enumerate() {
        for p in 0..l {
            let sig = sigma_of_label(labels[bi][p], stage, bits);
            for j in 0..stage {
                c[p * bits + j] = Some(sig[j] as f32 - 1.0);
            }
        }
    }
    let mut z: Vec<Vec<f32>> =
        noise.iter().zip(&clamp).map(|(n, c)| n.iter().zip(c).map(|(&v, c)| c.unwrap_or(v)).collect()).collect();
    let cluster_cls: Vec<Vec<usize>> = classes.iter().map(|&c| vec![c; 1 << stage]).collect();
    if stage < cfg.num_structure_stages() {
        let host = HostGenerator::for_device(generator, &canvas_next.device());
        run_flow(generator, host.as_ref(), settings, stage, labels, &cluster_cls, canvas_next, &mut z, &clamp, &|| false)?;
    }
    Ok(z)
}

fn is_balanced(labels: &[u32], stage: usize) -> bool {
    let k = 1usize << stage;
    let sizes = cluster_sizes(labels, k);
    let e = labels.len() / k;
    e % 2 == 0 && sizes.iter().all(|&n| n == e)
}

fn validate_jobs(jobs: &[ImageJob], num_classes: usize, l: usize, s_count: usize, vocab: usize) -> Result<(), SampleError> {
    let bad = |m: String| Err(SampleError::Invalid(m));
    for job in jobs {
        if job.class >= num_classes {
            return bad(format!("class {} is out of range (the model has {num_classes} classes)", job.class));
        }
        if let Some(m) = &job.class_map {
            if m.len() != l {
                return bad(format!("class map has {} positions, the grid has {l}", m.len()));
            }
            if let Some(c) = m.iter().find(|&&c| c >= num_classes) {
                return bad(format!("class map holds class {c}, out of range (the model has {num_classes} classes)"));
            }
        }
        for (&s, m) in &job.forced_structure {
            if s == 0 || s >= s_count {
                return bad(format!("forced structure for stage {s}: stages 1..{} can be forced", s_count - 1));
            }
            if m.len() != l {
                return bad(format!("forced structure for stage {s} has {} labels, expected {l}", m.len()));
            }
            if let Some((p, &lab)) = m.iter().enumerate().find(|(_, l)| (**l as usize) >= (1usize << s)) {
                return bad(format!("forced structure for stage {s}: label {lab} at position {p} is out of range"));
            }
        }
        for (&s, c) in &job.forced_codes {
            if s >= s_count {
                return bad(format!("forced codes for stage {s}: the model has {s_count} stages"));
            }
            if c.len() != 1 << s {
                return bad(format!("forced codes for stage {s}: {} codes, expected {}", c.len(), 1usize << s));
            }
            if let Some(x) = c.iter().find(|&&x| x as usize >= vocab) {
                return bad(format!("forced codes for stage {s}: code {x} is outside the codebook of {vocab}"));
            }
        }
        if let Some(lock) = &job.lock {
            if lock.mask.len() != l {
                return bad(format!("lock mask has {} positions, the grid has {l}", lock.mask.len()));
            }
            if job.previous.is_none() {
                return bad("a lock needs the previous result it keeps".into());
            }
            // A lock may start after the resumed stage: the stages in between are regenerated,
            // and locked positions then keep their *child bit* under their new parent (and a
            // fully locked cluster the code of the previous cluster its positions were in).
        }
        if let Some(prev) = &job.previous {
            prev.validate().map_err(|e| SampleError::Invalid(format!("previous result: {e}")))?;
            if let Some((s, c)) = prev
                .stages
                .iter()
                .enumerate()
                .find_map(|(s, st)| st.codes.iter().find(|&&c| c as usize >= vocab).map(|&c| (s, c)))
            {
                return bad(format!("previous result: code {c} at stage {s} is outside the codebook of {vocab}"));
            }
            if prev.grid_size * prev.grid_size != l || prev.stages.len() != s_count {
                return bad(format!(
                    "previous result is for a {}×{} grid with {} stages; the model has {l} positions and {s_count} stages",
                    prev.grid_size,
                    prev.grid_size,
                    prev.stages.len()
                ));
            }
        }
        if job.resume_from >= s_count {
            return bad(format!("resume from stage {}: the model has stages 0..{}", job.resume_from, s_count - 1));
        }
        if let Some(n) = &job.shared_noise {
            if n.len() != l * (s_count - 1) {
                return bad(format!("shared noise has {} values, expected {}", n.len(), l * (s_count - 1)));
            }
        }
    }
    Ok(())
}
