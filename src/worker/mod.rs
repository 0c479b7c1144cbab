//! The inference worker: one long-lived thread that owns the model and the device.
//!
//! The UI sends [`Request`]s tagged with the document revision they were made for and receives
//! [`Event`]s, one per finished stage. A newer request supersedes a running one at the next
//! stage or flow step: the UI stores the revision it wants in a shared counter
//! ([`WorkerHandle::want`]) and the running job's cancellation check compares against it. The
//! app drops events of any revision other than the current one (docs/architecture.md §4).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, unbounded};
use sha2::{Digest, Sha256};

use crate::model::backend::Backend;
use crate::document::{ModelInfo, RunSpec};
use crate::granularity::GranularitySequence;
use crate::model::images::{encode_images, tensor_to_images};
use crate::sampler::{Bundle, load_bundle_at};
use crate::sampler::{ImageJob, SampleError};

mod protocol;

pub use protocol::{BackendChoice, Bf16Support, Event, NOTHING, Precision, Request, StageImage, Variation};

/// The UI's end of the worker.
pub struct WorkerHandle {
    tx: Sender<Request>,
    rx: Receiver<Event>,
    wanted: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// How soon the UI should draw after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Now: a result, the end of a job, a model loaded or failed.
    Now,
    /// At the UI's next regular frame: flow-step progress, which arrives every few milliseconds
    /// and would otherwise make the window redraw as fast as it can, taking the cores from the
    /// model (a software renderer needs ~10 ms of CPU per frame).
    NextFrame,
}

impl Wake {
    /// [`Wake::NextFrame`] for progress, [`Wake::Now`] for everything else.
    pub fn for_event(e: &Event) -> Self {
        match e {
            Event::Progress { .. } => Wake::NextFrame,
            _ => Wake::Now,
        }
    }
}

/// The callback the worker wakes the UI with (the app maps it onto egui's repaint requests).
pub type Repaint = Arc<dyn Fn(Wake) + Send + Sync>;

impl WorkerHandle {
    /// Starts the worker thread, which loads the model in `model_dir` on the chosen backend.
    /// `repaint` is called after every event with how soon the UI should look (see [`Wake`]).
    pub fn spawn(model_dir: PathBuf, backend: BackendChoice, repaint: Repaint) -> Self {
        Self::spawn_with_fallback(model_dir, None, backend, repaint)
    }

    /// Like [`WorkerHandle::spawn`], but when `model_dir` cannot be loaded (missing, truncated,
    /// wrong kind) the worker loads `fallback` instead (the app passes the bundled model) and says
    /// why in [`Event::Loaded::fallback_note`]; [`Event::LoadFailed`] only when both fail.
    pub fn spawn_with_fallback(
        model_dir: PathBuf,
        fallback: Option<PathBuf>,
        backend: BackendChoice,
        repaint: Repaint,
    ) -> Self {
        Self::spawn_at(model_dir, fallback, backend, crate::model::host::precision(), repaint)
    }

    /// Like [`WorkerHandle::spawn_with_fallback`], with the generator's products at `precision`
    /// from the start instead of the process-wide `--precision`.
    pub fn spawn_at(
        model_dir: PathBuf,
        fallback: Option<PathBuf>,
        backend: BackendChoice,
        precision: Precision,
        repaint: Repaint,
    ) -> Self {
        let (tx, req_rx) = unbounded::<Request>();
        let (ev_tx, rx) = unbounded::<Event>();
        let wanted = Arc::new(AtomicU64::new(NOTHING));
        let w = wanted.clone();
        let thread = std::thread::Builder::new()
            .name("nvg-worker".into())
            .spawn(move || worker_main(model_dir, fallback, backend, precision, req_rx, ev_tx, w, repaint))
            .ok();
        Self { tx, rx, wanted, thread }
    }

    /// Sends a request; a run, render or variations request also becomes the wanted revision,
    /// so whatever is running for an older revision stops at its next check.
    pub fn send(&self, req: Request) {
        match &req {
            Request::Run { revision, .. } | Request::Render { revision, .. } | Request::Variations { revision, .. } => {
                self.wanted.store(*revision, Ordering::SeqCst)
            }
            _ => {}
        }
        let _ = self.tx.send(req);
    }

    /// Stops the running job within one stage or flow step.
    pub fn stop(&self) {
        self.wanted.store(NOTHING, Ordering::SeqCst);
    }

    /// The revision the UI wants computed.
    pub fn want(&self) -> u64 {
        self.wanted.load(Ordering::SeqCst)
    }

    /// Events that arrived, without blocking.
    pub fn poll(&self) -> Vec<Event> {
        self.rx.try_iter().collect()
    }

    /// Waits up to `timeout` for the next event (tests and scripts).
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<Event> {
        self.rx.recv_timeout(timeout).ok()
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop();
        let _ = self.tx.send(Request::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The model's identity: directory name, a SHA-256 over its checkpoint files, and its shape.
pub fn model_info(dir: &Path, bundle: &Bundle) -> ModelInfo {
    ModelInfo {
        name: dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string()),
        hash: model_hash(dir).unwrap_or_else(|_| "unknown".into()),
        grid_size: bundle.gcfg.grid_side,
        num_stages: bundle.gcfg.num_stages(),
        codebook_size: bundle.tcfg.codebook_size,
        class_names: bundle.class_names.clone(),
        image_size: bundle.tcfg.image_size,
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// SHA-256 (hex, first 16 characters) over the weights and metadata of `dir/tokenizer` and
/// `dir/generator`.
pub fn model_hash(dir: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    for part in ["tokenizer", "generator"] {
        for file in ["checkpoint.json", "model.bpk"] {
            h.update(std::fs::read(dir.join(part).join(file))?);
        }
    }
    let d = h.finalize();
    Ok(d.iter().take(8).map(|b| format!("{b:02x}")).collect())
}


/// What the status bar says about the model's compute: the backend, and on the CPU whether the
/// generator runs through the fused host kernels (and which instruction set they use).
fn backend_label(backend: &Backend, bundle: &crate::sampler::Bundle) -> String {
    if let Some(h) = &bundle.host {
        format!("{} · {}", backend.description, crate::model::host::label_for(h.precision()))
    } else {
        backend.description.clone()
    }
}

/// The nice level the worker thread and rayon's pool (the model's threads) run at unless
/// `NVG_WORKER_NICE` says otherwise: slightly below the UI, so that the window and its renderer
/// get the cores first when both want them. Measured in a software-rendered window on 2 cores
/// (docs/benchmarks.md, "Real window"): frames over 33 ms while a run is in flight 4–7 % → 1–2 %,
/// runs ~10–20 % longer. With nothing else wanting the cores it costs nothing.
pub const DEFAULT_WORKER_NICE: i32 = 5;

/// Lowers the worker's priority to `NVG_WORKER_NICE` (0–19; 0 keeps the UI's priority) or
/// [`DEFAULT_WORKER_NICE`], never raising it. Linux only; elsewhere the priority stays (and a set variable is
/// reported).
fn lower_priority() {
    let n = match std::env::var("NVG_WORKER_NICE") {
        Err(_) => DEFAULT_WORKER_NICE,
        Ok(v) => match v.trim().parse::<i32>() {
            Ok(n) if (0..=19).contains(&n) => n,
            _ => {
                eprintln!("NVG_WORKER_NICE={v}: expected a nice level 0–19; the worker runs at nice {DEFAULT_WORKER_NICE}");
                DEFAULT_WORKER_NICE
            }
        },
    };
    #[cfg(target_os = "linux")]
    {
        if n == 0 {
            return;
        }
        // Never raises a thread's priority: a process started at nice 10 keeps its threads there
        // (raising it back would need privileges and fail).
        let set = move || -> Result<(), String> {
            // SAFETY: plain syscalls on the calling thread's id; errno is read right after.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                *libc::__errno_location() = 0;
                let now = libc::getpriority(libc::PRIO_PROCESS, tid);
                if now == -1 && *libc::__errno_location() != 0 {
                    return Err(std::io::Error::last_os_error().to_string());
                }
                if now >= n || libc::setpriority(libc::PRIO_PROCESS, tid, n) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error().to_string())
                }
            }
        };
        let results = std::iter::once(set()).chain(rayon::broadcast(|_| set()));
        if let Some(e) = results.filter_map(Result::err).next() {
            eprintln!("worker priority: could not set nice {n} ({e})");
        }
    }
    #[cfg(not(target_os = "linux"))]
    if std::env::var_os("NVG_WORKER_NICE").is_some() {
        eprintln!("NVG_WORKER_NICE={n}: only supported on Linux; the worker keeps its priority");
    }
}

fn worker_main(
    model_dir: PathBuf,
    fallback: Option<PathBuf>,
    choice: BackendChoice,
    precision: Precision,
    rx: Receiver<Request>,
    tx: Sender<Event>,
    wanted: Arc<AtomicU64>,
    repaint: Repaint,
) {
    lower_priority();
    let send = |e: Event| {
        let wake = Wake::for_event(&e);
        let _ = tx.send(e);
        repaint(wake);
    };
    let t0 = Instant::now();
    let backend = match crate::model::backend::select(choice) {
        Ok(b) => b,
        Err(e) => {
            send(Event::LoadFailed { message: e.to_string() });
            crate::model::backend::cpu()
        }
    };
    let loaded = match load_bundle_at(&model_dir, &backend.device, precision) {
        Ok(b) => Ok((b, model_dir.clone(), None)),
        Err(e) => match fallback.as_ref().filter(|f| !same_dir(f, &model_dir)) {
            Some(f) => match load_bundle_at(f, &backend.device, precision) {
                Ok(b) => Ok((b, f.clone(), Some(format!("could not load {}: {e} — opened the bundled model instead", model_dir.display())))),
                Err(e2) => Err(format!("{e}; the bundled model failed too: {e2}")),
            },
            None => Err(e.to_string()),
        },
    };
    let (bundle, model_dir, fallback_note) = match loaded {
        Ok(l) => l,
        Err(e) => {
            send(Event::LoadFailed {
                message: format!(
                    "{e} — choose a model folder (File > Open model folder…), pass --model DIR, or restore {} from git",
                    model_dir.display()
                ),
            });
            // Keep answering so the UI can report failures instead of hanging.
            for req in rx.iter() {
                match req {
                    Request::Shutdown => return,
                    Request::Run { revision, .. } | Request::Render { revision, .. } | Request::Variations { revision, .. } => {
                        send(Event::Failed { revision, message: "no model loaded".into() })
                    }
                    Request::Encode { path, .. } => {
                        send(Event::EncodeFailed { message: format!("{}: no model loaded", path.display()) })
                    }
                    Request::SetPrecision(_) => {}
                }
            }
            return;
        }
    };
    let info = model_info(&model_dir, &bundle);
    send(Event::Loaded {
        info,
        model_dir,
        fallback_note,
        backend: backend_label(&backend, &bundle),
        precision: bundle.host.as_ref().map_or(Precision::F32, |h| h.precision()),
        bf16_support: Bf16Support::detect(),
        millis: t0.elapsed().as_millis(),
    });
    let mut w = Worker { bundle, backend, wanted, send: &send };

    while let Ok(req) = rx.recv() {
        if matches!(req, Request::Shutdown) {
            return;
        }
        // What to report if handling the request panics (a bug): the job fails with a message
        // and the worker goes on serving, so the editor never waits for ever on a dead thread.
        let on_panic: Box<dyn Fn(String) -> Event> = match &req {
            Request::Encode { path, .. } => {
                let path = path.clone();
                Box::new(move |m| Event::EncodeFailed { message: format!("{}: internal error while encoding ({m})", path.display()) })
            }
            Request::Run { revision, .. } | Request::Render { revision, .. } | Request::Variations { revision, .. } => {
                let revision = *revision;
                Box::new(move |m| Event::Failed { revision, message: format!("internal error in the model worker ({m}); the worker goes on — please report it") })
            }
            Request::SetPrecision(_) | Request::Shutdown => {
                Box::new(|m| Event::LoadFailed { message: format!("internal error while switching precision ({m})") })
            }
        };
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // A request for a revision the UI no longer wants was superseded while queued.
            let stale = |revision: u64| w.wanted.load(Ordering::SeqCst) != revision;
            match req {
                Request::Shutdown => {}
                Request::Encode { revision, path } => w.encode(revision, &path),
                Request::SetPrecision(p) => w.set_precision(p),
                Request::Run { revision, .. } | Request::Render { revision, .. } | Request::Variations { revision, .. }
                    if stale(revision) =>
                {
                    send(Event::Cancelled { revision })
                }
                Request::Run { revision, spec } => w.run(revision, &spec),
                Request::Render { revision, sequence } => w.render(revision, &sequence),
                Request::Variations { revision, spec, seeds } => w.variations(revision, &spec, &seeds),
            }
        }));
        if let Err(payload) = handled {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            send(on_panic(crate::granularity::text::one_line(msg)));
        }
    }
}

struct Worker<'a> {
    bundle: Bundle,
    backend: Backend,
    wanted: Arc<AtomicU64>,
    send: &'a dyn Fn(Event),
}

impl Worker<'_> {
    /// Rebuilds the host copy at `precision` (this worker's only: the process-wide setting of
    /// `--precision` is left alone) and reports the new description.
    fn set_precision(&mut self, precision: Precision) {
        if self.bundle.host.as_ref().is_some_and(|h| h.precision() != precision) {
            self.bundle.host = Some(crate::model::host::HostGenerator::with_precision(&self.bundle.generator, precision));
        }
        (self.send)(Event::BackendChanged { backend: backend_label(&self.backend, &self.bundle) });
    }

    fn superseded(&self, revision: u64) -> bool {
        self.wanted.load(Ordering::SeqCst) != revision
    }

    fn decode(&self, canvas: burn::tensor::Tensor<3>) -> Vec<StageImage> {
        tensor_to_images(self.bundle.tokenizer.decode(canvas))
    }

    fn run(&self, revision: u64, spec: &RunSpec) {
        if self.superseded(revision) {
            (self.send)(Event::Cancelled { revision });
            return;
        }
        let t0 = Instant::now();
        let settings = &spec.settings;
        let job = spec.job.clone();
        (self.send)(Event::Started { revision, from_stage: job.resume_from });
        let steps = settings.flow_steps;
        let num_stages = self.bundle.gcfg.num_stages();
        let stage_now = std::cell::Cell::new(job.resume_from);
        let step_now = std::cell::Cell::new(0usize);
        let b = &self.bundle;
        let result = b.sample(
            std::slice::from_ref(&job),
            &settings,
            &mut |d| {
                let image = self.decode(d.canvas.clone()).remove(0);
                (self.send)(Event::Stage {
                    revision,
                    stage: d.stage,
                    structure: d.maps[0].clone(),
                    codes: d.codes[0].clone(),
                    image,
                });
                stage_now.set(d.stage + 1);
                step_now.set(0);
                !self.superseded(revision)
            },
            &|| {
                // Polled between stages and between flow steps: report progress here too.
                let stage = stage_now.get();
                if stage + 1 < num_stages {
                    let step = step_now.get() + 1;
                    step_now.set(step);
                    (self.send)(Event::Progress { revision, stage, step: step.min(steps), steps });
                }
                self.superseded(revision)
            },
        );
        match result {
            Ok(out) => (self.send)(Event::Finished {
                revision,
                sequence: out.sequences.into_iter().next().expect("one job, one sequence"),
                millis: t0.elapsed().as_millis(),
            }),
            Err(SampleError::Cancelled) => (self.send)(Event::Cancelled { revision }),
            Err(e) => (self.send)(Event::Failed { revision, message: e.to_string() }),
        }
    }

    fn render(&self, revision: u64, seq: &GranularitySequence) {
        let b = &self.bundle;
        let l = seq.grid_size * seq.grid_size;
        let mut images = Vec::with_capacity(seq.stages.len());
        for s in 0..seq.stages.len() {
            if self.superseded(revision) {
                (self.send)(Event::Cancelled { revision });
                return;
            }
            let maps: Vec<Vec<&[u32]>> = (0..=s).map(|i| vec![seq.stages[i].structure.as_slice()]).collect();
            let codes: Vec<Vec<&[u32]>> = (0..=s).map(|i| vec![seq.stages[i].codes.as_slice()]).collect();
            let canvas = b.tokenizer.canvas_from_maps(1, l, &maps, &codes, b.tcfg.phi_weight);
            images.push(self.decode(canvas).remove(0));
        }
        (self.send)(Event::Rendered { revision, images });
    }

    fn variations(&self, revision: u64, spec: &RunSpec, seeds: &[u64]) {
        let settings = &spec.settings;
        let stage = spec.from_stage();
        let jobs: Vec<ImageJob> = seeds
            .iter()
            .map(|&seed| {
                let mut j = spec.job.clone();
                j.stage_seeds.insert(stage, seed);
                j
            })
            .collect();
        (self.send)(Event::Started { revision, from_stage: stage });
        let b = &self.bundle;
        let result = b.sample(&jobs, &settings, &mut |_| !self.superseded(revision), &|| {
            self.superseded(revision)
        });
        match result {
            Ok(out) => {
                let images = self.decode(out.canvas);
                let results = seeds
                    .iter()
                    .zip(out.sequences)
                    .zip(images)
                    .map(|((&seed, sequence), image)| Variation { seed, sequence, image })
                    .collect();
                (self.send)(Event::Variations { revision, stage, results })
            }
            Err(SampleError::Cancelled) => (self.send)(Event::Cancelled { revision }),
            Err(e) => (self.send)(Event::Failed { revision, message: e.to_string() }),
        }
    }

    fn encode(&self, revision: u64, path: &Path) {
        let size = self.bundle.tcfg.image_size as u32;
        let img = match crate::data::load_rgb(path, size, [255, 255, 255]) {
            Ok(x) => x,
            Err(e) => {
                (self.send)(Event::EncodeFailed { message: e.to_string() });
                return;
            }
        };
        let note = match image::image_dimensions(path) {
            Ok((w, h)) if (w, h) != (size, size) => Some(format!(
                "{}: {w}×{h} resized to {size}×{size} (shorter side, centre crop; transparency on white)",
                path.display()
            )),
            _ => None,
        };
        let mut enc = encode_images(&self.bundle.tokenizer, &self.bundle.tcfg, &[img], &self.backend.device);
        let e = enc.remove(0);
        (self.send)(Event::Encoded { revision, path: path.to_path_buf(), sequence: e.sequence, images: e.stage_images, note });
    }
}
