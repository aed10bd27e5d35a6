//! Scoring from the frozen-prefix cache on the host, for the CPU backend: the classifier
//! `head(hardswish(W0 x + b + s B A x))` ([`super::task::classifier_from_cache`] without
//! dropout, as evaluation runs it) in plain Rust, rows in parallel, reading the cached rows in
//! place instead of copying them into tensors. Every client scores its test images every round
//! (and the whole test set at every global evaluation), so this is most of a round's time
//! after training.

use burn::prelude::*;
use rayon::prelude::*;

use super::host_step::{HostShape, dot, hardswish};
use super::vector_builds::vector_builds;
use crate::error::{FedError, Result};
use crate::federated::EvalBatch;
use crate::lora::Dense;
use crate::models::MobileNetV3;

/// Rows scored per parallel task.
const ROWS_PER_TASK: usize = 32;

fn host_values<IB: Backend, const D: usize>(t: Tensor<IB, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| FedError::Task(format!("{e:?}")))
}

/// `model`'s scores of cached rows `rows` (features `xs`, frozen products `bases`, `input` and
/// `hidden` floats a row) against `targets`: summed cross-entropy and arg-max predictions, as
/// [`EvalBatch::from_logits`] gives them. `None` when the model's classifier is not the cached
/// shape (the caller falls back to the tensor path).
pub(super) fn score<IB: Backend>(
    model: &MobileNetV3<IB>,
    (xs, bases): (&[f32], &[f32]),
    (input, hidden): (usize, usize),
    rows: &[usize],
    targets: Vec<usize>,
) -> Result<Option<EvalBatch>> {
    let (dense, _, _, head) = &model.classifier;
    let [head_in, classes] = head.weight.dims();
    if head_in != hidden || rows.len() != targets.len() {
        return Ok(None);
    }
    let adapter = match dense {
        Dense::Lora(layer) if !layer.merged => {
            if layer.d_input() != input {
                return Ok(None);
            }
            let (r, s) = (layer.rank(), layer.scaling as f32);
            let a = host_values(layer.lora_a.val())?;
            let b = host_values(layer.lora_b.val())?;
            // `B` `[hidden, r]` as `Bᵀ` `[r, hidden]`.
            let bt: Vec<f32> = (0..r)
                .flat_map(|j| {
                    b.iter()
                        .skip(j)
                        .step_by(r.max(1))
                        .copied()
                        .collect::<Vec<_>>()
                })
                .collect();
            Some((a, bt, r, s))
        }
        _ => None,
    };
    let w = host_values(head.weight.val())?;
    let wt: Vec<f32> = (0..classes)
        .flat_map(|c| {
            w.iter()
                .skip(c)
                .step_by(classes.max(1))
                .copied()
                .collect::<Vec<_>>()
        })
        .collect();
    let bias = match &head.bias {
        Some(b) => host_values(b.val())?,
        None => vec![0.0; classes],
    };
    for &r in rows {
        if (r + 1) * input > xs.len() || (r + 1) * hidden > bases.len() {
            return Err(FedError::Task(format!("image {r} is not in the cache")));
        }
    }
    if let Some(&bad) = targets.iter().find(|&&t| t >= classes) {
        return Err(FedError::Task(format!(
            "label {bad} outside the model's {classes} classes"
        )));
    }
    let shape = HostShape {
        input,
        hidden,
        rank: adapter.as_ref().map_or(0, |a| a.2),
        classes,
        scaling: adapter.as_ref().map_or(0.0, |a| a.3),
    };
    let scored: Vec<(f64, usize)> = rows
        .par_chunks(ROWS_PER_TASK)
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .flat_map_iter(|(rows, targets)| {
            let mut hidden_row = vec![0f32; hidden];
            let mut logits = vec![0f32; classes];
            let adapter = adapter.as_ref().map(|(a, bt, _, _)| (&a[..], &bt[..]));
            rows.iter()
                .zip(targets)
                .map(|(&r, &t)| {
                    let x = &xs[r * input..(r + 1) * input];
                    let base = &bases[r * hidden..(r + 1) * hidden];
                    row_logits(
                        &shape,
                        adapter,
                        (&wt, &bias),
                        x,
                        base,
                        &mut hidden_row,
                        &mut logits,
                    );
                    (row_loss(&logits, t), argmax(&logits))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let loss_sum = scored.iter().map(|s| s.0).sum();
    Ok(Some(EvalBatch {
        loss_sum,
        loss_count: targets.len(),
        predictions: scored.into_iter().map(|s| s.1).collect(),
        targets,
    }))
}

vector_builds! {
    /// One row's logits: `hidden_row` is work space. Compiled for the CPU's vector extension
    /// (see [`super::vector_builds`]).
    fn row_logits(
        shape: &HostShape,
        adapter: Option<(&[f32], &[f32])>,
        head: (&[f32], &[f32]),
        x: &[f32],
        base: &[f32],
        hidden_row: &mut [f32],
        logits: &mut [f32],
    ) = row_logits_body;
}

#[inline(always)]
fn row_logits_body(
    shape: &HostShape,
    adapter: Option<(&[f32], &[f32])>,
    (wt, bias): (&[f32], &[f32]),
    x: &[f32],
    base: &[f32],
    hidden_row: &mut [f32],
    logits: &mut [f32],
) {
    let (f, h) = (shape.input, shape.hidden);
    hidden_row.copy_from_slice(base);
    if let Some((a, bt)) = adapter {
        for j in 0..shape.rank {
            let down = dot(x, &a[j * f..(j + 1) * f]) * shape.scaling;
            for (y, &b) in hidden_row.iter_mut().zip(&bt[j * h..(j + 1) * h]) {
                *y += down * b;
            }
        }
    }
    for v in hidden_row.iter_mut() {
        *v = hardswish(*v);
    }
    for (c, z) in logits.iter_mut().enumerate() {
        *z = dot(hidden_row, &wt[c * h..(c + 1) * h]) + bias[c];
    }
}

/// Cross-entropy of one row's logits against `target`.
fn row_loss(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|z| (z - max).exp()).sum();
    let z = logits.get(target).copied().unwrap_or(max);
    (max + sum.ln() - z) as f64
}

/// Index of the first largest logit.
fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (c, &z) in logits.iter().enumerate() {
        if z > logits[best] {
            best = c;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_builds_give_the_baseline_s_logits_bit_for_bit() {
        let shape = HostShape {
            input: 37,
            hidden: 53,
            rank: 4,
            classes: 10,
            scaling: 0.5,
        };
        let values = |n: usize, seed: u32| -> Vec<f32> {
            (0..n as u32)
                .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
                .collect()
        };
        let (f, h, r, c) = (shape.input, shape.hidden, shape.rank, shape.classes);
        let (a, bt) = (values(r * f, 1), values(r * h, 2));
        let (wt, bias) = (values(c * h, 3), values(c, 4));
        let (x, base) = (values(f, 5), values(h, 6));
        type Logits = fn(
            &HostShape,
            Option<(&[f32], &[f32])>,
            (&[f32], &[f32]),
            &[f32],
            &[f32],
            &mut [f32],
            &mut [f32],
        );
        for adapter in [Some((&a[..], &bt[..])), None] {
            let run = |logits_of: Logits| {
                let (mut hidden, mut logits) = (vec![0f32; h], vec![0f32; c]);
                logits_of(
                    &shape,
                    adapter,
                    (&wt, &bias),
                    &x,
                    &base,
                    &mut hidden,
                    &mut logits,
                );
                logits
            };
            let (built, baseline) = (run(row_logits), run(row_logits_body));
            let bits = |v: &[f32]| v.iter().map(|z| z.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&built), bits(&baseline));
            assert!(built.iter().all(|z| z.is_finite()) && built.iter().any(|&z| z != 0.0));
        }
    }
}
