//! Images in, as the tokenizer wants them: square RGB, `[3, size, size]` f32 in [-1, 1].
//!
//! This module sits at the start of the one-way flow (image → tokenizer → …) and is used by tokenizer
//! training, encoding and evaluation. It has no model code.
//!
//! * [`image_io`]: decode any common image file ([`load_rgb`]; alpha, grayscale, 16-bit, palettes,
//!   resize-then-centre-crop) and write PNGs atomically ([`save_rgb_png`]).
//! * [`folder`]: [`ImageFolder`], a class-per-sub-folder dataset indexed by path and decoded on demand,
//!   with a deterministic stratified [`split`](ImageFolder::split).
//! * [`synthetic`]: [`SyntheticShapes`], procedural disc / rectangle / triangle / ring images for tests
//!   and smoke runs.
//! * [`order`]: seeded, dependency-stable shuffles ([`epoch_order`]) and the stratified split
//!   ([`stratified_split`]).
//! * [`emoji`]: the bundled emoji set, [`EmojiSheet`] (sprite sheet + `.ron` labels, 32 classes, 8 art
//!   styles) and [`EmojiSource`]; [`emoji::build`] makes it from pinned npm packages ([`emoji::render`]
//!   draws the tiles, [`emoji::classes`] lists the classes); [`contact`] draws contact sheets.
//!
//! Training code reads any of these through [`ImageSource`].

pub mod contact;
pub mod emoji;
pub mod error;
pub mod folder;
pub mod image_io;
pub mod order;
pub mod synthetic;

use std::sync::Arc;

pub use contact::{MemorySource, contact_sheet};
pub use emoji::{
    BUNDLED_EMOJI_LABELS, DatasetSummary, EmojiLabels, EmojiSheet, EmojiSource, VendorInfo,
};
pub use emoji::build::{BuildOptions, BuildProgress, BuildReport, build_emoji_sheet};
pub use emoji::render::SheetEncoding;
pub use error::{DataError, MAX_IMAGE_SIZE};
pub use folder::{FolderSource, IMAGE_EXTENSIONS, ImageFolder, has_image_extension};
pub use image_io::{
    RgbImageF, fit_square, flip_horizontal, load_rgb, save_rgb_png, to_rgb8,
    u8_to_unit, unit_to_u8,
};
pub use order::{epoch_order, fnv1a64, stratified_split};
pub use synthetic::{SHAPE_CLASSES, SyntheticShapes, synthetic_shape};

/// A dataset of labelled square images, all of one size. Shared across loader threads, hence
/// `Send + Sync`; `get` takes `&self`.
pub trait ImageSource: Send + Sync {
    /// The number of items.
    fn len(&self) -> usize;

    /// Whether there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Class names, indexed by class id.
    fn class_names(&self) -> &[String];

    /// Item `i` (`i < len()`): the image (`[3, size, size]`, values in [-1, 1]) and its class id.
    fn get(&self, i: usize) -> Result<(RgbImageF, usize), DataError>;
}

impl<S: ImageSource + ?Sized> ImageSource for Arc<S> {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn class_names(&self) -> &[String] {
        (**self).class_names()
    }

    fn get(&self, i: usize) -> Result<(RgbImageF, usize), DataError> {
        (**self).get(i)
    }
}

impl<S: ImageSource + ?Sized> ImageSource for Box<S> {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn class_names(&self) -> &[String] {
        (**self).class_names()
    }

    fn get(&self, i: usize) -> Result<(RgbImageF, usize), DataError> {
        (**self).get(i)
    }
}

/// The items of `source` at `indices` (for example one side of [`ImageFolder::split`]), renumbered
/// `0..indices.len()`.
#[derive(Debug, Clone)]
pub struct Subset<S> {
    source: S,
    indices: Vec<usize>,
}

impl<S: ImageSource> Subset<S> {
    /// Fails if any index is out of range for `source`.
    pub fn new(source: S, indices: Vec<usize>) -> Result<Self, DataError> {
        let len = source.len();
        if let Some(&index) = indices.iter().find(|&&i| i >= len) {
            return Err(DataError::IndexOutOfRange { index, len });
        }
        Ok(Self { source, indices })
    }

    /// The wrapped source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The source index of each item.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl<S: ImageSource> ImageSource for Subset<S> {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn class_names(&self) -> &[String] {
        self.source.class_names()
    }

    fn get(&self, i: usize) -> Result<(RgbImageF, usize), DataError> {
        let index = *self.indices.get(i).ok_or(DataError::IndexOutOfRange {
            index: i,
            len: self.indices.len(),
        })?;
        self.source.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_work_behind_trait_objects_and_subsets() {
        let shapes: Arc<dyn ImageSource> = Arc::new(SyntheticShapes::new(10, 8, 3).unwrap());
        assert_eq!(shapes.len(), 10);
        let subset = Subset::new(shapes.clone(), vec![7, 2]).unwrap();
        assert_eq!(subset.len(), 2);
        assert_eq!(subset.get(0).unwrap(), shapes.get(7).unwrap());
        assert_eq!(subset.get(1).unwrap().1, 2);
        assert!(matches!(
            subset.get(2),
            Err(DataError::IndexOutOfRange { index: 2, len: 2 })
        ));
        assert!(Subset::new(shapes, vec![10]).is_err());

        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ImageFolder>();
        assert_send_sync::<FolderSource>();
        assert_send_sync::<Subset<FolderSource>>();
    }
}
