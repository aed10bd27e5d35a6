//! Cohort-batched training of CIFAR-10 clients from the frozen-prefix cache
//! ([`crate::federated::cohort`]): the adapters of `classifier.0` and the heads of every member
//! stacked, one batched step ([`super::cohort_step`]) for all of them; or, on the CPU backend,
//! every member on the host in parallel ([`super::host_cohort`]).

use burn::module::{AutodiffModule, Param};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;
use rayon::prelude::*;

use super::cohort_step::{StepInputs, StepParams, step};
use super::task::CifarTask;
use crate::error::{FedError, Result};
use crate::federated::cohort::{
    CohortMember, CohortOptimizer, CohortOutcome, CohortSchedule, CohortTally, CohortTrainer,
    DropoutStream, ProxTargets, StackedParam, stack_params, unstack_param,
};
use crate::federated::{ClientConfig, FederatedTask, Payload, Split};
use crate::lora::{Dense, PersonalizedLora};
use crate::models::MobileNetV3;

/// Memory a cohort's step may use: the automatic cohort size is this over one member's need.
pub const COHORT_MEMORY_BUDGET: usize = 2 << 30;

/// The automatic cohort size of the stacked tensor path ([`super::CohortKernel::Tensor`]) on
/// the CPU backend (`Flex`), where larger stacked cohorts are slower. The CPU's default, the
/// host kernel, puts the whole round in one cohort.
pub const CPU_COHORT_SIZE: usize = 5;

/// Names of the stacked tensors, in the order [`Layout::trains`] lists them.
pub(super) const NAMES: [&str; 4] = [
    "classifier.0.lora_a",
    "classifier.0.lora_b",
    "classifier.3.weight",
    "classifier.3.bias",
];

type Inner<B> = <B as AutodiffBackend>::InnerBackend;
type InnerModel<B> = <MobileNetV3<B> as AutodiffModule<B>>::InnerModule;

/// What members of one cohort have in common.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Layout {
    pub input: usize,
    pub hidden: usize,
    pub rank: usize,
    pub classes: usize,
    pub scaling: f64,
    /// Dropout of the adapter's input and of the classifier.
    pub dropout: (f64, f64),
    /// Whether `A`, `B`, the head's weight and its bias train.
    pub trains: [bool; 4],
}

pub(super) fn adapter<IB: Backend>(model: &MobileNetV3<IB>) -> Option<&PersonalizedLora<IB>> {
    match &model.classifier.0 {
        Dense::Lora(layer) if !layer.merged => Some(layer),
        _ => None,
    }
}

fn layout<IB: Backend>(member: &CohortMember<'_, MobileNetV3<IB>>) -> Option<Layout> {
    let layer = adapter(member.model)?;
    let (_, _, dropout, head) = &member.model.classifier;
    let bias = head.bias.as_ref()?;
    let trains = [layer.lora_a.id, layer.lora_b.id, head.weight.id, bias.id]
        .map(|id| member.trainable.contains(&id));
    let [hidden, classes] = head.weight.dims();
    Some(Layout {
        input: layer.d_input(),
        hidden,
        rank: layer.rank(),
        classes,
        scaling: layer.scaling,
        dropout: (layer.dropout.prob, dropout.prob),
        trains,
    })
}

impl<B: AutodiffBackend> CohortTrainer<B, MobileNetV3<B>> for CifarTask<B> {
    fn cohort_key(&self, member: &CohortMember<'_, InnerModel<B>>) -> Option<String> {
        let cache = self.cache()?;
        let layout = layout(member)?;
        (layout.input == cache.feature_dim && layout.hidden == cache.hidden_dim)
            .then(|| format!("{layout:?}"))
    }

    fn max_cohort_size(&self, config: &ClientConfig) -> usize {
        let (f, h) = self
            .cache()
            .map_or((576, 1024), |c| (c.feature_dim, c.hidden_dim));
        // Live activations of a step (inputs, masks, hidden activations and their gradients)
        // and the stacked tensors with their moments and gradients, in f32.
        let per_member = 4 * (config.batch_size * (3 * f + 10 * h + 64) + 4 * (f + h) * 16);
        let memory = (COHORT_MEMORY_BUDGET / per_member.max(1)).max(1);
        if self.host_cohorts() {
            // Host members train independently (no stacked step to keep in cache): the whole
            // round in one cohort balances the threads best.
            return memory;
        }
        // With the tensor path on the CPU backend a step is bound by memory traffic, not by per-op overhead: cohorts
        // whose activations stay in cache are fastest (measured on 2 cores: 5 clients 2.3 s a
        // 40-client round, 40 clients 4.4 s).
        if B::name(&self.device()).contains("flex") {
            memory.min(CPU_COHORT_SIZE)
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
        let shape = layout(first).ok_or_else(|| not_cohort(first.client))?;
        for member in members {
            if layout(member).as_ref() != Some(&shape) {
                return Err(not_cohort(member.client));
            }
        }
        if self.host_cohorts() {
            return self.train_on_host(members, round, config, prox, &shape);
        }
        let (xs, bases) = self.device_rows()?;
        let (xs, bases) = (xs.inner(), bases.inner());
        let device = xs.device();
        let sizes: Vec<(usize, usize)> = members
            .iter()
            .map(|m| (m.client, self.num_examples(m.client, Split::Train)))
            .collect();
        let schedule = CohortSchedule::new(&sizes, config, round);
        let sorted: Vec<&CohortMember<'_, InnerModel<B>>> =
            schedule.order.iter().map(|&i| &members[i]).collect();
        let mut params = stacked(&sorted, config)?;
        let mut optimizer = CohortOptimizer::new(&config.optimizer, config.lr, sorted.len());
        let prox = prox.map(|(global, mu)| ProxTargets::<Inner<B>>::new(global, mu, &device));
        let mut streams: Vec<DropoutStream> = sorted
            .iter()
            .map(|m| DropoutStream::for_client(config.seed, round, m.client))
            .collect();
        let clients: Vec<usize> = sorted.iter().map(|m| m.client).collect();
        let mut tally = CohortTally::new(sorted.len());
        for t in 0..schedule.steps() {
            let rows = schedule.rows(t);
            let n = rows.len();
            let inputs = self.step_inputs(
                (&xs, &bases),
                &sorted,
                &rows,
                &shape,
                &mut streams,
                tally.failures_mut(),
            )?;
            let current = StepParams {
                a: params[0].active(n),
                b: params[1].active(n),
                w: params[2].active(n),
                bias: params[3].active(n),
                scaling: shape.scaling,
            };
            let grads = step(&current, &inputs);
            let losses: Vec<f32> = grads
                .losses
                .clone()
                .into_data()
                .convert::<f32>()
                .into_vec()
                .map_err(|e| FedError::Task(format!("{e:?}")))?;
            tally.record(&losses, &rows, &clients, round);
            let all = [grads.a, grads.b, grads.w, grads.bias];
            let mut trained = Vec::new();
            let mut trained_grads = Vec::new();
            for (i, (param, grad)) in params.iter_mut().zip(all).enumerate() {
                if !shape.trains[i] {
                    continue;
                }
                let grad = match &prox {
                    Some(prox) => prox.pull(NAMES[i], param.active(n), grad)?,
                    None => grad,
                };
                trained.push(param);
                trained_grads.push(grad);
            }
            optimizer.step(&mut trained, trained_grads, n);
        }
        Ok(tally.outcomes(&schedule.order, |j| write_back(sorted[j].model, &params, j)))
    }
}

/// Each of `n` members' part (`per_member` values) of a mask, or `None`s without a mask.
fn member_chunks(
    mask: &mut Option<Vec<f32>>,
    n: usize,
    per_member: usize,
) -> Vec<Option<&mut [f32]>> {
    match mask {
        Some(m) => m.chunks_mut(per_member.max(1)).map(Some).collect(),
        None => (0..n).map(|_| None).collect(),
    }
}

pub(super) fn not_cohort(client: usize) -> FedError {
    FedError::Task(format!(
        "client {client}'s model does not fit the cohort (classifier.0 adapter and head)"
    ))
}

/// The members' `A`, `B`, head weight and head bias, stacked in `sorted` order.
fn stacked<IB: Backend>(
    sorted: &[&CohortMember<'_, MobileNetV3<IB>>],
    config: &ClientConfig,
) -> Result<Vec<StackedParam<IB>>> {
    let layers: Vec<&PersonalizedLora<IB>> = sorted
        .iter()
        .map(|m| adapter(m.model).ok_or_else(|| not_cohort(m.client)))
        .collect::<Result<_>>()?;
    let heads: Vec<&burn::nn::Linear<IB>> = sorted.iter().map(|m| &m.model.classifier.3).collect();
    let biases = heads
        .iter()
        .zip(sorted)
        .map(|(h, m)| {
            h.bias
                .as_ref()
                .map(|b| b.val())
                .ok_or_else(|| not_cohort(m.client))
        })
        .collect::<Result<Vec<_>>>()?;
    let opt = &config.optimizer;
    Ok(vec![
        StackedParam::new(
            stack_params(layers.iter().map(|l| l.lora_a.val()).collect())?,
            opt,
        ),
        StackedParam::new(
            stack_params(layers.iter().map(|l| l.lora_b.val()).collect())?,
            opt,
        ),
        StackedParam::new(
            stack_params(heads.iter().map(|h| h.weight.val()).collect())?,
            opt,
        ),
        StackedParam::new(stack_params(biases)?, opt),
    ])
}

/// `model` with member `j`'s trained tensors (parameter ids kept).
fn write_back<IB: Backend>(
    model: &MobileNetV3<IB>,
    params: &[StackedParam<IB>],
    j: usize,
) -> MobileNetV3<IB> {
    let mut model = model.clone();
    if let Dense::Lora(layer) = &mut model.classifier.0 {
        let a_dims = layer.lora_a.dims();
        let b_dims = layer.lora_b.dims();
        replace(
            &mut layer.lora_a,
            unstack_param(&params[0].value, j, a_dims),
        );
        replace(
            &mut layer.lora_b,
            unstack_param(&params[1].value, j, b_dims),
        );
    }
    let head = &mut model.classifier.3;
    let w_dims = head.weight.dims();
    replace(&mut head.weight, unstack_param(&params[2].value, j, w_dims));
    if let Some(bias) = &mut head.bias {
        let dims = bias.dims();
        replace(bias, unstack_param(&params[3].value, j, dims));
    }
    model
}

pub(super) fn replace<IB: Backend, const D: usize>(
    param: &mut Param<Tensor<IB, D>>,
    value: Tensor<IB, D>,
) {
    let old = std::mem::replace(param, Param::from_tensor(value.clone()));
    *param = old.map(|_| value);
}

impl<B: AutodiffBackend> CifarTask<B> {
    /// The stacked inputs of one step: rows gathered from the device copy of the cache, row
    /// weights, one-hot targets and each member's dropout masks.
    fn step_inputs(
        &self,
        (xs, bases): (&Tensor<Inner<B>, 2>, &Tensor<Inner<B>, 2>),
        sorted: &[&CohortMember<'_, InnerModel<B>>],
        rows: &[&[usize]],
        shape: &Layout,
        streams: &mut [DropoutStream],
        failures: &mut [Option<FedError>],
    ) -> Result<StepInputs<Inner<B>>> {
        let device = xs.device();
        let (n, w) = (rows.len(), rows.iter().map(|r| r.len()).max().unwrap_or(0));
        let (f, h, k) = (shape.input, shape.hidden, shape.classes);
        let (p_in, p_hidden) = shape.dropout;
        let mut index = vec![0i64; n * w];
        let mut weights = vec![0f32; n * w];
        let mut onehot = vec![0f32; n * w * k];
        let mut mask_in = (p_in > 0.0).then(|| vec![0f32; n * w * f]);
        let mut mask_hidden = (p_hidden > 0.0).then(|| vec![0f32; n * w * h]);
        // Rows whose masks each member draws (0 for a member whose rows failed).
        let mut drawn = vec![0usize; n];
        for (c, batch) in rows.iter().enumerate() {
            let client = sorted[c].client;
            let rows_and_labels = self
                .train_rows(client, batch)
                .and_then(|rows| self.train_targets(&rows).map(|labels| (rows, labels)));
            let (dataset_rows, labels) = match rows_and_labels {
                Ok(pair) => pair,
                Err(error) => {
                    failures[c].get_or_insert(error);
                    continue;
                }
            };
            let weight = 1.0 / batch.len() as f32;
            for (i, (&row, label)) in dataset_rows.iter().zip(labels).enumerate() {
                let at = c * w + i;
                index[at] = row as i64;
                weights[at] = weight;
                if label < k {
                    onehot[at * k + label] = 1.0;
                }
            }
            drawn[c] = batch.len();
        }
        // Each member draws its masks from its own stream (the adapter's first, as the
        // sequential forward does), so the members can draw in parallel.
        let (chunks_in, chunks_hidden) = (
            member_chunks(&mut mask_in, n, w * f),
            member_chunks(&mut mask_hidden, n, w * h),
        );
        streams
            .par_iter_mut()
            .zip(chunks_in)
            .zip(chunks_hidden)
            .zip(&drawn)
            .for_each(|(((stream, m_in), m_hidden), &len)| {
                if let Some(m) = m_in {
                    stream.fill(&mut m[..len * f], p_in);
                }
                if let Some(m) = m_hidden {
                    stream.fill(&mut m[..len * h], p_hidden);
                }
            });
        let index = Tensor::<Inner<B>, 1, Int>::from_data(TensorData::new(index, [n * w]), &device);
        let tensor = |values: Vec<f32>, width: usize| {
            Tensor::<Inner<B>, 3>::from_data(TensorData::new(values, [n, w, width]), &device)
        };
        Ok(StepInputs {
            x: xs.clone().select(0, index.clone()).reshape([n, w, f]),
            base: bases.clone().select(0, index).reshape([n, w, h]),
            onehot: tensor(onehot, k),
            weights: tensor(weights, 1),
            mask_in: mask_in.map(|m| tensor(m, f)),
            mask_hidden: mask_hidden.map(|m| tensor(m, h)),
        })
    }
}
