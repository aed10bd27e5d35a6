//! Adaptive server optimisers (Reddi et al. 2021, "Adaptive Federated Optimization"), as in
//! Flower's `FedAdam` / `FedYogi`: the server treats `avg - global` as a pseudo-gradient.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{FedAvg, Strategy};
use crate::error::Result;
use crate::federated::{ClientUpdate, Payload};

/// Hyper-parameters of the adaptive server optimisers (Flower's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerOptConfig {
    /// Server learning rate.
    pub eta: f64,
    /// First-moment decay.
    pub beta_1: f64,
    /// Second-moment decay.
    pub beta_2: f64,
    /// Adaptivity (added to the root of the second moment).
    pub tau: f64,
}

impl Default for ServerOptConfig {
    fn default() -> Self {
        Self {
            eta: 1e-1,
            beta_1: 0.9,
            beta_2: 0.99,
            tau: 1e-9,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SecondMoment {
    Adam,
    Yogi,
}

#[derive(Debug, Clone, Default)]
struct Moments {
    m: BTreeMap<String, Vec<f64>>,
    v: BTreeMap<String, Vec<f64>>,
}

fn adaptive_step(
    config: &ServerOptConfig,
    kind: SecondMoment,
    moments: &mut Moments,
    average: Payload,
    global: &Payload,
) -> Payload {
    let mut out = average;
    for (name, avg) in out.tensors.iter_mut() {
        let current = &global.tensors[name].values;
        let m = moments
            .m
            .entry(name.clone())
            .or_insert_with(|| vec![0.0; current.len()]);
        let v = moments.v.entry(name.clone()).or_insert_with(|| {
            // Flower initialises Yogi's and Adam's second moment at tau^2.
            vec![config.tau * config.tau; current.len()]
        });
        for i in 0..current.len() {
            let delta = avg.values[i] as f64 - current[i] as f64;
            m[i] = config.beta_1 * m[i] + (1.0 - config.beta_1) * delta;
            let d2 = delta * delta;
            v[i] = match kind {
                SecondMoment::Adam => config.beta_2 * v[i] + (1.0 - config.beta_2) * d2,
                SecondMoment::Yogi => v[i] - (1.0 - config.beta_2) * d2 * (v[i] - d2).signum(),
            };
            avg.values[i] =
                (current[i] as f64 + config.eta * m[i] / (v[i].sqrt() + config.tau)) as f32;
        }
    }
    out
}

macro_rules! server_optimizer {
    ($name:ident, $kind:expr, $label:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Default)]
        pub struct $name {
            /// Hyper-parameters.
            pub config: ServerOptConfig,
            /// How the clients' average (the pseudo-gradient's target) is weighted.
            pub fedavg: FedAvg,
            moments: Moments,
        }

        impl $name {
            /// With the given hyper-parameters and example-weighted averaging.
            pub fn new(config: ServerOptConfig) -> Self {
                Self {
                    config,
                    fedavg: FedAvg::new(),
                    moments: Moments::default(),
                }
            }
        }

        impl Strategy for $name {
            fn name(&self) -> String {
                format!(concat!($label, "(eta={})"), self.config.eta)
            }

            fn aggregate(
                &mut self,
                round: u64,
                global: &Payload,
                updates: &[ClientUpdate],
            ) -> Result<Payload> {
                let average = self.fedavg.aggregate(round, global, updates)?;
                Ok(adaptive_step(
                    &self.config,
                    $kind,
                    &mut self.moments,
                    average,
                    global,
                ))
            }
        }
    };
}

server_optimizer!(
    FedAdam,
    SecondMoment::Adam,
    "fedadam",
    "FedAdam: Adam on the server over the pseudo-gradient `average - global`."
);
server_optimizer!(
    FedYogi,
    SecondMoment::Yogi,
    "fedyogi",
    "FedYogi: Yogi's additive second-moment update on the server."
);
