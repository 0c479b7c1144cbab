//! The emoji sheet builder: pinned npm packages in, one sprite sheet PNG and one label file out.
//!
//! Inputs (see README.md, "Data"): the eight Iconify icon-set tarballs of [`VENDORS`] and
//! `emoji-datasource` ([`LABEL_PACKAGE`]), as `npm pack` writes them (`iconify-json-noto-1.2.9.tgz`, …)
//! or unpacked next to them (`iconify-json-noto-1.2.9/package/icons.json`, …).
//!
//! 1. **Emoji:** `emoji.json` of emoji-datasource gives every emoji's codepoints, Unicode name and short
//!    names; [`EMOJI_CLASSES`] says which short names belong to which of the 32 classes.
//! 2. **Icons → emoji**, per vendor (dataset report §2.1):
//!    * sets with a `chars.json` (noto, twemoji, fluent flat) are looked up by codepoints (lower-case hex
//!      joined by `-`, `fe0f` dropped);
//!    * the other sets are matched by icon name. Their names are CLDR slugs (`dog-face`), which are
//!      looked up in the slug → emoji table those three `chars.json` files make, then compared with
//!      emoji-datasource's name and short names with non-alphanumerics removed; FxEmoji's names are
//!      squashed Unicode names (`aubergine`), so for it the Unicode name comes first. A trailing `-N`
//!      (Streamline's numbered variants, `bird-1`, `bird-2`) is dropped when the whole name does not match.
//!    * aliases are resolved to their parent icon; identical drawings of one emoji are kept once.
//! 3. **Tiles**, ordered by (class, emoji in class order, vendor, icon name), each rendered with
//!    [`render_tile`] (alpha-bounding-box normalised, on white), in parallel.
//! 4. **Files**: `emoji-{size}.png` (64 tiles a row; a 256-colour palette PNG unless lossless is asked
//!    for) and `emoji-{size}.ron` ([`EmojiLabels`]), both written atomically.
//!
//! Nothing depends on time, thread scheduling or hash order, so two runs give identical bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use image::RgbImage;
use serde::Deserialize;

use super::{EMOJI_LABELS_FORMAT, EMOJI_LABELS_VERSION, EmojiLabels, VendorInfo};
use super::classes::EMOJI_CLASSES;
use super::render::{IconSvg, SheetEncoding, encode_sheet_png, render_tile};
use crate::data::error::{DataError, one_line};
use crate::data::image_io::write_atomically;

/// Tiles per sheet row.
pub const SHEET_COLUMNS: u32 = 64;

/// The background the tiles are composited onto (white, as the command line's `BACKGROUND`).
pub const SHEET_BACKGROUND: [u8; 3] = [255, 255, 255];

/// Tile sizes the builder accepts.
pub const TILE_SIZES: std::ops::RangeInclusive<u32> = 8..=256;

/// The package whose `emoji.json` gives codepoints, names and short names: `(npm name, version)`.
pub const LABEL_PACKAGE: (&str, &str) = ("emoji-datasource", "16.0.0");

/// How a vendor's icons are matched to emoji.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matching {
    /// Through the set's `chars.json` (codepoints → icon name).
    Chars,
    /// By icon name, CLDR slugs first.
    Slug,
    /// By icon name, squashed Unicode names first.
    UnicodeName,
}

/// One input icon set.
#[derive(Clone, Copy, Debug)]
pub struct Vendor {
    /// Short id stored in the label file.
    pub id: &'static str,
    /// npm package name.
    pub package: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// Human-readable style.
    pub style: &'static str,
    pub matching: Matching,
}

/// The eight permissively licensed renditions (dataset report §1, §7), in label-file order.
pub const VENDORS: [Vendor; 8] = [
    Vendor {
        id: "noto",
        package: "@iconify-json/noto",
        version: "1.2.9",
        style: "Google Noto (current)",
        matching: Matching::Chars,
    },
    Vendor {
        id: "twemoji",
        package: "@iconify-json/twemoji",
        version: "1.2.5",
        style: "Twemoji",
        matching: Matching::Chars,
    },
    Vendor {
        id: "fluent-flat",
        package: "@iconify-json/fluent-emoji-flat",
        version: "1.2.6",
        style: "Microsoft Fluent Flat",
        matching: Matching::Chars,
    },
    Vendor {
        id: "fluent-color",
        package: "@iconify-json/fluent-emoji",
        version: "1.2.7",
        style: "Microsoft Fluent Color (shaded)",
        matching: Matching::Slug,
    },
    Vendor {
        id: "emojione",
        package: "@iconify-json/emojione",
        version: "1.2.3",
        style: "EmojiOne 2 (EmojiTwo)",
        matching: Matching::Slug,
    },
    Vendor {
        id: "fxemoji",
        package: "@iconify-json/fxemoji",
        version: "1.2.2",
        style: "Mozilla FxEmoji",
        matching: Matching::UnicodeName,
    },
    Vendor {
        id: "streamline",
        package: "@iconify-json/streamline-emojis",
        version: "1.2.4",
        style: "Streamline Emojis",
        matching: Matching::Slug,
    },
    Vendor {
        id: "noto-v1",
        package: "@iconify-json/noto-v1",
        version: "1.2.5",
        style: "Google Noto v1 (older design)",
        matching: Matching::Slug,
    },
];

/// Icons whose name matches the wrong emoji, found by looking at the tiles: `(vendor id, icon name,
/// the emoji short name it really shows, or None for none of the class lists)`. FxEmoji's `sunglasses`
/// is the smiling face with sunglasses (its dark sunglasses are `darksunglasses`) and its `star` is the
/// glowing star (`whitemediumstar` is ⭐); Streamline's `turkey` is the flag of Turkey.
pub const NAME_OVERRIDES: &[(&str, &str, Option<&str>)] = &[
    ("fxemoji", "sunglasses", Some("sunglasses")),
    ("fxemoji", "star", Some("star2")),
    ("streamline", "turkey", None),
];

/// The file name `npm pack` gives a package, without `.tgz`: `@iconify-json/noto`, `1.2.9` →
/// `iconify-json-noto-1.2.9`.
pub fn pack_name(package: &str, version: &str) -> String {
    format!(
        "{}-{version}",
        package.trim_start_matches('@').replace('/', "-")
    )
}

/// The `npm pack` command that fetches every input, as README.md gives it.
pub fn npm_pack_command() -> String {
    let mut parts = vec!["npm pack".to_string()];
    parts.extend(
        VENDORS
            .iter()
            .map(|v| format!("{}@{}", v.package, v.version)),
    );
    parts.push(format!("{}@{}", LABEL_PACKAGE.0, LABEL_PACKAGE.1));
    parts.join(" ")
}

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The folder holding the npm tarballs (or their unpacked folders).
    pub packages: PathBuf,
    /// Where `emoji-{size}.png` and `emoji-{size}.ron` are written (created if missing).
    pub out_dir: PathBuf,
    /// Tile side in pixels (32 or 64 in practice; see [`TILE_SIZES`]).
    pub tile_size: u32,
    /// Palette (the default) or lossless RGB.
    pub encoding: SheetEncoding,
    /// Render threads (0 = all cores).
    pub threads: usize,
}

/// Progress of a build, reported to a callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildProgress {
    /// Reading and matching the packages.
    Reading,
    /// `done` of `total` tiles rendered.
    Rendering { done: usize, total: usize },
    /// Encoding and writing the files.
    Writing,
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct BuildReport {
    pub sheet_path: PathBuf,
    pub labels_path: PathBuf,
    pub sheet_bytes: usize,
    pub labels_bytes: usize,
    pub labels: EmojiLabels,
    /// Tiles per vendor id.
    pub vendor_counts: Vec<(String, usize)>,
    /// Emoji of the class lists that no vendor draws.
    pub unmatched_emoji: Vec<String>,
    pub palette_colours: usize,
    /// PSNR of the stored sheet against the rendered one (infinite when lossless).
    pub psnr_db: f64,
    pub elapsed: Duration,
}

/// Builds the sheet and label file; see the module documentation.
pub fn build_emoji_sheet(
    opts: &BuildOptions,
    progress: &mut dyn FnMut(BuildProgress),
) -> Result<BuildReport, DataError> {
    let start = Instant::now();
    if !TILE_SIZES.contains(&opts.tile_size) {
        return Err(DataError::InvalidSetting(format!(
            "tile size {} is not supported: expected {} to {} pixels (32 or 64 for the bundled set)",
            opts.tile_size,
            TILE_SIZES.start(),
            TILE_SIZES.end()
        )));
    }
    progress(BuildProgress::Reading);
    let emoji = EmojiTable::read(&opts.packages)?;
    let mut sets = Vec::with_capacity(VENDORS.len());
    for vendor in &VENDORS {
        sets.push(IconSet::read(&opts.packages, vendor)?);
    }
    let slugs = slug_table(&sets, &emoji);
    let (specs, unmatched_emoji) = match_tiles(&sets, &emoji, &slugs)?;

    let total = specs.len();
    let tiles = render_all(&specs, opts.tile_size, opts.threads, &mut |done| {
        progress(BuildProgress::Rendering { done, total })
    })?;

    progress(BuildProgress::Writing);
    let tile = opts.tile_size;
    let rows = (total as u32).div_ceil(SHEET_COLUMNS).max(1);
    let mut sheet = RgbImage::from_pixel(
        SHEET_COLUMNS * tile,
        rows * tile,
        image::Rgb(SHEET_BACKGROUND),
    );
    for (i, img) in tiles.iter().enumerate() {
        let (col, row) = (i as u32 % SHEET_COLUMNS, i as u32 / SHEET_COLUMNS);
        image::imageops::replace(
            &mut sheet,
            img,
            i64::from(col * tile),
            i64::from(row * tile),
        );
    }

    let mut class_counts = vec![0usize; EMOJI_CLASSES.len()];
    let mut vendor_counts = vec![0usize; VENDORS.len()];
    for spec in &specs {
        class_counts[usize::from(spec.class)] += 1;
        vendor_counts[usize::from(spec.vendor)] += 1;
    }
    let sheet_name = format!("emoji-{tile}.png");
    let labels = EmojiLabels {
        format: EMOJI_LABELS_FORMAT.into(),
        version: EMOJI_LABELS_VERSION,
        sheet: sheet_name.clone(),
        tile_size: tile,
        columns: SHEET_COLUMNS,
        count: total,
        background: SHEET_BACKGROUND,
        label_source: format!(
            "{}@{} CLDR sub-groups, grouped into 32 classes (docs/dataset.md)",
            LABEL_PACKAGE.0, LABEL_PACKAGE.1
        ),
        classes: EMOJI_CLASSES
            .iter()
            .map(|(name, _)| name.to_string())
            .collect(),
        class_counts,
        vendors: VENDORS
            .iter()
            .map(|v| VendorInfo {
                id: v.id.into(),
                package: format!("{}@{}", v.package, v.version),
                style: v.style.into(),
            })
            .collect(),
        tile_class: specs.iter().map(|s| s.class).collect(),
        tile_vendor: specs.iter().map(|s| s.vendor).collect(),
        tile_emoji: specs.iter().map(|s| s.emoji.to_string()).collect(),
    };
    labels.validate().map_err(|e| {
        DataError::InvalidSetting(format!(
            "internal error: built labels are inconsistent: {e}"
        ))
    })?;

    let encoded = encode_sheet_png(&sheet, opts.encoding, SHEET_BACKGROUND).map_err(|detail| {
        DataError::Write {
            path: opts.out_dir.join(&sheet_name),
            detail,
        }
    })?;
    fs::create_dir_all(&opts.out_dir).map_err(|e| DataError::Write {
        path: opts.out_dir.clone(),
        detail: one_line(e),
    })?;
    let sheet_path = opts.out_dir.join(&sheet_name);
    let labels_path = opts.out_dir.join(format!("emoji-{tile}.ron"));
    write_atomically(&sheet_path, |w| {
        std::io::Write::write_all(w, &encoded.png).map_err(one_line)
    })?;
    labels.save(&labels_path)?;
    let labels_bytes = fs::metadata(&labels_path)
        .map(|m| m.len() as usize)
        .unwrap_or(0);

    Ok(BuildReport {
        sheet_path,
        labels_path,
        sheet_bytes: encoded.png.len(),
        labels_bytes,
        labels,
        vendor_counts: VENDORS
            .iter()
            .zip(vendor_counts)
            .map(|(v, n)| (v.id.to_string(), n))
            .collect(),
        unmatched_emoji,
        palette_colours: encoded.palette_colours,
        psnr_db: encoded.psnr_db,
        elapsed: start.elapsed(),
    })
}

/// One tile to render.
struct TileSpec {
    class: u16,
    vendor: u16,
    emoji: &'static str,
    icon: String,
    svg: IconSvg,
}

/// Renders every tile, `threads` at a time; results are in `specs` order whatever the scheduling.
fn render_all(
    specs: &[TileSpec],
    tile: u32,
    threads: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<RgbImage>, DataError> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
    .clamp(1, specs.len().max(1));
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<RgbImage, String>>>> =
        Mutex::new((0..specs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(spec) = specs.get(i) else { break };
                    let tile = render_tile(&spec.svg, tile, SHEET_BACKGROUND);
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(tile);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let mut reported = usize::MAX;
        loop {
            let now = done.load(Ordering::Relaxed);
            if now != reported {
                progress(now);
                reported = now;
            }
            if now >= specs.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut tiles = Vec::with_capacity(specs.len());
    for (spec, result) in specs.iter().zip(results) {
        match result {
            Some(Ok(tile)) => tiles.push(tile),
            Some(Err(detail)) => {
                let vendor = &VENDORS[usize::from(spec.vendor)];
                return Err(DataError::Icon {
                    path: PathBuf::from(format!(
                        "{}.tgz",
                        pack_name(vendor.package, vendor.version)
                    )),
                    icon: spec.icon.clone(),
                    detail,
                });
            }
            None => {
                return Err(DataError::InvalidSetting(format!(
                    "internal error: icon \"{}\" was not rendered",
                    spec.icon
                )));
            }
        }
    }
    Ok(tiles)
}

/// Reads files from `package/` inside an npm package: the tarball `{dir}/{name}.tgz` if it exists,
/// else the unpacked `{dir}/{name}/package/`. Returns the files in the order asked.
fn read_package(
    dir: &Path,
    name: &str,
    npm: &str,
    files: &[&str],
) -> Result<(PathBuf, Vec<Vec<u8>>), DataError> {
    let tarball = dir.join(format!("{name}.tgz"));
    let unpacked = dir.join(name).join("package");
    if tarball.is_file() {
        let fail = |detail: String| DataError::Package {
            path: tarball.clone(),
            detail,
        };
        let file =
            File::open(&tarball).map_err(|e| fail(format!("cannot read ({})", one_line(e))))?;
        let mut archive = tar::Archive::new(GzDecoder::new(file));
        let mut found: Vec<Option<Vec<u8>>> = vec![None; files.len()];
        let entries = archive
            .entries()
            .map_err(|e| fail(format!("not a gzip'd tar archive ({})", one_line(e))))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| fail(format!("corrupt archive ({})", one_line(e))))?;
            let path = entry
                .path()
                .map_err(|e| fail(format!("corrupt archive ({})", one_line(e))))?
                .to_string_lossy()
                .into_owned();
            if let Some(k) = files.iter().position(|f| path == format!("package/{f}")) {
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| fail(format!("corrupt archive at {path} ({})", one_line(e))))?;
                found[k] = Some(bytes);
            }
        }
        let mut out = Vec::with_capacity(files.len());
        for (f, bytes) in files.iter().zip(found) {
            out.push(bytes.ok_or_else(|| fail(format!("has no package/{f}")))?);
        }
        Ok((tarball, out))
    } else if unpacked.is_dir() {
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let path = unpacked.join(f);
            out.push(fs::read(&path).map_err(|e| DataError::Package {
                path: path.clone(),
                detail: format!("cannot read ({})", one_line(e)),
            })?);
        }
        Ok((unpacked, out))
    } else {
        Err(DataError::Package {
            path: tarball,
            detail: format!(
                "not found (fetch it into {} with: npm pack {npm})",
                dir.display()
            ),
        })
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    file: &str,
    bytes: &[u8],
) -> Result<T, DataError> {
    serde_json::from_slice(bytes).map_err(|e| DataError::Package {
        path: path.to_path_buf(),
        detail: format!("{file} is not valid ({})", one_line(e)),
    })
}

/// One entry of emoji-datasource's `emoji.json` (the fields used here).
#[derive(Deserialize)]
struct EmojiEntry {
    #[serde(default)]
    name: Option<String>,
    unified: String,
    #[serde(default)]
    non_qualified: Option<String>,
    #[serde(default)]
    short_names: Vec<String>,
}

/// Lookup tables over `emoji.json`; values are entry indices. First entry wins on collisions.
struct EmojiTable {
    entries: Vec<EmojiEntry>,
    by_short_name: HashMap<String, usize>,
    by_codepoints: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
    by_short_squashed: HashMap<String, usize>,
}

impl EmojiTable {
    fn read(dir: &Path) -> Result<Self, DataError> {
        let (name, version) = LABEL_PACKAGE;
        let (path, files) = read_package(
            dir,
            &pack_name(name, version),
            &format!("{name}@{version}"),
            &["emoji.json"],
        )?;
        let entries: Vec<EmojiEntry> = parse_json(&path, "emoji.json", &files[0])?;
        let mut table = Self {
            by_short_name: HashMap::new(),
            by_codepoints: HashMap::new(),
            by_name: HashMap::new(),
            by_short_squashed: HashMap::new(),
            entries: Vec::new(),
        };
        for (i, e) in entries.iter().enumerate() {
            for s in &e.short_names {
                table.by_short_name.entry(s.clone()).or_insert(i);
                table.by_short_squashed.entry(squash(s)).or_insert(i);
            }
            for u in std::iter::once(&e.unified).chain(e.non_qualified.as_ref()) {
                table.by_codepoints.entry(codepoint_key(u)).or_insert(i);
            }
            if let Some(n) = &e.name {
                table.by_name.entry(squash(n)).or_insert(i);
            }
        }
        table.entries = entries;
        Ok(table)
    }
}

/// Lower-case alphanumerics only: `"Dog Face"`, `"dog-face"` and `"dog_face"` all become `"dogface"`.
fn squash(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Iconify's `chars.json` key: lower-case hex codepoints joined by `-`, without `fe0f`.
fn codepoint_key(unified: &str) -> String {
    unified
        .split('-')
        .map(str::to_ascii_lowercase)
        .filter(|p| p != "fe0f")
        .collect::<Vec<_>>()
        .join("-")
}

/// Drawing properties of an icon or alias (Iconify JSON); unset ones come from the alias's parent,
/// then from the set's defaults.
#[derive(Clone, Debug, Default, Deserialize)]
struct Props {
    left: Option<f64>,
    top: Option<f64>,
    width: Option<f64>,
    height: Option<f64>,
    #[serde(default)]
    rotate: u32,
    #[serde(default, rename = "hFlip")]
    h_flip: bool,
    #[serde(default, rename = "vFlip")]
    v_flip: bool,
}

#[derive(Deserialize)]
struct IconEntry {
    body: String,
    #[serde(flatten)]
    props: Props,
}

#[derive(Deserialize)]
struct AliasEntry {
    parent: String,
    #[serde(flatten)]
    props: Props,
}

/// `icons.json`: the icons, their aliases and the set-wide default view box.
#[derive(Deserialize)]
struct IconsJson {
    #[serde(default)]
    icons: BTreeMap<String, IconEntry>,
    #[serde(default)]
    aliases: BTreeMap<String, AliasEntry>,
    left: Option<f64>,
    top: Option<f64>,
    width: Option<f64>,
    height: Option<f64>,
}

/// One vendor's icons, read from its package.
struct IconSet {
    vendor: usize,
    path: PathBuf,
    icons: IconsJson,
    /// `chars.json`: codepoint key → icon name (empty for most name-matched sets).
    chars: BTreeMap<String, String>,
}

impl IconSet {
    fn read(dir: &Path, vendor: &Vendor) -> Result<Self, DataError> {
        let npm = format!("{}@{}", vendor.package, vendor.version);
        let (path, files) = read_package(
            dir,
            &pack_name(vendor.package, vendor.version),
            &npm,
            &["icons.json", "chars.json"],
        )?;
        let icons: IconsJson = parse_json(&path, "icons.json", &files[0])?;
        let chars: BTreeMap<String, String> = parse_json(&path, "chars.json", &files[1])?;
        let vendor = VENDORS.iter().position(|v| v.id == vendor.id).unwrap_or(0);
        Ok(Self {
            vendor,
            path,
            icons,
            chars,
        })
    }

    /// The drawing of icon or alias `name`: aliases followed to their icon, properties merged as
    /// Iconify does (the nearer one wins; flips and rotations add up). `Ok(None)` if `name` is unknown.
    fn resolve(&self, name: &str) -> Result<Option<IconSvg>, DataError> {
        let mut overrides: Vec<&Props> = Vec::new();
        let mut current = name;
        for _ in 0..=self.icons.aliases.len() {
            if let Some(icon) = self.icons.icons.get(current) {
                overrides.push(&icon.props);
                let set = &self.icons;
                let pick = |f: fn(&Props) -> Option<f64>, default: Option<f64>, fallback: f64| {
                    overrides
                        .iter()
                        .find_map(|p| f(p))
                        .or(default)
                        .unwrap_or(fallback)
                };
                let rotate = overrides.iter().map(|p| p.rotate).sum::<u32>() % 4;
                if rotate != 0 {
                    return Err(DataError::Icon {
                        path: self.path.clone(),
                        icon: name.into(),
                        detail: "rotated icons are not supported".into(),
                    });
                }
                return Ok(Some(IconSvg {
                    body: icon.body.clone(),
                    left: pick(|p| p.left, set.left, 0.0),
                    top: pick(|p| p.top, set.top, 0.0),
                    width: pick(|p| p.width, set.width, 16.0),
                    height: pick(|p| p.height, set.height, 16.0),
                    h_flip: overrides.iter().filter(|p| p.h_flip).count() % 2 == 1,
                    v_flip: overrides.iter().filter(|p| p.v_flip).count() % 2 == 1,
                }));
            }
            match self.icons.aliases.get(current) {
                Some(alias) => {
                    overrides.push(&alias.props);
                    current = &alias.parent;
                }
                None if current == name => return Ok(None),
                None => {
                    return Err(DataError::Icon {
                        path: self.path.clone(),
                        icon: name.into(),
                        detail: format!("alias of \"{current}\", which does not exist"),
                    });
                }
            }
        }
        Err(DataError::Icon {
            path: self.path.clone(),
            icon: name.into(),
            detail: "its aliases form a cycle".into(),
        })
    }

    /// Icon and alias names, sorted.
    fn names(&self) -> BTreeSet<&str> {
        self.icons
            .icons
            .keys()
            .chain(self.icons.aliases.keys())
            .map(String::as_str)
            .collect()
    }
}

/// CLDR slug → emoji entry, from the `chars.json` of the [`Matching::Chars`] sets (their icon names are
/// CLDR slugs), in vendor order; the first mapping of a slug wins.
fn slug_table(sets: &[IconSet], emoji: &EmojiTable) -> HashMap<String, usize> {
    let mut slugs = HashMap::new();
    for set in sets
        .iter()
        .filter(|s| VENDORS[s.vendor].matching == Matching::Chars)
    {
        for (key, name) in &set.chars {
            if let Some(&e) = emoji.by_codepoints.get(key) {
                slugs.entry(name.clone()).or_insert(e);
            }
        }
    }
    slugs
}

/// The emoji entry an icon name stands for, by the vendor's naming rule (see the module documentation).
fn match_name(
    name: &str,
    matching: Matching,
    emoji: &EmojiTable,
    slugs: &HashMap<String, usize>,
) -> Option<usize> {
    let lookup = |n: &str| -> Option<usize> {
        let squashed = squash(n);
        let by_unicode = || {
            emoji
                .by_name
                .get(&squashed)
                .or_else(|| emoji.by_short_squashed.get(&squashed))
                .copied()
        };
        match matching {
            Matching::UnicodeName => by_unicode().or_else(|| slugs.get(n).copied()),
            _ => slugs.get(n).copied().or_else(by_unicode),
        }
    };
    lookup(name).or_else(|| {
        // Numbered variants: "bird-1" → "bird".
        let (base, number) = name.rsplit_once('-')?;
        (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
        lookup(base)
    })
}

/// Every tile of the 32 classes, in sheet order, and the class-list emoji no vendor draws.
fn match_tiles(
    sets: &[IconSet],
    emoji: &EmojiTable,
    slugs: &HashMap<String, usize>,
) -> Result<(Vec<TileSpec>, Vec<String>), DataError> {
    // The emoji entries of the class lists (a name missing from emoji.json ends up unmatched).
    let wanted: BTreeSet<usize> = EMOJI_CLASSES
        .iter()
        .flat_map(|(_, names)| names.iter())
        .filter_map(|short| emoji.by_short_name.get(*short).copied())
        .collect();

    // Per vendor: emoji entry → (icon name, drawing), distinct drawings only, by icon name.
    let mut drawn: Vec<BTreeMap<usize, BTreeMap<String, IconSvg>>> = Vec::with_capacity(sets.len());
    for set in sets {
        let mut found: BTreeMap<usize, BTreeMap<String, IconSvg>> = BTreeMap::new();
        let mut add = |e: usize, name: &str| -> Result<(), DataError> {
            if !wanted.contains(&e) {
                return Ok(());
            }
            if let Some(svg) = set.resolve(name)? {
                let icons = found.entry(e).or_default();
                if !icons.values().any(|other| *other == svg) {
                    icons.insert(name.to_string(), svg);
                }
            }
            Ok(())
        };
        match VENDORS[set.vendor].matching {
            Matching::Chars => {
                for &e in &wanted {
                    let entry = &emoji.entries[e];
                    for u in std::iter::once(&entry.unified).chain(entry.non_qualified.as_ref()) {
                        if let Some(name) = set.chars.get(&codepoint_key(u)) {
                            add(e, name)?;
                        }
                    }
                }
            }
            matching => {
                let vendor_id = VENDORS[set.vendor].id;
                for name in set.names() {
                    let matched = match NAME_OVERRIDES
                        .iter()
                        .find(|(v, icon, _)| *v == vendor_id && *icon == name)
                    {
                        Some((_, _, short)) => {
                            short.and_then(|s| emoji.by_short_name.get(s).copied())
                        }
                        None => match_name(name, matching, emoji, slugs),
                    };
                    if let Some(e) = matched {
                        add(e, name)?;
                    }
                }
            }
        }
        drawn.push(found);
    }

    let mut specs = Vec::new();
    let mut unmatched = Vec::new();
    for (class, (_, names)) in EMOJI_CLASSES.iter().enumerate() {
        for &short in names.iter() {
            let e = emoji.by_short_name.get(short);
            let before = specs.len();
            for (set, found) in sets.iter().zip(&drawn) {
                for (icon, svg) in e.and_then(|e| found.get(e)).into_iter().flatten() {
                    specs.push(TileSpec {
                        class: class as u16,
                        vendor: set.vendor as u16,
                        emoji: short,
                        icon: icon.clone(),
                        svg: svg.clone(),
                    });
                }
            }
            if specs.len() == before {
                unmatched.push(short.to_string());
            }
        }
    }
    Ok((specs, unmatched))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codepoints_are_normalised_as_iconify_does() {
        assert_eq!(
            pack_name("@iconify-json/noto", "1.2.9"),
            "iconify-json-noto-1.2.9"
        );
        assert_eq!(
            pack_name("emoji-datasource", "16.0.0"),
            "emoji-datasource-16.0.0"
        );
        assert_eq!(codepoint_key("2764-FE0F"), "2764");
        assert_eq!(codepoint_key("1F468-200D-1F469"), "1f468-200d-1f469");
        assert_eq!(squash("Dog Face"), "dogface");
        assert_eq!(squash("star-struck"), "starstruck");
        let cmd = npm_pack_command();
        assert!(
            cmd.starts_with("npm pack @iconify-json/noto@1.2.9 "),
            "{cmd}"
        );
        assert!(cmd.ends_with(" emoji-datasource@16.0.0"), "{cmd}");
        // Every class list is non-empty and no emoji is in two classes.
        let mut seen = BTreeSet::new();
        for (class, names) in EMOJI_CLASSES {
            assert!(!names.is_empty(), "{class}");
            for n in names {
                assert!(seen.insert(*n), "{n} is in two classes");
            }
        }
        assert_eq!(seen.len(), 711);
    }

    #[test]
    fn missing_packages_name_the_tarball_and_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let opts = BuildOptions {
            packages: dir.path().to_path_buf(),
            out_dir: dir.path().join("out"),
            tile_size: 32,
            encoding: SheetEncoding::Palette,
            threads: 1,
        };
        let err = build_emoji_sheet(&opts, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("emoji-datasource-16.0.0.tgz")
                && err.contains("npm pack emoji-datasource@16.0.0"),
            "{err}"
        );
        fs::write(dir.path().join("emoji-datasource-16.0.0.tgz"), b"not gzip").unwrap();
        let err = build_emoji_sheet(&opts, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("emoji-datasource-16.0.0.tgz"), "{err}");
        assert!(!err.contains('\n'));
        let bad = BuildOptions {
            tile_size: 3,
            ..opts
        };
        assert!(
            build_emoji_sheet(&bad, &mut |_| {})
                .unwrap_err()
                .to_string()
                .contains("tile size 3")
        );
    }
}
