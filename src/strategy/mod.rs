//! Server-side aggregation strategies behind one trait.
//!
//! A strategy sees only named tensors: the current global payload and the validated client
//! updates. It may keep state across rounds (server optimisers such as [`FedAdam`] keep
//! moments), and it may ask clients for a proximal term ([`FedProx`]). Robust aggregators
//! (median, trimmed mean) fit the same trait: they receive every update at once.

mod fedavg;
mod fedopt;
mod fedprox;
mod kind;

pub use fedavg::{FedAvg, Weighting, weighted_average};
pub use fedopt::{FedAdam, FedYogi, ServerOptConfig};
pub use fedprox::FedProx;
pub use kind::StrategyKind;

use crate::error::Result;
use crate::federated::{ClientUpdate, Payload};

/// How the server turns client updates into the next global state.
pub trait Strategy: Send {
    /// A short name for reports (`fedavg`, `fedprox(mu=0.01)`).
    fn name(&self) -> String;

    /// Aggregates `updates` (already validated against `global`: same names and shapes, finite
    /// values, at least one update) into the next global payload.
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
}
