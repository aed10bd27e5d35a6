//! Numerics shared by the strategies: checks, Flower's `float32` weighted average, per-coordinate
//! reductions over clients, and numpy's `float32` conventions.
//!
//! numpy keeps `float32` arrays in `float32` when it combines them with Python floats (NEP 50:
//! the Python float is rounded to `float32` first), so `w * x` in Flower is
//! `(w as f32) * x` here, rounded after every operation in the same order.

use rayon::prelude::*;

use crate::error::{FedError, Result};
use crate::params::{ClientUpdate, Payload, PayloadError, TensorValues};

/// Values per parallel work item.
const CHUNK: usize = 1 << 14;
/// Coordinates per block in the per-coordinate reductions.
const COLUMN_BLOCK: usize = 512;

/// Checks that there is at least one update and that every update has exactly the tensors of
/// `global` with the same shapes and lengths (what indexing below relies on).
///
/// # Errors
/// [`FedError::InvalidConfig`] without updates, [`FedError::RejectedUpdate`] for a mismatch.
pub(crate) fn check_updates(global: &Payload, updates: &[ClientUpdate], who: &str) -> Result<()> {
    if updates.is_empty() {
        return Err(FedError::config(
            "updates",
            format!("{who} needs at least one update"),
        ));
    }
    for update in updates {
        check_structure(&update.payload, global).map_err(|source| FedError::RejectedUpdate {
            client: update.client,
            source,
        })?;
    }
    Ok(())
}

/// Same names, shapes and lengths as `expected` (no finiteness check: the server did it).
fn check_structure(payload: &Payload, expected: &Payload) -> Result<(), PayloadError> {
    for name in payload.tensors.keys() {
        if !expected.tensors.contains_key(name) {
            return Err(PayloadError::UnknownTensor(name.clone()));
        }
    }
    for (name, reference) in &expected.tensors {
        let tensor = payload
            .tensors
            .get(name)
            .ok_or_else(|| PayloadError::MissingTensor(name.clone()))?;
        if tensor.shape != reference.shape {
            return Err(PayloadError::ShapeMismatch {
                name: name.clone(),
                expected: reference.shape.clone(),
                found: tensor.shape.clone(),
            });
        }
        if tensor.values.len() != reference.values.len() {
            return Err(PayloadError::DataLength {
                name: name.clone(),
                shape: reference.shape.clone(),
                expected: reference.values.len(),
                found: tensor.values.len(),
            });
        }
    }
    Ok(())
}

/// Flower's weights: `num_examples / sum(num_examples)` in `f64`. When no update reports an
/// example (Flower would divide by zero), every update weighs `1 / K`.
pub(crate) fn example_weights(updates: &[&ClientUpdate]) -> Vec<f64> {
    let total: u64 = updates.iter().map(|u| u.payload.num_examples).sum();
    if total == 0 {
        return vec![1.0 / updates.len() as f64; updates.len()];
    }
    updates
        .iter()
        .map(|u| u.payload.num_examples as f64 / total as f64)
        .collect()
}

/// `sum_k weights[k] * payloads[k]` exactly as Flower's `aggregate_arrayrecords` computes it on
/// `float32` arrays: each weight rounded to `f32`, each product rounded to `f32`, and the sum
/// accumulated in `f32` in the order of `payloads`. Bit-identical to Flower's result; parallel
/// over chunks of every tensor (each value is still summed in client order).
///
/// Names and shapes are taken from `template`. The result has `round` of `template` and
/// `num_examples` 0.
///
/// # Errors
/// [`FedError::InvalidConfig`] without payloads or with another number of weights,
/// [`FedError::Payload`] when a payload's tensors differ from `template`'s.
pub fn flower_weighted_average(
    template: &Payload,
    payloads: &[&Payload],
    weights: &[f64],
) -> Result<Payload> {
    if payloads.is_empty() || payloads.len() != weights.len() {
        return Err(FedError::config(
            "weights",
            format!(
                "need one weight per payload and at least one payload, got {} for {}",
                weights.len(),
                payloads.len()
            ),
        ));
    }
    for payload in payloads {
        check_structure(payload, template)?;
    }
    Ok(average_unchecked(template, payloads, weights))
}

/// [`flower_weighted_average`] without the checks (the callers made them).
pub(crate) fn average_unchecked(
    template: &Payload,
    payloads: &[&Payload],
    weights: &[f64],
) -> Payload {
    let weights32: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
    let tensors = template
        .tensors
        .iter()
        .map(|(name, reference)| {
            let sources: Vec<&[f32]> = payloads
                .iter()
                .filter_map(|p| p.tensors.get(name).map(|t| t.values.as_slice()))
                .collect();
            let mut values = vec![0f32; reference.len()];
            values
                .par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(chunk, out)| {
                    let start = chunk * CHUNK;
                    let end = start + out.len();
                    let mut parts = sources.iter().zip(&weights32);
                    if let Some((first, &w)) = parts.next() {
                        for (o, &v) in out.iter_mut().zip(&first[start..end]) {
                            *o = v * w;
                        }
                    }
                    for (source, &w) in parts {
                        for (o, &v) in out.iter_mut().zip(&source[start..end]) {
                            *o += v * w;
                        }
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

/// A payload shaped like `template` whose every value is `reduce(column)`, where `column` holds
/// that coordinate's value in each of `payloads` (in order; `reduce` may reorder it). Parallel
/// over blocks of coordinates.
pub(crate) fn map_columns<F>(template: &Payload, payloads: &[&Payload], reduce: F) -> Payload
where
    F: Fn(&mut [f32]) -> f32 + Sync,
{
    let n = payloads.len();
    let tensors = template
        .tensors
        .iter()
        .map(|(name, reference)| {
            let sources: Vec<&[f32]> = payloads
                .iter()
                .filter_map(|p| p.tensors.get(name).map(|t| t.values.as_slice()))
                .collect();
            let mut values = vec![0f32; reference.len()];
            values
                .par_chunks_mut(COLUMN_BLOCK)
                .enumerate()
                .for_each_init(
                    || vec![0f32; n * COLUMN_BLOCK],
                    |columns, (block, out)| {
                        let start = block * COLUMN_BLOCK;
                        let width = out.len();
                        // Transpose the block: column j holds coordinate start + j of every client.
                        for (i, source) in sources.iter().enumerate() {
                            for (j, &v) in source[start..start + width].iter().enumerate() {
                                columns[j * n + i] = v;
                            }
                        }
                        for (j, o) in out.iter_mut().enumerate() {
                            *o = reduce(&mut columns[j * n..(j + 1) * n]);
                        }
                    },
                );
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

/// numpy's `np.median` of `float32` values: the middle value, or for an even count
/// `float32(a + b) / 2` of the two middle ones (numpy's `mean` of them). Reorders `column`.
pub(crate) fn median_f32(column: &mut [f32]) -> f32 {
    let n = column.len();
    if n == 0 {
        return f32::NAN;
    }
    let half = n / 2;
    let (lower, upper, _) = column.select_nth_unstable_by(half, f32::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return upper;
    }
    let below = lower.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (below + upper) / 2.0
}

/// The mean of `values`, summed in `f64` and rounded once to `f32`.
///
/// numpy sums a `float32` axis in `float32` in an order `np.partition` leaves unspecified, so
/// Flower's result differs from this one by a few `f32` rounding steps of the partial sums.
pub(crate) fn mean_f64(values: &[f32]) -> f32 {
    let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
    (sum / values.len() as f64) as f32
}

/// numpy's `np.sign` on `f32`: -1, 0 or 1 (0 for zero, unlike `f32::signum`).
pub(crate) fn np_sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

/// The values of `name` in `payload`, or an error naming it (a strategy's state out of step with
/// the global payload).
pub(crate) fn tensor<'a>(payload: &'a Payload, name: &str) -> Result<&'a [f32]> {
    payload
        .tensors
        .get(name)
        .map(|t| t.values.as_slice())
        .ok_or_else(|| FedError::config("global", format!("has no tensor `{name}`")))
}

/// Checks that a state buffer fits the tensor it belongs to.
pub(crate) fn check_len(kind: &str, name: &str, state: usize, tensor: usize) -> Result<()> {
    if state == tensor {
        Ok(())
    } else {
        Err(FedError::config(
            "state",
            format!("{kind} of `{name}` has {state} values, the tensor {tensor}"),
        ))
    }
}
