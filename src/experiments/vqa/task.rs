//! The [`FederatedTask`] of visual question answering with Florence-2.

use std::any::Any;
use std::sync::{Arc, Mutex};

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::cache::{FrozenPrefixCache, PrefixBatch, compute_entries};
use super::loss::{masked_cross_entropy, score_tokens};
use super::sample::{VqaBatch, VqaSample, decoder_tensors};
use crate::error::{FedError, Result};
use crate::federated::cohort::CohortTrainer;
use crate::federated::{EvalBatch, FederatedTask, Split, dataset_rows};
use crate::models::florence2::{Florence2, GenerationConfig};
use crate::models::{Precision, cast_floats};

/// Which samples (indices into the task's sample list) each client trains and is scored on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VqaSplit {
    /// Per client, its training samples.
    pub train: Vec<Vec<usize>>,
    /// Per client, its own test samples.
    pub test: Vec<Vec<usize>>,
    /// Samples every client is also scored on (may be empty).
    pub global_test: Vec<usize>,
}

impl VqaSplit {
    /// Checks that train and test name the same number of clients (at least one) and every
    /// index is below `len`.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] naming the problem.
    pub fn validate(&self, len: usize) -> Result<()> {
        if self.train.is_empty() || self.train.len() != self.test.len() {
            return Err(FedError::config(
                "split",
                format!(
                    "{} training and {} test lists (one each per client, at least one client)",
                    self.train.len(),
                    self.test.len()
                ),
            ));
        }
        let all = self.train.iter().chain(&self.test).flatten();
        if let Some(&i) = all.chain(&self.global_test).find(|&&i| i >= len) {
            return Err(FedError::config(
                "split",
                format!("names sample {i}, there are {len}"),
            ));
        }
        Ok(())
    }
}

/// Florence-2 clients answering questions about images: the loss is the teacher-forced
/// cross-entropy over answer tokens ([`masked_cross_entropy`]), the scores teacher-forced token
/// accuracy and macro precision/recall/F1 over answer tokens, the leading `<s>` left out, plus
/// the loss ([`score_tokens`]). Generated answers are scored by
/// [`crate::experiments::rlaif::answers`].
///
/// With a [`FrozenPrefixCache`] (adapters in the last decoder layer only) every batch runs only
/// the last decoder layer and the head; without one, the whole model.
#[derive(Debug, Clone)]
pub struct VqaTask<B: Backend> {
    samples: Arc<Vec<VqaSample>>,
    split: VqaSplit,
    vocab_size: usize,
    cache: Option<Arc<FrozenPrefixCache>>,
    /// The frozen prefix cast to the cache's precision, made once (the first time a sample
    /// beyond a memory cache's budget is recomputed) and shared by clones of the task: the
    /// prefix has no adapter, so any client's copy serves.
    prefix: Arc<Mutex<Option<Box<dyn Any + Send>>>>,
    device: B::Device,
}

impl<B: Backend> VqaTask<B> {
    /// A task over `samples` split among clients by `split`; `vocab_size` is the model's
    /// (the number of classes of the token metrics).
    ///
    /// # Errors
    /// As [`VqaSplit::validate`], and [`FedError::InvalidConfig`] for a zero `vocab_size`.
    pub fn new(
        samples: Arc<Vec<VqaSample>>,
        split: VqaSplit,
        vocab_size: usize,
        device: &B::Device,
    ) -> Result<Self> {
        split.validate(samples.len())?;
        if vocab_size == 0 {
            return Err(FedError::config("vocab_size", "must be at least 1"));
        }
        Ok(Self {
            samples,
            split,
            vocab_size,
            cache: None,
            prefix: Arc::default(),
            device: device.clone(),
        })
    }

    /// Trains and scores from `cache` (built from any client's model over these samples;
    /// samples it does not hold are recomputed).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] when the cache was built over another number of samples.
    pub fn with_cache(mut self, cache: Arc<FrozenPrefixCache>) -> Result<Self> {
        if cache.num_samples() != self.samples.len() {
            return Err(FedError::config(
                "cache",
                format!(
                    "was built over {} samples, the task has {}",
                    cache.num_samples(),
                    self.samples.len()
                ),
            ));
        }
        self.cache = Some(cache);
        self.prefix = Arc::default();
        Ok(self)
    }

    /// The samples.
    pub fn samples(&self) -> &[VqaSample] {
        &self.samples
    }

    /// The clients' split.
    pub fn split(&self) -> &VqaSplit {
        &self.split
    }

    /// The cache, if any.
    pub fn cache(&self) -> Option<&FrozenPrefixCache> {
        self.cache.as_deref()
    }

    /// Sample indices of examples `batch` of `client`'s `split`.
    ///
    /// # Errors
    /// [`FedError::Task`] for an unknown client or example.
    pub fn rows(&self, client: usize, split: Split, batch: &[usize]) -> Result<Vec<usize>> {
        let split_rows = (
            self.split.train.as_slice(),
            self.split.test.as_slice(),
            self.split.global_test.as_slice(),
        );
        dataset_rows(split_rows, client, split, batch)
    }

    /// Generates answers (see [`GenerationConfig`]) for examples `batch` of `client`'s
    /// `split` with `model` (any backend; the inner module of a trained client model): one
    /// row of ids per example, starting with the decoder start token, as transformers
    /// returns them. Prompts of different lengths are padded and masked.
    ///
    /// # Errors
    /// As [`VqaTask::rows`], and the model's errors.
    pub fn generate<M: Backend<Device = B::Device>>(
        &self,
        model: &Florence2<M>,
        client: usize,
        split: Split,
        batch: &[usize],
        config: &GenerationConfig,
    ) -> Result<Vec<Vec<u32>>> {
        let rows = self.rows(client, split, batch)?;
        let batch = VqaBatch::<M>::new(&self.picked(&rows), &self.device)?;
        model.generate_masked(
            batch.pixel_values,
            batch.input_ids,
            batch.attention_mask,
            config,
        )
    }

    /// The frozen prefix in `precision`: cast once, then reused.
    fn cast_prefix<P: Backend>(
        &self,
        frozen: impl FnOnce() -> Florence2<P>,
        precision: Precision,
    ) -> Florence2<P> {
        let mut slot = self.prefix.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(model) = slot.as_ref().and_then(|m| m.downcast_ref::<Florence2<P>>()) {
            return model.clone();
        }
        let model = cast_floats(frozen(), precision);
        *slot = Some(Box::new(model.clone()));
        model
    }

    fn picked(&self, rows: &[usize]) -> Vec<&VqaSample> {
        rows.iter().map(|&r| &self.samples[r]).collect()
    }

    /// The last decoder layer's inputs for samples `rows` from `cache` (rows it lacks computed
    /// with `frozen`) and their labels `[N, T]`: what the cached training step takes.
    pub(super) fn cached_inputs<M: Backend<Device = B::Device>, P: Backend<Device = B::Device>>(
        &self,
        cache: &FrozenPrefixCache,
        frozen: impl FnOnce() -> Florence2<P>,
        rows: &[usize],
    ) -> Result<(PrefixBatch<M>, Tensor<M, 2, Int>)> {
        let device = &self.device;
        let missing = cache.missing(rows);
        let fresh = if missing.is_empty() {
            Vec::new()
        } else {
            let frozen = self.cast_prefix(frozen, cache.precision());
            compute_entries(&frozen, &self.picked(&missing), cache.dtype(), device)?
        };
        let batch = cache.stack::<M>(rows, &fresh, device)?;
        let (_, labels) = decoder_tensors::<M>(&self.picked(rows), device)?;
        Ok((batch, labels))
    }

    /// Teacher-forced logits `[N, T, vocab]` and labels `[N, T]` of samples `rows` under
    /// `model`; `frozen` is a model without autodiff that computes the prefix of rows the
    /// cache lacks.
    fn logits<M: Backend<Device = B::Device>, P: Backend<Device = B::Device>>(
        &self,
        model: &Florence2<M>,
        frozen: impl FnOnce() -> Florence2<P>,
        rows: &[usize],
    ) -> Result<(Tensor<M, 3>, Tensor<M, 2, Int>)> {
        let device = &self.device;
        let samples = self.picked(rows);
        match &self.cache {
            Some(cache) => {
                let (batch, labels) = self.cached_inputs(cache, frozen, rows)?;
                let PrefixBatch {
                    encoder_hidden,
                    encoder_mask,
                    prefix_hidden,
                } = batch;
                let logits = model.language_model.decode_last_layer(
                    prefix_hidden,
                    encoder_hidden,
                    encoder_mask,
                    None,
                )?;
                Ok((logits, labels))
            }
            None => {
                let batch = VqaBatch::<M>::new(&samples, device)?;
                let logits = model.forward_masked(
                    batch.pixel_values,
                    batch.input_ids,
                    batch.attention_mask,
                    batch.decoder_input_ids,
                )?;
                Ok((logits, batch.labels))
            }
        }
    }
}

impl<B: AutodiffBackend> FederatedTask<B> for VqaTask<B> {
    type Model = Florence2<B>;

    fn num_clients(&self) -> usize {
        self.split.train.len()
    }

    fn num_classes(&self) -> usize {
        self.vocab_size
    }

    fn num_examples(&self, client: usize, split: Split) -> usize {
        match split {
            Split::Train => self.split.train.get(client).map_or(0, Vec::len),
            Split::Test => self.split.test.get(client).map_or(0, Vec::len),
            Split::GlobalTest => self.split.global_test.len(),
        }
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn loss(&self, model: &Self::Model, client: usize, batch: &[usize]) -> Result<Tensor<B, 1>> {
        let rows = self.rows(client, Split::Train, batch)?;
        let (logits, labels) = self.logits(model, || model.valid(), &rows)?;
        masked_cross_entropy(logits, labels)
    }

    /// The batch's answer tokens: [`masked_cross_entropy`] averages over them.
    fn loss_weight(&self, client: usize, batch: &[usize]) -> Result<f64> {
        let rows = self.rows(client, Split::Train, batch)?;
        Ok(self
            .picked(&rows)
            .iter()
            .map(|s| s.answer_len() as f64)
            .sum())
    }

    /// Cohort-batched training of the last decoder layer when training runs from the cache.
    fn cohort(&self) -> Option<&dyn CohortTrainer<B, Self::Model>> {
        self.cache
            .is_some()
            .then_some(self as &dyn CohortTrainer<B, Self::Model>)
    }

    fn evaluate(
        &self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
        client: usize,
        split: Split,
        batch: &[usize],
    ) -> Result<EvalBatch> {
        let rows = self.rows(client, split, batch)?;
        let (logits, labels) = self.logits(model, || model.clone(), &rows)?;
        score_tokens(logits, labels)
    }
}
