//! Settings of the CIFAR-10 experiment.

use serde::{Deserialize, Serialize};

use crate::error::{FedError, Result};
use crate::federated::{CohortMode, FailurePolicy};
use crate::federated::{OptimizerConfig, SimulationConfig, WireDtype};
use crate::lora::LoraConfig;
use crate::models::{AdapterTargets, MobileNetV3Arch};
use crate::strategy::DpSettings;
use crate::strategy::Strategy;
pub use crate::strategy::StrategyKind;

/// Every setting of the experiment; [`Default`] gives the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cifar10Config {
    /// MobileNetV3 size.
    pub arch: MobileNetV3Arch,
    /// Channel width multiplier (torchvision's `width_mult`; ImageNet weights exist for 1.0 only).
    pub width_mult: f64,
    /// Number of clients (the paper: 40).
    pub clients: usize,
    /// Number of label-sorted shards (the paper: 80, i.e. 2 per client).
    pub shards: usize,
    /// Federated rounds (the paper: 150).
    pub rounds: u64,
    /// Local epochs per round (the paper: 3).
    pub local_epochs: usize,
    /// Fraction of clients sampled per round.
    pub fraction: f64,
    /// Server aggregation.
    pub strategy: StrategyKind,
    /// FedProx's `mu` (used with [`StrategyKind::FedProx`]).
    pub mu: f64,
    /// Adapter rank, alpha and dropout (the paper: 4, 8, 0.1).
    pub lora: LoraConfig,
    /// Which layers get adapters.
    pub targets: AdapterTargets,
    /// Local learning rate (AdamW).
    pub lr: f64,
    /// Local batch size.
    pub batch_size: usize,
    /// Seed of the split, the adapters, sampling, shuffling and dropout.
    pub seed: u64,
    /// Side of the (square) network input; CIFAR's 32x32 images are resized to it.
    pub image_size: usize,
    /// Random crop (padding 4) and horizontal flip while training. Disables the cache.
    pub augment: bool,
    /// Use the frozen-prefix cache (only with [`AdapterTargets::Classifier`] and no augmentation).
    pub cache: bool,
    /// Use only the first `n` training images (quick runs); `None` for all 50,000.
    pub train_limit: Option<usize>,
    /// Use only the first `n` test images; `None` for all 10,000.
    pub test_limit: Option<usize>,
    /// Score every client on the whole test set every this many rounds (and in the last);
    /// 0 never.
    pub global_eval_every: u64,
    /// Precision of the tensors on the wire.
    pub wire_dtype: WireDtype,
    /// Failing clients: fault injection, `min_fit_clients`, `accept_failures`.
    #[serde(default)]
    pub failures: FailurePolicy,
    /// Differential privacy: the strategy is wrapped in fixed clipping with Gaussian noise.
    #[serde(default)]
    pub dp: Option<DpSettings>,
    /// Cohort-batched local training (from the cache): `Auto` by default, `Off` trains the
    /// clients one after the other, `Size(n)` caps cohorts at `n` clients. How the clients are
    /// computed, not what: a resumed run may change it.
    #[serde(default)]
    pub cohort: CohortMode,
}

impl Default for Cifar10Config {
    fn default() -> Self {
        Self {
            arch: MobileNetV3Arch::Small,
            width_mult: 1.0,
            clients: 40,
            shards: 80,
            rounds: 150,
            local_epochs: 3,
            fraction: 1.0,
            strategy: StrategyKind::FedAvg,
            mu: 0.01,
            lora: LoraConfig::paper(),
            targets: AdapterTargets::Classifier,
            lr: 1e-3,
            batch_size: 32,
            seed: 0,
            image_size: 64,
            augment: false,
            cache: true,
            train_limit: None,
            test_limit: None,
            global_eval_every: 10,
            wire_dtype: WireDtype::F32,
            failures: FailurePolicy::default(),
            dp: None,
            cohort: CohortMode::Auto,
        }
    }
}

impl Cifar10Config {
    /// A preset that finishes in a few minutes on a laptop CPU: 10 clients over 20 shards of
    /// the first 10,000 training images, 2,000 test images, 32x32 inputs, 10 rounds.
    pub fn quick() -> Self {
        Self {
            clients: 10,
            shards: 20,
            rounds: 10,
            image_size: 32,
            train_limit: Some(10_000),
            test_limit: Some(2_000),
            global_eval_every: 5,
            ..Self::default()
        }
    }

    /// Checks the settings that the simulation does not check itself.
    pub fn validate(&self) -> Result<()> {
        self.lora.validate()?;
        if self.clients == 0 || self.shards == 0 || !self.shards.is_multiple_of(self.clients) {
            return Err(FedError::config(
                "shards",
                format!(
                    "{} shards cannot be dealt evenly to {} clients",
                    self.shards, self.clients
                ),
            ));
        }
        if self.image_size < 32 {
            return Err(FedError::config(
                "image_size",
                format!("must be at least 32, got {}", self.image_size),
            ));
        }
        self.strategy.validate(self.mu)?;
        Ok(())
    }

    /// Whether training runs from the frozen-prefix cache.
    pub fn uses_cache(&self) -> bool {
        self.cache && !self.augment && self.targets == AdapterTargets::Classifier
    }

    /// The simulation settings these imply.
    pub fn simulation(&self, progress: bool) -> SimulationConfig {
        SimulationConfig {
            rounds: self.rounds,
            fraction: self.fraction,
            local_epochs: self.local_epochs,
            batch_size: self.batch_size,
            micro_batch_size: None,
            eval_batch_size: 256,
            lr: self.lr,
            optimizer: OptimizerConfig::default(),
            keep_optimizer_state: false,
            seed: self.seed,
            wire_dtype: self.wire_dtype,
            failures: self.failures.clone(),
            evaluate_initial: true,
            global_eval_every: self.global_eval_every,
            progress,
            cohort: self.cohort,
        }
    }

    /// The server strategy, wrapped in DP when [`Self::dp`] is set (its noise resolved for
    /// `delta`, one over the total training examples).
    pub fn build_strategy(&self, delta: f64) -> crate::Result<Box<dyn Strategy>> {
        let strategy = self.strategy.build(self.mu);
        let Some(dp) = &self.dp else {
            return Ok(strategy);
        };
        let sampled =
            ((self.fraction * self.clients as f64).round() as usize).clamp(1, self.clients.max(1));
        let config = dp.resolve(sampled, self.clients, self.rounds, delta, self.seed)?;
        Ok(dp.wrap(strategy, config))
    }
}
