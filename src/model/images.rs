//! Images ⇄ tensors, and images encoded into their granularity sequences plus the decoded
//! canvas of every stage (what `encode`, the editor's "open image" and the evaluations use).

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

use crate::data::RgbImageF;
use crate::granularity::{GranularitySequence, SequenceStage};
use crate::model::tokenizer::to_vec_f32;
use crate::model::{Tokenizer, TokenizerConfig};

/// Stacks images (CHW, [-1, 1]) into a `[B, 3, S, S]` tensor.
pub fn images_to_tensor(imgs: &[RgbImageF], device: &Device) -> Tensor<4> {
    let s = imgs.first().map(|i| i.size as usize).unwrap_or(0);
    let mut v = Vec::with_capacity(imgs.len() * 3 * s * s);
    for img in imgs {
        v.extend_from_slice(&img.data);
    }
    Tensor::from_data(TensorData::new(v, [imgs.len(), 3, s, s]), device)
}

/// Converts a `[B, 3, S, S]` tensor in [-1, 1] to 8-bit images.
pub fn tensor_to_images(t: Tensor<4>) -> Vec<RgbImage> {
    let [b, _, h, w] = t.dims();
    let v = to_vec_f32(t);
    (0..b)
        .map(|i| {
            let img = RgbImageF { size: h as u32, data: v[i * 3 * h * w..(i + 1) * 3 * h * w].to_vec() };
            debug_assert_eq!(h, w);
            crate::data::to_rgb8(&img).unwrap_or_else(|_| RgbImage::new(w as u32, h as u32))
        })
        .collect()
}

/// One image encoded: its sequence and the decoded canvas after every stage.
pub struct EncodedImage {
    /// Structure maps and codes per stage.
    pub sequence: GranularitySequence,
    /// `stage_images[i]`: decoded canvas after stages 0..=i.
    pub stage_images: Vec<RgbImage>,
}

/// Encodes images with the tokenizer and decodes the canvas after every stage.
pub fn encode_images(tok: &Tokenizer, cfg: &TokenizerConfig, imgs: &[RgbImageF], device: &Device) -> Vec<EncodedImage> {
    let x = images_to_tensor(imgs, device);
    let enc = tok.encode(x, cfg.phi_weight);
    let stages = cfg.num_stages();
    let mut per_stage: Vec<Vec<RgbImage>> = Vec::with_capacity(stages);
    for s in 0..stages {
        per_stage.push(tensor_to_images(tok.decode(enc.quantized.canvases[s + 1].clone())));
    }
    (0..imgs.len())
        .map(|b| {
            let stages_v = (0..stages)
                .map(|s| SequenceStage {
                    structure: enc.hierarchies[b].map(s).to_vec(),
                    codes: enc.quantized.codes[b][s].clone(),
                })
                .collect();
            EncodedImage {
                sequence: GranularitySequence::new(cfg.grid_side(), Some(cfg.codebook_size), stages_v),
                stage_images: per_stage.iter().map(|v| v[b].clone()).collect(),
            }
        })
        .collect()
}
