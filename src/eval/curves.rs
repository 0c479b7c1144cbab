//! Training curves from a run's `train-log.csv` (src/train/monitor.rs), drawn with plotters:
//! four panels (structure velocity MSE, its decision channel, content cross-entropy, content
//! x0 MSE), one colour per stage; held-out losses solid, training losses faint, the baselines
//! dashed in the stage's colour. The y axes are logarithmic.

use std::path::Path;

use image::RgbImage;
use plotters::prelude::*;

use crate::train::monitor::LogRow;

/// One panel: the metric, its baseline, and a title.
struct Panel {
    title: &'static str,
    metric: &'static str,
    baseline: &'static str,
}

const PANELS: [Panel; 4] = [
    Panel { title: "structure: velocity MSE (dashed: context-free denoiser)", metric: "structure", baseline: "structure_baseline_ctxfree" },
    Panel {
        title: "structure: decision channel k (dashed: context-free)",
        metric: "structure_decision",
        baseline: "structure_decision_baseline_ctxfree",
    },
    Panel { title: "content: code cross-entropy (dashed: unigram)", metric: "content_ce", baseline: "content_ce_baseline_unigram" },
    Panel { title: "content: x0 MSE (dashed: keep the canvas)", metric: "content_mse", baseline: "content_mse_baseline_copy" },
];

const FONT: &str = "sans-serif";

fn register_font() -> Result<(), String> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT)
            .map_err(|_| "the bundled plot font could not be read".to_string())
    })
    .clone()
}

fn series(rows: &[LogRow], split: &str, metric: &str, stage: usize) -> Vec<(f64, f64)> {
    rows.iter()
        .filter(|r| r.split == split && r.metric == metric && r.stage == stage && r.value > 0.0 && r.value.is_finite())
        .map(|r| (r.step as f64, r.value))
        .collect()
}

/// Draws the curves of `rows` into an image of `width × height` pixels.
pub fn plot_curves(rows: &[LogRow], width: u32, height: u32) -> Result<RgbImage, String> {
    register_font()?;
    let mut buf = vec![0u8; (width * height * 3) as usize];
    draw(rows, None, &mut buf, width, height).map_err(|e| format!("drawing the curves: {e}"))?;
    RgbImage::from_raw(width, height, buf).ok_or_else(|| "plot buffer has the wrong size".to_string())
}

/// [`plot_curves`] with a second run's held-out curves on the same axes, short-dashed (e.g. the
/// same run on the burn and on the host training path).
pub fn plot_compare(rows: &[LogRow], other: &[LogRow], width: u32, height: u32) -> Result<RgbImage, String> {
    register_font()?;
    let mut buf = vec![0u8; (width * height * 3) as usize];
    draw(rows, Some(other), &mut buf, width, height).map_err(|e| format!("drawing the curves: {e}"))?;
    RgbImage::from_raw(width, height, buf).ok_or_else(|| "plot buffer has the wrong size".to_string())
}

fn draw(rows: &[LogRow], other: Option<&[LogRow]>, buf: &mut [u8], width: u32, height: u32) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(buf, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_step = rows.iter().chain(other.unwrap_or(&[])).map(|r| r.step).max().unwrap_or(1).max(1) as f64;
    for (area, panel) in root.split_evenly((2, 2)).iter().zip(PANELS.iter()) {
        let mut stages: Vec<usize> = rows.iter().filter(|r| r.metric == panel.metric || r.metric == panel.baseline).map(|r| r.stage).collect();
        stages.sort_unstable();
        stages.dedup();
        let values: Vec<f64> = rows
            .iter()
            .chain(other.unwrap_or(&[]).iter().filter(|r| r.split == "heldout"))
            .filter(|r| (r.metric == panel.metric || r.metric == panel.baseline) && r.value > 0.0 && r.value.is_finite())
            .map(|r| r.value)
            .collect();
        if values.is_empty() {
            area.titled(&format!("{} — not logged", panel.title), (FONT, 16))?;
            continue;
        }
        let lo = values.iter().cloned().fold(f64::INFINITY, f64::min) * 0.8;
        let hi = values.iter().cloned().fold(0.0, f64::max) * 1.25;
        let mut chart = ChartBuilder::on(area)
            .caption(panel.title, (FONT, 16))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..max_step, (lo..hi).log_scale())?;
        chart.configure_mesh().x_desc("step").label_style((FONT, 12)).y_label_formatter(&|v| format!("{v:.3}")).draw()?;
        for &k in &stages {
            let color = Palette99::pick(k).to_rgba();
            let train = series(rows, "train", panel.metric, k);
            if !train.is_empty() {
                chart.draw_series(LineSeries::new(train, color.mix(0.3).stroke_width(1)))?;
            }
            let held = series(rows, "heldout", panel.metric, k);
            if !held.is_empty() {
                chart
                    .draw_series(LineSeries::new(held, color.stroke_width(2)))?
                    .label(format!("stage {k}"))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            }
            if let Some(o) = other {
                let held = series(o, "heldout", panel.metric, k);
                if !held.is_empty() {
                    chart.draw_series(DashedLineSeries::new(held, 3, 3, color.stroke_width(2)))?;
                }
            }
            if let Some(b) = rows.iter().find(|r| r.metric == panel.baseline && r.stage == k && r.value > 0.0) {
                chart.draw_series(DashedLineSeries::new(vec![(0.0, b.value), (max_step, b.value)], 6, 4, color.stroke_width(1)))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Reads `log` (and `compare`, drawn short-dashed) and writes the curves to `out` (PNG).
pub fn plot_log_file(log: &Path, compare: Option<&Path>, out: &Path) -> Result<(), String> {
    let read = |p: &Path| -> Result<Vec<LogRow>, String> {
        let rows = crate::train::monitor::read_log(p)?;
        if rows.is_empty() { Err(format!("{}: the log holds no rows yet", p.display())) } else { Ok(rows) }
    };
    let rows = read(log)?;
    let img = match compare {
        Some(c) => plot_compare(&rows, &read(c)?, 1400, 1000)?,
        None => plot_curves(&rows, 1400, 1000)?,
    };
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(|e| format!("{}: {e}", out.display()))?;
    crate::model::checkpoint::write_atomic(out, &bytes).map_err(|e| format!("{}: cannot write ({e})", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64, split: &str, metric: &str, stage: usize, value: f64) -> LogRow {
        LogRow { step, split: split.into(), metric: metric.into(), stage, value }
    }

    #[test]
    fn curves_are_drawn_in_stage_colours() {
        let mut rows = vec![row(0, "baseline", "structure_baseline_ctxfree", 0, 0.5), row(0, "baseline", "structure_baseline_ctxfree", 1, 0.6)];
        for s in 1..=10u64 {
            rows.push(row(s * 10, "heldout", "structure", 0, 0.5 / s as f64));
            rows.push(row(s * 10, "heldout", "structure", 1, 0.6 / s as f64));
            rows.push(row(s * 10, "train", "structure", 0, 0.55 / s as f64));
        }
        let img = plot_curves(&rows, 700, 500).unwrap();
        let c0 = Palette99::pick(0).to_rgba();
        let c1 = Palette99::pick(1).to_rgba();
        let has = |c: plotters::style::RGBAColor| img.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        assert!(has(c0) && has(c1), "both stages' curves are drawn");
        let dark = img.pixels().filter(|p| p.0.iter().all(|&v| v < 80)).count();
        assert!(dark > 200, "axes and text are drawn ({dark} dark pixels)");
    }
}
