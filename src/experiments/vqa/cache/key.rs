//! What determines the cache's contents ([`CacheKey`]), and the manifest that records it with
//! the shards already written.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::entry::{CacheConfig, CacheDtype};
use crate::error::{FedError, Result};
use crate::experiments::vqa::image::SampleImage;
use crate::experiments::vqa::sample::VqaSample;
use crate::federated::write_atomic;
use crate::models::Precision;
use crate::models::florence2::Florence2;
use crate::params::path::PathTracker;

/// The manifest's file name in the cache folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Version of the on-disk layout (a change rebuilds every cache).
const FORMAT: u32 = 1;

/// Everything the cached activations depend on. Two caches with equal keys hold the same
/// values; any difference rebuilds the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// Version of the on-disk layout.
    pub format: u32,
    /// sha256 (hex) of every frozen float parameter of the model (path, shape, values as
    /// f32): adapters are left out.
    pub weights: String,
    /// Precision the prefix runs in.
    pub precision: Precision,
    /// Precision of the stored activations (`f16` or `f32`).
    pub dtype: String,
    /// The image preprocessing (size, resampling, normalisation), or `preprocessed` for
    /// samples built from pixels.
    pub processor: String,
    /// sha256 (hex) over the samples in order: image digest, image size, prompt ids, answer
    /// ids.
    pub samples: String,
    /// Number of samples.
    pub num_samples: usize,
    /// Width of the hidden states.
    pub d_model: usize,
    /// Samples per shard.
    pub shard_samples: usize,
}

impl CacheKey {
    /// The key of a cache of `samples` computed with `model` (any adapters ignored) under
    /// `config`, in shards of `shard_samples`.
    ///
    /// # Errors
    /// [`crate::FedError::Io`] when a sample's stored token ids cannot be read.
    pub fn new<B: Backend>(
        model: &Florence2<B>,
        samples: &[VqaSample],
        config: &CacheConfig,
        shard_samples: usize,
    ) -> Result<Self> {
        Ok(Self {
            format: FORMAT,
            weights: weights_hash(model),
            precision: config.precision,
            dtype: match config.dtype {
                CacheDtype::F16 => "f16".into(),
                CacheDtype::F32 => "f32".into(),
            },
            processor: processor_fingerprint(samples),
            samples: samples_hash(samples)?,
            num_samples: samples.len(),
            d_model: model.language_model.d_model(),
            shard_samples,
        })
    }

    /// The first field in which `self` (what a run needs) differs from `found` (what is on
    /// disk), worded for the user; `None` when equal.
    pub fn mismatch(&self, found: &CacheKey) -> Option<String> {
        let fields: [(&str, String, String); 9] = [
            (
                "layout version",
                self.format.to_string(),
                found.format.to_string(),
            ),
            ("model weights", self.weights.clone(), found.weights.clone()),
            (
                "prefix precision",
                self.precision.to_string(),
                found.precision.to_string(),
            ),
            ("cache dtype", self.dtype.clone(), found.dtype.clone()),
            (
                "image processor",
                self.processor.clone(),
                found.processor.clone(),
            ),
            ("samples", self.samples.clone(), found.samples.clone()),
            (
                "sample count",
                self.num_samples.to_string(),
                found.num_samples.to_string(),
            ),
            (
                "d_model",
                self.d_model.to_string(),
                found.d_model.to_string(),
            ),
            (
                "shard size",
                self.shard_samples.to_string(),
                found.shard_samples.to_string(),
            ),
        ];
        fields
            .into_iter()
            .find(|(_, a, b)| a != b)
            .map(|(name, want, have)| {
                let short = |s: &str| s.chars().take(24).collect::<String>();
                format!(
                    "{name} changed (cache has {}, this run needs {})",
                    short(&have),
                    short(&want)
                )
            })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 (hex) of the float parameters of `model` that are not adapters.
pub fn weights_hash<B: Backend, M: Module<B>>(model: &M) -> String {
    struct Hasher {
        path: PathTracker,
        sha: Sha256,
    }
    impl<B: Backend> ModuleVisitor<B> for Hasher {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let path = self.path.path();
            if path.ends_with(".lora_a") || path.ends_with(".lora_b") {
                return;
            }
            let tensor = param.val();
            self.sha.update(path.as_bytes());
            for d in tensor.dims() {
                self.sha.update((d as u64).to_le_bytes());
            }
            let values = tensor
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .unwrap_or_default();
            for v in values {
                self.sha.update(v.to_le_bytes());
            }
        }
    }
    let mut hasher = Hasher {
        path: PathTracker::default(),
        sha: Sha256::new(),
    };
    model.visit(&mut hasher);
    hex(&hasher.sha.finalize())
}

fn processor_fingerprint(samples: &[VqaSample]) -> String {
    samples
        .iter()
        .find_map(|s| match &s.image {
            SampleImage::Encoded { preprocessor, .. } => Some(preprocessor.fingerprint()),
            _ => None,
        })
        .unwrap_or_else(|| "preprocessed".into())
}

fn samples_hash(samples: &[VqaSample]) -> Result<String> {
    let mut sha = Sha256::new();
    for s in samples {
        sha.update(s.image_digest);
        sha.update((s.image_size as u64).to_le_bytes());
        let tokens = s.token_ids()?;
        for ids in [&tokens.prompt, &tokens.answer] {
            sha.update((ids.len() as u64).to_le_bytes());
            for id in ids.iter() {
                sha.update(id.to_le_bytes());
            }
        }
    }
    Ok(hex(&sha.finalize()))
}

/// The cache folder's manifest: the key, and the shards already written with their bytes of
/// activations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub key: CacheKey,
    pub completed: BTreeMap<usize, u64>,
}

impl Manifest {
    /// The manifest in `dir`, `None` when there is none or it does not parse (a cache to
    /// rebuild).
    pub fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the manifest atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| FedError::Task(format!("cache manifest: {e}")))?;
        write_atomic(dir.join(MANIFEST_FILE), text.as_bytes())
    }
}
