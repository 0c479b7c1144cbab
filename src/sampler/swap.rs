//! Structure transfer and pose-preserving class swap (method §5.4): encode a reference, force its
//! structure maps for stages 1..=m (and optionally its codes for stages 0..=k), sample content
//! under another class. Also shape guidance: a binary layout as the stage-1 map (§5.4.3, §10.3).

use std::path::Path;

use image::{GrayImage, RgbImage};

use crate::granularity::GranularitySequence;
use crate::model::images::tensor_to_images;
use crate::sampler::Bundle;
use crate::sampler::{ImageJob, SampleError, SamplerSettings};

/// What a swap keeps from the reference.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Keep {
    /// Structure maps of stages 1..=m are forced (0 = none).
    pub structure_upto: usize,
    /// Codes (and maps) of stages 0..=k are forced (`None` = none).
    pub content_upto: Option<usize>,
}

/// A generated result with the decoded canvas after every stage.
pub struct Rendered {
    /// The sequence.
    pub sequence: GranularitySequence,
    /// Decoded canvas after each stage.
    pub stages: Vec<RgbImage>,
}

/// Errors of a swap.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// A value given by the user does not fit.
    #[error("{0}")]
    Invalid(String),
    /// Sampling failed.
    #[error(transparent)]
    Sample(#[from] SampleError),
}

/// Builds the job that keeps `keep` of `reference` and generates `class` with `seed`.
pub fn swap_job(reference: &GranularitySequence, keep: &Keep, class: usize, seed: u64) -> Result<ImageJob, SwapError> {
    let s_count = reference.stages.len();
    if keep.structure_upto >= s_count {
        return Err(SwapError::Invalid(format!(
            "--keep-structure 1..{}: the model has stages 0..{}, so at most 1..{} can be kept",
            keep.structure_upto,
            s_count - 1,
            s_count - 1
        )));
    }
    if let Some(k) = keep.content_upto.filter(|&k| k >= s_count) {
        return Err(SwapError::Invalid(format!("--keep-content 0..{k}: the model has stages 0..{}", s_count - 1)));
    }
    let mut job = ImageJob::new(class, seed);
    job.keep_from(reference, keep.structure_upto, keep.content_upto.map(|k| 0..=k), 0);
    Ok(job)
}

/// Runs one job and decodes every stage.
pub fn render(bundle: &Bundle, job: ImageJob, settings: &SamplerSettings) -> Result<Rendered, SwapError> {
    let mut stages = Vec::new();
    let out = bundle.sample(&[job], settings, &mut |d| {
        stages.push(tensor_to_images(bundle.tokenizer.decode(d.canvas.clone())).remove(0));
        true
    }, &|| false)?;
    Ok(Rendered { sequence: out.sequences.into_iter().next().expect("one image"), stages })
}

/// Reads a binary layout mask and turns it into a stage-1 structure map of a `side × side` grid:
/// white = child 1, black = child 0. The mask is either `side × side` or `image_size ×
/// image_size` (each latent cell then takes the majority of its pixels). Any pixel that is not
/// pure black or pure white makes it "not binary".
pub fn layout_from_mask(path: &Path, side: usize, image_size: usize) -> Result<Vec<u32>, SwapError> {
    // The format is read from the file's bytes, not its extension (a PNG named .jpg still opens).
    let img = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| SwapError::Invalid(format!("mask {}: cannot read ({e})", path.display())))?
        .decode()
        .map_err(|e| SwapError::Invalid(format!("mask {}: cannot read ({})", path.display(), crate::granularity::text::one_line(&e.to_string()))))?;
    let gray: GrayImage = img.to_luma8();
    let (w, h) = gray.dimensions();
    if let Some((x, y, p)) = gray.enumerate_pixels().find(|(_, _, p)| p.0[0] != 0 && p.0[0] != 255) {
        return Err(SwapError::Invalid(format!(
            "mask {}: not binary (pixel ({x}, {y}) has grey level {}; use only black 0 and white 255)",
            path.display(),
            p.0[0]
        )));
    }
    let cell = if w as usize == side && h as usize == side {
        1
    } else if w as usize == image_size && h as usize == image_size {
        image_size / side
    } else {
        return Err(SwapError::Invalid(format!(
            "mask {}: is {w}×{h}; expected {side}×{side} (the latent grid) or {image_size}×{image_size} (the image size)",
            path.display()
        )));
    };
    let mut map = Vec::with_capacity(side * side);
    for r in 0..side {
        for c in 0..side {
            let mut white = 0;
            for y in 0..cell {
                for x in 0..cell {
                    white += usize::from(gray.get_pixel((c * cell + x) as u32, (r * cell + y) as u32).0[0] == 255);
                }
            }
            map.push(u32::from(2 * white > cell * cell));
        }
    }
    Ok(map)
}

