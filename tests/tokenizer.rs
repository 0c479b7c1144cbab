//! Tokenizer behaviour on the CPU backend with tiny models.

use burn::tensor::Device;
use nvg_studio::data::{ImageSource, SyntheticShapes};
use nvg_studio::model::checkpoint::CheckpointError;
use nvg_studio::model::tokenizer::to_vec_f32;
use nvg_studio::model::tokenizer_io::{load_tokenizer, save_tokenizer};
use nvg_studio::model::{Tokenizer, TokenizerConfig};
use nvg_studio::model::images::{encode_images, images_to_tensor};

fn images(n: usize, size: u32) -> Vec<nvg_studio::data::RgbImageF> {
    let src = SyntheticShapes::new(n, size, 7).unwrap();
    (0..n).map(|i| src.get(i).unwrap().0).collect()
}

#[test]
fn canvases_accumulate_phi_of_broadcast_codes() {
    let dev = Device::flex();
    dev.seed(1);
    let cfg = TokenizerConfig::test_tiny();
    let tok = Tokenizer::new(&cfg, &dev);
    let x = images_to_tensor(&images(3, cfg.image_size as u32), &dev);
    let enc = tok.encode(x, cfg.phi_weight);
    let s = cfg.num_stages();
    assert_eq!(enc.quantized.canvases.len(), s + 1);
    assert!(to_vec_f32(enc.quantized.canvases[0].clone()).iter().all(|&v| v == 0.0));
    for i in 0..s {
        // canvas[i+1] − canvas[i] must equal Φ_i(broadcast codes of stage i) alone.
        let diff = to_vec_f32(enc.quantized.canvases[i + 1].clone() - enc.quantized.canvases[i].clone());
        let upto_next = tok.canvas_from_codes(&enc.hierarchies, &enc.quantized.codes, i + 1, cfg.phi_weight);
        let upto_this = tok.canvas_from_codes(&enc.hierarchies, &enc.quantized.codes, i, cfg.phi_weight);
        let phi = to_vec_f32(upto_next - upto_this);
        let d = diff.iter().zip(&phi).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d < 1e-5, "stage {i}: canvas step differs from Φ_i(broadcast) by {d}");
        assert_eq!(enc.quantized.codes[0][i].len(), 1 << i, "one code per cluster at stage {i}");
    }
}

#[test]
fn encoding_is_deterministic() {
    let dev = Device::flex();
    let cfg = TokenizerConfig::test_tiny();
    dev.seed(3);
    let tok = Tokenizer::new(&cfg, &dev);
    let imgs = images(2, cfg.image_size as u32);
    let a = encode_images(&tok, &cfg, &imgs, &dev);
    let b = encode_images(&tok, &cfg, &imgs, &dev);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.sequence, y.sequence);
        assert_eq!(x.stage_images, y.stage_images);
        x.sequence.validate().unwrap();
    }
}

#[test]
fn checkpoint_of_another_config_names_the_field() {
    let dev = Device::flex();
    let cfg = TokenizerConfig::test_tiny();
    let tok = Tokenizer::new(&cfg, &dev);
    let dir = tempfile::tempdir().unwrap();
    save_tokenizer(dir.path(), &cfg, &tok, 0, serde_json::Value::Null).unwrap();
    let mut other = cfg.clone();
    other.codebook_size = 128;
    let err = load_tokenizer(dir.path(), Some(&other), &dev).unwrap_err();
    assert!(matches!(err, CheckpointError::ConfigMismatch { .. }));
    let msg = err.to_string();
    assert!(msg.contains("codebook_size") && msg.contains("64") && msg.contains("128"), "{msg}");
    // Loading without an expectation works and round-trips the weights.
    let (_, back) = load_tokenizer(dir.path(), None, &dev).unwrap();
    let a = to_vec_f32(tok.codebook());
    let b = to_vec_f32(back.codebook());
    assert_eq!(a, b);
}

#[test]
fn corrupted_checkpoints_give_errors_naming_the_file() {
    let dev = Device::flex();
    let cfg = TokenizerConfig::test_tiny();
    let tok = Tokenizer::new(&cfg, &dev);
    let dir = tempfile::tempdir().unwrap();
    save_tokenizer(dir.path(), &cfg, &tok, 0, serde_json::Value::Null).unwrap();
    // Truncated weights.
    let w = dir.path().join("model.bpk");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 3]).unwrap();
    let msg = load_tokenizer(dir.path(), None, &dev).unwrap_err().to_string();
    assert!(msg.contains("model.bpk"), "{msg}");
    // Garbage metadata.
    std::fs::write(dir.path().join("checkpoint.json"), "{not json").unwrap();
    let msg = load_tokenizer(dir.path(), None, &dev).unwrap_err().to_string();
    assert!(msg.contains("checkpoint.json") && msg.contains("corrupted"), "{msg}");
    // Missing directory.
    let msg = load_tokenizer(&dir.path().join("nope"), None, &dev).unwrap_err().to_string();
    assert!(msg.contains("nope") && msg.contains("not found"), "{msg}");
}
