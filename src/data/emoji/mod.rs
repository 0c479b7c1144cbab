//! The bundled emoji dataset: one sprite sheet PNG plus a `.ron` label file, read as an [`ImageSource`].
//!
//! `assets/emoji/emoji-32.png` holds 32×32 tiles in rows of 64, left to right, top to bottom, on a white
//! background; `assets/emoji/emoji-32.ron` ([`EmojiLabels`]) names the classes and gives each tile its
//! class, its vendor (art style) and its emoji. `nvg-studio dataset build-emoji` makes both from pinned
//! npm packages ([`super::emoji::build`]); `docs/dataset.md` describes the set.
//!
//! [`EmojiSheet::open`] checks the pair before anything is used: every problem (a missing or corrupt
//! file, per-class counts that disagree with the tiles, a sheet of the wrong size) is a one-line
//! [`DataError`] naming the file. The held-out split ([`EmojiSheet::split`]) holds out whole emoji.

pub mod build;
pub mod classes;
pub mod render;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{RgbImage, imageops};
use serde::{Deserialize, Serialize};

use super::ImageSource;
use super::error::{DataError, one_line};
use super::image_io::{RgbImageF, check_size, decode_rgb8, fit_square, write_atomically};
use super::order::stratified_split;

/// The label file of the bundled 32×32 sheet, relative to the repository root.
pub const BUNDLED_EMOJI_LABELS: &str = "assets/emoji/emoji-32.ron";

/// The `format` field of every emoji label file.
pub const EMOJI_LABELS_FORMAT: &str = "nvg-emoji-sheet";

/// The label file version this build reads and writes.
pub const EMOJI_LABELS_VERSION: u32 = 1;

/// The held-out fraction used by default: about 10% of each class's tiles, as whole emoji.
pub const DEFAULT_HOLDOUT_FRACTION: f64 = 0.1;

/// The seed of the default held-out split.
pub const DEFAULT_SPLIT_SEED: u64 = 0;

/// One input icon set (one art style).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorInfo {
    /// Short id, e.g. `"noto"`.
    pub id: String,
    /// The npm package and version the tiles were rendered from.
    pub package: String,
    /// Human-readable style name.
    pub style: String,
}

/// The content of an emoji label file (`.ron`), version [`EMOJI_LABELS_VERSION`].
///
/// Per-tile fields are parallel arrays, in sheet order: tile `i` sits at column `i % columns`, row
/// `i / columns`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmojiLabels {
    /// Always [`EMOJI_LABELS_FORMAT`].
    pub format: String,
    /// [`EMOJI_LABELS_VERSION`].
    pub version: u32,
    /// The sheet PNG's file name, in the label file's folder.
    pub sheet: String,
    /// Tile side in pixels.
    pub tile_size: u32,
    /// Tiles per sheet row.
    pub columns: u32,
    /// Number of tiles; the sheet has `ceil(count / columns)` rows.
    pub count: usize,
    /// The colour transparent pixels were composited onto.
    pub background: [u8; 3],
    /// Where the class of each emoji comes from (the CLDR sub-groups of emoji-datasource).
    pub label_source: String,
    /// Class names; a class id indexes this list.
    pub classes: Vec<String>,
    /// Tiles per class, by class id (must agree with `tile_class`).
    pub class_counts: Vec<usize>,
    /// The icon sets; a vendor id indexes this list.
    pub vendors: Vec<VendorInfo>,
    /// Class id of each tile.
    pub tile_class: Vec<u16>,
    /// Vendor id of each tile.
    pub tile_vendor: Vec<u16>,
    /// emoji-datasource short name of each tile's emoji (e.g. `"dog2"`).
    pub tile_emoji: Vec<String>,
}

impl EmojiLabels {
    /// Reads and validates a label file (see [`validate`](Self::validate)).
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let fail = |detail: String| DataError::Labels {
            path: path.to_path_buf(),
            detail,
        };
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(fail("file not found".into()));
            }
            Err(e) => return Err(fail(format!("cannot read ({})", one_line(e)))),
        };
        let labels: Self = ron::from_str(&text)
            .map_err(|e| fail(format!("not a valid label file ({})", one_line(e))))?;
        labels.validate().map_err(fail)?;
        Ok(labels)
    }

    /// Checks the file against itself: format and version, array lengths, ids in range, and that
    /// `class_counts` agrees with the tiles. Returns the first problem found.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != EMOJI_LABELS_FORMAT {
            return Err(format!(
                "format is \"{}\"; expected \"{EMOJI_LABELS_FORMAT}\"",
                self.format
            ));
        }
        if self.version != EMOJI_LABELS_VERSION {
            return Err(format!(
                "version {} is not supported; this build reads version {EMOJI_LABELS_VERSION}",
                self.version
            ));
        }
        if self.tile_size == 0 || self.columns == 0 {
            return Err(format!(
                "tile_size {} and columns {} must both be at least 1",
                self.tile_size, self.columns
            ));
        }
        if self.classes.is_empty() {
            return Err("lists no classes".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = self.classes.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(format!("class \"{dup}\" is listed twice"));
        }
        if self.class_counts.len() != self.classes.len() {
            return Err(format!(
                "class_counts has {} entries for {} classes",
                self.class_counts.len(),
                self.classes.len()
            ));
        }
        for (field, len) in [
            ("tile_class", self.tile_class.len()),
            ("tile_vendor", self.tile_vendor.len()),
            ("tile_emoji", self.tile_emoji.len()),
        ] {
            if len != self.count {
                return Err(format!(
                    "{field} has {len} entries but count is {}",
                    self.count
                ));
            }
        }
        let mut tally = vec![0usize; self.classes.len()];
        for (i, &class) in self.tile_class.iter().enumerate() {
            let slot = tally.get_mut(usize::from(class)).ok_or_else(|| {
                format!(
                    "tile {i} has class {class}, but only {} classes are listed",
                    self.classes.len()
                )
            })?;
            *slot += 1;
        }
        if let Some((i, &vendor)) = self
            .tile_vendor
            .iter()
            .enumerate()
            .find(|&(_, &v)| usize::from(v) >= self.vendors.len())
        {
            return Err(format!(
                "tile {i} has vendor {vendor}, but only {} vendors are listed",
                self.vendors.len()
            ));
        }
        for (c, (&stated, &actual)) in self.class_counts.iter().zip(&tally).enumerate() {
            if stated != actual {
                return Err(format!(
                    "class_counts says class \"{}\" has {stated} tiles, but {actual} tiles are labelled with it",
                    self.classes[c]
                ));
            }
        }
        Ok(())
    }

    /// The sheet's size in pixels: `columns · tile_size` wide, `ceil(count / columns) · tile_size` tall
    /// (at least one row).
    pub fn sheet_dimensions(&self) -> (u64, u64) {
        let columns = u64::from(self.columns);
        let rows = (self.count as u64).div_ceil(columns).max(1);
        let tile = u64::from(self.tile_size);
        (columns * tile, rows * tile)
    }

    /// The label file as written by the builder: RON, top-level fields one per line, arrays inline.
    pub fn to_ron_string(&self) -> Result<String, String> {
        let config = ron::ser::PrettyConfig::new().depth_limit(1);
        ron::ser::to_string_pretty(self, config)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(one_line)
    }

    /// Writes the label file atomically.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let text = self.to_ron_string().map_err(|detail| DataError::Write {
            path: path.to_path_buf(),
            detail,
        })?;
        write_atomically(path, |w| {
            std::io::Write::write_all(w, text.as_bytes()).map_err(one_line)
        })
    }
}

/// A loaded, checked emoji sheet: the decoded pixels and the labels.
#[derive(Debug)]
pub struct EmojiSheet {
    labels_path: PathBuf,
    sheet_path: PathBuf,
    labels: EmojiLabels,
    pixels: RgbImage,
    /// The tile indices of each class, ascending.
    class_items: Vec<Vec<usize>>,
}

impl EmojiSheet {
    /// Loads the label file at `labels_path` and the sheet it names (in the same folder), and checks
    /// that they agree.
    pub fn open(labels_path: impl AsRef<Path>) -> Result<Self, DataError> {
        let labels_path = labels_path.as_ref().to_path_buf();
        let labels = EmojiLabels::load(&labels_path)?;
        let sheet_path = labels_path
            .parent()
            .unwrap_or_else(|| Path::new(""))
            .join(&labels.sheet);
        let pixels = decode_rgb8(&sheet_path, labels.background)?;
        let (want_w, want_h) = labels.sheet_dimensions();
        let (w, h) = pixels.dimensions();
        if (u64::from(w), u64::from(h)) != (want_w, want_h) {
            return Err(DataError::SheetMismatch {
                sheet: sheet_path,
                labels: labels_path,
                detail: format!(
                    "is {w}×{h} pixels, but {} tiles of {} px in {} columns need {want_w}×{want_h}",
                    labels.count, labels.tile_size, labels.columns
                ),
            });
        }
        let mut class_items = vec![Vec::new(); labels.classes.len()];
        for (i, &class) in labels.tile_class.iter().enumerate() {
            class_items[usize::from(class)].push(i);
        }
        Ok(Self {
            labels_path,
            sheet_path,
            labels,
            pixels,
            class_items,
        })
    }

    /// The label file this sheet was opened from.
    pub fn labels_path(&self) -> &Path {
        &self.labels_path
    }

    /// The sheet PNG.
    pub fn sheet_path(&self) -> &Path {
        &self.sheet_path
    }

    /// The labels (class names, vendors, per-tile fields).
    pub fn labels(&self) -> &EmojiLabels {
        &self.labels
    }

    /// Number of tiles.
    pub fn len(&self) -> usize {
        self.labels.count
    }

    /// Whether the sheet has no tiles.
    pub fn is_empty(&self) -> bool {
        self.labels.count == 0
    }

    /// Tile side in pixels.
    pub fn tile_size(&self) -> u32 {
        self.labels.tile_size
    }

    /// Class names, by class id.
    pub fn class_names(&self) -> &[String] {
        &self.labels.classes
    }

    /// Tiles per class, by class id.
    pub fn class_counts(&self) -> &[usize] {
        &self.labels.class_counts
    }

    /// The tile indices of class `class`, ascending (empty for an unknown class).
    pub fn items_of_class(&self, class: usize) -> &[usize] {
        self.class_items.get(class).map_or(&[], Vec::as_slice)
    }

    /// The class id of tile `index`.
    pub fn class_of(&self, index: usize) -> Option<usize> {
        self.labels.tile_class.get(index).map(|&c| usize::from(c))
    }

    /// The vendor (art style) of tile `index`.
    pub fn vendor_of(&self, index: usize) -> Option<&VendorInfo> {
        let vendor = *self.labels.tile_vendor.get(index)?;
        self.labels.vendors.get(usize::from(vendor))
    }

    /// The emoji short name of tile `index`.
    pub fn emoji_of(&self, index: usize) -> Option<&str> {
        self.labels.tile_emoji.get(index).map(String::as_str)
    }

    /// Tile `index` at the sheet's own size.
    pub fn tile(&self, index: usize) -> Result<RgbImage, DataError> {
        if index >= self.len() {
            return Err(DataError::IndexOutOfRange {
                index,
                len: self.len(),
            });
        }
        let tile = self.labels.tile_size;
        let (column, row) = (
            (index as u64) % u64::from(self.labels.columns),
            (index as u64) / u64::from(self.labels.columns),
        );
        // In range: `open` checked the sheet's size against count, columns and tile size.
        let (x, y) = (
            (column * u64::from(tile)) as u32,
            (row * u64::from(tile)) as u32,
        );
        Ok(imageops::crop_imm(&self.pixels, x, y, tile, tile).to_image())
    }

    /// The default held-out split: about [`DEFAULT_HOLDOUT_FRACTION`] of each class, whole emoji.
    pub fn default_split(&self) -> (Vec<usize>, Vec<usize>) {
        self.split(DEFAULT_HOLDOUT_FRACTION, DEFAULT_SPLIT_SEED)
    }

    /// A deterministic train / holdout split, stratified by class: `(train, holdout)`, each sorted.
    ///
    /// Every rendition of one emoji (all vendors and variants) stays on one side, so held-out tiles
    /// show emoji the model never saw in any style; within each class, whole emoji are held out to come
    /// as close as they can to `max(1, round(fraction · n))` of its `n` tiles (see [`stratified_split`]).
    pub fn split(&self, holdout_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let classes = self.labels.classes.iter().enumerate().map(|(class, name)| {
            // Group the class's tiles by emoji, groups in order of first appearance.
            let mut order: Vec<&str> = Vec::new();
            let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for &i in self.items_of_class(class) {
                let emoji = self.labels.tile_emoji[i].as_str();
                groups
                    .entry(emoji)
                    .or_insert_with(|| {
                        order.push(emoji);
                        Vec::new()
                    })
                    .push(i);
            }
            let groups = order
                .iter()
                .filter_map(|e| groups.remove(e))
                .collect::<Vec<_>>();
            (name.as_str(), groups)
        });
        stratified_split(classes, holdout_fraction, seed)
    }
}

/// An [`EmojiSheet`] seen as an [`ImageSource`] at a fixed size (tiles are resized with the rule of
/// [`fit_square`] when `size` differs from the sheet's tile size).
#[derive(Debug, Clone)]
pub struct EmojiSource {
    sheet: Arc<EmojiSheet>,
    size: u32,
}

impl EmojiSource {
    /// Wraps `sheet` (shareable between e.g. a train and a holdout [`Subset`](super::Subset)).
    pub fn new(sheet: impl Into<Arc<EmojiSheet>>, size: u32) -> Result<Self, DataError> {
        check_size(size)?;
        Ok(Self {
            sheet: sheet.into(),
            size,
        })
    }

    /// The wrapped sheet.
    pub fn sheet(&self) -> &Arc<EmojiSheet> {
        &self.sheet
    }

    /// The side length of the images it returns.
    pub fn size(&self) -> u32 {
        self.size
    }
}

impl ImageSource for EmojiSource {
    fn len(&self) -> usize {
        self.sheet.len()
    }

    fn class_names(&self) -> &[String] {
        self.sheet.class_names()
    }

    fn get(&self, index: usize) -> Result<(RgbImageF, usize), DataError> {
        let tile = fit_square(self.sheet.tile(index)?, self.size);
        let class = self.sheet.class_of(index).unwrap_or(0);
        let image =
            RgbImageF::from_rgb8(&tile).ok_or(DataError::InvalidSize { size: self.size })?;
        Ok((image, class))
    }
}

/// Class names and per-class counts of a dataset, as `nvg-studio dataset info` prints them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetSummary {
    /// The label file or image folder described.
    pub source: String,
    /// Class names, by class id.
    pub classes: Vec<String>,
    /// Items per class name.
    pub class_counts: BTreeMap<String, usize>,
    /// Items in all.
    pub total: usize,
    /// Tile side (emoji sheets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tile_size: Option<u32>,
    /// Tiles per vendor id (emoji sheets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_counts: Option<BTreeMap<String, usize>>,
}

impl DatasetSummary {
    /// The summary of an emoji sheet.
    pub fn of_sheet(sheet: &EmojiSheet) -> Self {
        let labels = sheet.labels();
        let mut vendor_counts: BTreeMap<String, usize> =
            labels.vendors.iter().map(|v| (v.id.clone(), 0)).collect();
        for i in 0..sheet.len() {
            if let Some(v) = sheet.vendor_of(i) {
                *vendor_counts.entry(v.id.clone()).or_insert(0) += 1;
            }
        }
        Self {
            source: sheet.labels_path().display().to_string(),
            classes: labels.classes.clone(),
            class_counts: labels
                .classes
                .iter()
                .cloned()
                .zip(labels.class_counts.iter().copied())
                .collect(),
            total: labels.count,
            tile_size: Some(labels.tile_size),
            vendor_counts: Some(vendor_counts),
        }
    }

    /// The summary of any dataset given its class names and per-class counts.
    pub fn of_counts(source: &str, classes: &[String], counts: &[usize]) -> Self {
        Self {
            source: source.to_string(),
            classes: classes.to_vec(),
            class_counts: classes
                .iter()
                .cloned()
                .zip(counts.iter().copied())
                .collect(),
            total: counts.iter().sum(),
            tile_size: None,
            vendor_counts: None,
        }
    }

    /// A plain-text table: one line per class with its id and count, then the total.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}: {} classes, {} images",
            self.source,
            self.classes.len(),
            self.total
        );
        if let Some(t) = self.tile_size {
            out.push_str(&format!(" ({t}×{t} px tiles)"));
        }
        out.push('\n');
        let width = self
            .classes
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(5)
            .max(5);
        out.push_str(&format!(
            "{:>3}  {:<width$}  {:>6}\n",
            "id", "class", "images"
        ));
        for (id, name) in self.classes.iter().enumerate() {
            let n = self.class_counts.get(name).copied().unwrap_or(0);
            out.push_str(&format!("{id:>3}  {name:<width$}  {n:>6}\n"));
        }
        if let Some(vendors) = &self.vendor_counts {
            let parts: Vec<String> = vendors.iter().map(|(v, n)| format!("{v} {n}")).collect();
            out.push_str(&format!("per vendor: {}\n", parts.join(", ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3-class sheet of `counts` tiles, 4 columns of 2 px, each tile one colour: red channel = class,
    /// green = index.
    fn write_sheet(dir: &Path, counts: &[usize]) -> PathBuf {
        let classes: Vec<String> = (0..counts.len()).map(|c| format!("class{c}")).collect();
        let mut tile_class = Vec::new();
        let mut tile_emoji = Vec::new();
        for (c, &n) in counts.iter().enumerate() {
            for k in 0..n {
                tile_class.push(c as u16);
                // Two tiles per emoji.
                tile_emoji.push(format!("e{c}_{}", k / 2));
            }
        }
        let count = tile_class.len();
        let labels = EmojiLabels {
            format: EMOJI_LABELS_FORMAT.into(),
            version: EMOJI_LABELS_VERSION,
            sheet: "s.png".into(),
            tile_size: 2,
            columns: 4,
            count,
            background: [255, 255, 255],
            label_source: "test".into(),
            classes,
            class_counts: counts.to_vec(),
            vendors: vec![VendorInfo {
                id: "v".into(),
                package: "p@1".into(),
                style: "s".into(),
            }],
            tile_vendor: vec![0; count],
            tile_class: tile_class.clone(),
            tile_emoji,
        };
        let (w, h) = labels.sheet_dimensions();
        let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let i = ((y / 2) * 4 + x / 2) as usize;
            let class = tile_class.get(i).copied().unwrap_or(255) as u8;
            image::Rgb([class, i as u8, 7])
        });
        img.save(dir.join("s.png")).unwrap();
        let path = dir.join("s.ron");
        labels.save(&path).unwrap();
        path
    }

    #[test]
    fn a_sheet_round_trips_and_serves_its_tiles() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_sheet(dir.path(), &[3, 4, 6]);
        let sheet = EmojiSheet::open(&path).unwrap();
        assert_eq!(sheet.len(), 13);
        assert_eq!(sheet.class_counts(), [3, 4, 6]);
        assert_eq!(sheet.items_of_class(1), [3, 4, 5, 6]);
        assert_eq!(sheet.tile(5).unwrap().get_pixel(1, 1).0, [1, 5, 7]);
        assert_eq!(sheet.emoji_of(4), Some("e1_0"));
        assert_eq!(sheet.vendor_of(4).unwrap().id, "v");
        assert!(sheet.tile(13).is_err());

        let source = EmojiSource::new(Arc::new(sheet), 2).unwrap();
        let (img, class) = source.get(12).unwrap();
        assert_eq!(class, 2);
        assert_eq!(img.to_rgb8().unwrap().get_pixel(0, 0).0, [2, 12, 7]);
        let bigger = EmojiSource::new(source.sheet().clone(), 4).unwrap();
        assert_eq!(bigger.get(0).unwrap().0.size, 4);

        let summary = DatasetSummary::of_sheet(source.sheet());
        assert_eq!(summary.total, 13);
        assert_eq!(summary.class_counts["class2"], 6);
        assert!(summary.to_text().contains("class1"));
    }

    #[test]
    fn split_holds_out_whole_emoji_per_class() {
        let dir = tempfile::tempdir().unwrap();
        let sheet = EmojiSheet::open(write_sheet(dir.path(), &[20, 2, 40])).unwrap();
        let (train, holdout) = sheet.split(0.1, 3);
        assert_eq!((train.clone(), holdout.clone()), sheet.split(0.1, 3));
        let mut all: Vec<usize> = train.iter().chain(&holdout).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..sheet.len()).collect::<Vec<_>>());
        let held = |c: usize| {
            holdout
                .iter()
                .filter(|&&i| sheet.class_of(i) == Some(c))
                .count()
        };
        assert_eq!(
            (held(0), held(1), held(2)),
            (2, 0, 4),
            "10%, whole pairs, one emoji stays"
        );
        for &i in &holdout {
            let e = sheet.emoji_of(i).unwrap();
            assert!(
                train.iter().all(|&t| sheet.emoji_of(t) != Some(e)),
                "{e} on both sides"
            );
        }
    }

    #[test]
    fn inconsistent_label_files_are_one_line_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_sheet(dir.path(), &[3, 4]);
        let text = fs::read_to_string(&path).unwrap();
        let check = |edited: String, needle: &str| {
            fs::write(&path, edited).unwrap();
            let err = EmojiSheet::open(&path).unwrap_err().to_string();
            assert!(err.contains("s.ron") && err.contains(needle), "{err}");
            assert!(!err.contains('\n'), "{err}");
        };
        check(
            text.replace("class_counts: [3, 4]", "class_counts: [3, 5]"),
            "class_counts says class \"class1\" has 5",
        );
        check(
            text.replace("count: 7", "count: 8"),
            "entries but count is 8",
        );
        check(text.replace("version: 1", "version: 9"), "version 9");
        check(text[..text.len() / 2].to_string(), "not a valid label file");
        // A sheet of the wrong size names both files.
        fs::write(&path, &text).unwrap();
        RgbImage::new(8, 2).save(dir.path().join("s.png")).unwrap();
        let err = EmojiSheet::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("s.png") && err.contains("s.ron") && err.contains("8×4"),
            "{err}"
        );
    }
}
