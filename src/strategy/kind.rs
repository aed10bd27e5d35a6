//! Choosing a strategy by name (configuration files, command lines).

use serde::{Deserialize, Serialize};

use super::{FedAvg, FedProx, Strategy};
use crate::error::{FedError, Result};

/// A server strategy by name: what experiment settings and command lines choose from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    /// FedAvg weighted by example count.
    #[default]
    FedAvg,
    /// FedProx with a proximal weight `mu`.
    FedProx,
}

impl StrategyKind {
    /// The strategy; `mu` is FedProx's proximal weight (ignored by FedAvg).
    pub fn build(self, mu: f64) -> Box<dyn Strategy> {
        match self {
            Self::FedAvg => Box::new(FedAvg::new()),
            Self::FedProx => Box::new(FedProx::new(mu)),
        }
    }

    /// Checks `mu` when the strategy uses it.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for FedProx with a negative or non-finite `mu`.
    pub fn validate(self, mu: f64) -> Result<()> {
        if self == Self::FedProx && !(mu.is_finite() && mu >= 0.0) {
            return Err(FedError::config("mu", format!("must be >= 0, got {mu}")));
        }
        Ok(())
    }
}

impl std::str::FromStr for StrategyKind {
    type Err = FedError;

    /// `fedavg` or `fedprox`.
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "fedavg" => Ok(Self::FedAvg),
            "fedprox" => Ok(Self::FedProx),
            _ => Err(FedError::config(
                "strategy",
                format!("must be fedavg or fedprox, got `{name}`"),
            )),
        }
    }
}
