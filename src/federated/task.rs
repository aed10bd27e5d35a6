//! The trait a user implements for their own model and data.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::cohort::CohortTrainer;
use crate::error::{FedError, Result};

/// Which examples of a client (or of the shared test set) a batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The client's local training data.
    Train,
    /// The client's own held-out data: the personalised figure the paper reports.
    Test,
    /// A test set common to every client (optional; the client index is then ignored).
    GlobalTest,
}

/// The dataset rows of examples `batch` of `client`'s `split`, for tasks that keep each
/// client's rows per split (`train[client]`, `test[client]`, and one `global_test` list).
///
/// # Errors
/// [`FedError::Task`] for an unknown client or an example index past the client's split.
pub fn dataset_rows(
    (train, test, global_test): (&[Vec<usize>], &[Vec<usize>], &[usize]),
    client: usize,
    split: Split,
    batch: &[usize],
) -> Result<Vec<usize>> {
    let own: &[usize] = match split {
        Split::Train => train.get(client).map(Vec::as_slice),
        Split::Test => test.get(client).map(Vec::as_slice),
        Split::GlobalTest => Some(global_test),
    }
    .ok_or_else(|| FedError::Task(format!("no client {client}")))?;
    batch
        .iter()
        .map(|&i| {
            own.get(i)
                .copied()
                .ok_or_else(|| FedError::Task(format!("client {client} has no example {i}")))
        })
        .collect()
}

/// The delta that privacy reports use: one over the clients' training examples in total.
pub fn privacy_delta<B: AutodiffBackend, T: FederatedTask<B>>(task: &T) -> f64 {
    let total: usize = (0..task.num_clients())
        .map(|k| task.num_examples(k, Split::Train))
        .sum();
    1.0 / total.max(1) as f64
}

/// Summed loss and predictions of one evaluation batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalBatch {
    /// Sum of per-example (or per-token) losses.
    pub loss_sum: f64,
    /// Number of losses summed.
    pub loss_count: usize,
    /// Predicted classes (or tokens), padding already removed.
    pub predictions: Vec<usize>,
    /// True classes (or tokens), aligned with `predictions`.
    pub targets: Vec<usize>,
}

impl EvalBatch {
    /// Scores classification logits `[N, classes]` against `targets` (length `N`): mean
    /// cross-entropy (summed back over the batch) and arg-max predictions.
    pub fn from_logits<B: Backend>(logits: Tensor<B, 2>, targets: Vec<usize>) -> Result<Self> {
        let device = logits.device();
        let labels: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
        let labels = Tensor::<B, 1, Int>::from_data(
            burn::tensor::TensorData::new(labels, [targets.len()]),
            &device,
        );
        let loss: f64 = burn::nn::loss::CrossEntropyLossConfig::new()
            .init(&device)
            .forward(logits.clone(), labels)
            .into_scalar()
            .elem();
        let predictions = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .map_err(|e| FedError::Task(format!("{e:?}")))?
            .into_iter()
            .map(|p| p as usize)
            .collect();
        Ok(Self {
            loss_sum: loss * targets.len() as f64,
            loss_count: targets.len(),
            predictions,
            targets,
        })
    }
}

/// A federated learning problem: the clients' data and how a model is trained and scored on it.
///
/// The simulation owns the federated plumbing (sampling, payloads, aggregation, optimiser
/// steps, shuffling, metrics); the task only turns a batch of example indices into a loss or
/// into predictions. Indices are local to a client and split: `0..num_examples(client, split)`.
pub trait FederatedTask<B: AutodiffBackend> {
    /// The model, containing [`crate::PersonalizedLora`] layers.
    type Model: AutodiffModule<B>;

    /// Number of clients.
    fn num_clients(&self) -> usize;

    /// Number of classes (or vocabulary size) for the metrics.
    fn num_classes(&self) -> usize;

    /// Examples of `client` in `split` (for [`Split::GlobalTest`] the client is ignored; return
    /// 0 when there is no global test set).
    fn num_examples(&self, client: usize, split: Split) -> usize;

    /// The device the models and batches live on.
    fn device(&self) -> B::Device;

    /// The mean training loss of `model` on the examples `batch` of `client`'s training split.
    fn loss(&self, model: &Self::Model, client: usize, batch: &[usize]) -> Result<Tensor<B, 1>>;

    /// How many terms the mean loss of `batch` averages over: the weight of its gradient when
    /// [`crate::federated::SimulationConfig::micro_batch_size`] splits a training batch into
    /// micro-batches. The default, `batch.len()`, is right for a mean over examples; a loss
    /// averaged over tokens returns the batch's token count, so that the accumulated step
    /// equals the whole batch's.
    ///
    /// # Errors
    /// As [`Self::loss`], for indices it does not know.
    fn loss_weight(&self, client: usize, batch: &[usize]) -> Result<f64> {
        let _ = client;
        Ok(batch.len() as f64)
    }

    /// The task's batched trainer of several clients at once, when it has one: the simulation
    /// then trains the sampled clients in cohorts ([`crate::SimulationConfig::cohort`]). The
    /// default, `None`, trains every client on its own through [`Self::loss`].
    fn cohort(&self) -> Option<&dyn CohortTrainer<B, Self::Model>> {
        None
    }

    /// Scores `model` (without autodiff) on the examples `batch` of `client`'s `split`.
    fn evaluate(
        &self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
        client: usize,
        split: Split,
        batch: &[usize],
    ) -> Result<EvalBatch>;
}
