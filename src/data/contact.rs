//! Contact sheets: a few samples of every class on one PNG, so a person can eyeball a dataset.
//!
//! One row per class: a label ("7 drink": class id and name, drawn with a built-in 3×5 pixel font so
//! no font file is needed), then up to `per_class` images of that class, spread evenly over the class's
//! items (for the emoji sheet, whose tiles are ordered by emoji then vendor, that shows different
//! emoji in different styles). Cells are separated by a grey grid so white backgrounds stay visible.

use image::{Rgb, RgbImage};

use super::ImageSource;
use super::error::DataError;

/// Grid and label-column colour.
const GRID: [u8; 3] = [176, 176, 176];
/// Text colour.
const INK: [u8; 3] = [20, 20, 20];
/// Pixels between cells.
const GAP: u32 = 2;
/// The most samples per class a contact sheet shows.
pub const MAX_PER_CLASS: usize = 64;

/// Draws the contact sheet of `source`: `class_items[c]` are the item indices of class `c` (its
/// label is `source.class_names()[c]`), of which `per_class` evenly spaced ones are shown.
pub fn contact_sheet(
    source: &dyn ImageSource,
    class_items: &[Vec<usize>],
    per_class: usize,
) -> Result<RgbImage, DataError> {
    if per_class == 0 || per_class > MAX_PER_CLASS {
        return Err(DataError::InvalidSetting(format!(
            "--per-class {per_class} is out of range: expected 1 to {MAX_PER_CLASS}"
        )));
    }
    let names = source.class_names();
    // The cell size is the images' size; ask the first item for it.
    let first = class_items.iter().flatten().next().copied();
    let cell = match first {
        Some(i) => source.get(i)?.0.size,
        None => 32,
    };
    let scale = (cell / 16).max(1);
    let labels: Vec<String> = (0..class_items.len())
        .map(|c| format!("{c} {}", names.get(c).map_or("", String::as_str)))
        .collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
    let label_w = (longest * 4 + 2) * scale;
    let rows = class_items.len().max(1) as u32;
    let width = label_w + per_class as u32 * (cell + GAP) + GAP;
    let height = rows * (cell + GAP) + GAP;
    let mut out = RgbImage::from_pixel(width, height, Rgb(GRID));

    for (c, items) in class_items.iter().enumerate() {
        let y = GAP + c as u32 * (cell + GAP);
        let text_y = y + cell.saturating_sub(5 * scale) / 2;
        draw_text(&mut out, &labels[c], 2 * scale, text_y, scale);
        let shown = per_class.min(items.len());
        for k in 0..shown {
            let index = items[k * items.len() / shown];
            let rgb = source.get(index)?.0.to_rgb8()?;
            let x = label_w + GAP + k as u32 * (cell + GAP);
            image::imageops::replace(&mut out, &rgb, i64::from(x), i64::from(y));
        }
    }
    Ok(out)
}

/// Items held in memory — generated images, for instance — as an [`ImageSource`], so that
/// [`contact_sheet`] can lay them out.
pub struct MemorySource {
    names: Vec<String>,
    items: Vec<(super::RgbImageF, usize)>,
}

impl MemorySource {
    /// `items` as (image, class id) with `names` indexed by class id.
    pub fn new(names: Vec<String>, items: Vec<(super::RgbImageF, usize)>) -> Self {
        Self { names, items }
    }
}

impl ImageSource for MemorySource {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn class_names(&self) -> &[String] {
        &self.names
    }
    fn get(&self, i: usize) -> Result<(super::RgbImageF, usize), DataError> {
        self.items.get(i).cloned().ok_or_else(|| DataError::InvalidSetting(format!("item {i} of {} in memory", self.items.len())))
    }
}

/// Draws `text` (digits, lower-case letters, '-' and spaces; anything else as a box) with its top left
/// at `(x, y)`, each font pixel `scale × scale`.
pub fn draw_text(img: &mut RgbImage, text: &str, x: u32, y: u32, scale: u32) {
    for (k, ch) in text.chars().enumerate() {
        let rows = glyph(ch);
        let gx = x + k as u32 * 4 * scale;
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..3u32 {
                if bits & (0b100 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (gx + col * scale + dx, y + r as u32 * scale + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, Rgb(INK));
                        }
                    }
                }
            }
        }
    }
}

/// The 3×5 glyph of `ch`: five rows, the high bit of each 3-bit row is the left pixel.
fn glyph(ch: char) -> [u8; 5] {
    match ch.to_ascii_lowercase() {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b001, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        'a' => [0b010, 0b101, 0b111, 0b101, 0b101],
        'b' => [0b110, 0b101, 0b110, 0b101, 0b110],
        'c' => [0b011, 0b100, 0b100, 0b100, 0b011],
        'd' => [0b110, 0b101, 0b101, 0b101, 0b110],
        'e' => [0b111, 0b100, 0b110, 0b100, 0b111],
        'f' => [0b111, 0b100, 0b110, 0b100, 0b100],
        'g' => [0b011, 0b100, 0b101, 0b101, 0b011],
        'h' => [0b101, 0b101, 0b111, 0b101, 0b101],
        'i' => [0b111, 0b010, 0b010, 0b010, 0b111],
        'j' => [0b001, 0b001, 0b001, 0b101, 0b010],
        'k' => [0b101, 0b101, 0b110, 0b101, 0b101],
        'l' => [0b100, 0b100, 0b100, 0b100, 0b111],
        'm' => [0b101, 0b111, 0b111, 0b101, 0b101],
        'n' => [0b110, 0b101, 0b101, 0b101, 0b101],
        'o' => [0b010, 0b101, 0b101, 0b101, 0b010],
        'p' => [0b110, 0b101, 0b110, 0b100, 0b100],
        'q' => [0b010, 0b101, 0b101, 0b110, 0b011],
        'r' => [0b110, 0b101, 0b110, 0b101, 0b101],
        's' => [0b011, 0b100, 0b010, 0b001, 0b110],
        't' => [0b111, 0b010, 0b010, 0b010, 0b010],
        'u' => [0b101, 0b101, 0b101, 0b101, 0b111],
        'v' => [0b101, 0b101, 0b101, 0b101, 0b010],
        'w' => [0b101, 0b101, 0b111, 0b111, 0b101],
        'x' => [0b101, 0b101, 0b010, 0b101, 0b101],
        'y' => [0b101, 0b101, 0b010, 0b010, 0b010],
        'z' => [0b111, 0b001, 0b010, 0b100, 0b111],
        '-' | '_' => [0b000, 0b000, 0b111, 0b000, 0b000],
        ' ' => [0; 5],
        _ => [0b111, 0b101, 0b101, 0b101, 0b111],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::SyntheticShapes;

    #[test]
    fn one_row_per_class_with_labels_and_samples() {
        let shapes = SyntheticShapes::new(40, 16, 1).unwrap();
        let mut items = vec![Vec::new(); 4];
        for i in 0..shapes.len() {
            items[shapes.get(i).unwrap().1].push(i);
        }
        let sheet = contact_sheet(&shapes, &items, 3).unwrap();
        let label_w = ("3 rectangle".len() as u32 * 4 + 2) * 1;
        assert_eq!(sheet.width(), label_w + 3 * 18 + 2);
        assert_eq!(sheet.height(), 4 * 18 + 2);
        // The label of row 0 ("0 disc") has ink; the first sample equals the first disc image.
        let ink = (0..label_w)
            .flat_map(|x| (2..18).map(move |y| (x, y)))
            .any(|(x, y)| sheet.get_pixel(x, y).0 == INK);
        assert!(ink);
        let first = shapes.get(items[0][0]).unwrap().0.to_rgb8().unwrap();
        let placed = image::imageops::crop_imm(&sheet, label_w + 2, 2, 16, 16).to_image();
        assert_eq!(placed, first);
        assert!(contact_sheet(&shapes, &items, 0).is_err());
    }

    #[test]
    fn every_label_character_has_a_distinct_glyph() {
        let chars = "0123456789abcdefghijklmnopqrstuvwxyz-";
        let glyphs: std::collections::BTreeSet<[u8; 5]> = chars.chars().map(glyph).collect();
        // 'o' and '0' differ, but a few letter/digit pairs may coincide; letters among themselves do not.
        assert!(glyphs.len() >= chars.len() - 3, "{} glyphs", glyphs.len());
    }
}
