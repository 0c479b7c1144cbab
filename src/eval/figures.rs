//! Figures of the model card, as plain RGB images: a line plot (PSNR per stage) and a labelled
//! sample grid. Text uses the built-in 3×5 pixel font of [`crate::data::contact::draw_text`]
//! (digits, lower-case letters, '-' and spaces).

use image::{Rgb, RgbImage};

use crate::data::contact::draw_text;
use crate::granularity::viz::upscale;

const PAPER: Rgb<u8> = Rgb([255, 255, 255]);
const AXIS: Rgb<u8> = Rgb([40, 40, 40]);
const GRIDLINE: Rgb<u8> = Rgb([225, 225, 225]);
const LINE: Rgb<u8> = Rgb([31, 119, 180]);

fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, w: i64, h: i64, c: Rgb<u8>) {
    for y in y0.max(0)..(y0 + h).min(img.height() as i64) {
        for x in x0.max(0)..(x0 + w).min(img.width() as i64) {
            img.put_pixel(x as u32, y as u32, c);
        }
    }
}

/// A line of thickness `t` from (x0, y0) to (x1, y1) (simple DDA).
fn draw_line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), t: i64, c: Rgb<u8>) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for k in 0..=n {
        let f = k as f64 / n as f64;
        let (x, y) = (x0 + (x1 - x0) * f, y0 + (y1 - y0) * f);
        fill_rect(img, x.round() as i64 - t / 2, y.round() as i64 - t / 2, t, t, c);
    }
}

/// Width in pixels of `text` in the 3×5 font at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    (text.chars().count() as u32 * 4).saturating_sub(1) * scale
}

/// "Nice" tick values covering [lo, hi]: integer steps of 1, 2, 5 or 10.
fn ticks(lo: f64, hi: f64) -> (f64, f64, f64) {
    let span = (hi - lo).max(1.0);
    let step = [1.0, 2.0, 5.0, 10.0, 20.0].into_iter().find(|s| span / s <= 8.0).unwrap_or(50.0);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

/// A line plot of `values` at x = 0, 1, …, with integer ticks on both axes and axis labels.
pub fn line_plot(values: &[f64], x_label: &str, y_label: &str) -> RgbImage {
    let (w, h) = (560u32, 360u32);
    let (left, right, top, bottom) = (64.0, 20.0, 24.0, 56.0);
    let mut img = RgbImage::from_pixel(w, h, PAPER);
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = match (finite.iter().copied().reduce(f64::min), finite.iter().copied().reduce(f64::max)) {
        (Some(a), Some(b)) => (a, b),
        _ => (0.0, 1.0),
    };
    let (y0, y1, ystep) = ticks(lo, hi);
    let xmax = (values.len().max(2) - 1) as f64;
    let pw = w as f64 - left - right;
    let ph = h as f64 - top - bottom;
    let px = |x: f64| left + pw * x / xmax;
    let py = |y: f64| top + ph * (1.0 - (y - y0) / (y1 - y0).max(1e-9));
    // Grid, ticks and tick labels.
    let mut y = y0;
    while y <= y1 + 1e-9 {
        let yy = py(y);
        draw_line(&mut img, (left, yy), (left + pw, yy), 1, GRIDLINE);
        draw_line(&mut img, (left - 5.0, yy), (left, yy), 1, AXIS);
        let label = format!("{}", y.round() as i64);
        let tw = text_width(&label, 2) as f64;
        draw_text(&mut img, &label, (left - 9.0 - tw).max(0.0) as u32, (yy - 5.0).max(0.0) as u32, 2);
        y += ystep;
    }
    for i in 0..values.len() {
        let xx = px(i as f64);
        draw_line(&mut img, (xx, top + ph), (xx, top + ph + 5.0), 1, AXIS);
        let label = i.to_string();
        let tw = text_width(&label, 2) as f64;
        draw_text(&mut img, &label, (xx - tw / 2.0).max(0.0) as u32, (top + ph + 9.0) as u32, 2);
    }
    // Axes.
    draw_line(&mut img, (left, top), (left, top + ph), 2, AXIS);
    draw_line(&mut img, (left, top + ph), (left + pw, top + ph), 2, AXIS);
    // Axis labels: x under the ticks, y along the top left.
    let tw = text_width(x_label, 2) as f64;
    draw_text(&mut img, x_label, (left + pw / 2.0 - tw / 2.0).max(0.0) as u32, (top + ph + 29.0) as u32, 2);
    draw_text(&mut img, y_label, 4, 6, 2);
    // The data.
    let pts: Vec<(f64, f64)> =
        values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, &v)| (px(i as f64), py(v))).collect();
    for pair in pts.windows(2) {
        draw_line(&mut img, pair[0], pair[1], 3, LINE);
    }
    for &(x, y) in &pts {
        fill_rect(&mut img, x as i64 - 4, y as i64 - 4, 9, 9, LINE);
    }
    img
}

/// One row of the sample grid.
pub struct GridRow {
    /// Row label (e.g. "3 bird 4-6").
    pub label: String,
    /// Tiles shown left to right, each with an optional marker colour drawn as a bar under it
    /// (e.g. green when the judge agrees with the class asked for, red otherwise).
    pub tiles: Vec<(RgbImage, Option<[u8; 3]>)>,
    /// Reference tiles after a gap (e.g. real images of the class).
    pub references: Vec<RgbImage>,
}

/// A labelled grid: label column, tiles at `scale`× with marker bars, a gap, reference tiles.
pub fn sample_grid(rows: &[GridRow], scale: u32) -> RgbImage {
    let tile = rows.iter().flat_map(|r| r.tiles.iter().map(|t| t.0.width()).chain(r.references.iter().map(|t| t.width()))).max().unwrap_or(32) * scale;
    let gap = 3u32;
    let bar = 3u32;
    let text_scale = 2u32;
    let label_w = rows.iter().map(|r| text_width(&r.label, text_scale)).max().unwrap_or(0) + 12;
    let ncols = rows.iter().map(|r| r.tiles.len()).max().unwrap_or(0) as u32;
    let nrefs = rows.iter().map(|r| r.references.len()).max().unwrap_or(0) as u32;
    let sep = if nrefs > 0 { 14 } else { 0 };
    let width = label_w + ncols * (tile + gap) + sep + nrefs * (tile + gap) + gap;
    let row_h = tile + bar + gap + 2;
    let mut out = RgbImage::from_pixel(width, rows.len().max(1) as u32 * row_h + gap, Rgb([236, 236, 236]));
    for (ri, row) in rows.iter().enumerate() {
        let y = gap + ri as u32 * row_h;
        draw_text(&mut out, &row.label, 4, y + tile.saturating_sub(5 * text_scale) / 2, text_scale);
        for (ci, (t, mark)) in row.tiles.iter().enumerate() {
            let x = label_w + ci as u32 * (tile + gap);
            image::imageops::replace(&mut out, &upscale(t, scale), x as i64, y as i64);
            if let Some(c) = mark {
                fill_rect(&mut out, x as i64, (y + tile + 1) as i64, tile as i64, bar as i64, Rgb(*c));
            }
        }
        for (k, t) in row.references.iter().enumerate() {
            let x = label_w + ncols * (tile + gap) + sep + k as u32 * (tile + gap);
            image::imageops::replace(&mut out, &upscale(t, scale), x as i64, y as i64);
        }
    }
    out
}

/// Stacks images vertically, left-aligned, with `gap` pixels between them, each under a label.
pub fn stack_labelled(parts: &[(String, RgbImage)], gap: u32) -> RgbImage {
    let w = parts.iter().map(|p| p.1.width().max(text_width(&p.0, 2) + 8)).max().unwrap_or(1);
    let label_h = 14u32;
    let h: u32 = parts.iter().map(|p| p.1.height() + label_h + gap).sum::<u32>() + gap;
    let mut out = RgbImage::from_pixel(w, h.max(1), Rgb([245, 245, 245]));
    let mut y = gap;
    for (label, img) in parts {
        draw_text(&mut out, label, 4, y, 2);
        y += label_h;
        image::imageops::replace(&mut out, img, 0, y as i64);
        y += img.height() + gap;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_and_grid_have_expected_sizes_and_ink() {
        let p = line_plot(&[12.8, 14.5, 15.8, 20.4], "stage", "psnr db");
        assert_eq!(p.dimensions(), (560, 360));
        assert!(p.pixels().any(|px| *px == LINE));
        assert_eq!(ticks(12.8, 20.4), (12.0, 21.0, 1.0));
        assert_eq!(ticks(3.0, 35.0), (0.0, 35.0, 5.0));
        let t = RgbImage::from_pixel(8, 8, Rgb([0, 0, 0]));
        let rows = vec![
            GridRow { label: "0 a".into(), tiles: vec![(t.clone(), Some([0, 200, 0])), (t.clone(), None)], references: vec![t.clone()] },
            GridRow { label: "1 bb".into(), tiles: vec![(t.clone(), None)], references: vec![] },
        ];
        let g = sample_grid(&rows, 2);
        assert_eq!(g.height(), 2 * (16 + 3 + 3 + 2) + 3);
        assert!(g.pixels().any(|px| px.0 == [0, 200, 0]));
        let s = stack_labelled(&[("x".into(), t.clone()), ("y".into(), t)], 4);
        assert_eq!(s.height(), 2 * (8 + 14 + 4) + 4);
    }
}
