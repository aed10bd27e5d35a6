//! Cohort training on the host, for the CPU backend: every member trains on its own in plain
//! Rust ([`super::host_step`]), its tensors, moments and gradients host vectors for the whole
//! round, the members in parallel (rayon). Members never wait for one another, so a cohort can
//! be the whole round's clients.
//!
//! The result is [`super::cohort`]'s tensor path's (and the sequential client's): the same
//! batches ([`client_batches`]), the same dropout draws ([`DropoutStream`]), burn's optimiser
//! formulas ([`HostOptimizer`]) and FedProx's pull, only summed in another order.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;
use rayon::prelude::*;

use super::cohort::{Layout, NAMES, adapter, not_cohort, replace};
use super::host_step::{HostBatch, HostGrads, HostParams, HostShape, Scratch, step};
use super::task::CifarTask;
use crate::error::{FedError, Result};
use crate::federated::cohort::{
    CohortMember, CohortOutcome, DropoutStream, HostOptimizer, HostParam, client_batches, prox_pull,
};
use crate::federated::{ClientConfig, FederatedTask, Payload, Split};
use crate::lora::Dense;
use crate::models::MobileNetV3;

type InnerModel<B> = <MobileNetV3<B> as AutodiffModule<B>>::InnerModule;

/// Which code trains a CIFAR-10 cohort and scores cached clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CohortKernel {
    /// The host kernel on the CPU backend (`Flex`), the tensor path elsewhere (the default).
    #[default]
    Auto,
    /// Every member in plain Rust on the host, one after another per thread, members in
    /// parallel; scoring on the host too; whatever the backend. Equal to sequential training
    /// within rounding (the same batches, dropout masks and optimiser formulas).
    Host,
    /// Stacked tensors on the backend: one batched step for all members, what a GPU wants;
    /// scoring through the model's tensors.
    Tensor,
}

/// One member's round on the host: its batches (dataset rows and labels), its trained tensors
/// (`A`, `Bᵀ`, `Wᵀ`, bias) and FedProx's targets in the same layouts.
struct HostMember {
    client: usize,
    batches: Vec<(Vec<usize>, Vec<usize>)>,
    params: [HostParam; 4],
    globals: [Option<Vec<f32>>; 4],
}

/// `[rows, cols]` row-major to `[cols, rows]`.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

fn host_values<IB: Backend, const D: usize>(t: Tensor<IB, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| FedError::Task(format!("{e:?}")))
}

impl<B: AutodiffBackend> CifarTask<B> {
    /// Trains `members` (all of layout `shape`) on the host; see the module header.
    pub(super) fn train_on_host(
        &self,
        members: &[CohortMember<'_, InnerModel<B>>],
        round: u64,
        config: &ClientConfig,
        prox: Option<(&Payload, f64)>,
        shape: &Layout,
    ) -> Result<Vec<Result<CohortOutcome<InnerModel<B>>>>> {
        let cache = self
            .cache()
            .ok_or_else(|| FedError::Task("the task does not train from the cache".into()))?;
        let (xs, bases) = cache.train_arrays();
        let dims = HostShape {
            input: shape.input,
            hidden: shape.hidden,
            rank: shape.rank,
            classes: shape.classes,
            scaling: shape.scaling as f32,
        };
        let rows_cached = xs.len() / dims.input.max(1);
        let mut prepared: Vec<Result<HostMember>> = Vec::with_capacity(members.len());
        for member in members {
            prepared.push(self.host_member(member, round, config, prox, &dims, rows_cached));
        }
        let mu = prox.map(|(_, mu)| mu);
        let trained: Vec<Result<([HostParam; 4], f64)>> = prepared
            .into_par_iter()
            .map(|member| {
                let member = member?;
                let client = member.client;
                let rows = (xs, bases);
                train_member(member, rows, &dims, shape, config, round, mu)
                    .map_err(|e| FedError::Task(format!("client {client} round {round}: {e}")))
            })
            .collect();
        Ok(members
            .iter()
            .zip(trained)
            .map(|(member, result)| {
                let (params, train_loss) = result?;
                Ok(CohortOutcome {
                    model: write_back(member.model, &params, &dims),
                    train_loss,
                })
            })
            .collect())
    }

    /// A member's batches, tensors on the host and FedProx targets.
    fn host_member(
        &self,
        member: &CohortMember<'_, InnerModel<B>>,
        round: u64,
        config: &ClientConfig,
        prox: Option<(&Payload, f64)>,
        dims: &HostShape,
        rows_cached: usize,
    ) -> Result<HostMember> {
        let client = member.client;
        let examples = self.num_examples(client, Split::Train);
        let mut batches = Vec::new();
        for batch in client_batches(examples, config, round, client) {
            let rows = self.train_rows(client, &batch)?;
            if let Some(&bad) = rows.iter().find(|&&r| r >= rows_cached) {
                return Err(FedError::Task(format!("image {bad} is not in the cache")));
            }
            let labels = self.train_targets(&rows)?;
            batches.push((rows, labels));
        }
        let layer = adapter(member.model).ok_or_else(|| not_cohort(client))?;
        let head = &member.model.classifier.3;
        let bias = head.bias.as_ref().ok_or_else(|| not_cohort(client))?;
        let (h, r, k) = (dims.hidden, dims.rank, dims.classes);
        let natural = [
            host_values(layer.lora_a.val())?,
            host_values(layer.lora_b.val())?,
            host_values(head.weight.val())?,
            host_values(bias.val())?,
        ];
        let to_kernel = |i: usize, values: Vec<f32>| match i {
            1 => transpose(&values, h, r),
            2 => transpose(&values, h, k),
            _ => values,
        };
        let mut globals: [Option<Vec<f32>>; 4] = Default::default();
        if let Some((global, _)) = prox {
            for (i, name) in NAMES.iter().enumerate() {
                if let Some(t) = global.tensors.get(*name) {
                    if t.values.len() != natural[i].len() {
                        return Err(FedError::Task(format!(
                            "FedProx: `{name}` has {} values but the global tensor {}",
                            natural[i].len(),
                            t.values.len()
                        )));
                    }
                    globals[i] = Some(to_kernel(i, t.values.clone()));
                }
            }
        }
        let [a, b, w, bias] = natural;
        let param =
            |i: usize, values: Vec<f32>| HostParam::new(to_kernel(i, values), &config.optimizer);
        let params = [param(0, a), param(1, b), param(2, w), param(3, bias)];
        Ok(HostMember {
            client,
            batches,
            params,
            globals,
        })
    }
}

/// Trains one member through its batches; returns its tensors and mean training loss.
fn train_member(
    mut member: HostMember,
    (xs, bases): (&[f32], &[f32]),
    dims: &HostShape,
    shape: &Layout,
    config: &ClientConfig,
    round: u64,
    mu: Option<f64>,
) -> Result<([HostParam; 4], f64)> {
    let (f, h) = (dims.input, dims.hidden);
    let (p_in, p_hidden) = shape.dropout;
    let width = member.batches.iter().map(|b| b.0.len()).max().unwrap_or(0);
    let mut mask_in = vec![0f32; if p_in > 0.0 { width * f } else { 0 }];
    let mut mask_hidden = vec![0f32; if p_hidden > 0.0 { width * h } else { 0 }];
    let mut stream = DropoutStream::for_client(config.seed, round, member.client);
    let mut optimizer = HostOptimizer::new(&config.optimizer, config.lr);
    let mut grads = HostGrads::zeros(dims);
    let mut scratch = Scratch::new(dims);
    let (mut x, mut base) = (Vec::with_capacity(width), Vec::with_capacity(width));
    let (mut loss_sum, mut seen) = (0f64, 0usize);
    for (rows, labels) in &member.batches {
        let len = rows.len();
        x.clear();
        base.clear();
        x.extend(rows.iter().map(|&r| &xs[r * f..(r + 1) * f]));
        base.extend(rows.iter().map(|&r| &bases[r * h..(r + 1) * h]));
        // The adapter's mask first, as the sequential forward draws them.
        if p_in > 0.0 {
            stream.fill(&mut mask_in[..len * f], p_in);
        }
        if p_hidden > 0.0 {
            stream.fill(&mut mask_hidden[..len * h], p_hidden);
        }
        let m_in = (p_in > 0.0).then_some(&mask_in[..len * f]);
        let m_hidden = (p_hidden > 0.0).then_some(&mask_hidden[..len * h]);
        let [a, bt, wt, bias] = &member.params;
        let params = HostParams {
            a: &a.value,
            bt: &bt.value,
            wt: &wt.value,
            bias: &bias.value,
        };
        let batch = HostBatch {
            x: &x,
            base: &base,
            labels,
            mask_in: m_in,
            mask_hidden: m_hidden,
        };
        let loss = step(dims, params, batch, &mut grads, &mut scratch);
        if !loss.is_finite() {
            return Err(FedError::Task(format!("non-finite training loss {loss}")));
        }
        if len > 0 {
            loss_sum += loss as f64 * len as f64;
            seen += len;
        }
        let HostGrads { a, bt, wt, bias } = &mut grads;
        let all = [a, bt, wt, bias];
        let mut trained = Vec::with_capacity(4);
        let mut trained_grads = Vec::with_capacity(4);
        for (i, (param, grad)) in member.params.iter_mut().zip(all).enumerate() {
            if !shape.trains[i] {
                continue;
            }
            if let (Some(mu), Some(global)) = (mu, &member.globals[i]) {
                prox_pull(grad, &param.value, global, mu);
            }
            trained.push(param);
            trained_grads.push(&grad[..]);
        }
        optimizer.step(&mut trained, &trained_grads);
    }
    let mean = if seen > 0 {
        loss_sum / seen as f64
    } else {
        0.0
    };
    Ok((member.params, mean))
}

/// `model` with the trained tensors (back in their own layouts; parameter ids kept).
fn write_back<IB: Backend>(
    model: &MobileNetV3<IB>,
    params: &[HostParam; 4],
    dims: &HostShape,
) -> MobileNetV3<IB> {
    let (f, h, r, k) = (dims.input, dims.hidden, dims.rank, dims.classes);
    let mut model = model.clone();
    let tensor = |values: Vec<f32>, shape: [usize; 2], device: &IB::Device| {
        Tensor::<IB, 2>::from_data(TensorData::new(values, shape), device)
    };
    if let Dense::Lora(layer) = &mut model.classifier.0 {
        let device = layer.lora_a.device();
        let a = tensor(params[0].value.clone(), [r, f], &device);
        let b = tensor(transpose(&params[1].value, r, h), [h, r], &device);
        replace(&mut layer.lora_a, a);
        replace(&mut layer.lora_b, b);
    }
    let head = &mut model.classifier.3;
    let device = head.weight.device();
    let w = tensor(transpose(&params[2].value, k, h), [h, k], &device);
    replace(&mut head.weight, w);
    if let Some(bias) = &mut head.bias {
        let value =
            Tensor::<IB, 1>::from_data(TensorData::new(params[3].value.clone(), [k]), &device);
        replace(bias, value);
    }
    model
}
