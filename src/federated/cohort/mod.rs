//! Cohort-batched local training: the sampled clients of a round that share an architecture
//! train together as one batched computation instead of one after the other.
//!
//! Their trainable tensors and optimiser moments are stacked along a leading client axis
//! (`[C, ...]`), their batches are stacked (`[C, batch, features]`), and every step is one
//! chain of batched matrix products for all of them. The loss of a step is the sum over clients
//! of each client's mean loss, so the gradient of a client's tensors is exactly that client's
//! own. What makes the result equal sequential training (within rounding):
//!
//! * each client draws its own batches in its own order ([`schedule`], the same code the
//!   sequential [`crate::federated::ClientRuntime::train`] uses);
//! * a client with fewer steps than the others sits the remaining steps out: members are sorted
//!   by their number of steps, so the clients still training at a step are a prefix of the
//!   cohort and the others' tensors, moments and step counts are not touched at all;
//! * a short last batch is a smaller mean: rows carry per-client weights `1 / rows`, padding
//!   rows weigh 0;
//! * the optimiser ([`CohortOptimizer`]) is burn's AdamW or SGD, formula for formula, per client;
//! * FedProx's term pulls each client towards the round's global tensors;
//! * dropout draws each client's masks from a replica of the generator the sequential run
//!   seeds for that client and round ([`DropoutStream`]).
//!
//! A task opts in through [`crate::FederatedTask::cohort`], returning a [`CohortTrainer`];
//! [`crate::Simulation`] then trains every cohort-capable client that way
//! ([`crate::SimulationConfig::cohort`]).

mod dropout;
mod host;
mod keystream;
mod optimizer;
mod round;
pub mod schedule;
mod stack;
mod tally;

use std::collections::HashSet;

use burn::module::{AutodiffModule, ParamId};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

pub use dropout::DropoutStream;
pub use host::{HostOptimizer, HostParam, prox_pull};
pub use optimizer::{CohortOptimizer, StackedParam};
pub use schedule::{CohortSchedule, StepRows, client_batches, shuffle_epoch};
pub use stack::{ProxTargets, stack_params, unstack_param};
pub use tally::CohortTally;

use super::client::ClientConfig;
use crate::error::Result;
use crate::params::Payload;

/// Whether and how [`crate::Simulation`] trains clients in cohorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CohortMode {
    /// Every client trains on its own, one after the other.
    Off,
    /// Cohorts as large as the task's memory budget allows, or the size the task knows to be
    /// fastest on its backend when smaller ([`CohortTrainer::max_cohort_size`]); the default. Tasks without a
    /// [`CohortTrainer`] train sequentially.
    #[default]
    Auto,
    /// Cohorts of at most this many clients (1 trains each client alone, through the batched
    /// code).
    Size(usize),
}

impl CohortMode {
    /// Parses `off`, `auto` or a positive number (the `--cohort-size` flag).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" | "0" => Ok(Self::Off),
            "auto" => Ok(Self::Auto),
            other => match other.parse::<usize>() {
                Ok(n) => Ok(Self::Size(n)),
                Err(_) => Err(crate::FedError::config(
                    "cohort_size",
                    format!("expected `off`, `auto` or a number of clients, got `{text}`"),
                )),
            },
        }
    }

    /// The cohort size for `clients` clients under a memory bound of `max` clients (`None`:
    /// train sequentially).
    pub fn size(self, clients: usize, max: usize) -> Option<usize> {
        match self {
            Self::Off => None,
            Self::Auto => Some(max.clamp(1, clients.max(1))),
            Self::Size(0) => None,
            Self::Size(n) => Some(n.min(clients.max(1))),
        }
    }
}

/// One client handed to a [`CohortTrainer`]: its model as it stands (the global tensors of the
/// round already received) and which of its parameters train under the sharing rule.
pub struct CohortMember<'a, M> {
    /// The client's index (its partition of the task).
    pub client: usize,
    /// The model on the inner backend.
    pub model: &'a M,
    /// The ids of the parameters that train.
    pub trainable: &'a HashSet<ParamId>,
}

/// What a [`CohortTrainer`] returns for one member.
pub struct CohortOutcome<M> {
    /// The trained model (same parameter ids as the member's).
    pub model: M,
    /// Mean training loss over every example the client saw in the round.
    pub train_loss: f64,
}

/// A task's batched local training of several clients at once. Implementations must give what
/// [`crate::federated::ClientRuntime::train`] gives for each member (within rounding), with a
/// fresh optimiser per round.
pub trait CohortTrainer<B: AutodiffBackend, M: AutodiffModule<B>> {
    /// Which cohort `member` trains in: clients with equal keys (same architecture, same
    /// trainable tensors) train together; `None` trains the client sequentially (for example an
    /// architecture the batched code does not cover).
    fn cohort_key(&self, member: &CohortMember<'_, M::InnerModule>) -> Option<String>;

    /// The largest cohort the task's memory budget allows under `config` (a task may return
    /// less where larger cohorts are known to be slower, as on a CPU backend).
    fn max_cohort_size(&self, config: &ClientConfig) -> usize;

    /// Trains `members` together for `config.local_epochs` epochs of `round`, with FedProx's
    /// term towards `prox` (the round's global payload and `mu`) when given. Returns one outcome
    /// per member, in order: an `Err` for a member leaves that client out of the round (its
    /// model unchanged), as a failing sequential client is.
    fn train_cohort(
        &self,
        members: &[CohortMember<'_, M::InnerModule>],
        round: u64,
        config: &ClientConfig,
        prox: Option<(&Payload, f64)>,
    ) -> Result<Vec<Result<CohortOutcome<M::InnerModule>>>>;
}
