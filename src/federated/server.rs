//! The server: holds the global shared tensors, validates updates, runs the strategy.

use crate::error::{FedError, Result};
use crate::federated::report::Rejection;
pub use crate::params::ClientUpdate;
use crate::params::Payload;
use crate::strategy::Strategy;

/// The global state and the strategy that advances it.
#[derive(Debug, Clone)]
pub struct Server<S> {
    global: Payload,
    strategy: S,
}

impl<S: Strategy> Server<S> {
    /// Starts from `initial` (usually the shared tensors of one freshly built client).
    pub fn new(initial: Payload, strategy: S) -> Result<Self> {
        initial.check_finite()?;
        Ok(Self {
            global: initial,
            strategy,
        })
    }

    /// The current global shared tensors.
    pub fn global(&self) -> &Payload {
        &self.global
    }

    /// The strategy.
    pub fn strategy(&self) -> &S {
        &self.strategy
    }

    /// The strategy, mutably (to restore its state from a checkpoint).
    pub fn strategy_mut(&mut self) -> &mut S {
        &mut self.strategy
    }

    /// Replaces the global state (used when resuming from a checkpoint).
    pub fn set_global(&mut self, global: Payload) -> Result<()> {
        global.check_matches(&self.global)?;
        self.global = global;
        Ok(())
    }

    /// Checks an update against the global state: same tensor names and shapes, finite values.
    pub fn validate(&self, update: &ClientUpdate) -> Result<()> {
        update
            .payload
            .check_matches(&self.global)
            .map_err(|source| FedError::RejectedUpdate {
                client: update.client,
                source,
            })
    }

    /// Validates every update, aggregates the accepted ones into the new global state and
    /// returns the rejections. With no accepted update, or if the strategy fails or produces a
    /// non-finite value, the global state stays as it was (the error is returned in the last
    /// case).
    pub fn aggregate(&mut self, round: u64, updates: Vec<ClientUpdate>) -> Result<Vec<Rejection>> {
        Ok(self.aggregate_at_least(round, updates, 1)?.0)
    }

    /// Like [`Server::aggregate`], but aggregates only when at least `min_accepted` updates
    /// pass validation (Flower's `min_fit_clients`); returns the rejections and whether the
    /// global state advanced. The updates' example counts must not overflow a `u64` in sum.
    pub fn aggregate_at_least(
        &mut self,
        round: u64,
        updates: Vec<ClientUpdate>,
        min_accepted: usize,
    ) -> Result<(Vec<Rejection>, bool)> {
        let mut accepted = Vec::with_capacity(updates.len());
        let mut rejected = Vec::new();
        for update in updates {
            match self.validate(&update) {
                Ok(()) => accepted.push(update),
                Err(error) => rejected.push(Rejection {
                    client: update.client,
                    reason: error.to_string(),
                }),
            }
        }
        if accepted.is_empty() || accepted.len() < min_accepted {
            return Ok((rejected, false));
        }
        accepted
            .iter()
            .try_fold(0u64, |sum, u| sum.checked_add(u.payload.num_examples))
            .ok_or_else(|| {
                FedError::config(
                    "num_examples",
                    format!("round {round}: the updates' example counts overflow a u64 in sum"),
                )
            })?;
        let next = self.strategy.aggregate(round, &self.global, &accepted)?;
        next.check_matches(&self.global)?;
        self.global = next;
        self.global.round = round;
        Ok((rejected, true))
    }
}
