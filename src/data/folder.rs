//! An image-folder dataset: one sub-folder per class, images decoded on demand.
//!
//! ```text
//! root/
//!   cat/   a.png  b.jpg  close-ups/c.webp     ← nested images count for "cat"
//!   dog/   d.png  notes.txt                    ← non-image extensions are ignored
//! ```
//!
//! Classes are the top-level sub-folders, sorted by name; class id = position in that order. Items are
//! ordered by class, then by path. Only paths are kept in memory, so a folder of 100k images costs a few
//! megabytes until images are requested. Hidden entries (names starting with '.') are ignored.
//!
//! A file with an image extension that turns out to be unreadable does not stop training:
//! [`ImageFolder::get`] records it (see [`ImageFolder::skipped`]), warns once on stderr, and returns
//! the next loadable image of the same class instead. [`ImageFolder::load`] is the strict variant.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::ImageSource;
use super::error::{DataError, one_line};
use super::image_io::{RgbImageF, check_size, load_rgb};
use super::order::stratified_split;

/// File extensions (lower-case) that are indexed as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "gif", "webp"];

/// Whether `path` has one of [`IMAGE_EXTENSIONS`] (case-insensitive).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        IMAGE_EXTENSIONS
            .iter()
            .any(|known| e.eq_ignore_ascii_case(known))
    })
}

/// An indexed image folder (see the module documentation for the layout).
#[derive(Debug)]
pub struct ImageFolder {
    root: PathBuf,
    class_names: Vec<String>,
    /// Image paths, grouped by class, sorted by path within a class.
    paths: Vec<PathBuf>,
    /// `class_starts[c]..class_starts[c + 1]` are the items of class `c`.
    class_starts: Vec<usize>,
    /// Files seen while indexing that have no image extension.
    ignored_files: usize,
    /// Files that failed to load, with the reason; each is counted once.
    skipped: Mutex<BTreeMap<PathBuf, String>>,
}

impl ImageFolder {
    /// Indexes `root` by walking its directories. Reads no image data.
    ///
    /// Fails if `root` is missing or not a directory, is empty, has no sub-folders, or has a class
    /// sub-folder without any image file.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, DataError> {
        let root = root.as_ref().to_path_buf();
        match fs::metadata(&root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataError::RootMissing { root });
            }
            Err(e) => {
                return Err(DataError::ListDir {
                    dir: root,
                    detail: one_line(e),
                });
            }
            Ok(meta) if !meta.is_dir() => return Err(DataError::RootNotDir { root }),
            Ok(_) => {}
        }

        let entries = list_dir(&root)?;
        if entries.is_empty() {
            return Err(DataError::RootEmpty { root });
        }
        let mut ignored_files = 0;
        let mut classes: Vec<(String, PathBuf)> = Vec::new();
        for entry in entries {
            match entry.kind {
                Kind::Dir => classes.push((entry.name, entry.path)),
                Kind::File | Kind::Other => ignored_files += 1,
            }
        }
        if classes.is_empty() {
            return Err(DataError::NoClassFolders { root });
        }
        classes.sort();

        let mut class_names = Vec::with_capacity(classes.len());
        let mut paths = Vec::new();
        let mut class_starts = vec![0];
        let mut visited = HashSet::new();
        for (name, dir) in classes {
            let start = paths.len();
            walk_class(&dir, &mut paths, &mut ignored_files, &mut visited)?;
            if paths.len() == start {
                return Err(DataError::EmptyClass { root, class: name });
            }
            paths[start..].sort();
            class_names.push(name);
            class_starts.push(paths.len());
        }
        Ok(Self {
            root,
            class_names,
            paths,
            class_starts,
            ignored_files,
            skipped: Mutex::default(),
        })
    }

    /// The folder this dataset was indexed from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class names (the top-level sub-folder names), sorted; a class id indexes this slice.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The number of indexed image files of each class, by class id.
    pub fn class_counts(&self) -> Vec<usize> {
        self.class_starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// The number of indexed image files.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether no image was indexed (never true for a successfully opened folder).
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The item indices of class `class` (empty for an unknown class).
    pub fn class_range(&self, class: usize) -> Range<usize> {
        match (
            self.class_starts.get(class),
            self.class_starts.get(class + 1),
        ) {
            (Some(&start), Some(&end)) => start..end,
            _ => 0..0,
        }
    }

    /// The file of item `index`.
    pub fn path(&self, index: usize) -> Option<&Path> {
        self.paths.get(index).map(PathBuf::as_path)
    }

    /// The class id of item `index`.
    pub fn class_of(&self, index: usize) -> Option<usize> {
        if index >= self.paths.len() {
            return None;
        }
        // The class whose range contains `index`: the last start ≤ index.
        Some(self.class_starts.partition_point(|&start| start <= index) - 1)
    }

    /// Files seen while indexing that were ignored for not having an image extension.
    pub fn ignored_files(&self) -> usize {
        self.ignored_files
    }

    /// Loads item `index` strictly: any problem with its file is returned as an error.
    pub fn load(
        &self,
        index: usize,
        size: u32,
        background: [u8; 3],
    ) -> Result<(RgbImageF, usize), DataError> {
        let class = self.class_of(index).ok_or(DataError::IndexOutOfRange {
            index,
            len: self.len(),
        })?;
        Ok((load_rgb(&self.paths[index], size, background)?, class))
    }

    /// Loads item `index` as a `size × size` image, with its class id.
    ///
    /// If the file cannot be loaded it is counted in [`skipped`](Self::skipped) (once per file, with a
    /// warning on stderr) and the next loadable file of the same class, in index order wrapping around,
    /// is returned instead. Fails only for an out-of-range index, an invalid `size`, or a class none of
    /// whose files can be loaded.
    pub fn get(
        &self,
        index: usize,
        size: u32,
        background: [u8; 3],
    ) -> Result<(RgbImageF, usize), DataError> {
        check_size(size)?;
        let class = self.class_of(index).ok_or(DataError::IndexOutOfRange {
            index,
            len: self.len(),
        })?;
        let range = self.class_range(class);
        let n = range.len();
        for k in 0..n {
            let i = range.start + (index - range.start + k) % n;
            let path = &self.paths[i];
            if self.skipped_lock().contains_key(path) {
                continue;
            }
            match load_rgb(path, size, background) {
                Ok(image) => return Ok((image, class)),
                Err(error) => self.record_skip(path, &error),
            }
        }
        let last = self
            .skipped_lock()
            .get(&self.paths[index])
            .cloned()
            .unwrap_or_default();
        Err(DataError::ClassUnreadable {
            root: self.root.clone(),
            class: self.class_names[class].clone(),
            last,
        })
    }

    /// How many distinct files failed to load so far and were skipped by [`get`](Self::get).
    pub fn skipped(&self) -> usize {
        self.skipped_lock().len()
    }

    /// The skipped files with the reason each failed, sorted by path.
    pub fn skipped_files(&self) -> Vec<(PathBuf, String)> {
        self.skipped_lock()
            .iter()
            .map(|(p, why)| (p.clone(), why.clone()))
            .collect()
    }

    fn skipped_lock(&self) -> MutexGuard<'_, BTreeMap<PathBuf, String>> {
        // The map stays consistent even if a holder panicked, so a poisoned lock is still usable.
        self.skipped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record_skip(&self, path: &Path, error: &DataError) {
        let message = error.to_string();
        let mut skipped = self.skipped_lock();
        if !skipped.contains_key(path) {
            eprintln!("warning: skipping unreadable {message}");
            skipped.insert(path.to_path_buf(), message);
        }
    }

    /// A deterministic train / holdout split, stratified by class: `(train, holdout)`, each sorted.
    ///
    /// Within each class the items (ordered by path) are shuffled by a ChaCha8 generator seeded from
    /// `seed` and the FNV-1a hash of the class name, and the first `max(1, round(fraction · n))` are held
    /// out when the class has `n ≥ 2` items (none when `n < 2`). Because each class has its own stream,
    /// adding or removing a class does not change the split of the others. A `fraction` of 0 or less
    /// (or NaN) holds nothing out; every class keeps at least one training item. This is
    /// [`stratified_split`] with each image its own group.
    pub fn split(&self, holdout_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let classes = self.class_names.iter().enumerate().map(|(class, name)| {
            let groups = self.class_range(class).map(|i| vec![i]).collect();
            (name.as_str(), groups)
        });
        stratified_split(classes, holdout_fraction, seed)
    }
}

/// An [`ImageFolder`] seen as an [`ImageSource`] at a fixed size and background colour.
#[derive(Debug, Clone)]
pub struct FolderSource {
    folder: Arc<ImageFolder>,
    size: u32,
    background: [u8; 3],
}

impl FolderSource {
    /// Wraps `folder` (shareable between e.g. a train and a holdout [`Subset`](super::Subset)).
    pub fn new(
        folder: impl Into<Arc<ImageFolder>>,
        size: u32,
        background: [u8; 3],
    ) -> Result<Self, DataError> {
        check_size(size)?;
        Ok(Self {
            folder: folder.into(),
            size,
            background,
        })
    }

    /// The wrapped folder (for its skip counter, paths and split).
    pub fn folder(&self) -> &Arc<ImageFolder> {
        &self.folder
    }

    /// The side length of the images it returns.
    pub fn size(&self) -> u32 {
        self.size
    }
}

impl ImageSource for FolderSource {
    fn len(&self) -> usize {
        self.folder.len()
    }

    fn class_names(&self) -> &[String] {
        self.folder.class_names()
    }

    fn get(&self, index: usize) -> Result<(RgbImageF, usize), DataError> {
        self.folder.get(index, self.size, self.background)
    }
}

enum Kind {
    Dir,
    File,
    Other,
}

struct Entry {
    name: String,
    path: PathBuf,
    kind: Kind,
}

/// The non-hidden entries of `dir`, with symbolic links followed (a dangling link is `Other`).
fn list_dir(dir: &Path) -> Result<Vec<Entry>, DataError> {
    let fail = |e: std::io::Error| DataError::ListDir {
        dir: dir.to_path_buf(),
        detail: one_line(e),
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Kind::Dir,
            Ok(meta) if meta.is_file() => Kind::File,
            _ => Kind::Other,
        };
        entries.push(Entry { name, path, kind });
    }
    Ok(entries)
}

/// Appends every image file under `dir` (any depth) to `paths`. `visited` holds canonical directories
/// already walked, so symbolic-link cycles terminate and no directory is indexed twice.
fn walk_class(
    dir: &Path,
    paths: &mut Vec<PathBuf>,
    ignored: &mut usize,
    visited: &mut HashSet<PathBuf>,
) -> Result<(), DataError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let canonical = fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        if !visited.insert(canonical) {
            continue;
        }
        for entry in list_dir(&dir)? {
            match entry.kind {
                Kind::Dir => stack.push(entry.path),
                Kind::File if has_image_extension(&entry.path) => paths.push(entry.path),
                Kind::File | Kind::Other => *ignored += 1,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn write_png(path: &Path, colour: [u8; 3]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_pixel(6, 4, Rgb(colour)).save(path).unwrap();
    }

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"").unwrap();
    }

    #[test]
    fn nested_folders_count_for_their_top_level_class() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_png(&root.join("dog/b.png"), [0, 0, 255]);
        write_png(&root.join("cat/z.png"), [255, 0, 0]);
        write_png(&root.join("cat/close-ups/deeper/a.PNG"), [255, 0, 0]);
        write_png(&root.join("dog/puppies/c.png"), [0, 0, 255]);
        fs::write(root.join("dog/notes.txt"), "not an image").unwrap();
        fs::write(root.join("README.md"), "files in the root are ignored").unwrap();
        write_png(&root.join(".hidden/x.png"), [0, 0, 0]);
        fs::write(root.join("cat/.DS_Store"), "junk").unwrap();

        let folder = ImageFolder::open(root).unwrap();
        assert_eq!(folder.class_names(), ["cat", "dog"]);
        assert_eq!(folder.class_counts(), vec![2, 2]);
        assert_eq!(folder.len(), 4);
        assert_eq!(folder.ignored_files(), 2);
        let labels: Vec<_> = (0..4).map(|i| folder.class_of(i).unwrap()).collect();
        assert_eq!(labels, vec![0, 0, 1, 1]);
        // Within a class, items are sorted by path.
        assert!(
            folder
                .path(0)
                .unwrap()
                .ends_with("cat/close-ups/deeper/a.PNG")
        );
        assert!(folder.path(1).unwrap().ends_with("cat/z.png"));
        assert!(folder.path(2).unwrap().ends_with("dog/b.png"));
        assert!(folder.path(3).unwrap().ends_with("dog/puppies/c.png"));
        assert_eq!(folder.class_of(4), None);

        for (i, &label) in labels.iter().enumerate() {
            let (img, class) = folder.get(i, 8, [0, 0, 0]).unwrap();
            assert_eq!(img.size, 8);
            assert_eq!(class, label);
            let expected = if class == 0 {
                [1.0, -1.0, -1.0]
            } else {
                [-1.0, -1.0, 1.0]
            };
            assert_eq!(img.pixel(4, 4).unwrap(), expected);
        }
        assert!(matches!(
            folder.get(4, 8, [0; 3]),
            Err(DataError::IndexOutOfRange { index: 4, len: 4 })
        ));

        let source = FolderSource::new(folder, 8, [0; 3]).unwrap();
        assert_eq!(ImageSource::len(&source), 4);
        assert_eq!(source.class_names(), ["cat", "dog"]);
        assert_eq!(source.get(3).unwrap().1, 1);
        assert_eq!(source.folder().skipped(), 0);
    }

    #[test]
    fn bad_roots_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let message = |root: &Path| ImageFolder::open(root).unwrap_err().to_string();

        let missing = dir.path().join("nowhere");
        let m = message(&missing);
        assert!(m.contains("nowhere") && m.contains("not found"), "{m}");

        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert!(matches!(
            ImageFolder::open(&empty),
            Err(DataError::RootEmpty { .. })
        ));
        let m = message(&empty);
        assert!(
            m.contains("empty") && m.contains("expected one sub-folder per class"),
            "{m}"
        );

        let flat = dir.path().join("flat");
        write_png(&flat.join("a.png"), [1, 2, 3]);
        assert!(matches!(
            ImageFolder::open(&flat),
            Err(DataError::NoClassFolders { .. })
        ));
        let m = message(&flat);
        assert!(
            m.contains("flat") && m.contains("expected one sub-folder per class"),
            "{m}"
        );

        let file = dir.path().join("file.png");
        write_png(&file, [1, 2, 3]);
        assert!(matches!(
            ImageFolder::open(&file),
            Err(DataError::RootNotDir { .. })
        ));

        let lopsided = dir.path().join("lopsided");
        write_png(&lopsided.join("full/a.png"), [1, 2, 3]);
        fs::create_dir_all(lopsided.join("hollow/inner")).unwrap();
        fs::write(lopsided.join("hollow/inner/readme.txt"), "no images here").unwrap();
        let err = ImageFolder::open(&lopsided).unwrap_err();
        assert!(
            matches!(&err, DataError::EmptyClass { class, .. } if class == "hollow"),
            "{err}"
        );
        assert!(
            err.to_string().contains("\"hollow\" has no images"),
            "{err}"
        );
        for m in [
            message(&missing),
            message(&empty),
            message(&flat),
            err.to_string(),
        ] {
            assert!(!m.contains('\n'));
        }
    }

    #[test]
    fn unreadable_files_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_png(&root.join("a/1_good.png"), [255, 255, 255]);
        fs::write(
            root.join("a/2_text.png"),
            "plain text with an image extension",
        )
        .unwrap();
        let good = fs::read(root.join("a/1_good.png")).unwrap();
        fs::write(root.join("a/3_truncated.png"), &good[..good.len() / 2]).unwrap();
        write_png(&root.join("a/4_good.png"), [255, 255, 255]);
        write_png(&root.join("b/only.png"), [0, 0, 0]);

        let folder = ImageFolder::open(root).unwrap();
        assert_eq!(folder.class_counts(), vec![4, 1]);
        // Strict loading reports the problem, naming the file.
        let err = folder.load(1, 8, [0; 3]).unwrap_err();
        assert!(err.to_string().contains("2_text.png"), "{err}");
        assert_eq!(folder.skipped(), 0, "strict loads do not count");

        for round in 0..2 {
            for i in 0..folder.len() {
                let (img, class) = folder.get(i, 8, [0; 3]).unwrap();
                assert_eq!(class, folder.class_of(i).unwrap());
                let expected = if class == 0 { 1.0 } else { -1.0 };
                assert!(
                    img.data.iter().all(|&v| v == expected),
                    "round {round}, item {i}"
                );
            }
            assert_eq!(folder.skipped(), 2, "each bad file counts once");
        }
        let skipped = folder.skipped_files();
        assert!(skipped[0].0.ends_with("2_text.png") && skipped[0].1.contains("not an image"));
        assert!(
            skipped[1].0.ends_with("3_truncated.png") && skipped[1].1.contains("cannot decode")
        );

        // A class with nothing loadable is an error naming the class.
        fs::write(root.join("b/only.png"), "broken").unwrap();
        let folder = ImageFolder::open(root).unwrap();
        let err = folder.get(4, 8, [0; 3]).unwrap_err();
        assert!(
            matches!(&err, DataError::ClassUnreadable { class, .. } if class == "b"),
            "{err}"
        );
        assert!(err.to_string().contains("only.png"), "{err}");
        // A bad size is the caller's error, not the files'.
        assert!(matches!(
            folder.get(0, 0, [0; 3]),
            Err(DataError::InvalidSize { .. })
        ));
        assert_eq!(folder.skipped(), 1);
    }

    fn folder_with_counts(root: &Path, counts: &[(&str, usize)]) -> ImageFolder {
        for &(class, n) in counts {
            for i in 0..n {
                touch(&root.join(class).join(format!("img_{i:03}.png")));
            }
        }
        ImageFolder::open(root).unwrap()
    }

    #[test]
    fn split_is_disjoint_deterministic_and_stratified() {
        let dir = tempfile::tempdir().unwrap();
        let folder = folder_with_counts(
            dir.path(),
            &[("one", 1), ("two", 2), ("ten", 10), ("many", 25)],
        );
        let (train, holdout) = folder.split(0.2, 42);
        assert_eq!((train.clone(), holdout.clone()), folder.split(0.2, 42));

        let mut all: Vec<usize> = train.iter().chain(&holdout).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..folder.len()).collect::<Vec<_>>(),
            "disjoint and complete"
        );

        let held_per_class = |holdout: &[usize]| -> BTreeMap<String, usize> {
            let mut counts = BTreeMap::new();
            for &i in holdout {
                *counts
                    .entry(folder.class_names()[folder.class_of(i).unwrap()].clone())
                    .or_insert(0) += 1;
            }
            counts
        };
        let counts = held_per_class(&holdout);
        assert_eq!(counts.get("one"), None, "a single item is never held out");
        assert_eq!(counts["two"], 1, "max(1, round(0.4)) = 1");
        assert_eq!(counts["ten"], 2);
        assert_eq!(counts["many"], 5);

        let (_, other_seed) = folder.split(0.2, 43);
        assert_ne!(holdout, other_seed);
        assert_eq!(held_per_class(&other_seed), counts);

        let (train, holdout) = folder.split(0.0, 42);
        assert!(holdout.is_empty());
        assert_eq!(train.len(), folder.len());
        let (train, holdout) = folder.split(1.0, 42);
        assert_eq!(train.len(), 4, "every class keeps one training item");
        assert_eq!(holdout.len(), folder.len() - 4);
    }

    #[test]
    fn split_of_a_class_does_not_depend_on_other_classes() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let a = folder_with_counts(first.path(), &[("kiwi", 30)]);
        let b = folder_with_counts(second.path(), &[("apple", 7), ("kiwi", 30), ("zebra", 3)]);
        let held_names = |folder: &ImageFolder| -> Vec<PathBuf> {
            let kiwi = folder
                .class_names()
                .iter()
                .position(|n| n == "kiwi")
                .unwrap();
            let (_, holdout) = folder.split(0.3, 9);
            holdout
                .into_iter()
                .filter(|&i| folder.class_of(i) == Some(kiwi))
                .map(|i| folder.path(i).unwrap().file_name().unwrap().into())
                .collect()
        };
        let names = held_names(&a);
        assert_eq!(names.len(), 9);
        assert_eq!(names, held_names(&b));
    }
}
