//! The simulation runner: R rounds over K clients on one machine.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};
use serde::{Deserialize, Serialize};

use super::client::{ClientConfig, ClientModel, ClientRuntime, OptimizerConfig};
use super::cohort::CohortMode;
use super::failures::FailurePolicy;
use super::phase::{self, RunPhase};
use super::report::{Rejection, RoundReport};
use super::server::Server;
use super::task::FederatedTask;
use crate::error::{FedError, Result};
use crate::lora::{ShareSpec, check_trainable, common_frozen_a};
use crate::params::{ClientUpdate, Payload, WireDtype};
use crate::privacy::RdpAccountant;
use crate::seed::mix_seed;
use crate::strategy::{Strategy, clip_update};

/// Per client of a round: (train loss, examples, bytes up, bytes down, seconds).
pub(super) type Trained = BTreeMap<usize, (f64, usize, usize, usize, f64)>;

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
    /// What a round does with failing clients (fault injection, `min_fit_clients`,
    /// `accept_failures`, a cap on example counts).
    #[serde(default)]
    pub failures: FailurePolicy,
    /// Cohort-batched local training ([`crate::federated::cohort`]): the sampled clients of a
    /// task that offers it ([`FederatedTask::cohort`]) train together as one batched
    /// computation, with the same results as one after the other (within rounding). Not used
    /// with `keep_optimizer_state` or `micro_batch_size`. Default: automatic cohort size.
    #[serde(default)]
    pub cohort: CohortMode,
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
            failures: FailurePolicy::default(),
            cohort: CohortMode::Auto,
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
        self.failures.validate()?;
        self.client_config().validate()
    }

    /// What every client does locally: the local part of these settings.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            local_epochs: self.local_epochs,
            batch_size: self.batch_size,
            micro_batch_size: self.micro_batch_size,
            eval_batch_size: self.eval_batch_size,
            lr: self.lr,
            optimizer: self.optimizer,
            keep_optimizer_state: self.keep_optimizer_state,
            seed: self.seed,
        }
    }
}

/// Runs federated rounds over the clients of a [`FederatedTask`] in one process.
///
/// Each client is a [`ClientRuntime`] owning a copy of the model (copies share the frozen base
/// weights' buffers, so K clients cost little more than one model); the runtime is the same
/// one a Flower node drives. In every round the sampled clients download the global shared
/// tensors, train locally, and upload their shared tensors; private tensors stay in the
/// client's copy across rounds, including rounds it sits out. After aggregation every client is
/// scored with its private tensors and the new global ones.
pub struct Simulation<B: AutodiffBackend, T: FederatedTask<B>, S: Strategy> {
    pub(super) config: SimulationConfig,
    pub(super) spec: ShareSpec,
    pub(super) task: T,
    pub(super) server: Server<S>,
    pub(super) clients: Vec<ClientRuntime<B, T::Model>>,
    pub(super) next_round: u64,
    /// Privacy spent so far, under a DP strategy.
    pub(super) accountant: RdpAccountant,
}

impl<B: AutodiffBackend, T: FederatedTask<B>, S: Strategy> Simulation<B, T, S> {
    /// Sets up a simulation with one model per client (built with distinct adapter seeds for
    /// distinct private `A`s). The sharing rule's trainability is applied to every model and the
    /// initial global state is the first client's shared tensors. Under FFA-LoRA, whose `A` is
    /// frozen and never travels, every client starts from the first client's `A`, so that the
    /// server averages `B`s that multiply one common `A`.
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
        for model in &models {
            check_trainable(model, &spec)?;
        }
        let mut clients: Vec<ClientRuntime<B, T::Model>> = models
            .into_iter()
            .enumerate()
            .map(|(i, model)| ClientRuntime::new(i, model, spec.clone()))
            .collect();
        let initial = clients[0].shared();
        if initial.tensors.is_empty() {
            return Err(FedError::config(
                "share spec",
                "the model shares no tensor (no PersonalizedLora layer, or the rule shares nothing)",
            ));
        }
        if let Some(common) = common_frozen_a(&spec, clients[0].model()) {
            for client in clients.iter_mut().skip(1) {
                client.overwrite(&common)?;
            }
        }
        let server = Server::new(initial, strategy)?;
        Ok(Self {
            config,
            spec,
            task,
            server,
            clients,
            next_round: 1,
            accountant: RdpAccountant::new(),
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

    /// Client `k`'s runtime.
    pub fn client(&self, k: usize) -> Option<&ClientRuntime<B, T::Model>> {
        self.clients.get(k)
    }

    /// Client `k`'s model as it stands (its private tensors and the last global it received),
    /// on the inner backend, ready for inference.
    pub fn client_model(&self, k: usize) -> Option<&ClientModel<B, T>> {
        self.clients.get(k).map(ClientRuntime::model)
    }

    /// Client `k`'s personalised model: its private tensors with the current global ones, on the
    /// inner backend, ready for inference.
    pub fn personalized_model(&self, k: usize) -> Result<ClientModel<B, T>> {
        let client = self
            .clients
            .get(k)
            .ok_or_else(|| FedError::config("client", format!("no client {k}")))?;
        Ok(client.personalized(self.server.global())?)
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
        let client_config = self.config.client_config();
        // Client-side DP (DpClientSideFixedClipping): each client clips its update's L2 norm
        // relative to the global it received before sending.
        let clip = self.server.strategy().client_clipping_norm();

        let (mut failed, mut rejected) = (Vec::new(), Vec::new());
        // Every sampled client that is not dropped first receives the current global state if
        // it missed the last broadcast; then all of them train (in cohorts where possible).
        let mut ready = Vec::with_capacity(sampled.len());
        for &k in &sampled {
            bar.inc(1);
            if self.dropped(round, k) {
                failed.push(Rejection {
                    client: k,
                    reason: "dropped by fault injection (client_failure_rate)".into(),
                });
                continue;
            }
            let client = &mut self.clients[k];
            let mut bytes_down = 0;
            if client.synced() != Some(download.round) {
                client.receive(&Payload::from_bytes(&down_bytes)?)?;
                bytes_down += down_bytes.len();
            }
            ready.push((k, bytes_down));
        }
        let prox = mu.map(|mu| (&download, mu));
        let order: Vec<usize> = ready.iter().map(|&(k, _)| k).collect();
        let outcomes = self.train_clients(&order, round, &client_config, prox)?;

        let mut updates = Vec::with_capacity(sampled.len());
        let mut training = Trained::new();
        for ((k, bytes_down), (outcome, seconds)) in ready.into_iter().zip(outcomes) {
            // A client whose training fails is reported and left out; its model is unchanged.
            let mut trained = match outcome {
                Ok(trained) => trained,
                Err(error) => {
                    failed.push(Rejection {
                        client: k,
                        reason: error.to_string(),
                    });
                    continue;
                }
            };
            if let Some(norm) = clip {
                clip_update(&mut trained.update, &download, norm);
            }
            let up_bytes = trained.update.to_bytes(dtype)?;
            training.insert(
                k,
                (
                    trained.train_loss,
                    trained.examples,
                    up_bytes.len(),
                    bytes_down,
                    seconds,
                ),
            );
            // What the server receives is what was sent: decoded and validated on receipt,
            // refused (and reported) when malformed or non-finite.
            match Payload::from_bytes(&up_bytes) {
                Ok(mut payload) => {
                    if let Some(cap) = self.config.failures.max_examples_per_update {
                        payload.num_examples = payload.num_examples.min(cap);
                    }
                    updates.push(ClientUpdate { client: k, payload });
                }
                Err(error) => rejected.push(Rejection {
                    client: k,
                    reason: format!("update refused on receipt: {error}"),
                }),
            }
        }
        let aggregate = self.config.failures.accept_failures || failed.is_empty();
        let aggregated = if aggregate {
            phase::reached(|| RunPhase::Aggregation { round });
            let min = self.config.failures.min_fit_clients;
            let (refused, aggregated) = self.server.aggregate_at_least(round, updates, min)?;
            rejected.extend(refused);
            aggregated
        } else {
            false
        };
        // The server sends the global state (new, or unchanged) back to the round's
        // participants.
        let broadcast = self.server.global().to_bytes(dtype)?;
        let received = Payload::from_bytes(&broadcast)?;
        for (&k, entry) in training.iter_mut() {
            self.clients[k].receive(&received)?;
            entry.3 += broadcast.len();
        }
        let mut report = self.evaluate_round(round, &sampled, training, rejected, started)?;
        report.failed = failed;
        report.aggregated = aggregated;
        report.privacy = self.account(sampled.len(), aggregated);
        self.next_round += 1;
        Ok(report)
    }

    /// Under a DP strategy, steps the accountant by one release of the sampled Gaussian
    /// mechanism (noise multiplier of the strategy, sample rate `sampled / K`) when the round was
    /// aggregated, and returns `(epsilon, delta)` with `delta = 1 / (total training examples)`.
    fn account(&mut self, sampled: usize, aggregated: bool) -> Option<(f64, f64)> {
        let dp = self.server.strategy().dp_config()?;
        if aggregated {
            let rate = sampled as f64 / self.clients.len() as f64;
            self.accountant.step(dp.noise_multiplier, rate, 1);
        }
        let delta = self.privacy_delta();
        Some((self.accountant.epsilon(delta), delta))
    }

    /// The delta of the privacy reports: one over the clients' training examples in total.
    pub fn privacy_delta(&self) -> f64 {
        super::task::privacy_delta(&self.task)
    }

    /// Whether fault injection drops client `k` from `round`.
    fn dropped(&self, round: u64, k: usize) -> bool {
        let rate = self.config.failures.client_failure_rate;
        rate > 0.0
            && ChaCha8Rng::seed_from_u64(mix_seed(&[self.config.seed, round, k as u64, 4]))
                .random::<f64>()
                < rate
    }
}
