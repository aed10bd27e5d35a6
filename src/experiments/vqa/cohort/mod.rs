//! Cohort-batched training of Florence-2 clients from the frozen-prefix cache
//! ([`crate::federated::cohort`]): the clients' adapters in the last decoder layer stacked,
//! one batched last-layer step (`layer.rs`) for all of them, equal to training them one after
//! the other (within rounding; `tests/vqa_cohort.rs`).
//!
//! Covered: adapters on any of the last decoder layer's ten projections, every sharing rule
//! (whatever subset of the adapters' `A` and `B` trains), FedAvg and FedProx, AdamW and SGD,
//! uneven client sizes and short last batches (members with fewer steps sit out, smaller
//! batches are padded with rows that carry no label), and every dropout of the layer (each
//! member's masks replayed from its own [`DropoutStream`] in the sequential layer's drawing
//! order, `masks.rs`). Clients whose trainable parameters lie elsewhere, merged adapters, and
//! tasks without a cache train sequentially ([`CohortTrainer::cohort_key`] is `None`).

mod inputs;
mod layer;
mod layout;
mod masks;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use self::layer::{Adapter, Head, member_losses};
use self::layout::{StackedAdapter, last_layer, same_frozen, stack_adapters, write_back};
use super::task::VqaTask;
use crate::error::{FedError, Result};
use crate::federated::cohort::{
    CohortMember, CohortOptimizer, CohortOutcome, CohortSchedule, CohortTally, CohortTrainer,
    DropoutStream, ProxTargets,
};
use crate::federated::{ClientConfig, FederatedTask, Payload, Split};
use crate::models::florence2::Florence2;
use crate::models::florence2::bart::BartDecoderLayer;

/// Memory a cohort's step may use: the automatic cohort size is this over one member's need.
pub const VQA_COHORT_MEMORY_BUDGET: usize = 4 << 30;

/// The automatic cohort size on the CPU backend (`Flex`), where a cached step is bound by its
/// arithmetic (the language-model head) and larger cohorts gain nothing.
pub const VQA_CPU_COHORT_SIZE: usize = 4;

type Inner<B> = <B as AutodiffBackend>::InnerBackend;
type InnerModel<B> = <Florence2<B> as AutodiffModule<B>>::InnerModule;

fn not_cohort(client: usize) -> FedError {
    FedError::Task(format!(
        "client {client}'s model does not fit the cohort (its last decoder layer's adapters, \
         trainable parameters or frozen weights differ)"
    ))
}

impl<B: AutodiffBackend> CohortTrainer<B, Florence2<B>> for VqaTask<B> {
    fn cohort_key(&self, member: &CohortMember<'_, InnerModel<B>>) -> Option<String> {
        let cache = self.cache()?;
        let layout = layout::layout(member)?;
        (layout.d_model == cache.d_model()).then(|| format!("{layout:?}"))
    }

    fn max_cohort_size(&self, config: &ClientConfig) -> usize {
        let d = self.cache().map_or(768, |c| c.d_model());
        let t = self
            .samples()
            .iter()
            .map(|s| s.answer_len())
            .max()
            .unwrap_or(16);
        // Logits, their log-softmax and gradients over the vocabulary dominate; then the
        // layer's activations (about 40 of width d per position) and the encoder output with
        // its keys and values (~600 positions at base size), in f32.
        let per_row = 4 * (t * (4 * self.num_classes() + 40 * d) + 600 * 6 * d);
        let per_member = (config.batch_size.max(1) * per_row).max(1);
        let memory = (VQA_COHORT_MEMORY_BUDGET / per_member).max(1);
        if B::name(&self.device()).contains("flex") {
            memory.min(VQA_CPU_COHORT_SIZE)
        } else {
            memory
        }
    }

    fn train_cohort(
        &self,
        members: &[CohortMember<'_, InnerModel<B>>],
        round: u64,
        config: &ClientConfig,
        prox: Option<(&Payload, f64)>,
    ) -> Result<Vec<Result<CohortOutcome<InnerModel<B>>>>> {
        let first = members
            .first()
            .ok_or_else(|| FedError::Task("a cohort without members".into()))?;
        let cache = self.cache().ok_or_else(|| {
            FedError::Task("cohort training needs the frozen-prefix cache".into())
        })?;
        let shape = layout::layout(first).ok_or_else(|| not_cohort(first.client))?;
        for member in members {
            if layout::layout(member).as_ref() != Some(&shape)
                || !same_frozen(first.model, member.model)
            {
                return Err(not_cohort(member.client));
            }
        }
        let sizes: Vec<(usize, usize)> = members
            .iter()
            .map(|m| (m.client, self.num_examples(m.client, Split::Train)))
            .collect();
        let schedule = CohortSchedule::new(&sizes, config, round);
        let sorted: Vec<&CohortMember<'_, InnerModel<B>>> =
            schedule.order.iter().map(|&i| &members[i]).collect();
        let clients: Vec<usize> = sorted.iter().map(|m| m.client).collect();
        let models: Vec<&InnerModel<B>> = sorted.iter().map(|m| m.model).collect();
        let mut stacked = stack_adapters(&models, &shape, &config.optimizer)?;
        let mut optimizer = CohortOptimizer::new(&config.optimizer, config.lr, sorted.len());
        let device = self.device();
        let prox = prox.map(|(global, mu)| ProxTargets::<Inner<B>>::new(global, mu, &device));
        let mut streams: Vec<DropoutStream> = clients
            .iter()
            .map(|&k| DropoutStream::for_client(config.seed, round, k))
            .collect();
        // The frozen layer and head, once for every member.
        let frozen_layer = last_layer(first.model).ok_or_else(|| not_cohort(first.client))?;
        let layer =
            <BartDecoderLayer<B> as AutodiffModule<B>>::from_inner(frozen_layer.clone()).no_grad();
        let bart = &first.model.language_model;
        let head = Head::<B> {
            weight: Tensor::from_inner(bart.shared.weight.val()),
            bias: bart.final_logits_bias.clone().map(Tensor::from_inner),
        };
        let mut tally = CohortTally::new(sorted.len());
        for t in 0..schedule.steps() {
            let rows = schedule.rows(t);
            let n = rows.len();
            let inputs = self.cohort_step_inputs(
                cache,
                first.model,
                &shape,
                &clients[..n],
                &rows,
                &mut streams[..n],
                &mut tally.failures_mut()[..n],
            )?;
            if inputs.kept_positions.dims()[0] == 0 {
                // Every member of the step failed: nothing to train on.
                continue;
            }
            let mut adapters: Vec<Option<Adapter<B>>> = (0..10).map(|_| None).collect();
            let mut tracked = Vec::new();
            for s in &stacked {
                let Some(adapter) = &shape.adapters[s.projection] else {
                    continue;
                };
                let lift = |value: Tensor<Inner<B>, 3>, trains: bool| {
                    let t = Tensor::<B, 3>::from_inner(value);
                    if trains { t.require_grad() } else { t }
                };
                let a = lift(s.a.active(n), adapter.trains.0);
                let b = lift(s.b.active(n), adapter.trains.1);
                tracked.push((a.clone(), b.clone()));
                adapters[s.projection] = Some(Adapter {
                    a,
                    b,
                    scaling: adapter.scaling,
                });
            }
            let losses = member_losses(&layer, &head, &adapters, inputs);
            let values: Vec<f32> = losses
                .clone()
                .inner()
                .into_data()
                .convert::<f32>()
                .into_vec()
                .map_err(|e| FedError::Task(format!("{e:?}")))?;
            tally.record(&values, &rows, &clients, round);
            let grads = losses.sum().backward();
            let (mut params, mut param_grads) = (Vec::new(), Vec::new());
            for (s, (a, b)) in stacked.iter_mut().zip(tracked) {
                let Some(adapter) = &shape.adapters[s.projection] else {
                    continue;
                };
                let names = [
                    layout::tensor_name(&shape, s.projection, false),
                    layout::tensor_name(&shape, s.projection, true),
                ];
                let StackedAdapter { a: pa, b: pb, .. } = s;
                for (param, tensor, trains, name) in [
                    (pa, a, adapter.trains.0, &names[0]),
                    (pb, b, adapter.trains.1, &names[1]),
                ] {
                    if !trains {
                        continue;
                    }
                    let current = param.active(n);
                    let grad = tensor.grad(&grads).unwrap_or_else(|| current.zeros_like());
                    let grad = match &prox {
                        Some(prox) => prox.pull(name, current, grad)?,
                        None => grad,
                    };
                    params.push(param);
                    param_grads.push(grad);
                }
            }
            optimizer.step(&mut params, param_grads, n);
        }
        Ok(tally.outcomes(&schedule.order, |j| {
            write_back(sorted[j].model, &stacked, j)
        }))
    }
}
