//! `nvg-studio bench --what editor`: the editor's own costs, measured headless with the real app
//! and worker (no window, no GPU): how long the UI thread spends per frame (egui layout of every
//! panel + tessellation) while the worker runs, how long an edit at stage k takes to show its
//! first updated thumbnail, and the process memory after 100 edits.
//!
//! What it does not measure: the GPU/driver time to draw the tessellated frame (that depends on
//! the machine's renderer; see docs/benchmarks.md for the Xvfb numbers).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eframe::egui;

use nvg_studio::app::{AppOptions, NvgApp};
use nvg_studio::worker::BackendChoice;
use nvg_studio::document::Command;

/// One frame driver: a headless egui context with a fixed window size and advancing time.
struct Driver {
    ctx: egui::Context,
    start: Instant,
    frame: u64,
    /// Texture bytes egui asked the renderer to upload, summed over all frames.
    uploaded: usize,
    /// Whether the pointer moves (circling over the canvas) or rests.
    moving: bool,
}

impl Driver {
    fn new() -> Self {
        Self { ctx: egui::Context::default(), start: Instant::now(), frame: 0, uploaded: 0, moving: true }
    }

    /// One frame of the app; returns the UI thread's time for it (layout + tessellation).
    /// The pointer circles over the canvas so hover highlighting runs every frame.
    fn frame(&mut self, app: &mut NvgApp) -> Duration {
        if self.moving {
            self.frame += 1;
        }
        let a = self.frame as f32 * 0.15;
        let pos = egui::pos2(620.0 + 150.0 * a.cos(), 430.0 + 150.0 * a.sin());
        let raw = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1280.0, 860.0))),
            time: Some(self.start.elapsed().as_secs_f64()),
            events: vec![egui::Event::PointerMoved(pos)],
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut out = self.ctx.run_ui(raw, |ui| app.draw(ui));
        // Texture uploads are the renderer's job (not timed here, but counted).
        self.uploaded += out.textures_delta.set.iter().flat_map(|(_, v)| v.iter()).map(|d| d.image.width() * d.image.height() * 4).sum::<usize>();
        out.textures_delta.clear();
        let prims = self.ctx.tessellate(out.shapes, out.pixels_per_point);
        std::hint::black_box(prims);
        t0.elapsed()
    }

    /// Frames at up to 60 Hz until `cond` holds or `limit` passes; the frame times.
    fn until(&mut self, app: &mut NvgApp, limit: Duration, cond: impl Fn(&NvgApp) -> bool) -> Result<Vec<Duration>, String> {
        let t0 = Instant::now();
        let mut times = Vec::new();
        while !cond(app) {
            if t0.elapsed() > limit {
                return Err(format!("timed out after {limit:?}; status: {}; error: {:?}", app.status(), app.error()));
            }
            let dt = self.frame(app);
            times.push(dt);
            if let Some(rest) = Duration::from_micros(16_667).checked_sub(dt) {
                std::thread::sleep(rest);
            }
        }
        Ok(times)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median_max(mut v: Vec<Duration>) -> (f64, f64, usize) {
    v.sort();
    if v.is_empty() {
        return (0.0, 0.0, 0);
    }
    (ms(v[v.len() / 2]), ms(*v.last().unwrap()), v.len())
}

fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS")).map(|l| l.trim_start_matches("VmRSS:").trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// Runs the editor benchmark on `model_dir` and prints a report.
pub fn bench_editor(model_dir: PathBuf, backend: BackendChoice, edits: usize, flow_steps: usize) -> Result<(), String> {
    let mut d = Driver::new();
    let opts = AppOptions { model_dir, backend, project: None, image: None, autosave: false, fallback_model: None };
    let mut app = NvgApp::new(&d.ctx, opts, false);
    let t0 = Instant::now();
    d.until(&mut app, Duration::from_secs(120), |a| a.editor().is_some() || a.error().is_some())?;
    if app.editor().is_none() {
        return Err(app.error().unwrap_or("the model did not load").to_string());
    }
    let loaded = t0.elapsed();
    let mut settings = app.editor().unwrap().state().settings.clone();
    settings.flow_steps = flow_steps;
    app.command(Command::SetSettings(settings));
    d.until(&mut app, Duration::from_secs(300), |a| a.is_idle())?;
    println!("editor bench: model {} ({} stages, {flow_steps} flow steps), backend {}", app.model_dir().display(), app.editor().unwrap().model.num_stages, app.backend());
    println!("model loaded after {:.0} ms; first full run done after {:.2} s", ms(loaded), t0.elapsed().as_secs_f64());

    // UI frame time, idle and while a full run is in flight.
    for moving in [false, true] {
        d.moving = moving;
        d.frame(&mut app);
        let up0 = d.uploaded;
        let idle = (0..120).map(|_| d.frame(&mut app)).collect::<Vec<_>>();
        let (m, w, n) = median_max(idle);
        println!(
            "UI frame time idle, pointer {}: median {m:.2} ms, worst {w:.2} ms ({n} frames; {} KiB of texture uploads in all)",
            if moving { "circling over the canvas" } else { "resting on the canvas" },
            (d.uploaded - up0) / 1024
        );
    }
    let up0 = d.uploaded;
    let seed = app.editor().unwrap().state().seed;
    app.command(Command::SetSeed { seed: seed + 1 });
    let busy = d.until(&mut app, Duration::from_secs(300), |a| a.is_idle())?;
    let (m, w, n) = median_max(busy.clone());
    let over = busy.iter().filter(|t| t.as_secs_f64() > 1.0 / 30.0).count();
    println!(
        "UI frame time while the worker runs a full rerun: median {m:.2} ms, worst {w:.2} ms ({n} frames, {over} over 33 ms; {} KiB of texture uploads)",
        (d.uploaded - up0) / 1024
    );

    // Edit at stage k → first updated thumbnail of stage k.
    let stages = app.editor().unwrap().model.num_stages;
    let mut line = Vec::new();
    for k in 1..stages {
        let seed = app.editor().unwrap().state().seed ^ (0x9e37 + k as u64);
        let t = Instant::now();
        app.command(Command::RerollStage { stage: k, seed });
        d.until(&mut app, Duration::from_secs(300), |a| {
            a.editor().is_some_and(|e| e.state().stale_from.is_none_or(|s| s > k))
        })?;
        line.push(format!("{k}: {:.0} ms", ms(t.elapsed())));
        d.until(&mut app, Duration::from_secs(300), |a| a.is_idle())?;
    }
    println!("edit at stage k (reroll) → first updated thumbnail of stage k: {}", line.join(", "));

    // Memory after many edits: structure strokes at every stage, each rerun to the end before
    // the next one (so the history, undo stack and caches all see 100 finished runs).
    let before = rss();
    let side = app.editor().unwrap().model.grid_size;
    let t = Instant::now();
    for i in 0..edits {
        let stage = 1 + i % (stages - 1);
        // A different scatter of positions every time (a small LCG over the grid).
        let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let positions: Vec<usize> = (0..side * side)
            .filter(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (x >> 33) % 3 == 0
            })
            .collect();
        app.command(Command::PaintStructure { stage, parent: None, positions, child: ((i / (stages - 1)) % 2) as u32 });
        d.until(&mut app, Duration::from_secs(300), |a| a.is_idle())?;
    }
    let ed = app.editor().unwrap();
    println!(
        "memory: {before} before, {} after {edits} structure edits, each rerun to the end ({:.1} s; undo stack {}, history {})",
        rss(),
        t.elapsed().as_secs_f64(),
        ed.undo_len(),
        app.history().len()
    );
    Ok(())
}
