//! The [`FederatedTask`] of the CIFAR-10 experiment.

use std::sync::{Arc, OnceLock};

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;
use rand::{SeedableRng, rngs::ChaCha8Rng};

use super::cache::PrefixCache;
use super::clients::ClientSplit;
use super::host_cohort::CohortKernel;
use super::host_eval::score;
use crate::data::{Cifar10, ImageTransform, to_tensor_batch};
use crate::error::{FedError, Result};
use crate::federated::{CohortTrainer, EvalBatch, FederatedTask, Split, dataset_rows};
use crate::models::MobileNetV3;
use crate::models::mobilenet_v3::Dense;
use crate::seed::mix_seed;

/// Where a batch's inputs come from.
#[derive(Debug, Clone)]
enum Inputs {
    /// Cached features and frozen products; only the classifier runs.
    Cached(Arc<PrefixCache>),
    /// Images through the whole network (with optional augmentation).
    Images {
        transform: ImageTransform,
        augment: bool,
    },
}

/// CIFAR-10 clients for a [`MobileNetV3`] with adapters.
#[derive(Debug, Clone)]
pub struct CifarTask<B: Backend> {
    data: Arc<Cifar10>,
    split: ClientSplit,
    train_labels: Vec<usize>,
    test_labels: Vec<usize>,
    inputs: Inputs,
    seed: u64,
    device: B::Device,
    /// The cached training rows (features, frozen products) on the device, uploaded when a
    /// cohort first trains.
    device_rows: Arc<OnceLock<(Tensor<B, 2>, Tensor<B, 2>)>>,
    /// Which code trains cohorts.
    cohort_kernel: CohortKernel,
}

impl<B: Backend> CifarTask<B> {
    /// Trains and scores from the frozen-prefix cache (adapters in `classifier.0` only).
    pub fn cached(
        data: Arc<Cifar10>,
        split: ClientSplit,
        cache: Arc<PrefixCache>,
        seed: u64,
        device: &B::Device,
    ) -> Self {
        Self::with_inputs(data, split, Inputs::Cached(cache), seed, device)
    }

    /// Runs every batch through the whole network, resizing (and, when `augment`, randomly
    /// cropping and flipping) the images with `transform`.
    pub fn uncached(
        data: Arc<Cifar10>,
        split: ClientSplit,
        transform: ImageTransform,
        augment: bool,
        seed: u64,
        device: &B::Device,
    ) -> Self {
        let transform = if augment {
            transform.with_augmentation(4)
        } else {
            transform
        };
        let inputs = Inputs::Images { transform, augment };
        Self::with_inputs(data, split, inputs, seed, device)
    }

    fn with_inputs(
        data: Arc<Cifar10>,
        split: ClientSplit,
        inputs: Inputs,
        seed: u64,
        device: &B::Device,
    ) -> Self {
        Self {
            train_labels: data.train().labels_usize(),
            test_labels: data.test().labels_usize(),
            data,
            split,
            inputs,
            seed,
            device: device.clone(),
            device_rows: Arc::new(OnceLock::new()),
            cohort_kernel: CohortKernel::Auto,
        }
    }

    /// Chooses the code that trains cohorts ([`CohortKernel::Auto`] unless set).
    pub fn set_cohort_kernel(&mut self, kernel: CohortKernel) {
        self.cohort_kernel = kernel;
    }

    /// Whether cohorts train, and cached clients are scored, on the host ([`CohortKernel`]):
    /// asked for, or automatically on the CPU backend.
    pub(super) fn host_cohorts(&self) -> bool {
        match self.cohort_kernel {
            CohortKernel::Host => true,
            CohortKernel::Tensor => false,
            CohortKernel::Auto => B::name(&self.device).to_lowercase().contains("flex"),
        }
    }

    /// The clients' split.
    pub fn split(&self) -> &ClientSplit {
        &self.split
    }

    /// The frozen-prefix cache, when training runs from it.
    pub fn cache(&self) -> Option<&Arc<PrefixCache>> {
        match &self.inputs {
            Inputs::Cached(cache) => Some(cache),
            Inputs::Images { .. } => None,
        }
    }

    /// Every cached training row's features `[N, in]` and frozen product `[N, hidden]` on the
    /// device (uploaded once, at the first call).
    pub(super) fn device_rows(&self) -> Result<(Tensor<B, 2>, Tensor<B, 2>)> {
        let cache = self
            .cache()
            .ok_or_else(|| FedError::Task("the task does not train from the cache".into()))?;
        if let Some(rows) = self.device_rows.get() {
            return Ok(rows.clone());
        }
        let all: Vec<usize> = (0..cache.len(Split::Train)).collect();
        let rows = cache.rows::<B>(Split::Train, &all, &self.device)?;
        Ok(self.device_rows.get_or_init(|| rows).clone())
    }

    /// Dataset rows of examples `batch` of `client`'s training split.
    pub(super) fn train_rows(&self, client: usize, batch: &[usize]) -> Result<Vec<usize>> {
        self.rows(client, Split::Train, batch)
    }

    /// Labels of training rows.
    pub(super) fn train_targets(&self, rows: &[usize]) -> Result<Vec<usize>> {
        self.targets(Split::Train, rows)
    }

    fn rows(&self, client: usize, split: Split, batch: &[usize]) -> Result<Vec<usize>> {
        let split_rows = (
            self.split.train.as_slice(),
            self.split.test.as_slice(),
            self.split.global_test.as_slice(),
        );
        dataset_rows(split_rows, client, split, batch)
    }

    /// Labels of dataset rows `rows` of `split`; a row past the dataset (a client split made
    /// for another dataset) is an error naming it.
    fn targets(&self, split: Split, rows: &[usize]) -> Result<Vec<usize>> {
        let labels = match split {
            Split::Train => &self.train_labels,
            Split::Test | Split::GlobalTest => &self.test_labels,
        };
        rows.iter()
            .map(|&r| {
                labels.get(r).copied().ok_or_else(|| {
                    FedError::Task(format!(
                        "image {r} of the {split:?} split is past the dataset's {} images",
                        labels.len()
                    ))
                })
            })
            .collect()
    }

    /// Logits of `model` for images `rows` of `split` (on the model's backend `M`).
    fn logits<M: Backend>(
        &self,
        model: &MobileNetV3<M>,
        client: usize,
        split: Split,
        rows: &[usize],
        train: bool,
        device: &M::Device,
    ) -> Result<Tensor<M, 2>> {
        match &self.inputs {
            Inputs::Cached(cache) => {
                let (x, base) = cache.rows::<M>(split, rows, device)?;
                Ok(classifier_from_cache(model, x, base))
            }
            Inputs::Images { transform, augment } => {
                let source = match split {
                    Split::Train => self.data.train(),
                    Split::Test | Split::GlobalTest => self.data.test(),
                };
                let mut rng = (train && *augment).then(|| {
                    let mut parts = vec![self.seed, client as u64, 4];
                    parts.extend(rows.iter().map(|&r| r as u64));
                    ChaCha8Rng::seed_from_u64(mix_seed(&parts))
                });
                let images = to_tensor_batch::<M>(source, rows, transform, rng.as_mut(), device)?;
                Ok(model.forward(images))
            }
        }
    }
}

/// The classifier on cached inputs: `head(dropout(hardswish(W0 x + b + delta(x))))`, exactly
/// what [`MobileNetV3::classifier_forward`] computes from the pooled features `x`.
pub fn classifier_from_cache<B: Backend>(
    model: &MobileNetV3<B>,
    x: Tensor<B, 2>,
    base: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let (dense, act, dropout, head) = &model.classifier;
    let hidden = match dense {
        Dense::Lora(layer) if !layer.merged => base + layer.adapter_delta(x),
        _ => base,
    };
    head.forward(dropout.forward(act.forward(hidden)))
}

fn label_tensor<B: Backend>(targets: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let data: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(data, [targets.len()]), device)
}

impl<B: AutodiffBackend> FederatedTask<B> for CifarTask<B> {
    type Model = MobileNetV3<B>;

    fn num_clients(&self) -> usize {
        self.split.train.len()
    }

    fn num_classes(&self) -> usize {
        10
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
        let logits = self.logits(model, client, Split::Train, &rows, true, &self.device)?;
        let targets = label_tensor::<B>(&self.targets(Split::Train, &rows)?, &self.device);
        Ok(CrossEntropyLossConfig::new()
            .init(&self.device)
            .forward(logits, targets))
    }

    fn cohort(&self) -> Option<&dyn CohortTrainer<B, Self::Model>> {
        self.cache()
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
        if let (true, Some(cache)) = (self.host_cohorts(), self.cache()) {
            let arrays = cache.split_arrays(split);
            let dims = (cache.feature_dim, cache.hidden_dim);
            let targets = self.targets(split, &rows)?;
            if let Some(scores) = score(model, arrays, dims, &rows, targets)? {
                return Ok(scores);
            }
        }
        let logits = self.logits(model, client, split, &rows, false, &self.device)?;
        EvalBatch::from_logits(logits, self.targets(split, &rows)?)
    }
}
