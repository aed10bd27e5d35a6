//! Fixture readers shared by the integration tests (MobileNetV3, Florence-2).
#![allow(dead_code)]

pub mod backend;
pub mod florence2_wide;
pub mod mutate;
pub mod okvqa_parquet;
pub mod rlaif_shards;
pub mod vqa_samples;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::TensorData;
use fedvlm::models::florence2::hub::HubOptions;
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

/// The repository root: `FEDVLM_REPO_ROOT` when set (test binaries built on one machine and
/// run from another checkout, as `scripts/gpu_check.sh` does), else the crate's own folder.
pub fn repo_root() -> PathBuf {
    match std::env::var_os("FEDVLM_REPO_ROOT") {
        Some(root) if !root.is_empty() => PathBuf::from(root),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    }
}

/// `tests/fixtures/florence2/` (made by `scripts/generate_florence2_reference.py`).
pub fn florence2_fixtures() -> PathBuf {
    repo_root().join("tests/fixtures/florence2")
}

/// The tensors of one safetensors file, read once.
pub struct TensorFile {
    bytes: Vec<u8>,
    name: String,
}

impl TensorFile {
    /// Reads `path`.
    pub fn open(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self {
            bytes,
            name: path.display().to_string(),
        }
    }

    fn view(&self, name: &str, dtype: Dtype) -> (Vec<u8>, Vec<usize>) {
        let tensors = SafeTensors::deserialize(&self.bytes).expect("valid safetensors");
        let view = tensors
            .tensor(name)
            .unwrap_or_else(|e| panic!("{name} in {}: {e}", self.name));
        assert_eq!(view.dtype(), dtype, "{name}");
        (view.data().to_vec(), view.shape().to_vec())
    }

    /// An f32 tensor.
    pub fn float<B: Backend, const D: usize>(
        &self,
        name: &str,
        device: &B::Device,
    ) -> Tensor<B, D> {
        let (bytes, shape) = self.view(name, Dtype::F32);
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// An i64 tensor's values and shape.
    pub fn ints(&self, name: &str) -> (Vec<i64>, Vec<usize>) {
        let (bytes, shape) = self.view(name, Dtype::I64);
        let values = bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        (values, shape)
    }

    /// An i64 tensor.
    pub fn int<B: Backend, const D: usize>(
        &self,
        name: &str,
        device: &B::Device,
    ) -> Tensor<B, D, Int> {
        let (values, shape) = self.ints(name);
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// A 2-D i64 tensor as rows of token ids.
    pub fn id_rows(&self, name: &str) -> Vec<Vec<u32>> {
        let (values, shape) = self.ints(name);
        values
            .chunks(shape[1])
            .map(|row| row.iter().map(|&v| u32::try_from(v).expect("id")).collect())
            .collect()
    }
}

/// Largest absolute difference of two tensors of the same shape.
pub fn max_abs_diff<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).abs().max().into_scalar().elem()
}

/// Hub options that read only the cache folder `cache` (no network, no progress bar).
pub fn offline_hub(cache: &Path) -> HubOptions {
    HubOptions {
        offline: true,
        cache_dir: cache.to_path_buf(),
        revision: "main".into(),
        endpoint: None,
        token: None,
        progress: false,
    }
}
