//! The one error type of the `data` module.
//!
//! Every variant displays as a single line that names the file (or folder, or value) and what is wrong
//! with it, so the command line can print it as-is after "error: ".

use std::path::PathBuf;

use thiserror::Error;


/// The largest square side [`load_rgb`](super::load_rgb) accepts (a 4096² image is 192 MiB as f32).
pub const MAX_IMAGE_SIZE: u32 = 4096;

/// What went wrong while loading, indexing or writing images.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    /// The image file does not exist.
    #[error("image {}: file not found", .path.display())]
    NotFound { path: PathBuf },

    /// The file exists but could not be opened or read (permissions, a directory, an I/O error).
    #[error("image {}: cannot read ({detail})", .path.display())]
    Read { path: PathBuf, detail: String },

    /// The file's content is not any image format this build can read (or the file is empty).
    #[error("image {}: not an image ({detail})", .path.display())]
    NotAnImage { path: PathBuf, detail: String },

    /// The file is an image, but in a format or variant this build cannot decode.
    #[error("image {}: unsupported image format ({detail})", .path.display())]
    Unsupported { path: PathBuf, detail: String },

    /// The file starts like an image of `format` but decoding it failed.
    #[error("image {}: cannot decode (truncated or corrupt {format}: {detail})", .path.display())]
    Decode {
        path: PathBuf,
        format: String,
        detail: String,
    },

    /// Decoding would need more memory than the decoder's limits allow.
    #[error("image {}: too large to load ({detail})", .path.display())]
    TooLarge { path: PathBuf, detail: String },

    /// The image decoded to zero pixels.
    #[error("image {}: has zero size ({width}×{height} pixels)", .path.display())]
    ZeroSize {
        path: PathBuf,
        width: u32,
        height: u32,
    },

    /// A requested square side length that cannot be used.
    #[error("image size {size} is not usable: expected 1 to {MAX_IMAGE_SIZE} pixels")]
    InvalidSize { size: u32 },

    /// An [`RgbImageF`](super::RgbImageF) whose buffer does not hold `3 × size × size` values.
    #[error("image buffer holds {len} values; a {size}×{size} RGB image needs {expected}")]
    BadBuffer {
        size: u32,
        len: usize,
        expected: usize,
    },

    /// Writing an image file failed.
    #[error("image {}: cannot write ({detail})", .path.display())]
    Write { path: PathBuf, detail: String },

    /// The dataset root does not exist.
    #[error("image folder {}: not found", .root.display())]
    RootMissing { root: PathBuf },

    /// The dataset root is a file.
    #[error("image folder {}: is not a directory; expected one sub-folder per class", .root.display())]
    RootNotDir { root: PathBuf },

    /// A directory of the dataset could not be listed.
    #[error("image folder {}: cannot list ({detail})", .dir.display())]
    ListDir { dir: PathBuf, detail: String },

    /// The dataset root holds nothing at all.
    #[error("image folder {}: is empty; expected one sub-folder per class", .root.display())]
    RootEmpty { root: PathBuf },

    /// The dataset root holds files but no sub-folders.
    #[error("image folder {}: has no sub-folders; expected one sub-folder per class", .root.display())]
    NoClassFolders { root: PathBuf },

    /// A class sub-folder holds no file with an image extension.
    #[error(
        "image folder {}: class \"{class}\" has no images (looked for .png, .jpg, .jpeg, .bmp, .gif, .webp)",
        .root.display()
    )]
    EmptyClass { root: PathBuf, class: String },

    /// Every image of a class failed to load, so no substitute could be found.
    #[error("image folder {}: no image of class \"{class}\" can be loaded (last failure: {last})", .root.display())]
    ClassUnreadable {
        root: PathBuf,
        class: String,
        last: String,
    },

    /// An item index past the end of a dataset.
    #[error("image index {index} is out of range for a dataset of {len} images")]
    IndexOutOfRange { index: usize, len: usize },

    /// An emoji label file (`.ron`) is missing, unreadable, malformed, or inconsistent with itself.
    #[error("emoji label file {}: {detail}", .path.display())]
    Labels { path: PathBuf, detail: String },

    /// An emoji sprite sheet does not match what its label file describes.
    #[error("emoji sheet {}: {detail} (according to label file {})", .sheet.display(), .labels.display())]
    SheetMismatch {
        sheet: PathBuf,
        labels: PathBuf,
        detail: String,
    },

    /// An input package of the emoji builder (an npm tarball or its unpacked folder) is missing or bad.
    #[error("emoji package {}: {detail}", .path.display())]
    Package { path: PathBuf, detail: String },

    /// One icon of an input package cannot be rendered.
    #[error("emoji package {}: icon \"{icon}\": {detail}", .path.display())]
    Icon {
        path: PathBuf,
        icon: String,
        detail: String,
    },

    /// A builder or contact-sheet setting that cannot be used.
    #[error("{0}")]
    InvalidSetting(String),
}

pub(crate) use crate::granularity::text::one_line;
