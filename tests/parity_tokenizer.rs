//! Parity with the authors' tokenizer on the reference vectors (`official-tiny`, README §4):
//! label maps and codes exactly, canvases within 1e-4, decoded images within 2e-4.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use nvg_studio::data::load_rgb;
use nvg_studio::model::tokenizer::to_vec_f32;
use nvg_studio::model::tokenizer_io::{import_reference_pytorch, import_reference_safetensors};
use nvg_studio::model::{CodeSelection, Tokenizer, TokenizerConfig};

use common::{max_abs_diff, read_vectors, testvectors};

const B: usize = 4;
const L: usize = 256;
const C: usize = 32;

fn check_tokenizer(tok: &Tokenizer, v: &std::collections::HashMap<String, common::Vector>, dev: &Device, full: bool) {
    let cfg = TokenizerConfig::reference_tiny();
    let x_ref = &v["input_images"];
    let x = Tensor::<4>::from_data(TensorData::new(x_ref.f32.clone(), [B, 3, 64, 64]), dev);

    // Encoder output f, compared in BLC layout.
    let latent = tok.encode_latent(x.clone());
    let f = to_vec_f32(latent.clone());
    let f_ref = &v["tok.f"].f32; // [B, C, 16, 16]
    let mut f_ref_blc = vec![0f32; B * L * C];
    for b in 0..B {
        for c in 0..C {
            for p in 0..L {
                f_ref_blc[b * L * C + p * C + c] = f_ref[b * C * L + c * L + p];
            }
        }
    }
    let df = max_abs_diff(&f, &f_ref_blc);
    assert!(df <= 1e-4, "encoder output differs by {df}");
    if !full {
        return;
    }

    // Label maps: exact.
    let hier = Tokenizer::cluster(&latent);
    let labels = &v["tok.labels"].i64; // [B, 9, 256]
    for b in 0..B {
        for s in 0..9 {
            let ours: Vec<i64> = hier[b].map(s).iter().map(|&l| l as i64).collect();
            assert_eq!(ours, labels[(b * 9 + s) * L..(b * 9 + s + 1) * L], "labels differ at image {b} stage {s}");
        }
    }

    // Codes per position: exact. Canvases: within 1e-4.
    let q = tok.quantize(latent, &hier, cfg.phi_weight, CodeSelection::Hard);
    let codes = &v["tok.codes"].i64;
    for b in 0..B {
        for s in 0..9 {
            let ours: Vec<i64> = hier[b].map(s).iter().map(|&l| q.codes[b][s][l as usize] as i64).collect();
            assert_eq!(ours, codes[(b * 9 + s) * L..(b * 9 + s + 1) * L], "codes differ at image {b} stage {s}");
        }
    }
    let canvas_ref = &v["tok.canvas"].f32; // [B, 9, L, C]
    for s in 0..9 {
        let ours = to_vec_f32(q.canvases[s].clone());
        let mut r = Vec::with_capacity(B * L * C);
        for b in 0..B {
            r.extend_from_slice(&canvas_ref[(b * 9 + s) * L * C..(b * 9 + s + 1) * L * C]);
        }
        let d = max_abs_diff(&ours, &r);
        assert!(d <= 1e-4, "canvas input to stage {s} differs by {d}");
    }
    let fin = to_vec_f32(q.canvases[9].clone());
    let d = max_abs_diff(&fin, &v["tok.fhat_final"].f32);
    assert!(d <= 1e-4, "final canvas differs by {d}");

    // Decoding from indices gives the same final canvas.
    let rebuilt = to_vec_f32(tok.canvas_from_codes(&hier, &q.codes, 9, cfg.phi_weight));
    assert!(max_abs_diff(&rebuilt, &fin) <= 1e-5);

    // Decoded images: raw, clamped, and after every stage.
    let raw = to_vec_f32(tok.decode_raw(q.canvases[9].clone()));
    let d = max_abs_diff(&raw, &v["tok.decoded_raw"].f32);
    assert!(d <= 2e-4, "decoded_raw differs by {d}");
    let dec = to_vec_f32(tok.decode(q.canvases[9].clone()));
    let d = max_abs_diff(&dec, &v["tok.decoded"].f32);
    assert!(d <= 2e-4, "decoded differs by {d}");
    let stages_ref = &v["tok.decoded_stages"].f32; // [B, 9, 3, 64, 64]
    let n = 3 * 64 * 64;
    for s in 0..9 {
        let ours = to_vec_f32(tok.decode(q.canvases[s + 1].clone()));
        let mut r = Vec::with_capacity(B * n);
        for b in 0..B {
            r.extend_from_slice(&stages_ref[(b * 9 + s) * n..(b * 9 + s + 1) * n]);
        }
        let d = max_abs_diff(&ours, &r);
        assert!(d <= 2e-4, "decoded image after stage {s} differs by {d}");
    }
}

#[test]
fn reference_tokenizer_parity_safetensors() {
    let Some(dir) = testvectors() else { return };
    let dev = Device::flex();
    let v = read_vectors(&dir.join("tokenizer_vectors.safetensors"));
    // Inputs: the PNGs load bit for bit as the reference's float32(u8)/127.5 − 1.
    for i in 0..B {
        let img = load_rgb(&dir.join(format!("input_{i}.png")), 64, [255, 255, 255]).unwrap();
        assert_eq!(img.data, v["input_images"].f32[i * 3 * 64 * 64..(i + 1) * 3 * 64 * 64], "input_{i}.png");
    }
    let tok = import_reference_safetensors(&dir.join("tokenizer.safetensors"), &TokenizerConfig::reference_tiny(), &dev)
        .expect("reference weights load");
    check_tokenizer(&tok, &v, &dev, true);
}

#[test]
fn reference_tokenizer_parity_pytorch_checkpoint() {
    let Some(dir) = testvectors() else { return };
    let dev = Device::flex();
    let v = read_vectors(&dir.join("tokenizer_vectors.safetensors"));
    let tok = import_reference_pytorch(&dir.join("nvg_official_layout.ckpt"), &TokenizerConfig::reference_tiny(), &dev)
        .expect("reference checkpoint loads");
    check_tokenizer(&tok, &v, &dev, true);
}
