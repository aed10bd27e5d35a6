//! What the frozen-prefix cache holds: per-sample entries, the batches built from them, and
//! the forward pass that computes them.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::prelude::*;
use burn::tensor::TensorData;
use half::f16;

use crate::error::{FedError, Result};
use crate::experiments::vqa::sample::{VqaBatch, VqaSample};
use crate::models::Precision;
use crate::models::florence2::{Florence2, LANGUAGE_MODEL_PREFIX};
use crate::params::parameter_shapes;

/// Frozen-prefix forward passes run by this process (one per batch [`compute_entries`]
/// computes).
static FORWARD_PASSES: AtomicU64 = AtomicU64::new(0);

/// How many frozen-prefix forward passes (batches through the vision tower, the encoder and
/// the decoder's first layers) this process has run so far: a cache reused from disk runs
/// none.
pub fn prefix_forward_passes() -> u64 {
    FORWARD_PASSES.load(Ordering::Relaxed)
}

/// Precision of the cached activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheDtype {
    /// Half precision (2 bytes a value).
    #[default]
    F16,
    /// Single precision (4 bytes a value; the cached path then equals the uncached one up to
    /// float summation order).
    F32,
}

impl CacheDtype {
    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        match self {
            Self::F16 => 2,
            Self::F32 => 4,
        }
    }
}

/// How the cache is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Precision of the stored activations.
    pub dtype: CacheDtype,
    /// Precision the frozen prefix runs in (weights and activations) to compute them.
    pub precision: Precision,
    /// Most bytes of activations held in memory: in a memory cache, samples beyond it are
    /// recomputed when used; on disk every sample is cached and this bounds the entries read
    /// back and kept for reuse.
    pub budget_bytes: usize,
    /// Samples per forward pass while building (as many passes run at once as rayon has
    /// threads). On burn's CPU backend 1 is fastest (at 768 px a batch's activations outgrow
    /// the allocator's reuse and are faulted in page by page: on one thread 6.8 s a base-size
    /// sample at 1, 9.7 s at 16, BENCHMARKS.md); on a GPU larger is better.
    pub batch_size: usize,
    /// Run several batches at once on rayon's threads while building (only worth it, and only
    /// safe for memory, on a CPU backend: on a GPU one batch is in flight at a time).
    pub parallel: bool,
}

impl Default for CacheConfig {
    /// Stored in f16, computed in f32, 4 GiB, batches of 16, parallel batches.
    fn default() -> Self {
        Self {
            dtype: CacheDtype::F16,
            precision: Precision::F32,
            budget_bytes: 4 << 30,
            batch_size: 16,
            parallel: true,
        }
    }
}

/// Whether `B` computes on the CPU (burn's `Flex` or `NdArray` backends, or an autodiff
/// wrapper of one).
pub fn is_cpu_backend<B: Backend>(device: &B::Device) -> bool {
    let name = B::name(device).to_ascii_lowercase();
    name.contains("flex") || name.contains("ndarray") || name.contains("<cpu>")
}

impl CacheConfig {
    /// The defaults for backend `B`: on the CPU batches of 1 run in parallel on rayon's
    /// threads (burn's CPU kernels leave cores idle, and big batches cost more per sample in
    /// page faults, see BENCHMARKS.md); elsewhere one batch of 16 is in flight at a time.
    pub fn for_backend<B: Backend>(device: &B::Device) -> Self {
        let cpu = is_cpu_backend::<B>(device);
        Self {
            batch_size: if cpu { 1 } else { 16 },
            parallel: cpu,
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Values {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

impl Values {
    pub(super) fn new(values: Vec<f32>, dtype: CacheDtype) -> Self {
        match dtype {
            CacheDtype::F16 => Self::F16(values.into_iter().map(f16::from_f32).collect()),
            CacheDtype::F32 => Self::F32(values),
        }
    }

    fn extend_into(&self, out: &mut Vec<f32>) {
        match self {
            Self::F16(v) => out.extend(v.iter().map(|x| x.to_f32())),
            Self::F32(v) => out.extend_from_slice(v),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Self::F16(v) => v.len(),
            Self::F32(v) => v.len(),
        }
    }
}

/// The frozen inputs of the last decoder layer for one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixEntry {
    pub(super) encoder: Values,
    pub(super) prefix: Values,
    /// Encoder positions (image tokens then the prompt), unpadded.
    pub encoder_len: usize,
    /// Decoder positions (the answer's length), unpadded.
    pub decoder_len: usize,
}

impl PrefixEntry {
    /// Bytes of activations held.
    pub fn bytes(&self) -> usize {
        let per = match self.encoder {
            Values::F16(_) => 2,
            Values::F32(_) => 4,
        };
        per * (self.encoder.len() + self.prefix.len())
    }
}

/// The last decoder layer's inputs for a batch: padded encoder output `[N, S, d]`, its mask
/// `[N, S]` (`None` when nothing is padded) and the prefix output `[N, T, d]`.
#[derive(Debug, Clone)]
pub struct PrefixBatch<B: Backend> {
    /// Encoder output, zero at padded positions.
    pub encoder_hidden: Tensor<B, 3>,
    /// 1 keep, 0 padding.
    pub encoder_mask: Option<Tensor<B, 2, Int>>,
    /// Output of every decoder layer but the last, zero at padded positions.
    pub prefix_hidden: Tensor<B, 3>,
}

/// Refuses models whose adapters are not all in the last decoder layer: only then is
/// everything before that layer frozen and cacheable.
///
/// # Errors
/// [`FedError::UnsupportedLayer`] naming the first adapter outside the last decoder layer.
pub fn check_cacheable<B: Backend>(model: &Florence2<B>) -> Result<()> {
    let last = model.language_model.num_decoder_layers().saturating_sub(1);
    let allowed = format!("{LANGUAGE_MODEL_PREFIX}decoder.layers.{last}.");
    let outside = parameter_shapes(model).into_keys().find(|path| {
        (path.ends_with(".lora_a") || path.ends_with(".lora_b")) && !path.starts_with(&allowed)
    });
    match outside {
        Some(path) => Err(FedError::UnsupportedLayer(format!(
            "the frozen-prefix cache needs every adapter in the last decoder layer \
             (`{allowed}*`), but `{path}` is elsewhere"
        ))),
        None => Ok(()),
    }
}

/// Runs the frozen prefix of `model` on `samples` (one padded batch) and returns each
/// sample's unpadded activations.
pub fn compute_entries<B: Backend>(
    model: &Florence2<B>,
    samples: &[&VqaSample],
    dtype: CacheDtype,
    device: &B::Device,
) -> Result<Vec<PrefixEntry>> {
    let batch = VqaBatch::<B>::new(samples, device)?;
    FORWARD_PASSES.fetch_add(1, Ordering::Relaxed);
    let encoded = model.encode(batch.pixel_values, batch.input_ids, batch.attention_mask)?;
    let prefix = model.language_model.decode_prefix(
        batch.decoder_input_ids,
        encoded.hidden.clone(),
        encoded.mask,
        None,
    )?;
    let [_, s, d] = encoded.hidden.dims();
    let t = prefix.dims()[1];
    let image_tokens = s - batch_width(samples, |x| x.prompt_len());
    let encoder = to_f32(encoded.hidden)?;
    let prefix = to_f32(prefix)?;
    Ok(samples
        .iter()
        .enumerate()
        .map(|(i, sample)| {
            let encoder_len = image_tokens + sample.prompt_len();
            let decoder_len = sample.answer_len();
            let enc = encoder[i * s * d..(i * s + encoder_len) * d].to_vec();
            let pre = prefix[i * t * d..(i * t + decoder_len) * d].to_vec();
            PrefixEntry {
                encoder: Values::new(enc, dtype),
                prefix: Values::new(pre, dtype),
                encoder_len,
                decoder_len,
            }
        })
        .collect())
}

fn batch_width(samples: &[&VqaSample], len: impl Fn(&VqaSample) -> usize) -> usize {
    samples.iter().map(|s| len(s)).max().unwrap_or(0)
}

fn to_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| FedError::Task(format!("{e:?}")))
}

/// Pads entries into the last layer's input tensors.
pub fn stack_entries<B: Backend>(
    entries: &[&PrefixEntry],
    d_model: usize,
    device: &B::Device,
) -> Result<PrefixBatch<B>> {
    let n = entries.len();
    if n == 0 {
        return Err(FedError::config("batch", "is empty"));
    }
    let s = entries.iter().map(|e| e.encoder_len).max().unwrap_or(0);
    let t = entries.iter().map(|e| e.decoder_len).max().unwrap_or(0);
    let mut encoder = Vec::with_capacity(n * s * d_model);
    let mut prefix = Vec::with_capacity(n * t * d_model);
    let mut mask = Vec::with_capacity(n * s);
    for e in entries {
        e.encoder.extend_into(&mut encoder);
        encoder.resize(encoder.len() + (s - e.encoder_len) * d_model, 0.0);
        e.prefix.extend_into(&mut prefix);
        prefix.resize(prefix.len() + (t - e.decoder_len) * d_model, 0.0);
        mask.extend(std::iter::repeat_n(1i64, e.encoder_len));
        mask.extend(std::iter::repeat_n(0i64, s - e.encoder_len));
    }
    if encoder.len() != n * s * d_model || prefix.len() != n * t * d_model {
        return Err(FedError::Task(format!(
            "cached activations do not have width {d_model}"
        )));
    }
    let padded = entries.iter().any(|e| e.encoder_len < s);
    Ok(PrefixBatch {
        encoder_hidden: Tensor::from_data(TensorData::new(encoder, [n, s, d_model]), device),
        encoder_mask: padded.then(|| Tensor::from_data(TensorData::new(mask, [n, s]), device)),
        prefix_hidden: Tensor::from_data(TensorData::new(prefix, [n, t, d_model]), device),
    })
}
