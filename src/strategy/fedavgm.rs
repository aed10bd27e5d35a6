//! FedAvgM: federated averaging with server momentum (Hsu et al. 2019).

use std::collections::BTreeMap;

use super::math::{check_len, tensor};
use super::{FedAvg, Strategy, StrategyState};
use crate::error::{FedError, Result};
use crate::params::{ClientUpdate, Payload};

/// The name in saved states.
const KIND: &str = "fedavgm";

/// FedAvgM as Flower 1.42's `FedAvgM` (PyTorch's SGD convention, no Nesterov): with `avg` the
/// [`FedAvg`] average and `x` the strategy's current arrays,
///
/// * `g = x - avg` (the pseudo-gradient);
/// * if `server_momentum > 0`: `b = g` in the first round, then `b = server_momentum b + g`;
///   `g = b`;
/// * `x = x - server_learning_rate g`, which becomes the new current arrays.
///
/// With the defaults (`server_learning_rate = 1`, `server_momentum = 0`) it is plain FedAvg.
/// Like Flower, the strategy keeps its own current arrays: the `global` of the first aggregated
/// round, then its own previous result (so a wrapper that changes the global between rounds,
/// such as DP noise, does not feed back into the momentum). Everything in `f32` as numpy does;
/// bit-identical to Flower's result.
#[derive(Debug, Clone)]
pub struct FedAvgM {
    /// Server learning rate (Flower's default: 1).
    pub server_learning_rate: f64,
    /// Server momentum (Flower's default: 0).
    pub server_momentum: f64,
    /// How the clients' average is weighted.
    pub fedavg: FedAvg,
    current: Option<BTreeMap<String, Vec<f32>>>,
    momentum: Option<BTreeMap<String, Vec<f32>>>,
    round: u64,
}

impl Default for FedAvgM {
    /// Flower's defaults: learning rate 1, momentum 0.
    fn default() -> Self {
        Self::new(1.0, 0.0)
    }
}

impl FedAvgM {
    /// With the given server learning rate and momentum, and example-weighted averaging.
    pub fn new(server_learning_rate: f64, server_momentum: f64) -> Self {
        Self {
            server_learning_rate,
            server_momentum,
            fedavg: FedAvg::new(),
            current: None,
            momentum: None,
            round: 0,
        }
    }

    /// Checks the settings: a finite learning rate and a finite, non-negative momentum.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        if !self.server_learning_rate.is_finite() {
            return Err(FedError::config(
                "server_learning_rate",
                format!("must be finite, got {}", self.server_learning_rate),
            ));
        }
        if !(self.server_momentum.is_finite() && self.server_momentum >= 0.0) {
            return Err(FedError::config(
                "server_momentum",
                format!("must be >= 0, got {}", self.server_momentum),
            ));
        }
        Ok(())
    }

    /// Whether the server step is on (Flower's `server_opt`).
    fn server_opt(&self) -> bool {
        self.server_momentum != 0.0 || self.server_learning_rate != 1.0
    }
}

impl Strategy for FedAvgM {
    fn name(&self) -> String {
        format!(
            "fedavgm(lr={},momentum={})",
            self.server_learning_rate, self.server_momentum
        )
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        self.validate()?;
        let mut out = self.fedavg.aggregate(round, global, updates)?;
        self.round = round;
        if !self.server_opt() {
            return Ok(out);
        }
        let lr = self.server_learning_rate as f32;
        let beta = self.server_momentum as f32;
        let use_momentum = self.server_momentum > 0.0;
        let mut current = match self.current.take() {
            Some(current) => current,
            None => global
                .tensors
                .iter()
                .map(|(name, t)| (name.clone(), t.values.clone()))
                .collect(),
        };
        let mut momentum = self.momentum.take();
        for (name, avg) in out.tensors.iter_mut() {
            let len = tensor(global, name)?.len();
            let old = current
                .get_mut(name)
                .ok_or_else(|| FedError::config("state", format!("no current `{name}`")))?;
            check_len("the current array", name, old.len(), len)?;
            check_len("the average", name, avg.values.len(), len)?;
            // g = old - new.
            let mut step: Vec<f32> = old.iter().zip(&avg.values).map(|(o, n)| o - n).collect();
            if use_momentum {
                let buffers = momentum.get_or_insert_with(BTreeMap::new);
                match buffers.get_mut(name) {
                    Some(b) => {
                        check_len("the momentum", name, b.len(), len)?;
                        for (b, g) in b.iter_mut().zip(&step) {
                            *b = beta * *b + g;
                        }
                        step.copy_from_slice(b);
                    }
                    None => {
                        buffers.insert(name.clone(), step.clone());
                    }
                }
            }
            for ((o, a), g) in old.iter_mut().zip(avg.values.iter_mut()).zip(&step) {
                *o -= lr * g;
                *a = *o;
            }
        }
        self.current = Some(current);
        self.momentum = momentum;
        Ok(out)
    }

    fn save_state(&self) -> Result<StrategyState> {
        let mut state = StrategyState::new(KIND);
        state.round = self.round;
        for (prefix, map) in [("current", &self.current), ("momentum", &self.momentum)] {
            if let Some(map) = map {
                for (name, values) in map {
                    state.put_f32(format!("{prefix}/{name}"), values);
                }
                // Marks the buffer as present even when it has no tensor.
                state.scalars.insert(format!("has_{prefix}"), 1.0);
            }
        }
        Ok(state)
    }

    fn load_state(&mut self, mut state: StrategyState) -> Result<()> {
        state.expect_name(KIND)?;
        let mut current = state
            .scalars
            .contains_key("has_current")
            .then(BTreeMap::new);
        let mut momentum = state
            .scalars
            .contains_key("has_momentum")
            .then(BTreeMap::new);
        let keys: Vec<String> = state.tensors.keys().cloned().collect();
        for key in keys {
            let slot = match key.split_once('/') {
                Some(("current", name)) => current.as_mut().map(|m| (m, name.to_string())),
                Some(("momentum", name)) => momentum.as_mut().map(|m| (m, name.to_string())),
                _ => None,
            };
            let Some((map, name)) = slot else {
                return Err(FedError::config(
                    "state",
                    format!("unexpected tensor `{key}` in a FedAvgM state"),
                ));
            };
            if let Some(values) = state.take_f32(&key)? {
                map.insert(name, values);
            }
        }
        self.current = current;
        self.momentum = momentum;
        self.round = state.round;
        Ok(())
    }
}
