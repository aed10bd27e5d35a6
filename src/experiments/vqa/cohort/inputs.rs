//! A cohort step's inputs: each member's batch exactly as its sequential step builds it
//! ([`VqaTask::cached_inputs`]), padded to the cohort's largest batch and stacked.

use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;

use super::layer::StepInputs;
use super::layout::Layout;
use super::masks::{Dims, step_masks};
use crate::error::{FedError, Result};
use crate::experiments::vqa::cache::{FrozenPrefixCache, PrefixBatch};
use crate::experiments::vqa::loss::count_kept;
use crate::experiments::vqa::sample::IGNORE_INDEX;
use crate::experiments::vqa::task::VqaTask;
use crate::federated::cohort::DropoutStream;
use crate::federated::{FederatedTask, Split};
use crate::models::florence2::Florence2;
use crate::models::florence2::bart::padding_mask;

type Inner<B> = <B as AutodiffBackend>::InnerBackend;

/// One member's batch as its sequential step sees it.
struct Own<I: Backend> {
    batch: PrefixBatch<I>,
    labels: Tensor<I, 2, Int>,
    kept: usize,
}

/// Pads `t` (`[n, a, b]`) with `fill` to `[rows, a2, b2]`.
fn pad3<I: Backend>(t: Tensor<I, 3>, [rows, a, b]: [usize; 3]) -> Tensor<I, 3> {
    let [n, a0, b0] = t.dims();
    if [n, a0, b0] == [rows, a, b] {
        return t;
    }
    Tensor::zeros([rows, a, b], &t.device()).slice_assign([0..n, 0..a0, 0..b0], t)
}

fn pad_int<I: Backend>(
    t: Tensor<I, 2, Int>,
    [rows, a]: [usize; 2],
    fill: i64,
) -> Tensor<I, 2, Int> {
    let [n, a0] = t.dims();
    if [n, a0] == [rows, a] {
        return t;
    }
    Tensor::full([rows, a], fill, &t.device()).slice_assign([0..n, 0..a0], t)
}

/// The kept labels of a step, in the cohort's padded layout.
#[derive(Default)]
struct KeptLabels {
    /// Flat positions `row * T + t`.
    positions: Vec<i64>,
    labels: Vec<i64>,
    /// The member each belongs to.
    members: Vec<usize>,
}

impl KeptLabels {
    /// Adds member `c`'s labels (`[n, t]`, its own batch) for a cohort `width`.
    fn add<I: Backend>(&mut self, c: usize, labels: Tensor<I, 2, Int>, width: Dims) -> Result<()> {
        let [n, t] = labels.dims();
        let values: Vec<i64> = labels
            .into_data()
            .convert::<i64>()
            .into_vec()
            .map_err(|e| FedError::Task(format!("{e:?}")))?;
        for (at, &label) in values.iter().enumerate().take(n * t) {
            if label == IGNORE_INDEX {
                continue;
            }
            let (row, pos) = (at / t.max(1), at % t.max(1));
            self.positions
                .push(((c * width.rows + row) * width.t + pos) as i64);
            self.labels.push(label);
            self.members.push(c);
        }
        Ok(())
    }
}

impl<B: AutodiffBackend> VqaTask<B> {
    /// The inputs of one cohort step: member `c` (client `clients[c]`) trains on examples
    /// `rows[c]`; `frozen` computes rows the cache lacks. A member whose batch cannot be built
    /// gets `failures[c]` set and padding only. Masks come from `streams`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cohort_step_inputs(
        &self,
        cache: &FrozenPrefixCache,
        frozen: &Florence2<Inner<B>>,
        layout: &Layout,
        clients: &[usize],
        rows: &[&[usize]],
        streams: &mut [DropoutStream],
        failures: &mut [Option<FedError>],
    ) -> Result<StepInputs<B>> {
        let n = rows.len();
        let mut own: Vec<Option<Own<Inner<B>>>> = Vec::with_capacity(n);
        for (c, batch) in rows.iter().enumerate() {
            let built = self
                .rows(clients[c], Split::Train, batch)
                .and_then(|r| self.cached_inputs::<Inner<B>, _>(cache, || frozen.clone(), &r));
            own.push(match built {
                Ok((batch, labels)) => {
                    let kept = count_kept(&labels);
                    if kept == 0 {
                        failures[c]
                            .get_or_insert(FedError::config("labels", "every label is ignored"));
                        None
                    } else {
                        Some(Own {
                            batch,
                            labels,
                            kept,
                        })
                    }
                }
                Err(error) => {
                    failures[c].get_or_insert(error);
                    None
                }
            });
        }
        let dims: Vec<Dims> = own
            .iter()
            .map(|o| {
                o.as_ref().map_or(Dims::default(), |o| {
                    let [rows, t, _] = o.batch.prefix_hidden.dims();
                    let s = o.batch.encoder_hidden.dims()[1];
                    Dims { rows, t, s }
                })
            })
            .collect();
        let width = Dims {
            rows: dims.iter().map(|d| d.rows).max().unwrap_or(0).max(1),
            t: dims.iter().map(|d| d.t).max().unwrap_or(0).max(1),
            s: dims.iter().map(|d| d.s).max().unwrap_or(0).max(1),
        };
        let device = self.device();
        let d = layout.d_model;
        let (mut prefix, mut encoder, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        let mut kept = Vec::with_capacity(n);
        let mut targets = KeptLabels::default();
        for (c, member) in own.into_iter().enumerate() {
            let shape3 = |len| [width.rows, len, d];
            match member {
                Some(Own {
                    batch,
                    labels: own_labels,
                    kept: k,
                }) => {
                    let [r, s, _] = batch.encoder_hidden.dims();
                    let own_mask = batch
                        .encoder_mask
                        .unwrap_or_else(|| Tensor::ones([r, s], &device));
                    prefix.push(pad3(batch.prefix_hidden, shape3(width.t)));
                    encoder.push(pad3(batch.encoder_hidden, shape3(width.s)));
                    mask.push(pad_int(own_mask, [width.rows, width.s], 0));
                    targets.add(c, own_labels, width)?;
                    kept.push(k as f32);
                }
                None => {
                    prefix.push(Tensor::zeros(shape3(width.t), &device));
                    encoder.push(Tensor::zeros(shape3(width.s), &device));
                    mask.push(Tensor::zeros([width.rows, width.s], &device));
                    kept.push(1.0);
                }
            }
        }
        let k = targets.labels.len();
        let mut membership = vec![0f32; n * k];
        for (j, &c) in targets.members.iter().enumerate() {
            membership[c * k + j] = 1.0;
        }
        let masks = step_masks::<Inner<B>>(layout, streams, &dims, width, &device);
        let kept = Tensor::<Inner<B>, 1>::from_floats(kept.as_slice(), &device).reshape([n, 1]);
        Ok(StepInputs {
            prefix: Tensor::from_inner(Tensor::cat(prefix, 0)),
            encoder: Tensor::from_inner(Tensor::cat(encoder, 0)),
            encoder_mask: padding_mask(Tensor::from_inner(Tensor::cat(mask, 0))),
            kept_positions: Tensor::from_inner(Tensor::from_data(
                TensorData::new(targets.positions, [k]),
                &device,
            )),
            kept_labels: Tensor::from_inner(Tensor::from_data(
                TensorData::new(targets.labels, [k, 1]),
                &device,
            )),
            membership: Tensor::from_inner(Tensor::from_data(
                TensorData::new(membership, [n, k]),
                &device,
            )),
            kept: Tensor::from_inner(kept),
            masks: masks
                .into_iter()
                .map(|m| m.map(Tensor::from_inner))
                .collect(),
            members: n,
        })
    }
}
