//! Choosing a strategy by name (configuration files, command lines).

use serde::{Deserialize, Serialize};

use super::{
    Bulyan, FedAdagrad, FedAdam, FedAvg, FedAvgM, FedMedian, FedProx, FedTrimmedAvg, FedYogi, Krum,
    MultiKrum, ServerOptConfig, Strategy,
};
use crate::error::{FedError, Result};

/// A server strategy by name: what experiment settings and command lines choose from. The
/// robust and adaptive strategies take Flower 1.42's defaults (build them directly for other
/// settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    /// FedAvg weighted by example count.
    #[default]
    FedAvg,
    /// FedProx with a proximal weight `mu`.
    FedProx,
    /// FedAvgM with server learning rate 1 and momentum 0.9 (Flower's default momentum, 0,
    /// would be plain FedAvg).
    FedAvgM,
    /// FedAdagrad with [`ServerOptConfig::fedadagrad`].
    FedAdagrad,
    /// FedAdam with [`ServerOptConfig::fedadam`].
    FedAdam,
    /// FedYogi with [`ServerOptConfig::fedyogi`].
    FedYogi,
    /// Coordinate-wise median.
    FedMedian,
    /// Coordinate-wise trimmed mean, `beta = 0.2`.
    FedTrimmedAvg,
    /// Krum with `f = 0`.
    Krum,
    /// MultiKrum with `f = 0`, selecting one update (Flower's defaults).
    MultiKrum,
    /// Bulyan with `f = 0`.
    Bulyan,
}

/// Every kind with its name, in declaration order.
const NAMES: [(StrategyKind, &str); 11] = [
    (StrategyKind::FedAvg, "fedavg"),
    (StrategyKind::FedProx, "fedprox"),
    (StrategyKind::FedAvgM, "fedavgm"),
    (StrategyKind::FedAdagrad, "fedadagrad"),
    (StrategyKind::FedAdam, "fedadam"),
    (StrategyKind::FedYogi, "fedyogi"),
    (StrategyKind::FedMedian, "fedmedian"),
    (StrategyKind::FedTrimmedAvg, "fedtrimmedavg"),
    (StrategyKind::Krum, "krum"),
    (StrategyKind::MultiKrum, "multikrum"),
    (StrategyKind::Bulyan, "bulyan"),
];

impl StrategyKind {
    /// The strategy; `mu` is FedProx's proximal weight (ignored by the others).
    pub fn build(self, mu: f64) -> Box<dyn Strategy> {
        match self {
            Self::FedAvg => Box::new(FedAvg::new()),
            Self::FedProx => Box::new(FedProx::new(mu)),
            Self::FedAvgM => Box::new(FedAvgM::new(1.0, 0.9)),
            Self::FedAdagrad => Box::new(FedAdagrad::new(ServerOptConfig::fedadagrad())),
            Self::FedAdam => Box::new(FedAdam::new(ServerOptConfig::fedadam())),
            Self::FedYogi => Box::new(FedYogi::new(ServerOptConfig::fedyogi())),
            Self::FedMedian => Box::new(FedMedian::new()),
            Self::FedTrimmedAvg => Box::new(FedTrimmedAvg::new(0.2)),
            Self::Krum => Box::new(Krum::new(0)),
            Self::MultiKrum => Box::new(MultiKrum::new(0, 1)),
            Self::Bulyan => Box::new(Bulyan::new(0)),
        }
    }

    /// The name [`std::str::FromStr`] parses (`fedavg`, `fedadam`, ...).
    pub fn as_str(self) -> &'static str {
        NAMES
            .iter()
            .find(|(kind, _)| *kind == self)
            .map_or("fedavg", |(_, name)| name)
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

    /// One of `fedavg`, `fedprox`, `fedavgm`, `fedadagrad`, `fedadam`, `fedyogi`, `fedmedian`,
    /// `fedtrimmedavg`, `krum`, `multikrum`, `bulyan`.
    fn from_str(name: &str) -> Result<Self> {
        NAMES
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(kind, _)| *kind)
            .ok_or_else(|| {
                let names: Vec<&str> = NAMES.iter().map(|(_, n)| *n).collect();
                FedError::config(
                    "strategy",
                    format!("must be one of {}, got `{name}`", names.join(", ")),
                )
            })
    }
}
