//! `nvg-studio bench --what frame-log --frame-log FILE`: summarises a log written by the editor
//! under `NVG_FRAME_LOG=FILE` (one line per frame; see `NvgApp::frame_log`) into the numbers
//! docs/benchmarks.md reports for a real window: the frame intervals while a run is in flight
//! (median, 90th percentile, worst, share over the 33 ms of 30 fps), the average frame rate of
//! each run, and each run's length.
//!
//! A frame counts as "while a run is in flight" when a run was in flight at the end of it and
//! of the frame before: the first frame after an idle gap has an interval that measures the
//! gap, not drawing.

/// The 33.3 ms of 30 fps, rounded up as the summary counts it.
pub const LATE_MS: f64 = 33.4;

/// One line of the log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frame {
    /// ms since the app started, at the end of the frame's `draw`.
    pub at_ms: f64,
    /// ms since the previous frame.
    pub interval_ms: f64,
    /// A run was in flight at the end of the frame.
    pub running: bool,
}

/// What a log says.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Frames while a run is in flight.
    pub frames: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub worst_ms: f64,
    /// Share of those frames over [`LATE_MS`], 0–1.
    pub late: f64,
    /// Per run: average frames per second over its frames.
    pub fps_per_run: Vec<f64>,
    /// Per run: ms from its first to its last frame with a run in flight, plus the frame that
    /// showed it done.
    pub run_ms: Vec<f64>,
    /// The log ends while a run is in flight (that run's frames count above, but it is not in
    /// the per-run lists).
    pub unfinished_run: bool,
}

/// Parses a frame log. Lines have at least three fields (ms since start, interval, 0/1); the
/// per-phase fields after them are ignored. Errors name the line.
pub fn parse(text: &str) -> Result<Vec<Frame>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |k: usize| -> Result<f64, String> {
                f.get(k)
                    .ok_or_else(|| format!("line {}: expected at least 3 fields, found {}", i + 1, f.len()))?
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("line {}: field {} is not a time in ms: {:?}", i + 1, k + 1, f[k]))
            };
            let (at_ms, interval_ms) = (num(0)?, num(1)?);
            let running = match num(2)? {
                v if v == 0.0 => false,
                v if v == 1.0 => true,
                v => return Err(format!("line {}: the third field (run in flight) must be 0 or 1, found {v}", i + 1)),
            };
            Ok(Frame { at_ms, interval_ms, running })
        })
        .collect()
}

/// Nearest-rank quantile: the smallest value with at least `q` of the values at or below it.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summarises parsed frames; `None` when no frame was drawn while a run was in flight.
pub fn summarize(frames: &[Frame]) -> Option<Summary> {
    let mut during: Vec<f64> = Vec::new();
    let mut runs: Vec<(f64, usize, f64)> = Vec::new(); // (interval sum, frames, length)
    let mut current: Option<(f64, usize, f64)> = None; // (interval sum, frames, start)
    for (i, f) in frames.iter().enumerate() {
        let before = i > 0 && frames[i - 1].running;
        match (before, f.running) {
            (false, true) => current = Some((0.0, 0, f.at_ms)),
            (true, true) => {
                during.push(f.interval_ms);
                if let Some(c) = &mut current {
                    c.0 += f.interval_ms;
                    c.1 += 1;
                }
            }
            (true, false) => {
                if let Some((sum, n, start)) = current.take() {
                    runs.push((sum + f.interval_ms, n + 1, f.at_ms - start));
                }
            }
            (false, false) => {}
        }
    }
    if during.is_empty() {
        return None;
    }
    let mut sorted = during.clone();
    sorted.sort_by(f64::total_cmp);
    Some(Summary {
        frames: during.len(),
        median_ms: quantile(&sorted, 0.5),
        p90_ms: quantile(&sorted, 0.9),
        worst_ms: *sorted.last().unwrap(),
        late: during.iter().filter(|&&d| d > LATE_MS).count() as f64 / during.len() as f64,
        fps_per_run: runs.iter().map(|&(sum, n, _)| n as f64 * 1000.0 / sum).collect(),
        run_ms: runs.iter().map(|r| r.2).collect(),
        unfinished_run: current.is_some(),
    })
}

/// The bench command: reads `path` and prints the summary.
pub fn bench_frame_log(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let frames = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let s = summarize(&frames).ok_or_else(|| format!("{}: no frame was drawn while a run was in flight", path.display()))?;
    let list = |v: &[f64], prec: usize| v.iter().map(|x| format!("{x:.prec$}")).collect::<Vec<_>>().join(" ");
    println!(
        "frame log {}: {} frames, {} runs{}",
        path.display(),
        frames.len(),
        s.run_ms.len(),
        if s.unfinished_run { " (and one still in flight at the end of the log)" } else { "" }
    );
    println!(
        "frames while a run is in flight: {} — median {:.1} ms, p90 {:.1} ms, worst {:.1} ms, {:.1} % over {LATE_MS} ms",
        s.frames,
        s.median_ms,
        s.p90_ms,
        s.worst_ms,
        s.late * 100.0
    );
    println!("fps per run: {}", list(&s.fps_per_run, 0));
    println!("run lengths (s): {}", list(&s.run_ms.iter().map(|m| m / 1000.0).collect::<Vec<_>>(), 2));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_frames_inside_runs_and_splits_runs() {
        // idle, run of 4 frames (the first one's interval is the idle gap), done, idle, run of 3.
        let log = "\
            100.0 500.0 0 0.8 0 0.7 0 0 2.1\n\
            150.0 50.0 1\n\
            170.0 20.0 1\n\
            210.0 40.0 1\n\
            230.0 20.0 1\n\
            250.0 20.0 0\n\
            \n\
            900.0 650.0 0\n\
            910.0 10.0 1\n\
            935.0 25.0 1\n\
            960.0 25.0 1\n\
            970.0 10.0 0\n";
        let frames = parse(log).unwrap();
        assert_eq!(frames.len(), 11);
        let s = summarize(&frames).unwrap();
        // Inside runs: 20, 40, 20 and 25, 25 (the first running frame of each run is left out).
        assert_eq!(s.frames, 5);
        assert_eq!(s.median_ms, 25.0);
        assert_eq!(s.worst_ms, 40.0);
        assert!((s.late - 0.2).abs() < 1e-12, "{}", s.late);
        assert_eq!(s.run_ms, vec![100.0, 60.0]);
        // Run 1: 4 frames (20, 40, 20 and the done frame's 20) in 100 ms → 40 fps.
        assert!((s.fps_per_run[0] - 40.0).abs() < 1e-9, "{:?}", s.fps_per_run);
        assert!((s.fps_per_run[1] - 3000.0 / 60.0).abs() < 1e-9);
        assert!(!s.unfinished_run);
        // Cut mid-run: its frames count, the run is not listed but reported.
        let cut = summarize(&frames[..10]).unwrap();
        assert_eq!((cut.frames, cut.run_ms.len(), cut.unfinished_run), (5, 1, true));
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 5.0);
        assert_eq!(quantile(&v, 0.9), 9.0);
        assert_eq!(quantile(&v, 1.0), 10.0);
        assert_eq!(quantile(&[20.0, 40.0], 0.5), 20.0);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(parse("1 2 1\n3 x 0\n").unwrap_err(), "line 2: field 2 is not a time in ms: \"x\"");
        assert_eq!(parse("1 NaN 1\n").unwrap_err(), "line 1: field 2 is not a time in ms: \"NaN\"");
        assert_eq!(parse("1 -5 1\n").unwrap_err(), "line 1: field 2 is not a time in ms: \"-5\"");
        assert_eq!(parse("1 x 7\n").unwrap_err(), "line 1: field 2 is not a time in ms: \"x\"");
        assert_eq!(parse("1 2\n").unwrap_err(), "line 1: expected at least 3 fields, found 2");
        assert!(parse("1 2 7\n").unwrap_err().contains("must be 0 or 1"));
        assert_eq!(summarize(&parse("1 2 0\n3 4 0\n").unwrap()), None);
    }
}
