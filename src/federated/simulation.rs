//! The simulation runner: R rounds over K clients on one machine.

use std::time::Instant;

use std::collections::HashSet;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer, Sgd, SgdConfig,
};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::ChaCha8Rng};
use serde::{Deserialize, Serialize};

use super::checkpoint::Checkpoint;
use super::payload::{Payload, WireDtype};
use super::prox::{ProxAnchor, proximal_term};
use super::report::{ClientRoundReport, RoundReport};
use super::server::{ClientUpdate, Server};
use super::state::{ShareSpec, apply_payload, collect_client_state, collect_shared};
use super::task::{FederatedTask, Split};
use crate::error::{FedError, Result};
use crate::lora::apply_sharing;
use crate::metrics::{ClassificationMetrics, ConfusionMatrix, mean_metrics};
use crate::strategy::Strategy;

/// The local optimiser every client uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// AdamW (PyTorch's defaults: betas 0.9/0.999, eps 1e-8, weight decay 0.01).
    AdamW {
        /// First-moment decay.
        beta_1: f32,
        /// Second-moment decay.
        beta_2: f32,
        /// Numerical stability term.
        epsilon: f32,
        /// Decoupled weight decay.
        weight_decay: f32,
    },
    /// Stochastic gradient descent with optional momentum.
    Sgd {
        /// Momentum factor (0 for none).
        momentum: f64,
        /// L2 penalty (0 for none).
        weight_decay: f32,
    },
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::AdamW {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
        }
    }
}

enum LocalOptimizer<B: AutodiffBackend, M: AutodiffModule<B>> {
    AdamW(OptimizerAdaptor<AdamW, M, B>),
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>),
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> LocalOptimizer<B, M> {
    fn new(config: &OptimizerConfig) -> Self {
        match *config {
            OptimizerConfig::AdamW {
                beta_1,
                beta_2,
                epsilon,
                weight_decay,
            } => Self::AdamW(
                AdamWConfig::new()
                    .with_beta_1(beta_1)
                    .with_beta_2(beta_2)
                    .with_epsilon(epsilon)
                    .with_weight_decay(weight_decay)
                    .init(),
            ),
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
            } => Self::Sgd(
                SgdConfig::new()
                    .with_momentum((momentum > 0.0).then(|| {
                        MomentumConfig::new()
                            .with_momentum(momentum)
                            .with_dampening(0.0)
                    }))
                    .with_weight_decay(
                        (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay)),
                    )
                    .init(),
            ),
        }
    }

    fn step(&mut self, lr: f64, model: M, grads: GradientsParams) -> M {
        match self {
            Self::AdamW(optim) => optim.step(lr, model, grads),
            Self::Sgd(optim) => optim.step(lr, model, grads),
        }
    }
}

/// Settings of a federated simulation. Defaults are the paper's RLAIF-V settings
/// (5 rounds, 3 local epochs, batch 16, AdamW at lr 1e-6, every client every round).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulationConfig {
    /// Number of rounds R.
    pub rounds: u64,
    /// Fraction of clients sampled per round (at least one client is sampled).
    pub fraction: f64,
    /// Local epochs E per round.
    pub local_epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Gradient accumulation: split every training batch into micro-batches of at most this
    /// many examples, run forward and backward on each in turn and take one optimiser step on
    /// their combined gradient. The step equals the full batch's (each micro-batch's mean loss
    /// weighted by [`FederatedTask::loss_weight`]) while only one micro-batch's activations
    /// are alive at a time. `None` (the default) runs each batch whole.
    #[serde(default)]
    pub micro_batch_size: Option<usize>,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Local learning rate.
    pub lr: f64,
    /// Local optimiser.
    pub optimizer: OptimizerConfig,
    /// Keep each client's optimiser state (Adam moments) from one of its rounds to the next.
    /// Off by default: a fresh optimiser every round, as Flower's examples do. Parameter ids are
    /// preserved across rounds, so keeping it works; checkpoints do not save it.
    pub keep_optimizer_state: bool,
    /// Seed of client sampling, shuffling and dropout; the same seed gives the same reports.
    /// Dropout draws from burn's backend-wide generator, which the simulation re-seeds for every
    /// client and round: other code drawing random numbers on the same backend concurrently
    /// (another simulation in another thread) breaks reproducibility.
    pub seed: u64,
    /// Precision of tensors on the wire.
    pub wire_dtype: WireDtype,
    /// Evaluate every client before fine-tuning (reported as round 0).
    pub evaluate_initial: bool,
    /// Score every client on the task's global test set (if it has one) every this many rounds,
    /// and always in the last round and round 0; 0 never. Each client is scored on the whole
    /// set, so on large test sets this dominates a round's time.
    pub global_eval_every: u64,
    /// Show a progress bar on the terminal.
    pub progress: bool,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            rounds: 5,
            fraction: 1.0,
            local_epochs: 3,
            batch_size: 16,
            micro_batch_size: None,
            eval_batch_size: 64,
            lr: 1e-6,
            optimizer: OptimizerConfig::default(),
            keep_optimizer_state: false,
            seed: 42,
            wire_dtype: WireDtype::F32,
            evaluate_initial: true,
            global_eval_every: 1,
            progress: true,
        }
    }
}

impl SimulationConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(FedError::config(
                "fraction",
                format!("must be in (0, 1], got {}", self.fraction),
            ));
        }
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

/// One training batch's combined gradient and the sum of its examples' losses.
struct BatchStep {
    grads: GradientsParams,
    loss_sum: f64,
}

/// Mixes seed components into one 64-bit seed (SplitMix64 finaliser).
pub(crate) fn mix_seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0x9E37_79B9_7F4A_7C15u64, |acc, &p| {
        let mut z = acc ^ p.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(acc << 6);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// A client's model between its training sessions: the task model on the inner (non-autodiff)
/// backend.
pub type ClientModel<B, T> = <<T as FederatedTask<B>>::Model as AutodiffModule<B>>::InnerModule;

/// Runs federated rounds over the clients of a [`FederatedTask`].
///
/// Each client owns a copy of the model (copies share the frozen base weights' buffers, so K
/// clients cost little more than one model). Clients hold their copy on the inner backend and
/// only the client being trained is lifted onto the autodiff backend: burn's autodiff graph
/// scans every tracked tensor alive at each backward pass, so K idle trainable copies would
/// make every step cost O(K) (measured: 9 ms per step with 2 clients, 23 ms with 10, on the
/// CIFAR-10 cache). In every round the sampled clients download the
/// global shared tensors, train locally, and upload their shared tensors; private tensors stay
/// in the client's copy across rounds, including rounds it sits out. After aggregation every
/// client is scored with its private tensors and the new global ones.
pub struct Simulation<B: AutodiffBackend, T: FederatedTask<B>, S: Strategy> {
    config: SimulationConfig,
    spec: ShareSpec,
    task: T,
    server: Server<S>,
    clients: Vec<ClientModel<B, T>>,
    /// Parameters that train under the sharing rule (the inner backend forgets the flag).
    trainable: HashSet<ParamId>,
    optimizers: Vec<Option<LocalOptimizer<B, T::Model>>>,
    /// The round of the global state each client holds (`None`: never received one).
    synced: Vec<Option<u64>>,
    next_round: u64,
}

impl<B: AutodiffBackend, T: FederatedTask<B>, S: Strategy> Simulation<B, T, S> {
    /// Sets up a simulation with one model per client (built with distinct adapter seeds for
    /// distinct private `A`s). The sharing rule's trainability is applied to every model and the
    /// initial global state is the first client's shared tensors.
    pub fn new(
        config: SimulationConfig,
        spec: ShareSpec,
        task: T,
        strategy: S,
        models: Vec<T::Model>,
    ) -> Result<Self> {
        config.validate()?;
        let k = task.num_clients();
        if k == 0 {
            return Err(FedError::config("clients", "the task has no client"));
        }
        if models.len() != k {
            return Err(FedError::config(
                "models",
                format!("{} models for {k} clients", models.len()),
            ));
        }
        let models: Vec<T::Model> = models
            .into_iter()
            .map(|m| apply_sharing(m, spec.sharing))
            .collect();
        let initial = collect_shared(&models[0], &spec);
        if initial.tensors.is_empty() {
            return Err(FedError::config(
                "share spec",
                "the model shares no tensor (no PersonalizedLora layer, or the rule shares nothing)",
            ));
        }
        let server = Server::new(initial, strategy)?;
        Ok(Self {
            config,
            spec,
            task,
            server,
            optimizers: (0..k).map(|_| None).collect(),
            synced: vec![None; k],
            trainable: trainable_ids(&models),
            clients: models.iter().map(AutodiffModule::valid).collect(),
            next_round: 1,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SimulationConfig {
        &self.config
    }

    /// What is shared.
    pub fn spec(&self) -> &ShareSpec {
        &self.spec
    }

    /// The task.
    pub fn task(&self) -> &T {
        &self.task
    }

    /// The server (global state and strategy).
    pub fn server(&self) -> &Server<S> {
        &self.server
    }

    /// Client `k`'s model as it stands (its private tensors and the last global it received),
    /// on the inner backend, ready for inference.
    pub fn client_model(&self, k: usize) -> Option<&ClientModel<B, T>> {
        self.clients.get(k)
    }

    /// Client `k`'s personalised model: its private tensors with the current global ones, on the
    /// inner backend, ready for inference.
    pub fn personalized_model(&self, k: usize) -> Result<ClientModel<B, T>> {
        let model = self
            .clients
            .get(k)
            .ok_or_else(|| FedError::config("client", format!("no client {k}")))?;
        Ok(apply_payload(model, self.server.global())?)
    }

    /// The next round to run (1 for a fresh simulation).
    pub fn next_round(&self) -> u64 {
        self.next_round
    }

    /// The clients sampled in `round`: a seeded choice of `max(1, round(fraction * K))`, sorted.
    pub fn sample_clients(&self, round: u64) -> Vec<usize> {
        let k = self.clients.len();
        let m = ((self.config.fraction * k as f64).round() as usize).clamp(1, k);
        let mut all: Vec<usize> = (0..k).collect();
        if m < k {
            let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[self.config.seed, round, 1]));
            all.shuffle(&mut rng);
            all.truncate(m);
            all.sort_unstable();
        }
        all
    }

    /// Runs the remaining rounds (and the round-0 evaluation on a fresh run when configured),
    /// calling `on_report` with the simulation and the report after each (write the report,
    /// save a checkpoint); returns all reports.
    pub fn run(
        &mut self,
        mut on_report: impl FnMut(&Self, &RoundReport) -> Result<()>,
    ) -> Result<Vec<RoundReport>> {
        let mut reports = Vec::new();
        if self.next_round == 1 && self.config.evaluate_initial {
            let report =
                self.evaluate_round(0, &[], Default::default(), Vec::new(), Instant::now())?;
            on_report(self, &report)?;
            reports.push(report);
        }
        let remaining = self.config.rounds.saturating_sub(self.next_round - 1);
        let bar = self.progress_bar(remaining);
        while self.next_round <= self.config.rounds {
            let report = self.run_round(&bar)?;
            if let Some(mean) = &report.mean_test {
                bar.set_message(format!("round {} acc {:.4}", report.round, mean.accuracy));
            }
            on_report(self, &report)?;
            reports.push(report);
        }
        bar.finish_and_clear();
        Ok(reports)
    }

    fn progress_bar(&self, rounds: u64) -> ProgressBar {
        if !self.config.progress {
            return ProgressBar::hidden();
        }
        let per_round = self.sample_clients(self.next_round).len() as u64;
        let bar = ProgressBar::new(rounds * per_round);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} client-rounds {msg} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    }

    /// Runs one round and returns its report.
    pub fn run_one_round(&mut self) -> Result<RoundReport> {
        self.run_round(&ProgressBar::hidden())
    }

    fn run_round(&mut self, bar: &ProgressBar) -> Result<RoundReport> {
        let started = Instant::now();
        let round = self.next_round;
        let sampled = self.sample_clients(round);
        let dtype = self.config.wire_dtype;
        let download = self.server.global().clone();
        let down_bytes = download.to_bytes(dtype)?;
        let mu = self.server.strategy().proximal_mu();

        let mut updates = Vec::with_capacity(sampled.len());
        let mut training = std::collections::BTreeMap::new();
        for &k in &sampled {
            let t0 = Instant::now();
            // A client that missed the last broadcast downloads the current global state.
            let mut bytes_down = 0;
            if self.synced[k] != Some(download.round) {
                let received = Payload::from_bytes(&down_bytes)?;
                self.clients[k] = apply_payload(&self.clients[k], &received)?;
                self.synced[k] = Some(download.round);
                bytes_down += down_bytes.len();
            }
            let anchor = mu.map(|mu| (ProxAnchor::new(&download, &self.task.device()), mu));
            let model = self.trainable_model(k);
            let (model, loss, examples) = self.train_client(k, round, model, anchor.as_ref())?;
            let mut update = collect_shared(&model, &self.spec);
            self.clients[k] = model.valid();
            update.round = round;
            update.num_examples = examples as u64;
            let up_bytes = update.to_bytes(dtype)?;
            let seconds = t0.elapsed().as_secs_f64();
            training.insert(k, (loss, examples, up_bytes.len(), bytes_down, seconds));
            // What the server receives is what was sent, decoded and validated.
            let payload = Payload::from_bytes(&up_bytes)?;
            updates.push(ClientUpdate { client: k, payload });
            bar.inc(1);
        }
        let rejected = self.server.aggregate(round, updates)?;
        // The server sends the new global state back to the round's participants.
        let broadcast = self.server.global().to_bytes(dtype)?;
        let received = Payload::from_bytes(&broadcast)?;
        for &k in &sampled {
            self.clients[k] = apply_payload(&self.clients[k], &received)?;
            self.synced[k] = Some(self.server.global().round);
            if let Some(entry) = training.get_mut(&k) {
                entry.3 += broadcast.len();
            }
        }
        let report = self.evaluate_round(round, &sampled, training, rejected, started)?;
        self.next_round += 1;
        Ok(report)
    }

    /// Client `k`'s model lifted onto the autodiff backend, with the sharing rule's trainable
    /// parameters tracking gradients again.
    fn trainable_model(&self, k: usize) -> T::Model {
        T::Model::from_inner(self.clients[k].clone()).map(&mut RestoreTrainable {
            ids: &self.trainable,
        })
    }

    fn train_client(
        &mut self,
        k: usize,
        round: u64,
        mut model: T::Model,
        anchor: Option<&(ProxAnchor<B>, f64)>,
    ) -> Result<(T::Model, f64, usize)> {
        let n = self.task.num_examples(k, Split::Train);
        let device = self.task.device();
        B::seed(&device, mix_seed(&[self.config.seed, round, k as u64, 2]));
        let mut optimizer = match self.optimizers[k].take() {
            Some(optimizer) if self.config.keep_optimizer_state => optimizer,
            _ => LocalOptimizer::new(&self.config.optimizer),
        };
        let mut loss_sum = 0.0;
        let mut loss_count = 0usize;
        let mut order: Vec<usize> = (0..n).collect();
        for epoch in 0..self.config.local_epochs {
            let seed = mix_seed(&[self.config.seed, round, k as u64, 3, epoch as u64]);
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            for batch in order.chunks(self.config.batch_size) {
                let step = self.batch_gradients(&model, k, round, batch, anchor)?;
                loss_sum += step.loss_sum;
                loss_count += batch.len();
                model = optimizer.step(self.config.lr, model, step.grads);
            }
        }
        if self.config.keep_optimizer_state {
            self.optimizers[k] = Some(optimizer);
        }
        let mean = if loss_count > 0 {
            loss_sum / loss_count as f64
        } else {
            0.0
        };
        Ok((model, mean, n))
    }

    /// The gradient of one training batch, whole or accumulated over micro-batches
    /// ([`SimulationConfig::micro_batch_size`]), and the sum of its examples' losses.
    fn batch_gradients(
        &self,
        model: &T::Model,
        k: usize,
        round: u64,
        batch: &[usize],
        anchor: Option<&(ProxAnchor<B>, f64)>,
    ) -> Result<BatchStep> {
        let micro = self
            .config
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
                .map(|part| self.task.loss_weight(k, part))
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
            let mut loss = self.task.loss(model, k, part)?;
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

    fn evaluate_round(
        &self,
        round: u64,
        sampled: &[usize],
        training: std::collections::BTreeMap<usize, (f64, usize, usize, usize, f64)>,
        rejected: Vec<super::report::Rejection>,
        started: Instant,
    ) -> Result<RoundReport> {
        let every = self.config.global_eval_every;
        let has_global = self.task.num_examples(0, Split::GlobalTest) > 0
            && every > 0
            && (round == 0 || round.is_multiple_of(every) || round == self.config.rounds);
        let global = Payload::from_bytes(&self.server.global().to_bytes(self.config.wire_dtype)?)?;
        let mut clients = Vec::with_capacity(self.clients.len());
        for (k, model) in self.clients.iter().enumerate() {
            let personal = if round == 0 {
                model.clone()
            } else {
                apply_payload(model, &global)?
            };
            let test = self.evaluate_split(&personal, k, Split::Test)?;
            let global_test = if has_global {
                self.evaluate_split(&personal, k, Split::GlobalTest)?
            } else {
                None
            };
            let trained = training.get(&k);
            clients.push(ClientRoundReport {
                client: k,
                participated: trained.is_some(),
                train_loss: trained.map(|t| t.0),
                train_examples: trained.map_or(0, |t| t.1),
                bytes_up: trained.map_or(0, |t| t.2),
                bytes_down: trained.map_or(0, |t| t.3),
                seconds: trained.map_or(0.0, |t| t.4),
                test,
                global_test,
            });
        }
        let mean_of = |pick: fn(&ClientRoundReport) -> Option<ClassificationMetrics>| {
            let all: Vec<ClassificationMetrics> = clients.iter().filter_map(pick).collect();
            mean_metrics(&all)
        };
        Ok(RoundReport {
            round,
            sharing: self.spec.sharing.name().to_string(),
            strategy: self.server.strategy().name(),
            sampled: sampled.to_vec(),
            mean_test: mean_of(|c| c.test),
            mean_global_test: mean_of(|c| c.global_test),
            clients,
            rejected,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn evaluate_split(
        &self,
        model: &<T::Model as AutodiffModule<B>>::InnerModule,
        k: usize,
        split: Split,
    ) -> Result<Option<ClassificationMetrics>> {
        let n = self.task.num_examples(k, split);
        if n == 0 {
            return Ok(None);
        }
        let mut confusion = ConfusionMatrix::new(self.task.num_classes());
        let (mut loss_sum, mut loss_count) = (0.0, 0usize);
        let indices: Vec<usize> = (0..n).collect();
        for batch in indices.chunks(self.config.eval_batch_size) {
            let out = self.task.evaluate(model, k, split, batch)?;
            loss_sum += out.loss_sum;
            loss_count += out.loss_count;
            for (&p, &t) in out.predictions.iter().zip(&out.targets) {
                confusion.add(p, t)?;
            }
        }
        Ok(Some(confusion.metrics(loss_sum, loss_count)?))
    }

    /// Saves everything needed to continue after the last completed round: the global state,
    /// every client's adapter matrices and shared extras, and the round counter. Randomness is
    /// derived from `(seed, round, client)`, so a resumed run equals an uninterrupted one
    /// (unless `keep_optimizer_state` is on: optimiser state is not saved).
    pub fn save_checkpoint(&self, dir: impl AsRef<std::path::Path>) -> Result<()> {
        let clients: Vec<Payload> = self
            .clients
            .iter()
            .map(|m| collect_client_state(m, &self.spec))
            .collect();
        Checkpoint {
            completed_rounds: self.next_round - 1,
            seed: self.config.seed,
            sharing: self.spec.sharing,
            global: self.server.global().clone(),
            clients,
            synced: self.synced.clone(),
        }
        .save(dir)
    }

    /// Restores a checkpoint written by [`Simulation::save_checkpoint`] of a simulation built
    /// the same way (same task, models, sharing and seed); the next [`Simulation::run`]
    /// continues after the saved round.
    pub fn resume(&mut self, dir: impl AsRef<std::path::Path>) -> Result<()> {
        let checkpoint = Checkpoint::load(dir)?;
        if checkpoint.sharing != self.spec.sharing || checkpoint.seed != self.config.seed {
            return Err(FedError::config(
                "checkpoint",
                format!(
                    "was written with sharing {} and seed {}, this run uses {} and {}",
                    checkpoint.sharing, checkpoint.seed, self.spec.sharing, self.config.seed
                ),
            ));
        }
        if checkpoint.clients.len() != self.clients.len() {
            return Err(FedError::config(
                "checkpoint",
                format!(
                    "holds {} clients, this run has {}",
                    checkpoint.clients.len(),
                    self.clients.len()
                ),
            ));
        }
        let mut restored = Vec::with_capacity(self.clients.len());
        for (model, state) in self.clients.iter().zip(&checkpoint.clients) {
            restored.push(apply_payload(model, state)?);
        }
        self.server.set_global(checkpoint.global)?;
        self.clients = restored;
        self.optimizers.iter_mut().for_each(|o| *o = None);
        if checkpoint.synced.len() == self.clients.len() {
            self.synced = checkpoint.synced;
        }
        self.next_round = checkpoint.completed_rounds + 1;
        Ok(())
    }
}

/// The ids of the parameters that require gradients in any of `models`.
fn trainable_ids<B: AutodiffBackend, M: Module<B>>(models: &[M]) -> HashSet<ParamId> {
    struct Trainable<'a>(&'a mut HashSet<ParamId>);
    impl<B: Backend> ModuleVisitor<B> for Trainable<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if param.is_require_grad() {
                self.0.insert(param.id);
            }
        }
    }
    let mut ids = HashSet::new();
    for model in models {
        model.visit(&mut Trainable(&mut ids));
    }
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
