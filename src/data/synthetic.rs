//! `SyntheticShapes`: procedural test images for tests and the tokenizer smoke test.
//!
//! Item `i` is a two-colour linear-gradient background with one contrasting shape of class `i mod 4`:
//! 0 disc, 1 rectangle, 2 triangle, 3 ring, at a random position and scale. Edges are anti-aliased
//! (3 × 3 samples per pixel) and values are quantised to 8 bits, so a synthetic image survives
//! [`save_rgb_png`](super::save_rgb_png) → [`load_rgb`](super::load_rgb) unchanged. Everything depends
//! only on `(index, size, seed)`.

use std::f32::consts::TAU;

use super::ImageSource;
use super::error::DataError;
use super::image_io::{RgbImageF, check_size, u8_to_unit};
use super::order::{TAG_SHAPES, seeded_rng, unit_f32};

/// The class names of [`SyntheticShapes`], by class id.
pub const SHAPE_CLASSES: [&str; 4] = ["disc", "rectangle", "triangle", "ring"];

/// Samples per pixel along each axis for anti-aliasing.
const SUPERSAMPLE: u32 = 3;

enum Shape {
    Disc { radius: f32 },
    Rectangle { half_width: f32, half_height: f32 },
    Triangle { vertices: [[f32; 2]; 3] },
    Ring { inner: f32, outer: f32 },
}

impl Shape {
    /// Whether point `(x, y)`, relative to the shape's centre, is inside it.
    fn contains(&self, x: f32, y: f32) -> bool {
        match *self {
            Shape::Disc { radius } => x * x + y * y <= radius * radius,
            Shape::Rectangle {
                half_width,
                half_height,
            } => x.abs() <= half_width && y.abs() <= half_height,
            Shape::Ring { inner, outer } => {
                let d2 = x * x + y * y;
                d2 >= inner * inner && d2 <= outer * outer
            }
            Shape::Triangle { vertices } => {
                let edge = |a: [f32; 2], b: [f32; 2]| {
                    (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0])
                };
                let [a, b, c] = vertices;
                let (e0, e1, e2) = (edge(a, b), edge(b, c), edge(c, a));
                (e0 >= 0.0 && e1 >= 0.0 && e2 >= 0.0) || (e0 <= 0.0 && e1 <= 0.0 && e2 <= 0.0)
            }
        }
    }
}

/// Draws synthetic item `index` at `size × size` for `seed`: the image and its class id (`index mod 4`,
/// see [`SHAPE_CLASSES`]). A `size` of 0 gives an empty image.
pub fn synthetic_shape(index: u64, size: u32, seed: u64) -> (RgbImageF, usize) {
    render(index, size, seed, true)
}

/// [`synthetic_shape`], optionally without the shape (the tests compare the two).
fn render(index: u64, size: u32, seed: u64, draw_shape: bool) -> (RgbImageF, usize) {
    let class = (index % SHAPE_CLASSES.len() as u64) as usize;
    let mut rng = seeded_rng(seed, index, TAG_SHAPES);
    let mut uniform = |lo: f32, hi: f32| lo + (hi - lo) * unit_f32(&mut rng);

    // Background: a linear gradient between two colours along a random direction.
    let start = [uniform(0.0, 1.0), uniform(0.0, 1.0), uniform(0.0, 1.0)];
    let end = start.map(|v| (v + uniform(-0.35, 0.35)).clamp(0.0, 1.0));
    let angle = uniform(0.0, TAU);
    let (dx, dy) = (angle.cos(), angle.sin());
    // Shape colour: each channel on the roomier side of the background's range and well away from it
    // (the range is at most 0.35 wide, so every channel differs by at least 0.6 · 0.325 ≈ 0.2).
    let colour = [0, 1, 2].map(|c| {
        let (lo, hi) = (start[c].min(end[c]), start[c].max(end[c]));
        if lo >= 1.0 - hi {
            uniform(0.0, 0.4 * lo)
        } else {
            uniform(hi + 0.6 * (1.0 - hi), 1.0)
        }
    });

    // Geometry in units of the image side, the centre kept far enough from the edges that the whole
    // shape is visible.
    let radius = uniform(0.16, 0.3);
    let margin = radius + 0.03;
    let (cx, cy) = (uniform(margin, 1.0 - margin), uniform(margin, 1.0 - margin));
    let shape = match class {
        0 => Shape::Disc { radius },
        1 => Shape::Rectangle {
            half_width: radius * uniform(0.55, 1.0),
            half_height: radius * uniform(0.55, 1.0),
        },
        2 => {
            let turn = uniform(0.0, TAU);
            Shape::Triangle {
                vertices: [0.0, 1.0, 2.0].map(|k: f32| {
                    let a = turn + k * TAU / 3.0;
                    [radius * a.cos(), radius * a.sin()]
                }),
            }
        }
        _ => Shape::Ring {
            inner: radius * uniform(0.45, 0.65),
            outer: radius,
        },
    };

    let side = size as usize;
    let plane = side * side;
    let mut data = vec![0.0; 3 * plane];
    let inv = 1.0 / size.max(1) as f32;
    let samples = (SUPERSAMPLE * SUPERSAMPLE) as f32;
    for y in 0..size {
        for x in 0..size {
            let mut covered = 0u32;
            for sy in 0..SUPERSAMPLE {
                for sx in 0..SUPERSAMPLE {
                    let u = (x as f32 + (sx as f32 + 0.5) / SUPERSAMPLE as f32) * inv;
                    let v = (y as f32 + (sy as f32 + 0.5) / SUPERSAMPLE as f32) * inv;
                    covered += u32::from(shape.contains(u - cx, v - cy));
                }
            }
            let coverage = if draw_shape {
                covered as f32 / samples
            } else {
                0.0
            };
            let (u, v) = ((x as f32 + 0.5) * inv, (y as f32 + 0.5) * inv);
            // Projection onto the gradient direction, mapped from [-√2/2, √2/2] to [0, 1].
            let t = (((u - 0.5) * dx + (v - 0.5) * dy) * std::f32::consts::FRAC_1_SQRT_2 + 0.5)
                .clamp(0.0, 1.0);
            let at = (y as usize) * side + x as usize;
            for c in 0..3 {
                let background = start[c] + (end[c] - start[c]) * t;
                let value = background * (1.0 - coverage) + colour[c] * coverage;
                data[c * plane + at] = u8_to_unit((value.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
    }
    (RgbImageF { size, data }, class)
}

/// A finite, deterministic dataset of [`synthetic_shape`] images.
#[derive(Debug, Clone)]
pub struct SyntheticShapes {
    len: usize,
    size: u32,
    seed: u64,
    class_names: Vec<String>,
}

/// The most images a synthetic set holds (its index is shuffled per epoch).
pub const MAX_SYNTHETIC: usize = 1_000_000;

impl SyntheticShapes {
    /// `len` images of `size × size`; classes are balanced (item `i` has class `i mod 4`).
    pub fn new(len: usize, size: u32, seed: u64) -> Result<Self, DataError> {
        check_size(size)?;
        if len > MAX_SYNTHETIC {
            return Err(DataError::InvalidSetting(format!("--synthetic {len}: at most {MAX_SYNTHETIC} images")));
        }
        Ok(Self {
            len,
            size,
            seed,
            class_names: SHAPE_CLASSES.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// The side length of the images.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The seed the images are drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

impl ImageSource for SyntheticShapes {
    fn len(&self) -> usize {
        self.len
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }

    fn get(&self, index: usize) -> Result<(RgbImageF, usize), DataError> {
        if index >= self.len {
            return Err(DataError::IndexOutOfRange {
                index,
                len: self.len,
            });
        }
        Ok(synthetic_shape(index as u64, self.size, self.seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load_rgb, save_rgb_png};

    #[test]
    fn shapes_are_deterministic_balanced_and_in_range() {
        let shapes = SyntheticShapes::new(12, 24, 5).unwrap();
        assert_eq!(shapes.class_names(), SHAPE_CLASSES);
        for i in 0..12 {
            let (img, class) = shapes.get(i).unwrap();
            assert_eq!(class, i % 4);
            assert_eq!(img.size, 24);
            assert_eq!(img.data.len(), 3 * 24 * 24);
            assert!(img.data.iter().all(|v| (-1.0..=1.0).contains(v)));
            assert_eq!(shapes.get(i).unwrap().0, img, "deterministic");
        }
        assert_ne!(
            shapes.get(0).unwrap().0,
            SyntheticShapes::new(12, 24, 6).unwrap().get(0).unwrap().0
        );
        assert_ne!(shapes.get(0).unwrap().0, shapes.get(4).unwrap().0);
        assert!(matches!(
            shapes.get(12),
            Err(DataError::IndexOutOfRange { .. })
        ));
        assert!(SyntheticShapes::new(4, 0, 0).is_err());
        assert!(synthetic_shape(0, 0, 0).0.data.is_empty());
    }

    #[test]
    fn the_shape_stands_out_from_the_background() {
        let size = 32;
        let plane = size * size;
        for index in 0..40 {
            let (img, class) = synthetic_shape(index, size as u32, 1);
            let (background, _) = render(index, size as u32, 1, false);
            // Pixels the shape changed, and by how much (summed over channels, in [-1, 1] units).
            let changes: Vec<f32> = (0..plane)
                .map(|at| {
                    (0..3)
                        .map(|c| (img.data[c * plane + at] - background.data[c * plane + at]).abs())
                        .sum()
                })
                .filter(|&d: &f32| d > 0.0)
                .collect();
            let share = changes.len() as f32 / plane as f32;
            assert!(
                share > 0.02 && share < 0.5,
                "item {index} (class {class}) covers {share}"
            );
            let fully_covered_contrast = changes.iter().copied().fold(0.0, f32::max);
            assert!(
                fully_covered_contrast > 1.0,
                "item {index} (class {class}) is faint"
            );
        }
    }

    #[test]
    fn synthetic_images_survive_a_png_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shape.png");
        let (img, _) = synthetic_shape(3, 20, 11);
        save_rgb_png(&img, &path).unwrap();
        assert_eq!(load_rgb(&path, 20, [0, 0, 0]).unwrap(), img);
    }
}
