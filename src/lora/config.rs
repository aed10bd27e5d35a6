use serde::{Deserialize, Serialize};

use crate::error::{FedError, Result};

/// Hyper-parameters of a low-rank adapter, as in PEFT's `LoraConfig`.
///
/// The adapted layer computes `W0 x + (alpha / rank) * B A dropout(x)`.
/// The paper's settings are `rank = 4, alpha = 8, dropout = 0.1` ([`LoraConfig::paper`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank `r` of the update `B A` (A is `[r, in]`, B is `[out, r]`).
    pub rank: usize,
    /// Scaling numerator: the update is multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Dropout probability applied to the adapter's input (training only).
    pub dropout: f64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self::paper()
    }
}

impl LoraConfig {
    /// The paper's configuration: rank 4, alpha 8, dropout 0.1.
    pub fn paper() -> Self {
        Self {
            rank: 4,
            alpha: 8.0,
            dropout: 0.1,
        }
    }

    /// A configuration with the given rank and alpha and no dropout.
    pub fn new(rank: usize, alpha: f64) -> Self {
        Self {
            rank,
            alpha,
            dropout: 0.0,
        }
    }

    /// Returns the configuration with another dropout probability.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// The factor `alpha / rank` applied to the low-rank update.
    pub fn scaling(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Checks that rank is positive, alpha finite and dropout in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(FedError::config("rank", "must be at least 1"));
        }
        if !self.alpha.is_finite() {
            return Err(FedError::config(
                "alpha",
                format!("must be finite, got {}", self.alpha),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(FedError::config(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        Ok(())
    }
}
