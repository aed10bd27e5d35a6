use serde::{Deserialize, Serialize};

use super::{FedAvg, Strategy};
use crate::error::Result;
use crate::params::{ClientUpdate, Payload};

/// FedProx (Li et al. 2020): FedAvg on the server, and on each client the loss
/// `f(w) + mu/2 ||w - w_global||^2` over its shared trainable tensors
/// (the client adds it: `federated::proximal_term`, which the simulation and a Flower node add for you).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FedProx {
    /// The proximal coefficient.
    pub mu: f64,
    /// The server-side average.
    pub fedavg: FedAvg,
}

impl FedProx {
    /// FedProx with coefficient `mu` and example-weighted averaging.
    pub fn new(mu: f64) -> Self {
        Self {
            mu,
            fedavg: FedAvg::new(),
        }
    }
}

impl Strategy for FedProx {
    fn name(&self) -> String {
        format!("fedprox(mu={})", self.mu)
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        self.fedavg.aggregate(round, global, updates)
    }

    fn proximal_mu(&self) -> Option<f64> {
        Some(self.mu)
    }
}
