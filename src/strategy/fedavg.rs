use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Strategy;
use super::math::{average_unchecked, check_updates};
use crate::error::{FedError, Result};
use crate::params::{ClientUpdate, Payload, TensorValues};

/// How FedAvg weights the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    /// `n_k / sum n` by training examples (McMahan et al.; the default).
    #[default]
    Examples,
    /// `1 / K`: the paper's equation 6.
    Uniform,
}

/// Federated averaging: the new global tensor is the weighted mean of the clients' tensors.
///
/// With [`Weighting::Examples`] this is Flower's `FedAvg` (`aggregate_arrayrecords`), bit for bit:
/// weights `n_k / sum n` in `f64`, then products and sums in `f32` in client order
/// ([`super::flower_weighted_average`]). When no client reports an example, the weights are
/// uniform (Flower would divide by zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FedAvg {
    /// Client weights.
    pub weighting: Weighting,
}

impl FedAvg {
    /// FedAvg weighted by example count.
    pub fn new() -> Self {
        Self::default()
    }

    /// FedAvg with uniform weights, as in the paper's equation 6.
    pub fn uniform() -> Self {
        Self {
            weighting: Weighting::Uniform,
        }
    }

    /// The normalised weight of each update.
    pub fn weights(&self, updates: &[ClientUpdate]) -> Result<Vec<f64>> {
        if updates.is_empty() {
            return Err(FedError::config(
                "updates",
                "FedAvg needs at least one update",
            ));
        }
        let total: u64 = updates.iter().map(|u| u.payload.num_examples).sum();
        Ok(match self.weighting {
            Weighting::Examples if total > 0 => updates
                .iter()
                .map(|u| u.payload.num_examples as f64 / total as f64)
                .collect(),
            // Uniform, or no client reported examples.
            _ => vec![1.0 / updates.len() as f64; updates.len()],
        })
    }
}

impl Strategy for FedAvg {
    fn name(&self) -> String {
        match self.weighting {
            Weighting::Examples => "fedavg".to_string(),
            Weighting::Uniform => "fedavg(uniform)".to_string(),
        }
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        check_updates(global, updates, "FedAvg")?;
        let weights = self.weights(updates)?;
        let payloads: Vec<&Payload> = updates.iter().map(|u| &u.payload).collect();
        let mut out = average_unchecked(global, &payloads, &weights);
        out.round = round;
        Ok(out)
    }
}

/// `sum_k weights[k] * payloads[k]` for every tensor of `template` (names and shapes are taken
/// from it; the payloads must match it). Parallel over chunks of every tensor; accumulates in
/// `f64` so the result does not depend on the number of clients' rounding. (The strategies use
/// [`super::flower_weighted_average`], which rounds in `f32` like Flower.)
pub fn weighted_average(template: &Payload, payloads: &[&Payload], weights: &[f64]) -> Payload {
    const CHUNK: usize = 1 << 14;
    let tensors = template
        .tensors
        .iter()
        .map(|(name, reference)| {
            let sources: Vec<&[f32]> = payloads
                .iter()
                .map(|p| p.tensors[name].values.as_slice())
                .collect();
            let mut values = vec![0f32; reference.len()];
            values
                .par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(chunk, out)| {
                    let start = chunk * CHUNK;
                    let mut acc = vec![0f64; out.len()];
                    for (source, &w) in sources.iter().zip(weights) {
                        let part = &source[start..start + out.len()];
                        for (a, &v) in acc.iter_mut().zip(part) {
                            *a += w * v as f64;
                        }
                    }
                    for (o, a) in out.iter_mut().zip(acc) {
                        *o = a as f32;
                    }
                });
            (
                name.clone(),
                TensorValues {
                    shape: reference.shape.clone(),
                    values,
                },
            )
        })
        .collect();
    Payload {
        round: template.round,
        num_examples: 0,
        tensors,
    }
}
