//! A "wide" copy of the tiny Florence-2 checkpoint (`tests/fixtures/florence2/tiny_native`,
//! vocab 96) that holds the text fixtures' tokenizer (`tests/fixtures/florence2_text/
//! tokenizer.json`: 701 BPE tokens + 1024 Florence-2 tokens): its `shared` embedding table
//! gets rows 96..1724 (deterministic values; rows 0..95 unchanged), `config.json` says vocab
//! 1725, and a 64x64 `preprocessor_config.json` goes with it. Same builder as
//! `tests/florence2_pretrained.rs`.

use std::path::{Path, PathBuf};

use fedvlm::models::florence2::hub::HubOptions;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use tempfile::TempDir;

/// The tokenizer's size with Florence-2's tokens: 701 + 1024.
pub const WIDE_VOCAB: usize = 1725;
/// The tiny model's image size (its position tables hold a 2x2 grid at most).
pub const WIDE_IMAGE_SIZE: usize = 64;
const SHARED: &str = "model.language_model.shared.weight";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("{} -> {}: {e}", from.display(), to.display()));
}

/// Options that never look at the environment: offline, with the cache in `cache`.
pub fn offline_options(cache: &Path) -> HubOptions {
    HubOptions {
        offline: true,
        cache_dir: cache.to_path_buf(),
        ..HubOptions::from_vars(|_| None)
    }
}

/// Deterministic values in [-1, 1) (a 64-bit LCG).
fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The tiny checkpoint as it is (vocab 96) with the text fixtures' tokenizer (1725 tokens: a
/// mismatch) and a 64x64 preprocessor config.
pub fn tiny_florence2_folder() -> TempDir {
    let tiny = fixtures().join("florence2/tiny_native");
    let dir = TempDir::new().expect("tempdir");
    for file in ["config.json", "model.safetensors"] {
        copy(&tiny.join(file), &dir.path().join(file));
    }
    copy(
        &fixtures().join("florence2_text/tokenizer.json"),
        &dir.path().join("tokenizer.json"),
    );
    let json = format!(
        r#"{{"size": {{"height": {WIDE_IMAGE_SIZE}, "width": {WIDE_IMAGE_SIZE}}}, "resample": 3,
            "do_resize": true, "do_rescale": true, "rescale_factor": 0.00392156862745098,
            "do_normalize": true, "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225]}}"#
    );
    std::fs::write(dir.path().join("preprocessor_config.json"), json)
        .expect("write preprocessor config");
    dir
}

/// The wide checkpoint folder: [`tiny_florence2_folder`] with `shared` grown to
/// [`WIDE_VOCAB`] rows and `config.json` saying so.
pub fn wide_florence2_folder() -> TempDir {
    let tiny = fixtures().join("florence2/tiny_native");
    let dir = tiny_florence2_folder();
    let bytes = std::fs::read(tiny.join("model.safetensors")).expect("tiny weights");
    let tensors = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in tensors.tensors() {
        let mut shape = view.shape().to_vec();
        let mut data = view.data().to_vec();
        if name == SHARED {
            assert_eq!(view.dtype(), Dtype::F32);
            let extra = (WIDE_VOCAB - shape[0]) * shape[1];
            for v in pseudo_random(extra, 7) {
                data.extend_from_slice(&v.to_le_bytes());
            }
            shape[0] = WIDE_VOCAB;
        }
        owned.push((name, view.dtype(), shape, data));
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(name, dtype, shape, data)| {
            let view = TensorView::new(*dtype, shape.clone(), data).expect("tensor view");
            (name.clone(), view)
        })
        .collect();
    let out = safetensors::serialize(views, None).expect("serialize");
    std::fs::write(dir.path().join("model.safetensors"), out).expect("write weights");

    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).expect("config"))
            .expect("json");
    config["text_config"]["vocab_size"] = WIDE_VOCAB.into();
    std::fs::write(&config_path, config.to_string()).expect("write config");
    dir
}
