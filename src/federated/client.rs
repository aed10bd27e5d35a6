//! One client's local work, the same in the in-process [`crate::Simulation`] and in a Flower
//! node: hold the client's model (its private tensors), receive a global payload, train locally
//! (FedProx's term included), evaluate, and produce the update that travels.
//!
//! [`ClientRuntime`] knows nothing of the simulation that drives it: it is handed its settings
//! ([`ClientConfig`]), its task and the round, so that a node given the same seed and the same
//! global payload trains exactly what a simulated client trains.

use std::collections::HashSet;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::cohort::shuffle_epoch;
use super::optimizer::LocalOptimizer;
pub use super::optimizer::OptimizerConfig;
use super::optimizer_state::{load_state, save_state};
use super::prox::{ProxAnchor, proximal_term};
use super::task::{FederatedTask, Split};
use crate::error::{FedError, Result};
use crate::lora::{ShareSpec, apply_payload, apply_sharing, collect_client_state, collect_shared};
use crate::metrics::{ClassificationMetrics, ConfusionMatrix};
use crate::params::{Payload, PayloadError, apply_tensors};
use crate::seed::mix_seed;

/// A client's model between its training sessions: the task model on the inner (non-autodiff)
/// backend.
pub type ClientModel<B, T> = <<T as FederatedTask<B>>::Model as AutodiffModule<B>>::InnerModule;

/// What one client does locally in a round, wherever it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// Local epochs E per round.
    pub local_epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Gradient accumulation over micro-batches of at most this many examples (`None`: whole
    /// batches); see [`crate::SimulationConfig::micro_batch_size`].
    pub micro_batch_size: Option<usize>,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Local learning rate.
    pub lr: f64,
    /// Local optimiser.
    pub optimizer: OptimizerConfig,
    /// Keep the optimiser's state (Adam moments) from one round of the client to the next.
    pub keep_optimizer_state: bool,
    /// The run's seed: shuffling and dropout of client `k` in round `r` derive from
    /// `(seed, r, k)`.
    pub seed: u64,
}

impl ClientConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        if self.local_epochs == 0 {
            return Err(FedError::config("local_epochs", "must be at least 1"));
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return Err(FedError::config("batch_size", "must be at least 1"));
        }
        if self.micro_batch_size == Some(0) {
            return Err(FedError::config("micro_batch_size", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(FedError::config(
                "lr",
                format!("must be positive, got {}", self.lr),
            ));
        }
        Ok(())
    }
}

/// The outcome of one round of local training.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalTraining {
    /// The shared tensors after training, with `round` and `num_examples` set: what travels.
    pub update: Payload,
    /// Mean training loss over every example seen in the round.
    pub train_loss: f64,
    /// Training examples of the client (FedAvg's weight).
    pub examples: usize,
}

/// One training batch's combined gradient and the sum of its examples' losses.
struct BatchStep {
    grads: GradientsParams,
    loss_sum: f64,
}

/// One client: its model with its private tensors, the parameters its sharing rule trains, its
/// optimiser when kept across rounds, and the round of the last global state it received.
///
/// The model is held on the inner (non-autodiff) backend and lifted onto the autodiff backend
/// only while it trains: burn's autodiff graph scans every tracked tensor alive at each
/// backward pass, so idle trainable copies would slow every other client's steps.
pub struct ClientRuntime<B: AutodiffBackend, M: AutodiffModule<B>> {
    client: usize,
    spec: ShareSpec,
    model: M::InnerModule,
    /// Parameters that train under the sharing rule (the inner backend forgets the flag).
    trainable: HashSet<ParamId>,
    optimizer: Option<LocalOptimizer<B, M>>,
    synced: Option<u64>,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> ClientRuntime<B, M> {
    /// Client `client` with `model` (built with the client's own adapter seed, so its private
    /// `A` is its own). The sharing rule's trainability is applied to the model's adapters.
    pub fn new(client: usize, model: M, spec: ShareSpec) -> Self {
        let model = apply_sharing(model, spec.sharing);
        Self {
            client,
            trainable: trainable_ids(&model),
            model: model.valid(),
            spec,
            optimizer: None,
            synced: None,
        }
    }

    /// The client's index (its partition of the task).
    pub fn client(&self) -> usize {
        self.client
    }

    /// What is shared.
    pub fn spec(&self) -> &ShareSpec {
        &self.spec
    }

    /// The model as it stands: private tensors and the last global state received.
    pub fn model(&self) -> &M::InnerModule {
        &self.model
    }

    /// The round of the last global state received (`None`: never received one).
    pub fn synced(&self) -> Option<u64> {
        self.synced
    }

    /// Receives a global payload: writes its tensors into the model after checking them against
    /// the sharing rule ([`apply_payload`]). On error the model is unchanged.
    pub fn receive(&mut self, global: &Payload) -> Result<(), PayloadError> {
        self.model = apply_payload(&self.model, global, &self.spec)?;
        self.synced = Some(global.round);
        Ok(())
    }

    /// The personalised model (private tensors with `global`), leaving the client unchanged.
    pub fn personalized(&self, global: &Payload) -> Result<M::InnerModule, PayloadError> {
        apply_payload(&self.model, global, &self.spec)
    }

    /// The tensors that travel now (a fresh collection of the shared ones).
    pub fn shared(&self) -> Payload {
        collect_shared(&self.model, &self.spec)
    }

    /// The client's whole federated state, shared and private: what a checkpoint or a node's
    /// `--state-dir` keeps.
    pub fn state(&self) -> Payload {
        collect_client_state(&self.model, &self.spec)
    }

    /// Restores a state saved from [`ClientRuntime::state`] (private tensors included). Names
    /// outside the client's federated state are refused; on error the model is unchanged.
    pub fn restore_state(&mut self, state: &Payload, synced: Option<u64>) -> Result<()> {
        let expected = self.state();
        state.check_matches(&expected)?;
        self.model = apply_tensors(&self.model, state)?;
        self.synced = synced;
        self.optimizer = None;
        Ok(())
    }

    /// Writes tensors into the model without the sharing rule's check (for example one frozen
    /// `A` common to every FFA-LoRA client). Same-shape, finite tensors only.
    pub fn overwrite(&mut self, tensors: &Payload) -> Result<()> {
        self.model = apply_tensors(&self.model, tensors)?;
        Ok(())
    }

    /// The ids of the parameters that train under the sharing rule.
    pub fn trainable(&self) -> &HashSet<ParamId> {
        &self.trainable
    }

    /// Whether the client keeps an optimiser from an earlier round.
    pub fn has_kept_optimizer(&self) -> bool {
        self.optimizer.is_some()
    }

    /// Takes the outcome of training done elsewhere (a cohort, [`super::cohort`]) for `round`:
    /// `model` becomes the client's model and its shared tensors the update that travels, as
    /// [`ClientRuntime::train`] would return them.
    pub fn finish_training(
        &mut self,
        model: M::InnerModule,
        round: u64,
        examples: usize,
        train_loss: f64,
    ) -> LocalTraining {
        let mut update = collect_shared(&model, &self.spec);
        update.round = round;
        update.num_examples = examples as u64;
        self.model = model;
        LocalTraining {
            update,
            train_loss,
            examples,
        }
    }

    /// The state of the optimiser kept across rounds
    /// ([`ClientConfig::keep_optimizer_state`]), as named tensors keyed by parameter path
    /// (`path#moment_1`...), so that it can be restored into a rebuilt model; `None` when the
    /// client holds no optimiser.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] when a tensor cannot be read back or a step count is too
    /// large to record.
    pub fn optimizer_state(&self) -> Result<Option<Payload>> {
        self.optimizer
            .as_ref()
            .map(|optimizer| save_state::<B, M>(optimizer, &self.model))
            .transpose()
    }

    /// Restores an optimiser saved by [`Self::optimizer_state`] (of a client built the same
    /// way), configured by `config`.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] when a tensor names no parameter of the model, has another
    /// shape, or an entry is incomplete; the client is then left as it was.
    pub fn restore_optimizer_state(
        &mut self,
        config: &OptimizerConfig,
        state: &Payload,
    ) -> Result<()> {
        self.optimizer = Some(load_state::<B, M>(config, state, &self.model)?);
        Ok(())
    }

    /// Drops the optimiser kept across rounds, if any.
    pub fn reset_optimizer(&mut self) {
        self.optimizer = None;
    }

    /// Trains locally for `config.local_epochs` epochs of `round` on the client's training
    /// split, with FedProx's term `mu/2 ||w - anchor||^2` when `prox` gives the anchor (the
    /// global payload received this round) and `mu`. Returns the update that travels. On error
    /// the client's model and optimiser are left as they were.
    pub fn train<T: FederatedTask<B, Model = M>>(
        &mut self,
        task: &T,
        round: u64,
        config: &ClientConfig,
        prox: Option<(&Payload, f64)>,
    ) -> Result<LocalTraining> {
        let k = self.client;
        let device = task.device();
        let anchor = prox.map(|(global, mu)| (ProxAnchor::new(global, &device), mu));
        let n = task.num_examples(k, Split::Train);
        B::seed(&device, mix_seed(&[config.seed, round, k as u64, 2]));
        // A copy (tensors are shared, not copied): a failing round leaves the kept one as it was.
        let mut optimizer = match &self.optimizer {
            Some(optimizer) if config.keep_optimizer_state => optimizer.clone(),
            _ => LocalOptimizer::new(&config.optimizer),
        };
        let mut model = self.trainable_model();
        let (mut loss_sum, mut loss_count) = (0.0, 0usize);
        let mut order: Vec<usize> = (0..n).collect();
        for epoch in 0..config.local_epochs {
            shuffle_epoch(&mut order, config.seed, round, k, epoch);
            for batch in order.chunks(config.batch_size) {
                let step = batch_gradients(task, &model, k, round, batch, config, anchor.as_ref())?;
                loss_sum += step.loss_sum;
                loss_count += batch.len();
                model = optimizer.step(config.lr, model, step.grads);
            }
        }
        let mut update = collect_shared(&model, &self.spec);
        update.round = round;
        update.num_examples = n as u64;
        self.model = model.valid();
        self.optimizer = config.keep_optimizer_state.then_some(optimizer);
        let train_loss = if loss_count > 0 {
            loss_sum / loss_count as f64
        } else {
            0.0
        };
        Ok(LocalTraining {
            update,
            train_loss,
            examples: n,
        })
    }

    /// Scores the model as it stands on the client's `split` (`None` when the split is empty).
    pub fn evaluate<T: FederatedTask<B, Model = M>>(
        &self,
        task: &T,
        split: Split,
        eval_batch_size: usize,
    ) -> Result<Option<ClassificationMetrics>> {
        evaluate_model(task, &self.model, self.client, split, eval_batch_size)
    }

    /// The model lifted onto the autodiff backend, with the sharing rule's trainable parameters
    /// tracking gradients again.
    fn trainable_model(&self) -> M {
        M::from_inner(self.model.clone()).map(&mut RestoreTrainable {
            ids: &self.trainable,
        })
    }
}

/// Scores `model` on the examples of `client`'s `split` in batches of `eval_batch_size`
/// (`None` when the split is empty).
pub fn evaluate_model<B: AutodiffBackend, T: FederatedTask<B>>(
    task: &T,
    model: &ClientModel<B, T>,
    client: usize,
    split: Split,
    eval_batch_size: usize,
) -> Result<Option<ClassificationMetrics>> {
    let n = task.num_examples(client, split);
    if n == 0 {
        return Ok(None);
    }
    let mut confusion = ConfusionMatrix::new(task.num_classes());
    let (mut loss_sum, mut loss_count) = (0.0, 0usize);
    let indices: Vec<usize> = (0..n).collect();
    for batch in indices.chunks(eval_batch_size.max(1)) {
        let out = task.evaluate(model, client, split, batch)?;
        loss_sum += out.loss_sum;
        loss_count += out.loss_count;
        for (&p, &t) in out.predictions.iter().zip(&out.targets) {
            confusion.add(p, t)?;
        }
    }
    Ok(Some(confusion.metrics(loss_sum, loss_count)?))
}

/// The gradient of one training batch, whole or accumulated over micro-batches
/// ([`ClientConfig::micro_batch_size`]), and the sum of its examples' losses.
fn batch_gradients<B: AutodiffBackend, T: FederatedTask<B>>(
    task: &T,
    model: &T::Model,
    k: usize,
    round: u64,
    batch: &[usize],
    config: &ClientConfig,
    anchor: Option<&(ProxAnchor<B>, f64)>,
) -> Result<BatchStep> {
    let micro = config
        .micro_batch_size
        .unwrap_or(batch.len())
        .clamp(1, batch.len().max(1));
    let parts: Vec<&[usize]> = batch.chunks(micro).collect();
    // Each part's mean loss counts in proportion to the terms it averages, so that the
    // accumulated gradient is the whole batch's.
    let weights = if parts.len() == 1 {
        vec![1.0]
    } else {
        let weights = parts
            .iter()
            .map(|part| task.loss_weight(k, part))
            .collect::<Result<Vec<f64>>>()?;
        let total: f64 = weights.iter().sum();
        if !(total.is_finite() && total > 0.0) {
            return Err(FedError::Task(format!(
                "client {k} round {round}: loss weights of a batch sum to {total}"
            )));
        }
        weights.into_iter().map(|w| w / total).collect()
    };
    let mut accumulator = GradientsAccumulator::<T::Model>::new();
    let mut loss_sum = 0.0;
    for (i, (part, weight)) in parts.iter().zip(weights).enumerate() {
        let mut loss = task.loss(model, k, part)?;
        let value: f64 = loss.clone().into_scalar().elem();
        if !value.is_finite() {
            return Err(FedError::Task(format!(
                "client {k} round {round}: non-finite training loss {value}"
            )));
        }
        loss_sum += value * part.len() as f64;
        if weight != 1.0 {
            loss = loss.mul_scalar(weight);
        }
        // The proximal term belongs to the step, not to each micro-batch: added once.
        if let (Some((anchor, mu)), true) = (anchor, i + 1 == parts.len()) {
            loss = loss + proximal_term(model, anchor, *mu);
        }
        let grads = GradientsParams::from_grads(loss.backward(), model);
        if parts.len() == 1 {
            return Ok(BatchStep { grads, loss_sum });
        }
        accumulator.accumulate(model, grads);
    }
    Ok(BatchStep {
        grads: accumulator.grads(),
        loss_sum,
    })
}

/// The ids of the parameters that require gradients in `model`.
fn trainable_ids<B: AutodiffBackend, M: Module<B>>(model: &M) -> HashSet<ParamId> {
    struct Trainable<'a>(&'a mut HashSet<ParamId>);
    impl<B: Backend> ModuleVisitor<B> for Trainable<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if param.is_require_grad() {
                self.0.insert(param.id);
            }
        }
    }
    let mut ids = HashSet::new();
    model.visit(&mut Trainable(&mut ids));
    ids
}

/// Sets `require_grad` on exactly the parameters in `ids`.
struct RestoreTrainable<'a> {
    ids: &'a HashSet<ParamId>,
}

impl<B: Backend> ModuleMapper<B> for RestoreTrainable<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let trainable = self.ids.contains(&param.id);
        crate::lora::set_trainable(param, trainable)
    }
}
