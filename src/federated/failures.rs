//! What a round does with clients that fail: fault injection, Flower's `min_fit_clients` and
//! `accept_failures`, and a cap on the example count one update may claim.

use serde::{Deserialize, Serialize};

use crate::error::{FedError, Result};

/// How a simulated round treats failing clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailurePolicy {
    /// Fault injection: each sampled client is dropped from a round with this probability
    /// (seeded by `(seed, round, client)`), as a crashed or disconnected client would be: it
    /// sends nothing and is reported in [`super::RoundReport::failed`]. 0 never drops.
    pub client_failure_rate: f64,
    /// Aggregate only when at least this many updates are accepted (Flower's
    /// `min_fit_clients`); otherwise the round leaves the global state unchanged. Default 1.
    pub min_fit_clients: usize,
    /// Aggregate a round in which some sampled clients failed (Flower's `accept_failures`,
    /// default true); when false, any failure leaves the global state unchanged that round.
    pub accept_failures: bool,
    /// Cap on the example count an update may claim (FedAvg's weight), so that one client
    /// cannot dominate the average by reporting a huge `num_examples`. `None`: no cap.
    pub max_examples_per_update: Option<u64>,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            client_failure_rate: 0.0,
            min_fit_clients: 1,
            accept_failures: true,
            max_examples_per_update: None,
        }
    }
}

impl FailurePolicy {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.client_failure_rate) {
            return Err(FedError::config(
                "client_failure_rate",
                format!("must be in [0, 1), got {}", self.client_failure_rate),
            ));
        }
        if self.min_fit_clients == 0 {
            return Err(FedError::config("min_fit_clients", "must be at least 1"));
        }
        if self.max_examples_per_update == Some(0) {
            return Err(FedError::config(
                "max_examples_per_update",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
