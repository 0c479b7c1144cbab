//! Sampler behaviour with tiny random models on the CPU backend: determinism, resume, per-stage
//! seeds, forced maps, locks, regional classes, unbalanced maps, cancellation and bad controls.

use std::cell::Cell;

use burn::tensor::Device;
use nvg_studio::model::generator::{GeneratorConfig, NvgGenerator};
use nvg_studio::model::tokenizer::to_vec_f32;
use nvg_studio::model::{Tokenizer, TokenizerConfig};
use nvg_studio::model::host::{HostGenerator, Precision};
use nvg_studio::sampler::{ImageJob, Lock, SampleError, SampleOutput, SamplerSettings, sample, sample_with};

fn models() -> (Tokenizer, NvgGenerator, Device) {
    let dev = Device::flex();
    dev.seed(42);
    let tok = Tokenizer::new(&TokenizerConfig::test_tiny(), &dev);
    let gen_ = NvgGenerator::new(&GeneratorConfig::test_tiny(), &dev);
    (tok, gen_, dev)
}

fn settings() -> SamplerSettings {
    SamplerSettings { flow_steps: 4, ..SamplerSettings::default() }
}

fn run(tok: &Tokenizer, g: &NvgGenerator, jobs: &[ImageJob]) -> SampleOutput {
    sample(g, tok, 0.5, jobs, &settings(), &mut |_| true, &|| false).unwrap()
}

#[test]
fn same_seed_same_result_bit_for_bit() {
    let (tok, g, _) = models();
    let a = run(&tok, &g, &[ImageJob::new(1, 7)]);
    let b = run(&tok, &g, &[ImageJob::new(1, 7)]);
    assert_eq!(a.sequences, b.sequences);
    assert_eq!(to_vec_f32(a.canvas).iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
               to_vec_f32(b.canvas).iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    let c = run(&tok, &g, &[ImageJob::new(1, 8)]);
    assert_ne!(a.sequences, c.sequences, "another seed gives another result");
    a.sequences[0].validate().unwrap();
    assert!(a.sequences[0].hierarchy().unwrap().is_exactly_balanced());
}

#[test]
fn resume_reproduces_unchanged_stages_and_reroll_keeps_earlier_stages() {
    let (tok, g, _) = models();
    let base = run(&tok, &g, &[ImageJob::new(2, 11)]);
    let canvas_bits: Vec<u32> = to_vec_f32(base.canvas.clone()).iter().map(|v| v.to_bits()).collect();
    for k in 1..5 {
        let mut job = ImageJob::new(2, 11);
        job.previous = Some(base.sequences[0].clone());
        job.resume_from = k;
        let r = run(&tok, &g, &[job]);
        assert_eq!(r.sequences, base.sequences, "resume from stage {k} after changing nothing");
        let bits: Vec<u32> = to_vec_f32(r.canvas).iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, canvas_bits, "canvas after resume from {k}");
    }
    // Re-seeding stage 3 alone (a fresh run): stages < 3 identical, and the structure of stage 3
    // itself (made by stage 2's split) too.
    let mut job = ImageJob::new(2, 11);
    job.stage_seeds.insert(3, 999);
    let r = run(&tok, &g, &[job]);
    for s in 0..3 {
        assert_eq!(r.sequences[0].stages[s], base.sequences[0].stages[s], "stage {s}");
    }
    assert_eq!(r.sequences[0].stages[3].structure, base.sequences[0].stages[3].structure);
    assert_ne!(r.sequences[0].stages[3..], base.sequences[0].stages[3..], "stage 3's randomness changed");
}

/// `--precision bf16`: the same seed gives the same bits twice, and resuming after changing
/// nothing reproduces the run — whichever bf16 kernel this CPU has.
#[test]
fn bf16_products_are_deterministic_and_resumable() {
    let (tok, g, _) = models();
    let host = HostGenerator::with_precision(&g, Precision::Bf16);
    let go = |jobs: &[ImageJob]| sample_with(&g, Some(&host), &tok, 0.5, jobs, &settings(), &mut |_| true, &|| false).unwrap();
    let bits = |o: &SampleOutput| to_vec_f32(o.canvas.clone()).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let a = go(&[ImageJob::new(1, 7)]);
    let b = go(&[ImageJob::new(1, 7)]);
    assert_eq!(a.sequences, b.sequences);
    assert_eq!(bits(&a), bits(&b));
    a.sequences[0].validate().unwrap();
    for k in [1, 3] {
        let mut job = ImageJob::new(1, 7);
        job.previous = Some(a.sequences[0].clone());
        job.resume_from = k;
        let r = go(&[job]);
        assert_eq!(r.sequences, a.sequences, "bf16 resume from stage {k}");
        assert_eq!(bits(&r), bits(&a), "bf16 canvas after resume from {k}");
    }
}

#[test]
fn forced_maps_and_codes_are_kept() {
    let (tok, g, _) = models();
    let reference = run(&tok, &g, &[ImageJob::new(0, 1)]).sequences.remove(0);
    let mut job = ImageJob::new(3, 5);
    for s in 1..5 {
        job.forced_structure.insert(s, reference.stages[s].structure.clone());
    }
    job.forced_codes.insert(0, reference.stages[0].codes.clone());
    job.forced_codes.insert(1, reference.stages[1].codes.clone());
    let out = run(&tok, &g, &[job]).sequences.remove(0);
    for s in 0..5 {
        assert_eq!(out.stages[s].structure, reference.stages[s].structure, "stage {s} map");
    }
    assert_eq!(out.stages[0].codes, reference.stages[0].codes);
    assert_eq!(out.stages[1].codes, reference.stages[1].codes);
    // Forcing every map and every code reproduces the reference sequence exactly.
    let mut job = ImageJob::new(3, 5);
    for s in 0..5 {
        if s > 0 {
            job.forced_structure.insert(s, reference.stages[s].structure.clone());
        }
        job.forced_codes.insert(s, reference.stages[s].codes.clone());
    }
    assert_eq!(run(&tok, &g, &[job]).sequences[0], reference);
}

#[test]
fn locks_keep_children_and_codes_through_a_rerun() {
    let (tok, g, _) = models();
    let base = run(&tok, &g, &[ImageJob::new(0, 3)]).sequences.remove(0);
    // Lock the top half of the grid from stage 1, then rerun with another class and seed.
    let mask: Vec<bool> = (0..16).map(|p| p < 8).collect();
    let mut job = ImageJob::new(3, 77);
    job.lock = Some(Lock { from_stage: 1, mask: mask.clone() });
    job.previous = Some(base.clone());
    job.resume_from = 1;
    let out = run(&tok, &g, &[job]).sequences.remove(0);
    for s in 1..5 {
        for p in 0..16 {
            if mask[p] {
                assert_eq!(out.stages[s].structure[p], base.stages[s].structure[p], "stage {s} position {p}");
            }
        }
        // Clusters entirely inside the lock keep their code.
        let k = 1usize << s;
        for c in 0..k {
            let members: Vec<usize> = (0..16).filter(|&p| out.stages[s].structure[p] as usize == c).collect();
            if !members.is_empty() && members.iter().all(|&p| mask[p]) {
                assert_eq!(out.stages[s].codes[c], base.stages[s].codes[c], "stage {s} cluster {c}");
            }
        }
    }
    out.validate().unwrap();
}

#[test]
fn uniform_class_map_equals_plain_conditioning_and_regions_differ() {
    let (tok, g, _) = models();
    let plain = run(&tok, &g, &[ImageJob::new(2, 9)]);
    let mut job = ImageJob::new(2, 9);
    job.class_map = Some(vec![2; 16]);
    let mapped = run(&tok, &g, &[job]);
    assert_eq!(plain.sequences, mapped.sequences);
    let mut job = ImageJob::new(2, 9);
    job.class_map = Some((0..16).map(|p| if p % 4 < 2 { 0 } else { 3 }).collect());
    let regional = run(&tok, &g, &[job]);
    assert_ne!(regional.sequences, plain.sequences);
    regional.sequences[0].validate().unwrap();
}

#[test]
fn unbalanced_and_empty_clusters_neither_crash_nor_give_nan() {
    let (tok, g, _) = models();
    // Stage 1: 3 positions in child 1, 13 in child 0; stage 2 leaves cluster 3 empty.
    let s1: Vec<u32> = (0..16).map(|p| u32::from(p < 3)).collect();
    let s2: Vec<u32> = s1.iter().enumerate().map(|(p, &c)| c * 2 + u32::from(c == 0 && p % 2 == 0)).collect();
    let mut job = ImageJob::new(1, 4);
    job.forced_structure.insert(1, s1.clone());
    job.forced_structure.insert(2, s2.clone());
    let out = run(&tok, &g, &[job]);
    let seq = &out.sequences[0];
    assert_eq!(seq.stages[1].structure, s1);
    assert_eq!(seq.stages[2].structure, s2);
    seq.validate().unwrap();
    assert!(to_vec_f32(out.canvas).iter().all(|v| v.is_finite()));
}

#[test]
fn cancellation_between_stages_and_callbacks_per_stage() {
    let (tok, g, _) = models();
    let mut seen = Vec::new();
    sample(&g, &tok, 0.5, &[ImageJob::new(0, 1)], &settings(), &mut |d| {
        seen.push(d.stage);
        true
    }, &|| false)
    .unwrap();
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    let calls = Cell::new(0);
    let r = sample(&g, &tok, 0.5, &[ImageJob::new(0, 1)], &settings(), &mut |_| true, &|| {
        calls.set(calls.get() + 1);
        calls.get() > 3
    });
    assert_eq!(r.err(), Some(SampleError::Cancelled));
    let r = sample(&g, &tok, 0.5, &[ImageJob::new(0, 1)], &settings(), &mut |d| d.stage < 1, &|| false);
    assert_eq!(r.err(), Some(SampleError::Cancelled));
}

#[test]
fn bad_controls_are_clear_errors() {
    let (tok, g, _) = models();
    let err = |job: ImageJob| match sample(&g, &tok, 0.5, &[job], &settings(), &mut |_| true, &|| false) {
        Err(SampleError::Invalid(m)) => m,
        other => panic!("expected an error, got {:?}", other.map(|_| ())),
    };
    assert!(err(ImageJob::new(9, 0)).contains("class 9"));
    let mut j = ImageJob::new(0, 0);
    j.forced_structure.insert(2, vec![3; 16]); // parent 1 at stage 1 … but stage 1 is generated
    let m = err(j);
    assert!(m.contains("stage 2") && m.contains("position"), "{m}");
    let mut j = ImageJob::new(0, 0);
    j.resume_from = 9;
    assert!(err(j).contains("resume"));
    let mut j = ImageJob::new(0, 0);
    j.forced_codes.insert(1, vec![1000, 0]);
    assert!(err(j).contains("code 1000"));
    // A lock that starts after the resumed stages keeps each locked position's child bit under
    // its regenerated parent; a forced map at the resume stage whose parents are not the kept
    // stage's labels is refused with its stage named.
    let prev = run(&tok, &g, &[ImageJob::new(0, 2)]).sequences.remove(0);
    let mut j = ImageJob::new(0, 0);
    j.previous = Some(prev.clone());
    j.resume_from = 1;
    j.lock = Some(Lock { from_stage: 3, mask: vec![true; 16] });
    let out = run(&tok, &g, &[j]).sequences.remove(0);
    out.validate().unwrap();
    for s in 3..prev.stages.len() {
        for p in 0..16 {
            assert_eq!(out.stages[s].structure[p] & 1, prev.stages[s].structure[p] & 1, "stage {s} position {p}");
        }
    }
    let mut j = ImageJob::new(0, 0);
    j.previous = Some(prev.clone());
    j.resume_from = 2;
    let flipped: Vec<u32> = prev.stages[1].structure.iter().map(|&l| (1 - l) * 2).collect();
    j.forced_structure.insert(2, flipped);
    let m = err(j);
    assert!(m.contains("stage 2") && m.contains("parent"), "{m}");
    // Codes of a previous result outside the codebook.
    let mut bad_prev = prev.clone();
    bad_prev.codebook_size = None;
    bad_prev.stages[0].codes[0] = 5000;
    let mut j = ImageJob::new(0, 0);
    j.previous = Some(bad_prev);
    j.resume_from = 1;
    assert!(err(j).contains("code 5000"));
    // Non-finite guidance.
    let bad = SamplerSettings { content_cfg: Some(nvg_studio::sampler::Linear { start: f32::NAN, end: 1.0 }), ..settings() };
    assert!(matches!(sample(&g, &tok, 0.5, &[ImageJob::new(0, 0)], &bad, &mut |_| true, &|| false), Err(SampleError::Invalid(m)) if m.contains("finite")));
}

/// Property test (issue 23): any sequence that validates — random, unbalanced hierarchies with
/// empty children, random codes — can be generated from, keeping any prefix of its structure and
/// any range of its codes, with random regional classes and locks, without a panic; what is
/// kept comes out as it went in.
#[test]
fn any_valid_sequence_can_be_generated_from() {
    use nvg_studio::granularity::{GranularitySequence, SequenceStage};
    use rand::{Rng, SeedableRng};
    let (tok, g, _) = models();
    let cfg = g.config().clone();
    let (side, s_count, vocab) = (cfg.grid_side, cfg.num_stages(), cfg.vocab_size);
    let l = side * side;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(23);
    let quick = SamplerSettings { flow_steps: 2, ..SamplerSettings::default() };
    for case in 0..40 {
        // Each position picks a random child at every split (children may end up empty).
        let mut labels = vec![0u32; l];
        let mut stages = Vec::new();
        for s in 0..s_count {
            if s > 0 {
                labels.iter_mut().for_each(|x| *x = *x * 2 + rng.random_range(0..2));
            }
            stages.push(SequenceStage { structure: labels.clone(), codes: (0..1u32 << s).map(|_| rng.random_range(0..vocab as u32)).collect() });
        }
        let seq = GranularitySequence::new(side, Some(vocab), stages);
        seq.validate().unwrap_or_else(|e| panic!("case {case}: the generator made an invalid sequence: {e}"));
        // Written and read back, in both formats, it is the same sequence.
        assert_eq!(GranularitySequence::from_json_str(&seq.to_json_string().unwrap()).unwrap(), seq);
        assert_eq!(GranularitySequence::from_ron_str(&seq.to_ron_string().unwrap()).unwrap(), seq);
        let mut job = ImageJob::new(rng.random_range(0..cfg.num_classes), rng.random());
        let upto = rng.random_range(0..s_count);
        let content = rng.random_bool(0.5).then(|| 0..=rng.random_range(0..=upto));
        job.keep_from(&seq, upto, content.clone(), 0);
        if rng.random_bool(0.3) {
            job.class_map = Some((0..l).map(|_| rng.random_range(0..cfg.num_classes)).collect());
        }
        if rng.random_bool(0.3) {
            job.previous = Some(seq.clone());
            job.lock = Some(Lock { from_stage: rng.random_range(1..s_count), mask: (0..l).map(|_| rng.random_bool(0.4)).collect() });
        }
        let out = sample(&g, &tok, 0.5, &[job], &quick, &mut |_| true, &|| false).unwrap_or_else(|e| panic!("case {case}: {e}"));
        let got = &out.sequences[0];
        got.validate().unwrap();
        for s in 1..=upto {
            assert_eq!(got.stages[s].structure, seq.stages[s].structure, "case {case}: kept map of stage {s}");
        }
        if let Some(r) = content {
            for s in r {
                assert_eq!(got.stages[s].codes, seq.stages[s].codes, "case {case}: kept codes of stage {s}");
            }
        }
    }
}
