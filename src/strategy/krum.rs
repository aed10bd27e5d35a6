//! Krum and MultiKrum (Blanchard et al. 2017), with the scoring Bulyan shares.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Strategy;
use super::math::{average_unchecked, check_updates, example_weights};
use crate::error::{FedError, Result};
use crate::params::{ClientUpdate, Payload};

/// Values per parallel work item of the distance computation.
const SEGMENT: usize = 4096;

/// Squared L2 distances between all pairs of payloads (whole model), in `f64`, as the upper
/// triangle in row order (`(0,1), (0,2), ..., (1,2), ...`). Deterministic for any thread count:
/// partial sums per segment are added in segment order.
fn pairwise_sq_distances(payloads: &[&Payload]) -> Vec<f64> {
    let n = payloads.len();
    let pairs = n * n.saturating_sub(1) / 2;
    let Some(first) = payloads.first() else {
        return Vec::new();
    };
    // (tensor name, start, end) of every segment of the concatenated model.
    let segments: Vec<(&str, usize, usize)> = first
        .tensors
        .iter()
        .flat_map(|(name, t)| {
            (0..t.len())
                .step_by(SEGMENT)
                .map(move |start| (name.as_str(), start, (start + SEGMENT).min(t.len())))
        })
        .collect();
    let partials: Vec<Vec<f64>> = segments
        .par_iter()
        .map(|&(name, start, end)| {
            let rows: Vec<&[f32]> = payloads
                .iter()
                .map(|p| {
                    p.tensors
                        .get(name)
                        .map_or(&[][..], |t| &t.values[start..end])
                })
                .collect();
            let mut out = Vec::with_capacity(pairs);
            for i in 0..n {
                for j in i + 1..n {
                    out.push(sq_distance(rows[i], rows[j]));
                }
            }
            out
        })
        .collect();
    let mut total = vec![0f64; pairs];
    for partial in partials {
        for (t, p) in total.iter_mut().zip(partial) {
            *t += p;
        }
    }
    total
}

/// `sum (a - b)^2` in `f64`, eight lanes at a time.
fn sq_distance(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            let d = f64::from(x[k]) - f64::from(y[k]);
            lanes[k] += d * d;
        }
    }
    let mut sum: f64 = lanes.iter().sum();
    for (&x, &y) in ra.iter().zip(rb) {
        let d = f64::from(x) - f64::from(y);
        sum += d * d;
    }
    sum
}

/// Krum scores as Flower's `select_multikrum`: for each update, the sum of its squared distances
/// to its `max(1, n - f - 2)` nearest other updates. `payloads` must share names and shapes.
///
/// Flower computes the distances in `float32` as `|x|^2 + |y|^2 - 2 x.y`; this computes
/// `sum (x - y)^2` in `f64`, so scores agree to `float32` rounding and the selection agrees
/// unless two scores are within that rounding of each other.
pub fn krum_scores(payloads: &[&Payload], num_malicious_nodes: usize) -> Vec<f64> {
    let n = payloads.len();
    let distances = pairwise_sq_distances(payloads);
    let index = |i: usize, j: usize| {
        let (i, j) = if i < j { (i, j) } else { (j, i) };
        i * n - i * (i + 1) / 2 + (j - i - 1)
    };
    let num_closest = n
        .saturating_sub(num_malicious_nodes.saturating_add(2))
        .max(1);
    (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n)
                .map(|j| if i == j { 0.0 } else { distances[index(i, j)] })
                .collect();
            row.sort_unstable_by(f64::total_cmp);
            // Flower's argsort(distance)[1 : num_closest + 1]: skips the smallest (itself).
            row.iter().skip(1).take(num_closest).sum()
        })
        .collect()
}

/// The indices of the `k` lowest Krum scores, lowest first (ties: lower index first).
pub(crate) fn select_multikrum(
    updates: &[ClientUpdate],
    num_malicious_nodes: usize,
    k: usize,
) -> Vec<usize> {
    let payloads: Vec<&Payload> = updates.iter().map(|u| &u.payload).collect();
    let scores = krum_scores(&payloads, num_malicious_nodes);
    let mut order: Vec<usize> = (0..updates.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    order.truncate(k);
    order
}

/// Krum's precondition `n > 2 f + 2` on the number of updates.
fn check_krum_count(n: usize, f: usize, who: &str) -> Result<()> {
    let needed = f.saturating_mul(2).saturating_add(3);
    if n < needed {
        return Err(FedError::config(
            "num_malicious_nodes",
            format!(
                "{who} with {f} malicious nodes needs at least 2f + 3 = {needed} updates, got {n}"
            ),
        ));
    }
    Ok(())
}

/// Aggregates the selected updates with Flower's example-weighted average, in selection order.
fn average_selected(
    round: u64,
    global: &Payload,
    updates: &[ClientUpdate],
    chosen: &[usize],
) -> Payload {
    let selected: Vec<&ClientUpdate> = chosen.iter().map(|&i| &updates[i]).collect();
    let weights = example_weights(&selected);
    let payloads: Vec<&Payload> = selected.iter().map(|u| &u.payload).collect();
    let mut out = average_unchecked(global, &payloads, &weights);
    out.round = round;
    out
}

/// MultiKrum as Flower 1.42's `MultiKrum`: score every update ([`krum_scores`]), keep the
/// `num_nodes_to_select` lowest and average them weighted by examples (in score order, as Flower).
///
/// Unlike Flower, which proceeds with any count, fewer than `2 f + 3` updates is an error (Krum's
/// guarantee needs `n > 2f + 2`). Selecting more updates than there are keeps them all, as
/// Flower does. Tolerance: bit-identical to Flower whenever the selection is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiKrum {
    /// The number `f` of Byzantine clients tolerated.
    pub num_malicious_nodes: usize,
    /// How many of the lowest-scoring updates are averaged (at least 1).
    pub num_nodes_to_select: usize,
}

impl MultiKrum {
    /// Tolerates `num_malicious_nodes` and averages `num_nodes_to_select` updates.
    pub fn new(num_malicious_nodes: usize, num_nodes_to_select: usize) -> Self {
        Self {
            num_malicious_nodes,
            num_nodes_to_select,
        }
    }

    /// Checks `num_nodes_to_select >= 1`.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for zero.
    pub fn validate(&self) -> Result<()> {
        if self.num_nodes_to_select == 0 {
            return Err(FedError::config(
                "num_nodes_to_select",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Strategy for MultiKrum {
    fn name(&self) -> String {
        format!(
            "multikrum(f={},m={})",
            self.num_malicious_nodes, self.num_nodes_to_select
        )
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        self.validate()?;
        check_updates(global, updates, "MultiKrum")?;
        check_krum_count(updates.len(), self.num_malicious_nodes, "MultiKrum")?;
        let chosen = select_multikrum(updates, self.num_malicious_nodes, self.num_nodes_to_select);
        Ok(average_selected(round, global, updates, &chosen))
    }
}

/// Krum as Flower 1.42's `Krum`: [`MultiKrum`] selecting one update, which becomes the new
/// global state. Fewer than `2 f + 3` updates is an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Krum {
    /// The number `f` of Byzantine clients tolerated.
    pub num_malicious_nodes: usize,
}

impl Krum {
    /// Tolerates `num_malicious_nodes`.
    pub fn new(num_malicious_nodes: usize) -> Self {
        Self {
            num_malicious_nodes,
        }
    }
}

impl Strategy for Krum {
    fn name(&self) -> String {
        format!("krum(f={})", self.num_malicious_nodes)
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        check_updates(global, updates, "Krum")?;
        check_krum_count(updates.len(), self.num_malicious_nodes, "Krum")?;
        let chosen = select_multikrum(updates, self.num_malicious_nodes, 1);
        Ok(average_selected(round, global, updates, &chosen))
    }
}
