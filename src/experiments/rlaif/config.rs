//! Settings of the RLAIF-V experiment.

use serde::{Deserialize, Serialize};

use super::answers::AnswerEvalConfig;
use crate::error::{FedError, Result};
use crate::federated::FailurePolicy;
use crate::federated::{OptimizerConfig, SimulationConfig, WireDtype};
use crate::lora::{LoraConfig, Sharing};
use crate::models::Precision;
use crate::strategy::DpSettings;
use crate::strategy::Strategy;
use crate::strategy::StrategyKind;

/// Every setting of the experiment; [`Default`] gives the paper's (Section 4: 4 clients, one
/// or more source datasets each, 5 rounds of 3 local epochs, batch 16, AdamW at 1e-6, pLoRA
/// rank 4 / alpha 8 / dropout 0.1 on the last decoder layer's self-attention `q_proj` and
/// `v_proj`, FedAvg).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RlaifConfig {
    /// Number of clients (the paper: 4). Non-IID: source datasets grouped into this many
    /// clients; IID: a random share each.
    pub clients: usize,
    /// Deal samples uniformly at random instead of by source dataset.
    pub iid: bool,
    /// Centralised training (the paper's Figure 2): one trainer holding every client's data,
    /// the same rounds and local epochs.
    pub centralized: bool,
    /// Federated rounds (the paper: 5).
    pub rounds: u64,
    /// Local epochs per round (the paper: 3).
    pub local_epochs: usize,
    /// Local batch size (the paper: 16).
    pub batch_size: usize,
    /// Gradient accumulation: run each batch as micro-batches of at most this many samples
    /// and step once on their combined gradient (the same step as the whole batch, with only
    /// one micro-batch's activations in memory). `None` runs whole batches.
    #[serde(default)]
    pub micro_batch_size: Option<usize>,
    /// Cohort-batched local training from the frozen-prefix cache
    /// ([`crate::experiments::vqa::cohort`]): `Auto` (the default) trains the clients of a
    /// round together in cohorts, `Off` one after the other, `Size(n)` in cohorts of at most
    /// `n`. The same results either way (within rounding); without the cache, or with
    /// micro-batches, clients train one after the other.
    #[serde(default)]
    pub cohort: crate::federated::CohortMode,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Local learning rate, AdamW (the paper: 1e-6).
    pub lr: f64,
    /// Adapters of every rule except FFA-LoRA (the paper: rank 4, alpha 8, dropout 0.1).
    pub lora: LoraConfig,
    /// Adapters under FFA-LoRA (its authors recommend rank 8, alpha 8).
    pub ffa_lora: LoraConfig,
    /// Server aggregation.
    pub strategy: StrategyKind,
    /// FedProx's `mu` (used with [`StrategyKind::FedProx`]).
    pub mu: f64,
    /// Keep a random subset of at most this many samples per client (before the train/test
    /// split); `None` keeps all.
    pub max_samples_per_client: Option<usize>,
    /// Fraction of each client's samples held out as its test split, in `(0, 1)`.
    pub test_fraction: f64,
    /// Longest prompt in tokens (`<s> question </s>`), longer ones are cut.
    pub max_prompt_len: usize,
    /// Longest answer in tokens (`<s> answer </s>`), longer ones are cut.
    pub max_answer_len: usize,
    /// Train from the frozen-prefix cache (the last decoder layer's inputs computed once).
    pub cache: bool,
    /// Precision the frozen prefix runs in when the cache is built (f16/bf16 for speed and
    /// memory on a GPU; the adapters always train in f32). Needs [`Self::cache`].
    #[serde(default)]
    pub prefix_precision: Precision,
    /// Generated answers written per client after the last round.
    pub answers_per_client: usize,
    /// Most new tokens of generated answers (those written and those scored).
    pub answer_max_new_tokens: usize,
    /// Answer-level evaluation of generated answers (exact match, token F1, VQA accuracy).
    #[serde(default)]
    pub answer_eval: AnswerEvalConfig,
    /// Seed of the split, the adapters, shuffling and dropout.
    pub seed: u64,
    /// Precision of the tensors on the wire.
    pub wire_dtype: WireDtype,
    /// Failing clients: fault injection, `min_fit_clients`, `accept_failures`.
    #[serde(default)]
    pub failures: FailurePolicy,
    /// Differential privacy: the strategy is wrapped in fixed clipping with Gaussian noise.
    #[serde(default)]
    pub dp: Option<DpSettings>,
}

impl Default for RlaifConfig {
    fn default() -> Self {
        Self {
            clients: 4,
            iid: false,
            centralized: false,
            rounds: 5,
            local_epochs: 3,
            batch_size: 16,
            micro_batch_size: None,
            cohort: crate::federated::CohortMode::Auto,
            eval_batch_size: 16,
            lr: 1e-6,
            lora: LoraConfig::paper(),
            ffa_lora: LoraConfig {
                rank: 8,
                alpha: 8.0,
                dropout: 0.1,
            },
            strategy: StrategyKind::FedAvg,
            mu: 0.01,
            max_samples_per_client: None,
            test_fraction: 0.2,
            max_prompt_len: 256,
            max_answer_len: 256,
            cache: true,
            prefix_precision: Precision::F32,
            answers_per_client: 3,
            answer_max_new_tokens: 64,
            answer_eval: AnswerEvalConfig::default(),
            seed: 42,
            wire_dtype: WireDtype::F32,
            failures: FailurePolicy::default(),
            dp: None,
        }
    }
}

impl RlaifConfig {
    /// A preset that finishes in a few minutes on a CPU: 2 clients of at most 12 samples,
    /// 2 rounds of 1 local epoch, batch 4, prompts and answers cut to 48 tokens, and a
    /// learning rate of 1e-4 (so that so few steps move the scores at all).
    pub fn quick() -> Self {
        Self {
            clients: 2,
            rounds: 2,
            local_epochs: 1,
            batch_size: 4,
            eval_batch_size: 4,
            lr: 1e-4,
            max_samples_per_client: Some(12),
            test_fraction: 0.25,
            max_prompt_len: 48,
            max_answer_len: 48,
            answers_per_client: 2,
            answer_max_new_tokens: 24,
            ..Self::default()
        }
    }

    /// The adapters of `sharing`: [`Self::ffa_lora`] for FFA-LoRA, [`Self::lora`] otherwise.
    pub fn lora_for(&self, sharing: Sharing) -> LoraConfig {
        match sharing {
            Sharing::FfaLora => self.ffa_lora,
            _ => self.lora,
        }
    }

    /// Number of trainers the simulation runs: 1 when centralised.
    pub fn num_trainers(&self) -> usize {
        if self.centralized { 1 } else { self.clients }
    }

    /// The output sub-folder of a rule's run: the rule's name, prefixed with `centralized-`
    /// for centralised training.
    pub fn run_name(&self, sharing: Sharing) -> String {
        if self.centralized {
            format!("centralized-{}", sharing.name())
        } else {
            sharing.name().to_string()
        }
    }

    /// Checks the settings that the simulation does not check itself.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] naming the first bad setting.
    pub fn validate(&self) -> Result<()> {
        self.lora.validate()?;
        self.ffa_lora.validate()?;
        if self.clients == 0 {
            return Err(FedError::config("clients", "must be at least 1"));
        }
        if self.rounds == 0 || self.local_epochs == 0 {
            return Err(FedError::config(
                "rounds",
                "rounds and local epochs must be at least 1",
            ));
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return Err(FedError::config("batch_size", "must be at least 1"));
        }
        if !self.cache && self.prefix_precision != Precision::F32 {
            return Err(FedError::config(
                "prefix_precision",
                format!(
                    "{} applies to the frozen-prefix cache, which is off",
                    self.prefix_precision
                ),
            ));
        }
        if self.micro_batch_size == Some(0) {
            return Err(FedError::config("micro_batch_size", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(FedError::config(
                "lr",
                format!("must be > 0, got {}", self.lr),
            ));
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(FedError::config(
                "test_fraction",
                format!("must be in (0, 1), got {}", self.test_fraction),
            ));
        }
        if self.max_prompt_len < 2 || self.max_answer_len < 2 {
            return Err(FedError::config(
                "max_length",
                "prompts and answers need room for <s> and </s> (at least 2 tokens)",
            ));
        }
        if self.max_samples_per_client == Some(0) {
            return Err(FedError::config(
                "max_samples_per_client",
                "must be at least 1",
            ));
        }
        self.strategy.validate(self.mu)?;
        self.answer_eval.validate()?;
        Ok(())
    }

    /// The simulation settings these imply.
    pub fn simulation(&self, progress: bool) -> SimulationConfig {
        SimulationConfig {
            rounds: self.rounds,
            fraction: 1.0,
            local_epochs: self.local_epochs,
            batch_size: self.batch_size,
            micro_batch_size: self.micro_batch_size,
            eval_batch_size: self.eval_batch_size,
            lr: self.lr,
            optimizer: OptimizerConfig::default(),
            keep_optimizer_state: false,
            seed: self.seed,
            wire_dtype: self.wire_dtype,
            failures: self.failures.clone(),
            evaluate_initial: true,
            global_eval_every: 0,
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
        let sampled = ((1.0 * self.clients as f64).round() as usize).clamp(1, self.clients.max(1));
        let config = dp.resolve(sampled, self.clients, self.rounds, delta, self.seed)?;
        Ok(dp.wrap(strategy, config))
    }
}
