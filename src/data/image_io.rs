//! Image files ↔ `[3, size, size]` f32 images in [-1, 1], the form the tokenizer reads.
//!
//! Loading always yields a square RGB image:
//!
//! * grayscale is replicated to three channels; 16-bit channels are rounded to 8 bits; palette images are
//!   expanded by the decoder;
//! * transparency is composited onto a caller-chosen `background` colour (straight alpha, as PNG, GIF and
//!   WebP store it), because the model has no alpha channel;
//! * **resizing rule:** an image that is not already `size × size` has its *shorter* side resized to `size`
//!   with a Lanczos3 filter (keeping the aspect ratio; the longer side becomes `round(long · size / short)`),
//!   then the centre `size × size` square is cropped out (offset `⌊(long' − size) / 2⌋`). An image more than
//!   4:1 elongated first has its long axis centre-cropped to 4:1 so the resize never builds a huge
//!   intermediate; the discarded ends lie far outside both the final crop and the filter's support;
//! * every 8-bit value `v` becomes `v as f32 / 127.5 - 1.0`, evaluated in f32 exactly in that order, so
//!   values match reference vectors computed as `float32(v) / 127.5 - 1` bit for bit.
//!
//! Pixels are stored channel-major (CHW): value `(c, y, x)` is at `data[(c · size + y) · size + x]`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::Path;

use image::codecs::png::PngEncoder;
use image::error::UnsupportedErrorKind;
use image::imageops::{self, FilterType};
use image::{
    DynamicImage, ExtendedColorType, ImageEncoder, ImageError, ImageFormat, ImageReader, RgbImage,
};

use super::error::{DataError, MAX_IMAGE_SIZE, one_line};


/// The most elongated aspect ratio resized as a whole; longer strips are centre-cropped to this first.
const MAX_ASPECT: u64 = 4;

/// A square RGB image with values in [-1, 1], channel-major: `data` has shape `[3, size, size]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImageF {
    /// Side length in pixels.
    pub size: u32,
    /// `3 · size · size` values, channel-major (CHW).
    pub data: Vec<f32>,
}

impl RgbImageF {
    /// A `size × size` image of one colour (values in [-1, 1]).
    pub fn filled(size: u32, rgb: [f32; 3]) -> Self {
        let plane = (size as usize) * (size as usize);
        let mut data = Vec::with_capacity(3 * plane);
        for value in rgb {
            data.extend(std::iter::repeat_n(value, plane));
        }
        Self { size, data }
    }

    /// The number of values a `size × size` RGB image holds.
    pub fn expected_len(size: u32) -> usize {
        3 * (size as usize) * (size as usize)
    }

    /// Checks that `data` holds exactly `3 · size · size` values.
    pub fn validate(&self) -> Result<(), DataError> {
        let expected = Self::expected_len(self.size);
        if self.data.len() == expected {
            Ok(())
        } else {
            Err(DataError::BadBuffer {
                size: self.size,
                len: self.data.len(),
                expected,
            })
        }
    }

    /// The three channel values at column `x`, row `y`, or `None` outside the image (or on a bad buffer).
    pub fn pixel(&self, x: u32, y: u32) -> Option<[f32; 3]> {
        if x >= self.size || y >= self.size {
            return None;
        }
        let plane = (self.size as usize) * (self.size as usize);
        let at = (y as usize) * (self.size as usize) + x as usize;
        Some([
            *self.data.get(at)?,
            *self.data.get(plane + at)?,
            *self.data.get(2 * plane + at)?,
        ])
    }

    /// Converts a square 8-bit image (values `v ↦ v / 127.5 − 1`); `None` if it is not square.
    pub fn from_rgb8(img: &RgbImage) -> Option<Self> {
        let (width, height) = img.dimensions();
        if width != height {
            return None;
        }
        let plane = (width as usize) * (height as usize);
        let mut data = vec![0.0; 3 * plane];
        for (at, pixel) in img.pixels().enumerate() {
            for c in 0..3 {
                data[c * plane + at] = u8_to_unit(pixel.0[c]);
            }
        }
        Some(Self { size: width, data })
    }

    /// Converts to an 8-bit image (clamped to [-1, 1], rounded to nearest); see [`unit_to_u8`].
    pub fn to_rgb8(&self) -> Result<RgbImage, DataError> {
        self.validate()?;
        let size = self.size as usize;
        let plane = size * size;
        Ok(RgbImage::from_fn(self.size, self.size, |x, y| {
            let at = (y as usize) * size + x as usize;
            image::Rgb([
                unit_to_u8(self.data[at]),
                unit_to_u8(self.data[plane + at]),
                unit_to_u8(self.data[2 * plane + at]),
            ])
        }))
    }

    /// Mirrors the image left ↔ right in place (the data augmentation used in training).
    pub fn flip_horizontal(&mut self) {
        let size = self.size as usize;
        if size == 0 {
            return;
        }
        for row in self.data.chunks_exact_mut(size) {
            row.reverse();
        }
    }
}

/// Mirrors `img` left ↔ right in place; the same as [`RgbImageF::flip_horizontal`].
pub fn flip_horizontal(img: &mut RgbImageF) {
    img.flip_horizontal();
}

/// An 8-bit value in [-1, 1]: `v as f32 / 127.5 - 1.0`, in f32 and in that order (bit-exact with
/// `float32(v) / 127.5 - 1`); 0 ↦ −1, 255 ↦ 1.
#[inline]
pub fn u8_to_unit(v: u8) -> f32 {
    v as f32 / 127.5 - 1.0
}

/// A value in [-1, 1] back to 8 bits: clamped, then `round((v + 1) · 127.5)`; NaN ↦ 0.
/// It inverts [`u8_to_unit`] exactly for all 256 values.
#[inline]
pub fn unit_to_u8(v: f32) -> u8 {
    if v.is_nan() {
        return 0;
    }
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Converts a `[3, size, size]` image in [-1, 1] to an 8-bit RGB image (clamp, round).
pub fn to_rgb8(img: &RgbImageF) -> Result<RgbImage, DataError> {
    img.to_rgb8()
}

/// Loads an image file as a `size × size` RGB image in [-1, 1] (CHW), following the rules in the
/// module documentation (alpha composited onto `background`, shorter side resized to `size` with
/// Lanczos3, centre crop).
///
/// The format is recognised from the file's content (`ImageReader::with_guessed_format`), never from its
/// extension, so a text file named `x.png` is reported as "not an image" rather than as a corrupt PNG.
/// Every failure is a [`DataError`] naming the file; this function does not panic on bad input.
pub fn load_rgb(path: &Path, size: u32, background: [u8; 3]) -> Result<RgbImageF, DataError> {
    check_size(size)?;
    let rgb = decode_rgb8(path, background)?;
    let square = fit_square(rgb, size);
    // `fit_square` always returns size × size, so the conversion cannot fail.
    RgbImageF::from_rgb8(&square).ok_or(DataError::InvalidSize { size })
}

/// Rejects a square side of 0 or above [`MAX_IMAGE_SIZE`].
pub fn check_size(size: u32) -> Result<(), DataError> {
    if size == 0 || size > MAX_IMAGE_SIZE {
        Err(DataError::InvalidSize { size })
    } else {
        Ok(())
    }
}

/// Decodes an image file at its own size as 8-bit RGB, compositing any alpha onto `background`.
pub fn decode_rgb8(path: &Path, background: [u8; 3]) -> Result<RgbImage, DataError> {
    let image = decode_file(path)?;
    let (width, height) = (image.width(), image.height());
    if width == 0 || height == 0 {
        return Err(DataError::ZeroSize {
            path: path.to_path_buf(),
            width,
            height,
        });
    }
    Ok(flatten_to_rgb8(image, background))
}

/// Opens, sniffs and decodes one file, mapping every failure to a one-line [`DataError`].
fn decode_file(path: &Path) -> Result<DynamicImage, DataError> {
    let owned = || path.to_path_buf();
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => DataError::NotFound { path: owned() },
        _ => DataError::Read {
            path: owned(),
            detail: one_line(e),
        },
    })?;
    let meta = file.metadata().map_err(|e| DataError::Read {
        path: owned(),
        detail: one_line(e),
    })?;
    if meta.is_dir() {
        return Err(DataError::Read {
            path: owned(),
            detail: "is a directory".into(),
        });
    }
    if meta.len() == 0 {
        return Err(DataError::NotAnImage {
            path: owned(),
            detail: "empty file".into(),
        });
    }
    let reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| DataError::Read {
            path: owned(),
            detail: one_line(e),
        })?;
    let Some(format) = reader.format() else {
        return Err(DataError::NotAnImage {
            path: owned(),
            detail: "content is not a PNG, JPEG, BMP, GIF or WebP image".into(),
        });
    };
    // `decode` applies the crate's default limits (512 MiB per image), so a hostile header cannot make
    // us allocate without bound.
    // A decoder bug on a hostile file must not take down a run that streams thousands of scraped
    // images, so a panic inside the decoder becomes an ordinary decode error for this file.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.decode())) {
        Ok(decoded) => decoded.map_err(|e| map_decode_error(path, format, e)),
        Err(_) => Err(DataError::Decode {
            path: owned(),
            format: format_name(format),
            detail: "the decoder failed on malformed data".into(),
        }),
    }
}

fn map_decode_error(path: &Path, format: ImageFormat, error: ImageError) -> DataError {
    let path = path.to_path_buf();
    let format = format_name(format);
    // The decoder's own message without image's "Format error decoding X:" prefix, which we already say.
    let detail = one_line(match std::error::Error::source(&error) {
        Some(source) if matches!(error, ImageError::Decoding(_)) => source.to_string(),
        _ => error.to_string(),
    });
    match error {
        ImageError::Unsupported(ref e) => {
            let detail = match e.kind() {
                UnsupportedErrorKind::Format(_) => {
                    format!("{format} is not supported by this build")
                }
                _ => format!("{format}: {detail}"),
            };
            DataError::Unsupported { path, detail }
        }
        ImageError::Limits(_) => DataError::TooLarge { path, detail },
        ImageError::IoError(ref e)
            if !matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            ) =>
        {
            DataError::Read { path, detail }
        }
        _ => DataError::Decode {
            path,
            format,
            detail,
        },
    }
}

fn format_name(format: ImageFormat) -> String {
    match format {
        ImageFormat::Png => "PNG".into(),
        ImageFormat::Jpeg => "JPEG".into(),
        ImageFormat::Gif => "GIF".into(),
        ImageFormat::Bmp => "BMP".into(),
        ImageFormat::WebP => "WebP".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// Any decoded image → 8-bit RGB. Opaque images use image's own conversion (which rounds 16-bit to
/// 8-bit); images with alpha are composited at 16 bits, `out = (c·a + bg·(max − a)) / max`, then rounded.
fn flatten_to_rgb8(image: DynamicImage, background: [u8; 3]) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.to_rgba16();
    let bg = background.map(|v| u64::from(v) * 257);
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u64::from(p[3]);
        let mut out = [0u8; 3];
        for c in 0..3 {
            let v16 = (u64::from(p[c]) * a + bg[c] * (65535 - a) + 32767) / 65535;
            out[c] = ((v16 * 255 + 32767) / 65535) as u8;
        }
        image::Rgb(out)
    })
}

/// Applies the resizing rule of the module documentation: shorter side → `size` (Lanczos3), then a
/// centre crop to `size × size`. An image already `size × size` is returned unchanged. `size` must be ≥ 1.
pub fn fit_square(img: RgbImage, size: u32) -> RgbImage {
    let (width, height) = img.dimensions();
    if (width, height) == (size, size) || width == 0 || height == 0 || size == 0 {
        return img;
    }
    let short = u64::from(width.min(height));
    let long = u64::from(width.max(height));
    // Pre-crop pathological strips (see module docs) so the intermediate stays ≤ 4·size long.
    let img = if long > MAX_ASPECT * short {
        let keep = (MAX_ASPECT * short) as u32;
        let skip = ((long - MAX_ASPECT * short) / 2) as u32;
        if width > height {
            imageops::crop_imm(&img, skip, 0, keep, height).to_image()
        } else {
            imageops::crop_imm(&img, 0, skip, width, keep).to_image()
        }
    } else {
        img
    };
    let (width, height) = img.dimensions();
    let s = u64::from(size);
    let scaled = |long: u32, short: u32| -> u32 {
        let (long, short) = (u64::from(long), u64::from(short));
        ((long * s + short / 2) / short).max(s) as u32
    };
    let (new_w, new_h) = if width <= height {
        (size, scaled(height, width))
    } else {
        (scaled(width, height), size)
    };
    let resized = imageops::resize(&img, new_w, new_h, FilterType::Lanczos3);
    imageops::crop_imm(&resized, (new_w - size) / 2, (new_h - size) / 2, size, size).to_image()
}

/// Writes `img` as an 8-bit RGB PNG (values clamped to [-1, 1] and rounded), atomically: the PNG is
/// written to a temporary file in the same directory and renamed over `path`, so a crash never leaves
/// a half-written file.
pub fn save_rgb_png(img: &RgbImageF, path: impl AsRef<Path>) -> Result<(), DataError> {
    let path = path.as_ref();
    let rgb = img.to_rgb8()?;
    write_atomically(path, |writer| {
        PngEncoder::new(writer)
            .write_image(
                rgb.as_raw(),
                rgb.width(),
                rgb.height(),
                ExtendedColorType::Rgb8,
            )
            .map_err(one_line)
    })
}

/// Runs `write` against a temporary file next to `path` and puts it in place
/// ([`crate::granularity::fsio::write_atomic_with`]).
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), String>,
) -> Result<(), DataError> {
    let mut detail = None;
    crate::granularity::fsio::write_atomic_with(path, |w| {
        write(w).map_err(|e| {
            detail = Some(e.clone());
            std::io::Error::other(e)
        })
    })
    .map_err(|e| DataError::Write { path: path.to_path_buf(), detail: detail.unwrap_or_else(|| one_line(e)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use image::{GrayImage, ImageBuffer, Luma, Rgb, Rgba, RgbaImage};

    fn assert_shape_and_range(img: &RgbImageF, size: u32) {
        assert_eq!(img.size, size);
        assert_eq!(img.data.len(), 3 * (size as usize) * (size as usize));
        assert!(
            img.data.iter().all(|v| (-1.0..=1.0).contains(v)),
            "values outside [-1, 1]"
        );
    }

    #[test]
    fn u8_to_f32_is_bit_exact_with_float32_reference() {
        // Reference: float32(v) / 127.5 - 1 with IEEE single rounding after each operation. Doing each
        // operation in f64 and rounding to f32 gives the same result (f64 has more than 2·24 + 2 bits),
        // so this is an independent computation of the reference.
        for v in 0..=255u8 {
            let quotient = (f64::from(v) / 127.5) as f32;
            let expected = (f64::from(quotient) - 1.0) as f32;
            assert_eq!(u8_to_unit(v).to_bits(), expected.to_bits(), "value {v}");
        }
        assert_eq!(u8_to_unit(0), -1.0);
        assert_eq!(u8_to_unit(255), 1.0);
        // Literal reference values of float32(v) / 127.5 - 1. Note 128 ↦ 0.003921628, not the
        // 0.003921569 = 1/255 a single-rounding (v - 127.5) / 127.5 would give.
        assert_eq!(u8_to_unit(128).to_bits(), 0x3b80_8100);
        assert_eq!(u8_to_unit(127).to_bits(), 0xbb80_8080);
        assert_eq!(u8_to_unit(1).to_bits(), 0xbf7d_fdfe);
    }

    #[test]
    fn loading_keeps_the_exact_conversion() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ramp.png");
        let img = RgbImage::from_fn(16, 16, |x, y| {
            let v = (y * 16 + x) as u8;
            Rgb([v, 255 - v, v / 2])
        });
        img.save(&path).unwrap();
        let loaded = load_rgb(&path, 16, [0, 0, 0]).unwrap();
        for y in 0..16u32 {
            for x in 0..16u32 {
                let v = (y * 16 + x) as u8;
                let expected = [u8_to_unit(v), u8_to_unit(255 - v), u8_to_unit(v / 2)];
                assert_eq!(loaded.pixel(x, y), Some(expected));
            }
        }
    }

    #[test]
    fn u8_round_trip_is_exact() {
        for v in 0..=255u8 {
            assert_eq!(unit_to_u8(u8_to_unit(v)), v);
        }
        assert_eq!(unit_to_u8(-7.0), 0);
        assert_eq!(unit_to_u8(3.0), 255);
        assert_eq!(unit_to_u8(f32::NAN), 0);
    }

    #[test]
    fn grayscale_loads_as_three_equal_channels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gray.png");
        GrayImage::from_fn(8, 8, |x, _| Luma([(x * 30) as u8]))
            .save(&path)
            .unwrap();
        let img = load_rgb(&path, 8, [0, 0, 0]).unwrap();
        assert_shape_and_range(&img, 8);
        for x in 0..8 {
            let p = img.pixel(x, 3).unwrap();
            assert_eq!(p, [u8_to_unit((x * 30) as u8); 3]);
        }
    }

    #[test]
    fn rgba_is_composited_onto_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alpha.png");
        // Left half transparent, right half opaque red; one half-transparent pixel.
        let mut img = RgbaImage::from_fn(8, 8, |x, _| {
            if x < 4 {
                Rgba([0, 255, 0, 0])
            } else {
                Rgba([255, 0, 0, 255])
            }
        });
        img.put_pixel(0, 0, Rgba([255, 255, 255, 128]));
        img.save(&path).unwrap();
        let loaded = load_rgb(&path, 8, [10, 20, 30]).unwrap();
        assert_shape_and_range(&loaded, 8);
        assert_eq!(
            loaded.pixel(1, 5).unwrap(),
            [u8_to_unit(10), u8_to_unit(20), u8_to_unit(30)]
        );
        assert_eq!(loaded.pixel(6, 5).unwrap(), [1.0, -1.0, -1.0]);
        // 255·128/255 + 10·127/255 ≈ 132.98 → 133, and so on.
        let blended = loaded.pixel(0, 0).unwrap().map(unit_to_u8);
        assert_eq!(blended, [133, 138, 143]);
    }

    #[test]
    fn sixteen_bit_images_load_in_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep.png");
        let img: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(12, 12, |x, y| {
            Rgb([(x * 5000) as u16, (y * 5000) as u16, 65535])
        });
        img.save(&path).unwrap();
        let loaded = load_rgb(&path, 12, [0, 0, 0]).unwrap();
        assert_shape_and_range(&loaded, 12);
        assert_eq!(loaded.pixel(0, 0).unwrap(), [-1.0, -1.0, 1.0]);
        // 16-bit with alpha takes the compositing path.
        let path = dir.path().join("deep_alpha.png");
        let img: ImageBuffer<Rgba<u16>, Vec<u16>> = ImageBuffer::from_fn(12, 12, |x, _| {
            Rgba([65535, 0, 0, if x < 6 { 0 } else { 65535 }])
        });
        img.save(&path).unwrap();
        let loaded = load_rgb(&path, 12, [0, 0, 255]).unwrap();
        assert_eq!(loaded.pixel(0, 0).unwrap(), [-1.0, -1.0, 1.0]);
        assert_eq!(loaded.pixel(11, 0).unwrap(), [1.0, -1.0, -1.0]);
    }

    #[test]
    fn other_formats_load() {
        let dir = tempfile::tempdir().unwrap();
        let img = RgbImage::from_fn(10, 10, |x, y| Rgb([(x * 20) as u8, (y * 20) as u8, 128]));
        for name in ["a.jpg", "a.bmp", "a.gif", "a.webp"] {
            let path = dir.path().join(name);
            if name.ends_with(".webp") {
                DynamicImage::ImageRgb8(img.clone())
                    .to_rgba8()
                    .save(&path)
                    .unwrap();
            } else {
                img.save(&path).unwrap();
            }
            let loaded = load_rgb(&path, 10, [0, 0, 0]).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_shape_and_range(&loaded, 10);
        }
        // Content decides the format, not the extension.
        let path = dir.path().join("really_a_bmp.png");
        img.save_with_format(&path, ImageFormat::Bmp).unwrap();
        assert_eq!(
            load_rgb(&path, 10, [0, 0, 0]).unwrap(),
            RgbImageF::from_rgb8(&img).unwrap()
        );
    }

    #[test]
    fn wrong_sizes_are_resized_and_centre_cropped() {
        let dir = tempfile::tempdir().unwrap();
        // Wide image: left third black, middle white, right third black. After resizing the height to 16
        // the width is 48 and the centre crop is the white middle.
        let path = dir.path().join("wide.png");
        RgbImage::from_fn(96, 32, |x, _| {
            if (32..64).contains(&x) {
                Rgb([255; 3])
            } else {
                Rgb([0; 3])
            }
        })
        .save(&path)
        .unwrap();
        let img = load_rgb(&path, 16, [0, 0, 0]).unwrap();
        assert_shape_and_range(&img, 16);
        assert!(img.pixel(8, 8).unwrap().iter().all(|&v| v > 0.99));
        assert!(img.pixel(2, 8).unwrap().iter().all(|&v| v > 0.5));

        // Tall and tiny images, upscaled.
        for (w, h) in [(3, 7), (1, 1), (5, 2), (2, 900), (1, 3)] {
            let path = dir.path().join(format!("s{w}x{h}.png"));
            RgbImage::from_pixel(w, h, Rgb([200, 100, 50]))
                .save(&path)
                .unwrap();
            let img = load_rgb(&path, 24, [0, 0, 0]).unwrap();
            assert_shape_and_range(&img, 24);
            let centre = img.pixel(12, 12).unwrap().map(unit_to_u8);
            assert_eq!(centre, [200, 100, 50], "{w}×{h}");
        }
    }

    #[test]
    fn errors_name_the_file_and_fit_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let check = |path: &Path, expect: &str| {
            let err = load_rgb(path, 16, [0, 0, 0]).expect_err("should fail");
            let message = err.to_string();
            let name = path.file_name().unwrap().to_string_lossy();
            assert!(message.contains(name.as_ref()), "{message}");
            assert!(message.contains(expect), "{message}");
            assert!(!message.contains('\n'), "{message}");
            err
        };

        let err = check(&dir.path().join("missing.png"), "file not found");
        assert!(matches!(err, DataError::NotFound { .. }));

        let text = dir.path().join("notes.png");
        fs::write(&text, "this is not an image, just text\n").unwrap();
        assert!(matches!(
            check(&text, "not an image"),
            DataError::NotAnImage { .. }
        ));

        let empty = dir.path().join("empty.jpg");
        fs::write(&empty, b"").unwrap();
        check(&empty, "empty file");

        let good = dir.path().join("good.png");
        RgbImage::from_fn(64, 64, |x, y| Rgb([x as u8 * 3, y as u8 * 3, 7]))
            .save(&good)
            .unwrap();
        let bytes = fs::read(&good).unwrap();
        let truncated = dir.path().join("truncated.png");
        fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let err = check(&truncated, "cannot decode (truncated or corrupt PNG");
        assert!(matches!(err, DataError::Decode { .. }));

        // Header only: dimensions are known, the data is not.
        let header_only = dir.path().join("header_only.png");
        fs::write(&header_only, &bytes[..40]).unwrap();
        check(&header_only, "cannot decode");

        // Corrupt pixel data in the middle of the file.
        let corrupt = dir.path().join("corrupt.png");
        let mut damaged = bytes.clone();
        let mid = damaged.len() / 2;
        for b in &mut damaged[mid..mid + 32] {
            *b ^= 0x5a;
        }
        fs::write(&corrupt, &damaged).unwrap();
        check(&corrupt, "corrupt.png");

        check(dir.path(), "is a directory");
        assert!(matches!(
            load_rgb(&good, 0, [0; 3]),
            Err(DataError::InvalidSize { size: 0 })
        ));
    }

    #[test]
    fn zero_sized_images_are_errors() {
        // A hand-made BMP header declaring 0 × 0 pixels.
        let mut bmp = Vec::new();
        bmp.extend_from_slice(b"BM");
        bmp.extend_from_slice(&54u32.to_le_bytes()); // file size
        bmp.extend_from_slice(&0u32.to_le_bytes()); // reserved
        bmp.extend_from_slice(&54u32.to_le_bytes()); // pixel data offset
        bmp.extend_from_slice(&40u32.to_le_bytes()); // BITMAPINFOHEADER
        bmp.extend_from_slice(&0i32.to_le_bytes()); // width
        bmp.extend_from_slice(&0i32.to_le_bytes()); // height
        bmp.extend_from_slice(&1u16.to_le_bytes()); // planes
        bmp.extend_from_slice(&24u16.to_le_bytes()); // bits per pixel
        bmp.extend_from_slice(&[0u8; 24]); // compression, sizes, resolution, colours
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zero.bmp");
        fs::write(&path, &bmp).unwrap();
        let err = load_rgb(&path, 8, [0, 0, 0]).expect_err("zero-sized image must fail");
        assert!(err.to_string().contains("zero.bmp"), "{err}");
    }

    #[test]
    fn save_and_reload_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.png");
        let rgb = RgbImage::from_fn(9, 9, |x, y| Rgb([(x * 28) as u8, (y * 28) as u8, 99]));
        let img = RgbImageF::from_rgb8(&rgb).unwrap();
        save_rgb_png(&img, &path).unwrap();
        assert_eq!(load_rgb(&path, 9, [0, 0, 0]).unwrap(), img);
        // Overwrite in place; no temporary files are left behind.
        save_rgb_png(&RgbImageF::filled(9, [2.0, -3.0, 0.0]), &path).unwrap();
        let back = load_rgb(&path, 9, [0, 0, 0]).unwrap();
        assert_eq!(back.pixel(4, 4).unwrap().map(unit_to_u8), [255, 0, 128]);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.png")]);

        let bad = RgbImageF {
            size: 4,
            data: vec![0.0; 5],
        };
        assert!(matches!(
            save_rgb_png(&bad, &path),
            Err(DataError::BadBuffer { .. })
        ));
        let err = save_rgb_png(&img, dir.path().join("no_such_dir/out.png")).unwrap_err();
        assert!(err.to_string().contains("out.png"), "{err}");
    }

    #[test]
    fn flipping_mirrors_each_row() {
        let rgb = RgbImage::from_fn(5, 5, |x, y| Rgb([(x * 50) as u8, (y * 50) as u8, 0]));
        let mut img = RgbImageF::from_rgb8(&rgb).unwrap();
        let original = img.clone();
        flip_horizontal(&mut img);
        for y in 0..5 {
            for x in 0..5 {
                assert_eq!(img.pixel(x, y), original.pixel(4 - x, y));
            }
        }
        img.flip_horizontal();
        assert_eq!(img, original);
    }
}
