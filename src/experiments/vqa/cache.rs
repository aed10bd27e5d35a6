//! The frozen-prefix cache.
//!
//! With adapters only in the last decoder layer, the vision tower, the projector, the encoder
//! and every earlier decoder layer are frozen, and teacher forcing fixes the decoder's inputs:
//! the last layer's inputs (the encoder output, its mask, and the hidden states after the
//! earlier decoder layers) never change during training. The cache computes them once per
//! sample and training runs only [`crate::models::florence2::BartModel::decode_last_layer`]
//! (adapter dropout and the last layer's own dropouts still apply; only frozen parts are
//! cached).
//!
//! * Storage: per sample, the unpadded encoder output `[S_i, d]` and prefix output `[T_i, d]`,
//!   in f16 ([`CacheDtype::F16`], the default, half the memory; rounding moves the loss by
//!   about 1e-3 relative) or f32 ([`CacheDtype::F32`], exact).
//! * Budget: samples are cached in the order given until [`CacheConfig::budget_bytes`] is
//!   reached; the rest are **recomputed** on every use from their images (no disk spill), so
//!   a budget too small costs time, never correctness.
//! * The frozen prefix runs without dropout and without the vision tower's drop-path (as at
//!   evaluation): with a checkpoint whose `dropout` or `drop_path_rate` is non-zero (Microsoft's
//!   base: 0.1 and 0.1), cached training differs from uncached training by exactly the noise
//!   the frozen layers would have added (transformers adds it, frozen or not; so does this
//!   crate without the cache). The tiny test model uses 0.
//! * Precision of the computation ([`CacheConfig::precision`]): the frozen prefix can run in
//!   f16 or bf16 ([`crate::models::cast_floats`] on a copy of the model), both when the cache
//!   is built and when a sample beyond the budget is recomputed, while the last layer and its
//!   adapters train in f32. On a GPU this halves the prefix's memory traffic and uses its half
//!   precision units; on the CPU it is slower than f32 (burn's CPU kernels convert).
//! * Every client shares the frozen weights, so one cache (built from any client's model)
//!   serves them all.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::TensorData;
use half::f16;
use rayon::prelude::*;

use super::sample::{VqaBatch, VqaSample};
use crate::error::{FedError, Result};
use crate::models::florence2::{Florence2, LANGUAGE_MODEL_PREFIX};
use crate::models::{Precision, cast_floats};
use crate::params::parameter_shapes;

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
    /// Most bytes of activations held; samples beyond it are recomputed when used.
    pub budget_bytes: usize,
    /// Samples per forward pass while building (as many passes run at once as rayon has
    /// threads). On burn's CPU backend 1 is fastest (at 768 px a batch's activations outgrow
    /// the allocator's reuse and are faulted in page by page: on one thread 6.8 s a base-size
    /// sample at 1, 9.7 s at 16, BENCHMARKS.md); on a GPU larger is better.
    pub batch_size: usize,
}

impl Default for CacheConfig {
    /// Stored in f16, computed in f32, 4 GiB, batches of 16.
    fn default() -> Self {
        Self {
            dtype: CacheDtype::F16,
            precision: Precision::F32,
            budget_bytes: 4 << 30,
            batch_size: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Values {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

impl Values {
    fn new(values: Vec<f32>, dtype: CacheDtype) -> Self {
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

    fn len(&self) -> usize {
        match self {
            Self::F16(v) => v.len(),
            Self::F32(v) => v.len(),
        }
    }
}

/// The frozen inputs of the last decoder layer for one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixEntry {
    encoder: Values,
    prefix: Values,
    /// Encoder positions (image tokens then the prompt), unpadded.
    pub encoder_len: usize,
    /// Decoder positions (the answer's length), unpadded.
    pub decoder_len: usize,
}

impl PrefixEntry {
    fn bytes(&self) -> usize {
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
    let encoded = model.encode(batch.pixel_values, batch.input_ids, batch.attention_mask)?;
    let prefix = model.language_model.decode_prefix(
        batch.decoder_input_ids,
        encoded.hidden.clone(),
        encoded.mask,
        None,
    )?;
    let [_, s, d] = encoded.hidden.dims();
    let t = prefix.dims()[1];
    let image_tokens = s - batch_width(samples, |x| x.prompt_ids.len());
    let encoder = to_f32(encoded.hidden)?;
    let prefix = to_f32(prefix)?;
    Ok(samples
        .iter()
        .enumerate()
        .map(|(i, sample)| {
            let encoder_len = image_tokens + sample.prompt_ids.len();
            let decoder_len = sample.answer_ids.len();
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

/// The frozen prefix's outputs for the samples of a dataset (indexed like it), as many as the
/// budget holds.
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenPrefixCache {
    dtype: CacheDtype,
    precision: Precision,
    d_model: usize,
    entries: Vec<Option<PrefixEntry>>,
    bytes: usize,
}

impl FrozenPrefixCache {
    /// Runs the frozen prefix of `model` over `samples[i]` for every `i` in `indices` (in
    /// that order, until the budget is full). `model` may be any client's model (on any
    /// backend: pass the inner module of an autodiff model to avoid recording a graph).
    ///
    /// # Errors
    /// As [`check_cacheable`], [`FedError::InvalidConfig`] for an index out of range or a
    /// batch size of 0, and the model's errors.
    pub fn build<B: Backend>(
        model: &Florence2<B>,
        samples: &[VqaSample],
        indices: &[usize],
        config: &CacheConfig,
        device: &B::Device,
    ) -> Result<Self> {
        check_cacheable(model)?;
        if config.batch_size == 0 {
            return Err(FedError::config("batch_size", "must be at least 1"));
        }
        let mut cache = Self {
            dtype: config.dtype,
            precision: config.precision,
            d_model: model.language_model.d_model(),
            entries: vec![None; samples.len()],
            bytes: 0,
        };
        let mut todo: Vec<usize> = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= samples.len() {
                return Err(FedError::config(
                    "indices",
                    format!("sample {i} of {}", samples.len()),
                ));
            }
            if !todo.contains(&i) {
                todo.push(i);
            }
        }
        let prefix = cast_floats(model.clone(), config.precision);
        // Batches run a few at a time on rayon's threads (the CPU backend leaves cores idle in
        // its single-threaded element-wise operations); entries are kept in order until the
        // budget is full, so the result does not depend on the thread count.
        let chunks: Vec<&[usize]> = todo.chunks(config.batch_size).collect();
        let parallel = rayon::current_num_threads().max(1);
        'outer: for group in chunks.chunks(parallel) {
            let computed = group
                .par_iter()
                .map(|chunk| {
                    let batch: Vec<&VqaSample> = chunk.iter().map(|&i| &samples[i]).collect();
                    compute_entries(&prefix, &batch, config.dtype, device)
                })
                .collect::<Vec<_>>();
            for (chunk, entries) in group.iter().zip(computed) {
                for (&i, entry) in chunk.iter().zip(entries?) {
                    if cache.bytes + entry.bytes() > config.budget_bytes {
                        break 'outer;
                    }
                    cache.bytes += entry.bytes();
                    cache.entries[i] = Some(entry);
                }
            }
        }
        Ok(cache)
    }

    /// [`FrozenPrefixCache::build`] from an autodiff model's inner module.
    ///
    /// # Errors
    /// As [`FrozenPrefixCache::build`].
    pub fn build_from<B: burn::tensor::backend::AutodiffBackend>(
        model: &Florence2<B>,
        samples: &[VqaSample],
        indices: &[usize],
        config: &CacheConfig,
        device: &B::Device,
    ) -> Result<Self> {
        Self::build(&model.valid(), samples, indices, config, device)
    }

    /// The stored precision.
    pub fn dtype(&self) -> CacheDtype {
        self.dtype
    }

    /// The precision the prefix was computed in (recompute missing samples in it too).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Width of the cached hidden states.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// The entry of sample `i`, if cached.
    pub fn get(&self, i: usize) -> Option<&PrefixEntry> {
        self.entries.get(i).and_then(Option::as_ref)
    }

    /// Length of the sample list the cache was built over (cached or not).
    pub fn num_samples(&self) -> usize {
        self.entries.len()
    }

    /// Number of cached samples.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.is_some()).count()
    }

    /// Whether no sample is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of activations held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The rows of `rows` that are not cached (to compute with [`compute_entries`], on a
    /// model without autodiff cast to [`FrozenPrefixCache::precision`], before
    /// [`FrozenPrefixCache::stack`]).
    pub fn missing(&self, rows: &[usize]) -> Vec<usize> {
        rows.iter()
            .copied()
            .filter(|&i| self.get(i).is_none())
            .collect()
    }

    /// The last layer's inputs for the samples `rows`: cached entries, and for the rows
    /// [`FrozenPrefixCache::missing`] returns, `fresh` in that order.
    ///
    /// # Errors
    /// [`FedError::Task`] when `fresh` does not cover the missing rows, and
    /// [`FedError::InvalidConfig`] for an empty batch.
    pub fn stack<B: Backend>(
        &self,
        rows: &[usize],
        fresh: &[PrefixEntry],
        device: &B::Device,
    ) -> Result<PrefixBatch<B>> {
        let mut fresh = fresh.iter();
        let entries = rows
            .iter()
            .map(|&i| {
                self.get(i).or_else(|| fresh.next()).ok_or_else(|| {
                    FedError::Task(format!("sample {i} is neither cached nor computed"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        stack_entries(&entries, self.d_model, device)
    }
}
