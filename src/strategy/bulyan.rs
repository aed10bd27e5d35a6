//! Bulyan (El Mhamdi et al. 2018) as in Flower 1.42's message API.

use serde::{Deserialize, Serialize};

use super::Strategy;
use super::krum::select_multikrum;
use super::math::{check_updates, map_columns};
use crate::error::{FedError, Result};
use crate::params::{ClientUpdate, Payload};

/// Bulyan as Flower 1.42's `Bulyan` (`flwr.serverapp.strategy`, not the legacy strategy): with
/// `n` updates and `f = num_malicious_nodes`,
///
/// 1. score every update once with Krum ([`super::krum_scores`]) and keep the
///    `theta = n - 2f` lowest (the new API's selection; the legacy strategy re-ran Krum
///    `theta` times);
/// 2. for every coordinate, the median `m` of the `theta` kept values (`np.median`, `f32`);
/// 3. the mean of the `beta = theta - 2f` kept values closest to `m` (`|x - m|` in `f32`).
///
/// Ignores example counts. Requires `n >= 4f + 3` (Flower skips the round with a warning; this
/// is an error). Tolerance against Flower: steps 1 and 2 are exact when the selection agrees;
/// step 3's mean is summed in `f64` where numpy sums `float32` values in `np.argpartition`'s
/// order, a difference of a few `f32` rounding steps (relative `~1e-7`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bulyan {
    /// The number `f` of Byzantine clients tolerated.
    pub num_malicious_nodes: usize,
}

impl Bulyan {
    /// Tolerates `num_malicious_nodes`.
    pub fn new(num_malicious_nodes: usize) -> Self {
        Self {
            num_malicious_nodes,
        }
    }
}

/// The mean of the `beta` values of a sorted `column` closest to its `median`, distances in `f32`.
/// Distances are unimodal along the sorted column, so the closest values form a window grown
/// outwards from the middle.
fn closest_mean(sorted: &[f32], median: f32, beta: usize) -> f32 {
    let n = sorted.len();
    let mut right = n / 2;
    let mut left = right; // the window is sorted[left..right]
    let distance = |v: f32| (v - median).abs();
    while right - left < beta {
        let take_right = match (left.checked_sub(1), right < n) {
            (Some(l), true) => distance(sorted[right]) <= distance(sorted[l]),
            (None, _) => true,
            (Some(_), false) => false,
        };
        if take_right {
            right += 1;
        } else {
            left -= 1;
        }
    }
    let sum: f64 = sorted[left..right].iter().map(|&v| f64::from(v)).sum();
    (sum / beta as f64) as f32
}

impl Strategy for Bulyan {
    fn name(&self) -> String {
        format!("bulyan(f={})", self.num_malicious_nodes)
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        check_updates(global, updates, "Bulyan")?;
        let n = updates.len();
        let f = self.num_malicious_nodes;
        let needed = f.saturating_mul(4).saturating_add(3);
        if n < needed {
            return Err(FedError::config(
                "num_malicious_nodes",
                format!(
                    "Bulyan with {f} malicious nodes needs at least 4f + 3 = {needed} updates, got {n}"
                ),
            ));
        }
        let theta = n - 2 * f;
        let beta = theta - 2 * f;
        let chosen = select_multikrum(updates, f, theta);
        let payloads: Vec<&Payload> = chosen.iter().map(|&i| &updates[i].payload).collect();
        let mut out = map_columns(global, &payloads, |column| {
            column.sort_unstable_by(f32::total_cmp);
            let half = column.len() / 2;
            let median = if column.len() % 2 == 1 {
                column[half]
            } else {
                (column[half - 1] + column[half]) / 2.0
            };
            closest_mean(column, median, beta)
        });
        out.round = round;
        Ok(out)
    }
}
