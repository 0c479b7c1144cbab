//! Figures made of plain pixels: structure maps (clusters coloured, boundaries drawn), stage
//! strips (for every stage, the decoded canvas above its structure map) and tile grids. Used by
//! the command line, the evaluations and the editor's thumbnails. No burn, no egui.

use image::{Rgb, RgbImage};

/// Colour of cluster `label` at `stage`. The hue is the label's position in [0, 2^stage), so a
/// child's hue lies next to its parent's and colours stay coherent from coarse to fine; siblings
/// differ in lightness so the binary split of every parent is visible.
pub fn cluster_colour(label: u32, stage: usize) -> [u8; 3] {
    let k = (1u64 << stage) as f64;
    let hue = ((label as f64 + 0.5) / k) * 0.85; // stop before wrapping back to red
    let light = if stage == 0 { 0.55 } else if label & 1 == 0 { 0.42 } else { 0.68 };
    hsl_to_rgb(hue, 0.65, light)
}

fn hsl_to_rgb(h: f64, s: f64, l: f64) -> [u8; 3] {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = h * 6.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let to = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    [to(r), to(g), to(b)]
}

/// Renders a structure map (`side × side` labels, row-major) at `cell` pixels per latent position,
/// with a dark line wherever two neighbouring positions belong to different clusters.
pub fn structure_map_image(labels: &[u32], side: usize, stage: usize, cell: u32) -> RgbImage {
    let size = side as u32 * cell;
    let mut img = RgbImage::new(size, size);
    let at = |r: usize, c: usize| labels[r * side + c];
    for y in 0..size {
        for x in 0..size {
            let (r, c) = ((y / cell) as usize, (x / cell) as usize);
            let lab = at(r, c);
            let mut px = cluster_colour(lab, stage);
            let (iy, ix) = (y % cell, x % cell);
            let edge = (ix == cell - 1 && c + 1 < side && at(r, c + 1) != lab)
                || (ix == 0 && c > 0 && at(r, c - 1) != lab)
                || (iy == cell - 1 && r + 1 < side && at(r + 1, c) != lab)
                || (iy == 0 && r > 0 && at(r - 1, c) != lab);
            if edge && cell >= 3 {
                px = [20, 20, 20];
            }
            img.put_pixel(x, y, Rgb(px));
        }
    }
    img
}

/// Nearest-neighbour upscaling by an integer factor.
pub fn upscale(img: &RgbImage, factor: u32) -> RgbImage {
    let f = factor.max(1);
    RgbImage::from_fn(img.width() * f, img.height() * f, |x, y| *img.get_pixel(x / f, y / f))
}

/// A stage strip: one column per stage (stage 0 on the left), the decoded canvas after that stage
/// on top and its structure map below, separated by 4-pixel gutters.
pub fn stage_strip(decoded: &[RgbImage], maps: &[Vec<u32>], side: usize) -> RgbImage {
    let n = decoded.len().min(maps.len());
    if n == 0 {
        return RgbImage::new(1, 1);
    }
    // Make the tile at least 96 px so that 16×16 maps stay readable.
    let src = decoded[0].width().max(1);
    let factor = (96 / src).max(1);
    let tile = src * factor;
    let cell = (tile / side as u32).max(1);
    let map_px = cell * side as u32;
    let gap = 4;
    let w = n as u32 * (tile + gap) + gap;
    let h = tile + map_px + 3 * gap;
    let mut out = RgbImage::from_pixel(w, h, Rgb([245, 245, 245]));
    for i in 0..n {
        let x0 = gap + i as u32 * (tile + gap);
        let up = upscale(&decoded[i], factor);
        image::imageops::replace(&mut out, &up, x0 as i64, gap as i64);
        let m = structure_map_image(&maps[i], side, i, cell);
        image::imageops::replace(&mut out, &m, x0 as i64, (2 * gap + tile) as i64);
    }
    out
}

/// Stacks rows of equally sized tiles into one figure with 4-pixel gutters; rows may differ in
/// length (short rows are left blank at the end).
pub fn grid_figure(rows: &[Vec<RgbImage>], scale: u32) -> RgbImage {
    let tile = rows.iter().flatten().next().map(|t| t.width() * scale).unwrap_or(1);
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0) as u32;
    let gap = 4;
    let mut out = RgbImage::from_pixel(cols * (tile + gap) + gap, rows.len() as u32 * (tile + gap) + gap, image::Rgb([245, 245, 245]));
    for (ri, row) in rows.iter().enumerate() {
        for (ci, t) in row.iter().enumerate() {
            let up = upscale(t, scale);
            image::imageops::replace(&mut out, &up, (gap + ci as u32 * (tile + gap)) as i64, (gap + ri as u32 * (tile + gap)) as i64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_differ_and_strip_has_one_column_per_stage() {
        assert_ne!(cluster_colour(2, 2), cluster_colour(3, 2));
        let maps = vec![vec![0u32; 4], vec![0, 0, 1, 1], vec![0, 1, 2, 3]];
        let imgs = vec![RgbImage::new(8, 8); 3];
        let s = stage_strip(&imgs, &maps, 2);
        assert_eq!(s.width(), 3 * (96 + 4) + 4);
        let m = structure_map_image(&maps[1], 2, 1, 10);
        // Boundary between row 0 and row 1 is dark, the interior is coloured.
        assert_eq!(m.get_pixel(5, 9).0, [20, 20, 20]);
        assert_eq!(m.get_pixel(5, 3).0, cluster_colour(0, 1));
    }
}
