//! Server-side aggregation strategies behind one trait.
//!
//! A strategy sees only named tensors: the current global payload and the validated client
//! updates. It may keep state across rounds (server optimisers such as [`FedAdam`] keep
//! moments, [`FedAvgM`] a momentum buffer), which [`Strategy::save_state`] and
//! [`Strategy::load_state`] capture for durable runs, and it may ask clients for a proximal term
//! ([`FedProx`]) or for clipped updates ([`DpClientSideFixedClipping`]). Robust aggregators
//! ([`FedMedian`], [`FedTrimmedAvg`], [`Krum`], [`MultiKrum`], [`Bulyan`]) fit the same trait:
//! they receive every update at once.
//!
//! Every strategy but [`FedProx`] follows Flower 1.42's message API
//! (`flwr.serverapp.strategy`) operation for operation, in the same floating-point types
//! (numpy keeps `float32` arrays in `float32`); `tests/strategy_flower.rs` checks them against
//! vectors made by Flower's own classes (`scripts/generate_strategy_vectors.py`). Where the
//! results are not bit-identical, the strategy's documentation says by how much they differ.

mod bulyan;
mod dp;
mod dp_fixed_clipping;
mod fedadagrad;
mod fedadam;
mod fedavg;
mod fedavgm;
mod fedmedian;
mod fedopt;
mod fedprox;
mod fedyogi;
mod kind;
mod krum;
mod math;
mod state;
mod trimmed_avg;

pub use bulyan::Bulyan;
pub use dp::{DpConfig, DpSettings, clip_update};
pub use dp_fixed_clipping::{DpClientSideFixedClipping, DpFixedClipping};
pub use fedadagrad::FedAdagrad;
pub use fedadam::FedAdam;
pub use fedavg::{FedAvg, Weighting, weighted_average};
pub use fedavgm::FedAvgM;
pub use fedmedian::FedMedian;
pub use fedopt::ServerOptConfig;
pub use fedprox::FedProx;
pub use fedyogi::FedYogi;
pub use kind::StrategyKind;
pub use krum::{Krum, MultiKrum, krum_scores};
pub use math::flower_weighted_average;
pub use state::StrategyState;
pub use trimmed_avg::FedTrimmedAvg;

use crate::error::Result;
use crate::params::{ClientUpdate, Payload};

/// How the server turns client updates into the next global state.
pub trait Strategy: Send {
    /// A short name for reports (`fedavg`, `fedprox(mu=0.01)`).
    fn name(&self) -> String;

    /// Aggregates `updates` (already validated against `global`: same names and shapes, finite
    /// values, at least one update) into the next global payload. `round` is Flower's 1-based
    /// `server_round`.
    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload>;

    /// The proximal coefficient `mu` clients add to their loss (`mu/2 ||w - w_global||^2`), if any.
    fn proximal_mu(&self) -> Option<f64> {
        None
    }

    /// The L2 norm to which clients must clip their update (`update - global`, whole model)
    /// before sending it, with [`clip_update`]; `None` (the default) when the strategy does not
    /// ask for client-side clipping.
    fn client_clipping_norm(&self) -> Option<f64> {
        None
    }

    /// The differential-privacy settings of a DP strategy ([`DpFixedClipping`],
    /// [`DpClientSideFixedClipping`]), so the runner can account the privacy spent; `None` (the
    /// default) for the others.
    fn dp_config(&self) -> Option<DpConfig> {
        None
    }

    /// The state carried from one round to the next (moments, momentum), for durable runs.
    /// The default, for stateless strategies, is an empty [`StrategyState`] named after
    /// [`Strategy::name`].
    ///
    /// # Errors
    /// Implementations may fail; the provided ones do not.
    fn save_state(&self) -> Result<StrategyState> {
        Ok(StrategyState::new(self.name()))
    }

    /// Restores what [`Strategy::save_state`] returned: afterwards the strategy aggregates the
    /// next round bit for bit as the one that saved it would have. The default accepts only a
    /// state without tensors, scalars or inner state.
    ///
    /// # Errors
    /// [`crate::FedError::InvalidConfig`] when the state belongs to another strategy or does
    /// not fit it.
    fn load_state(&mut self, state: StrategyState) -> Result<()> {
        state.expect_empty()
    }
}

impl Strategy for Box<dyn Strategy> {
    fn name(&self) -> String {
        (**self).name()
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        (**self).aggregate(round, global, updates)
    }

    fn proximal_mu(&self) -> Option<f64> {
        (**self).proximal_mu()
    }

    fn client_clipping_norm(&self) -> Option<f64> {
        (**self).client_clipping_norm()
    }

    fn dp_config(&self) -> Option<DpConfig> {
        (**self).dp_config()
    }

    fn save_state(&self) -> Result<StrategyState> {
        (**self).save_state()
    }

    fn load_state(&mut self, state: StrategyState) -> Result<()> {
        (**self).load_state(state)
    }
}
