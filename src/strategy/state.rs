//! What a stateful strategy carries between rounds, as a plain serde value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{FedError, Result};

/// A strategy's state between rounds ([`super::Strategy::save_state`]).
///
/// Tensors are stored as `f64` so that `f32` state (Flower keeps its moments in `float32`)
/// round-trips exactly, through JSON too (`serde_json` with `float_roundtrip`). Hyper-parameters
/// are not state: restore into a strategy built with the same configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StrategyState {
    /// The kind of strategy that saved it (`fedadam`, `fedavgm`, `dp-fixed-clipping`, ...).
    pub name: String,
    /// The last round the strategy aggregated (0 before the first).
    pub round: u64,
    /// Named state tensors (`m/<tensor>`, `v/<tensor>`, ...), flattened row-major.
    pub tensors: BTreeMap<String, Vec<f64>>,
    /// Named scalars.
    pub scalars: BTreeMap<String, f64>,
    /// The state of a wrapped strategy (differential-privacy wrappers).
    pub inner: Option<Box<StrategyState>>,
}

impl StrategyState {
    /// An empty state named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// `Ok` when the state carries nothing (what a stateless strategy can restore).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] when it has tensors, scalars or an inner state.
    pub fn expect_empty(&self) -> Result<()> {
        if self.tensors.is_empty() && self.scalars.is_empty() && self.inner.is_none() {
            Ok(())
        } else {
            Err(FedError::config(
                "state",
                format!(
                    "a stateless strategy cannot restore the state of `{}`",
                    self.name
                ),
            ))
        }
    }

    /// `Ok` when the state was saved by a strategy of kind `name`.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] otherwise.
    pub fn expect_name(&self, name: &str) -> Result<()> {
        if self.name == name {
            Ok(())
        } else {
            Err(FedError::config(
                "state",
                format!(
                    "was saved by `{}`, cannot restore it into `{name}`",
                    self.name
                ),
            ))
        }
    }

    /// Stores `f32` values under `key` (exactly, as `f64`).
    pub fn put_f32(&mut self, key: String, values: &[f32]) {
        self.tensors
            .insert(key, values.iter().map(|&v| f64::from(v)).collect());
    }

    /// Takes the values stored under `key` back as `f32`.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] when a value is not an `f32` (the state was not written by
    /// [`StrategyState::put_f32`]).
    pub fn take_f32(&mut self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(values) = self.tensors.remove(key) else {
            return Ok(None);
        };
        values
            .into_iter()
            .map(|v| {
                let narrow = v as f32;
                if f64::from(narrow) == v || v.is_nan() {
                    Ok(narrow)
                } else {
                    Err(FedError::config(
                        "state",
                        format!("tensor `{key}` holds {v}, which is not an f32"),
                    ))
                }
            })
            .collect::<Result<Vec<f32>>>()
            .map(Some)
    }
}
