//! **The sharing rule**: which adapter matrices train locally and which travel to the server.
//!
//! This is the one place that decides it; the payload, the server and the strategies only see
//! the named tensors this rule selects.

use serde::{Deserialize, Serialize};

pub use crate::params::path::AdapterMatrix;

/// What trains and what travels, for every adapter of a model.
///
/// | rule | A | B |
/// |---|---|---|
/// | [`Sharing::PLora`] (the paper) | trained, **private** | trained, shared |
/// | [`Sharing::FedAvgLora`] (FLoRA) | trained, shared | trained, shared |
/// | [`Sharing::FfaLora`] | **frozen**, private | trained, shared |
/// | [`Sharing::FedSaLora`] | trained, shared | trained, **private** |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Sharing {
    /// pLoRA (the paper): each client keeps its `A`; only `B` is averaged.
    #[default]
    PLora,
    /// FedAvg-LoRA / FLoRA: both `A` and `B` are averaged.
    FedAvgLora,
    /// FFA-LoRA: `A` stays at its random initialisation (frozen); `B` is averaged.
    FfaLora,
    /// FedSA-LoRA: `A` is averaged; each client keeps its `B`.
    FedSaLora,
}

impl Sharing {
    /// Every rule, in the order of the table above.
    pub const ALL: [Sharing; 4] = [
        Sharing::PLora,
        Sharing::FedAvgLora,
        Sharing::FfaLora,
        Sharing::FedSaLora,
    ];

    /// Whether the matrix is updated by local training.
    pub fn trains(self, matrix: AdapterMatrix) -> bool {
        !matches!((self, matrix), (Sharing::FfaLora, AdapterMatrix::A))
    }

    /// Whether the matrix is sent to the server and replaced by the aggregate.
    pub fn shares(self, matrix: AdapterMatrix) -> bool {
        !matches!(
            (self, matrix),
            (Sharing::PLora | Sharing::FfaLora, AdapterMatrix::A)
                | (Sharing::FedSaLora, AdapterMatrix::B)
        )
    }

    /// A short, stable name (`plora`, `fedavg-lora`, `ffa-lora`, `fedsa-lora`).
    pub fn name(self) -> &'static str {
        match self {
            Sharing::PLora => "plora",
            Sharing::FedAvgLora => "fedavg-lora",
            Sharing::FfaLora => "ffa-lora",
            Sharing::FedSaLora => "fedsa-lora",
        }
    }
}

impl std::fmt::Display for Sharing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Sharing {
    type Err = crate::FedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sharing::ALL
            .into_iter()
            .find(|rule| rule.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                crate::FedError::config(
                    "sharing",
                    format!(
                        "unknown rule `{s}` (expected plora, fedavg-lora, ffa-lora or fedsa-lora)"
                    ),
                )
            })
    }
}
