//! Shared parts of the adaptive server optimisers (Reddi et al. 2021, "Adaptive Federated
//! Optimization"), as in Flower 1.42's `FedOpt`: hyper-parameters, and the moments `m_t`, `v_t`
//! over the pseudo-gradient `delta_t = average - global`.
//!
//! Flower keeps `m_t` and `v_t` in the arrays' `float32`, starts both at zero, and computes
//! `m_t = beta_1 * m_t + (1 - beta_1) * delta_t` with every factor rounded to `float32`; so does
//! [`Moments::step`].

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::StrategyState;
use super::math::{check_len, tensor};
use crate::error::{FedError, Result};
use crate::params::Payload;

/// Values per parallel work item.
const CHUNK: usize = 1 << 14;

/// Hyper-parameters of the adaptive server optimisers.
///
/// Flower's defaults differ per strategy: [`ServerOptConfig::fedadam`] (also the [`Default`]),
/// [`ServerOptConfig::fedyogi`] and [`ServerOptConfig::fedadagrad`]. (Flower's `eta_l`, the
/// client learning rate, plays no part in aggregation and is not here.)
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerOptConfig {
    /// Server learning rate.
    pub eta: f64,
    /// First-moment decay (`m_t = beta_1 m_{t-1} + (1 - beta_1) delta_t`).
    pub beta_1: f64,
    /// Second-moment decay (Adam, Yogi; unused by Adagrad).
    pub beta_2: f64,
    /// Adaptivity: added to `sqrt(v_t)` in the step's denominator.
    pub tau: f64,
}

impl Default for ServerOptConfig {
    /// [`ServerOptConfig::fedadam`].
    fn default() -> Self {
        Self::fedadam()
    }
}

impl ServerOptConfig {
    /// Flower's `FedAdam` defaults: `eta = 0.1`, `beta_1 = 0.9`, `beta_2 = 0.99`, `tau = 1e-3`.
    pub fn fedadam() -> Self {
        Self {
            eta: 1e-1,
            beta_1: 0.9,
            beta_2: 0.99,
            tau: 1e-3,
        }
    }

    /// Flower's `FedYogi` defaults: `eta = 0.01`, `beta_1 = 0.9`, `beta_2 = 0.99`, `tau = 1e-3`.
    pub fn fedyogi() -> Self {
        Self {
            eta: 1e-2,
            ..Self::fedadam()
        }
    }

    /// Flower's `FedAdagrad` defaults: `eta = 0.1`, `tau = 1e-3`, and `beta_1 = beta_2 = 0`
    /// (Flower fixes both at zero: no momentum).
    pub fn fedadagrad() -> Self {
        Self {
            eta: 1e-1,
            beta_1: 0.0,
            beta_2: 0.0,
            tau: 1e-3,
        }
    }

    /// Checks the ranges: finite `eta`, `beta_1` and `beta_2` in `[0, 1]`, finite `tau >= 0`.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if !self.eta.is_finite() {
            return Err(FedError::config(
                "eta",
                format!("must be finite, got {}", self.eta),
            ));
        }
        for (field, beta) in [("beta_1", self.beta_1), ("beta_2", self.beta_2)] {
            if !(0.0..=1.0).contains(&beta) {
                return Err(FedError::config(
                    field,
                    format!("must be in [0, 1], got {beta}"),
                ));
            }
        }
        if !(self.tau.is_finite() && self.tau >= 0.0) {
            return Err(FedError::config(
                "tau",
                format!("must be >= 0, got {}", self.tau),
            ));
        }
        Ok(())
    }
}

/// `m_t` and `v_t` per tensor, in `f32` like Flower's.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Moments {
    m: BTreeMap<String, Vec<f32>>,
    v: BTreeMap<String, Vec<f32>>,
}

impl Moments {
    /// One optimiser step over every tensor of `average`: `delta = average - global`, then
    /// `m = beta_1 m + (1 - beta_1) delta` (in `f32`, as Flower), then
    /// `new = rule(global, delta, m, &mut v)`, which updates `v` and returns the new value.
    /// Moments start at zero for a tensor seen for the first time.
    pub(crate) fn step<F>(
        &mut self,
        global: &Payload,
        mut average: Payload,
        beta_1: f64,
        rule: F,
    ) -> Result<Payload>
    where
        F: Fn(f32, f32, f32, &mut f32) -> f32 + Sync,
    {
        let b1 = beta_1 as f32;
        let one_minus_b1 = (1.0 - beta_1) as f32;
        for (name, avg) in average.tensors.iter_mut() {
            let current = tensor(global, name)?;
            check_len("the average", name, avg.values.len(), current.len())?;
            let m = self
                .m
                .entry(name.clone())
                .or_insert_with(|| vec![0.0; current.len()]);
            check_len("m_t", name, m.len(), current.len())?;
            let v = self
                .v
                .entry(name.clone())
                .or_insert_with(|| vec![0.0; current.len()]);
            check_len("v_t", name, v.len(), current.len())?;
            avg.values
                .par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(current.par_chunks(CHUNK))
                .for_each(|(((out, m), v), x)| {
                    for (((o, m), v), &x) in out.iter_mut().zip(m).zip(v).zip(x) {
                        let delta = *o - x;
                        *m = b1 * *m + one_minus_b1 * delta;
                        *o = rule(x, delta, *m, v);
                    }
                });
        }
        Ok(average)
    }

    /// Writes the moments into `state` as `m/<tensor>` and `v/<tensor>`.
    pub(crate) fn save(&self, state: &mut StrategyState) {
        for (name, m) in &self.m {
            state.put_f32(format!("m/{name}"), m);
        }
        for (name, v) in &self.v {
            state.put_f32(format!("v/{name}"), v);
        }
    }

    /// Reads what [`Moments::save`] wrote, replacing the current moments.
    pub(crate) fn load(state: &mut StrategyState) -> Result<Self> {
        let keys: Vec<String> = state.tensors.keys().cloned().collect();
        let mut moments = Self::default();
        for key in keys {
            let (slot, name) = match key.split_once('/') {
                Some(("m", name)) => (&mut moments.m, name.to_string()),
                Some(("v", name)) => (&mut moments.v, name.to_string()),
                _ => {
                    return Err(FedError::config(
                        "state",
                        format!("unexpected tensor `{key}` in a server-optimiser state"),
                    ));
                }
            };
            if let Some(values) = state.take_f32(&key)? {
                slot.insert(name, values);
            }
        }
        Ok(moments)
    }
}
