//! Pixels for the emoji builder: one SVG → one square tile, and a sheet → a PNG file.
//!
//! * [`IconSvg`] wraps an Iconify icon body in an `<svg>` element with its view box (and flips).
//! * [`render_tile`] renders it with resvg, **normalised to its alpha bounding box**: vendors leave very
//!   different margins around their artwork (dataset report §2.1), so the icon is first rendered at
//!   [`PROBE_SIZE`] px to find the box of its visible pixels, then rendered again so that this box fills
//!   the tile less a margin, centred, and composited onto the background.
//! * [`encode_sheet_png`] writes the sheet either losslessly (RGB) or as a 256-colour palette PNG (a
//!   deterministic NeuQuant palette whose entry 0 is exactly the background colour).
//!
//! Everything here is deterministic: the same input gives the same bytes on every run.

use std::collections::BTreeSet;

use color_quant::NeuQuant;
use image::RgbImage;
use resvg::{tiny_skia, usvg};

use crate::data::error::one_line;

/// Side (px) of the first, bounding-box-finding render.
pub const PROBE_SIZE: u32 = 256;

/// Alpha (of 255) at or above which a probe pixel counts as part of the artwork; fainter anti-aliasing
/// dust and soft shadows do not widen the box.
pub const BBOX_ALPHA: u8 = 16;

/// NeuQuant sampling factor (1 = every pixel, the slowest and best; 30 = the fastest).
const NEUQUANT_SAMPLE: i32 = 3;

/// An Iconify icon resolved to what is drawn: its body and its view box, and flips from aliases.
#[derive(Clone, Debug, PartialEq)]
pub struct IconSvg {
    /// The SVG content inside `<svg>` (paths, gradients, …).
    pub body: String,
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    /// Mirror left ↔ right.
    pub h_flip: bool,
    /// Mirror top ↔ bottom.
    pub v_flip: bool,
}

impl IconSvg {
    /// The complete SVG document: `<svg … viewBox="left top width height">body</svg>`, the body wrapped in
    /// a mirroring group when flipped.
    pub fn document(&self) -> String {
        let (l, t, w, h) = (self.left, self.top, self.width, self.height);
        let body = if self.h_flip || self.v_flip {
            // x ↦ 2l + w − x mirrors the view box onto itself (likewise for y).
            let (sx, tx) = if self.h_flip {
                (-1.0, 2.0 * l + w)
            } else {
                (1.0, 0.0)
            };
            let (sy, ty) = if self.v_flip {
                (-1.0, 2.0 * t + h)
            } else {
                (1.0, 0.0)
            };
            format!(
                "<g transform=\"matrix({sx} 0 0 {sy} {tx} {ty})\">{}</g>",
                self.body
            )
        } else {
            self.body.clone()
        };
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" \
             width=\"{w}\" height=\"{h}\" viewBox=\"{l} {t} {w} {h}\">{body}</svg>"
        )
    }
}

/// The margin (px) left around the artwork in a tile of side `tile`: 1 px at 32, 2 px at 64.
pub fn tile_margin(tile: u32) -> u32 {
    (tile / 32).max(1)
}

/// Renders `icon` into a `tile × tile` RGB image on `background`, scaled so that its alpha bounding box
/// (see the module documentation) fits `tile − 2·margin` pixels and centred.
///
/// Fails, with a one-line reason, if the SVG does not parse or draws nothing visible.
pub fn render_tile(icon: &IconSvg, tile: u32, background: [u8; 3]) -> Result<RgbImage, String> {
    if !(icon.width > 0.0 && icon.height > 0.0) {
        return Err(format!(
            "view box {}×{} has no area",
            icon.width, icon.height
        ));
    }
    let tree = usvg::Tree::from_str(&icon.document(), &usvg::Options::default())
        .map_err(|e| format!("SVG does not parse ({})", one_line(e)))?;
    let size = tree.size();
    let (w, h) = (f64::from(size.width()), f64::from(size.height()));

    // Pass 1: the whole view box at PROBE_SIZE on its longer side; find the visible pixels' box.
    let probe_scale = f64::from(PROBE_SIZE) / w.max(h);
    let pw = ((w * probe_scale).ceil() as u32).clamp(1, PROBE_SIZE);
    let ph = ((h * probe_scale).ceil() as u32).clamp(1, PROBE_SIZE);
    let mut probe = tiny_skia::Pixmap::new(pw, ph).ok_or("cannot allocate the probe image")?;
    let s = probe_scale as f32;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(s, s),
        &mut probe.as_mut(),
    );
    let (x0, y0, x1, y1) =
        alpha_bbox(probe.data(), pw, ph).ok_or("the icon draws nothing visible")?;

    // Pass 2: that box (in view-box units) onto the tile, less the margin, centred.
    let (bx0, by0) = (f64::from(x0) / probe_scale, f64::from(y0) / probe_scale);
    let (bx1, by1) = (f64::from(x1) / probe_scale, f64::from(y1) / probe_scale);
    let inner = f64::from(tile.saturating_sub(2 * tile_margin(tile)).max(1));
    let scale = inner / (bx1 - bx0).max(by1 - by0);
    let half = f64::from(tile) / 2.0;
    let tx = half - scale * (bx0 + bx1) / 2.0;
    let ty = half - scale * (by0 + by1) / 2.0;
    let mut pixmap = tiny_skia::Pixmap::new(tile, tile).ok_or("cannot allocate the tile image")?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_row(scale as f32, 0.0, 0.0, scale as f32, tx as f32, ty as f32),
        &mut pixmap.as_mut(),
    );
    Ok(composite(pixmap.data(), tile, background))
}

/// The box `[x0, x1) × [y0, y1)` of pixels whose alpha is at least [`BBOX_ALPHA`], or `None` if there is
/// none. `rgba` is premultiplied RGBA, row-major.
fn alpha_bbox(rgba: &[u8], width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (i, px) in rgba.chunks_exact(4).enumerate() {
        if px[3] >= BBOX_ALPHA {
            let (x, y) = ((i as u32) % width, (i as u32) / width);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
        }
    }
    (x0 < x1 && y0 < y1 && x1 <= width && y1 <= height).then_some((x0, y0, x1, y1))
}

/// Premultiplied RGBA over an opaque background: `c + bg · (255 − a) / 255`, rounded. For a white
/// background this is exactly `c + 255 − a`.
fn composite(rgba: &[u8], side: u32, background: [u8; 3]) -> RgbImage {
    let mut out = RgbImage::new(side, side);
    for (dst, px) in out.pixels_mut().zip(rgba.chunks_exact(4)) {
        let rest = 255 - u32::from(px[3]);
        for c in 0..3 {
            let under = (u32::from(background[c]) * rest + 127) / 255;
            dst.0[c] = (u32::from(px[c]) + under).min(255) as u8;
        }
    }
    out
}

/// How the sheet PNG stores colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SheetEncoding {
    /// 8-bit RGB, exact.
    Lossless,
    /// 8-bit indices into a palette of at most 256 colours (about a quarter of the size).
    Palette,
}

/// An encoded sheet and how far its colours are from the rendered ones.
#[derive(Clone, Debug)]
pub struct EncodedSheet {
    pub png: Vec<u8>,
    /// Colours in the palette (0 for a lossless sheet).
    pub palette_colours: usize,
    /// PSNR (dB) of the stored pixels against the rendered ones; infinite when exact.
    pub psnr_db: f64,
}

/// Encodes `sheet` as a PNG. A palette sheet keeps `background` exact (palette entry 0); the other
/// colours come from NeuQuant trained on every non-background pixel (or are exact when the sheet has
/// at most 256 distinct colours). No dithering: dither noise would be learned as texture.
pub fn encode_sheet_png(
    sheet: &RgbImage,
    encoding: SheetEncoding,
    background: [u8; 3],
) -> Result<EncodedSheet, String> {
    let (width, height) = sheet.dimensions();
    match encoding {
        SheetEncoding::Lossless => {
            let png = write_png(width, height, sheet.as_raw(), None)?;
            Ok(EncodedSheet {
                png,
                palette_colours: 0,
                psnr_db: f64::INFINITY,
            })
        }
        SheetEncoding::Palette => {
            let (palette, indices) = quantise(sheet, background);
            let mut squared_error = 0u64;
            for (px, &i) in sheet.pixels().zip(&indices) {
                let q = &palette[3 * usize::from(i)..3 * usize::from(i) + 3];
                for c in 0..3 {
                    let d = i64::from(px.0[c]) - i64::from(q[c]);
                    squared_error += (d * d) as u64;
                }
            }
            let values = (sheet.as_raw().len()).max(1) as f64;
            let mse = squared_error as f64 / values;
            let psnr_db = if mse == 0.0 {
                f64::INFINITY
            } else {
                10.0 * (255.0f64 * 255.0 / mse).log10()
            };
            let png = write_png(width, height, &indices, Some(&palette))?;
            Ok(EncodedSheet {
                png,
                palette_colours: palette.len() / 3,
                psnr_db,
            })
        }
    }
}

/// A palette (RGB triples, entry 0 = `background`) and one index per pixel.
fn quantise(sheet: &RgbImage, background: [u8; 3]) -> (Vec<u8>, Vec<u8>) {
    let distinct: BTreeSet<[u8; 3]> = sheet.pixels().map(|p| p.0).collect();
    let mut palette = background.to_vec();
    if distinct.len() <= 256 {
        // Few colours: store them exactly (background first, then in sorted order).
        palette.extend(distinct.iter().filter(|&&c| c != background).flatten());
        let lookup = |c: [u8; 3]| -> u8 {
            if c == background {
                0
            } else {
                // `distinct` without the background, so position + 1; at most 255.
                let pos = distinct
                    .iter()
                    .filter(|&&d| d != background)
                    .position(|&d| d == c);
                pos.map_or(0, |p| (p + 1) as u8)
            }
        };
        let mut cache = std::collections::BTreeMap::new();
        let indices = sheet
            .pixels()
            .map(|p| *cache.entry(p.0).or_insert_with(|| lookup(p.0)))
            .collect();
        return (palette, indices);
    }
    let mut rgba = Vec::with_capacity(sheet.as_raw().len() / 3 * 4);
    for p in sheet.pixels().filter(|p| p.0 != background) {
        rgba.extend_from_slice(&[p.0[0], p.0[1], p.0[2], 255]);
    }
    let quant = NeuQuant::new(NEUQUANT_SAMPLE, 255, &rgba);
    palette.extend(quant.color_map_rgb());
    let indices = sheet
        .pixels()
        .map(|p| {
            if p.0 == background {
                0
            } else {
                // At most 255 entries, so 1 + index fits in a byte.
                (1 + quant.index_of(&[p.0[0], p.0[1], p.0[2], 255])).min(255) as u8
            }
        })
        .collect();
    (palette, indices)
}

/// A PNG: 8-bit RGB when `palette` is `None`, else 8-bit indices into `palette` (RGB triples).
fn write_png(
    width: u32,
    height: u32,
    data: &[u8],
    palette: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::High);
        match palette {
            Some(p) => {
                encoder.set_color(png::ColorType::Indexed);
                encoder.set_palette(p.to_vec());
                // Prediction filters are meaningless on palette indices; unfiltered rows deflate best.
                encoder.set_filter(png::Filter::NoFilter);
            }
            None => encoder.set_color(png::ColorType::Rgb),
        }
        let mut writer = encoder.write_header().map_err(one_line)?;
        writer.write_image_data(data).map_err(one_line)?;
        writer.finish().map_err(one_line)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(body: &str, size: f64) -> IconSvg {
        IconSvg {
            body: body.into(),
            left: 0.0,
            top: 0.0,
            width: size,
            height: size,
            h_flip: false,
            v_flip: false,
        }
    }

    #[test]
    fn artwork_is_scaled_to_fill_the_tile_whatever_its_margin() {
        // A small red square in the corner of a large view box fills the tile less 1 px.
        let icon = square(
            "<rect x=\"10\" y=\"10\" width=\"20\" height=\"20\" fill=\"#f00\"/>",
            100.0,
        );
        let tile = render_tile(&icon, 32, [255, 255, 255]).unwrap();
        assert_eq!(
            tile.get_pixel(0, 0).0,
            [255, 255, 255],
            "margin is background"
        );
        assert_eq!(tile.get_pixel(31, 31).0, [255, 255, 255]);
        // The box is found at probe resolution, so its edge pixels may be partly covered.
        assert_ne!(
            tile.get_pixel(1, 1).0,
            [255, 255, 255],
            "artwork starts after the 1 px margin"
        );
        assert_ne!(tile.get_pixel(30, 30).0, [255, 255, 255]);
        for (x, y) in [(2, 2), (29, 29), (16, 16), (2, 29)] {
            assert_eq!(tile.get_pixel(x, y).0, [255, 0, 0], "({x}, {y})");
        }
    }

    #[test]
    fn flips_mirror_the_artwork_and_bad_svgs_are_errors() {
        // Left half red, right half blue; a wide blue bar makes the box non-square.
        let body = "<rect x=\"0\" y=\"0\" width=\"8\" height=\"16\" fill=\"#f00\"/>\
                    <rect x=\"8\" y=\"0\" width=\"8\" height=\"16\" fill=\"#00f\"/>";
        let plain = render_tile(&square(body, 16.0), 16, [0, 0, 0]).unwrap();
        let mut flipped_icon = square(body, 16.0);
        flipped_icon.h_flip = true;
        let flipped = render_tile(&flipped_icon, 16, [0, 0, 0]).unwrap();
        assert_eq!(plain.get_pixel(3, 8).0, [255, 0, 0]);
        assert_eq!(flipped.get_pixel(3, 8).0, [0, 0, 255]);
        assert_eq!(image::imageops::flip_horizontal(&plain), flipped);

        let err = render_tile(&square("<rect", 16.0), 16, [0; 3]).unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
        let err = render_tile(&square("<g/>", 16.0), 16, [0; 3]).unwrap_err();
        assert!(err.contains("nothing visible"), "{err}");
    }

    #[test]
    fn palette_sheets_keep_the_background_exact_and_decode_to_the_same_size() {
        let sheet = RgbImage::from_fn(64, 32, |x, y| {
            if x < 8 {
                image::Rgb([255, 255, 255])
            } else {
                image::Rgb([(x * 4) as u8, (y * 8) as u8, ((x + y) * 2) as u8])
            }
        });
        let encoded = encode_sheet_png(&sheet, SheetEncoding::Palette, [255, 255, 255]).unwrap();
        assert!(encoded.palette_colours <= 256);
        // 2,000 distinct colours into 255: a smoke check, not a quality bar.
        assert!(encoded.psnr_db > 25.0, "{}", encoded.psnr_db);
        let again = encode_sheet_png(&sheet, SheetEncoding::Palette, [255, 255, 255]).unwrap();
        assert_eq!(encoded.png, again.png, "deterministic");
        let decoded = image::load_from_memory(&encoded.png).unwrap().into_rgb8();
        assert_eq!(decoded.dimensions(), (64, 32));
        assert_eq!(decoded.get_pixel(3, 3).0, [255, 255, 255]);

        let lossless = encode_sheet_png(&sheet, SheetEncoding::Lossless, [255; 3]).unwrap();
        assert_eq!(
            image::load_from_memory(&lossless.png).unwrap().into_rgb8(),
            sheet
        );

        // Few colours are stored exactly.
        let few = RgbImage::from_fn(16, 16, |x, _| image::Rgb([(x % 3) as u8 * 100, 7, 255]));
        let encoded = encode_sheet_png(&few, SheetEncoding::Palette, [255; 3]).unwrap();
        assert!(encoded.psnr_db.is_infinite());
        assert_eq!(
            image::load_from_memory(&encoded.png).unwrap().into_rgb8(),
            few
        );
    }
}
